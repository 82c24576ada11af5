"""Where the OMERO side finds its one iRODS identity, and what it is allowed to know.

OMERO talks to iRODS as ONE unprivileged service account. Everything about that
account lives in a single place the facility controls: the account's
``irods_environment.json`` (plus its ``.irodsA``) on the OMERO server, readable
only by the OS user OMERO runs as. Scripts never take credentials, hosts or
paths as parameters, and nothing here ever reads, prints or logs a password:
python-irodsclient reads the ``.irodsA`` itself when a session connects.

One file on purpose: OMERO's script processor passes only a handful of
environment variables (HOME, PATH, ...) to scripts, so settings that must reach
a script live in the environment file, not in variables:

- ``omero_snapshots_landing``: the landing collection. Optional; by default
  ``/<irods_zone_name>/home/<irods_user_name>/landing``, the policy's default.
- ``omero_snapshots_server_name``: the OMERO server name written into
  manifests (the key of the facility's user mapping, with the OMERO user name).
  Optional; the variable ``OMERO_SNAPSHOTS_SERVER_NAME`` wins over it, the
  host's fully qualified name is the fallback.

python-irodsclient ignores keys it does not know, so both can sit beside the
usual ``irods_*`` keys.
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


def candidate_env_files(environ: Mapping[str, str]) -> List[str]:
    """Where to look, first match wins: the variable, the OMERO server's home, then ~/.irods."""
    if environ.get(ENV_FILE_VAR):
        return [os.path.expanduser(environ[ENV_FILE_VAR])]
    return [DEFAULT_ENV_FILE, os.path.expanduser(FALLBACK_ENV_FILE)]


def load_settings(environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None) -> Settings:
    """Read and check the settings; raise SettingsError with a message the facility can act on."""
    env = os.environ if environ is None else environ
    candidates = candidate_env_files(env)
    path = next((p for p in candidates if os.path.exists(p)), None)
    if path is None:
        raise SettingsError("no iRODS environment file for the OMERO service account: looked at {} (set {} or "
                            "create the file, see docs/omero.md)".format(", ".join(candidates), ENV_FILE_VAR))
    check_private(path, "environment file")
    doc = _read_env(path)
    user, zone = _required(doc, path, "irods_user_name"), _required(doc, path, "irods_zone_name")
    auth_file = _auth_file(doc, env, path)
    if auth_file is not None and os.path.exists(auth_file):
        check_private(auth_file, "authentication file")
    landing = doc.get(LANDING_KEY) or "/{}/home/{}/landing".format(zone, user)
    _check_landing(landing, zone, path)
    server_name = env.get(SERVER_NAME_VAR) or doc.get(SERVER_NAME_KEY) or hostname or socket.getfqdn()
    if not isinstance(server_name, str) or not _SERVER_NAME_RE.match(server_name):
        raise SettingsError("OMERO server name {!r} is not a host name[:port]; set {} in {} (or the variable {}) "
                            "to the name the iRODS facility enrolled".format(server_name, SERVER_NAME_KEY, path,
                                                                               SERVER_NAME_VAR))
    workdir = env.get(WORKDIR_VAR) or doc.get(WORKDIR_KEY) or tempfile.gettempdir()
    poll = env.get(POLL_SECONDS_VAR) or doc.get(POLL_SECONDS_KEY) or DEFAULT_POLL_SECONDS
    try:
        poll_seconds = float(poll)
    except (TypeError, ValueError):
        raise SettingsError("{} must be a number of seconds, not {!r}".format(POLL_SECONDS_KEY, poll)) from None
    return Settings(env_file=path, auth_file=auth_file, irods_user=user, zone_name=zone, landing=landing,
                    server_name=server_name, workdir=str(workdir), poll_seconds=poll_seconds)


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


def _auth_file(doc: Dict[str, Any], env: Mapping[str, str], env_file: str) -> Optional[str]:
    """The .irodsA python-irodsclient will use: explicit key or variable, else the one beside the env file."""
    explicit = doc.get("irods_authentication_file") or env.get(AUTH_FILE_VAR)
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


def load_zone_settings(env_file: str, environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None,
                       landing: Optional[str] = None, server_name: Optional[str] = None) -> Settings:
    """Settings for one zone of a zones file (omero_client.zones), from that zone's own environment file.

    Same checks as ``load_settings``, with two differences that keep zones apart:
    ``$IRODS_AUTHENTICATION_FILE`` is ignored and the ``.irodsA`` must be found
    through the zone's own file (beside it, or its ``irods_authentication_file``),
    because python-irodsclient's fallback ``~/.irods/.irodsA`` would silently sign
    in to one zone with another zone's password; and the zones file's ``landing``
    and ``server_name`` (when given) win over the environment file's keys.
    """
    env = dict(os.environ if environ is None else environ)
    env.pop(AUTH_FILE_VAR, None)
    env[ENV_FILE_VAR] = env_file
    if server_name:
        env[SERVER_NAME_VAR] = server_name
    settings = load_settings(env, hostname)
    if settings.auth_file is None or not os.path.exists(settings.auth_file):
        raise SettingsError("no .irodsA for the service account of {}: write it beside that file (see docs/omero.md)"
                            .format(env_file))
    if landing is not None:
        _check_landing(landing, settings.zone_name, "the zones file's entry for " + env_file, key="landing")
        settings = replace(settings, landing=landing)
    return settings
