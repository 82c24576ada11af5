"""The admin-managed mapping from OMERO users to iRODS users (schemas/mapping-v1.schema.json).

Matching is exact and case-sensitive on both the OMERO server and the OMERO
user name. That is deliberate: the mapping decides who will own a snapshot,
so two spellings must never silently reach the same entry. OMERO user names
are case-sensitive ("Alice" and "alice" can be two people), and folding the
server name (DNS is case-insensitive) or the user name would let a drop that
the admin never enrolled reach someone else's snapshot root. The OMERO side
sends the exact strings; the admin enrols those exact strings.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from policy.schemas import JsonError, loads_strict, summarize, validate

MAPPING_VERSION = 1
MAPPING_MAX_BYTES = 64 * 1024 * 1024
FILE_MODE = 0o640


class MappingError(ValueError):
    """The mapping is unusable or an edit was refused; ``errors`` lists the problems."""

    def __init__(self, message: str, errors: Optional[Sequence[str]] = None) -> None:
        self.errors: List[str] = list(errors) if errors else [message]
        super().__init__(message)


@dataclass(frozen=True)
class MappingEntry:
    omero_server: str
    omero_user: str
    irods_user: str
    enrolled: Optional[str] = None  # UTC timestamp, e.g. 2025-01-14T10:00:00Z
    enrolled_by: Optional[str] = None

    @property
    def key(self) -> Tuple[str, str]:
        return (self.omero_server, self.omero_user)

    def to_dict(self) -> Dict[str, str]:
        d = {"omero_server": self.omero_server, "omero_user": self.omero_user, "irods_user": self.irods_user}
        if self.enrolled is not None:
            d["enrolled"] = self.enrolled
        if self.enrolled_by is not None:
            d["enrolled_by"] = self.enrolled_by
        return d


def _describe(key: Tuple[str, str]) -> str:
    return f"omero_server {key[0]!r} and omero_user {key[1]!r}"


class UserMapping:
    """An immutable set of entries, at most one per (omero_server, omero_user)."""

    def __init__(self, entries: Iterable[MappingEntry] = ()) -> None:
        self._entries: Tuple[MappingEntry, ...] = tuple(entries)
        index: Dict[Tuple[str, str], int] = {}
        for i, e in enumerate(self._entries):
            if e.key in index:
                raise MappingError(f"duplicate entry for {_describe(e.key)} (entries {index[e.key]} and {i})")
            index[e.key] = i
        self._index = index

    @property
    def entries(self) -> Tuple[MappingEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[MappingEntry]:
        return iter(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserMapping) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        return f"UserMapping({len(self._entries)} entries)"

    def get(self, omero_server: str, omero_user: str) -> Optional[MappingEntry]:
        """The entry for exactly this server and user, or None."""
        i = self._index.get((omero_server, omero_user))
        return None if i is None else self._entries[i]

    def lookup(self, omero_server: str, omero_user: str) -> Optional[str]:
        """The iRODS user for exactly this (case-sensitive) server and user, or None."""
        e = self.get(omero_server, omero_user)
        return None if e is None else e.irods_user

    def with_entry(self, entry: MappingEntry, replace: bool = False) -> UserMapping:
        """A new mapping with ``entry`` added (validated against the schema).

        An entry for the same (omero_server, omero_user) is replaced in place
        only with ``replace=True``; otherwise ``MappingError``.
        """
        errors = validate(entry.to_dict(), "mapping", "entry", definition="user")
        if errors:
            raise MappingError(summarize(errors), errors)
        i = self._index.get(entry.key)
        if i is None:
            return UserMapping(self._entries + (entry,))
        if not replace:
            raise MappingError(
                f"{_describe(entry.key)} is already mapped to iRODS user "
                f"{self._entries[i].irods_user!r}; pass replace=True to change it"
            )
        return UserMapping(self._entries[:i] + (entry,) + self._entries[i + 1 :])

    def without(self, omero_server: str, omero_user: str, missing_ok: bool = False) -> UserMapping:
        """A new mapping without the entry; ``MappingError`` if absent unless ``missing_ok``."""
        i = self._index.get((omero_server, omero_user))
        if i is None:
            if missing_ok:
                return self
            raise MappingError(f"no entry for {_describe((omero_server, omero_user))}")
        return UserMapping(self._entries[:i] + self._entries[i + 1 :])

    def to_dict(self) -> Dict[str, Any]:
        return {"mapping_version": MAPPING_VERSION, "users": [e.to_dict() for e in self._entries]}


def parse_mapping(data: Any) -> UserMapping:
    """Validate a mapping document; raise ``MappingError`` (schema errors, duplicate pairs)."""
    if not isinstance(data, dict):
        raise MappingError(f"mapping must be a JSON object, not {type(data).__name__}")
    errors = validate(data, "mapping", "mapping")
    if errors:
        raise MappingError(summarize(errors), errors)
    entries: List[MappingEntry] = []
    first: Dict[Tuple[str, str], int] = {}
    for i, u in enumerate(data["users"]):
        e = MappingEntry(
            omero_server=u["omero_server"],
            omero_user=u["omero_user"],
            irods_user=u["irods_user"],
            enrolled=u.get("enrolled"),
            enrolled_by=u.get("enrolled_by"),
        )
        if e.key in first:
            errors.append(
                f"mapping.users[{i}]: duplicate entry for {_describe(e.key)} "
                f"(already at mapping.users[{first[e.key]}])"
            )
        else:
            first[e.key] = i
        entries.append(e)
    if errors:
        raise MappingError(summarize(errors), errors)
    return UserMapping(entries)


def load_mapping(path: str, missing_ok: bool = False) -> UserMapping:
    """Read and validate the mapping file; errors name the file.

    ``missing_ok``: a file that does not exist reads as an empty mapping.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAPPING_MAX_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return UserMapping()
        raise MappingError(f"{path}: the mapping file does not exist") from None
    except OSError as e:
        raise MappingError(f"{path}: cannot read the mapping: {e.strerror or e}") from None
    if len(data) > MAPPING_MAX_BYTES:
        raise MappingError(f"{path}: the mapping is larger than {MAPPING_MAX_BYTES} bytes")
    try:
        doc = loads_strict(data, max_depth=8)
    except JsonError as e:
        raise MappingError(f"{path}: the mapping {e}") from None
    try:
        return parse_mapping(doc)
    except MappingError as e:
        raise MappingError(f"{path}: {e}", [f"{path}: {x}" for x in e.errors]) from None


def save_mapping(path: str, mapping: UserMapping) -> None:
    """Write the mapping atomically: temp file in the same directory, fsync, rename; mode 0o640.

    Readers see either the old or the new file, never a partial one. The
    mapping is validated first, so an invalid file is never written.
    """
    doc = mapping.to_dict()
    errors = validate(doc, "mapping", "mapping")
    if errors:
        raise MappingError(summarize(errors), errors)
    payload = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
