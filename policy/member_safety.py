"""Rules deciding whether an archive member may become a data object under content/.

Pure: no I/O, no libarchive. The streaming reader (policy.archive_stream) turns
every archive entry into a MemberInfo and asks a SafetyScanner before a single
byte of that member is written, so the same verdicts hold for the streaming
path and for the native fast path (which only runs on archives this scanner
accepted: msiTarFileExtract silently drops or merges members we refuse,
reference/prep-observed.md "msiTarFileExtract on hostile archives").

The first refusal wins: a hostile archive fails as a whole, naming the first
offending member and the rule it broke.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
DEVICE = "device"
FIFO = "fifo"
SOCKET = "socket"
OTHER = "other"
KINDS = (FILE, DIR, SYMLINK, HARDLINK, DEVICE, FIFO, SOCKET, OTHER)

# Expansion ratios are meaningless on a few bytes (a 100-byte gzip of a 20 KiB
# text file is "200x"), so the ratio only counts once this much has expanded.
RATIO_FLOOR_BYTES = 1 << 20

# Rule ids: short, stable, machine-readable; the lead puts them in statuses.
ABSOLUTE_PATH = "absolute_path"
PARENT_REFERENCE = "parent_reference"
SYMLINK_RULE = "symlink"
HARDLINK_RULE = "hardlink"
SPECIAL_FILE = "special_file"
DUPLICATE_NAME = "duplicate_name"
UNSTORABLE_NAME = "unstorable_name"
NAME_TOO_LONG = "name_too_long"
PATH_TOO_LONG = "path_too_long"
TOO_MANY_MEMBERS = "too_many_members"
TOO_MANY_BYTES = "too_many_bytes"
EXPANSION_RATIO = "expansion_ratio"
NOT_UTF8 = "not_utf8"
EMPTY_NAME = "empty_name"
TRUNCATED = "truncated"
UNREADABLE = "unreadable"
ENCRYPTED = "encrypted"
SIZE_MISMATCH = "size_mismatch"

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]")
_SLASHES_RE = re.compile(r"/{2,}")


@dataclass(frozen=True)
class MemberInfo:
    """One archive entry as the archive declares it, before any bytes are read."""

    path: str
    kind: str
    size: int
    raw_path: bytes = b""


@dataclass(frozen=True)
class SafetyLimits:
    """Limits from the policy config; defaults are generous for HCS plates."""

    max_members: int = 100000
    max_total_bytes: int = 1 << 40
    max_expansion_ratio: float = 200.0
    max_member_path_bytes: int = 1024
    max_member_name_bytes: int = 255
    case_insensitive_duplicates: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why an archive is refused, in words a data steward can act on."""

    member: str
    rule: str
    detail: str

    def reason(self) -> str:
        return f"member {self.member!r} refused ({self.rule}): {self.detail}"


@dataclass(frozen=True)
class ScanSummary:
    members: int
    files: int
    dirs: int
    total_bytes: int


def normalise_member_path(raw: str) -> str:
    """Map an archive name to the relative path it gets under content/.

    omero-cli-transfer tars name everything "./x"; zips name directories "x/".
    Both must land on the same relative path, or a tar and a zip of the same
    packet would unpack differently. Absolute and ".." paths are NOT made safe
    here (that would hide an attack): check_member refuses them.
    """
    path = _SLASHES_RE.sub("/", raw)
    while path.startswith("./"):
        path = path[2:]
    if path == ".":
        path = ""
    if path.endswith("/") and path != "/":
        path = path.rstrip("/")
    return path


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def check_member(info: MemberInfo, limits: SafetyLimits) -> Optional[Refusal]:
    """Rules that need only this member; cross-member rules live in SafetyScanner."""
    raw = info.path
    name = raw or "<empty>"

    def refuse(rule: str, detail: str) -> Refusal:
        return Refusal(member=name, rule=rule, detail=detail)

    # First: every other rule reads a lossy decoding of a name that is not UTF-8.
    try:
        raw.encode("utf-8")
        info.raw_path.decode("utf-8")
    except UnicodeError:
        return refuse(
            NOT_UTF8,
            f"member name {info.raw_path or raw.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; "
            "iRODS names are UTF-8, rename the file before archiving",
        )
    if raw.startswith("/") or raw.startswith("\\") or _DRIVE_RE.match(raw):
        return refuse(
            ABSOLUTE_PATH,
            f"member {raw!r} has an absolute path; an archive for a snapshot must hold relative paths "
            "only (re-export the packet without absolute names)",
        )
    components = [c for c in re.split(r"[/\\]", raw) if c != ""]
    if ".." in components:
        return refuse(
            PARENT_REFERENCE,
            f"member {raw!r} climbs out of the archive with '..'; re-create the archive from inside "
            "the packet directory",
        )
    if info.kind == SYMLINK:
        return refuse(
            SYMLINK_RULE,
            f"member {raw!r} is a symbolic link; snapshots hold regular files only (archive the "
            "target file instead of the link)",
        )
    if info.kind == HARDLINK:
        return refuse(
            HARDLINK_RULE,
            f"member {raw!r} is a hard link; snapshots hold regular files only (archive without "
            "hard links, e.g. tar --hard-dereference)",
        )
    if info.kind not in (FILE, DIR):
        return refuse(
            SPECIAL_FILE,
            f"member {raw!r} is a {info.kind} entry, not a regular file or directory; remove it from the "
            "archive",
        )
    path = normalise_member_path(raw)
    if path == "" and info.kind != DIR:
        return refuse(
            EMPTY_NAME,
            f"a {info.kind} member has an empty name (or one libarchive could not decode); the "
            "archive is malformed, re-create it",
        )
    if path == "":
        return None  # "./": the archive's root, i.e. content/ itself
    if _CONTROL_RE.search(path) or "\\" in path:
        return refuse(
            UNSTORABLE_NAME,
            f"member {raw!r} contains a control character or backslash that iRODS cannot store; "
            "rename it before archiving",
        )
    parts = path.split("/")
    if "." in parts:
        return refuse(
            UNSTORABLE_NAME,
            f"member {raw!r} has a '.' path component that iRODS cannot store as a name; "
            "re-create the archive with plain relative paths",
        )
    for part in parts:
        if _utf8_len(part) > limits.max_member_name_bytes:
            return refuse(
                NAME_TOO_LONG,
                f"member {raw!r} has a name component of {_utf8_len(part)} bytes, over the limit "
                f"of {limits.max_member_name_bytes}; shorten it",
            )
    if _utf8_len(path) > limits.max_member_path_bytes:
        return refuse(
            PATH_TOO_LONG,
            f"member {raw!r} has a path of {_utf8_len(path)} bytes, over the limit of "
            f"{limits.max_member_path_bytes}; flatten the directory tree",
        )
    return None


class SafetyScanner:
    """Cross-member rules for ONE archive, fed member by member in archive order.

    Keys are compared after NFC normalisation (and casefolding when asked):
    iRODS stores names byte for byte, so "café" composed and decomposed would
    become two objects a user cannot tell apart, and on a case-insensitive
    consumer one would overwrite the other.
    """

    def __init__(self, limits: Optional[SafetyLimits] = None) -> None:
        self.limits = limits if limits is not None else SafetyLimits()
        self.members = 0
        self.files = 0
        self.dirs = 0
        self.total_bytes = 0
        self.expanded_bytes = 0
        self.refusal: Optional[Refusal] = None
        self._seen: Dict[str, Tuple[str, str]] = {}  # key -> (path as stored, kind)
        self._new_dirs: List[str] = []
        self._current = ""

    def _key(self, path: str) -> str:
        key = unicodedata.normalize("NFC", path)
        if self.limits.case_insensitive_duplicates:
            key = key.casefold()
        return key

    def _refuse(self, member: str, rule: str, detail: str) -> Refusal:
        self.refusal = Refusal(member=member or "<empty>", rule=rule, detail=detail)
        return self.refusal

    def add(self, info: MemberInfo) -> Optional[Refusal]:
        """Admit one member, or return the refusal (and keep returning it)."""
        if self.refusal is not None:
            return self.refusal
        self._new_dirs = []
        self._current = info.path
        self.members += 1
        if self.members > self.limits.max_members:
            return self._refuse(
                info.path,
                TOO_MANY_MEMBERS,
                f"the archive has more than {self.limits.max_members} members (limit max_members); "
                "split the export or ask for a higher limit",
            )
        refusal = check_member(info, self.limits)
        if refusal is not None:
            self.refusal = refusal
            return refusal
        path = normalise_member_path(info.path)
        if path == "":
            return None
        parts = path.split("/")
        # Parents first: a parent that is an earlier FILE, or a look-alike of an
        # earlier directory, is a collision.
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            clash = self._clash(info.path, parent, DIR)
            if clash is not None:
                return clash
        clash = self._clash(info.path, path, info.kind)
        if clash is not None:
            return clash
        if info.kind == FILE:
            self.files += 1
            self.total_bytes += max(info.size, 0)
            if self.total_bytes > self.limits.max_total_bytes:
                return self._refuse(
                    info.path,
                    TOO_MANY_BYTES,
                    f"the members declare {self.total_bytes} bytes in total, over the limit of "
                    f"{self.limits.max_total_bytes} (max_total_bytes)",
                )
        return None

    def _clash(self, member: str, path: str, kind: str) -> Optional[Refusal]:
        key = self._key(path)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = (path, kind)
            if kind == DIR:
                self.dirs += 1
                self._new_dirs.append(path)
            return None
        seen_path, seen_kind = seen
        if kind == DIR and seen_kind == DIR and seen_path == path:
            return None  # the same directory named twice (or implied by a file) is harmless
        if seen_kind == FILE and kind == DIR and path != normalise_member_path(member):
            what = f"an earlier file {seen_path!r} is used as its parent directory"
        elif seen_path == path:
            what = f"an earlier {seen_kind} has the same name {seen_path!r}"
        else:
            what = "it collides with earlier {} {!r} (same name after Unicode NFC normalisation{})".format(
                seen_kind, seen_path, " and case folding" if self.limits.case_insensitive_duplicates else ""
            )
        return self._refuse(
            member,
            DUPLICATE_NAME,
            f"member {member!r} cannot be stored: {what}; one would silently replace the other, so rename "
            "one of them before archiving",
        )

    def new_dirs(self) -> List[str]:
        """Collections the last admitted member needs that no earlier member needed, parents first."""
        return list(self._new_dirs)

    def note_bytes(self, n: int) -> Optional[Refusal]:
        """Count bytes actually expanded; catches members whose size was not declared (zip)."""
        if self.refusal is not None:
            return self.refusal
        self.expanded_bytes += n
        if self.expanded_bytes > self.limits.max_total_bytes:
            return self._refuse(
                self._current,
                TOO_MANY_BYTES,
                f"the archive expands to more than {self.limits.max_total_bytes} bytes (max_total_bytes)",
            )
        return None

    def check_ratio(
        self, compressed_bytes_read: int, expanded_bytes: Optional[int] = None
    ) -> Optional[Refusal]:
        """Refuse a decompression bomb while it is still being read, not after."""
        if self.refusal is not None:
            return self.refusal
        expanded = self.expanded_bytes if expanded_bytes is None else expanded_bytes
        if expanded <= RATIO_FLOOR_BYTES:
            return None
        ratio = expanded / max(compressed_bytes_read, 1)
        if ratio > self.limits.max_expansion_ratio:
            return self._refuse(
                self._current,
                EXPANSION_RATIO,
                f"{compressed_bytes_read} archive bytes expanded to {expanded} bytes, a ratio of "
                f"{ratio:.0f} over the limit of {self.limits.max_expansion_ratio:g} "
                "(max_expansion_ratio): this looks like a decompression bomb",
            )
        return None

    def finish(self) -> ScanSummary:
        return ScanSummary(
            members=self.members, files=self.files, dirs=self.dirs, total_bytes=self.total_bytes
        )
