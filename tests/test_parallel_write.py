"""Members written over several writer threads: same bytes, same decisions in the same order, bounded memory,
every writer stopped before the pass returns (so a rollback sees everything), and a refused archive leaves
nothing under content/ when the whole policy runs that way."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

pytest.importorskip("libarchive")

import archive_corpus as corpus  # noqa: E402
from helpers import config_with, drop, enrolled_deployment, members_of  # noqa: E402

from policy import vocabulary as V  # noqa: E402
from policy.archive_stream import scan_archive, stream_unpack  # noqa: E402
from policy.errors import AlreadyExists, IrodsError  # noqa: E402
from policy.ingest import drop_status  # noqa: E402
from policy.member_safety import normalise_member_path  # noqa: E402
from policy.parallel_write import Chunk, MemberJob, WriterPool, bounded_map  # noqa: E402
from simzone.zone import SimZone  # noqa: E402

MAIN = threading.main_thread().name


class _Out:
    def __init__(self, sink: "ThreadSink", relpath: str) -> None:
        self.sink, self.relpath, self.buf, self.closed = sink, relpath, bytearray(), False

    def write(self, data: Any) -> int:
        assert not self.closed
        if self.sink.delay:
            time.sleep(self.sink.delay)
        self.sink.log("write", self.relpath, len(data))
        self.buf += bytes(data)
        return len(data)

    def close(self) -> None:
        self.closed = True
        self.sink.log("close", self.relpath)
        with self.sink.lock:
            self.sink.files[self.relpath] = bytes(self.buf)


class ThreadSink:
    """A ParallelMemberSink recording who did what, on which thread, in which order."""

    def __init__(self, delay: float = 0.0, fail_on: Optional[str] = None) -> None:
        self.lock = threading.Lock()
        self.events: List[Tuple[str, str, str, Any]] = []  # (event, relpath, thread, extra)
        self.files: Dict[str, bytes] = {}
        self.outs: Dict[str, _Out] = {}
        self.delay = delay
        self.fail_on = fail_on

    def log(self, event: str, relpath: str, extra: Any = None) -> None:
        with self.lock:
            self.events.append((event, relpath, threading.current_thread().name, extra))

    def make_collection(self, relpath: str) -> None:
        self.log("mkdir", relpath)

    def open_member(self, relpath: str, size: int) -> Any:  # the one-writer pass only
        raise AssertionError("the parallel pass must not open members on the reading thread")

    def prepare_member(self, relpath: str, size: int) -> None:
        self.log("prepare", relpath)

    def open_prepared(self, relpath: str, size: int) -> Any:
        self.log("open", relpath)
        if relpath == self.fail_on:
            raise AlreadyExists(-809000, relpath)
        out = _Out(self, relpath)
        with self.lock:
            self.outs[relpath] = out
        return out

    def first(self, event: str, relpath: str) -> int:
        return next(i for i, e in enumerate(self.events) if e[0] == event and e[1] == relpath)


def many(n: int = 40, size: int = 5000, large: int = 3 << 20) -> bytes:
    entries: List[Tuple[str, object]] = [("./d/", None)]
    entries += [("./d/m{:03d}".format(i), corpus.payload(size + i, seed=i)) for i in range(n)]
    entries += [("./d/big.bin", corpus.payload(large, seed=99)), ("./d/empty", b""), ("./z", b"last")]
    return corpus.build_tar(entries)


def test_parallel_pass_gives_the_same_report_and_bytes_as_one_writer() -> None:
    data = many()
    serial = scan_archive(io.BytesIO(data))
    sink = ThreadSink()
    report = stream_unpack(io.BytesIO(data), sink, write_chunk=1 << 20, writers=4)
    assert report.refusal is None and report.partial is None
    assert [(m.path, m.size, m.sha256) for m in report.members] == [(m.path, m.size, m.sha256) for m in serial.members]
    assert report.archive_sha256 == serial.archive_sha256 == hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expected = {m.name[2:]: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore
    assert sink.files == expected
    assert all(o.closed for o in sink.outs.values())
    writers = {t for e, _, t, _ in sink.events if e in ("open", "write", "close")}
    assert MAIN not in writers and len(writers) > 1  # written off the reading thread, by several writers
    assert {t for e, _, t, _ in sink.events if e in ("prepare", "mkdir")} == {MAIN}
    big_writes = [x for e, r, _, x in sink.events if e == "write" and r == "d/big.bin"]
    assert big_writes == [1 << 20] * 3  # a large member streamed in chunks, in order, by one writer
    assert not [t for t in threading.enumerate() if t.name.startswith("member-writer")]


def test_members_are_prepared_in_archive_order_and_opened_only_after() -> None:
    data = many(n=12)
    sink = ThreadSink(delay=0.002)
    report = stream_unpack(io.BytesIO(data), sink, write_chunk=1 << 20, writers=3)
    order = [r for e, r, _, _ in sink.events if e == "prepare"]
    assert order == [m.path for m in report.members]
    for rel in order:
        assert sink.first("prepare", rel) < sink.first("open", rel) < sink.first("close", rel)


@pytest.mark.parametrize("case", ["traversal_tar", "absolute_tar", "symlink_tar", "duplicate_tar", "truncated_tar"])
def test_a_refused_member_never_reaches_a_writer_and_every_writer_stopped(case: str) -> None:
    data, rule = getattr(corpus, case)()
    serial = scan_archive(io.BytesIO(data))
    assert serial.refusal is not None and serial.refusal.rule == rule
    sink = ThreadSink(delay=0.001)
    report = stream_unpack(io.BytesIO(data), sink, writers=4)
    assert report.refusal == serial.refusal
    assert all(o.closed for o in sink.outs.values())  # nothing left open when the pass returned
    opened = [r for e, r, _, _ in sink.events if e == "open"]
    accepted = [m.path for m in report.members]
    if rule == "truncated":  # refused inside its data: opened (as with one writer) only when a chunk went out
        assert set(opened) <= set(accepted) | {report.partial}
    else:
        assert set(opened) <= set(accepted)  # header rules: the refused member is never even opened


def test_hostile_member_after_many_good_ones_stops_the_pass_before_anything_more_is_opened() -> None:
    entries: List[Tuple[str, object]] = [("m{:03d}".format(i), corpus.payload(3000, seed=i)) for i in range(30)]
    entries += [("../escape", b"x"), ("after", b"never")]
    sink = ThreadSink(delay=0.003)
    report = stream_unpack(io.BytesIO(corpus.build_tar(entries)), sink, writers=4)
    assert report.refusal is not None and report.refusal.rule == "parent_reference"
    names = {r for e, r, _, _ in sink.events}
    assert "after" not in names and "../escape" not in names and "escape" not in names
    assert set(sink.files) == {m.path for m in report.members} and len(sink.files) == 30  # all finished writing


def test_a_writer_error_is_raised_by_the_pass_after_all_writers_stopped() -> None:
    data = many(n=30)
    sink = ThreadSink(delay=0.001, fail_on="d/m005")
    with pytest.raises(AlreadyExists):
        stream_unpack(io.BytesIO(data), sink, writers=4)
    assert not [t for t in threading.enumerate() if t.name.startswith("member-writer")]
    assert all(o.closed for o in sink.outs.values())


def test_small_members_go_out_only_after_their_size_was_checked() -> None:
    """A member smaller than a chunk is handed over whole, after its last byte: none of it is written early."""
    data = corpus.build_tar([("a", b"1" * 1000), ("b", b"2" * 2000)])
    sink = ThreadSink()
    stream_unpack(io.BytesIO(data), sink, write_chunk=4096, writers=2)
    assert [x for e, r, _, x in sink.events if e == "write" and r == "b"] == [2000]


def test_pool_memory_is_bounded_while_writers_are_slow() -> None:
    got: Dict[str, bytearray] = {}

    class Slow:
        def __init__(self, rel: str) -> None:
            self.rel = rel
            got[rel] = bytearray()

        def write(self, data: Any) -> int:
            time.sleep(0.01)
            got[self.rel] += bytes(data)
            return len(data)

        def close(self) -> None:
            pass

    pool = WriterPool(lambda rel, size: Slow(rel), workers=2, chunk_size=1000, max_buffered=3000)
    for m in range(6):
        job = MemberJob("m{}".format(m), 5000)
        for k in range(5):
            chunk = pool.take(None)
            chunk.buf[:1000] = bytes([m * 10 + k]) * 1000
            pool.feed(job, chunk, 1000)
        pool.finish(job)
    pool.close()
    assert pool.peak_buffered <= 3000
    assert got == {"m{}".format(m): bytearray(b"".join(bytes([m * 10 + k]) * 1000 for k in range(5))) for m in range(6)}


def test_pool_take_sizes_small_members_exactly_and_reuses_chunks() -> None:
    pool = WriterPool(lambda rel, size: io.BytesIO(), workers=1, chunk_size=1 << 16)
    small = pool.take(100)
    assert isinstance(small, Chunk) and small.capacity == 101 and not small.pooled
    big = pool.take(None)
    assert big.capacity == 1 << 16 and big.pooled
    pool.give_back(big)
    assert pool.take(None) is big
    pool.give_back(small)
    pool.close()


def test_bounded_map_keeps_order_and_raises_the_first_error() -> None:
    assert bounded_map(lambda x: x * x, range(50), 4) == [x * x for x in range(50)]
    calls: List[int] = []

    def boom(x: int) -> int:
        calls.append(x)
        if x == 3:
            raise IrodsError(-818000, "no")
        time.sleep(0.001)
        return x

    with pytest.raises(IrodsError):
        bounded_map(boom, range(1000), 4)
    assert len(calls) < 1000  # stopped submitting after the error


# ---------------------------------------------------------------------- the whole policy, writers on threads
class ThreadedSimZone:
    """The simulated zone's data plane made safe for threads (one lock around the catalog), standing for
    python-irodsclient's pooled connections: what PrcZone.concurrent_plane() offers on a real server."""

    lock = threading.RLock()

    def __init__(self, zone: SimZone) -> None:
        self.zone = zone
        self.threads: set = set()

    def open_new(self, path: str) -> Any:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            inner = self.zone.open_new(path)
        lock = self.lock

        class W:
            def write(self, data: Any) -> int:
                with lock:
                    return inner.write(bytes(data))

            def close(self) -> None:
                with lock:
                    inner.close()
        return W()

    def checksum(self, path: str) -> str:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            return self.zone.checksum(path)


@pytest.fixture()
def threaded(monkeypatch: Any) -> List[ThreadedSimZone]:
    made: List[ThreadedSimZone] = []

    def concurrent_plane(self: SimZone) -> ThreadedSimZone:
        plane = ThreadedSimZone(self)
        made.append(plane)
        return plane

    monkeypatch.setattr(SimZone, "concurrent_plane", concurrent_plane, raising=False)
    return made


def archive_at(tmp_path: Any, data: bytes, name: str = "a.tar") -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("fast_path", ["auto", "never"])
def test_policy_with_threaded_writers_gives_the_same_snapshot(tmp_path: Any, threaded: Any, fast_path: str) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path=fast_path))
    archive = archive_at(tmp_path, many(n=25, large=2 << 20))
    drop_id, _ = drop(d, archive)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete", st
    content = st.snapshot + "/content"
    expected = {normalise_member_path(k): v for k, v in members_of(archive).items()}
    objs = {p[len(content) + 1:]: p for p, k in d.catalog.walk(content) if k == "data_object"}
    assert set(objs) == set(expected)
    for rel, data in expected.items():
        stat = d.catalog.stat("alice", objs[rel])
        assert stat.size == len(data)
        assert stat.checksum == "sha2:" + __import__("base64").b64encode(hashlib.sha256(data).digest()).decode()
    meta = V.as_dict(d.catalog.metadata(st.snapshot))
    import json

    stats = json.loads(meta[V.NS + "unpack_stats"][0])
    assert stats["writers"] == 4 and stats["members"] == len(expected)
    assert stats["path"] == ("fast" if fast_path == "auto" else "streaming")
    used = set().union(*(p.threads for p in threaded))
    assert used and MAIN not in used  # the writes (streaming) or the checksums (fast) ran on other threads


def test_policy_with_threaded_writers_refused_archive_leaves_nothing_under_content(tmp_path: Any,
                                                                                   threaded: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never"))
    entries: List[Tuple[str, object]] = [("m{:03d}".format(i), corpus.payload(4000, seed=i)) for i in range(20)]
    entries += [("/abs", b"x")]
    drop_id, _ = drop(d, archive_at(tmp_path, corpus.build_tar(entries)))
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and "absolute_path" in (st.reason or "")
    assert not [p for p, k in d.catalog.walk(st.snapshot) if "/content" in p]


# ---------------------------------------------------------------------- batched listing (objects_under)
def test_objects_under_lists_exactly_the_subtree_with_sizes_and_checksums(tmp_path: Any) -> None:
    """One listing for the whole content tree, on PrepZone (fake PREP genquery) and SimZone alike: a sibling
    whose name matches LIKE's '_' is not included, an absent checksum is '' (round 10)."""
    from policy.prep_zone import PrepZone
    from simzone.catalog import SimCatalog
    from simzone.prep import FakeServer, make_rei

    cat = SimCatalog(str(tmp_path / "z"))
    cat.add_user("omero-svc")
    home = "/tempZone/home/omero-svc"
    svc = SimZone(cat, "omero-svc")
    top = home + "/snap_1/content"
    for c in (top + "/a/b", home + "/snap_1/contentX", home + "/snap_1/content_"):
        svc.create_collection(c, recursive=True)
    made = {top + "/top.bin": b"t", top + "/a/one": b"11", top + "/a/b/two": b"222",
            home + "/snap_1/contentX/no": b"n", home + "/snap_1/content_/no": b"n"}
    for p, data in made.items():
        with svc.open_new(p) as f:
            f.write(data)
    summed = svc.checksum(top + "/a/one")
    prep = PrepZone(FakeServer(cat).callback("omero-svc"), make_rei("omero-svc", "tempZone"), "tempZone")
    expected = {top + "/top.bin": (1, ""), top + "/a/one": (2, summed), top + "/a/b/two": (3, "")}
    assert svc.objects_under(top) == expected
    assert prep.objects_under(top) == expected
    assert prep.objects_under(top + "/none") == {}
    assert prep.concurrent_plane() is None  # the simulated data plane is not for threads
