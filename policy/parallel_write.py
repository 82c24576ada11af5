"""Write archive members over several connections at once, in bounded memory, without reordering decisions.

Why: on a real server the streaming unpack is bound by per-object round trips, not bytes (a client
create/open/write/close of 1 MiB took 0.116 s, reference/prep-observed.md round 6), so one member after
another leaves the connection idle most of the time. A few writers, each over its own connection,
overlap those round trips.

What stays exactly as in the one-writer pass (policy.archive_stream):

- the archive is read once, sequentially, by ONE thread (the caller's), which also runs every safety
  decision; a member is handed to a writer only after its header was accepted, and a small member
  only after all of its bytes were read and its size checked;
- a member is written by one writer, its chunks in order; a large member is streamed in chunks, never
  held whole;
- memory is bounded: the reader blocks while `max_buffered` bytes (default (writers + 1) chunks) are
  taken and not yet written;
- the pass does not return (refusal, error or success) before every writer has stopped, so a caller's
  rollback sees everything that was written and nothing is written after it.

The writers open objects through a callable the caller supplies (in production python-irodsclient's
data_objects.create/open over the session's connection pool: one connection per open object). A member
whose bytes were all read into ONE buffer (every member smaller than a chunk) goes out through
`put_member` instead, when the caller supplies it: one request that creates the object (never over an
existing one), writes the bytes and has iRODS verify our sha256 (policy.prc_zone.PrcZone.put_new): on a
real server that is 1 round trip per member instead of about 12 (bench/README.md, "Issue 17").
"""

from __future__ import annotations

import ctypes
import queue
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Callable, Iterable, List, Optional, Set, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()
_ABORT = object()


class Chunk:
    """A buffer libarchive fills in place (ctypes address), handed whole to one writer."""

    __slots__ = ("buf", "view", "addr", "pooled")

    def __init__(self, size: int, pooled: bool) -> None:
        self.buf = bytearray(max(1, size))
        self.view = (ctypes.c_char * len(self.buf)).from_buffer(self.buf)
        self.addr = ctypes.addressof(self.view)
        self.pooled = pooled

    @property
    def capacity(self) -> int:
        return len(self.buf)


class MemberJob:
    """One member on its way to a writer: its chunks, in order, then END (or ABORT); or, for a member held
    whole, `whole` = (chunk, byte count, sha256 hex) and END."""

    def __init__(self, relpath: str, size: int) -> None:
        self.relpath = relpath
        self.size = size
        self.items: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.queued = False
        self.whole: Optional[Tuple[Chunk, int, str]] = None


def default_max_buffered(workers: int, chunk_size: int) -> int:
    """Bytes read ahead for the writers: one chunk per writer plus one being filled.

    That keeps every writer busy (each holds at most one chunk at a time) and is what the agent's resident
    size grows by, above its own, during an unpack: (writers + 1) x 4 MiB, 20 MiB for the default 4
    writers (docs/schemas.md, unpack.parallel_writers). Twice as much (the first version) bought no speed
    on a real server (issue 17: the writers, not the reader, are the bottleneck) and cost 12-16 MB of RSS.
    """
    return (workers + 1) * chunk_size


class WriterPool:
    """`workers` writer threads fed by the one reading thread (see the module docstring)."""

    def __init__(self, open_member: Callable[[str, int], BinaryIO], workers: int, chunk_size: int,
                 max_buffered: Optional[int] = None,
                 put_member: Optional[Callable[[str, memoryview, str], None]] = None) -> None:
        if workers < 1 or chunk_size < 1:
            raise ValueError("workers and chunk_size must be positive")
        self.open_member = open_member
        self.put_member = put_member
        self.workers = workers
        self.chunk_size = chunk_size
        self.max_buffered = max(chunk_size, max_buffered if max_buffered is not None
                                else default_max_buffered(workers, chunk_size))
        self._jobs: "queue.SimpleQueue[Optional[MemberJob]]" = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._held = 0  # bytes of chunks taken and not yet released
        self._free: List[Chunk] = []  # reusable chunk_size buffers
        self.error: Optional[BaseException] = None
        self.failed_member: Optional[str] = None
        self._open: Set[str] = set()  # opened, not yet closed
        self.opened = 0
        self.peak_buffered = 0
        self._threads = [threading.Thread(target=self._work, name="member-writer-{}".format(i), daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()
        self._closed = False

    # ------------------------------------------------------------------ the reading thread
    def take(self, size: Optional[int] = None) -> Chunk:
        """A buffer for the next bytes: `size` (+1) bytes for a small member of known size, else a
        chunk_size buffer. Blocks while too much is waiting for writers; raises a writer's error."""
        want = self.chunk_size if size is None or size >= self.chunk_size else size + 1
        with self._cond:
            while self.error is None and self._held > 0 and self._held + want > self.max_buffered:
                self._cond.wait()
            if self.error is not None:
                raise self.error
            self._held += want
            self.peak_buffered = max(self.peak_buffered, self._held)
            if want == self.chunk_size and self._free:
                return self._free.pop()
        return Chunk(want, pooled=want == self.chunk_size)

    def give_back(self, chunk: Chunk) -> None:
        """A buffer the reader took but did not hand to a writer."""
        self._release(chunk)

    def feed(self, job: MemberJob, chunk: Chunk, n: int) -> None:
        """The next `n` bytes of the member (the chunk now belongs to its writer)."""
        self._raise_if_failed()
        job.items.put((chunk, n))
        self._dispatch(job)

    def put_whole(self, job: MemberJob, chunk: Chunk, n: int, sha256: str) -> None:
        """The member's `n` bytes, all of them read and checked, in one chunk: its writer puts them in one call
        (only when the pool has put_member and nothing of the member was fed before)."""
        self._raise_if_failed()
        if self.put_member is None or job.queued:
            raise ValueError("put_whole needs put_member and a member nothing was fed of")
        job.whole = (chunk, n, sha256)
        job.items.put(_END)
        self._dispatch(job)

    def finish(self, job: MemberJob) -> None:
        """All of the member's bytes were read and checked: its writer closes it after the last chunk."""
        job.items.put(_END)
        self._dispatch(job)

    def abort(self, job: MemberJob) -> None:
        """The member was refused after some of its chunks went out: its writer closes what it has."""
        job.items.put(_ABORT)  # a job never dispatched is simply dropped: nothing of it was opened

    def close(self) -> None:
        """Wait for every writer to stop; raise the first writer error, if any. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._free.clear()
        if self.error is not None:
            raise self.error

    def still_open(self) -> List[str]:
        with self._cond:
            return sorted(self._open)

    # ------------------------------------------------------------------ internals
    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _dispatch(self, job: MemberJob) -> None:
        if not job.queued:
            job.queued = True
            self._jobs.put(job)

    def _release(self, chunk: Chunk) -> None:
        with self._cond:
            self._held -= chunk.capacity
            if chunk.pooled and len(self._free) < self.workers + 1:
                self._free.append(chunk)
            self._cond.notify_all()

    def _fail(self, exc: BaseException, relpath: str) -> None:
        with self._cond:
            if self.error is None:
                self.error = exc
                self.failed_member = relpath
            self._cond.notify_all()

    def _drain(self, job: MemberJob) -> None:
        """Release the job's chunks up to its END/ABORT (after an error: nothing more is written)."""
        while True:
            item = job.items.get()
            if item is _END or item is _ABORT:
                return
            self._release(item[0])

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self.error is not None:
                self._drain(job)
                continue
            if job.whole is not None:
                self._put(job)
                continue
            out: Optional[BinaryIO] = None
            ended = False  # the job's END/ABORT was consumed
            try:
                out = self.open_member(job.relpath, job.size)
                with self._cond:
                    self._open.add(job.relpath)
                    self.opened += 1
                while True:
                    item = job.items.get()
                    if item is _END or item is _ABORT:
                        ended = True
                        break
                    chunk, n = item
                    try:
                        if self.error is None:
                            write_all(out, memoryview(chunk.buf)[:n])
                    finally:
                        self._release(chunk)
                closing, out = out, None
                closing.close()
                with self._cond:
                    self._open.discard(job.relpath)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread by close()/take()
                self._fail(exc, job.relpath)
                if out is not None:
                    try:
                        out.close()
                    except BaseException:  # noqa: BLE001 - the first error is the one reported
                        pass
                if not ended:
                    self._drain(job)  # the reader always ends a dispatched job with END or ABORT


    def _put(self, job: MemberJob) -> None:
        """A member held whole: one put_member call, the chunk released afterwards, the END consumed."""
        assert job.whole is not None and self.put_member is not None
        chunk, n, sha256 = job.whole
        job.whole = None
        job.items.get()  # its END: nothing else is ever queued for a whole member
        try:
            if self.error is None:
                with self._cond:
                    self._open.add(job.relpath)
                    self.opened += 1
                view = memoryview(chunk.buf)
                try:
                    self.put_member(job.relpath, view[:n], sha256)
                finally:
                    view.release()
                with self._cond:
                    self._open.discard(job.relpath)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread by close()/take()
            self._fail(exc, job.relpath)
        finally:
            self._release(chunk)


def write_all(out: BinaryIO, data: memoryview) -> None:
    """One write per chunk (policy.archive_stream's, shared: the same short-write handling on both paths)."""
    from policy.archive_stream import _write_all

    _write_all(out, data)


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> List[R]:
    """fn over items on `workers` threads, results in input order, at most 2 x workers calls in flight;
    the first error stops the submission of more calls and is raised once the running ones ended."""
    seq = list(items)
    if workers <= 1 or len(seq) <= 1:
        return [fn(x) for x in seq]
    results: List[Any] = [None] * len(seq)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bounded-map") as ex:
        pending: Set["Future[R]"] = set()
        index = {}
        it = iter(enumerate(seq))
        error: Optional[BaseException] = None
        while True:
            while error is None and len(pending) < 2 * workers:
                nxt = next(it, None)
                if nxt is None:
                    break
                f = ex.submit(fn, nxt[1])
                index[f] = nxt[0]
                pending.add(f)
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                exc = f.exception()
                if exc is not None and error is None:
                    error = exc
                elif exc is None:
                    results[index[f]] = f.result()
        if error is not None:
            raise error
    return results
