"""Check a downloaded snapshot archive before omero-cli-transfer extracts it on the OMERO server.

omero transfer unpack extracts with shutil.unpack_archive, which on the Python
versions OMERO runs on follows `../`, absolute paths and links: a crafted tar
would write wherever the omero-server OS user can (its scripts, its iRODS
credentials). The checksum already ties the archive to what the service
account saved, but the OMERO server should not rely on iRODS alone for its
own safety: the same member rules as the server's unpack (policy.member_safety,
pure Python) run here over the stdlib's tar and zip readers.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from typing import Iterator, Optional

from policy.member_safety import MemberInfo, Refusal, SafetyLimits, SafetyScanner


def _tar_kind(m: tarfile.TarInfo) -> str:
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.ischr() or m.isblk():
        return "device"
    if m.isfifo():
        return "fifo"
    return "file" if m.isfile() else "other"


def _members(path: str) -> Iterator[MemberInfo]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                fmt = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF)  # 0 when the zip keeps no Unix mode
                if info.is_dir():
                    kind = "dir"
                elif fmt == stat.S_IFLNK:
                    kind = "symlink"
                elif fmt and fmt not in (stat.S_IFREG, stat.S_IFDIR):
                    kind = "other"
                elif info.flag_bits & 0x1:
                    kind = "other"  # encrypted: omero-cli-transfer could not read it anyway
                else:
                    kind = "file"
                yield MemberInfo(path=info.filename, kind=kind, size=info.file_size,
                                 raw_path=info.filename.encode("utf-8", "surrogateescape"))
        return
    with tarfile.open(path, mode="r:*") as t:
        for m in t:
            yield MemberInfo(path=m.name, kind=_tar_kind(m), size=m.size,
                             raw_path=m.name.encode("utf-8", "surrogateescape"))


def check_archive(path: str, limits: Optional[SafetyLimits] = None) -> Optional[Refusal]:
    """The first member that must not be extracted, or None when the whole archive is safe."""
    scanner = SafetyScanner(limits or SafetyLimits())
    try:
        for info in _members(path):
            refusal = scanner.add(info)
            if refusal is not None:
                return refusal
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        return Refusal(member="", rule="unreadable", detail="the archive cannot be read: {}".format(e))
    return None
