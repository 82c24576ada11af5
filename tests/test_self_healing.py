"""Self-healing drops (issue 11): retries with backoff inside the delay server, permanent failures that end
the drop `failed` with a reason a person can act on, the sweep for drops nothing is scheduled for, and the
delayed rule's own prerequisites. The fake delay server runs in simulated time (simzone.prep.SimClock):
backoff and lock expiry cost no wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest
from helpers import FIXTURES, config_with, drop, enrolled_deployment, manifest_doc

from policy import vocabulary as V
from policy.errors import error_for
from policy.ingest import drop_status
from policy.manifest import manifest_to_json
from policy.retry import is_transient
from simzone.prep import NATIVE_INSTANCE, PepOutcome, pluset_seconds

SVC = "omero-svc"
PROJECT = __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(__file__)))


def deployment(tmp_path: Any, **unpack: Any) -> Any:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(**unpack) if unpack else None)
    res = d.admin_rule("omero_snapshots_sweep_start")
    assert res["ok"] and res["sweep"].startswith("armed"), res
    return d


def drain(d: Any) -> int:
    return d.server.run_delay_queue(max_rules=200, horizon=None)


def landing_avus(d: Any, drop_id: str) -> Dict[str, List[str]]:
    return V.as_dict(d.catalog.metadata(d.config.landing_collection + "/" + drop_id))


def vault_bytes(d: Any, path: str) -> bytes:
    with d.catalog.open_read(SVC, path) as f:  # the service account reads everything it placed
        return bytes(f.read())


def retry_rows(d: Any, drop_id: str) -> List[Tuple[int, str, str, str, str]]:
    return [r for r in d.catalog.delay_rows() if "'{}', 'retry'".format(drop_id) in r[3]]


def always(d: Any, op: str, code: int) -> None:
    """Every call of `op` fails with `code` (a zone that keeps failing)."""
    def hook(name: str, args: Tuple[Any, ...]) -> None:
        if name == op:
            raise error_for(code, "injected: keeps failing")
    d.catalog.fault_hook = hook


def once(d: Any, op: Any, exc: BaseException, after: int = 0) -> List[int]:
    """op: a catalog operation's name, or a tuple of names (a member write is open_new or, whole, put_new)."""
    seen = [0]
    ops = op if isinstance(op, tuple) else (op,)

    def hook(name: str, args: Tuple[Any, ...]) -> None:
        if name in ops:
            seen[0] += 1
            if seen[0] == after + 1:
                raise exc
    d.catalog.fault_hook = hook
    return seen


# ---------------------------------------------------------------------- classification
def test_transient_codes_are_the_ones_that_can_pass() -> None:
    assert is_transient(error_for(-806000)) and is_transient(error_for(-115000)) and is_transient(error_for(-406000))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    from policy.errors import IrodsError

    assert is_transient(IrodsError(-1828000, "write: NetworkException: connection lost"))
    # raw from the data plane when the server stopped under a run (tests/test_live_healing.py)
    from irods.exception import NetworkException

    assert is_transient(NetworkException("Unable to send message"))
    # every code the real server answered the adapter's calls with (round 10) is deterministic
    for code in (-818000, -130000, -834000, -833000, -809000, -310000, -814000, -358000, -1084000, -1107000,
                 -1821000, -345000, -816000, -827000, -339000, -46000, -78000, -1, -1828000):
        assert not is_transient(error_for(code)), code
    assert not is_transient(AttributeError("x")) and not is_transient(ModuleNotFoundError("libarchive"))


# ---------------------------------------------------------------------- retries
def test_a_transient_fault_heals_by_itself_and_counts_the_attempt(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(d, archive, run=False)
    once(d, "checksum", error_for(-806000, "catalog busy"))
    drain(d)
    d.catalog.fault_hook = None
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete", st
    assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["2"]
    rows = retry_rows(d, drop_id)
    assert [pluset_seconds(r[2]) for r in rows] == [30, 120]  # the 1st attempt's retry ran; the 2nd's is a no-op
    assert all(r[4] == "done" for r in rows)


def test_a_zone_that_keeps_failing_gets_bounded_retries_with_backoff_then_failed(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(d, archive, run=False)
    always(d, "checksum", -806000)
    t0 = d.server.clock.now()
    drain(d)
    d.catalog.fault_hook = None
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed", st
    assert "gave up after 5 attempts" in st.reason and "CAT_SQL_ERR" in st.reason and "reprocess" in st.reason
    assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["5"]
    assert [pluset_seconds(r[2]) for r in retry_rows(d, drop_id)] == [30, 120, 600, 3600]
    assert d.server.clock.now() - t0 >= 30 + 120 + 600 + 3600  # simulated: the suite did not wait
    # nothing moved or lost: the archive is where it was, byte for byte
    landing = d.config.landing_collection + "/" + drop_id
    assert vault_bytes(d, landing + "/transfer.tar") == open(archive, "rb").read()
    # the admin's reprocess (the zone works again) brings it home
    d.server.irule(SVC, "omero_snapshots_process_drop", [drop_id], instance=NATIVE_INSTANCE)
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"


def test_backoff_comes_from_the_configuration(tmp_path: Any) -> None:
    cfg = config_with()
    cfg["retry"] = {"backoff_seconds": [5, 7]}
    d = enrolled_deployment(str(tmp_path / "zone"), cfg)
    drop_id, _ = drop(d, FIXTURES["image_tar"], run=False)
    always(d, "checksum", -115000)
    drain(d)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and "gave up after 3 attempts" in st.reason and "SYS_SOCK_READ_TIMEDOUT" in st.reason
    assert [pluset_seconds(r[2]) for r in retry_rows(d, drop_id)] == [5, 7]


def test_a_bug_that_happens_once_heals_with_one_more_attempt(tmp_path: Any) -> None:
    """Neither transient nor a refusal: retry.error_attempts (2) attempts, the second after the first backoff."""
    d = deployment(tmp_path, fast_path="never")
    archive = FIXTURES["plate_zip"]
    drop_id, _ = drop(d, archive, run=False)
    once(d, "put_new", AttributeError("'NoneType' object has no attribute 'members'"))  # while unpacking a member
    drain(d)
    d.catalog.fault_hook = None
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete" and st.reason is None, st
    assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["2"]


def test_a_bug_that_recurs_ends_the_drop_failed_on_landing_and_snapshot_with_an_actionable_reason(
        tmp_path: Any) -> None:
    d = deployment(tmp_path, fast_path="never")
    archive = FIXTURES["plate_zip"]
    drop_id, _ = drop(d, archive, run=False)

    def hook(name: str, args: Tuple[Any, ...]) -> None:
        if name in ("open_new", "put_new"):  # a member write, whole or opened
            raise AttributeError("'NoneType' object has no attribute 'members'")  # every time: a real bug
    d.catalog.fault_hook = hook
    drain(d)
    d.catalog.fault_hook = None
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and st.snapshot, st
    want = ("gave up after 2 attempts: the last one failed too: internal error in the policy (AttributeError: "
            "'NoneType' object has no attribute 'members'); nothing was deleted or overwritten; the facility's "
            "admin can see the server log and run reprocess")
    assert st.reason == want
    assert V.first(d.catalog.metadata(st.snapshot), V.STATUS) == "failed"
    assert landing_avus(d, drop_id)[V.REASON] == [want]
    assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["2"]
    # kept, not handed over: the service account still owns it, so the reprocess can resume
    assert ("omero-svc", "own") in {(a.user, a.level) for a in d.catalog.acl(st.snapshot)}
    assert vault_bytes(d, st.snapshot + "/transfer.zip") == open(archive, "rb").read()
    assert [r for r in d.catalog.delay_rows() if r[4] == "pending" and "sweep" not in r[3]] == []
    d.server.irule(SVC, "omero_snapshots_process_drop", [drop_id], instance=NATIVE_INSTANCE)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete" and st.reason is None


def test_error_attempts_1_fails_such_a_drop_at_once(tmp_path: Any) -> None:
    from policy.config import default_config_dict

    cfg = default_config_dict()
    cfg["unpack"]["fast_path"] = "never"
    cfg["retry"]["error_attempts"] = 1
    d = enrolled_deployment(str(tmp_path / "zone"), cfg)
    drop_id, _ = drop(d, FIXTURES["plate_zip"], run=False)
    once(d, ("open_new", "put_new"), AttributeError("'NoneType' object has no attribute 'members'"))
    drain(d)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and st.reason.startswith("internal error in the policy (AttributeError"), st
    assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["1"]


# ---------------------------------------------------------------------- a kill after the retry was scheduled
KILL_AFTER_SCHEDULE = """
import os, sys
sys.path.insert(0, {root!r})
from simzone.deploy import SimulatedDeployment
d = SimulatedDeployment({zone!r})
count = lambda: d.catalog.db.execute("SELECT count(*) FROM delay WHERE body LIKE '%retry%'").fetchone()[0]
seen = [0]
def kill(op, args):
    if count() > 0:
        seen[0] += 1
        if seen[0] == {k}:
            os._exit(137)
d.catalog.fault_hook = kill
d.server.run_delay_queue(max_rules=1, horizon=None)
"""


@pytest.mark.parametrize("k", [1, 12, 40])
def test_a_run_killed_after_scheduling_its_retry_still_ends_final(tmp_path: Any, k: int) -> None:
    """The kill comes k catalog calls after the retry is in the queue: at once, mid-work, near the end."""
    d = deployment(tmp_path)
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(d, archive, run=False)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_SCHEDULE.format(root=PROJECT, zone=d.zone_dir, k=k)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert len(retry_rows(d, drop_id)) == 1  # scheduled before the kill
    assert drop_status(d.admin(), d.config, drop_id).status not in V.FINAL
    drain(d)  # no admin: the retry finds the dead run's lock, waits for it to expire, takes over
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete", st
    assert d.catalog.walk(d.config.landing_collection + "/.locks") == [
        (d.config.landing_collection + "/.locks", "collection")]
    assert vault_bytes(d, st.snapshot + "/transfer.tar") == open(archive, "rb").read()


# ---------------------------------------------------------------------- startup safety
@pytest.mark.parametrize("blocked,package", [("libarchive", "libarchive-c"), ("irods", "python-irodsclient")])
def test_a_missing_package_fails_the_drop_naming_it(tmp_path: Any, monkeypatch: Any, blocked: str,
                                                    package: str) -> None:
    d = deployment(tmp_path)
    archive = FIXTURES["image_tar"]
    for name in [m for m in list(sys.modules) if m == blocked or m.startswith(blocked + ".")] + [blocked]:
        monkeypatch.setitem(sys.modules, name, None)  # import blocked, as on a bare install
    drop_id, up = drop(d, archive)
    assert up.manifest_pep.client_error is None
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed", st
    assert "the Python package {} is not importable".format(package) in st.reason
    assert "pip install" in st.reason and "run reprocess" in st.reason
    landing = d.config.landing_collection + "/" + drop_id
    assert vault_bytes(d, landing + "/transfer.tar") == open(archive, "rb").read()  # untouched, in place
    assert all(r[4] == "done" for r in d.catalog.delay_rows() if "sweep" not in r[3])
    monkeypatch.undo()  # the admin installs the package and reprocesses
    res = d.admin_rule("omero_snapshots_reprocess", drop_id)
    assert res["ok"] and res["status"] == "complete", res


def test_unpacking_off_needs_neither_package(tmp_path: Any, monkeypatch: Any) -> None:
    d = deployment(tmp_path, enabled=False)
    monkeypatch.setitem(sys.modules, "libarchive", None)
    drop_id, _ = drop(d, FIXTURES["image_tar"])
    assert drop_status(d.admin(), d.config, drop_id).status == "placed"


def test_a_configuration_broken_after_the_upload_fails_the_drop_naming_the_problem(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["image_tar"], run=False)
    cfg = json.load(open(d.config_dir + "/config.json"))
    cfg["delay_seconds"] = -5
    with open(d.config_dir + "/config.json", "w") as f:
        json.dump(cfg, f)
    drain(d)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and "configuration cannot be used" in st.reason and "delay_seconds" in st.reason


# ---------------------------------------------------------------------- the PEP path: the sweep
def _orphan(d: Any, archive: str) -> str:
    """A complete upload whose PEP never queued it (the PEP failed, or its agent died)."""
    doc = manifest_doc(archive)
    drop_id = doc["drop_id"]
    landing = d.config.landing_collection + "/" + drop_id
    d.catalog.create_collection(SVC, landing)
    d.server.client_put(SVC, landing + "/transfer.tar", open(archive, "rb").read())
    w = d.catalog.open_new(SVC, landing + "/manifest.json")
    with w:
        w.write(manifest_to_json(doc))  # written behind the server's back: no PEP fired
    return drop_id


def test_the_sweep_restarts_a_drop_the_upload_pep_never_queued(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    drop_id = _orphan(d, FIXTURES["image_tar"])
    assert drop_status(d.admin(), d.config, drop_id).status == "received"
    drain(d)
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"
    sweeps = [r for r in d.catalog.delay_rows() if "omero_snapshots_sweep(" in r[3]]
    assert [r[4] for r in sweeps][-1] == "pending" and len({r[3] for r in sweeps}) == 1  # one chain, going on


def test_the_sweep_leaves_alone_what_is_not_stranded(tmp_path: Any) -> None:
    from policy.sweep import stranded

    d = deployment(tmp_path)
    svc = d.zone_as(SVC)
    later = d.server.clock.now() + 3600
    fresh = _orphan(d, FIXTURES["image_tar"])
    assert stranded(svc, d.config, d.server.clock.now()) == []  # within the grace time
    assert stranded(svc, d.config, later) == [fresh]
    # mallory's drop in the landing collection: not the service account's, not touched
    d.add_user("mallory")
    d.catalog.set_acl(SVC, d.config.landing_collection, "mallory", "modify_object")
    theirs, _ = drop(d, FIXTURES["image_tar"], as_user="mallory", run=False)
    # a drop still uploading (no manifest yet)
    uploading = "20261201T000000Z-upload000001"
    d.catalog.create_collection(SVC, d.config.landing_collection + "/" + uploading)
    # a complete drop
    done, _ = drop(d, FIXTURES["image_tar"])
    assert stranded(svc, d.config, d.server.clock.now() + 3600) == [fresh]
    assert theirs and uploading and done


def test_two_sweep_chains_merge_into_one(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    d.catalog.enqueue_delay(SVC, "<INST_NAME>irods_rule_engine_plugin-python-instance</INST_NAME><PLUSET>10s"
                                 "</PLUSET>", "callback.omero_snapshots_sweep('0000000000000000')")
    for _ in range(3):
        d.server.run_delay_queue(max_rules=50, horizon=4000)
    pending = [r[3] for r in d.catalog.delay_rows() if r[4] == "pending" and "sweep" in r[3]]
    assert pending == ["callback.omero_snapshots_sweep('0000000000000000')"]  # the smaller token goes on


def test_the_doctor_arms_the_sweep_once(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    for _ in range(2):
        res = d.admin_rule("omero_snapshots_doctor")
        sweep = [c for c in res["checks"] if c["check"] == "sweep"]
        assert sweep and sweep[0]["ok"], res
    assert len([r for r in d.catalog.delay_rows() if "omero_snapshots_sweep(" in r[3]]) == 1


def test_a_pep_that_fails_leaves_a_drop_the_sweep_finishes(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    drop_id = doc["drop_id"]
    landing = d.config.landing_collection + "/" + drop_id
    d.catalog.create_collection(SVC, landing)
    d.server.client_put(SVC, landing + "/transfer.tar", open(archive, "rb").read())
    once(d, "apply_metadata", error_for(-806000, "catalog busy"))  # the PEP's `queued`
    # iput: one PEP (python-irodsclient's create() would fire it twice and the second would queue the drop)
    out = d.server.client_put(SVC, landing + "/manifest.json", manifest_to_json(doc), api="put")
    d.catalog.fault_hook = None
    assert out.client_error is None and drop_status(d.admin(), d.config, drop_id).status == "received"
    assert not retry_rows(d, drop_id) and isinstance(out, PepOutcome)
    drain(d)
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"


# ---------------------------------------------------------------------- several executors at once
def test_two_delay_servers_heal_four_drops_at_once(tmp_path: Any) -> None:
    """Two executors (own catalog connections, one queue, one simulated clock) run four drops, each hit by
    one transient fault: every drop ends complete after exactly one retry, its lock gone."""
    import threading

    from simzone.catalog import SimCatalog
    from simzone.prep import FakeServer

    d = deployment(tmp_path)
    ids = [drop(d, FIXTURES["image_tar"], run=False)[0] for _ in range(4)]
    failed_once: set = set()
    guard = threading.Lock()

    def hook(name: str, args: Tuple[Any, ...]) -> None:
        if name != "checksum":
            return
        drop_id = next((i for i in ids if i in str(args[0] if args else "")), None)
        with guard:
            if drop_id is None or drop_id in failed_once:
                return
            failed_once.add(drop_id)
        raise error_for(-806000, "catalog busy")

    servers = []
    for _ in range(2):
        cat = SimCatalog(d.zone_dir)
        cat.fault_hook = hook
        servers.append(FakeServer(cat, d.server.core, d.server.log_path))
    errors: List[BaseException] = []

    def run(server: Any) -> None:
        try:
            server.run_delay_queue(max_rules=100, horizon=None)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    drain(d)  # whatever one executor left when the other still worked
    assert not errors, errors
    assert failed_once == set(ids)
    for drop_id in ids:
        st = drop_status(d.admin(), d.config, drop_id)
        assert st.status == "complete", st
        assert landing_avus(d, drop_id)[V.ATTEMPTS] == ["2"]
    assert d.catalog.walk(d.config.landing_collection + "/.locks") == [
        (d.config.landing_collection + "/.locks", "collection")]


def test_the_simulated_clock_does_not_jump_while_another_executor_runs_a_rule(tmp_path: Any) -> None:
    """Real time does not skip an hour in the middle of a run: if the shared clock did, the running drop's
    live lock would look stale to the other executor, which would take it over (seen once as a flaky
    two-executor run). The queue waits for the other executor instead of jumping."""
    import threading

    from simzone.catalog import SimCatalog
    from simzone.prep import FakeServer

    d = deployment(tmp_path)  # the sweep is queued an hour ahead
    drop_id, _ = drop(d, FIXTURES["image_tar"], run=False)
    started, go = threading.Event(), threading.Event()

    def hold(name: str, args: Tuple[Any, ...]) -> None:
        if name == "checksum" and not started.is_set():
            started.set()
            go.wait(30)

    a = FakeServer(SimCatalog(d.zone_dir), d.server.core, d.server.log_path)
    b = FakeServer(SimCatalog(d.zone_dir), d.server.core, d.server.log_path)
    a.catalog.fault_hook = hold
    ta = threading.Thread(target=lambda: a.run_delay_queue(max_rules=1, horizon=None))
    ta.start()
    assert started.wait(30)  # A is inside the drop's run, holding its lock
    t0 = d.server.clock.now()
    tb = threading.Thread(target=lambda: b.run_delay_queue(max_rules=50, horizon=None))
    tb.start()
    tb.join(0.5)
    assert d.server.clock.now() - t0 < 60, "the clock jumped while A was running"
    go.set()
    ta.join(60)
    tb.join(60)
    a.catalog.fault_hook = None
    drain(d)
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"
    assert not [p for p, _ in d.catalog.walk(d.config.landing_collection + "/.locks")][1:]
