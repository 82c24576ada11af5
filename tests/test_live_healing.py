"""Faults on a REAL iRODS server while a drop is being processed (issue 20; `pytest -m live`).

Each test faults a drop in the middle of its processing and then only watches: no admin rule that changes
anything, no reprocess. The drop must end by itself `complete`, every member byte-exact, handed over (the
user `own`, the service account `read`), no lock left; the test prints its time-to-final (seconds from the
fault to that state), the figures of docs/robustness.md's real-server table.

- kill -9 of the agent running the drop's delayed rule, mid-unpack, on the fast path (native extraction) and
  on the streaming path (`unpack.fast_path: never`); the agent is the lock's holder
  (`omero.snapshot.lock_holder`, "pid N on host"), checked to be an irodsAgent of the irods OS user;
- the server stopped and started again mid-unpack (the test bundle's stop.sh / start.sh);
- a manifest created by python-irodsclient's create() and never written (the empty arrival's fallback run):
  it ends `quarantined` as empty, the drop intact;
- a drop the upload PEP never queued (its landing record was busy when the manifest arrived): the sweep
  restarts it (`retry.sweep_seconds` / `sweep_grace_seconds` set to 60 for the test).

These tests act on the server's processes, its configuration file and its service: they need the real test
zone of ../shared/irods/ set up by tests/live/real_zone.sh (OMERO_SNAPSHOTS_REAL_ZONE=1 in its live.env), root,
and the zone's EXCLUSIVE lock for the whole run (tests/live/real_zone.sh --reinstall first, see
../shared/irods/README.md and the project's lock protocol). Configuration changes are made in
/etc/irods/omero_snapshots/config.json and restored byte for byte. Otherwise every test is skipped, saying why.

Environment: OMERO_SNAPSHOTS_HEAL_MB (archive size, default 256), OMERO_SNAPSHOTS_HEAL_MEMBERS (default 512),
OMERO_SNAPSHOTS_HEAL_TIMEOUT (seconds a drop may take to heal, default 600), OMERO_SNAPSHOTS_HEAL_REPORT (a
file to append one JSON line per test to).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from harness import LiveHarness, live_available

from policy import vocabulary as V
from policy.manifest import build_manifest, new_drop_id

pytestmark = pytest.mark.live

BUNDLE = "/usr/local/lib/irods-real"
CONFIG = os.environ.get("OMERO_SNAPSHOTS_CONFIG", "/etc/irods/omero_snapshots/config.json")
SIZE_MB = int(os.environ.get("OMERO_SNAPSHOTS_HEAL_MB", "256"))
MEMBERS = int(os.environ.get("OMERO_SNAPSHOTS_HEAL_MEMBERS", "512"))
HEAL_TIMEOUT = float(os.environ.get("OMERO_SNAPSHOTS_HEAL_TIMEOUT", "600"))
HOLDER = V.NS + "lock_holder"

def _available() -> Tuple[str, str]:
    """test_live's configured and reachable zone, and this host may kill its agents and restart it."""
    envs = live_available()
    if os.environ.get("OMERO_SNAPSHOTS_REAL_ZONE") != "1":
        pytest.skip("these tests kill agents and restart the server: only on the test zone of tests/live/real_zone.sh "
                    "(source its live.env: OMERO_SNAPSHOTS_REAL_ZONE=1)")
    if os.geteuid() != 0 or not os.path.exists(os.path.join(BUNDLE, "stop.sh")):
        pytest.skip("needs root and the test bundle's {}/stop.sh and start.sh".format(BUNDLE))
    if not os.access(CONFIG, os.W_OK):
        pytest.skip("cannot write the policy configuration {}".format(CONFIG))
    return envs


@pytest.fixture
def h(tmp_path: Any) -> Iterator[LiveHarness]:
    svc_env, admin_env = _available()
    harness = LiveHarness(svc_env, admin_env, workdir=str(tmp_path))
    try:
        yield harness
    finally:
        _reconnect(harness)
        try:
            drop_orphaned_delay_rows(harness.drops)
        finally:
            harness.close()


def drop_orphaned_delay_rows(drops: List[str]) -> None:
    """Delayed rules of this test's drops that a delay server claimed and then died with (a restart): iRODS 5 keeps
    them claimed for ever (irods/irods#8029; observed here) and the doctor then reports rules waiting for more
    than 10 minutes. They would only find their drop gone; remove them (iqdel as the rodsadmin)."""
    if not drops:
        return
    as_irods = ["runuser", "-u", "irods", "--", "env", "-u", "IRODS_ENVIRONMENT_FILE", "-u",
                "IRODS_ADMIN_ENVIRONMENT_FILE", "HOME=/var/lib/irods"]  # the rodsadmin's own environment
    q = subprocess.run(as_irods + ["iquest", "--no-page",
                        "%s|%s|%s", "select RULE_EXEC_ID, RULE_EXEC_NAME, RULE_EXEC_LOCK_HOST_PID"],
                       capture_output=True, text=True, timeout=60)
    if q.returncode != 0:
        raise AssertionError("cannot list the delay queue to clean up after the test: {}".format(q.stderr[-500:]))
    stale = []
    for line in q.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[2].strip().isdigit() or not any(d in parts[1] for d in drops):
            continue
        if not os.path.exists("/proc/{}".format(int(parts[2]))):
            stale.append(parts[0].strip())
    if stale:
        subprocess.run(as_irods + ["iqdel"] + stale,
                       capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: Any) -> Tuple[str, Dict[str, str]]:
    """A tar of MEMBERS incompressible members over SIZE_MB MiB, and member path -> sha256."""
    path = str(tmp_path_factory.mktemp("heal") / "transfer.tar")
    each = max(1, SIZE_MB * (1 << 20) // MEMBERS)
    sums: Dict[str, str] = {}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for i in range(MEMBERS):
            name = "pixel_images/plate_{:02d}/image_{:05d}.tiff".format(i // 100, i)
            data = os.urandom(each)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1764000000
            t.addfile(info, io.BytesIO(data))
            sums[name] = hashlib.sha256(data).hexdigest()
        xml = b'<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"/>'
        info = tarfile.TarInfo("transfer.xml")
        info.size = len(xml)
        t.addfile(info, io.BytesIO(xml))
        sums["transfer.xml"] = hashlib.sha256(xml).hexdigest()
    return path, sums


# ---------------------------------------------------------------------- helpers
def report(name: str, **figures: Any) -> None:
    line = json.dumps(dict(test=name, **figures), sort_keys=True)
    print("\nheal-report " + line)
    out = os.environ.get("OMERO_SNAPSHOTS_HEAL_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


@contextlib.contextmanager
def policy_config(**sections: Dict[str, Any]) -> Iterator[None]:
    """The server's policy configuration with some sections changed (merged); restored byte for byte."""
    with open(CONFIG, "rb") as f:
        original = f.read()
    doc = json.loads(original.decode("utf-8"))
    for key, values in sections.items():
        doc.setdefault(key, {}).update(values)
    try:
        with open(CONFIG, "w", encoding="utf-8") as f:  # in place: owner and mode stay
            f.write(json.dumps(doc, indent=4) + "\n")
        yield
    finally:
        with open(CONFIG, "wb") as f:
            f.write(original)


def manifest_for(h: LiveHarness, path: str, drop_id: str, omero_user: str, label: str) -> Dict[str, Any]:
    with open(path, "rb") as f:
        sha = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return build_manifest(drop_id=drop_id, omero_user=omero_user, omero_user_id=7, omero_group="lab",
                          omero_group_id=3, omero_server=h.omero_server, objects=[("Image", [1])],
                          archive_name="transfer.tar", archive_size=os.path.getsize(path),
                          archive_sha256=sha.hexdigest(), archive_format="tar", packer_version="1.3.2", label=label)


def drop_for(h: LiveHarness, archive: Tuple[str, Dict[str, str]]) -> Tuple[str, str, Dict[str, Any]]:
    """A researcher, and their drop uploaded the way OMERO does (archive, then the manifest last)."""
    path, _ = archive
    user, omero_user = h.researcher()
    drop_id = new_drop_id()
    doc = manifest_for(h, path, drop_id, omero_user, "heal")
    h.upload_drop(path, doc, drop_id, archive_name="transfer.tar")
    return drop_id, user, doc


def wait_until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("waited {:.0f} s for {}".format(timeout, what))
        time.sleep(every)


def landing_avus(h: LiveHarness, drop_id: str) -> Dict[str, List[str]]:
    try:
        return h.metadata(h.landing + "/" + drop_id)
    except Exception:  # noqa: BLE001 - moved (quarantine) or not there yet
        return {}


def snapshot_path(h: LiveHarness, drop_id: str) -> Optional[str]:
    return (landing_avus(h, drop_id).get(V.SNAPSHOT_PATH) or [None])[0]


def snapshot_status(h: LiveHarness, snap: str) -> Optional[str]:
    return (h.metadata(snap).get(V.STATUS) or [None])[0]


def members_written(h: LiveHarness, snap: str) -> int:
    try:
        return len(h.admin.objects_under(snap + "/content"))
    except Exception:  # noqa: BLE001 - content/ not there yet
        return 0


def mid_unpack(h: LiveHarness, drop_id: str, min_members: int = 0, timeout: float = 300.0) -> str:
    """Wait until the drop's snapshot is `unpacking` (and, for the streaming path, holds min_members members);
    returns the snapshot. Fails if the drop finished first (make the archive bigger)."""
    def ready() -> Optional[str]:
        snap = snapshot_path(h, drop_id)
        if not snap:
            return None
        status = snapshot_status(h, snap)
        assert status not in (V.COMPLETE, V.FAILED, V.QUARANTINED), \
            "drop {} ended ({}) before the fault: raise OMERO_SNAPSHOTS_HEAL_MB".format(drop_id, status)
        if status != V.UNPACKING:
            return None
        return snap if members_written(h, snap) >= min_members else None
    return str(wait_until(ready, timeout, "drop {} to be mid-unpack".format(drop_id), every=0.1))


def holder_pid(h: LiveHarness, drop_id: str) -> int:
    holder = h.metadata(h.landing + "/.locks/" + drop_id)[HOLDER][0]  # "pid N on host"
    pid = int(holder.split()[1])
    with open("/proc/{}/status".format(pid)) as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    import pwd

    uid = int(status["Uid"].split()[0])
    assert pwd.getpwuid(uid).pw_name == "irods" and status["Name"].startswith("irodsAgent"), (holder, status)
    return pid


def _reconnect(h: LiveHarness) -> None:
    """Drop the harness' pooled connections (dead after a server restart); sessions reconnect lazily."""
    for zone in [h.svc, h.admin] + list(getattr(h, "_as", {}).values()):
        with contextlib.suppress(Exception):
            zone.reset_connections()


def wait_final(h: LiveHarness, drop_id: str, since: float) -> Tuple[Dict[str, Any], float]:
    """The drop's status once final with no lock left, and the seconds since `since` (time.monotonic())."""
    lock = h.landing + "/.locks/" + drop_id

    def final() -> Optional[Dict[str, Any]]:
        try:
            st = h.status(drop_id)
            if st.get("status") in V.FINAL and not h.exists(lock):
                return st
        except Exception:  # noqa: BLE001 - the server may be starting again
            _reconnect(h)
        return None
    st = wait_until(final, HEAL_TIMEOUT, "drop {} to heal by itself".format(drop_id), every=1.0)
    return st, time.monotonic() - since


def assert_complete(h: LiveHarness, drop_id: str, user: str, sums: Dict[str, str]) -> Dict[str, Any]:
    st = h.status(drop_id)
    assert st.get("status") == V.COMPLETE, st
    snap = str(st["snapshot"])
    content = snap + "/content"
    listed = h.admin.objects_under(content)
    got = {p[len(content) + 1:] for p in listed}
    assert got == set(sums), "members missing {} / unexpected {}".format(sorted(set(sums) - got)[:3],
                                                                         sorted(got - set(sums))[:3])
    for rel, want in sums.items():
        sha = hashlib.sha256(h.read_bytes(content + "/" + rel)).hexdigest()
        assert sha == want, "member {} is not byte-exact".format(rel)
    assert h.acl(snap) == {(user, "own"), (h.service_account, "read_object")}, h.acl(snap)
    assert (landing_avus(h, drop_id).get(V.STATUS) or [None])[0] == V.COMPLETE
    assert not h.exists(h.landing + "/.locks/" + drop_id)
    return st


# ---------------------------------------------------------------------- kill -9 of the rule's agent
@pytest.mark.parametrize("path", ["fast", "streaming"])
def test_kill_9_of_the_agent_mid_unpack_heals_by_itself(h: LiveHarness, archive: Any, path: str) -> None:
    with policy_config(unpack={"fast_path": "auto" if path == "fast" else "never"}):
        drop_id, user, _ = drop_for(h, archive)
        snap = mid_unpack(h, drop_id, min_members=0 if path == "fast" else MEMBERS // 4)
        pid = holder_pid(h, drop_id)
        written = members_written(h, snap)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        _, took = wait_final(h, drop_id, t0)
        assert_complete(h, drop_id, user, archive[1])
    attempts = landing_avus(h, drop_id).get(V.ATTEMPTS)
    report("kill -9 of the rule's agent mid-unpack ({} path)".format(path), time_to_final_s=round(took, 1),
           members_when_killed=written, attempts=attempts, size_mib=SIZE_MB, members=MEMBERS + 1)


# ---------------------------------------------------------------------- the server stopped and started
def test_server_stop_and_start_mid_unpack_heals_by_itself(h: LiveHarness, archive: Any) -> None:
    with policy_config(unpack={"fast_path": "never"}):
        drop_id, user, _ = drop_for(h, archive)
        snap = mid_unpack(h, drop_id, min_members=MEMBERS // 4)
        written = members_written(h, snap)
        t0 = time.monotonic()
        subprocess.run([os.path.join(BUNDLE, "stop.sh")], check=True, capture_output=True, timeout=300)
        down = time.monotonic() - t0
        subprocess.run([os.path.join(BUNDLE, "start.sh")], check=True, capture_output=True, timeout=300)
        _reconnect(h)
        _, took = wait_final(h, drop_id, t0)
        assert_complete(h, drop_id, user, archive[1])
    report("server stop/start mid-unpack (streaming path)", time_to_final_s=round(took, 1),
           stop_s=round(down, 1), members_when_stopped=written, size_mib=SIZE_MB, members=MEMBERS + 1)


# ---------------------------------------------------------------------- the empty manifest's fallback
def test_a_manifest_created_and_never_written_is_refused_by_the_fallback(h: LiveHarness) -> None:
    """python-irodsclient's create() fires the upload PEP for the empty replica; nothing more comes. The late
    fallback run refuses the drop as it is (quarantined, intact): no admin, nothing left waiting."""
    user, omero_user = h.researcher()
    drop_id = new_drop_id()
    small = h.file("small.tar", b"\0" * 10240)
    drop = h.landing + "/" + drop_id
    h.drops.append(drop_id)
    h.svc.create_collection(drop)
    with open(small, "rb") as f, h.svc.open_new(drop + "/transfer.tar") as w:
        w.write(f.read())
    t0 = time.monotonic()
    h.svc.session.data_objects.create(drop + "/manifest.json")
    st, took = wait_final(h, drop_id, t0)
    assert st["status"] == V.QUARANTINED, st
    assert "manifest" in str(st.get("reason")), st
    q = h.quarantine + "/" + drop_id
    assert h.read_bytes(q + "/transfer.tar") == b"\0" * 10240 and h.read_bytes(q + "/manifest.json") == b""
    report("manifest created empty, never written (fallback run)", time_to_final_s=round(took, 1),
           status=st["status"])


# ---------------------------------------------------------------------- the sweep
def test_a_drop_the_upload_pep_never_queued_is_restarted_by_the_sweep(h: LiveHarness, archive: Any) -> None:
    """The landing record was busy (status `uploading`, as OMERO marks it) when the manifest arrived, so the PEP
    queued nothing; then the mark went away. Only the sweep can find such a drop."""
    from policy.irods_rules_client import call_rule

    with policy_config(retry={"sweep_seconds": 60, "sweep_grace_seconds": 60}):
        # a sweep chain at the test's interval (the smallest token: an older chain ends when it sees it)
        call_rule(h.svc.session, "omero_snapshots_sweep", ["0" * 16])
        user, omero_user = h.researcher()
        path, sums = archive
        drop_id = new_drop_id()
        drop = h.landing + "/" + drop_id
        h.drops.append(drop_id)
        h.svc.create_collection(drop)
        from policy.manifest import manifest_to_json
        from policy.zone import MetaOp

        h.svc.apply_metadata(drop, [MetaOp("add", V.STATUS, "uploading")])
        with open(path, "rb") as f, h.svc.open_new(drop + "/transfer.tar") as w:
            for block in iter(lambda: f.read(4 << 20), b""):
                w.write(block)
        with h.svc.open_new(drop + "/manifest.json") as w:  # the PEP: "already uploading: not scheduled"
            w.write(manifest_to_json(manifest_for(h, path, drop_id, omero_user, "sweep")))
        h.svc.apply_metadata(drop, [MetaOp("remove", V.STATUS, "uploading")])
        t0 = time.monotonic()
        time.sleep(5)
        assert not landing_avus(h, drop_id).get(V.STATUS), "the upload PEP queued the drop after all"
        _, took = wait_final(h, drop_id, t0)
        assert_complete(h, drop_id, user, sums)
    report("drop never queued by the upload PEP (sweep at 60 s, grace 60 s)", time_to_final_s=round(took, 1))
