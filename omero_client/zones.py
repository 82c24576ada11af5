"""Several iRODS zones behind one OMERO: which zone a save goes to, and where List and Load look.

The working group's answer to "more than one iRODS zone?" was: solve it on the
OMERO side, with the credentials kept on the OMERO server, not in OMERO's
database. So the facility writes ONE more file on the OMERO server, the zones
file (schemas/omero-zones-v1.schema.json, docs/omero.md §7), readable only by
the OS user OMERO runs as. It names each zone's service-account environment
file (that zone's ``.irodsA`` beside it) and routes every save to exactly one
zone:

1. a rule for the OMERO user (``{"omero_user": "bsmith", "zone": ...}``) wins,
   whatever group the user saves from: a person's data stays in one place;
2. else a rule for the OMERO group the save is made from (the script's
   current group, the one the objects are browsed in);
3. else ``default_zone``; when it is ``null`` the save is refused with a
   message saying whom to ask.

Each zone's server side is identical and unaware of the others; OMERO never
chooses a path inside a zone (the manifest has no such field). Nothing here
holds a secret: the zones file holds paths, the environment files hold
identities, python-irodsclient reads each ``.irodsA`` itself.

Without a zones file everything works as before with the one environment file
of omero_client.settings (``ZoneSet.single``): the scripts need no change.

A zone that cannot be reached, or refuses its service account, is reported as
``ZoneUnavailable`` naming the zone; the other zones keep working (List shows
their snapshots and names the zone it could not read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from omero_client.settings import (
    Settings,
    SettingsError,
    SiteSettings,
    check_private,
    home_of,
    load_site_settings,
    load_zone_settings,
    read_bounded,
)
from policy.errors import IrodsError, NotFound
from policy.listing import SnapshotInfo
from policy.schemas import JsonError, ecma_regex, format_path, loads_strict, summarize
from policy.zone import Zone

ZONES_FILE_VAR = "OMERO_IRODS_ZONES_FILE"
DEFAULT_ZONES_FILE = "/opt/omero/server/.irods/omero_zones.json"
FALLBACK_ZONES_FILE = "~/.irods/omero_zones.json"
ZONES_VERSION = 1
MAX_ZONES_FILE_BYTES = 4 * 1024 * 1024
MAX_ZONES_DEPTH = 8
SCHEMA_FILE = "omero-zones-v1.schema.json"

# (entry, its settings) -> an open Zone acting as that zone's service account. Tests inject their own.
ZoneFactory = Callable[["ZoneEntry", Settings], Zone]


class ZonesError(SettingsError):
    """The zones file is unusable; ``errors`` lists every problem (the message shows the first few)."""

    def __init__(self, message: str, errors: Optional[Sequence[str]] = None) -> None:
        self.errors: List[str] = list(errors) if errors else [message]
        super().__init__(message)


class RoutingError(SettingsError):
    """No zone for this OMERO user/group: the facility has to add a route (or a default)."""


class ZoneUnavailable(Exception):
    """One zone cannot be used right now; the message names it so the researcher can tell the facility."""

    def __init__(self, zone: str, detail: str) -> None:
        self.zone = zone
        self.detail = detail
        super().__init__("iRODS zone '{}' is not available: {}. Other zones are not affected; try again later, and "
                         "tell the OMERO/iRODS facility if it persists.".format(zone, detail))


@dataclass(frozen=True)
class ZoneEntry:
    """One zone of the zones file. Holds paths and names only, so it is safe to print."""

    name: str
    irods_environment_file: str
    landing: Optional[str] = None
    server_name: Optional[str] = None


@dataclass(frozen=True)
class Route:
    zone: str
    omero_user: Optional[str] = None
    omero_group: Optional[str] = None


@dataclass(frozen=True)
class ZonesConfig:
    zones: Tuple[ZoneEntry, ...]
    routes: Tuple[Route, ...] = ()
    default_zone: Optional[str] = None
    source: Optional[str] = None  # the zones file; None for the single-zone setup
    _by_user: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _by_group: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for r in self.routes:
            if r.omero_user is not None:
                self._by_user.setdefault(r.omero_user, r.zone)
            elif r.omero_group is not None:
                self._by_group.setdefault(r.omero_group, r.zone)

    def entry(self, name: str) -> ZoneEntry:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)

    def route_with_reason(self, omero_user: str, omero_group: Optional[str]) -> Tuple[ZoneEntry, str]:
        """The zone a save by this user from this group goes to, and why (shown to the researcher)."""
        if omero_user in self._by_user:
            return self.entry(self._by_user[omero_user]), "routed by OMERO user '{}'".format(omero_user)
        if omero_group is not None and omero_group in self._by_group:
            return self.entry(self._by_group[omero_group]), "routed by OMERO group '{}'".format(omero_group)
        if self.default_zone is not None:
            return self.entry(self.default_zone), "the default zone"
        raise RoutingError(
            "no iRODS zone is configured for OMERO user '{}' saving from group '{}' (no rule for the user or the "
            "group, and no default zone): ask the OMERO/iRODS facility to add a route for you or your group in {}"
            .format(omero_user, omero_group or "-", self.source or "the zones file"))

    def route(self, omero_user: str, omero_group: Optional[str]) -> ZoneEntry:
        """First match wins: the user's rule, then the group's rule, then the default zone."""
        return self.route_with_reason(omero_user, omero_group)[0]

    def zones_for(self, omero_user: str, groups: Iterable[Optional[str]]) -> List[ZoneEntry]:
        """Every zone ``route`` picks for this user from any of ``groups`` (where List and Load look).

        Ordered as in the zones file. Empty ``groups`` means the user's rule or the default.
        A user in no routable group gets RoutingError, like a save would.
        """
        names = set()
        last_error: Optional[RoutingError] = None
        for group in list(groups) or [None]:
            try:
                names.add(self.route(omero_user, group).name)
            except RoutingError as e:
                last_error = e
        if not names:
            assert last_error is not None
            raise last_error
        return [z for z in self.zones if z.name in names]


# ------------------------------------------------------------------------------------------ reading the file
def schema_path() -> str:
    import schemas  # the package holding the JSON Schema files

    return os.path.join(os.path.dirname(os.path.abspath(schemas.__file__)), SCHEMA_FILE)


_validator_cache: List[Any] = []


def _validator() -> Any:
    """A draft 2020-12 validator with ECMA-262 ``pattern`` (as policy.schemas does); jsonschema imported lazily."""
    if not _validator_cache:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import ValidationError
        from jsonschema.validators import extend

        def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterable[Any]:
            import re

            if validator.is_type(instance, "string") and not re.search(ecma_regex(patrn), instance):
                yield ValidationError("{!r} does not match {!r}".format(instance[:80], patrn))

        with open(schema_path(), encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        _validator_cache.append(extend(Draft202012Validator, validators={"pattern": pattern})(schema))
    return _validator_cache[0]


def validate_zones(doc: Any, root: str = "zones") -> List[str]:
    """Schema errors as ``zones.<path>: <message>`` strings, sorted by path (empty = valid)."""
    from jsonschema.exceptions import best_match

    out = []
    for error in _validator().iter_errors(doc):
        if error.context:
            error = best_match(error.context) or error
        path = list(error.absolute_path)
        out.append((tuple(str(p) for p in path), "{}: {}".format(format_path(root, path), str(error.message)[:300])))
    return [text for _, text in sorted(out)]


def parse_zones(doc: Any, source: Optional[str] = None) -> ZonesConfig:
    """Schema, then the checks a schema cannot express; raise ZonesError listing every problem."""
    where = source or "the zones file"
    errors = validate_zones(doc)
    if errors:
        raise ZonesError("{} is not valid: {}".format(where, summarize(errors)), errors)
    zones = tuple(ZoneEntry(z["name"], z["irods_environment_file"], z.get("landing"), z.get("server_name"))
                  for z in doc["zones"])
    seen: Dict[str, int] = {}
    for i, z in enumerate(zones):
        if z.name in seen:
            errors.append("zones.zones[{}].name: duplicate zone name {!r} (already at zones.zones[{}])".format(
                i, z.name, seen[z.name]))
        seen.setdefault(z.name, i)
    routes = tuple(Route(r["zone"], r.get("omero_user"), r.get("omero_group")) for r in doc["routes"])
    ruled: Dict[Tuple[str, str], int] = {}
    for i, r in enumerate(routes):
        if r.zone not in seen:
            errors.append("zones.routes[{}].zone: no zone is named {!r}".format(i, r.zone))
        key = ("omero_user", r.omero_user) if r.omero_user is not None else ("omero_group", str(r.omero_group))
        if key in ruled:
            errors.append("zones.routes[{}].{}: a second rule for {!r} (already at zones.routes[{}]); each user and "
                          "each group may be routed once".format(i, key[0], key[1], ruled[key]))
        ruled.setdefault(key, i)
    default = doc["default_zone"]
    if default is not None and default not in seen:
        errors.append("zones.default_zone: no zone is named {!r}".format(default))
    if errors:
        raise ZonesError("{} is not valid: {}".format(where, summarize(errors)), errors)
    return ZonesConfig(zones=zones, routes=routes, default_zone=default, source=source)


def load_zones(path: str) -> ZonesConfig:
    """Read, check the file's privacy, parse strictly and validate."""
    check_private(path, "zones file", "it decides which service account OMERO uses for whom")
    raw = read_bounded(path, MAX_ZONES_FILE_BYTES, "iRODS zones file", ZonesError)
    try:
        doc = loads_strict(raw, max_depth=MAX_ZONES_DEPTH)
    except JsonError as e:
        raise ZonesError("the iRODS zones file {} {}".format(path, e)) from None
    return parse_zones(doc, path)


def find_zones_file(environ: Optional[Mapping[str, str]] = None, site: Optional[SiteSettings] = None
                    ) -> Optional[str]:
    """``$OMERO_IRODS_ZONES_FILE`` or the settings file's ``zones_file`` (either must exist), else the first
    existing of: beside the settings file, the fixed default, $HOME/.irods. None = single-zone setup."""
    env = os.environ if environ is None else environ
    if env.get(ZONES_FILE_VAR):
        path = os.path.expanduser(env[ZONES_FILE_VAR])
        if not os.path.exists(path):
            raise ZonesError("{} names {}, which does not exist".format(ZONES_FILE_VAR, path))
        return path
    if site is not None and site.values.get("zones_file"):
        path = str(site.values["zones_file"])
        if not os.path.exists(path):
            raise ZonesError("zones_file in {} names {}, which does not exist".format(site.source, path))
        return path
    beside = site.beside("omero_zones.json") if site is not None else None
    for path in ([beside] if beside else []) + [DEFAULT_ZONES_FILE,
                                                os.path.join(home_of(env), ".irods", "omero_zones.json")]:
        if os.path.exists(path):
            return path
    return None


# ------------------------------------------------------------------------------------------ using the zones
def is_zone_failure(e: BaseException) -> bool:
    """An error talking to a zone (connection, authentication, catalog), as opposed to a bug or a local problem."""
    return isinstance(e, (IrodsError, OSError)) or type(e).__module__.split(".")[0] == "irods"


def describe(e: BaseException) -> str:
    """A short technical reason; python-irodsclient's texts name hosts and iRODS errors, never passwords."""
    text = str(e)[:300]
    return "{}{}".format(type(e).__name__, ": " + text if text else "")


def _default_factory(entry: ZoneEntry, settings: Settings) -> Zone:
    return settings.open_zone()


class ZoneSet:
    """The zones one script run may use: settings read and zones opened lazily, each at most once.

    ``open`` probes the zone (a stat of its landing collection) before anything
    expensive happens, so a zone that is down or refuses the service account is
    reported, naming it, before a packet is packed for it.
    """

    def __init__(self, config: ZonesConfig, factory: Optional[ZoneFactory] = None,
                 environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None,
                 preset_settings: Optional[Dict[str, Settings]] = None,
                 preset_zones: Optional[Dict[str, Zone]] = None, site: Optional[SiteSettings] = None) -> None:
        self.config = config
        self.site = site
        self.factory = factory or _default_factory
        self.environ = environ
        self.hostname = hostname
        self._settings: Dict[str, Settings] = dict(preset_settings or {})
        self._zones: Dict[str, Zone] = dict(preset_zones or {})
        self._owned: List[Zone] = []

    @classmethod
    def single(cls, settings: Settings, zone: Optional[Zone] = None,
               factory: Optional[ZoneFactory] = None) -> "ZoneSet":
        """The setup without a zones file: one zone, everybody routed to it (the behaviour before zones)."""
        entry = ZoneEntry(settings.zone_name, settings.env_file)
        config = ZonesConfig(zones=(entry,), default_zone=entry.name)
        return cls(config, factory, preset_settings={entry.name: settings},
                   preset_zones={entry.name: zone} if zone is not None else None)

    @property
    def multi(self) -> bool:
        """True with a zones file: messages then name the zone."""
        return self.config.source is not None

    def settings(self, entry: ZoneEntry) -> Settings:
        s = self._settings.get(entry.name)
        if s is None:
            try:
                s = load_zone_settings(entry.irods_environment_file, self.environ, self.hostname,
                                       landing=entry.landing, server_name=entry.server_name, site=self.site)
            except SettingsError as e:
                raise ZoneUnavailable(entry.name, "its configuration on the OMERO server is not usable ({})".format(
                    e)) from None
            self._settings[entry.name] = s
        return s

    def open(self, entry: ZoneEntry) -> Zone:
        zone = self._zones.get(entry.name)
        if zone is not None:
            return zone
        settings = self.settings(entry)
        try:
            zone = self.factory(entry, settings)
        except Exception as e:
            if not is_zone_failure(e):
                raise
            raise ZoneUnavailable(entry.name, "it cannot be reached or refused the OMERO service account ({})"
                                  .format(describe(e))) from None
        self._owned.append(zone)
        try:
            zone.stat(settings.landing)
        except NotFound:
            raise ZoneUnavailable(entry.name, "its landing collection {} does not exist or the OMERO service account "
                                  "cannot see it".format(settings.landing)) from None
        except Exception as e:
            if not is_zone_failure(e):
                raise
            raise ZoneUnavailable(entry.name, "it cannot be reached or refused the OMERO service account ({})"
                                  .format(describe(e))) from None
        self._zones[entry.name] = zone
        return zone

    def close(self) -> None:
        """Close the zones this set opened (never one handed in)."""
        for zone in self._owned:
            if hasattr(zone, "close"):
                try:
                    zone.close()
                except Exception:  # closing a dead connection must not hide the result
                    pass
        self._owned = []


def open_zone_set(environ: Optional[Mapping[str, str]] = None, hostname: Optional[str] = None,
                  factory: Optional[ZoneFactory] = None) -> ZoneSet:
    """The zones file when there is one, else the single environment file (omero_client.settings)."""
    from omero_client.settings import load_settings

    site = load_site_settings(environ)
    path = find_zones_file(environ, site)
    if path is None:
        return ZoneSet.single(load_settings(environ, hostname, site), factory=factory)
    return ZoneSet(load_zones(path), factory, environ, hostname, site=site)


@dataclass(frozen=True)
class ZonedSnapshot:
    """A snapshot and the zone (its label in the zones file) it was found in."""

    zone: str
    snapshot: SnapshotInfo


def list_across(zones: ZoneSet, entries: Sequence[ZoneEntry],
                omero_user: str) -> Tuple[List[ZonedSnapshot], List[ZoneUnavailable]]:
    """This user's snapshots in every zone of ``entries``, newest first, and the zones that could not be read."""
    from omero_client.snapshots import snapshots_of

    found: List[ZonedSnapshot] = []
    down: List[ZoneUnavailable] = []
    for entry in entries:
        try:
            settings = zones.settings(entry)
            zone = zones.open(entry)
            snaps = snapshots_of(zone, settings.landing, omero_user, settings.server_name)
        except ZoneUnavailable as e:
            down.append(e)
            continue
        except Exception as e:
            if not is_zone_failure(e):
                raise
            down.append(ZoneUnavailable(entry.name, "it could not be searched ({})".format(describe(e))))
            continue
        found += [ZonedSnapshot(entry.name, s) for s in snaps]
    found.sort(key=lambda z: (z.snapshot.created, z.snapshot.path), reverse=True)
    return found, down


def split_snapshot_ref(text: str) -> Tuple[Optional[str], str]:
    """``"labZone: /labZone/home/..."`` (as List shows it) -> ("labZone", path); a bare path -> (None, path)."""
    text = text.strip()
    if text.startswith("/") or ":" not in text:
        return None, text
    name, _, path = text.partition(":")
    return name.strip(), path.strip()


def resolve_snapshot_zone(zones: ZoneSet, entries: Sequence[ZoneEntry], text: str) -> Tuple[ZoneEntry, str]:
    """Which of ``entries`` a snapshot reference from the researcher points into, and its path.

    A zone label in front of the path decides; else the one routed zone whose
    iRODS zone name is the path's first component (with a single routed zone,
    that zone, exactly as before zones existed).
    """
    from omero_client.load import LoadRefused

    name, path = split_snapshot_ref(text)
    if name is not None:
        for entry in entries:
            if entry.name == name:
                return entry, path
        raise LoadRefused("you are not routed to an iRODS zone named '{}' (yours: {}); copy the snapshot as "
                          "'List iRODS Snapshots' shows it".format(name, ", ".join(e.name for e in entries)))
    if len(entries) == 1:
        return entries[0], path
    first = path.strip("/").split("/", 1)[0]
    matches = []
    for entry in entries:
        try:
            if zones.settings(entry).zone_name == first:
                matches.append(entry)
        except ZoneUnavailable:
            continue
    if len(matches) == 1:
        return matches[0], path
    if not matches:
        raise LoadRefused("{} is in none of the iRODS zones you are routed to ({}); copy the snapshot as 'List iRODS "
                          "Snapshots' shows it".format(path, ", ".join(e.name for e in entries)))
    raise LoadRefused("{} could be in several of your iRODS zones ({}); put the zone in front as 'List iRODS "
                      "Snapshots' shows it, e.g. '{}: {}'".format(path, ", ".join(e.name for e in matches),
                                                                 matches[0].name, path))
