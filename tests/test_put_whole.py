"""Issue 17: a member held whole goes out in ONE put (DATA_OBJ_PUT with the bytes, no forceFlag, iRODS verifying
our sha256), on the one-writer pass and on the writer threads alike; what the simulated catalog and the
python-irodsclient adapter do for it follows the round-12 golden records (tests/data/prep-observed/
round12-unpack-dataplane.jsonl, round12-unpack-paging.jsonl)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
from typing import Any, Dict, List, Optional, Tuple

import pytest

pytest.importorskip("libarchive")

import archive_corpus as corpus  # noqa: E402
from helpers import config_with, drop, enrolled_deployment  # noqa: E402

from policy.archive_stream import scan_archive, stream_unpack  # noqa: E402
from policy.errors import AlreadyExists, IrodsError, NoPermission, NotFound  # noqa: E402
from policy.ingest import drop_status  # noqa: E402
from simzone.catalog import SimCatalog  # noqa: E402
from simzone.zone import SimZone  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "data", "prep-observed")
MAIN = threading.main_thread().name


def golden(name: str) -> List[Dict[str, Any]]:
    with open(os.path.join(GOLDEN, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha2(data: bytes) -> str:
    return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()


class PutSink:
    """A sink with put_member (one call per whole member) and open_member (streamed members), recording both."""

    def __init__(self, fail_put: Optional[BaseException] = None) -> None:
        self.lock = threading.Lock()
        self.events: List[Tuple[str, str, str, Any]] = []
        self.files: Dict[str, bytes] = {}
        self.fail_put = fail_put

    def log(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event + (threading.current_thread().name,))

    def make_collection(self, relpath: str) -> None:
        self.log("mkdir", relpath)

    def put_member(self, relpath: str, data: memoryview, sha256: str) -> None:
        self.log("put", relpath, len(data), sha256)
        if self.fail_put is not None:
            raise self.fail_put
        with self.lock:
            self.files[relpath] = bytes(data)

    def open_member(self, relpath: str, size: int) -> Any:
        self.log("open", relpath, size)
        sink = self

        class W:
            buf = bytearray()

            def write(self, data: Any) -> int:
                self.buf += bytes(data)
                return len(data)

            def close(self) -> None:
                with sink.lock:
                    sink.files[relpath] = bytes(self.buf)
        return W()


class ParallelPutSink(PutSink):
    def prepare_member(self, relpath: str, size: int) -> None:
        self.log("prepare", relpath, size)

    def open_prepared(self, relpath: str, size: int) -> Any:
        return self.open_member(relpath, size)

    def put_prepared(self, relpath: str, data: memoryview, sha256: str) -> None:
        self.put_member(relpath, data, sha256)


def packet(large: int = 3 << 20) -> bytes:
    entries: List[Tuple[str, object]] = [("./d/", None)]
    entries += [("./d/m{:02d}".format(i), corpus.payload(1000 + 37 * i, seed=i)) for i in range(20)]
    entries += [("./d/big.bin", corpus.payload(large, seed=99)), ("./d/empty", b""), ("./z", b"last")]
    return corpus.build_tar(entries)


def expected_files(data: bytes) -> Dict[str, bytes]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name[2:]: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore


# ---------------------------------------------------------------------- the pass
@pytest.mark.parametrize("writers", [1, 4])
def test_small_members_go_out_in_one_put_with_their_sha256_and_large_ones_streamed(writers: int) -> None:
    data = packet()
    sink: PutSink = ParallelPutSink() if writers > 1 else PutSink()
    report = stream_unpack(io.BytesIO(data), sink, write_chunk=1 << 20, writers=writers)
    assert report.refusal is None and report.partial is None
    assert sink.files == expected_files(data)
    puts = {e[1]: (e[2], e[3]) for e in sink.events if e[0] == "put"}
    opened = [e[1] for e in sink.events if e[0] == "open"]
    assert opened == ["d/big.bin"]  # over the write buffer: streamed in chunks
    assert set(puts) == set(sink.files) - {"d/big.bin"}  # every other member, the empty one too: ONE call each
    for rel, (size, digest) in puts.items():
        assert size == len(sink.files[rel]) and digest == hashlib.sha256(sink.files[rel]).hexdigest()
    put_threads = {e[-1] for e in sink.events if e[0] == "put"}
    assert (put_threads == {MAIN}) if writers == 1 else (MAIN not in put_threads)


@pytest.mark.parametrize("writers", [1, 4])
@pytest.mark.parametrize("case", ["traversal_tar", "absolute_tar", "duplicate_tar", "truncated_tar"])
def test_a_refused_member_is_never_put(case: str, writers: int) -> None:
    data, rule = getattr(corpus, case)()
    serial = scan_archive(io.BytesIO(data))
    sink: PutSink = ParallelPutSink() if writers > 1 else PutSink()
    report = stream_unpack(io.BytesIO(data), sink, writers=writers)
    assert report.refusal == serial.refusal and report.refusal is not None and report.refusal.rule == rule
    put = [e[1] for e in sink.events if e[0] == "put"]
    assert set(put) <= {m.path for m in report.members}  # only accepted members, each after all its bytes


def test_a_member_longer_than_its_header_is_refused_before_any_put() -> None:
    """The one-writer pass holds a small member whole: bytes beyond the declared size fill the buffer and are
    refused there, nothing of the member reaching the sink (zip members may lie about their size)."""
    from policy import archive_stream as A
    from policy.member_safety import MemberInfo

    class FakeFfi:
        def __init__(self) -> None:
            self.left = 10

        def read_data(self, archive_p: Any, addr: Any, want: int) -> int:
            n = min(want, self.left)
            self.left -= n
            return n

    sink = PutSink()
    state = A._Pass(io.BytesIO(b""), sink, A.SafetyLimits(), 8, 4)
    ok = state.copy_member(FakeFfi(), None, MemberInfo(path="m", kind="file", size=5, raw_path=b"m"))
    assert not ok and state.report.refusal is not None and state.report.refusal.rule == "size_mismatch"
    assert sink.events == []
    state.release()


@pytest.mark.parametrize("writers", [1, 4])
def test_a_failed_put_stops_the_pass_and_names_the_member(writers: int) -> None:
    data = packet(large=10)
    sink: PutSink = ParallelPutSink(IrodsError(-314000, "x")) if writers > 1 else PutSink(IrodsError(-314000, "x"))
    with pytest.raises(IrodsError):
        stream_unpack(io.BytesIO(data), sink, writers=writers)
    assert not [t for t in threading.enumerate() if t.name.startswith("member-writer")]


# ---------------------------------------------------------------------- the simulated catalog, as round 12 saw it
def test_sim_put_new_reproduces_round_12() -> None:
    import tempfile

    records = {r["case"]: r for r in golden("round12-unpack-dataplane.jsonl") if r["probe"] == "round12_edge"}
    with tempfile.TemporaryDirectory() as tmp:
        cat = SimCatalog(tmp)
        cat.add_user("u")
        cat.add_user("other")
        z = SimZone(cat, "u")
        edge = "/tempZone/home/u/edge"
        z.create_collection(edge)
        a, b = os.urandom(1 << 16), os.urandom(1 << 16)
        hexof = lambda d: hashlib.sha256(d).hexdigest()  # noqa: E731

        def outcome(fn: Any) -> Dict[str, Any]:
            try:
                return {"status": fn()}
            except IrodsError as e:
                return {"code": e.code, "error": e.name}

        def after(name: str) -> Any:
            st = {s.path.rsplit("/", 1)[1]: s for s in z.list_collection(edge).data_objects}.get(name)
            if st is None:
                return None
            return {"size": st.size, "checksum_is": "a" if st.checksum == sha2(a) else
                    ("b" if st.checksum == sha2(b) else st.checksum)}

        z.put_new(edge + "/exists", a)
        got = {
            "put_over_existing": (outcome(lambda: z.put_new(edge + "/exists", b)), after("exists")),
            "put_verify_wrong": (outcome(lambda: z.put_new(edge + "/wrong", a, hexof(b))), after("wrong")),
            "put_verify_right": (outcome(lambda: z.put_new(edge + "/right", a, hexof(a))), after("right")),
            "put_empty_reg": (outcome(lambda: z.put_new(edge + "/empty", b"")), after("empty")),
            "put_into_missing_collection": (outcome(lambda: z.put_new(edge + "/nocoll/x", a)), None),
            "put_without_permission": (outcome(lambda: z.put_new("/tempZone/home/other/x", a)), None),
        }
        for case, (res, state) in got.items():
            rec = records[case]
            assert res.get("code") == rec.get("code"), case
            if "error" in rec:
                assert res["error"] == rec["error"], case
            if rec.get("after") is not None and case != "put_into_missing_collection":
                want = {k: rec["after"][k] for k in ("size", "checksum_is")}
                assert state == want, case  # replica status (stale after a mismatch) is not modelled


# ---------------------------------------------------------------------- the python-irodsclient adapter
class _Sock:
    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: Any) -> None:
        self.sent += bytes(data)


class _Conn:
    def __init__(self, reply_error: Optional[int]) -> None:
        self.socket = _Sock()
        self.reply_error = reply_error
        self.released: List[bool] = []

    def __enter__(self) -> "_Conn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self, destroy: bool = False) -> None:
        self.released.append(destroy)

    def recv(self) -> Any:
        if self.reply_error is not None:
            from irods.exception import get_exception_by_code

            raise get_exception_by_code(self.reply_error)

        class Reply:
            int_info = 0
        return Reply()


class _Pool:
    def __init__(self, reply_error: Optional[int] = None) -> None:
        self.conns: List[_Conn] = []
        self.reply_error = reply_error

    def get_connection(self) -> _Conn:
        self.conns.append(_Conn(self.reply_error))
        return self.conns[-1]


class _Session:
    def __init__(self, reply_error: Optional[int] = None) -> None:
        self.pool = _Pool(reply_error)
        self.username, self.zone, self.default_resource = "omero-svc", "z", "demoResc"


def _request(sent: bytes) -> Tuple[Dict[str, str], Dict[str, str], bytes]:
    """(header fields, condInput, bytes buffer) of one packed iRODS request."""
    import struct

    hlen = struct.unpack(">i", sent[:4])[0]
    header = sent[4:4 + hlen].decode()
    fields = dict(re.findall(r"<(\w+)>([^<]*)</\1>", header))
    mlen, blen = int(fields["msgLen"]), int(fields["bsLen"])
    body = sent[4 + hlen:4 + hlen + mlen].decode()
    keys, values = re.findall(r"<keyWord>([^<]*)</keyWord>", body), re.findall(r"<svalue>([^<]*)</svalue>", body)
    assert len(sent) == 4 + hlen + mlen + blen  # nothing else on the wire
    return fields, dict(zip(keys, values)), sent[4 + hlen + mlen:]


def test_prc_put_new_is_one_request_with_the_bytes_and_our_sha256_and_no_force_flag() -> None:
    pytest.importorskip("irods")
    from policy.prc_zone import PrcZone

    s = _Session()
    z = PrcZone(s)
    data = os.urandom(5000)
    z.put_new("/z/home/u/content/a.bin", memoryview(data), hashlib.sha256(data).hexdigest())
    assert len(s.pool.conns) == 1
    fields, cond, payload = _request(bytes(s.pool.conns[0].socket.sent))
    assert fields["type"] == "RODS_API_REQ" and fields["intInfo"] == "606"  # DATA_OBJ_PUT_AN
    assert payload == data
    assert cond == {"dataIncluded": "", "dataSize": "5000", "dataType": "generic", "verifyChksum": sha2(data),
                    "destRescName": "demoResc"}  # never forceFlag: iRODS refuses an existing object
    z.put_new("/z/home/u/content/b.bin", b"")
    _, cond, payload = _request(bytes(s.pool.conns[1].socket.sent))
    assert payload == b"" and "regChksum" in cond and "verifyChksum" not in cond and "forceFlag" not in cond


@pytest.mark.parametrize("code,kind", [(-312000, AlreadyExists), (-814000, NotFound), (-818000, NoPermission),
                                       (-314000, IrodsError)])
def test_prc_put_new_errors_are_typed_as_round_12_answered(code: int, kind: Any) -> None:
    pytest.importorskip("irods")
    from policy.prc_zone import PrcZone

    z = PrcZone(_Session(reply_error=code))
    with pytest.raises(kind) as info:
        z.put_new("/z/x", b"abc", hashlib.sha256(b"abc").hexdigest())
    assert info.value.code == code


class _PagingSession:
    """python-irodsclient's paging as round 12 observed it: a query of more than one page (500 rows) whose pool
    holds several idle connections fails with NetworkException (the next page went to another agent, which
    crashed); with one connection it returns every row. clone() gives a session with an empty pool."""

    def __init__(self, rows: List[Tuple[str, str, int, str]], idle: int) -> None:
        self.rows, self.idle_connections, self.clones = rows, idle, 0
        self.username, self.zone = "omero-svc", "z"

    def clone(self) -> "_PagingSession":
        self.clones += 1
        return _PagingSession(self.rows, 0)

    def query(self, *cols: Any) -> Any:
        session = self

        class Q:
            def filter(self, cond: Any) -> Any:
                from irods.column import Like

                like = isinstance(cond, Like)
                rows = [r for r in session.rows if (r[0] != "/t" if like else r[0] == "/t")]
                if len(rows) >= 500 and session.idle_connections > 1:
                    from irods.exception import NetworkException

                    raise NetworkException("Could not receive server response")
                from irods.models import Collection, DataObject

                return [{Collection.name: r[0], DataObject.name: r[1], DataObject.size: r[2],
                         DataObject.checksum: r[3]} for r in rows]
        return Q()

    def cleanup(self) -> None:
        pass


def test_prc_listing_after_the_writers_pages_on_one_connection() -> None:
    pytest.importorskip("irods")
    from policy.prc_zone import PrcZone

    assert {r["case"]: r.get("error", r.get("rows")) for r in golden("round12-unpack-paging.jsonl")} == {
        "same_session_after_4_threads": "NetworkException", "fresh_session": 520}
    rows = [("/t/d{}".format(i % 10), "m{:04d}".format(i), 65536, "sha2:x") for i in range(520)]
    s = _PagingSession(rows, idle=4)
    z = PrcZone(s)
    listed = z.objects_under("/t")
    assert len(listed) == 520 and s.clones == 1
    z.objects_under("/t")
    assert s.clones == 1  # one paging session, reused


# ---------------------------------------------------------------------- the whole policy
class CorruptingPlane(SimZone):
    """A data plane whose puts store other bytes than sent: iRODS' verification answers -314000 (round 12)."""

    def put_new(self, path: str, data: Any, sha256_hex: Optional[str] = None) -> None:
        if path.endswith("/m03"):
            data = bytes(data)[::-1] + b"!"
        super().put_new(path, data, sha256_hex)


def test_a_checksum_mismatch_at_the_put_fails_the_snapshot_and_leaves_nothing_under_content(
        tmp_path: Any, monkeypatch: Any) -> None:
    from simzone.prep import FakeCallback

    monkeypatch.setattr(FakeCallback, "sim_data_plane",
                        staticmethod(lambda cb: CorruptingPlane(cb._server.catalog, cb._user)))
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never"))
    archive = str(tmp_path / "a.tar")
    with open(archive, "wb") as f:
        f.write(corpus.build_tar([("./m{:02d}".format(i), corpus.payload(3000, seed=i)) for i in range(6)]))
    drop_id, _ = drop(d, archive)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed", st
    assert "m03" in (st.reason or "") and "checksum" in (st.reason or "")
    assert not [p for p, k in d.catalog.walk(st.snapshot) if "/content" in p]


def test_the_streaming_path_makes_about_one_catalog_call_per_member(tmp_path: Any) -> None:
    """One put per member (create, write and checksum in one call) where create+open+close and a checksum were
    three; with the fixed cost of a snapshot spread over 100 members."""
    def calls(n: int, sub: str) -> int:
        d = enrolled_deployment(str(tmp_path / sub), config_with(fast_path="never"))
        data = corpus.build_tar([("./transfer.xml", b"<OME/>")] + [("./m/%04d.bin" % i, b"x" * 10) for i in range(n)])
        archive = str(tmp_path / (sub + ".tar"))
        with open(archive, "wb") as f:
            f.write(data)
        drop(d, archive, run=False)
        before = dict(d.catalog.calls)
        d.run_delay_server()
        return sum(v - before.get(k, 0) for k, v in d.catalog.calls.items() if k != "write")
    per_member = (calls(110, "b") - calls(10, "a")) / 100
    assert per_member <= 1.05, per_member


class _Raw:
    def __init__(self, conn: _Conn) -> None:
        self.conn, self.desc, self.closed, self.read_sizes = conn, 7, False, []  # type: ignore[var-annotated]
        self.left = 10

    def readinto(self, b: Any) -> int:
        self.read_sizes.append(len(b))
        n = min(len(b), self.left)
        self.left -= n
        return n

    def close(self) -> None:
        self.closed = True


class _Buffered:
    def __init__(self, raw: _Raw) -> None:
        self.raw, self.closed = raw, False

    def close(self) -> None:
        self.closed = True

    def seek(self, *a: Any) -> None:
        raise AssertionError("the buffered handle must not be used: its seeks are round trips")

    write = read = readinto = seek


class _OpenSession(_Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Tuple[Any, ...]] = []
        self.conn = _Conn(None)
        session = self

        class Objs:
            def create(self, path: str, force: Any = None) -> None:
                session.calls.append(("create", path, force))

            def open(self, path: str, mode: str, **options: Any) -> _Buffered:
                session.calls.append(("open", path, mode, options))
                session.buffered = _Buffered(_Raw(session.conn))
                return session.buffered
        self.data_objects = Objs()


def test_prc_large_member_registers_its_checksum_at_close_and_writes_each_chunk_in_one_request() -> None:
    pytest.importorskip("irods")
    from policy.prc_zone import PrcZone

    s = _OpenSession()
    w = PrcZone(s).open_new_checksummed("/z/c/big")
    chunk = memoryview(os.urandom(3000))
    assert w.write(chunk) == 0  # the reply's int_info (the fake answers 0)
    w.close()
    assert s.calls == [("create", "/z/c/big", False), ("open", "/z/c/big", "w", {"regChksum": ""})]
    fields, _, payload = _request(bytes(s.conn.socket.sent))
    assert fields["intInfo"] == "676"  # DATA_OBJ_WRITE_AN
    assert payload == bytes(chunk)
    assert s.buffered.raw.closed and s.buffered.closed


def test_prc_archive_stream_reads_through_the_raw_handle() -> None:
    pytest.importorskip("irods")
    from policy.prc_zone import PrcZone

    s = _OpenSession()
    with PrcZone(s).open_stream("/z/c/a.tar") as r:
        buf = bytearray(8)
        assert r.readinto(buf) == 8 and r.readinto(buf) == 2 and r.readinto(buf) == 0
        assert not r.seekable()
    assert s.calls == [("open", "/z/c/a.tar", "r", {})]
    assert s.buffered.raw.read_sizes == [8, 8, 8] and s.buffered.raw.closed and s.buffered.closed
