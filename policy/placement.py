"""Where a snapshot lives and what it is called: pure decisions, no iRODS calls.

OMERO never supplies a path. The root comes from the admin's template and the
mapped iRODS user; the name is built from sanitised manifest values, so no
manifest field can inject path syntax. The name is deterministic for a drop
(its time is the manifest's, not the clock's), so a retry finds its own
earlier result instead of making a second snapshot.
"""

from __future__ import annotations

import re
import unicodedata

# Used with fullmatch: Python's '$' would also accept one trailing newline ("alice\n").
_SAFE_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SAFE_ZONE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SAFE_DROP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9.-]+")


class PlacementError(ValueError):
    """A computed path would be unsafe; the drop must not be placed."""


def is_safe_drop_id(drop_id: str) -> bool:
    return bool(_SAFE_DROP.fullmatch(drop_id or "")) and drop_id not in ("quarantine",) and ".." not in drop_id


def check_logical_path(path: str) -> str:
    """Accept only absolute, normalised iRODS paths (no '.', '..', empty or control-char components)."""
    if not path.startswith("/") or path.endswith("/") or "//" in path:
        raise PlacementError("not a normalised absolute path: {!r}".format(path))
    for part in path.split("/")[1:]:
        if part in (".", "..") or any(ord(ch) < 32 or 127 <= ord(ch) <= 159 for ch in part):  # C0, DEL, C1
            raise PlacementError("unsafe path component {!r} in {!r}".format(part, path))
    return path


def snapshot_root(template: str, zone: str, irods_user: str) -> str:
    """The user's snapshot root from the admin's template ({zone}, {irods_user} only)."""
    if not _SAFE_ZONE.fullmatch(zone):
        raise PlacementError("unsafe zone name {!r}".format(zone))
    if not _SAFE_USER.fullmatch(irods_user) or irods_user in (".", ".."):
        raise PlacementError("unsafe iRODS user name {!r}".format(irods_user))
    root = template.replace("{zone}", zone).replace("{irods_user}", irods_user)
    if "{" in root or "}" in root:
        raise PlacementError("unknown placeholder left in snapshot root template {!r}".format(template))
    check_logical_path(root)
    if not root.startswith("/" + zone + "/"):
        raise PlacementError("snapshot root {!r} is outside zone {!r}".format(root, zone))
    return root


def sanitise(text: str, max_chars: int, empty: str = "") -> str:
    """Readable ASCII for a path component: accents folded, runs of anything else become '-'."""
    folded = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    out = _UNSAFE_RUN.sub("-", folded).strip(".-")
    out = re.sub(r"[-.]*-[-.]*", "-", out)
    out = re.sub(r"\.{2,}", ".", out)
    out = out[:max_chars].strip(".-")
    return out or empty


def utc_compact(iso_utc: str) -> str:
    """'2026-11-25T08:47:40.123Z' -> '20261125T084740Z' (sortable, no ':' which some tools dislike)."""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", iso_utc or "")
    if not m:
        raise PlacementError("created time is not ISO 8601 UTC: {!r}".format(iso_utc))
    return "{}{}{}T{}{}{}Z".format(*m.groups())


def drop_short(drop_id: str) -> str:
    """The last 8 safe characters of the drop id: enough to tell drops of the same second apart."""
    s = sanitise(drop_id, 64)
    return s[-8:] if s else "drop"


def snapshot_name(naming_template: str, created: str, omero_user: str, label: str, drop_id: str,
                  label_max_chars: int = 48) -> str:
    if "{drop_short}" not in naming_template:
        raise PlacementError("naming template must contain {drop_short} so names stay unique")
    name = naming_template
    parts = (("{utc}", utc_compact(created)), ("{omero_user}", sanitise(omero_user, 32, "user")),
             ("{label}", sanitise(label, label_max_chars, "snapshot")), ("{drop_short}", drop_short(drop_id)))
    for key, value in parts:
        name = name.replace(key, value)
    if "{" in name or "}" in name or "/" in name:
        raise PlacementError("naming template {!r} left unsafe characters".format(naming_template))
    name = re.sub(r"_+", "_", name).strip("_.-")
    if not name or name in (".", ".."):
        raise PlacementError("empty snapshot name")
    return name


def candidate(root: str, name: str, attempt: int) -> str:
    """attempt 1 is the plain name; later attempts add -2, -3... (a clash never overwrites)."""
    path = root + "/" + (name if attempt <= 1 else "{}-{}".format(name, attempt))
    check_logical_path(path)
    if not path.startswith(root + "/") or path.count("/") != root.count("/") + 1:
        raise PlacementError("snapshot path {!r} escapes root {!r}".format(path, root))
    return path
