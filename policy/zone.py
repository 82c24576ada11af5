"""The Zone port: everything the use cases may ask of an iRODS zone.

One Zone object acts as ONE iRODS user (the service account in production),
so the rights of every call are that user's rights, enforced by the zone, not
by us. Two planes:

- control plane: stat, collections, rename, ACLs, metadata, queries, delayed
  rules. In production this goes through PREP microservice calls.
- data plane: open a data object as a byte stream. In production a
  python-irodsclient session opened inside the rule (PREP byte buffers move
  about 2 MB/s, reference/prep-observed.md "Data plane").

Adapters: policy.prep_zone (PREP callback), policy.prc_zone
(python-irodsclient), simzone (simulated zone). All raise policy.errors types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, List, Optional, Protocol, Sequence, Tuple

COLLECTION = "collection"
DATA_OBJECT = "data_object"

# Access levels, lowest to highest, as iRODS 4.3/5.0 names them.
LEVELS: Tuple[str, ...] = (
    "null",
    "read_metadata",
    "read_object",
    "create_metadata",
    "modify_metadata",
    "delete_metadata",
    "create_object",
    "modify_object",
    "delete_object",
    "own",
)
LEVEL_ALIASES = {"read": "read_object", "write": "modify_object"}


def normalise_level(level: str) -> str:
    """Map msiSetACL's short names (read, write) to the names iRODS stores."""
    level = LEVEL_ALIASES.get(level, level)
    if level not in LEVELS:
        raise ValueError("unknown access level: {!r}".format(level))
    return level


def level_rank(level: str) -> int:
    return LEVELS.index(normalise_level(level))


@dataclass(frozen=True)
class Stat:
    path: str
    kind: str  # COLLECTION or DATA_OBJECT
    size: int = 0
    checksum: Optional[str] = None  # iRODS form, "sha2:" + base64(sha256)
    owner: Optional[str] = None
    modify_time: int = 0


@dataclass(frozen=True)
class Ace:
    user: str
    level: str


@dataclass(frozen=True)
class Avu:
    attribute: str
    value: str
    units: str = ""


@dataclass(frozen=True)
class MetaOp:
    """One operation of an atomic metadata batch (msi_atomic_apply_metadata_operations)."""

    operation: str  # "add" or "remove"
    attribute: str
    value: str
    units: str = ""


@dataclass
class Listing:
    collections: List[str] = field(default_factory=list)  # full paths
    data_objects: List[Stat] = field(default_factory=list)


class Zone(Protocol):
    """What a use case may do in a zone, as the user the zone object acts for."""

    zone_name: str
    user: str

    # ---- control plane
    def stat(self, path: str) -> Stat:
        """Raise NotFound when absent."""
        ...

    def create_collection(self, path: str, recursive: bool = False) -> None:
        """Non-recursive on an existing path raises AlreadyExists (-809000)."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Never overwrites: AlreadyExists (-834000/-833000); NotFound (-814000) for a missing parent."""
        ...

    def set_acl(self, path: str, user: str, level: str, recursive: bool = False) -> None: ...

    def set_inheritance(self, path: str, inherit: bool, recursive: bool = False) -> None: ...

    def acl(self, path: str) -> List[Ace]: ...

    def apply_metadata(self, path: str, ops: Sequence[MetaOp]) -> None:
        """All operations in one transaction (one catalog call)."""
        ...

    def metadata(self, path: str) -> List[Avu]: ...

    def checksum(self, path: str) -> str:
        """Compute (or return the stored) checksum, iRODS form 'sha2:<base64>'."""
        ...

    def list_collection(self, path: str) -> Listing: ...

    def find_by_metadata(self, attribute: str, value: str, kind: str = COLLECTION) -> List[str]:
        """Paths of collections (or data objects) carrying this AVU."""
        ...

    def user_type(self, name: str) -> Optional[str]:
        """'rodsuser', 'rodsadmin', 'groupadmin', 'rodsgroup', or None if no such user."""
        ...

    def schedule(self, rule_call: str, delay_seconds: int = 1) -> None:
        """Queue a delayed rule (delayExec) that runs as this zone's user."""
        ...

    def remove_object(self, path: str) -> None:
        """Unlink a data object (no trash). Only for objects this user created itself."""
        ...

    def remove_collection(self, path: str) -> None:
        """Remove an EMPTY collection."""
        ...

    # ---- data plane
    def read_small(self, path: str, limit: int) -> bytes:
        """Whole content of a small object; InvalidInput if it is larger than limit."""
        ...

    def open_read(self, path: str) -> BinaryIO: ...

    def open_new(self, path: str) -> BinaryIO:
        """Create a NEW data object for writing; AlreadyExists if the path is taken."""
        ...


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def exists(zone: Zone, path: str) -> bool:
    """Yes or no; NotFound is the expected answer for a free name, not a failure.

    An adapter with its own exists() answers without a server error: on a real server msiObjStat of a
    missing path logs an error line (issue 10), so PrepZone asks genquery. Through PREP, for a rodsuser an
    object it may not read looks missing.
    """
    from policy.errors import NotFound

    own = getattr(zone, "exists", None)
    if callable(own):
        return bool(own(path))
    try:
        zone.stat(path)
        return True
    except NotFound:
        return False


def owns(zone: Zone, path: str, user: str) -> bool:
    """Whether `user` holds `own` on path, read from the ACL (the catalog's truth; a stat's owner field
    is only who created it, and not every adapter can fill it)."""
    return any(a.user == user and a.level == "own" for a in zone.acl(path))
