"""Hostile and edge-case archives, built in memory with the standard library.

Every generator returns (archive bytes, expected refusal rule or None), so a
test (here or in the use-case tests) can run the whole corpus through any
unpack path and compare the rule it reports. Nothing is read from or written
to disk; where the stdlib cannot express an attack (encrypted zip, a zip whose
header lies about its size) the bytes are crafted by hand, following APPNOTE.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import tarfile
import zipfile
import zlib
from typing import Callable, Dict, Iterable, List, Optional, Tuple

Case = Tuple[bytes, Optional[str]]

MTIME = 1700000000  # fixed, so the archives are byte-identical from run to run


def payload(n: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes (compressed archives stay honest)."""
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- tar


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mtime = MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def build_tar(
    entries: Iterable[Tuple[str, object]],
    fmt: int = tarfile.PAX_FORMAT,
    encoding: str = "utf-8",
    mode: str = "w",
) -> bytes:
    """entries: (name, bytes) for a file, (name, None) for a directory, (name, TarInfo-kwargs dict)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt, encoding=encoding) as tar:  # type: ignore
        for name, content in entries:
            if content is None:
                tar.addfile(_info(name, tarfile.DIRTYPE))
            elif isinstance(content, bytes):
                tar.addfile(_info(name, size=len(content)), io.BytesIO(content))
            elif isinstance(content, dict):
                tar.addfile(_info(name, **content))
            else:
                raise TypeError(content)
    return buf.getvalue()


def ok_tar() -> Case:
    """Shaped like omero-cli-transfer's: "./" prefixes, the root entry, explicit dirs."""
    return (
        build_tar(
            [
                ("./", None),
                ("./root_0/", None),
                ("./root_0/2023-12/", None),
                ("./root_0/2023-12/image.tiff", payload(300_000, 1)),
                ("./root_0/2023-12/empty.txt", b""),
                ("./transfer.xml", b"<OME/>\n" * 100),
            ],
            fmt=tarfile.GNU_FORMAT,
        ),
        None,
    )


def ok_tar_members() -> Dict[str, bytes]:
    """What ok_tar() must unpack to."""
    return {
        "root_0/2023-12/image.tiff": payload(300_000, 1),
        "root_0/2023-12/empty.txt": b"",
        "transfer.xml": b"<OME/>\n" * 100,
    }


def ok_tar_gz() -> Case:
    data, _ = ok_tar()
    return gzip.compress(data, mtime=0), None


def ok_zip() -> Case:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("root_0/", b"")
        zf.writestr("root_0/2023-12/image.tiff", payload(300_000, 1))
        zf.writestr("root_0/2023-12/empty.txt", b"")
        zf.writestr("transfer.xml", b"<OME/>\n" * 100)
    return buf.getvalue(), None


class _Unseekable(io.RawIOBase):
    """Makes zipfile write "data descriptor" entries (sizes after the data)."""

    def __init__(self) -> None:
        self.out = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return self.out.write(b)  # type: ignore[arg-type]

    def seekable(self) -> bool:
        return False


def ok_zip_data_descriptor(compression: int = zipfile.ZIP_DEFLATED) -> Case:
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression=compression) as zf:  # type: ignore[arg-type]
        for name, content in ok_tar_members().items():
            with zf.open(name, "w") as member:
                member.write(content)
    return sink.out.getvalue(), None


def empty_tar() -> Case:
    return build_tar([]), None


def empty_zip() -> Case:
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return buf.getvalue(), None


def traversal_tar() -> Case:
    return build_tar(
        [("./ok.txt", b"fine"), ("./../../etc/passwd", b"root::0:0::/:/bin/sh\n")]
    ), "parent_reference"


def absolute_tar() -> Case:
    return build_tar([("/tmp/x", b"owned")]), "absolute_path"


def symlink_tar() -> Case:
    return build_tar([("./link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})]), "symlink"


def hardlink_tar() -> Case:
    return (
        build_tar([("./a.txt", b"data"), ("./b.txt", {"type": tarfile.LNKTYPE, "linkname": "a.txt"})]),
        "hardlink",
    )


def chardev_tar() -> Case:
    return (
        build_tar([("./null", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})]),
        "special_file",
    )


def blockdev_tar() -> Case:
    return build_tar([("./sda", {"type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0})]), "special_file"


def fifo_tar() -> Case:
    return build_tar([("./pipe", {"type": tarfile.FIFOTYPE})]), "special_file"


def duplicate_tar() -> Case:
    return build_tar([("./a.txt", b"first"), ("a.txt", b"second")]), "duplicate_name"


def nfc_twin_tar() -> Case:
    """GNU headers carry raw bytes, so libarchive hands both spellings through unchanged."""
    return (
        build_tar(
            [("./caf\u00e9.txt", b"composed"), ("./cafe\u0301.txt", b"decomposed")], fmt=tarfile.GNU_FORMAT
        ),
        "duplicate_name",
    )


def nfc_twin_pax_tar() -> Case:
    """pax names are UTF-8 records: libarchive itself folds NFD to NFC, so both read as 'café.txt'."""
    return (
        build_tar(
            [("./caf\u00e9.txt", b"composed"), ("./cafe\u0301.txt", b"decomposed")], fmt=tarfile.PAX_FORMAT
        ),
        "duplicate_name",
    )


def nfc_twin_dirs_tar() -> Case:
    """Twins as implicit parent collections: two collections that look the same."""
    return (
        build_tar(
            [("caf\u00e9/a.txt", b"composed"), ("cafe\u0301/b.txt", b"decomposed")], fmt=tarfile.GNU_FORMAT
        ),
        "duplicate_name",
    )


def nfd_pax_tar() -> Case:
    """One NFD name in a pax tar: accepted, and read back by libarchive as NFC."""
    return build_tar([("cafe\u0301/b.txt", b"decomposed")], fmt=tarfile.PAX_FORMAT), None


def case_twin_tar() -> Case:
    """Refused only when the config asks for case-insensitive names."""
    return build_tar([("Image.TIF", b"upper"), ("image.tif", b"lower")]), "duplicate_name"


def file_then_child_tar() -> Case:
    return build_tar([("./a", b"a file"), ("./a/b", b"under a file")]), "duplicate_name"


def dir_then_file_tar() -> Case:
    return build_tar([("./a/", None), ("./a", b"a file named like the dir")]), "duplicate_name"


def repeated_dir_tar() -> Case:
    """The same directory twice is harmless (appended tars do it)."""
    return build_tar([("./d/", None), ("./d/x", b"x"), ("./d/", None)]), None


def many_members_tar(n: int) -> Case:
    """n zero-byte files: 512 header bytes each, no data blocks."""
    return build_tar(((f"f{i:07d}", b"") for i in range(n)), fmt=tarfile.USTAR_FORMAT), "too_many_members"


def non_utf8_tar() -> Case:
    """Raw bytes 0xff 0xfe in a ustar header: no pax record, no charset, just bytes."""
    return build_tar([("\xff\xfe.txt", b"bytes")], fmt=tarfile.USTAR_FORMAT, encoding="latin-1"), "not_utf8"


def empty_name_tar() -> Case:
    """libarchive returns no name at all for an empty one."""
    return build_tar([("", b"nameless")]), "empty_name"


def control_char_tar() -> Case:
    return build_tar([("./bad\nname.txt", b"x")]), "unstorable_name"


def backslash_tar() -> Case:
    return build_tar([("./dir\\file.txt", b"x")]), "unstorable_name"


def long_name_tar() -> Case:
    return build_tar([("./" + "n" * 300 + ".txt", b"x")]), "name_too_long"


def long_path_tar() -> Case:
    return build_tar([("/".join(["d" * 200] * 6) + "/f.txt", b"x")]), "path_too_long"


def truncated_tar() -> Case:
    """Cut in the middle of a member's data, as an interrupted upload would."""
    data = build_tar([("./a.txt", b"small"), ("./big.bin", payload(200_000, 2))], fmt=tarfile.USTAR_FORMAT)
    return data[: 1536 + 100_000], "truncated"


def truncated_tar_gz() -> Case:
    data, _ = ok_tar()
    packed = gzip.compress(data, mtime=0)
    return packed[: len(packed) // 2], "truncated"


def gzip_bomb(size: int = 200 << 20) -> Case:
    """One file of zeros in a tar.gz: ~1000x compression, compressed without holding it."""
    header = _info("./zeros.bin", size=size).tobuf(tarfile.USTAR_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip wrapper
    parts: List[bytes] = [comp.compress(header)]
    chunk = bytes(1 << 20)
    left = size
    while left:
        n = min(left, len(chunk))
        parts.append(comp.compress(chunk[:n]))
        left -= n
    pad = (-size) % 512
    parts.append(comp.compress(bytes(pad + 1024)))
    parts.append(comp.flush())
    return b"".join(parts), "expansion_ratio"


def mtree_text() -> Case:
    """libarchive's "all" reads mtree, which names files on the server's own disk."""
    return b"#mtree\n./x type=file contents=/etc/hostname\n", "unreadable"


def garbage() -> Case:
    return b"this is not an archive at all\n" * 40, "unreadable"


# --------------------------------------------------------------------------- zip, by hand


def raw_zip(entries: List[Dict[str, object]]) -> bytes:
    """A zip from explicit header fields (APPNOTE 4.3.7 / 4.3.12 / 4.3.16).

    Each entry: name (bytes), data (bytes as stored), and optionally flag,
    method, crc, csize, usize. zipfile cannot write lies or encryption, this can.
    """
    out = io.BytesIO()
    central: List[bytes] = []
    for e in entries:
        name = e["name"]
        data = e["data"]
        assert isinstance(name, bytes) and isinstance(data, bytes)
        flag = int(e.get("flag", 0))  # type: ignore[call-overload]
        method = int(e.get("method", 0))  # type: ignore[call-overload]
        crc = int(e.get("crc", zlib.crc32(data)))  # type: ignore[call-overload]
        csize = int(e.get("csize", len(data)))  # type: ignore[call-overload]
        usize = int(e.get("usize", len(data)))  # type: ignore[call-overload]
        offset = out.tell()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, flag, method, 0, 0x21, crc, csize, usize, len(name), 0
            )
        )
        out.write(name)
        out.write(data)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                0x031E,
                20,
                flag,
                method,
                0,
                0x21,
                crc,
                csize,
                usize,
                len(name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                offset,
            )
            + name
        )
    cd_offset = out.tell()
    cd = b"".join(central)
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(cd), cd_offset, 0))
    return out.getvalue()


def _zipcrypto(data: bytes, password: bytes, check_byte: int, seed: int = 7) -> bytes:
    """Traditional PKWARE encryption (APPNOTE 6.1): 12-byte header, then the data."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc(value: int, byte: int) -> int:
        return (~zlib.crc32(bytes([byte]), ~value & 0xFFFFFFFF)) & 0xFFFFFFFF

    def update(byte: int) -> None:
        keys[0] = crc(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc(keys[2], keys[1] >> 24)

    for b in password:
        update(b)
    out = bytearray()
    for p in random.Random(seed).randbytes(11) + bytes([check_byte]):
        t = keys[2] | 2
        out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
        update(p)
    for p in data:
        t = keys[2] | 2
        out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
        update(p)
    return bytes(out)


ZIP_PASSWORD = b"secret"
ENCRYPTED_PLAIN = b"confidential image bytes\n" * 10


def encrypted_zip() -> Case:
    """A real ZipCrypto entry (zipfile decrypts it with ZIP_PASSWORD)."""
    crc = zlib.crc32(ENCRYPTED_PLAIN)
    sealed = _zipcrypto(ENCRYPTED_PLAIN, ZIP_PASSWORD, crc >> 24)
    entry = {"name": b"secret.txt", "data": sealed, "flag": 1, "crc": crc, "usize": len(ENCRYPTED_PLAIN)}
    return raw_zip([entry]), "encrypted"


def zip_slip() -> Case:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr("../../evil.sh", b"#!/bin/sh\n")
    return buf.getvalue(), "parent_reference"


def zip_symlink() -> Case:
    """A unix symlink in a zip: its type lives only in the central directory.

    libarchive's streaming zip reader sees local headers only, so the entry
    reads as a regular file whose content is the link target text: stored as a
    plain small object, harmless, and therefore not refused (a reader of the
    central directory, e.g. a native extractor, would see a symlink).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (0o120777 << 16) & 0xFFFF0000
        zf.writestr(info, b"/etc/passwd")
    return buf.getvalue(), None


def zip_bad_crc() -> Case:
    data = b"hello world"
    return raw_zip([{"name": b"bad.txt", "data": data, "crc": zlib.crc32(data) ^ 1}]), "unreadable"


def zip_size_lie() -> Case:
    """A stored entry whose header claims 10 bytes while 5 are stored."""
    data = b"hello"
    return raw_zip([{"name": b"lie.txt", "data": data, "usize": 10}]), "size_mismatch"


def zip_absolute_windows() -> Case:
    return raw_zip([{"name": b"C:/Windows/evil.dll", "data": b"MZ"}]), "absolute_path"


# --------------------------------------------------------------------------- streams


class ZeroTarStream(io.RawIOBase):
    """A tar of one member of `size` zero bytes, produced on the fly (never held in memory)."""

    def __init__(self, size: int, name: str = "big.bin") -> None:
        self._head = _info(name, size=size).tobuf(tarfile.USTAR_FORMAT)
        self._total = len(self._head) + size + ((-size) % 512) + 1024
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: object) -> int:
        view = memoryview(b).cast("B")  # type: ignore[arg-type]
        n = min(len(view), self._total - self._pos)
        if n <= 0:
            return 0
        view[:n] = bytes(n)
        head_left = len(self._head) - self._pos
        if head_left > 0:
            k = min(head_left, n)
            view[:k] = self._head[self._pos : self._pos + k]
        self._pos += n
        return n

    @property
    def total(self) -> int:
        return self._total


class CountingStream(io.RawIOBase):
    """Counts how much of a source was actually pulled; fails after fail_after bytes if asked."""

    def __init__(self, data: bytes, fail_after: Optional[int] = None) -> None:
        self._src = io.BytesIO(data)
        self.consumed = 0
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, b: object) -> int:
        if self._fail_after is not None and self.consumed >= self._fail_after:
            raise ConnectionResetError("simulated iRODS connection loss")
        n = self._src.readinto(b)  # type: ignore[arg-type]
        self.consumed += n
        return n


HOSTILE: Dict[str, Callable[[], Case]] = {
    "traversal": traversal_tar,
    "absolute": absolute_tar,
    "symlink": symlink_tar,
    "hardlink": hardlink_tar,
    "chardev": chardev_tar,
    "blockdev": blockdev_tar,
    "fifo": fifo_tar,
    "duplicate": duplicate_tar,
    "nfc_twin": nfc_twin_tar,
    "nfc_twin_pax": nfc_twin_pax_tar,
    "nfc_twin_dirs": nfc_twin_dirs_tar,
    "file_then_child": file_then_child_tar,
    "dir_then_file": dir_then_file_tar,
    "non_utf8": non_utf8_tar,
    "empty_name": empty_name_tar,
    "control_char": control_char_tar,
    "backslash": backslash_tar,
    "long_name": long_name_tar,
    "long_path": long_path_tar,
    "truncated": truncated_tar,
    "truncated_gz": truncated_tar_gz,
    "zip_slip": zip_slip,
    "zip_bad_crc": zip_bad_crc,
    "zip_size_lie": zip_size_lie,
    "zip_absolute_windows": zip_absolute_windows,
    "encrypted_zip": encrypted_zip,
    "mtree": mtree_text,
    "garbage": garbage,
}

VALID: Dict[str, Callable[[], Case]] = {
    "tar": ok_tar,
    "tar_gz": ok_tar_gz,
    "zip": ok_zip,
    "zip_data_descriptor": ok_zip_data_descriptor,
    "zip_stored_data_descriptor": lambda: ok_zip_data_descriptor(zipfile.ZIP_STORED),
    "empty_tar": empty_tar,
    "empty_zip": empty_zip,
    "repeated_dir": repeated_dir_tar,
    "zip_symlink": zip_symlink,
    "nfd_pax": nfd_pax_tar,
}


# --------------------------------------------------------------------------- issue 6 additions
# Appended for the robustness suite (tests/test_trust_boundary.py runs every case through the whole pipeline on
# both unpack paths). Header blocks are built one by one so that a long name can be given in a GNU
# ././@LongLink record or a pax record while the header's own name says something else.


def _header_block(ti: tarfile.TarInfo, fmt: int) -> bytes:
    """Exactly one 512-byte header for ti (tarfile's own tobuf() would add its long-name records)."""
    return ti._create_header(ti.get_info(), fmt, "utf-8", "surrogateescape")  # type: ignore[attr-defined]


def _padded(data: bytes) -> bytes:
    return data + bytes((-len(data)) % 512)


def _member(name: str, content: bytes, fmt: int = tarfile.GNU_FORMAT, kind: bytes = tarfile.REGTYPE) -> bytes:
    ti = _info(name, kind=kind, size=len(content))
    return _header_block(ti, fmt) + _padded(content)


def _longlink(name: bytes) -> bytes:
    """A GNU long-name record (type 'L', named ././@LongLink) announcing the next member's real name."""
    data = name + b"\0"
    ti = _info("././@LongLink", kind=tarfile.GNUTYPE_LONGNAME, size=len(data))
    return _header_block(ti, tarfile.GNU_FORMAT) + _padded(data)


def _pax_path(path: str) -> bytes:
    """A pax extended header (type 'x') whose path record overrides the next header's name."""
    body = " path={}\n".format(path).encode("utf-8")
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n = len(str(n).encode()) + len(body)
    rec = str(n).encode() + body
    ti = _info("PaxHeaders.0/x", kind=tarfile.XHDTYPE, size=len(rec))
    return _header_block(ti, tarfile.USTAR_FORMAT) + _padded(rec)


_TAR_END = bytes(1024)


def longlink_traversal_tar() -> Case:
    """The header says 'harmless.txt'; the GNU long name in front of it says '../../etc/evil'."""
    return _longlink(b"../../etc/evil") + _member("harmless.txt", b"x") + _TAR_END, "parent_reference"


def longlink_absolute_tar() -> Case:
    return _longlink(b"/etc/evil") + _member("harmless.txt", b"x") + _TAR_END, "absolute_path"


def longlink_last_wins_tar() -> Case:
    """Two long-name records in a row: libarchive takes the last one (Python's tarfile the first)."""
    return (_longlink(b"safe/name.txt") + _longlink(b"../evil.txt") + _member("harmless.txt", b"x") + _TAR_END,
            "parent_reference")


def longlink_dangling_tar() -> Case:
    """A long-name record with no member after it: the archive is damaged."""
    return _longlink(b"a" * 300) + _TAR_END, "unreadable"


def pax_path_traversal_tar() -> Case:
    """The ustar name is harmless, the pax 'path' record that overrides it is not."""
    return _pax_path("../../evil.txt") + _member("harmless.txt", b"x", tarfile.USTAR_FORMAT) + _TAR_END, \
        "parent_reference"


def implicit_dir_then_file_tar() -> Case:
    """'a' becomes a collection through 'a/b', then a file 'a' arrives."""
    return build_tar([("./a/b", b"x"), ("./a", b"file named like the directory")]), "duplicate_name"


def nested_dir_then_file_tar() -> Case:
    return build_tar([("./x/y/", None), ("./x/y/z", b"z"), ("./x/y", b"file named like the directory")]), \
        "duplicate_name"


def zip_duplicate_names() -> Case:
    """Two entries of one name (local headers and central directory agree): which one would unzip keep?"""
    return raw_zip([{"name": b"a.txt", "data": b"first"}, {"name": b"a.txt", "data": b"second"}]), "duplicate_name"


def zip_dir_then_file() -> Case:
    return raw_zip([{"name": b"a/", "data": b""}, {"name": b"a", "data": b"file named like the directory"}]), \
        "duplicate_name"


def _zip64_entry(name: bytes, data: bytes, usize: Optional[int] = None) -> Tuple[bytes, bytes]:
    """A stored entry whose sizes live only in the zip64 extra field (0xFFFFFFFF in the header)."""
    declared = len(data) if usize is None else usize
    crc = zlib.crc32(data)
    extra = struct.pack("<HHQQ", 1, 16, declared, len(data))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                        len(extra)) + name + extra + data
    cextra = struct.pack("<HHQQQ", 1, 24, declared, len(data), 0)
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(cextra), 0, 0, 0, 0o100644 << 16, 0xFFFFFFFF) + name + cextra
    return local, central


def _zip64_archive(entries: List[Tuple[bytes, bytes]]) -> bytes:
    """Entries at offset 0.. with zip64 end-of-central-directory record and locator (one entry: offset 0)."""
    body = b"".join(local for local, _ in entries)
    cd = b"".join(central for _, central in entries)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(cd), len(body))
    locator = struct.pack("<IIQI", 0x07064B50, 0, len(body) + len(cd), 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + cd + z64 + locator + eocd


def zip64_size_lie() -> Case:
    """The zip64 extra field claims 10 bytes, 5 are stored."""
    return _zip64_archive([_zip64_entry(b"a.txt", b"hello", usize=10)]), "size_mismatch"


def zip64_huge_declared() -> Case:
    """The zip64 extra field claims 2**62 bytes: refused on the declaration, before any byte is written."""
    return _zip64_archive([_zip64_entry(b"a.txt", b"hello", usize=1 << 62)]), "too_many_bytes"


def zip64_forced() -> Case:
    """A well-formed zip64 entry (zipfile's force_zip64) beside an ordinary one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        with zf.open("big.bin", "w", force_zip64=True) as member:
            member.write(payload(5000, 3))
        zf.writestr("transfer.xml", b"<OME/>")
    return buf.getvalue(), None


def literal_longlink_name_tar() -> Case:
    """A REGULAR file whose name is '././@LongLink' (pax): just a file called '@LongLink'."""
    return build_tar([("././@LongLink", b"not a long-name record"), ("./transfer.xml", b"<OME/>")]), None


def longlink_embedded_nul_tar() -> Case:
    """A long name with a NUL inside: everything after the NUL is ignored by every reader ('ok')."""
    return _longlink(b"ok\0../../evil") + _member("harmless.txt", b"x") + _TAR_END, None


def long_gnu_name_tar() -> Case:
    """A legitimate 150-character name, written by tarfile as a GNU long-name record."""
    return build_tar([("./" + "d" * 60 + "/" + "n" * 88 + ".tif", b"pixels"), ("./transfer.xml", b"<OME/>")],
                     fmt=tarfile.GNU_FORMAT), None


def empty_tar_gz() -> Case:
    return gzip.compress(build_tar([]), mtime=0), None


def _transfer_xml() -> bytes:
    import os

    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "transfer.xml"), "rb") as f:
        return f.read()


def transfer_xml_absent_files_tar() -> Case:
    """The real transfer.xml of the fixture packet, without the image files it describes (incomplete_project-like)."""
    return build_tar([("./", None), ("./transfer.xml", _transfer_xml())], fmt=tarfile.GNU_FORMAT), None


def transfer_xml_absent_files_zip() -> Case:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("transfer.xml", _transfer_xml())
    return buf.getvalue(), None


def case_twin_zip() -> Case:
    """Refused only when the config asks for case-insensitive names."""
    return raw_zip([{"name": b"Image.TIF", "data": b"upper"}, {"name": b"image.tif", "data": b"lower"}]), \
        "duplicate_name"


def zip_cd_disagrees_with_local() -> Case:
    """Local headers say a.txt and b.txt; the central directory says a.txt twice.

    The streaming reader sees only local headers, so the snapshot holds a.txt and b.txt (what the bytes are);
    a central-directory reader would see a duplicate. Not refused, not a risk: nothing is named twice in iRODS.
    """
    local = raw_zip([{"name": b"a.txt", "data": b"first"}, {"name": b"b.txt", "data": b"other"}])
    central = raw_zip([{"name": b"a.txt", "data": b"first"}, {"name": b"a.txt", "data": b"other"}])
    cd_offset = struct.unpack("<I", local[-6:-2])[0]  # the same in both: names of equal length
    return local[:cd_offset] + central[cd_offset:], None


HOSTILE.update({
    "longlink_traversal": longlink_traversal_tar,
    "longlink_absolute": longlink_absolute_tar,
    "longlink_last_wins": longlink_last_wins_tar,
    "longlink_dangling": longlink_dangling_tar,
    "pax_path_traversal": pax_path_traversal_tar,
    "implicit_dir_then_file": implicit_dir_then_file_tar,
    "nested_dir_then_file": nested_dir_then_file_tar,
    "zip_duplicate_names": zip_duplicate_names,
    "zip_dir_then_file": zip_dir_then_file,
    "zip64_size_lie": zip64_size_lie,
    "zip64_huge_declared": zip64_huge_declared,
})

VALID.update({
    "zip64_forced": zip64_forced,
    "literal_longlink_name": literal_longlink_name_tar,
    "longlink_embedded_nul": longlink_embedded_nul_tar,
    "long_gnu_name": long_gnu_name_tar,
    "empty_tar_gz": empty_tar_gz,
    "transfer_xml_absent_files": transfer_xml_absent_files_tar,
    "transfer_xml_absent_files_zip": transfer_xml_absent_files_zip,
})

def quoted_names_tar() -> Case:
    """Member names with a single quote, '%' and '_' (an OMERO user's "Bob's image.tif"): every catalog query
    about them must double the quote (a lone quote makes the real server refuse the query, rounds 11-12) and
    LIKE's wildcards must not let a sibling ('q_c' vs "q'c") stand in for them."""
    return build_tar([("./", None), ("./root_0/", None), ("./root_0/Bob's dir/", None),
                      ("./root_0/Bob's dir/it's 100%_done.tif", payload(5000, 7)),
                      ("./root_0/Bob_s dir/it_s.tif", payload(300, 8)), ("./root_0/q'c/o'1.txt", b"q"),
                      ("./transfer.xml", b"<OME/>\n")]), None


def quoted_names_zip() -> Case:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("root_0/Bob's dir/it's 100%_done.tif", payload(5000, 7))
        zf.writestr("root_0/Bob_s dir/it_s.tif", payload(300, 8))
        zf.writestr("transfer.xml", b"<OME/>\n")
    return buf.getvalue(), None


VALID.update({"quoted_names": quoted_names_tar, "quoted_names_zip": quoted_names_zip})


def longlink_first_vs_last_tar() -> Case:
    """Two long-name records: libarchive (the scan, the streaming path, iRODS' own tar plugin) takes the last
    ('safe/name.txt'); Python's tarfile, which the simulated msiTarFileExtract uses, takes the first
    ('../evil.txt') and drops it. The fast path must notice the disagreement, never write what the scan did not
    see: it fails the snapshot (member lists differ) and keeps nothing."""
    return (_longlink(b"../evil.txt") + _longlink(b"safe/name.txt") + _member("harmless.txt", b"x") + _TAR_END,
            None)


# Cases whose verdict depends on the configuration, or that another reader sees differently. Each: gen, unpack
# settings, rule (expected refusal or None), members (what an accepted archive unpacks to), fast_disagrees
# (the simulated native extractor reads it differently: the fast path must fail it cleanly instead).
CONFIGURED: Dict[str, Dict[str, object]] = {
    "case_twin_tar_ci": {"gen": case_twin_tar, "unpack": {"case_insensitive_duplicates": True},
                         "rule": "duplicate_name"},
    "case_twin_zip_ci": {"gen": case_twin_zip, "unpack": {"case_insensitive_duplicates": True},
                         "rule": "duplicate_name"},
    "nfc_twin_tar_ci": {"gen": nfc_twin_tar, "unpack": {"case_insensitive_duplicates": True},
                        "rule": "duplicate_name"},
    "case_twin_tar_cs": {"gen": case_twin_tar, "unpack": {"case_insensitive_duplicates": False},
                         "members": ["Image.TIF", "image.tif"]},
    "case_twin_zip_cs": {"gen": case_twin_zip, "unpack": {"case_insensitive_duplicates": False},
                         "members": ["Image.TIF", "image.tif"]},
    "zip_cd_disagrees_with_local": {"gen": zip_cd_disagrees_with_local, "members": ["a.txt", "b.txt"]},
    "longlink_first_vs_last": {"gen": longlink_first_vs_last_tar, "members": ["safe/name.txt"],
                               "fast_disagrees": True},
}
