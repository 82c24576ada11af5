"""One sequential pass over a snapshot archive: safety scan, member hashes, optional writes.

Why streaming: the archive lives in iRODS; copying it (or a member) to local
disk first would double the I/O and need scratch space the server may not
have. libarchive reads tar, tar.gz and zip from a forward-only stream, so the
archive is read ONCE and every member written ONCE, in memory bounded by one
write buffer plus libarchive's own block, whatever the member sizes.

Why big writes: on a real server every data-object write costs a round trip;
writing libarchive's ~4 KiB blocks one by one made a 200 MiB unpack take 84 s
against 25.7 s with 4 MiB writes (reference/prep-observed.md, "Unpacking a
200 MiB, 152-member tar"). Member bytes are therefore read straight into one
preallocated write_chunk buffer and handed to the sink only when it is full
(or the member ends).

Why only tar/zip/gzip: libarchive's "all" also speaks mtree (a text format
that can name files on the server's own disk), cpio, ar, iso9660, rar, 7z ...
and its "all" filters may run external programs. Snapshots are
omero-cli-transfer packets: tar, tar.gz or zip, nothing else is opened.

libarchive is imported inside the functions: the policy package is loaded by
the rule engine for every PEP, most of which never unpack anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import locale
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, List, Optional, Protocol

from policy.member_safety import (
    DEVICE,
    DIR,
    ENCRYPTED,
    FIFO,
    FILE,
    HARDLINK,
    OTHER,
    SIZE_MISMATCH,
    SOCKET,
    SYMLINK,
    TRUNCATED,
    UNREADABLE,
    MemberInfo,
    Refusal,
    SafetyLimits,
    SafetyScanner,
    normalise_member_path,
)

ARCHIVE_LEVEL = "<archive>"  # Refusal.member when no single member is to blame
BACKGROUND_HASH_MIN_BLOCK = 64 << 10  # below this a helper thread's hand-off costs more than it saves

_AE_IFMT = 0o170000
_AE_IFREG = 0o100000
_AE_IFDIR = 0o040000
_AE_IFLNK = 0o120000
_AE_IFCHR = 0o020000
_AE_IFBLK = 0o060000
_AE_IFIFO = 0o010000
_AE_IFSOCK = 0o140000


class MemberSink(Protocol):
    """Where unpacked members go (iRODS in production, a dict or a directory in tests).

    A sink may also offer `put_member(relpath, data, sha256_hex)`: a member whose bytes were all read
    (and checked) into one buffer is then written in ONE call instead of open/write/close (on a real
    server one request instead of about twelve round trips, bench/README.md "Issue 17"). The pass uses
    it for every member smaller than its write buffer; an attribute set to None means "not offered".
    """

    def open_member(self, relpath: str, size: int) -> BinaryIO:
        """A writable stream for a new member; the caller closes it. size is -1 if unknown."""
        ...

    def make_collection(self, relpath: str) -> None: ...


class ParallelMemberSink(MemberSink, Protocol):
    """A sink whose members may be written from other threads.

    prepare_member runs on the reading thread, in archive order, right where
    the one-writer pass opens the member (collections, lock heartbeat);
    open_prepared runs on a writer thread and must be safe to call from
    several threads at once (one connection per open object).
    """

    def prepare_member(self, relpath: str, size: int) -> None: ...

    def open_prepared(self, relpath: str, size: int) -> BinaryIO: ...

    # optional, like MemberSink.put_member: `put_prepared(relpath, data, sha256_hex)` on a writer thread, for
    # a member prepared on the reading thread and held whole


@dataclass
class MemberResult:
    path: str
    size: int
    sha256: str


@dataclass
class UnpackReport:
    """What one pass saw.

    archive_sha256 covers every byte of the source only when refusal is None;
    after a refusal the pass stops early and it is "" so that nobody compares a
    partial hash with the manifest. archive_bytes is always what was consumed.
    partial names a member that was opened on the sink but not completed (the
    caller's rollback must remove it with the rest).
    """

    members: List[MemberResult] = field(default_factory=list)
    dirs: List[str] = field(default_factory=list)
    total_bytes: int = 0
    archive_sha256: str = ""
    archive_bytes: int = 0
    refusal: Optional[Refusal] = None
    partial: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


class HashingReader:
    """Forward-only view of the source that hashes every byte libarchive pulls through it.

    This is how the archive's own sha256 is known at the end of the single
    pass. It says it is not seekable on purpose: libarchive would otherwise
    seek to a zip's central directory and back, reading bytes twice and out of
    order (and hashing the wrong thing).
    """

    def __init__(self, src: BinaryIO, background: bool = False) -> None:
        self._src = src
        self._sha = hashlib.sha256()
        self.bytes_read = 0
        self.error: Optional[BaseException] = None
        # background: the archive's own hash runs on a helper thread (hashlib releases the GIL), overlapping
        # libarchive's parsing and the member hashes of the reading thread. A block is hashed while
        # libarchive reads it (both only read it); the next readinto waits for that hash before the caller's
        # buffer is filled again, so every byte is hashed once, in order.
        self._hasher: Any = None
        self._pending: Any = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-sha256")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def readinto(self, buf: Any) -> int:
        self._settle()
        view = memoryview(buf).cast("B")
        readinto = getattr(self._src, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._src.read(len(view))
            n = len(data)
            view[:n] = data
        if n:
            if self._hasher is not None:
                self._pending = self._hasher.submit(self._sha.update, view[:n])
            else:
                self._sha.update(view[:n])
            self.bytes_read += n
        return n

    def read(self, size: int = -1) -> bytes:
        self._settle()
        data = self._src.read(size)
        self._sha.update(data)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        """Finish the pending hash and stop the helper thread (idempotent)."""
        self._settle()
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None

    def drain(self, chunk: int = 1 << 20) -> int:
        """Read (and hash) whatever libarchive left after the end of the archive."""
        buf = bytearray(chunk)
        total = 0
        while True:
            n = self.readinto(buf)
            if not n:
                return total
            total += n

    def hexdigest(self) -> str:
        self._settle()
        return self._sha.hexdigest()


def scan_archive(
    src: BinaryIO, limits: Optional[SafetyLimits] = None, block_size: int = 1 << 20
) -> UnpackReport:
    """Check and hash every member without writing anything.

    The fast path (native bulk extraction) runs only on an archive this scan
    accepted, then compares the extracted checksums with the ones found here.
    """
    return _run(src, None, limits or SafetyLimits(), block_size, block_size)


def stream_unpack(
    src: BinaryIO,
    sink: MemberSink,
    limits: Optional[SafetyLimits] = None,
    write_chunk: int = 4 << 20,
    block_size: int = 1 << 20,
    writers: int = 1,
    max_buffered: Optional[int] = None,
) -> UnpackReport:
    """Check, hash and write every member in the same single pass.

    Each member is checked before any of its bytes are written; on a refusal
    the pass stops at once and the caller rolls back what was written.

    writers > 1 (and a sink with prepare_member/open_prepared, see
    ParallelMemberSink): members are written by that many writer threads
    (policy.parallel_write), the reading and every decision staying on this
    thread and in this order; at most max_buffered bytes (default (writers + 1)
    x write_chunk) are read ahead for the writers. The pass returns only after every
    writer stopped.
    """
    if write_chunk <= 0 or block_size <= 0 or writers <= 0:
        raise ValueError("write_chunk, block_size and writers must be positive")
    return _run(src, sink, limits or SafetyLimits(), write_chunk, block_size, writers, max_buffered)


# ---------------------------------------------------------------------------
# libarchive plumbing


class _CallbackSafeReader:
    """Keeps source errors out of libarchive's C callback.

    An exception raised inside a ctypes callback is printed and swallowed, and
    libarchive would see end-of-file: a network error would then pass for a
    truncated (hostile) archive. Instead the error is kept, libarchive gets -1
    (read error), and the original exception is re-raised afterwards.
    """

    def __init__(self, reader: HashingReader) -> None:
        self._reader = reader

    def readinto(self, buf: Any) -> int:
        if self._reader.error is not None:
            return -1
        try:
            return self._reader.readinto(buf)
        except BaseException as exc:  # noqa: BLE001 - re-raised by _run
            self._reader.error = exc
            return -1


@contextlib.contextmanager
def _utf8_thread_locale() -> Iterator[None]:
    """Let libarchive convert UTF-8 names even when the process runs in the C locale.

    iRODS agents often run with no LANG, so LC_CTYPE is "C"; libarchive then
    fails to convert a zip's UTF-8 names and returns NO name at all (pax names
    survive, zip names do not: observed with libarchive 3.6.2). uselocale()
    switches this thread only, so the agent's other code is unaffected.
    """
    codeset = ""
    with contextlib.suppress(Exception):
        codeset = locale.nl_langinfo(locale.CODESET)
    if codeset.replace("-", "").upper() == "UTF8" or not sys.platform.startswith("linux"):
        yield
        return
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        newlocale = libc["newlocale"]
        uselocale = libc["uselocale"]
        freelocale = libc["freelocale"]
    except (OSError, AttributeError, TypeError):
        yield
        return
    newlocale.restype = ctypes.c_void_p
    newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
    uselocale.restype = ctypes.c_void_p
    uselocale.argtypes = [ctypes.c_void_p]
    freelocale.restype = None
    freelocale.argtypes = [ctypes.c_void_p]
    loc = None
    for name in (b"C.UTF-8", b"C.utf8", b"en_US.UTF-8"):
        loc = newlocale(1 << locale.LC_CTYPE, name, None)  # glibc: LC_CTYPE_MASK
        if loc:
            break
    if not loc:
        yield
        return
    previous = uselocale(loc)
    try:
        yield
    finally:
        uselocale(previous)
        freelocale(loc)


def _entry_function(name: str, restype: Any) -> Optional[Callable[..., Any]]:
    """A fresh ctypes handle (libarchive-c's shared ones are not ours to reconfigure)."""
    from libarchive import ffi

    try:
        func = ffi.libarchive["archive_" + name]
    except AttributeError:  # older libarchive
        return None
    func.argtypes = [ctypes.c_void_p]
    func.restype = restype
    return func


@contextlib.contextmanager
def _open_reader(stream: _CallbackSafeReader, block_size: int) -> Iterator[Any]:
    """libarchive-c's stream_reader, restricted to tar/zip and the gzip filter."""
    from libarchive import ffi
    from libarchive.read import ArchiveRead

    buf = ctypes.create_string_buffer(block_size)
    buf_p = ctypes.cast(buf, ctypes.c_void_p)

    def read_func(archive_p: Any, context: Any, ptrptr: Any) -> int:
        length = stream.readinto(buf)
        ptrptr = ctypes.cast(ptrptr, ctypes.POINTER(ctypes.c_void_p))
        ptrptr[0] = buf_p
        return length

    read_cb = ffi.READ_CALLBACK(read_func)
    archive_p = ffi.read_new()
    try:
        ffi.get_read_filter_function("gzip")(archive_p)
        ffi.get_read_format_function("tar")(archive_p)
        ffi.get_read_format_function("zip_streamable")(archive_p)
        ffi.get_read_format_function("empty")(archive_p)
        ffi.read_open(archive_p, None, ffi.NO_OPEN_CB, read_cb, ffi.NO_CLOSE_CB)
        yield ArchiveRead(archive_p)
    finally:
        ffi.read_free(archive_p)


def _kind(filetype: int, hardlink: bool) -> str:
    if hardlink:
        return HARDLINK
    fmt = filetype & _AE_IFMT
    if fmt == _AE_IFREG:
        return FILE
    if fmt == _AE_IFDIR:
        return DIR
    if fmt == _AE_IFLNK:
        return SYMLINK
    if fmt in (_AE_IFCHR, _AE_IFBLK):
        return DEVICE
    if fmt == _AE_IFIFO:
        return FIFO
    if fmt == _AE_IFSOCK:
        return SOCKET
    return OTHER


def _archive_refusal(exc: BaseException, member: str, in_data: bool) -> Refusal:
    """Turn libarchive's error into a refusal a person can act on."""
    msg = getattr(exc, "msg", None) or str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "backslashreplace")
    low = msg.lower()
    if "passphrase" in low or "encrypt" in low or "decryption" in low:
        return Refusal(
            member=member,
            rule=ENCRYPTED,
            detail=f"member {member!r} is encrypted ({msg}); snapshots must be unencrypted archives",
        )
    if "truncat" in low or "premature" in low or "unexpected end" in low:
        return Refusal(
            member=member,
            rule=TRUNCATED,
            detail=f"the archive ends early {'inside' if in_data else 'after'} member {member!r} ({msg}); "
            "it was cut short in transfer: upload it again",
        )
    where = f"member {member!r}" if member != ARCHIVE_LEVEL else "the archive header"
    return Refusal(
        member=member,
        rule=UNREADABLE,
        detail=f"libarchive cannot read {where}{' data' if in_data else ''} ({msg}); the archive is "
        "corrupt or not a tar, tar.gz or zip file: export it again",
    )


class _Pass:
    """State of one run; kept in an object so the member loop stays readable."""

    def __init__(
        self,
        src: BinaryIO,
        sink: Optional[MemberSink],
        limits: SafetyLimits,
        buf_size: int,
        block_size: int,
        pool: Any = None,
    ) -> None:
        self.reader = HashingReader(src, background=block_size >= BACKGROUND_HASH_MIN_BLOCK)
        self.sink = sink
        self.pool = pool  # a policy.parallel_write.WriterPool, or None: this thread writes
        self.scanner = SafetyScanner(limits)
        self.block_size = block_size
        self.report = UnpackReport()
        self.buf = bytearray(buf_size)
        # ctypes view of self.buf: libarchive copies member bytes straight into
        # it, so there is no intermediate bytes object per block.
        self._cbuf = (ctypes.c_char * buf_size).from_buffer(self.buf)
        self._base = ctypes.addressof(self._cbuf)
        self.current = ARCHIVE_LEVEL
        self.in_data = False
        self._pathname = _entry_function("entry_pathname", ctypes.c_char_p)
        self._pathname_utf8 = _entry_function("entry_pathname_utf8", ctypes.c_char_p)
        self._is_encrypted = _entry_function("entry_is_encrypted", ctypes.c_int)

    def release(self) -> None:
        del self._cbuf  # lets the bytearray be freed / resized

    def refuse(self, refusal: Refusal) -> None:
        if self.report.refusal is None:
            self.report.refusal = refusal

    def member_info(self, entry: Any) -> MemberInfo:
        entry_p = entry._entry_p
        raw: Optional[bytes] = None
        for getter in (self._pathname, self._pathname_utf8):
            if raw is None and getter is not None:
                raw = getter(entry_p)
        if raw is None:
            wide = entry.pathname  # libarchive-c falls back to the wide form
            if isinstance(wide, bytes):
                raw = wide
            elif isinstance(wide, str):
                raw = wide.encode("utf-8", "surrogateescape")
        path = "" if raw is None else raw.decode("utf-8", "replace")
        size = entry.size
        return MemberInfo(
            path=path,
            kind=_kind(entry.filetype, bool(entry.islnk)),
            size=-1 if size is None else int(size),
            raw_path=raw or b"",
        )

    def run(self, archive: Any) -> None:
        from libarchive import ffi

        archive_p = archive._pointer
        for entry in archive:
            self.in_data = False
            info = self.member_info(entry)
            self.current = info.path or "<empty>"
            refusal = self.scanner.add(info)
            if refusal is None and self._is_encrypted is not None and self._is_encrypted(entry._entry_p):
                refusal = Refusal(
                    member=info.path,
                    rule=ENCRYPTED,
                    detail=f"member {info.path!r} is encrypted; snapshots must be unencrypted archives "
                    "(export the packet again without a password)",
                )
            if refusal is not None:
                self.refuse(refusal)
                return
            for relpath in self.scanner.new_dirs():
                if self.sink is not None:
                    self.sink.make_collection(relpath)
                self.report.dirs.append(relpath)
            if info.kind != FILE:
                continue
            self.in_data = True
            if not self.copy_member(ffi, archive_p, info):
                return
        self.in_data = False
        self.current = ARCHIVE_LEVEL

    def copy_member(self, ffi: Any, archive_p: Any, info: MemberInfo) -> bool:
        if self.pool is not None:
            return self.copy_member_parallel(ffi, archive_p, info)
        put = getattr(self.sink, "put_member", None) if self.sink is not None else None
        if put is not None and 0 <= info.size < len(self.buf):
            return self.copy_member_whole(ffi, archive_p, info, put)
        relpath = normalise_member_path(info.path)
        out: Optional[BinaryIO] = None
        if self.sink is not None:
            out = self.sink.open_member(relpath, info.size)
            self.report.partial = relpath
        sha = hashlib.sha256()
        view = memoryview(self.buf)
        cap = len(self.buf)
        fill = 0
        got = 0
        try:
            while True:
                want = min(cap - fill, self.block_size)
                n = ffi.read_data(archive_p, ctypes.c_void_p(self._base + fill), want)
                if n < 0:  # ARCHIVE_WARN: libarchive says these bytes are not the member's
                    self.refuse(_data_warning(ffi, archive_p, info))
                    return False
                if n == 0:
                    break
                sha.update(view[fill : fill + n])
                got += n
                fill += n
                refusal = self.scanner.note_bytes(n) or self.scanner.check_ratio(self.reader.bytes_read)
                if refusal is not None:
                    self.refuse(refusal)
                    return False
                if fill == cap:
                    if out is not None:
                        _write_all(out, view[:fill])
                    fill = 0
            if info.size >= 0 and got != info.size:
                self.refuse(_size_mismatch(info, got))
                return False
            if out is not None and fill:
                _write_all(out, view[:fill])
        finally:
            view.release()
            if out is not None:
                out.close()
        self.report.partial = None
        self.report.members.append(MemberResult(path=relpath, size=got, sha256=sha.hexdigest()))
        self.report.total_bytes += got
        return True

    def copy_member_whole(self, ffi: Any, archive_p: Any, info: MemberInfo,
                          put: Callable[[str, memoryview, str], None]) -> bool:
        """A member smaller than the write buffer: read ALL of it and check its size, then write it in one call.

        Nothing of it reaches the sink before its last byte was read and checked; a member holding more
        bytes than its header declares is refused as soon as the buffer is full.
        """
        relpath = normalise_member_path(info.path)
        sha = hashlib.sha256()
        view = memoryview(self.buf)
        cap = len(self.buf)
        got = 0
        try:
            while True:
                want = min(cap - got, self.block_size)
                if want == 0:  # more bytes than the header declares (which is < cap)
                    self.refuse(_size_mismatch(info, got))
                    return False
                n = ffi.read_data(archive_p, ctypes.c_void_p(self._base + got), want)
                if n < 0:
                    self.refuse(_data_warning(ffi, archive_p, info))
                    return False
                if n == 0:
                    break
                sha.update(view[got : got + n])
                got += n
                refusal = self.scanner.note_bytes(n) or self.scanner.check_ratio(self.reader.bytes_read)
                if refusal is not None:
                    self.refuse(refusal)
                    return False
            if got != info.size:
                self.refuse(_size_mismatch(info, got))
                return False
            digest = sha.hexdigest()
            self.report.partial = relpath
            put(relpath, view[:got], digest)
        finally:
            view.release()
        self.report.partial = None
        self.report.members.append(MemberResult(path=relpath, size=got, sha256=digest))
        self.report.total_bytes += got
        return True

    def copy_member_parallel(self, ffi: Any, archive_p: Any, info: MemberInfo) -> bool:
        """copy_member with the writes handed to the pool: the same reads, checks and order.

        A member is prepared (collections, heartbeat) where the one-writer
        pass opens it; a full chunk goes to its writer where that pass writes
        it; a member smaller than a chunk goes out only after all its bytes
        were read and its size checked.
        """
        from policy.parallel_write import MemberJob

        pool = self.pool
        relpath = normalise_member_path(info.path)
        assert self.sink is not None
        self.sink.prepare_member(relpath, info.size)  # type: ignore[attr-defined]
        job = MemberJob(relpath, info.size)
        known = info.size if 0 <= info.size < pool.chunk_size else None
        sha = hashlib.sha256()
        got = 0
        chunk = pool.take(known)
        fill = 0
        ok = False
        self.report.partial = relpath
        try:
            while True:
                cap = chunk.capacity
                want = min(cap - fill, self.block_size)
                n = ffi.read_data(archive_p, ctypes.c_void_p(chunk.addr + fill), want)
                if n < 0:
                    self.refuse(_data_warning(ffi, archive_p, info))
                    return False
                if n == 0:
                    break
                sha.update(memoryview(chunk.buf)[fill : fill + n])
                got += n
                fill += n
                refusal = self.scanner.note_bytes(n) or self.scanner.check_ratio(self.reader.bytes_read)
                if refusal is not None:
                    self.refuse(refusal)
                    return False
                if fill == cap:
                    handed, chunk = chunk, None
                    pool.feed(job, handed, fill)
                    fill = 0
                    chunk = pool.take(None)
            if info.size >= 0 and got != info.size:
                self.refuse(_size_mismatch(info, got))
                return False
            digest = sha.hexdigest()
            if pool.put_member is not None and not job.queued:  # held whole: one call (an empty member too)
                handed, chunk = chunk, None
                pool.put_whole(job, handed, fill, digest)
            else:
                if fill:
                    handed, chunk = chunk, None
                    pool.feed(job, handed, fill)
                pool.finish(job)  # an empty member: its writer creates it and closes it
            ok = True
        finally:
            if chunk is not None:
                pool.give_back(chunk)
            if not ok:
                pool.abort(job)
        self.report.partial = None
        self.report.members.append(MemberResult(path=relpath, size=got, sha256=digest))
        self.report.total_bytes += got
        return True


def _data_warning(ffi: Any, archive_p: Any, info: MemberInfo) -> Refusal:
    """libarchive's warnings while reading data: wrong size, bad CRC, ... (zip mostly)."""
    raw_msg = ffi.error_string(archive_p) or b"unknown error"
    msg = raw_msg.decode("utf-8", "replace") if isinstance(raw_msg, bytes) else str(raw_msg)
    if "wrong size" in msg.lower():
        return Refusal(
            member=info.path,
            rule=SIZE_MISMATCH,
            detail=f"member {info.path!r} does not hold the size its header declares ({msg}); the "
            "archive is corrupt: export it again",
        )
    return _archive_refusal(Exception(msg), info.path, True)


def _size_mismatch(info: MemberInfo, got: int) -> Refusal:
    return Refusal(member=info.path, rule=SIZE_MISMATCH,
                   detail=f"member {info.path!r} declares {info.size} bytes but holds {got}; "
                   "the archive is corrupt: export it again")


def _write_all(out: BinaryIO, data: memoryview) -> None:
    """One write per chunk; loop only if a raw stream accepted part of it (also used by the parallel writers)."""
    written = out.write(data)
    if written is None or written >= len(data):
        return
    while written < len(data):
        more = out.write(data[written:])
        if not more:
            raise OSError(f"short write: {written} of {len(data)} bytes accepted")
        written += more


def _run(
    src: BinaryIO,
    sink: Optional[MemberSink],
    limits: SafetyLimits,
    buf_size: int,
    block_size: int,
    writers: int = 1,
    max_buffered: Optional[int] = None,
) -> UnpackReport:
    from libarchive.exception import ArchiveError

    pool = None
    open_prepared = getattr(sink, "open_prepared", None)
    if writers > 1 and open_prepared is not None and getattr(sink, "prepare_member", None) is not None:
        from policy.parallel_write import WriterPool

        pool = WriterPool(open_prepared, writers, buf_size, max_buffered, getattr(sink, "put_prepared", None))
        buf_size = 1  # this thread's own buffer is not used for member bytes
    state = _Pass(src, sink, limits, buf_size, block_size, pool)
    try:
        with _utf8_thread_locale():
            try:
                with _open_reader(_CallbackSafeReader(state.reader), block_size) as archive:
                    state.run(archive)
            except ArchiveError as exc:
                if state.reader.error is not None:
                    raise state.reader.error from exc
                state.refuse(_archive_refusal(exc, state.current, state.in_data))
    except BaseException:
        if pool is not None:
            try:
                pool.close()  # every writer stops before anyone rolls back
            except BaseException:  # noqa: BLE001 - the error in hand is the one to report
                pass
        state.reader.close()
        raise
    finally:
        state.release()
    try:
        if pool is not None:
            try:
                pool.close()
            except BaseException:
                left = pool.failed_member or next(iter(pool.still_open()), None)
                state.report.partial = state.report.partial or left
                raise
            if state.report.partial is None and pool.still_open():
                state.report.partial = pool.still_open()[0]
        if state.reader.error is not None:
            raise state.reader.error
        report = state.report
        if report.refusal is None:
            state.reader.drain(block_size)
            report.archive_sha256 = state.reader.hexdigest()
    finally:
        state.reader.close()
    report.archive_bytes = state.reader.bytes_read
    return report
