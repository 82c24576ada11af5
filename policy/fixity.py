"""The fixity audit: snapshots keep proving, over the years, that their bytes are the ones verified at unpack.

When a snapshot is made, iRODS computes and records a `sha2:` checksum for the archive and for every
member under `content/` (policy/ingest.py, policy/unpack.py). The audit asks the SERVER to recompute each
of those checksums from every replica's bytes and compare them with the catalog (msiDataObjChksum with
`ChksumAll=++++verifyChksum=`): no bytes cross the network, nothing is registered, and a rodsuser with only
`read` may do it (prep-observed round12-fixity-verify.jsonl: 0 when equal, CHECK_VERIFICATION_RESULTS -407000
when a replica's bytes differ or its file is gone; the plain call only reads the catalog back and
`forceChksum=` is refused -818000 for a reader). On -407000 one read through the data plane tells a
missing replica (it cannot be opened: UNIX_FILE_OPEN_ERR -510002) from changed bytes.

Where the record lives: the service account has only `read` on a snapshot once it is handed over, so it
cannot write AVUs there. The audit records its result on the drop's LANDING RECORD
(`<landing>/<drop_id>`), which the service account owns and nobody else may write: the same record
OMERO's List and Load already trust for provenance (omero_client/snapshots.py). The snapshot's owner,
who may edit the snapshot's own AVUs, cannot mark a damaged snapshot sound.

Bounded: one periodic run (a delayed rule of the service account, armed like the sweep: by the doctor
or by omero_snapshots_fixity_start) verifies at most `fixity.bytes_per_run` bytes (the sizes of the
objects it has the server re-read; a single object larger than the budget is verified alone), taking
the snapshot verified longest ago first (never-verified first of all) and resuming a snapshot it could
not finish where it stopped. Nothing is repaired, moved or deleted: a finding is a record.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from policy import vocabulary as V
from policy.config import QUARANTINE_NAME, PolicyConfig
from policy.errors import IrodsError, NotFound
from policy.placement import is_safe_drop_id
from policy.zone import Zone, basename_of

log = logging.getLogger("omero_snapshots.fixity")

FIXITY_RULE = "omero_snapshots_fixity"
VERIFY_OPTIONS = "ChksumAll=++++verifyChksum="  # every replica, recomputed, compared, nothing registered
CHECK_VERIFICATION_RESULTS = -407000  # ierror -407000

# Outcomes of one object, and of a snapshot (its worst object), worst first.
MISMATCH = "mismatch"  # a replica's bytes no longer match the recorded checksum
MISSING = "missing"  # a replica cannot be read (its file is gone)
UNRECORDED = "unrecorded"  # the archive or a member lost its recorded checksum (rewritten after the snapshot)
ERROR = "error"  # the audit could not check it (permission, server error): says nothing about the bytes
OK = "ok"
SEVERITY = (MISMATCH, MISSING, UNRECORDED, ERROR, OK)
BAD = (MISMATCH, MISSING, UNRECORDED)
AUDITED_STATES = (V.PLACED_STATE, V.COMPLETE)
_TOKEN_CHARS = set("0123456789abcdef")


def worst(outcomes: Sequence[str]) -> str:
    """The snapshot's result: its worst object's outcome (OK for none)."""
    return min(outcomes, key=SEVERITY.index) if outcomes else OK


def utc_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---------------------------------------------------------------------- pure decisions
@dataclass(frozen=True)
class Candidate:
    """A snapshot the audit may verify, as its landing record describes it."""

    drop_id: str
    snapshot: str
    verified: str  # UTC ISO time the last full pass ended, "" never
    resume: str  # the last object a pass in progress verified, "" none


def audit_order(candidates: Sequence[Candidate]) -> List[Candidate]:
    """Which snapshots come first: a pass in progress, then never verified, then the oldest verified."""
    return sorted(candidates, key=lambda c: (c.resume == "", c.verified, c.drop_id))


def audited(path: str, snapshot: str, archive_name: str) -> bool:
    """Objects whose checksum the policy recorded when it made the snapshot: the archive and content/.
    (manifest.json gets no checksum at ingest; anything else in the collection is the owner's own.)"""
    rel = path[len(snapshot) + 1:] if path.startswith(snapshot + "/") else ""
    return rel == archive_name or rel.startswith("content/")


def take_budget(objects: Sequence[Tuple[str, int]], budget: int, spent: int) -> int:
    """How many of `objects` (path, size; in audit order) a run that already spent `spent` bytes of
    `budget` may verify: as many as fit, and one object alone when even it does not fit an unspent run."""
    n = 0
    for _path, size in objects:
        if spent + size > budget and not (spent == 0 and n == 0):
            break
        spent += size
        n += 1
    return n


# ---------------------------------------------------------------------- one object
def verify_object(zone: Zone, path: str, recorded: str) -> Tuple[str, str]:
    """(outcome, detail) of one object; the server recomputes its checksum from every replica."""
    if not recorded:
        return UNRECORDED, "no recorded checksum (the object was rewritten after the snapshot was made)"
    verify = getattr(zone, "verify_checksum", None)
    if verify is None:
        return ERROR, "this zone adapter cannot ask the server to verify checksums"
    try:
        verify(path)
        return OK, ""
    except IrodsError as e:
        if e.code != CHECK_VERIFICATION_RESULTS:
            return ERROR, "{} ({})".format(e.name, e.code)
    try:  # the server said the bytes differ or are gone: which one?
        with zone.open_read(path) as f:
            f.read(1)
    except Exception as e:  # noqa: BLE001 - any failure to read a replica is what we report
        code = getattr(e, "code", None)
        return MISSING, "a replica cannot be read ({}{})".format(getattr(e, "name", type(e).__name__),
                                                                 " " + str(code) if code else "")
    return MISMATCH, "a replica's bytes do not match the recorded checksum {}".format(recorded)


# ---------------------------------------------------------------------- the landing record
def landing_record(config: PolicyConfig, drop_id: str) -> str:
    return config.landing_collection + "/" + drop_id


def fixity_of(avus: Sequence[Any]) -> Dict[str, Any]:
    """The fixity fields of a landing record's AVUs (what status, list, the doctor and OMERO show)."""
    return {"fixity": V.first(avus, V.FIXITY) or "unverified",
            "fixity_verified": V.first(avus, V.FIXITY_VERIFIED) or "",
            "fixity_detail": V.first(avus, V.FIXITY_DETAIL) or ""}


def candidates(zone: Zone, config: PolicyConfig) -> List[Candidate]:
    """Landing records of placed/complete drops that name their snapshot."""
    try:
        colls = zone.list_collection(config.landing_collection).collections
    except NotFound:
        return []
    out = []
    for coll in colls:
        drop_id = basename_of(coll)
        if drop_id == QUARANTINE_NAME or not is_safe_drop_id(drop_id):
            continue
        avus = zone.metadata(coll)
        snap = V.first(avus, V.SNAPSHOT_PATH)
        if V.first(avus, V.STATUS) not in AUDITED_STATES or not snap:
            continue
        out.append(Candidate(drop_id, snap, V.first(avus, V.FIXITY_VERIFIED) or "",
                             V.first(avus, V.FIXITY_RESUME) or ""))
    return out


def _objects(zone: Zone, snapshot: str) -> Dict[str, Tuple[int, str]]:
    """path -> (size, recorded checksum or '') of every data object of the snapshot."""
    under = getattr(zone, "objects_under", None)
    if under is not None:
        return dict(under(snapshot))
    out: Dict[str, Tuple[int, str]] = {}
    todo = [snapshot]
    while todo:
        listing = zone.list_collection(todo.pop())
        todo.extend(listing.collections)
        for st in listing.data_objects:
            out[st.path] = (st.size, st.checksum or "")
    return out


@dataclass
class SnapshotAudit:
    drop_id: str
    snapshot: str
    result: str = OK  # worst outcome of the pass so far
    finished: bool = False  # the pass covered every audited object
    checked: int = 0
    bytes: int = 0  # bytes the server re-read for this snapshot in this run
    findings: List[Dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"drop": self.drop_id, "snapshot": self.snapshot, "result": self.result, "finished": self.finished,
                "checked": self.checked, "bytes": self.bytes, "findings": self.findings[:20]}


def _detail(findings: Sequence[Dict[str, str]]) -> str:
    if not findings:
        return "-"
    parts = ["{} {}: {}".format(f["outcome"], f["path"], f["detail"]) for f in findings[:5]]
    more = len(findings) - 5
    return "; ".join(parts) + ("; and {} more".format(more) if more > 0 else "")


def audit_one(zone: Zone, config: PolicyConfig, cand: Candidate, budget: Optional[int], spent: int,
              now: float) -> SnapshotAudit:
    """Verify (part of) one snapshot, from where its last pass stopped, within the budget (None: all of it),
    and record the outcome on its landing record."""
    res = SnapshotAudit(cand.drop_id, cand.snapshot)
    record = landing_record(config, cand.drop_id)
    ravus = zone.metadata(record)
    archive = V.first(ravus, V.ARCHIVE_NAME) or "transfer.tar"
    try:
        objs = _objects(zone, cand.snapshot)
    except NotFound:
        objs = {}
    todo = sorted((p, s) for p, (s, _c) in objs.items() if audited(p, cand.snapshot, archive))
    if cand.resume:
        todo = [t for t in todo if t[0] > cand.resume]
    n = len(todo) if budget is None else take_budget(todo, budget, spent)
    if todo and n == 0:
        return res  # the run's budget is spent: this snapshot waits for the next run, nothing recorded
    if not objs:
        res.findings.append({"path": cand.snapshot, "outcome": MISSING, "detail": "the snapshot collection is gone "
                             "or the service account may no longer read it"})
    elif not any(audited(p, cand.snapshot, archive) for p in objs):
        res.findings.append({"path": cand.snapshot + "/" + archive, "outcome": MISSING,
                             "detail": "the archive is no longer in the snapshot"})
    for path, size in todo[:n]:
        outcome, detail = verify_object(zone, path, objs[path][1])
        res.checked += 1
        res.bytes += size if outcome != UNRECORDED else 0
        if outcome != OK:
            res.findings.append({"path": path, "outcome": outcome, "detail": detail})
    res.finished = n == len(todo)
    previous = V.first(ravus, V.FIXITY_PASS) if cand.resume else None
    res.result = worst([f["outcome"] for f in res.findings] + ([previous] if previous in SEVERITY else []))
    _record(zone, record, ravus, res, todo[n - 1][0] if n else cand.resume, now)
    return res


def _record(zone: Zone, record: str, ravus: Sequence[Any], res: SnapshotAudit, last: str, now: float) -> None:
    """Write the outcome on the landing record (one atomic batch). A finding shows at once, even mid-pass."""
    from policy.zone import MetaOp

    wanted: Dict[str, str] = {}
    drop: List[str] = []
    if res.finished:
        wanted.update({V.FIXITY: res.result, V.FIXITY_VERIFIED: utc_iso(now), V.FIXITY_DETAIL: _detail(res.findings)})
        drop = [V.FIXITY_RESUME, V.FIXITY_PASS]
    else:
        wanted.update({V.FIXITY_RESUME: last, V.FIXITY_PASS: res.result})
        if res.result in BAD:
            wanted.update({V.FIXITY: res.result, V.FIXITY_DETAIL: _detail(res.findings)})
    ops = V.replace_ops(ravus, wanted)
    ops.extend(MetaOp("remove", a.attribute, a.value, a.units) for a in ravus if a.attribute in drop)
    if ops:
        zone.apply_metadata(record, ops)


# ---------------------------------------------------------------------- one run, the chain, one snapshot now
@dataclass
class FixityRun:
    continued: bool
    bytes_read: int = 0
    budget: int = 0
    snapshots: List[Dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"continued": self.continued, "bytes_read": self.bytes_read, "budget": self.budget,
                "snapshots": self.snapshots, "note": self.note}


def fixity_call(token: str) -> str:
    return "callback.{}('{}')".format(FIXITY_RULE, token)


def _tokens(zone: Zone) -> List[str]:
    from policy.sweep import delayed_rules_naming

    out = []
    for text, _when in delayed_rules_naming(zone, FIXITY_RULE):
        tok = str(text).split("('", 1)[-1].split("'", 1)[0]
        if tok and set(tok) <= _TOKEN_CHARS:
            out.append(tok)
    return out


def arm(zone: Zone, config: PolicyConfig) -> str:
    """Schedule the audit unless one is queued (as the service account). Disabled: says so, schedules nothing."""
    if not config.fixity.enabled:
        return "disabled (fixity.enabled is false)"
    if zone.user != config.service_account:
        return "not armed: the audit runs as the service account '{}', not as '{}'".format(
            config.service_account, zone.user)
    if _tokens(zone):
        return "armed (an audit is already queued)"
    zone.schedule(fixity_call(secrets.token_hex(8)), config.fixity.interval_seconds)
    return "armed: the first audit runs in {} s".format(config.fixity.interval_seconds)


def run_fixity(zone: Zone, config: PolicyConfig, token: str, now: Optional[float] = None) -> FixityRun:
    """One periodic run: schedule the next (unless another chain survives or the audit was disabled), then
    verify up to bytes_per_run bytes, oldest-verified snapshot first."""
    t = time.time() if now is None else now
    if zone.user != config.service_account:
        return FixityRun(False, note="only the service account runs the audit")
    if not config.fixity.enabled:
        return FixityRun(False, note="fixity.enabled is false: the chain ends")
    try:
        others = sorted(x for x in _tokens(zone) if x != token)
    except Exception:  # noqa: BLE001 - unknown: go on (two chains only audit twice as often)
        others = []
    continued = not (others and others[0] < token)
    if continued:
        zone.schedule(fixity_call(token), config.fixity.interval_seconds)
    run = FixityRun(continued, budget=config.fixity.bytes_per_run,
                    note="" if continued else "another audit chain ({}) goes on".format(others[0]))
    for cand in audit_order(candidates(zone, config)):
        if run.bytes_read >= run.budget:
            break
        try:
            res = audit_one(zone, config, cand, run.budget, run.bytes_read, t)
        except IrodsError as e:  # one unreadable record must not stop the audit of the others
            log.warning("fixity: %s could not be audited: %s", cand.drop_id, e)
            continue
        run.bytes_read += res.bytes
        run.snapshots.append(res.to_dict())
        if res.result in BAD:
            log.warning("fixity: snapshot %s: %s", cand.snapshot, res.result)
        if not res.finished:
            break
    return run


def audit_now(zone: Zone, config: PolicyConfig, drop_id: str, now: Optional[float] = None) -> Dict[str, Any]:
    """An admin's audit of one snapshot, whole, now (as the service account); recorded like a periodic one."""
    t = time.time() if now is None else now
    if not is_safe_drop_id(drop_id):
        return {"ok": False, "error": "not a valid drop id: {!r}".format(drop_id[:80])}
    avus = zone.metadata(landing_record(config, drop_id))
    snap = V.first(avus, V.SNAPSHOT_PATH)
    if V.first(avus, V.STATUS) not in AUDITED_STATES or not snap:
        return {"ok": False, "error": "drop {} has no placed or complete snapshot (status {}): nothing to audit"
                .format(drop_id, V.first(avus, V.STATUS) or "none")}
    res = audit_one(zone, config, Candidate(drop_id, snap, "", ""), None, 0, t)
    return dict(res.to_dict(), ok=True, **fixity_of(zone.metadata(landing_record(config, drop_id))))


def bad_snapshots(zone: Zone, config: PolicyConfig) -> List[Dict[str, str]]:
    """Landing records whose audit found a damaged snapshot (for the doctor)."""
    out = []
    prefix = config.landing_collection + "/"
    for value in BAD:
        for path in zone.find_by_metadata(V.FIXITY, value):
            if path.startswith(prefix) and "/" not in path[len(prefix):]:
                avus = zone.metadata(path)
                out.append({"drop": basename_of(path), "snapshot": V.first(avus, V.SNAPSHOT_PATH) or "",
                            **fixity_of(avus)})
    return out


def drop_of(zone: Zone, config: PolicyConfig, ident: str) -> str:
    """The drop id of a drop id or of a snapshot path (whose landing record must name it back)."""
    if not ident.startswith("/"):
        return ident
    drop_id = V.first(zone.metadata(ident), V.DROP_ID) or ""
    if not is_safe_drop_id(drop_id) or V.first(zone.metadata(landing_record(config, drop_id)),
                                               V.SNAPSHOT_PATH) != ident:
        raise ValueError("{} is not a snapshot the policy made (no landing record names it)".format(ident))
    return drop_id
