"""Stream a packet folder as a tar straight into an open iRODS data object.

omero-cli-transfer's own ``.tar`` output stages the folder and then writes the
tar beside it, so a save needs twice the packet on the OMERO server's disk.
Here the folder is packed into a folder only, and the tar is produced on the
fly into the writable stream (python-irodsclient's data object, or the
simulated zone's writer): local scratch stays at one packet, and the archive's
size and sha256, which the manifest must state, are computed from the very
bytes that leave.

The tar has omero-cli-transfer's layout (uncompressed, members prefixed
``./``, a ``./`` directory entry first), so ``omero transfer unpack`` and the
server's unpack step read it exactly like one made by ``omero transfer pack x.tar``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from typing import Any, BinaryIO, Dict, Optional, Sequence, Tuple

from omero_client.progress import ProgressCallback

BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads the stream's end to this
CHUNK = 1 << 20  # bytes per write to the data object (network round trips, not syscalls, dominate)


class PacketError(ValueError):
    """The packet folder holds something a snapshot must not carry (symlink, device, ...)."""


class _HashingWriter:
    """The file object tarfile writes to: counts, hashes and reports, then forwards every byte."""

    def __init__(self, sink: BinaryIO, total: Optional[int], progress: Optional[ProgressCallback]) -> None:
        self.sink = sink
        self.total = total
        self.progress = progress
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.sink.write(data)
        if self.progress is not None:
            self.progress(self.size, max(self.total or 0, self.size) or None)
        return len(data)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Only files and directories; no local owner names; whole-second times (no pax header per member)."""
    if not (info.isfile() or info.isdir()):
        raise PacketError("the packet holds {!r}, which is neither a file nor a directory; a snapshot carries "
                          "only files and directories".format(info.name))
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    return info


def estimate_tar_size(folder: str) -> int:
    """What ``stream_folder_as_tar`` will write: exact for names up to 100 bytes, a close estimate otherwise."""
    total = BLOCK  # the "./" entry
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        for name in dirs + files:
            rel = "./" + (name if rel_root == "." else os.path.join(rel_root, name))
            total += BLOCK
            if len(rel.encode("utf-8")) > 100:
                total += 3 * BLOCK  # pax extended header: its own header + data, rounded
        for name in files:
            size = os.lstat(os.path.join(root, name)).st_size
            total += (size + BLOCK - 1) // BLOCK * BLOCK
    total += 2 * BLOCK  # end-of-archive marker
    return (total + RECORD - 1) // RECORD * RECORD


def stream_folder_as_tar(folder: str, writable: BinaryIO, progress: Optional[ProgressCallback] = None
                         ) -> Tuple[int, str]:
    """Write an uncompressed tar of ``folder`` into ``writable``; return (size, sha256 hex).

    Stream mode ('w|') never seeks, so any forward-only sink works and no tar
    file ever exists locally. The caller owns ``writable`` and closes it (for
    iRODS, closing is what completes the upload).
    """
    if not os.path.isdir(folder):
        raise PacketError("the packet folder {} does not exist".format(folder))
    counter = _HashingWriter(writable, estimate_tar_size(folder), progress)
    with tarfile.open(fileobj=counter, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK,
                      copybufsize=CHUNK) as tar:  # type: ignore[call-overload]
        tar.add(folder, arcname=".", recursive=True, filter=_normalise)
    if progress is not None:
        progress(counter.size, counter.size)
    return counter.size, counter.sha256.hexdigest()


# ------------------------------------------------------------------------------------------ zero-copy packets
DIR_MODE = 0o755  # omero-cli-transfer's DIR_PERM
FILE_MODE = 0o644


class _Exact:
    """The reader tarfile copies a member from: exactly ``size`` bytes, or a PacketError naming the source."""

    def __init__(self, reader: Any, size: int, source: str) -> None:
        self.reader = reader
        self.left = size
        self.source = source

    def read(self, n: int = -1) -> bytes:
        want = self.left if n is None or n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < want:
            block = self.reader.read(want - len(out))
            if not block:
                raise PacketError("{} ended {} bytes early; it changed or cannot be read while saving: save "
                                  "again".format(self.source, self.left - len(out)))
            out += block
        self.left -= len(out)
        return bytes(out)


def _tree(folder: str, members: Sequence[Any]) -> Dict[str, Any]:
    """A nested dict of the packet: local files of ``folder`` (its transfer.xml) and the streamed members."""
    root: Dict[str, Any] = {}

    def place(rel: str, leaf: Any) -> None:
        parts = rel.split("/")
        node = root
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PacketError("{} is both a file and a folder in the packet".format("/".join(parts[:i + 1])))
            node = child
        if parts[-1] in node:
            raise PacketError("{} is twice in the packet".format(rel))
        node[parts[-1]] = leaf

    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if os.path.islink(path) or not (os.path.isfile(path) or os.path.isdir(path)):
                raise PacketError("the packet holds {!r}, which is neither a file nor a directory; a snapshot "
                                  "carries only files and directories".format(rel))
            if os.path.isdir(path):
                place(rel, {})
            else:
                place(rel, ("local", path))
    for m in members:
        place(m.path, ("member", m))
    return root


def _flat(root: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, node in root.items():
        out[prefix + name] = node
        if isinstance(node, dict):
            out.update(_flat(node, prefix + name + "/"))
    return out


def estimate_packet_size(folder: str, members: Sequence[Any]) -> int:
    """The tar's size when every member's size is known (exports add theirs once generated)."""
    total = BLOCK
    for rel, node in _flat(_tree(folder, members)).items():
        total += BLOCK + (3 * BLOCK if len(("./" + rel).encode("utf-8")) > 100 else 0)
        if isinstance(node, tuple):
            size = os.lstat(node[1]).st_size if node[0] == "local" else (node[1].size or 0)
            total += (size + BLOCK - 1) // BLOCK * BLOCK
    total += 2 * BLOCK
    return (total + RECORD - 1) // RECORD * RECORD


def stream_packet_as_tar(folder: str, members: Sequence[Any], writable: BinaryIO,
                         progress: Optional[ProgressCallback] = None, mtime: Optional[int] = None) -> Tuple[int, str]:
    """The tar ``stream_folder_as_tar`` would make of the full packet folder, without the folder existing.

    ``folder`` holds what exists locally (transfer.xml); ``members``
    (omero_client.stream_pack.PacketMember) are read from OMERO one at a time,
    straight into the tar. Members come in tarfile.add's order (each directory,
    then its entries sorted by name, depth first), so member names and bytes
    equal those of the folder path's tar. Memory: tarfile's one CHUNK buffer
    and one CHUNK read; nothing is written locally.
    """
    if not os.path.isdir(folder):
        raise PacketError("the packet folder {} does not exist".format(folder))
    tree = _tree(folder, members)
    counter = _HashingWriter(writable, estimate_packet_size(folder, members), progress)
    now = int(time.time()) if mtime is None else mtime

    def info(name: str, isdir: bool, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE if isdir else tarfile.REGTYPE
        ti.mode = DIR_MODE if isdir else FILE_MODE
        ti.size = 0 if isdir else size
        ti.mtime = now
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(fileobj=counter, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK,
                      copybufsize=CHUNK) as tar:  # type: ignore[call-overload]
        tar.addfile(info(".", True))

        def walk(node: Dict[str, Any], prefix: str) -> None:
            for name in sorted(node):
                child = node[name]
                arc = prefix + "/" + name
                if isinstance(child, dict):
                    tar.addfile(info(arc, True))
                    walk(child, arc)
                elif child[0] == "local":
                    with open(child[1], "rb") as f:
                        tar.addfile(info(arc, False, os.fstat(f.fileno()).st_size), f)
                else:
                    member = child[1]
                    size, reader = member.open()
                    try:
                        if member.size is not None and size != member.size:
                            raise PacketError("{} is {} bytes, OMERO recorded {}; it changed while saving: save "
                                              "again".format(member.source, size, member.size))
                        tar.addfile(info(arc, False, size), _Exact(reader, size, member.source))
                        if reader.read(1):
                            raise PacketError("{} is longer than the {} bytes OMERO recorded; it changed while "
                                              "saving: save again".format(member.source, size))
                    finally:
                        reader.close()

        walk(tree, ".")
    if progress is not None:
        progress(counter.size, counter.size)
    return counter.size, counter.sha256.hexdigest()
