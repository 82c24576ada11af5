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
from typing import BinaryIO, Optional, Tuple

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
