"""Fault injection: every catalog operation the pipeline uses fails once (each iRODS error code, or the process dies).

The operation names and how often each runs are not written down here: they are recorded from a clean run
of a fixture packet (the upload PEP and the delayed rule separately), so a new catalog call in the policy is
covered without touching this file. For each (phase, operation, occurrence) the fault fires at the 1st and at
a middle occurrence. The zone is set up as installed (users enrolled, the sweep armed as the doctor
does). After the fault the fake delay server runs until nothing is left to run, in simulated time
(retries with backoff, the periodic sweep), and the drop must then be FINAL with no admin action:
`complete`, or `quarantined` / `failed` with a reason naming what happened (a `failed` drop keeps its
archive where it was, landing record or snapshot, and may keep what a reprocess resumes: the staging
collection, a partial content/ of a snapshot still the service account's). Then the drop is run again
the way an admin does it (`omero_snapshots_process_drop <drop> break-lock`) and the zone is checked:

- the final state is `complete`, or `quarantined` / `failed` with a reason naming what happened;
- the archive and the manifest are byte-identical in the snapshot or in the quarantined drop;
- no object that existed when the fault fired changed its bytes (vault contents by object id); an object
  that disappeared is allowed only under the snapshot's content/ (a partial unpack the rerun removes);
- no orphans: no `.incoming-*`, no lock, no `*.broken-*`, no content/ under a failed snapshot, at most one
  snapshot for the drop, nothing created outside the drop's snapshot, landing record and quarantine.

Scenarios: a good zip (streaming unpack), a good tar (native fast path), and a refused zip (wrong sha256: the
quarantine way, whose calls are also tried at their last occurrence). Faults: every iRODS error code the
policy names (errors._CLASS_BY_CODE: refusals a retry would meet again), two transient codes (CAT_SQL_ERR,
SYS_SOCK_READ_TIMEDOUT: the retry heals them), and a bug (AttributeError). Size: every fault x every point,
process kills (a subprocess dying with os._exit) at the 1st occurrence of every operation and at all points of
every 3rd one and of the refused scenario; FAULT_FULL=1 kills at every point. Points where a reported bug bites
are strict xfails (known_bug()), decided from what the clean run's call was about, not from its position.

Also here: races (drops racing for one snapshot name on parallel agents; an admin's reprocess overlapping the
running delayed rule) and a lock left by a run killed between taking it and writing its expiry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest
from helpers import FIXTURES, config_with, enrolled_deployment, manifest_doc

from policy import vocabulary as V
from policy.errors import _CLASS_BY_CODE, NAMES, error_for
from policy.ingest import drop_status
from policy.manifest import manifest_to_json, new_drop_id
from policy.retry import TRANSIENT_CODES
from simzone.deploy import _chunks
from simzone.prep import NATIVE_INSTANCE, PepOutcome

SVC = "omero-svc"
ROOT = "/tempZone/home/alice/omero-snapshots"
FULL = os.environ.get("FAULT_FULL") == "1"
DESCRIPTION_FILES = ("manifest-sha256.txt", "ro-crate-metadata.json")  # policy.describe.FILES
HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)

# scenario -> (fixture packet, unpack.fast_path, refused): a zip always streams, a tar with "auto" takes the native
# path; a refused drop (its manifest's sha256 is wrong) goes the quarantine way, whose last steps (the move, then
# the status) are tried at their last occurrence too.
SCENARIOS: Dict[str, Tuple[str, str, bool]] = {
    "zip-streaming": (FIXTURES["plate_zip"], "auto", False),
    "tar-fast": (FIXTURES["image_tar"], "auto", False),
    "zip-refused": (FIXTURES["plate_zip"], "auto", True),
}
TRANSIENT = [-806000, -115000]  # CAT_SQL_ERR (catalog busy), SYS_SOCK_READ_TIMEDOUT (connection)
BUG = 1  # not an iRODS code: the policy itself raises AttributeError (a bug)
ALL_CODES = sorted(_CLASS_BY_CODE) + TRANSIENT + [BUG]
REFUSAL = "archive checksum mismatch"  # the refused scenario's true reason


def fault_name(code: int) -> str:
    """What the drop's reason must name after this fault."""
    return "AttributeError" if code == BUG else NAMES.get(code) or TRANSIENT_CODES[code]


def make_fault(code: int) -> BaseException:
    if code == BUG:
        return AttributeError("injected fault: 'NoneType' object has no attribute 'archive'")
    return error_for(code, "injected fault")


def family(code: int, scenario: str) -> str:
    kind = ("policy bug (AttributeError) once" if code == BUG else "transient iRODS error once"
            if code in TRANSIENT_CODES else "iRODS error once")
    return "fault: {} ({})".format(kind, scenario)


def deployment(zone_dir: str, fast: str) -> Any:
    """An installed zone: alice enrolled, the sweep armed (the doctor arms it; here its own rule does)."""
    d = enrolled_deployment(zone_dir, config_with(fast_path=fast))
    res = d.admin_rule("omero_snapshots_sweep_start")
    assert res["ok"] and res["sweep"].startswith("armed"), res
    return d


def drain(d: Any) -> int:
    """Let the delay server run until nothing is left to run (simulated time: backoff costs nothing)."""
    return d.server.run_delay_queue(max_rules=200, horizon=None)

# (scenario, phase, op, occurrence) -> the bug that makes that point fail (strict xfail: fixed = must be removed)
QUARANTINE_STATUS_BUG = (
    "BUG: ingest.quarantine() renames the drop into landing/quarantine and only then writes status/reason/refusal_rule "
    "(a second catalog call). If that write fails (or the agent dies between the two calls) the quarantined drop keeps "
    "the landing record's status 'processing' and no reason; a rerun finds no landing record and reports that "
    "'processing' as is (drop_status), so the refusal reason is never written and the admin's reprocess does not "
    "see a quarantined drop either. Data intact (archive in quarantine), status wrong for good.")


# ---------------------------------------------------------------------- driving one drop
def _stage(d: Any, archive: str, drop_id: str, refused: bool = False) -> Tuple[Dict[str, Any], str]:
    """Upload the archive and write the manifest object, WITHOUT firing the manifest's PEP yet."""
    doc = manifest_doc(archive, drop_id, created="2026-11-25T10:00:00Z", **({"archive_sha256": "0" * 64}
                                                                            if refused else {}))
    landing = d.config.landing_collection + "/" + drop_id
    d.catalog.create_collection(SVC, landing)
    d.server.client_put_stream(SVC, landing + "/" + doc["archive"]["name"], _chunks(archive))
    data = manifest_to_json(doc)
    w = d.catalog.open_new(SVC, landing + "/manifest.json")
    with w:
        w.write(data)
    return doc, landing + "/manifest.json"


def _fire_pep(d: Any, manifest_path: str) -> PepOutcome:
    out = PepOutcome()
    size = d.catalog._obj_row(manifest_path)[3]  # not through an op: the clean sequence holds the PEP's own calls
    d.server.fire_write_peps(manifest_path, SVC, size, "prc", out)
    return out


def _record_sequence(scenario: str) -> Dict[Tuple[str, str], int]:
    """(phase, op) -> how many times a clean run calls it; phase is 'pep' (upload PEP) or 'delay'."""
    archive, fast, refused = SCENARIOS[scenario]
    tmp = tempfile.mkdtemp(prefix="faults-seq-")
    try:
        d = deployment(os.path.join(tmp, "zone"), fast)
        drop_id = new_drop_id()
        _, mpath = _stage(d, archive, drop_id, refused)
        counts: Dict[Tuple[str, str], int] = {}
        phase = ["pep"]

        def rec(op: str, args: Tuple[Any, ...]) -> None:
            n = counts[(phase[0], op)] = counts.get((phase[0], op), 0) + 1
            FIRST_ARG[(scenario, phase[0], op, n)] = str(args[0]) if args else ""

        d.catalog.fault_hook = rec
        _fire_pep(d, mpath)
        phase[0] = "delay"
        drain(d)
        d.catalog.fault_hook = None
        assert drop_status(d.admin(), d.config, drop_id).status == ("quarantined" if refused else "complete")
        d.catalog.close()
        return counts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


FIRST_ARG: Dict[Tuple[str, str, str, int], str] = {}  # what each call of the clean run was about
SEQUENCES = {name: _record_sequence(name) for name in SCENARIOS}


def known_bug(s: str, ph: str, op: str, k: int) -> Optional[str]:
    """The reported bug a fault at this point runs into, if any (decided from the clean run's arguments)."""
    if SCENARIOS[s][2] and "/landing/quarantine/" in FIRST_ARG.get((s, ph, op, k), ""):
        return QUARANTINE_STATUS_BUG  # any call after the move into quarantine, before the status is written
    return None


def _occurrences(n: int, last: bool = False) -> List[int]:
    """1st and middle; the last one too when asked."""
    return sorted({1, n // 2 + 1} | ({n} if last else set()))


def _points(scenario: str) -> List[Tuple[str, str, int]]:
    last = SCENARIOS[scenario][2]
    return [(phase, op, k) for (phase, op), n in sorted(SEQUENCES[scenario].items()) for k in _occurrences(n, last)]


def _marks(s: str, ph: str, op: str, k: int) -> List[Any]:
    bug = known_bug(s, ph, op, k)
    return [pytest.mark.xfail(strict=True, reason=bug)] if bug else []


ERROR_CASES = [pytest.param(s, ph, op, k, code, id="{}-{}-{}#{}-{}".format(s, ph, op, k, fault_name(code)),
                            marks=_marks(s, ph, op, k))
               for s in SCENARIOS for ph, op, k in _points(s) for code in ALL_CODES]


def _kill_points() -> List[Any]:
    """The 1st occurrence of every operation; the middle one too for every 3rd operation (all with FAULT_FULL=1)."""
    out = []
    for s in SCENARIOS:
        for i, (phase, op) in enumerate(sorted(SEQUENCES[s])):
            occ = _occurrences(SEQUENCES[s][(phase, op)], SCENARIOS[s][2])
            for k in (occ if FULL or i % 3 == 0 or SCENARIOS[s][2] else occ[:1]):
                out.append(pytest.param(s, phase, op, k, id="{}-{}-{}#{}".format(s, phase, op, k),
                                        marks=_marks(s, phase, op, k)))
    return out


KILL_CASES = _kill_points()


# ---------------------------------------------------------------------- what the zone holds
_HASHES: Dict[Tuple[str, int, int, int], str] = {}  # (vault file, inode, size, mtime_ns) -> sha256


def vault_state(d: Any) -> Dict[int, Tuple[str, str]]:
    """object id -> (logical path, sha256 of the vault file): read behind the catalog's back.

    A file is hashed again only when its inode, size or mtime changed (any write changes its mtime)."""
    out: Dict[int, Tuple[str, str]] = {}
    for oid, coll, name, vault in d.catalog.query_rows("SELECT id, coll, name, vault FROM objs", []):
        digest = hashlib.sha256().hexdigest()
        if vault and os.path.exists(vault):
            st = os.stat(vault)
            key = (vault, st.st_ino, st.st_size, st.st_mtime_ns)
            if key not in _HASHES:
                with open(vault, "rb") as f:
                    _HASHES[key] = hashlib.sha256(f.read()).hexdigest()
            digest = _HASHES[key]
        out[int(oid)] = (coll + "/" + name, digest)
    return out


def walk(d: Any) -> Set[str]:
    return {p for p, _ in d.catalog.walk("/tempZone")}


def _reference_members(archive: str) -> Dict[str, str]:
    """relpath -> sha256 of every regular member, read with the standard library."""
    import tarfile

    out: Dict[str, str] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    out[info.filename] = hashlib.sha256(z.read(info)).hexdigest()
        return out
    with tarfile.open(archive) as t:
        for m in t:
            if m.isfile():
                f = t.extractfile(m)
                name = m.name[2:] if m.name.startswith("./") else m.name
                out[name] = hashlib.sha256(f.read() if f else b"").hexdigest()
    return out


class Verdict:
    """What the checks found; recorded in the report before anything is asserted."""

    def __init__(self) -> None:
        self.problems: List[str] = []
        self.lost = 0
        self.overwritten = 0
        self.escaped = 0

    def bad(self, text: str) -> None:
        self.problems.append(text)


FINAL = ("complete", "quarantined", "failed")  # `placed` is final only with unpacking off (not a scenario here)


def check_final(d: Any, archive: str, doc: Dict[str, Any], before_paths: Set[str],
                at_fault: Optional[Dict[int, Tuple[str, str]]], originals: Dict[int, Tuple[str, str]],
                fault_name: str, unlinked: Set[str], refused: bool = False,
                admin: bool = True) -> Tuple[Any, Verdict]:
    """The checks above. admin=False: the state the drop reached by itself (before any reprocess), where a
    `failed` drop may still hold what a reprocess resumes (see the module docstring)."""
    v = Verdict()
    drop_id = doc["drop_id"]
    cfg = d.config
    st = drop_status(d.admin(), cfg, drop_id)
    name = doc["archive"]["name"]
    with open(archive, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    with_manifest = hashlib.sha256(manifest_to_json(doc)).hexdigest()
    now = vault_state(d)
    # the original objects (archive, manifest) all still exist with their bytes
    for oid, (path, sha) in originals.items():
        if oid not in now:
            v.lost += 1
            v.bad("object {} ({}) is gone".format(oid, path))
        elif now[oid][1] != sha:
            v.overwritten += 1
            v.bad("object {} ({}) changed its bytes".format(oid, path))
    # what existed when the fault fired kept its bytes; only a partial content/ may have been removed
    # (the simulated catalog reuses the id of a removed object: `unlinked` tells a removal from a rewrite)
    for oid, (path, sha) in (at_fault or {}).items():
        if oid in originals:
            continue
        if oid not in now or path in unlinked:
            # a partial content/, or a self-description a killed run left half-written (policy/describe.py),
            # is the policy's own unfinished output, removed by the rerun before the hand-over
            partial = "/content/" in path or path.rsplit("/", 1)[-1] in DESCRIPTION_FILES
            if not partial or not path.startswith(ROOT + "/") or path not in unlinked:
                v.lost += 1
                v.bad("object {} ({}) existed at the fault and is gone".format(oid, path))
        elif now[oid][1] != sha:
            v.overwritten += 1
            v.bad("object {} ({}) changed its bytes after the fault".format(oid, path))
    # nothing outside the drop's own places
    landing = cfg.landing_collection
    allowed = (landing + "/" + drop_id, cfg.quarantine_collection + "/" + drop_id, landing + "/.locks")
    new = walk(d) - before_paths
    snaps = sorted({p[:len(ROOT) + 1] + p[len(ROOT) + 1:].split("/")[0] for p in new if p.startswith(ROOT + "/")})
    for p in sorted(new):
        if p.startswith(ROOT + "/") and len(snaps) == 1:
            continue
        if p == cfg.quarantine_collection or any(p == a or p.startswith((a + "/", a + "-")) for a in allowed):
            continue
        v.escaped += 1
        v.bad("created outside the drop's places: " + p)
    gone = sorted(before_paths - walk(d))
    for p in gone:
        if p.startswith(landing + "/" + drop_id):
            continue  # the drop moves on: into the snapshot or into quarantine
        v.lost += 1
        v.bad("path that existed before is gone: " + p)
    # orphans
    resumable = not admin and st.status == "failed"
    for p in walk(d):
        base = p.rsplit("/", 1)[1]
        if (base.startswith(".incoming-") and not resumable) or ".broken-" in base:
            v.bad("orphan: " + p)
        if p.startswith(landing + "/.locks/"):
            v.bad("lock left behind: " + p)
    if len(snaps) > 1:
        v.bad("more than one snapshot: {}".format(snaps))
    got_now = {path: sha for path, sha in now.values()}
    if resumable:
        # where the archive is: still in the landing record, or moved into the (possibly staging) snapshot
        places = [landing + "/" + drop_id] + snaps
        home = next((p for p in places if got_now.get(p + "/" + name) == want), places[0])
        if st.snapshot and snaps != [st.snapshot]:
            v.bad("failed with snapshot {} but the snapshots are {}".format(st.snapshot, snaps))
    elif st.status in ("complete", "failed"):
        if snaps != [st.snapshot]:
            v.bad("status {} but the snapshots are {} (status names {})".format(st.status, snaps, st.snapshot))
        home = st.snapshot
    elif st.status == "quarantined":
        home = st.location
        if snaps:
            v.bad("quarantined, yet a snapshot exists: {}".format(snaps))
    else:
        home = None
        v.bad("final status {!r} ({})".format(st.status, st.reason))
    if home:
        got = got_now
        if got.get(home + "/" + name) != want:
            v.lost += 1
            v.bad("archive not byte-identical at {}/{}".format(home, name))
        if got.get(home + "/manifest.json") != with_manifest:
            v.lost += 1
            v.bad("manifest not byte-identical at {}/manifest.json".format(home))
    if st.status in ("quarantined", "failed"):
        if not st.reason:
            v.bad("{} without a reason".format(st.status))
        elif fault_name not in st.reason and not (refused and REFUSAL in st.reason):
            v.bad("{} by an injected {}, but the reason does not say so: {}".format(st.status, fault_name, st.reason))
    if refused and st.status != "quarantined" and not resumable:
        v.bad("a drop with a wrong checksum ended {!r} ({})".format(st.status, st.reason))
    if st.status == "failed" and st.snapshot and d.catalog.exists(st.snapshot + "/content") and not (
            resumable and (SVC, "own") in {(a.user, a.level) for a in d.catalog.acl(st.snapshot)}):
        v.bad("failed snapshot keeps a content/ (and was handed over)")
    if st.status == "complete":
        content = st.snapshot + "/content"
        got_members = {p[len(content) + 1:]: sha for p, sha in now.values() if p.startswith(content + "/")}
        if got_members != _reference_members(archive):
            v.bad("content/ differs from the archive's members")
        for path, _kind in d.catalog.walk(st.snapshot):
            acl = {(a.user, a.level) for a in d.catalog.acl(path)}
            if acl != {("alice", "own"), (SVC, "read_object")}:
                v.bad("not handed over: {} {}".format(path, sorted(acl)))
                break
        landing_status = V.first(d.catalog.metadata(landing + "/" + drop_id), V.STATUS)
        if landing_status != "complete":
            v.bad("landing record says {!r}, the snapshot complete".format(landing_status))
    return st, v


def _originals(d: Any, drop_id: str) -> Dict[int, Tuple[str, str]]:
    prefix = d.config.landing_collection + "/" + drop_id + "/"
    return {oid: ps for oid, ps in vault_state(d).items() if ps[0].startswith(prefix)}


def _rerun(d: Any, drop_id: str) -> None:
    d.server.irule(SVC, "omero_snapshots_process_drop", [drop_id, "break-lock"], instance=NATIVE_INSTANCE)


def _record(robustness: Any, category: str, case: str, st: Any, v: Verdict) -> None:
    robustness.record(category, case, st.status, lost=v.lost, overwritten=v.overwritten, escaped=v.escaped)


# ---------------------------------------------------------------------- the matrix: error codes
def _pending_work(d: Any) -> List[Any]:
    """Delayed rules still waiting, but the periodic sweep (it waits for ever by design). A row still
    `running` is the killed process' own rule: nothing runs it any more (the fake never restarts one)."""
    return [r for r in d.catalog.delay_rows() if r[4] == "pending" and "omero_snapshots_sweep(" not in r[3]]


def _judge(robustness: Any, category: str, case: str, d: Any, archive: str, doc: Dict[str, Any],
           before_paths: Set[str], at_fault: Optional[Dict[int, Tuple[str, str]]],
           originals: Dict[int, Tuple[str, str]], name: str, unlinked: Set[str], refused: bool) -> List[str]:
    """The state the drop reached by itself, then after an admin's reprocess; both recorded, then judged."""
    drop_id = doc["drop_id"]
    st0, v0 = check_final(d, archive, doc, before_paths, at_fault, originals, name, unlinked, refused, admin=False)
    left = _pending_work(d)
    if left:
        v0.bad("delayed rules still pending after the delay server ran out of work: {}".format(left))
    _rerun(d, drop_id)
    drain(d)  # the reprocess' own retry (a no-op: it finds the drop final)
    d.catalog.fault_hook = None
    st, v = check_final(d, archive, doc, before_paths, at_fault, originals, name, unlinked, refused)
    robustness.record(category, case, st0.status, lost=v0.lost + v.lost, overwritten=v0.overwritten + v.overwritten,
                      escaped=v0.escaped + v.escaped, final=st0.status in FINAL and not left)
    robustness.note(category, case, st.status)
    return ["without admin: " + p for p in v0.problems] + ["after reprocess: " + p for p in v.problems]


@pytest.mark.parametrize("scenario,phase,op,occurrence,code", ERROR_CASES)
def test_error_converges_without_admin(tmp_path: Any, robustness: Any, scenario: str, phase: str, op: str,
                                       occurrence: int, code: int) -> None:
    archive, fast, refused = SCENARIOS[scenario]
    d = deployment(str(tmp_path / "zone"), fast)
    drop_id = new_drop_id()
    doc, mpath = _stage(d, archive, drop_id, refused)
    originals = _originals(d, drop_id)
    before_paths = walk(d) - {p for p in walk(d) if p.startswith(d.config.landing_collection + "/" + drop_id)}
    seen = [0]
    at_fault: Dict[str, Any] = {}
    unlinked: Set[str] = set()

    def fault(name: str, args: Tuple[Any, ...]) -> None:
        if "vault" in at_fault:
            if name == "unlink":
                unlinked.add(str(args[0]))
            return
        if name != op:
            return
        seen[0] += 1
        if seen[0] == occurrence:
            at_fault["vault"] = vault_state(d)
            raise make_fault(code)

    d.catalog.fault_hook = fault if phase == "pep" else None
    up = _fire_pep(d, mpath)
    d.catalog.fault_hook = fault
    drain(d)
    assert "vault" in at_fault, "the fault never fired: the clean sequence changed"
    problems = _judge(robustness, family(code, scenario), "{}-{}#{}-{}".format(phase, op, occurrence, code), d,
                      archive, doc, before_paths, at_fault.get("vault"), originals, fault_name(code), unlinked,
                      refused)
    assert up.client_error is None, "the upload PEP failed the client's upload"
    assert problems == [], problems


# ---------------------------------------------------------------------- the matrix: process killed
KILLER = """
import hashlib, json, os, sys
sys.path.insert(0, {root!r})
from simzone.deploy import SimulatedDeployment
from simzone.prep import PepOutcome
d = SimulatedDeployment({zone!r})
seen = [0]
def state():
    out = {{}}
    for oid, coll, name, vault in d.catalog.query_rows("SELECT id, coll, name, vault FROM objs", []):
        h = hashlib.sha256()
        if vault and os.path.exists(vault):
            with open(vault, "rb") as f:
                h.update(f.read())
        out[str(oid)] = [coll + "/" + name, h.hexdigest()]
    return out
def kill(op, args):
    if op == {op!r}:
        seen[0] += 1
        if seen[0] == {k}:
            with open({snap!r}, "w") as f:
                json.dump(state(), f)
            os._exit(137)
d.catalog.fault_hook = kill
if {phase!r} == "pep":
    out = PepOutcome()
    d.server.fire_write_peps({mpath!r}, "omero-svc", d.catalog._obj_row({mpath!r})[3], "prc", out)
else:
    d.server.run_delay_queue(max_rules=200, horizon=None)
"""


@pytest.mark.parametrize("scenario,phase,op,occurrence", KILL_CASES)
def test_kill_converges_without_admin(tmp_path: Any, robustness: Any, scenario: str, phase: str, op: str,
                                      occurrence: int) -> None:
    archive, fast, refused = SCENARIOS[scenario]
    d = deployment(str(tmp_path / "zone"), fast)
    drop_id = new_drop_id()
    doc, mpath = _stage(d, archive, drop_id, refused)
    originals = _originals(d, drop_id)
    before_paths = walk(d) - {p for p in walk(d) if p.startswith(d.config.landing_collection + "/" + drop_id)}
    if phase == "delay":
        assert _fire_pep(d, mpath).client_error is None
    snap = str(tmp_path / "at_kill.json")
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=PROJECT, zone=d.zone_dir, op=op, k=occurrence,
                                                               snap=snap, phase=phase, mpath=mpath)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    with open(snap) as f:
        at_kill = {int(k): (p, s) for k, (p, s) in json.load(f).items()}
    unlinked: Set[str] = set()
    d.catalog.fault_hook = lambda name, args: unlinked.add(str(args[0])) if name == "unlink" else None
    drain(d)  # whatever the killed run left queued: its retry, the sweep
    problems = _judge(robustness, "fault: process killed ({})".format(scenario),
                      "{}-{}#{}".format(phase, op, occurrence), d, archive, doc, before_paths, at_kill, originals,
                      "killed", unlinked, refused)
    assert problems == [], problems


def test_the_matrix_covers_every_operation() -> None:
    """The recorded sequence is what the matrix runs: each op appears, at its 1st and a middle occurrence."""
    for s in ("zip-streaming", "tar-fast"):
        ops = {op for _, op in SEQUENCES[s]}
        assert {"rename", "apply_metadata", "set_acl", "create_collection", "open_new", "write"} <= ops, ops
    assert ("delay", "tar_file_extract") in SEQUENCES["tar-fast"]
    assert ("delay", "rename") in SEQUENCES["zip-refused"]  # the move into quarantine
    assert len(ERROR_CASES) >= 800 and len(KILL_CASES) >= 30


# ---------------------------------------------------------------------- races
def _agent(d: Any) -> Any:
    """Another agent of the same server: its own catalog connection, the same core.py."""
    from simzone.catalog import SimCatalog
    from simzone.prep import FakeServer

    return FakeServer(SimCatalog(d.zone_dir), d.server.core, os.path.join(d.zone_dir, "rodsLog"))


def test_drops_racing_for_one_snapshot_name(tmp_path: Any, robustness: Any) -> None:
    """8 drops with the same snapshot name (same second, label, user, last 8 characters of the drop id), each run
    twice at once by parallel agents (the delayed rule and a retry), then once more by the delay server."""
    import threading

    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never"))
    archive = FIXTURES["plate_zip"]
    ids = ["20261125T100000Z-{}-same8ch".format(c) for c in "abcdefgh"]
    docs = {}
    for i in ids:
        docs[i] = manifest_doc(archive, i, created="2026-11-25T10:00:00Z", label="same label")
        d.upload_drop(archive, manifest_to_json(docs[i]), i, archive_name=docs[i]["archive"]["name"])
    originals = {i: _originals(d, i) for i in ids}
    agents = [(_agent(d), i) for i in ids for _ in range(2)]
    start = threading.Barrier(len(agents))
    errors: List[BaseException] = []

    def run(server: Any, drop_id: str) -> None:
        start.wait()
        try:
            server.irule(SVC, "omero_snapshots_process_drop", [drop_id], instance=NATIVE_INSTANCE)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=a) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    d.run_delay_server()
    snaps = sorted(p for p, _ in d.catalog.walk(ROOT) if p.count("/") == ROOT.count("/") + 1)
    now = vault_state(d)
    for i in ids:
        st = drop_status(d.admin(), d.config, i)
        lost = sum(1 for oid, (_, sha) in originals[i].items() if oid not in now or now[oid][1] != sha)
        mine = [s for s in snaps if V.first(d.catalog.metadata(s), V.DROP_ID) == i]
        robustness.record("race: 8 drops for one snapshot name, 2 agents each", i, st.status, lost=lost,
                          overwritten=0, escaped=max(0, len(mine) - 1))
        assert st.status == "complete" and mine == [st.snapshot], (i, st, mine)
        assert lost == 0
    assert not errors, errors
    assert len(snaps) == len(ids), snaps  # one each, nothing else: no staging name, no stray collection
    assert d.catalog.walk(d.config.landing_collection + "/.locks") == [(d.config.landing_collection + "/.locks",
                                                                        "collection")]


def _paused_run(d: Any, drop_id: str, when: Any, go: Any, reached: Any, break_lock: bool) -> Any:
    """process_drop on its own connection; when(op, args) says where it stops: it sets `reached`, waits for `go`."""
    from policy.mapping import load_mapping
    from policy.process import process_drop
    from simzone.catalog import SimCatalog
    from simzone.zone import SimZone

    cat = SimCatalog(d.zone_dir)
    done = [False]

    def hook(op: str, args: Tuple[Any, ...]) -> None:
        if not done[0] and when(op, args):
            done[0] = True
            reached.set()
            go.wait(60)

    cat.fault_hook = hook
    return lambda: process_drop(SimZone(cat, SVC), d.config, load_mapping(d.mapping_path), drop_id,
                                break_lock=break_lock)


def test_reprocess_while_the_delayed_rule_still_runs(tmp_path: Any, robustness: Any) -> None:
    import threading

    from policy.drop_lock import lock_path

    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never"))
    archive = FIXTURES["plate_zip"]
    doc, mpath = _stage(d, archive, new_drop_id())
    drop_id = doc["drop_id"]
    _fire_pep(d, mpath)
    a_at_metadata, b_removed, a_done, never = (threading.Event() for _ in range(4))
    # A: the delayed rule, stopped after it verified content/, just before it reads transfer.xml from there
    run_a = _paused_run(d, drop_id, lambda op, args: op == "open_read" and str(args[0]).endswith(
        "/content/transfer.xml"), b_removed, a_at_metadata, False)
    # B: the admin's reprocess (break-lock), stopped when it starts writing content/ again (after removing A's)
    run_b = _paused_run(d, drop_id, lambda op, args: op == "open_new" and "/content/" in str(args[0]),
                        a_done, b_removed, True)
    results: Dict[str, Any] = {}
    seen: List[bool] = []

    def go(name: str, fn: Any, after: Any) -> None:
        try:
            results[name] = fn()
        except BaseException as e:  # noqa: BLE001
            results[name] = e
        if name == "a":  # B still waits for `after`: its lock must be there (checked before B may go on)
            seen.append(d.catalog.exists(lock_path(d.config, drop_id)))
        after.set()

    ta = threading.Thread(target=go, args=("a", run_a, a_done))
    ta.start()
    assert a_at_metadata.wait(60)
    tb = threading.Thread(target=go, args=("b", run_b, never))
    tb.start()
    ta.join(60)
    tb.join(60)
    lock_after_a = seen == [True]
    st = drop_status(d.admin(), d.config, drop_id)
    members = _reference_members(archive)
    content = {p for p, _ in vault_state(d).values() if p.startswith((st.snapshot or "-") + "/content/")}
    lost = len(members) - len(content)
    robustness.record("race: admin reprocess during a running delayed rule", drop_id, st.status, lost=lost)
    assert not (st.status == "complete" and lost), "complete, but {} of {} members are missing from content/ ({})" \
        .format(lost, len(members), st.reason)
    assert st.status in ("complete", "unpacking", "failed"), st
    assert lock_after_a, "the first run's release removed the lock the second run holds"


def test_a_lock_left_by_a_kill_before_its_expiry_was_written_still_expires(tmp_path: Any, robustness: Any) -> None:
    from policy.drop_lock import acquire, lock_path

    archive, fast, _ = SCENARIOS["zip-streaming"]
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path=fast))
    doc, mpath = _stage(d, archive, new_drop_id())
    assert _fire_pep(d, mpath).client_error is None
    assert FIRST_ARG[("zip-streaming", "delay", "apply_metadata", 1)].find("/.locks/") > 0  # the expiry write
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=PROJECT, zone=d.zone_dir, op="apply_metadata",
                                                               k=1, snap=str(tmp_path / "s.json"), phase="delay",
                                                               mpath=mpath)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    lock = lock_path(d.config, doc["drop_id"])
    assert d.catalog.exists(lock)
    taken = acquire(d.zone_as(SVC), d.config, doc["drop_id"], now=10 ** 12)  # long after limits.lock_seconds
    robustness.record("fault: lock left by a killed run, retried after expiry", doc["drop_id"],
                      "taken over" if taken else "blocked")
    assert taken is not None and taken.path == lock
