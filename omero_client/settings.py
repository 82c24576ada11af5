"""Where the OMERO side finds its one iRODS identity, and what it is allowed to know.

OMERO talks to iRODS as ONE unprivileged service account. Everything about that
account lives in files the facility controls on the OMERO server, readable
only by the OS user OMERO runs as: the account's ``irods_environment.json``
(plus its ``.irodsA``), and the OMERO side's settings file
``omero_snapshots.json`` (schemas/omero-settings-v1.schema.json) beside it.
Scripts never take credentials, hosts or paths as parameters, and nothing here
ever reads, prints or logs a password: python-irodsclient reads the ``.irodsA``
itself when a session connects.

Files, not variables, on purpose: OMERO's script processor builds a script's
environment from a fixed list (omero.util.Environment in omero.processor:
HOME, PATH, PYTHONPATH, OMERODIR, LANG, ...; no TMPDIR, no OMERO_SNAPSHOTS_*,
OMERO_IRODS_* or IRODS_* variable). So every setting has a key in the settings
file, found through HOME (``$HOME/.irods/omero_snapshots.json``) or at the
fixed ``/opt/omero/server/.irods/omero_snapshots.json``. The variables remain
overrides for the command line and tests only; precedence: variable, settings
file, the older ``omero_snapshots_*`` keys of the environment file (still
read, for installs made before the settings file), default.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

ENV_FILE_VAR = "OMERO_IRODS_ENVIRONMENT_FILE"
DEFAULT_ENV_FILE = "/opt/omero/server/.irods/irods_environment.json"
FALLBACK_ENV_FILE = "~/.irods/irods_environment.json"
AUTH_FILE_VAR = "IRODS_AUTHENTICATION_FILE"
SERVER_NAME_VAR = "OMERO_SNAPSHOTS_SERVER_NAME"
WORKDIR_VAR = "OMERO_SNAPSHOTS_WORKDIR"
POLL_SECONDS_VAR = "OMERO_SNAPSHOTS_POLL_SECONDS"
LANDING_KEY = "omero_snapshots_landing"
SERVER_NAME_KEY = "omero_snapshots_server_name"
WORKDIR_KEY = "omero_snapshots_workdir"
POLL_SECONDS_KEY = "omero_snapshots_poll_seconds"
DEFAULT_POLL_SECONDS = 180.0
MAX_ENV_FILE_BYTES = 65536
SETTINGS_FILE_VAR = "OMERO_SNAPSHOTS_SETTINGS"
SETTINGS_NAME = "omero_snapshots.json"
DEFAULT_SETTINGS_FILE = "/opt/omero/server/.irods/" + SETTINGS_NAME
SETTINGS_SCHEMA = "omero-settings"
MAX_SETTINGS_BYTES = 65536
SAVE_MODE_VAR = "OMERO_SNAPSHOTS_SAVE_MODE"
SAVE_MODES = ("stream", "folder")
DEFAULT_SAVE_MODE = "stream"  # zero-copy: see docs/omero.md §5 for why
ENV_NAME = "irods_environment.json"

# Same rule as the manifest schema's $defs/omero_server: the server must accept what we write.
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$")


class SettingsError(Exception):
    """The OMERO side is not set up correctly; the message says what the facility must fix."""


@dataclass(frozen=True)
class Settings:
    """What the OMERO side knows about iRODS. Holds no secret, so it is safe to print."""

    env_file: str
    auth_file: Optional[str]  # None: python-irodsclient's default (~/.irods/.irodsA)
    irods_user: str  # the service account
    zone_name: str
    landing: str
    server_name: str
    workdir: str
    poll_seconds: float
    save_mode: str = DEFAULT_SAVE_MODE
    settings_file: Optional[str] = None  # the omero_snapshots.json these came from (None: none found)

    def open_zone(self) -> Any:
        """A Zone (policy.prc_zone.PrcZone) acting as the service account.

        python-irodsclient connects lazily, on the first call; the password is
        read from the .irodsA by python-irodsclient itself and never passes
        through this package.
        """
        from irods.session import iRODSSession

        from policy.prc_zone import PrcZone

        kwargs: Dict[str, Any] = {"irods_env_file": self.env_file}
        if self.auth_file:
            kwargs["irods_authentication_file"] = self.auth_file
        return PrcZone(iRODSSession(**kwargs), self.zone_name)


def check_private(path: str, what: str = "file",
                  holds: str = "it holds the service account's identity") -> None:
    """Refuse a credentials file that other OS users could read or change.

    Readable: they could take the service account's identity. Writable: they
    could point OMERO at a server of their own. Either way, stop and say how to fix it.
    ``holds`` says why this file matters (the zones file routes saves rather than holding a secret).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise SettingsError("cannot read the iRODS {} {}: {}".format(what, path, e.strerror)) from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o066:
        raise SettingsError(
            "the iRODS {} {} is accessible to group/other (mode {:04o}); {} and must be private to the OS "
            "user OMERO runs as: chmod 600 {}".format(what, path, mode, holds, path))


def home_of(environ: Mapping[str, str]) -> str:
    """The HOME a script sees (the processor passes HOME on), else the OS user's home directory."""
    home = environ.get("HOME")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except Exception:  # no passwd entry (a container with a random uid)
        return os.path.expanduser("~")


@dataclass(frozen=True)
class SiteSettings:
    """The validated settings file (``values`` empty when there is none)."""

    source: Optional[str]
    values: Dict[str, Any]

    def beside(self, name: str) -> Optional[str]:
        return None if self.source is None else os.path.join(os.path.dirname(self.source), name)


def candidate_settings_files(environ: Mapping[str, str]) -> List[str]:
    """First match wins: the variable (CLI/tests), the fixed place, then $HOME/.irods."""
    if environ.get(SETTINGS_FILE_VAR):
        return [os.path.expanduser(environ[SETTINGS_FILE_VAR])]
    return [DEFAULT_SETTINGS_FILE, os.path.join(home_of(environ), ".irods", SETTINGS_NAME)]


def load_site_settings(environ: Optional[Mapping[str, str]] = None) -> SiteSettings:
    """Find, check (private, strict JSON, schema) and return the settings file; none found is not an error."""
    from policy.schemas import JsonError, loads_strict, summarize, validate

    env = os.environ if environ is None else environ
    candidates = candidate_settings_files(env)
    path = next((p for p in candidates if os.path.exists(p)), None)
    if path is None:
        if env.get(SETTINGS_FILE_VAR):
            raise SettingsError("{} names {}, which does not exist".format(SETTINGS_FILE_VAR, candidates[0]))
        return SiteSettings(None, {})
    check_private(path, "settings file", "it decides which service account and OMERO server name OMERO uses")
    raw = read_bounded(path, MAX_SETTINGS_BYTES, "OMERO settings file")
    try:
        doc = loads_strict(raw, max_depth=4)
    except JsonError as e:
        raise SettingsError("the OMERO settings file {} {}".format(path, e)) from None
    errors = validate(doc, SETTINGS_SCHEMA, "settings")
    if errors:
        raise SettingsError("the OMERO settings file {} is not valid: {} (schema: schemas/omero-settings-v1."
                            "schema.json, docs/schemas.md)".format(path, summarize(errors)))
    return SiteSettings(path, dict(doc))


def candidate_env_files(environ: Mapping[str, str], site: Optional[SiteSettings] = None) -> List[str]:
    """Where to look, first match wins: the variable, the settings file's key, beside it, the defaults."""
    if environ.get(ENV_FILE_VAR):
        return [os.path.expanduser(environ[ENV_FILE_VAR])]
    if site is not None and site.values.get("irods_environment_file"):
        return [str(site.values["irods_environment_file"])]
    beside = site.beside(ENV_NAME) if site is not None else None
    out = [beside] if beside else []
    for p in (DEFAULT_ENV_FILE, os.path.join(home_of(environ), ".irods", ENV_NAME)):
        if p not in out:
            out.append(p)
    return out


def load_settings(environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None,
                  site: Optional[SiteSettings] = None) -> Settings:
    """Read and check the settings; raise SettingsError with a message the facility can act on."""
    env = os.environ if environ is None else environ
    site = site if site is not None else load_site_settings(env)
    s = site.values
    candidates = candidate_env_files(env, site)
    path = next((p for p in candidates if os.path.exists(p)), None)
    if path is None:
        raise SettingsError("no iRODS environment file for the OMERO service account: looked at {} (set "
                            "irods_environment_file in {} or create the file, see docs/omero.md)".format(
                                ", ".join(candidates), site.source or DEFAULT_SETTINGS_FILE))
    check_private(path, "environment file")
    doc = _read_env(path)
    user, zone = _required(doc, path, "irods_user_name"), _required(doc, path, "irods_zone_name")
    auth_file = _auth_file(doc, env, path, s.get("irods_authentication_file"))
    if auth_file is not None and os.path.exists(auth_file):
        check_private(auth_file, "authentication file")
    where = site.source or path
    landing = s.get("landing") or doc.get(LANDING_KEY) or "/{}/home/{}/landing".format(zone, user)
    _check_landing(landing, zone, where, "landing" if s.get("landing") else LANDING_KEY)
    server_name = (env.get(SERVER_NAME_VAR) or s.get("server_name") or doc.get(SERVER_NAME_KEY) or hostname
                   or socket.getfqdn())
    if not isinstance(server_name, str) or not _SERVER_NAME_RE.match(server_name):
        raise SettingsError("OMERO server name {!r} is not a host name[:port]; set server_name in {} to the name "
                            "the iRODS facility enrolled".format(server_name, site.source or DEFAULT_SETTINGS_FILE))
    workdir = env.get(WORKDIR_VAR) or s.get("workdir") or doc.get(WORKDIR_KEY) or tempfile.gettempdir()
    poll = env.get(POLL_SECONDS_VAR) or s.get("poll_seconds") or doc.get(POLL_SECONDS_KEY) or DEFAULT_POLL_SECONDS
    try:
        poll_seconds = float(poll)
    except (TypeError, ValueError):
        raise SettingsError("poll_seconds must be a number of seconds, not {!r}".format(poll)) from None
    save_mode = env.get(SAVE_MODE_VAR) or s.get("save_mode") or DEFAULT_SAVE_MODE
    if save_mode not in SAVE_MODES:
        raise SettingsError("save_mode must be one of {}, not {!r}".format(", ".join(SAVE_MODES), save_mode))
    return Settings(env_file=path, auth_file=auth_file, irods_user=user, zone_name=zone, landing=landing,
                    server_name=server_name, workdir=str(workdir), poll_seconds=poll_seconds, save_mode=save_mode,
                    settings_file=site.source)


def read_bounded(path: str, limit: int, what: str, error: type = SettingsError) -> bytes:
    """A small configuration file, whole, refused (with `error`) when unreadable or over `limit` bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise error("cannot read the {} {}: {}".format(what, path, e.strerror)) from None
    if len(raw) > limit:
        raise error("the {} {} is larger than {} bytes".format(what, path, limit))
    return raw


def _read_env(path: str) -> Dict[str, Any]:
    raw = read_bounded(path, MAX_ENV_FILE_BYTES, "iRODS environment file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        # Only the position: the text may hold secrets (a pam password), so it is never quoted.
        pos = getattr(e, "lineno", None)
        where = " (line {})".format(pos) if pos else ""
        raise SettingsError("the iRODS environment file {} is not valid JSON{}".format(path, where)) from None
    if not isinstance(doc, dict):
        raise SettingsError("the iRODS environment file {} must hold a JSON object".format(path))
    return doc


def _required(doc: Dict[str, Any], path: str, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise SettingsError("the iRODS environment file {} has no {!r}".format(path, key))
    return value


def _auth_file(doc: Dict[str, Any], env: Mapping[str, str], env_file: str,
               site_value: Optional[str] = None) -> Optional[str]:
    """The .irodsA python-irodsclient will use: explicit key or variable, else the one beside the env file."""
    explicit = doc.get("irods_authentication_file") or env.get(AUTH_FILE_VAR) or site_value
    if isinstance(explicit, str) and explicit:
        return os.path.expanduser(explicit)
    beside = os.path.join(os.path.dirname(env_file), ".irodsA")
    return beside if os.path.exists(beside) else None


def _check_landing(landing: Any, zone: str, path: str, key: str = LANDING_KEY) -> None:
    ok = isinstance(landing, str) and landing.startswith("/{}/".format(zone)) and not landing.endswith("/")
    parts: Tuple[str, ...] = tuple(landing.split("/")[1:]) if isinstance(landing, str) else ()
    if not ok or any(p in ("", ".", "..") for p in parts):
        raise SettingsError("{} in {} must be an absolute collection path inside zone {!r}, not {!r}".format(
            key, path, zone, landing))


ZONE_SHARED_KEYS = ("server_name", "workdir", "poll_seconds", "save_mode")  # settings-file keys every zone shares


def load_zone_settings(env_file: str, environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None,
                       landing: Optional[str] = None, server_name: Optional[str] = None,
                       site: Optional[SiteSettings] = None) -> Settings:
    """Settings for one zone of a zones file (omero_client.zones), from that zone's own environment file.

    Same checks as ``load_settings``, with two differences that keep zones apart:
    ``$IRODS_AUTHENTICATION_FILE`` is ignored and the ``.irodsA`` must be found
    through the zone's own file (beside it, or its ``irods_authentication_file``),
    because python-irodsclient's fallback ``~/.irods/.irodsA`` would silently sign
    in to one zone with another zone's password; and the zones file's ``landing``
    and ``server_name`` (when given) win over the environment file's keys. Of
    the settings file only the keys every zone shares apply (server name, work
    dir, poll seconds, save mode), never its environment, .irodsA or landing.
    """
    env = dict(os.environ if environ is None else environ)
    site = site if site is not None else load_site_settings(env)
    env.pop(AUTH_FILE_VAR, None)
    env[ENV_FILE_VAR] = env_file
    if server_name:
        env[SERVER_NAME_VAR] = server_name
    shared = SiteSettings(site.source, {k: v for k, v in site.values.items() if k in ZONE_SHARED_KEYS})
    settings = load_settings(env, hostname, shared)
    if settings.auth_file is None or not os.path.exists(settings.auth_file):
        raise SettingsError("no .irodsA for the service account of {}: write it beside that file (see docs/omero.md)"
                            .format(env_file))
    if landing is not None:
        _check_landing(landing, settings.zone_name, "the zones file's entry for " + env_file, key="landing")
        settings = replace(settings, landing=landing)
    return settings
