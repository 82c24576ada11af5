"""The drop's lock as a short lease kept alive by a heartbeat (issue 20, policy/drop_lock.py).

- A run killed mid-unpack (its agent gone, heartbeat included) is taken over once its short lease ends
  (`limits.lock_seconds`, 2 minutes by default), not an hour later, and the drop ends complete, byte-exact,
  handed over, without an admin.
- A run whose step lasts longer than the lease (here: paused inside a member write) keeps its lock: its
  heartbeat, on a connection of its own, refreshes the lease meanwhile; a retry that comes by reschedules
  itself and the run finishes the drop. Without the heartbeat the same lock is taken over (the control).
- A step that is ONE microservice call (no heartbeat can run then, round 12) is covered first: the lease
  written before it lasts the step's size at `limits.lock_cover_mib_per_second`, plus the lease.
- The fake reproduces round 12: a heartbeat zone cannot act while the rule's main thread is inside a
  microservice call, can between calls, and the rule's callback refuses a second thread (on a real server
  that hangs the agent).

Time here is the fake delay server's simulated clock (simzone.prep.SimClock); the tests move it by hand and
wait for the heartbeat thread to have answered each move (no timed assertion: they wait for an event).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import FIXTURES, config_with, drop, enrolled_deployment, members_of

from policy import drop_lock
from policy import vocabulary as V
from policy.config import parse_config
from policy.drop_lock import HOLDER, acquire, expiry_of, lock_path
from policy.ingest import drop_status
from simzone.catalog import SimCatalog
from simzone.prep import NATIVE_INSTANCE, FakeServer
from simzone.zone import SimZone

SVC = "omero-svc"
HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
GOLDEN = os.path.join(HERE, "data", "prep-observed", "round12-heal-heartbeat.jsonl")


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: Any) -> None:
    """The heartbeat looks at the (simulated) clock every 20 ms instead of every second."""
    monkeypatch.setattr(drop_lock, "HEARTBEAT_WAKE_SECONDS", 0.02)


def deployment(tmp_path: Any, **unpack: Any) -> Any:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never", **unpack))
    res = d.admin_rule("omero_snapshots_sweep_start")
    assert res["ok"] and res["sweep"].startswith("armed"), res
    return d


def lock_avus(d: Any, drop_id: str) -> Dict[str, List[str]]:
    return V.as_dict(d.catalog.metadata(lock_path(d.config, drop_id)))


def wait_for(pred: Any, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("waited {} s for: {}".format(timeout, what))
        time.sleep(0.01)


def paused_delay_run(d: Any, when: Any) -> Tuple[Any, threading.Event, threading.Event, List[Any]]:
    """The delay server of another agent (its own catalog connection) in a thread, stopped where when(op, args)
    says: returns (thread, reached, go, errors)."""
    reached, go = threading.Event(), threading.Event()
    server = FakeServer(SimCatalog(d.zone_dir), d.server.core, d.server.log_path)
    errors: List[Any] = []

    def hook(op: str, args: Tuple[Any, ...]) -> None:
        if not reached.is_set() and when(op, args):
            reached.set()
            assert go.wait(120)

    server.catalog.fault_hook = hook

    def run() -> None:
        try:
            server.run_delay_queue(max_rules=1, horizon=None)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, reached, go, errors


def advance_and_wait_for_beat(d: Any, drop_id: str, seconds: int) -> None:
    """Move the simulated clock `seconds` on, then wait until the lease's expiry moved past the new `now`
    plus half a lease (the heartbeat answered the move)."""
    clock = d.server.clock
    clock.advance_to(clock.now() + seconds)
    target = int(clock.now()) + d.config.limits.lock_seconds // 2
    wait_for(lambda: (expiry_of(d.catalog.metadata(lock_path(d.config, drop_id))) or 0) >= target,
             "the heartbeat to refresh the lease after the clock moved {} s".format(seconds))


def in_content_write(op: str, args: Tuple[Any, ...]) -> bool:
    return op in ("open_new", "put_new") and "/content/" in str(args[0] if args else "")  # a whole member is one put


# ---------------------------------------------------------------------- configuration
def test_the_lease_defaults_to_two_minutes_refreshed_every_30_s() -> None:
    from policy.config import default_config_dict

    cfg = parse_config(default_config_dict(), None)
    assert (cfg.limits.lock_seconds, cfg.limits.lock_refresh_seconds) == (120, 30)


def test_a_refresh_interval_over_half_the_lease_is_refused_naming_both_fields() -> None:
    from policy.config import ConfigError, default_config_dict

    doc = default_config_dict()
    doc["limits"].update(lock_seconds=60, lock_refresh_seconds=31)
    with pytest.raises(ConfigError) as e:
        parse_config(doc, None)
    assert "lock_refresh_seconds" in str(e.value) and "lock_seconds" in str(e.value)


# ---------------------------------------------------------------------- a long step keeps its lease
def _long_step(tmp_path: Any, heartbeat: bool, monkeypatch: Any) -> Tuple[Any, str, Any, str]:
    """A run paused inside a member write (a data-plane call, during which a real agent's heartbeat thread runs)
    while the clock moves 1.5 leases on; then another run tries the drop. Returns (d, drop_id, outcome of that
    try, the paused run's token)."""
    if not heartbeat:
        monkeypatch.setattr(drop_lock.DropLock, "start_heartbeat", lambda self, opener: False)
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["plate_zip"], run=False)
    t, reached, go, errors = paused_delay_run(d, in_content_write)
    try:
        assert reached.wait(60), errors
        token = lock_avus(d, drop_id)[drop_lock.OWNER][0]
        lease = d.config.limits.lock_seconds
        if heartbeat:
            for _ in range(3 * lease // 60):  # 1.5 leases, a minute at a time
                advance_and_wait_for_beat(d, drop_id, 30)
                advance_and_wait_for_beat(d, drop_id, 30)
        else:
            d.server.clock.advance_to(d.server.clock.now() + lease * 3 // 2)
        other = acquire(SimZone(SimCatalog(d.zone_dir), SVC), d.config, drop_id, clock=d.server.clock.now)
        return d, drop_id, other, token
    finally:
        go.set()
        t.join(120)


def test_a_step_longer_than_the_lease_with_a_live_heartbeat_is_not_taken_over(tmp_path: Any,
                                                                               monkeypatch: Any) -> None:
    d, drop_id, other, token = _long_step(tmp_path, True, monkeypatch)
    assert other is None, "a live run's lock was taken over"
    d.run_delay_server()
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete", st
    assert V.as_dict(d.catalog.metadata(d.config.landing_collection + "/" + drop_id))[V.ATTEMPTS] == ["1"]
    assert not [p for p, _ in d.catalog.walk(d.config.landing_collection + "/.locks")][1:], "a lock was left"


def test_without_the_heartbeat_the_same_long_step_loses_its_lock(tmp_path: Any, monkeypatch: Any) -> None:
    """The control: what the heartbeat prevents (a live run's lock taken over after one lease)."""
    d, drop_id, other, token = _long_step(tmp_path, False, monkeypatch)
    assert other is not None and other.token != token


def test_a_retry_that_finds_the_lease_alive_waits_for_its_end(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["plate_zip"], run=False)
    t, reached, go, errors = paused_delay_run(d, in_content_write)
    try:
        assert reached.wait(60), errors
        advance_and_wait_for_beat(d, drop_id, 30)
        expires = expiry_of(d.catalog.metadata(lock_path(d.config, drop_id)))
        b = FakeServer(SimCatalog(d.zone_dir), d.server.core, d.server.log_path)
        out = b.irule(SVC, "omero_snapshots_process_drop", [drop_id, "retry"], instance=NATIVE_INSTANCE)
        assert "another run is processing" in json.loads(out[0])["reason"]
        due = [r for r in d.catalog.delay_rows() if "'{}', 'retry'".format(drop_id) in r[3] and r[4] == "pending"]
        assert due, "the retry did not reschedule itself"
        assert expires is not None and expires - d.server.clock.now() <= d.config.limits.lock_seconds
    finally:
        go.set()
        t.join(120)
    assert not errors
    d.run_delay_server()
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"


# ---------------------------------------------------------------------- a dead holder is taken over soon
KILLER = """
import json, os, sys
sys.path.insert(0, {root!r})
from simzone.deploy import SimulatedDeployment
d = SimulatedDeployment({zone!r})
seen = [0]
def kill(op, args):
    if op in ("open_new", "put_new") and "/content/" in str(args[0] if args else ""):
        seen[0] += 1
        if seen[0] == {k}:
            with open({out!r}, "w") as f:
                json.dump({{"now": d.server.clock.now()}}, f)
            os._exit(137)
d.catalog.fault_hook = kill
d.server.run_delay_queue(max_rules=1, horizon=None)
"""


@pytest.mark.parametrize("archive", ["plate_zip", "dataset_zip"])
def test_a_killed_holder_is_taken_over_after_the_short_lease(tmp_path: Any, archive: str) -> None:
    """Killed (os._exit: agent and heartbeat gone) at its 2nd member write, mid-unpack."""
    d = deployment(tmp_path)
    path = FIXTURES[archive]
    drop_id, _ = drop(d, path, run=False)
    out = str(tmp_path / "killed.json")
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=PROJECT, zone=d.zone_dir, k=2, out=out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    with open(out) as f:
        killed_at = json.load(f)["now"]
    holder = lock_avus(d, drop_id)[HOLDER][0]
    assert holder.startswith("pid ") and " on " in holder
    # the delay server, rule by rule, noting when the drop became final (simulated seconds after the kill)
    final_at: Optional[float] = None
    for _ in range(50):
        if not [r for r in d.catalog.delay_rows() if r[4] == "pending" and "omero_snapshots_sweep(" not in r[3]]:
            break  # only the periodic sweep is left
        d.server.run_delay_queue(max_rules=1, horizon=None)
        if final_at is None and drop_status(d.admin(), d.config, drop_id).status in V.FINAL:
            final_at = d.server.clock.now()
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "complete", st
    assert final_at is not None
    lease = d.config.limits.lock_seconds
    assert final_at - killed_at <= lease + 5, "taken over {:.0f} s after the kill (lease {} s)".format(
        final_at - killed_at, lease)
    want = members_of(path)
    content = st.snapshot + "/content"
    got = {p[len(content) + 1:]: bytes(d.catalog.open_read(SVC, p).read()) for p, kind in d.catalog.walk(content)
           if kind == "data_object"}
    assert got == want
    assert {(a.user, a.level) for a in d.catalog.acl(st.snapshot)} == {("alice", "own"), (SVC, "read_object")}
    assert V.as_dict(d.catalog.metadata(d.config.landing_collection + "/" + drop_id))[V.ATTEMPTS] == ["2"]


# ---------------------------------------------------------------------- one long microservice call is covered
def test_a_long_microservice_step_is_covered_by_a_lease_of_its_size(tmp_path: Any) -> None:
    """The archive's checksum is one microservice call: no heartbeat can run during it (the fake, like the real
    agent, holds its interpreter), so the lease written first must outlast it: size / lock_cover_mib_per_second
    plus the lease. Here the rate is set so low that the 2 MiB archive needs 20 s of cover (and a short refresh,
    so that such a step counts as long)."""
    from policy.config import default_config_dict

    cfg = default_config_dict()
    cfg["unpack"]["fast_path"] = "never"
    cfg["limits"].update(lock_seconds=30, lock_refresh_seconds=2, lock_cover_mib_per_second=0.1)
    d = enrolled_deployment(str(tmp_path / "zone"), cfg)
    path = FIXTURES["image_tar"]
    drop_id, _ = drop(d, path, run=False)
    t, reached, go, errors = paused_delay_run(d, lambda op, args: op == "checksum" and str(args[0] if args else "")
                                              .endswith(".tar"))
    try:
        assert reached.wait(60), errors
        now = d.server.clock.now()
        expires = expiry_of(d.catalog.metadata(lock_path(d.config, drop_id)))
        cover = os.path.getsize(path) / (0.1 * (1 << 20))
        assert expires is not None and expires >= int(now) + 30 + int(cover) - 1, (expires - now, cover)
        # past the plain lease, inside the cover: still alive
        d.server.clock.advance_to(now + 30 + cover / 2)
        assert acquire(SimZone(SimCatalog(d.zone_dir), SVC), d.config, drop_id, clock=d.server.clock.now) is None
    finally:
        go.set()
        t.join(120)
    assert not errors
    d.run_delay_server()
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"


# ---------------------------------------------------------------------- the fake reproduces round 12
def _golden() -> Dict[str, Dict[str, Any]]:
    with open(GOLDEN) as f:
        recs = [json.loads(line) for line in f]
    return {r["probe"]: r for r in recs if r.get("run") == 2}


def test_the_fake_reproduces_round_12(tmp_path: Any) -> None:
    """H1/H3: a heartbeat connection cannot act during a microservice call of the main thread, and can between
    its calls; H2: a second thread must not use the rule's callback (the fake refuses; the real agent hangs)."""
    gold = _golden()
    assert gold["h3_prc_thread_while_main_in_msiSleep"]["thread_ops_during"] == 0
    assert gold["h3_prc_thread_while_main_calls_microservices"]["thread_ops_during"] > 0
    assert gold["h3_prc_thread_while_main_calls_microservices"]["errors"] == []
    d = enrolled_deployment(str(tmp_path / "zone"))
    cb = d.server.callback(SVC)
    hb = type(cb).sim_heartbeat_zone(cb)
    target = d.config.landing_collection
    ops: List[Tuple[float, float]] = []
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            hb.metadata(target)
            ops.append((t0, time.monotonic()))
            time.sleep(0.005)

    th = threading.Thread(target=beat)
    th.start()
    try:
        wait_for(lambda: len(ops) > 3, "the heartbeat thread to run")
        a = time.monotonic()
        cb.msiSleep("1", "0")
        b = time.monotonic()
        inside = [o for o in ops if a < o[1] < b]
        assert inside == [], "a heartbeat call completed inside the main thread's microservice call"
        n = len(ops)
        for i in range(40):
            cb.msiCollCreate(target + "/r12-{}".format(i), "0", 0)
            time.sleep(0.002)  # Python between calls: other threads run
        assert len(ops) > n, "the heartbeat never ran between the main thread's microservice calls"
        errors: List[BaseException] = []

        def second() -> None:
            try:
                cb.writeLine("serverLog", "from a second thread")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        s = threading.Thread(target=second)
        s.start()
        s.join(10)
        assert errors and "hangs the agent" in str(errors[0])
    finally:
        stop.set()
        th.join(10)
        hb.close()
