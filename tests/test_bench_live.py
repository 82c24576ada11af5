"""bench/unpack.py --live without a server: its pure parts, driven by fake sessions, zones and clocks.

What a real server does (the policy's processing, msiTarFileExtract, checksums) is scripted here; the live
numbers themselves can only come from a run against one (bench/README.md, "Against a real server").
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import json
import os
import socket
import sys
import tarfile
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest

from policy.errors import NotFound
from policy.irods_rules_client import RuleArgumentError
from policy.zone import Avu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_unpack", os.path.join(ROOT, "bench", "unpack.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_unpack"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
LANDING = "/tempZone/home/omero-svc/landing"
BASE_EPOCH = 1764000000  # the fake server's clock at the manifest's close


# ---------------------------------------------------------------------- fakes
class Clock:
    """perf_counter and sleep in one: sleeping advances the time."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t
        self.slept: List[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def advance(clock: Any, seconds: float) -> None:
    """Time passes on a fake clock; on a real one (time.perf_counter) 1/100 of it really passes."""
    if isinstance(clock, Clock):
        clock.t += seconds
    else:
        time.sleep(seconds / 100)


class Writer(io.BytesIO):
    def __init__(self, path: str, zone: "FakeZone") -> None:
        super().__init__()
        self.path, self.zone, self.writes = path, zone, 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)

    def close(self) -> None:
        if not self.closed:
            self.zone.objects[self.path] = self.getvalue()
            self.zone.events.append(("close", self.path, self.writes))
            self.zone.on_close(self.path)
        super().close()


class FakeSession:
    """What native_baseline uses of a python-irodsclient session."""

    def __init__(self, zone: "FakeZone", clock: Clock) -> None:
        self.zone, self.clock = zone, clock
        self.removed: List[Tuple[str, bool, bool]] = []
        self.chksummed: List[str] = []
        self.data_objects = SimpleNamespace(get=self._get, chksum=self._chksum)
        self.collections = SimpleNamespace(remove=self._remove)

    def _get(self, path: str) -> Any:
        assert path in self.zone.objects, path
        return SimpleNamespace(replicas=[SimpleNamespace(resource_name="demoResc", resc_hier="demoResc")])

    def _chksum(self, path: str) -> str:
        self.chksummed.append(path)
        advance(self.clock, 0.01)
        return "sha2:AAAA"

    def _remove(self, path: str, recurse: bool = False, force: bool = False) -> None:
        self.removed.append((path, recurse, force))
        for p in [p for p in self.zone.objects if p.startswith(path + "/")]:
            del self.zone.objects[p]


class FakeZone:
    """The service account's PrcZone: records what the upload does, in order."""

    def __init__(self, clock: Any = None) -> None:
        self.clock = clock or Clock()
        self.events: List[Tuple[Any, ...]] = []
        self.objects: Dict[str, bytes] = {}
        self.collections: List[str] = []
        self.session = FakeSession(self, self.clock)
        self.manifest_closed_at: Optional[float] = None
        self.user = "omero-svc"

    def create_collection(self, path: str, recursive: bool = False) -> None:
        self.collections.append(path)
        self.events.append(("mkdir", path))

    def apply_metadata(self, path: str, ops: List[Any]) -> None:
        self.events.append(("meta", path, tuple((o.operation, o.attribute, o.value) for o in ops)))

    def open_new(self, path: str) -> Writer:
        self.events.append(("open", path))
        return Writer(path, self)

    def on_close(self, path: str) -> None:
        if path.endswith("/manifest.json"):
            self.manifest_closed_at = self.clock()

    def walk(self, top: str) -> List[Tuple[str, str]]:
        return [(top, "collection")] + sorted((p, "data_object") for p in self.objects if p.startswith(top + "/"))


class RuleFailed(Exception):
    """python-irodsclient's answer to a rule that failed (an iRODSException carrying the code)."""

    def __init__(self, code: int) -> None:
        super().__init__("rule failed: {}".format(code))
        self.code = code


def _zone_hint(path: str) -> str:
    """getZoneNameFromHint (iRODS rcMisc): a path's first component, or the WHOLE text when it does not start
    with '/'."""
    return path[1:].split("/", 1)[0] if path.startswith("/") else path


class FakeRule:
    """irods.rule.Rule through the native rule language instance, for the one rule shape the bench sends:
    statements `[*v = errorcode(]msiTarFileExtract(a, b, c, *s)[)]` and `*out = "<text>"`.

    Faithful to the records, not to a guess: input parameters reach the rule VERBATIM (round 9: '"x"' keeps
    its quotes); a string literal in the rule text arrives without them and interpolates *vars; the msi's
    codes are round 10's (-46000 members already there, -1821000 archive missing, -78000 unknown resource)
    and the first real run's -109000 (rsStructFileExtAndReg's isSameZone on the two hints); errorcode()
    returns the code, a bare failing msi fails the rule. Extracting 'creates' `members` objects under b.
    """

    calls: List[Dict[str, Any]] = []
    members = 3
    resources = ("demoResc",)
    forget_out = False  # a server that sends no *out back (the bench must say so, not guess)

    def __init__(self, session: Any, **kwargs: Any) -> None:
        self.session, self.kwargs = session, kwargs
        FakeRule.calls.append(kwargs)

    def _value(self, expr: str, env: Dict[str, Any]) -> Any:
        expr = expr.strip()
        if expr.startswith('"') and expr.endswith('"'):
            text = expr[1:-1]
            for name in sorted(env, key=len, reverse=True):
                text = text.replace(name, str(env[name]))
            return text
        if expr.startswith("*"):
            return env.get(expr, "")
        return int(expr)

    def _extract(self, tar: str, coll: str, resc: str) -> int:
        objects = getattr(getattr(self.session, "zone", None), "objects", {})
        if _zone_hint(tar) != _zone_hint(coll):
            return -109000  # SYS_CROSS_ZONE_MV_NOT_SUPPORTED, before anything is opened
        if resc not in FakeRule.resources:
            return -78000
        if isinstance(self.session, FakeSession) and tar not in objects:
            return -1821000
        names = ["{}/root_0/m{}".format(coll, i) for i in range(FakeRule.members)]
        if any(n in objects for n in names):
            return -46000
        if isinstance(self.session, FakeSession):
            advance(self.session.clock, 2.0)
            for n in names:
                objects[n] = b"x"
        return 0

    def execute(self, session_cleanup: bool = True) -> Any:
        import re

        self.kwargs["session_cleanup"] = session_cleanup
        assert self.kwargs["instance_name"] == "irods_rule_engine_plugin-irods_rule_language-instance"
        env: Dict[str, Any] = dict(self.kwargs.get("params") or {})  # verbatim, quotes and all
        for stmt in [x.strip() for x in self.kwargs["body"].split(";") if x.strip()]:
            m = re.fullmatch(r'(?:(\*\w+) = errorcode\()?msiTarFileExtract\((.*)\)(\))?', stmt)
            if m:
                args = [a.strip() for a in m.group(2).split(",")]
                assert len(args) == 4 and args[3].startswith("*"), stmt
                code = self._extract(*[str(self._value(a, env)) for a in args[:3]])
                if m.group(1):
                    env[m.group(1)] = code
                elif code < 0:
                    raise RuleFailed(code)
                env[args[3]] = code
                continue
            m = re.fullmatch(r'(\*\w+) = (".*")', stmt)
            assert m, "statement the fake does not know: " + stmt
            env[m.group(1)] = self._value(m.group(2), env)
        out = self.kwargs["output"]
        if FakeRule.forget_out or out not in env:
            return SimpleNamespace(MsParam_PI=[])
        return SimpleNamespace(MsParam_PI=[SimpleNamespace(label=out, type="STR_PI",
                                                           inOutStruct=SimpleNamespace(myStr=str(env[out])))])


@pytest.fixture(autouse=True)
def _reset_rule() -> None:
    FakeRule.calls, FakeRule.members, FakeRule.forget_out = [], 3, False


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(BASE_EPOCH + int(seconds), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class FakeServer:
    """The policy on a server, as the status rule and the landing record show it, by time since the manifest."""

    # (seconds after the manifest's close, status rule, landing record status)
    SCRIPT = [(0.0, "queued", "queued"), (3.1, "processing", "processing"), (4.0, "unpacking", "processing"),
              (6.0, "complete", "processing"), (6.3, "complete", "complete")]

    def __init__(self, zone: FakeZone, path: str = "fast") -> None:
        self.zone, self.path = zone, path
        self.snapshot = "/tempZone/home/tuser/omero-snapshots/snap"

    def elapsed(self) -> float:
        assert self.zone.manifest_closed_at is not None, "polled before the manifest was written"
        return self.zone.clock() - self.zone.manifest_closed_at

    def state(self) -> Tuple[str, str, float]:
        """(status rule, landing record status, when the landing record got that status)."""
        e = self.elapsed()
        current = [s for s in self.SCRIPT if s[0] <= e][-1]
        since = min(s[0] for s in self.SCRIPT if s[2] == current[2])
        return current[1], current[2], since

    def status(self, drop_id: str) -> Dict[str, Any]:
        advance(self.zone.clock, 0.05)  # a rule call takes a while
        rule_status, _, _ = self.state()
        snap = self.snapshot if rule_status not in ("queued",) else None
        return {"drop": drop_id, "status": rule_status, "reason": None, "snapshot": snap}

    def landing(self) -> List[Avu]:
        _, landing_status, since = self.state()
        return [Avu("omero.snapshot.status", landing_status), Avu("omero.snapshot.updated", iso(since))]


class FakeAdmin:
    def __init__(self, h: "FakeHarness") -> None:
        self.h = h

    def metadata(self, path: str) -> List[Avu]:
        if path == self.h.server.snapshot:
            stats = {"seconds": 1.5, "started": time.time() - 0.2, "path": self.h.server.path, "writers": 4,
                     "members": 3, "phases": {"scan": 0.5}, "pid": 4242, "ru_maxrss_kb": 60000, "vmhwm_kb": 59000}
            return [Avu("omero.snapshot.unpack_path", self.h.server.path), Avu("omero.snapshot.member_count", "3"),
                    Avu("omero.snapshot.unpack_stats", json.dumps(stats))]
        if path.startswith(LANDING + "/"):
            return self.h.server.landing()
        raise NotFound(-310000, path)


class FakeHarness:
    """What bench/unpack.py uses of tests/harness.py's LiveHarness."""

    zone_name, service_account, landing, omero_server = "tempZone", "omero-svc", LANDING, "live-x.omero.invalid"
    unique = staticmethod(lambda prefix="t": prefix + "0123456789")

    def __init__(self, clock: Any = None, path: str = "fast") -> None:
        self.svc = FakeZone(clock)
        self.server = FakeServer(self.svc, path)
        self.admin = FakeAdmin(self)
        self.drops: List[str] = []
        self.rules: List[Tuple[str, Tuple[str, ...]]] = []
        self.closed = False

    def admin_rule(self, name: str, *args: str) -> Dict[str, Any]:
        self.rules.append((name, args))
        assert name == "omero_snapshots_status"
        return self.server.status(args[0])

    def exists(self, path: str) -> bool:
        return False

    def researcher(self) -> Tuple[str, str]:
        return "tuser", "ouser"

    def close(self) -> None:
        self.closed = True


def small_tar(tmp_path: Any, name: str = "a.tar") -> str:
    path = str(tmp_path / name)
    with tarfile.open(path, "w") as tf:
        for i in range(3):
            data = bytes([i]) * (3 << 20)
            info = tarfile.TarInfo("./root_0/m{}".format(i))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------------- no server: exit 2, clearly
def test_live_without_configuration_exits_2(monkeypatch: Any, capsys: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("IRODS_ENVIRONMENT_FILE", raising=False)
    monkeypatch.delenv("IRODS_ADMIN_ENVIRONMENT_FILE", raising=False)
    assert bench.main(["--live", "--size-mb", "8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "IRODS_ENVIRONMENT_FILE" in err and "IRODS_ADMIN_ENVIRONMENT_FILE" in err and "not configured" in err
    assert os.listdir(str(tmp_path)) == []  # nothing generated, nothing written


def test_live_with_unreachable_server_exits_2(monkeypatch: Any, capsys: Any, tmp_path: Any) -> None:
    pytest.importorskip("irods")
    from irods.password_obfuscation import encode

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / ".irodsA").write_text(encode("x"))
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"irods_host": "127.0.0.1", "irods_port": port, "irods_user_name": "omero-svc",
                               "irods_zone_name": "tempZone",
                               "irods_authentication_file": str(tmp_path / ".irodsA")}))
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(env))
    monkeypatch.setenv("IRODS_ADMIN_ENVIRONMENT_FILE", str(env))
    assert bench.main(["--live", "--size-mb", "8", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err and "127.0.0.1:{}".format(port) in err


def test_live_options_are_for_live_only(capsys: Any) -> None:
    with pytest.raises(SystemExit) as e:
        bench.main(["--round6"])
    assert e.value.code == 2 and "--live only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--live", "--round6", "--size-mb", "8"])


# ---------------------------------------------------------------------- archives
def test_round6_archive_is_the_one_of_round_6(tmp_path: Any) -> None:
    path = str(tmp_path / "round6.tar")
    info = bench.write_round6(path, bench.make_pool())
    assert info == {"members": 152, "bytes": 150 * (1 << 20) + 2 * (25 << 20)}
    assert os.path.getsize(path) == 209797120  # prep-observed/round6-unpack-paths.jsonl
    with tarfile.open(path) as tf:
        members = tf.getmembers()
    assert len(members) == 152 and all(m.isfile() for m in members)
    assert sorted(m.size for m in members) == [1 << 20] * 150 + [25 << 20] * 2


def test_live_archives_default_to_round6_else_two_tars_and_the_hcs_plate(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(bench, "HCS_PLATE", (20, 1024))
    pool = b"\x01" * (1 << 16)
    args = SimpleNamespace(size_mb=1, no_hcs=False)
    names = [n for n, _, _ in bench.live_archives(args, str(tmp_path), pool)]
    assert names == ["many-small.tar", "few-large.tar", "hcs-5000x64k.tar"]  # no tar.gz: the native one is tar's
    args.no_hcs = True
    assert [n for n, _, _ in bench.live_archives(args, str(tmp_path), pool)] == ["many-small.tar", "few-large.tar"]


# ---------------------------------------------------------------------- ours: upload as OMERO does, then poll
def test_upload_like_omero_writes_the_archive_then_the_manifest_last(tmp_path: Any) -> None:
    archive = small_tar(tmp_path)
    zone = FakeZone()
    t = bench.upload_like_omero(zone, LANDING, "D1", archive, b'{"m": 1}', zone.clock)
    drop = LANDING + "/D1"
    kinds = [e[0] for e in zone.events]
    assert kinds == ["mkdir", "meta", "open", "close", "meta", "open", "close"]
    assert zone.events[0] == ("mkdir", drop)
    assert ("add", "omero.snapshot.status", "uploading") in zone.events[1][2]
    assert ("remove", "omero.snapshot.status", "uploading") in zone.events[4][2]
    assert zone.events[2] == ("open", drop + "/transfer.tar")
    assert zone.events[3][2] == -(-os.path.getsize(archive) // (1 << 20))  # 1 MiB writes, like omero_client
    assert zone.events[-1][1] == drop + "/manifest.json"
    with open(archive, "rb") as f:
        assert zone.objects[drop + "/transfer.tar"] == f.read()
    assert t == zone.manifest_closed_at


def poll(t: float, status: str, landing: Optional[str], updated: Optional[str] = None) -> Dict[str, Any]:
    return {"t": t, "status": status, "landing_status": landing, "landing_updated": updated, "snapshot": "/s",
            "reason": None}


def test_derive_timings_queue_wait_from_polls_and_avus() -> None:
    polls = [poll(0.05, "queued", "queued", iso(0)), poll(0.55, "queued", "queued", iso(0)),
             poll(1.05, "processing", "processing", iso(1)), poll(1.55, "unpacking", "processing", iso(1)),
             poll(2.05, "complete", "processing", iso(1)), poll(2.55, "complete", "complete", iso(2))]
    t = bench.derive_timings(polls)
    assert t["total_s"] == 2.55 and t["done_after_s"] == 2.05  # the landing record is written last
    assert t["queue_wait_bounds_s"] == [0.55, 1.05] and t["queue_wait_s"] == 0.8
    assert t["excl_s"] == pytest.approx(1.75)
    assert t["queue_wait_avu_s"] == 1.0
    assert t["status"] == "complete" and t["polls"] == 6


def test_derive_timings_verdict_from_the_upload_pep_apart_from_the_queue_wait() -> None:
    """Issue 20: the first poll already shows the PEP's verdict (`accepted`); the delayed run starts 30 s later."""
    polls = [poll(0.12, "accepted", "accepted", iso(0)), poll(0.62, "accepted", "accepted", iso(0)),
             poll(30.12, "processing", "processing", iso(30)), poll(31.12, "complete", "complete", iso(31))]
    t = bench.derive_timings(polls)
    assert t["verdict_s"] == 0.12 and t["verdict_status"] == "accepted"
    assert t["queue_wait_bounds_s"] == [0.62, 30.12] and t["queue_wait_avu_s"] == 30.0
    # without the PEP's verdict, the verdict is the delayed run's first state
    t = bench.derive_timings([poll(0.1, "queued", "queued"), poll(14.6, "processing", "processing"),
                              poll(15.1, "complete", "complete")])
    assert t["verdict_s"] == 14.6 and t["verdict_status"] == "processing"


def test_derive_timings_first_poll_already_processing_and_no_avus() -> None:
    t = bench.derive_timings([poll(0.1, "unpacking", None), poll(0.6, "failed", "failed")])
    assert t["queue_wait_bounds_s"] == [0.0, 0.1] and t["queue_wait_avu_s"] is None
    assert t["status"] == "failed" and t["total_s"] == 0.6
    assert bench.derive_timings([poll(0.1, "queued", "queued")]) == {"polls": 1, "status": "queued"}


def test_poll_drop_every_half_second_until_done_else_timeout() -> None:
    clock = Clock()
    states = iter([("queued", "queued")] * 3 + [("complete", "processing"), ("complete", "complete")])
    cur: Dict[str, Any] = {}

    def status() -> Dict[str, Any]:
        clock.t += 0.1
        cur["s"] = next(states)
        return {"status": cur["s"][0], "snapshot": None}

    polls = bench.poll_drop(status, lambda: (cur["s"][1], None), clock(), 60, clock, clock.sleep)
    assert [p["t"] for p in polls] == pytest.approx([0.1, 0.6, 1.1, 1.6, 2.1])  # one call every 0.5 s
    assert polls[-1]["landing_status"] == "complete"
    clock2 = Clock()
    with pytest.raises(bench.LiveError, match="did not reach a final state within 2s"):
        bench.poll_drop(lambda: {"status": "queued"}, lambda: ("queued", None), clock2(), 2, clock2, clock2.sleep)


def test_run_ours_times_from_the_manifest_and_reads_the_path(tmp_path: Any) -> None:
    archive = small_tar(tmp_path)
    h = FakeHarness(path="streaming")
    r = bench.run_ours(h, archive, {"members": 3, "bytes": 9 << 20}, "0" * 64, "ouser", 60, h.svc.clock,
                       h.svc.clock.sleep)
    assert h.drops == [r["drop_id"]]  # teardown will remove it
    doc = json.loads(h.svc.objects[LANDING + "/" + r["drop_id"] + "/manifest.json"])
    assert doc["who"]["omero_user"] == "ouser" and doc["who"]["omero_server"] == h.omero_server
    assert doc["archive"]["name"] == "transfer.tar" and doc["archive"]["size"] == os.path.getsize(archive)
    assert all(name == "omero_snapshots_status" for name, _ in h.rules)
    assert r["status"] == "complete" and r["path"] == "streaming" and r["member_count_avu"] == "3"
    assert 6.3 <= r["total_s"] <= 6.9  # landing record final at 6.3 s, polls every 0.5 s
    assert 3.1 <= r["queue_wait_bounds_s"][1] <= 3.6 and r["queue_wait_avu_s"] == pytest.approx(3.1 - 0.0, abs=1)
    assert r["excl_s"] == pytest.approx(r["total_s"] - r["queue_wait_s"])


# ---------------------------------------------------------------------- the baseline: msiTarFileExtract
def test_native_extract_call_puts_the_paths_in_the_rule_text() -> None:
    body, params, out = bench.native_extract_call("/z/home/s/x/transfer.tar", "/z/home/s/x/content", "demoResc")
    assert body == ('*e = errorcode(msiTarFileExtract("/z/home/s/x/transfer.tar", "/z/home/s/x/content", '
                    '"demoResc", *s)); *out = "*e"')
    assert params == {"*out": ""} and out == "*out"  # no input parameter: they would arrive with their quotes
    for bad in ('/z/a".tar', "/z/a*x.tar", "/z/$x.tar", "/z/a\\b.tar", "/z/a\nb.tar"):
        with pytest.raises(RuleArgumentError):
            bench.native_extract_call(bad, "/z/c", "r")


def test_the_first_rule_shape_fails_in_the_fake_as_on_the_real_server() -> None:
    """The fake reproduces the issue's observation: paths as quoted input parameters arrive verbatim and
    rsStructFileExtAndReg refuses them with SYS_CROSS_ZONE_MV_NOT_SUPPORTED (so the fake can catch a regression)."""
    rule = FakeRule(object(), body='msiTarFileExtract(*tar, *coll, *resc, *status); *out = "*status"',
                    params={"*tar": '"/z/home/s/x/transfer.tar"', "*coll": '"/z/home/s/x/content"',
                            "*resc": '"demoResc"', "*out": '""'}, output="*out",
                    instance_name=bench.NATIVE_INSTANCE)
    with pytest.raises(RuleFailed) as e:
        rule.execute()
    assert e.value.code == -109000


def test_run_native_extract_uses_the_native_instance_and_reports_the_code() -> None:
    assert bench.run_native_extract(object(), "/z/a.tar", "/z/c", "demoResc", FakeRule) == 0
    (call,) = FakeRule.calls
    assert call["instance_name"] == "irods_rule_engine_plugin-irods_rule_language-instance"
    assert call["output"] == "*out" and call["session_cleanup"] is False
    with pytest.raises(bench.LiveError, match=r"-78000 \(SYS_RESC_DOES_NOT_EXIST\)"):
        bench.run_native_extract(object(), "/z/a.tar", "/z/c", "nosuchResc", FakeRule)
    with pytest.raises(bench.LiveError, match="-109000"):
        bench.run_native_extract(object(), "/z/a.tar", "/other/c", "demoResc", FakeRule)
    FakeRule.forget_out = True
    with pytest.raises(bench.LiveError, match="no status"):
        bench.run_native_extract(object(), "/z/a.tar", "/z/c", "demoResc", FakeRule)


def test_native_baseline_times_extraction_and_checksums_and_cleans_up(tmp_path: Any) -> None:
    archive = small_tar(tmp_path)
    zone = FakeZone()
    scratch = "/tempZone/home/omero-svc/unpack-bench-s1"
    b = bench.native_baseline(zone, archive, scratch, zone.clock, FakeRule)
    assert b["msi_status"] == 0
    assert b["extract_s"] == pytest.approx(2.0) and b["chksum_s"] == pytest.approx(0.03)
    assert b["total_s"] == pytest.approx(2.03) and b["checksums_s"] == pytest.approx(0.03)
    assert b["objects"] == 3 and b["checksum_scheme"] == "sha2" and b["resource"] == "demoResc"
    assert zone.session.chksummed == [scratch + "/content/root_0/m{}".format(i) for i in range(3)]
    assert '"{}/transfer.tar"'.format(scratch) in FakeRule.calls[0]["body"]
    assert zone.session.removed == [(scratch, True, True)] and not zone.objects
    FakeRule.resources = ()
    try:
        with pytest.raises(bench.LiveError, match="-78000"):
            bench.native_baseline(zone, archive, scratch + "x", zone.clock, FakeRule)
    finally:
        FakeRule.resources = ("demoResc",)
    assert zone.session.removed[-1] == (scratch + "x", True, True)  # removed on failure too


def test_run_native_extract_names_the_codes_of_round_10() -> None:
    zone = FakeZone()
    with pytest.raises(bench.LiveError, match=r"-1821000 \(REPLICA_NOT_IN_RESC"):  # no such archive
        bench.run_native_extract(zone.session, "/tempZone/x/t.tar", "/tempZone/x/tx", "demoResc", FakeRule)
    zone.objects["/tempZone/x/t.tar"] = b"tar"
    assert bench.run_native_extract(zone.session, "/tempZone/x/t.tar", "/tempZone/x/tx", "demoResc", FakeRule) == 0
    with pytest.raises(bench.LiveError, match=r"-46000 \(SYS_COPY_ALREADY_IN_RESC"):  # the same members again
        bench.run_native_extract(zone.session, "/tempZone/x/t.tar", "/tempZone/x/tx", "demoResc", FakeRule)


def test_rule_stats_from_the_unpack_stats_avu() -> None:
    text = json.dumps({"seconds": 3.25, "started": 1000.5, "path": "fast", "writers": 4, "members": 152,
                       "phases": {"scan": 1.0, "native_extract": 1.1, "verify": 0.9}, "pid": 77,
                       "ru_maxrss_kb": 61440, "vmhwm_kb": 59392, "vmrss_kb": 51200})
    st = bench.rule_stats(text, 990.0)
    assert st["rule_unpack_s"] == 3.25 and st["agent_peak_rss_mb"] == 58.0 and st["agent_rss_at_end_mb"] == 50.0
    assert st["manifest_to_unpack_start_s"] == 10.5 and st["rule_phases"]["scan"] == 1.0
    assert st["rule_writers"] == 4 and st["agent_pid"] == 77
    assert bench.rule_stats(None, 1.0) == {}
    assert "unreadable" in bench.rule_stats("{not json", 1.0)["rule_stats_error"]
    assert bench.rule_stats(json.dumps({"ru_maxrss_kb": 2048}), None)["agent_peak_rss_mb"] == 2.0


def test_hcs_plate_archive_is_5000_files_of_64_kib(tmp_path: Any) -> None:
    path = str(tmp_path / "hcs.tar")
    info = bench.write_hcs_plate(path, b"\x03" * (1 << 16))
    with tarfile.open(path) as tf:
        files = [m for m in tf.getmembers() if m.isfile()]
    assert info["members"] == len(files) == 5001  # + transfer.xml
    assert sum(1 for m in files if m.size == 64 << 10) == 5000
    assert len({m.name.rsplit("/", 1)[0] for m in files if m.name.endswith(".tif")}) == 96  # one well a directory


# ---------------------------------------------------------------------- figures
def run_ok(total: float, wait: float, path: str = "fast", rule_s: Optional[float] = None,
           rss: Optional[float] = None) -> Dict[str, Any]:
    run = {"status": "complete", "total_s": total, "excl_s": total - wait, "queue_wait_s": wait,
           "queue_wait_avu_s": round(wait), "path": path}
    if rule_s is not None:
        run.update({"rule_unpack_s": rule_s, "agent_peak_rss_mb": rss, "rule_phases": {"scan": rule_s / 2},
                    "manifest_to_unpack_start_s": wait + 0.5})
    return run


def base_ok(extract: float, total: float) -> Dict[str, Any]:
    return {"extract_s": extract, "total_s": total, "objects": 152}


def test_summarise_ratios_and_goals() -> None:
    info = {"members": 152, "bytes": 209715200}
    fast = bench.summarise("round6.tar", info, 209797120, [run_ok(32.0, 29.0, rule_s=2.6, rss=60.0),
                                                           run_ok(33.0, 29.6, rule_s=2.8, rss=70.5)],
                           [base_ok(2.0, 2.5), base_ok(2.2, 2.7)])
    assert fast["rule_unpack_s"] == 2.7 and fast["agent_peak_rss_mb"] == 70.5  # median; largest peak
    assert fast["ratio_rule_unpack"] == pytest.approx(2.7 / 2.6, abs=1e-3) and fast["rule_phases"] == {"scan": 1.35}
    assert fast["manifest_to_unpack_start_s"] == pytest.approx(29.8)
    assert fast["ours_s"] == 32.5 and fast["ours_excl_s"] == pytest.approx(3.2) and fast["native_s"] == 2.6
    assert fast["ratio"] == pytest.approx(3.2 / 2.6, abs=1e-3) and fast["goal"] == 1.5
    assert fast["goal_met"] is True and fast["goal_met_extract_only"] is False
    streaming = bench.summarise("round6.tar", info, 1, [run_ok(40.0, 10.0, "streaming")], [base_ok(2.0, 2.5)])
    assert streaming["goal"] == 3.0 and streaming["goal_met"] is False  # 30 / 2.5 = 12x
    failed = bench.summarise("round6.tar", info, 1, [{"status": "error", "error": "x"}], [{"error": "y"}])
    assert failed["ratio"] is None and failed["goal_met"] is None and failed["status"] == "error"
    table = bench.format_live_table([fast, streaming, failed])
    lines = table.splitlines()
    assert lines[0].startswith("| archive | members | bytes | our path | ours s (incl. / excl. queue wait) |")
    assert "ratio ours/native | goal |" in lines[0] and len(lines) == 5
    assert "manifest -> processing s | unpack s (rule's own) | agent peak RSS MB |" in lines[0]
    assert ("| fast | 32.50 / 3.20 | - | 29.30 (AVUs: 29.5) | 2.70 (1.04x) | 70.50 | 2.10 | 2.60 | "
            "1.23 (1.52 vs extract alone) |") in lines[2]
    assert lines[2].endswith("| fast <= 1.5x: met (NOT met vs extract alone) |")
    assert lines[3].endswith("| streaming <= 3x: NOT met |")
    assert "| - (error) | - / - | - | - | - | - | - | - | - |" in lines[4]


# ---------------------------------------------------------------------- the whole live run, faked
def test_live_main_with_a_fake_zone(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    h = FakeHarness(clock=time.perf_counter)  # main() times with the real clock
    # the fake server runs 20x faster than scripted, and the bench polls 50x faster than every 0.5 s
    h.server.SCRIPT = [(t / 20, a, b) for t, a, b in FakeServer.SCRIPT]
    monkeypatch.setattr(bench, "LIVE_POLL_S", 0.01)
    monkeypatch.setattr(bench, "open_live", lambda work: h)
    monkeypatch.setattr(bench, "make_pool", lambda: b"\x02" * (1 << 16))
    monkeypatch.setattr(bench, "HCS_PLATE", (30, 2048))

    pytest.importorskip("irods")
    monkeypatch.setattr("irods.rule.Rule", FakeRule)  # the baseline's rule goes through the fake native engine
    out = tmp_path / "out"
    rc = bench.main(["--live", "--size-mb", "1", "--runs", "2", "--out", str(out), "--tmp", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert h.closed and len(h.drops) == 6  # 3 archives x 2 runs, all handed to the teardown
    assert len(FakeRule.calls) == 6 and all(c["params"] == {"*out": ""} for c in FakeRule.calls)
    doc = json.loads((out / "unpack-live-1mb.json").read_text())
    assert doc["mode"] == "live" and doc["runs"] == 2 and doc["poll_interval_s"] == 0.01
    assert [r["archive"] for r in doc["rows"]] == ["many-small.tar", "few-large.tar", "hcs-5000x64k.tar"]
    for row in doc["rows"]:
        assert row["status"] == "complete" and row["path"] == "fast" and len(row["ours_runs"]) == 2
        assert row["native_objects"] == [3] and row["goal"] == 1.5
        for column in ("ratio", "ratio_extract_only", "native_extract_s", "native_s", "rule_unpack_s",
                       "ratio_rule_unpack", "agent_peak_rss_mb", "queue_wait_s", "manifest_to_unpack_start_s"):
            assert row[column] is not None, column  # every column computed
        assert all(not b.get("error") for b in row["native_runs"])
    assert "| many-small.tar | 17 |" in captured.out and "omero.snapshot.unpack_path" in captured.out
    assert "| hcs-5000x64k.tar | 31 |" in captured.out
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith("unpack-bench-live-")]  # work dir removed


def test_live_main_enrolment_failure_tears_down_and_says_so(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    h = FakeHarness()

    def refuse() -> Tuple[str, str]:
        raise AssertionError({"ok": False, "reason": "not a rodsadmin"})

    h.researcher = refuse  # type: ignore[method-assign]
    monkeypatch.setattr(bench, "open_live", lambda work: h)
    assert bench.main(["--live", "--round6", "--out", str(tmp_path / "out"), "--tmp", str(tmp_path)]) == 1
    assert h.closed and "could not create and enrol a test user" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fast_path_is_set_for_the_run_and_the_configuration_restored_byte_for_byte(tmp_path: Any) -> None:
    path = tmp_path / "config.json"
    original = b'{\n  "config_version": 1,\n  "unpack": {"parallel_writers": 4}\n}\n'
    path.write_bytes(original)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))
    before = os.stat(path)
    with pytest.raises(RuntimeError):
        with bench.ServerConfigEdit(str(path), "never"):
            doc = json.loads(path.read_text())
            assert doc["unpack"] == {"parallel_writers": 4, "fast_path": "never"} and doc["config_version"] == 1
            raise RuntimeError("the run failed")  # restored all the same
    after = os.stat(path)
    assert path.read_bytes() == original
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (before.st_mode, before.st_uid, before.st_mtime_ns)
    with bench.ServerConfigEdit(str(path), None):  # no --fast-path: the file is not even read
        path.write_bytes(b"changed")
    assert path.read_bytes() == b"changed"
    assert not list(tmp_path.glob("*.bench-tmp"))
