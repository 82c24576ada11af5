"""The delayed rule's run of one drop, self-healing: bounded retries with backoff, then a final state.

The delay server is the task queue here, and it forgets a rule once the rule ran (or crashed). So a run
that may fail schedules its own next attempt BEFORE it does the work (read the drop's state, schedule
the retry, take the lock, count the attempt, work): if the run then raises, is killed or its server
stops, the retry is already in the delay queue. A run that ends the drop (complete, placed,
quarantined, failed) leaves that retry behind; the retry finds the drop final and returns at once,
so no behaviour of the delay server beyond "run it later" is relied upon.

What a failure means (docs/self-healing.md):
- transient (TRANSIENT_CODES: connection, timeout, lock, catalog busy; a python-irodsclient network
  error): the retry already scheduled will try again, after the next backoff; after the last
  attempt the drop ends `failed`, saying so;
- anything else (an iRODS answer that a rerun usually meets again, a bug: AttributeError): one more
  attempt after the backoff (`retry.error_attempts`, default 2 attempts: what happened once heals), then
  `failed`, with a reason a person can act on, on the landing record and on the snapshot if there is
  one; a missing package or an unusable configuration or mapping file ends it `failed` at once.
  Nothing is deleted, moved back or overwritten, and the snapshot stays the service account's, so the
  admin's reprocess resumes it.

The attempt count is the landing record's `omero.snapshot.attempts`, written once the lock is held
(a run that only found the lock taken is not an attempt). The short window before the retry is
scheduled (one or two catalog reads) is covered by the sweep (policy/sweep.py).
"""

from __future__ import annotations

import logging
import socket
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import IrodsError, NotFound
from policy.ingest import Outcome, drop_status, foreign_objects, set_status
from policy.mapping import UserMapping
from policy.placement import is_safe_drop_id
from policy.zone import Zone, exists, owns

log = logging.getLogger("omero_snapshots.retry")

PROCESS_RULE = "omero_snapshots_process_drop"
RETRY = "retry"  # second rule argument of a retry (or of a run the sweep restarted)
BREAK_LOCK = "break-lock"
# Second rule argument of the late run the upload PEP schedules when the manifest first arrives EMPTY
# (python-irodsclient's create(), policy.trigger): it works only if no run has started on the drop yet,
# i.e. the arrival with the bytes never came (the manifest stayed empty, or that PEP failed).
IF_UNSTARTED = "if-unstarted"
ADMIN_HINT = "the facility's admin can see the server log and run reprocess"

# iRODS codes a later attempt can pass (rodsErrorTable.h names). None of the codes the real server
# returned for the adapter's calls (prep-observed round 10) is here: each of those is a deterministic
# answer (exists, missing, no permission, invalid input, bad descriptor, unknown column or resource)
# that a rerun would meet again.
TRANSIENT_CODES: Dict[int, str] = {
    -1000: "SYS_SOCK_OPEN_ERR",
    -4000: "SYS_HEADER_READ_LEN_ERR",
    -5000: "SYS_HEADER_WRITE_LEN_ERR",
    -7000: "SYS_CAUGHT_SIGNAL",
    -9000: "SYS_EXCEED_CONNECT_CNT",
    -18000: "SYS_OUT_OF_FILE_DESC",
    -22000: "SYS_SVR_TO_SVR_CONNECT_FAILED",
    -38000: "SYS_AGENT_INIT_ERR",
    -75000: "SYS_STRUCT_FILE_BUSY_ERR",
    -105000: "SYS_RESC_IS_DOWN",
    -115000: "SYS_SOCK_READ_TIMEDOUT",
    -305000: "USER_SOCK_CONNECT_ERR",
    -347000: "USER_SOCK_CONNECT_TIMEDOUT",
    -406000: "LOCKED_DATA_OBJECT_ACCESS",
    -801000: "CATALOG_NOT_CONNECTED",
    -803000: "CAT_CONNECT_ERR",
    -804000: "CAT_DISCONNECT_ERR",
    -806000: "CAT_SQL_ERR",
    -860000: "CAT_STATEMENT_TABLE_FULL",
}
# python-irodsclient's client-side NetworkException reaches us as RULE_ENGINE_ERROR naming it
# (policy.prc_zone._translate); raw socket errors of the data plane as these Python types.
TRANSIENT_TYPES: Tuple[type, ...] = (ConnectionError, TimeoutError, socket.timeout)
TRANSIENT_CLIENT_NAMES = ("NetworkException",)


def process_call(drop_id: str, mode: str = "") -> str:
    """The delayExec rule text of a run of drop_id: the upload PEP's (no mode), its empty-arrival fallback
    (IF_UNSTARTED), a retry (RETRY). Drop ids are checked safe before they get here: no quote can occur."""
    if mode:
        return "callback.{}('{}', '{}')".format(PROCESS_RULE, drop_id, mode)
    return "callback.{}('{}')".format(PROCESS_RULE, drop_id)


def retry_call(drop_id: str) -> str:
    return process_call(drop_id, RETRY)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, IrodsError):
        if exc.code in TRANSIENT_CODES:
            return True
        return exc.code == -1828000 and any(n in str(exc) for n in TRANSIENT_CLIENT_NAMES)
    return isinstance(exc, TRANSIENT_TYPES) or _client_network_error(exc)


def _client_network_error(exc: BaseException) -> bool:
    """python-irodsclient's own NetworkException, raised raw from the data plane (a member write, the archive's
    read): what a run saw when its server stopped under it (observed: "Unable to send message" while writing
    a member, the rule's own microservice calls still answering; tests/test_live_healing.py)."""
    t = type(exc)
    return t.__name__ in TRANSIENT_CLIENT_NAMES and t.__module__.split(".")[0] == "irods"


def describe(exc: BaseException) -> str:
    """The failure in one line, code name first (what the reason and the log say)."""
    if isinstance(exc, IrodsError):
        name = TRANSIENT_CODES.get(exc.code) if exc.name == "IRODS_ERROR" else None
        text = str(exc) if name is None else str(exc).replace("IRODS_ERROR", name, 1)
        return text[:400]
    return "{}: {}".format(type(exc).__name__, str(exc)[:300])


def permanent_reason(exc: BaseException, hint: bool = True) -> str:
    tail = "; nothing was deleted or overwritten; " + ADMIN_HINT if hint else ""
    if isinstance(exc, IrodsError):
        return "iRODS refused a step of the processing ({}){}".format(describe(exc), tail)
    return "internal error in the policy ({}){}".format(describe(exc), ("; " + ADMIN_HINT) if hint else "")


def exhausted_reason(attempts: int, last: str) -> str:
    return ("gave up after {} attempts: the last one {}; nothing was deleted or overwritten; {}"
            .format(attempts, last, ADMIN_HINT))


@dataclass
class Runtime:
    """What the delayed rule needs from its server (rules.py builds it; tests build their own)."""

    load_config: Callable[[], PolicyConfig]
    load_mapping: Callable[[PolicyConfig], UserMapping]
    open_zone: Callable[[Optional[PolicyConfig]], Zone]  # None: a control-plane zone for a broken config
    minimal_config: Callable[[], Tuple[str, str]]  # (landing collection, service account), unvalidated
    clock: Callable[[], float]
    check_prerequisites: Callable[[PolicyConfig], Optional[str]]
    log: Callable[[str], None] = log.info


def run_delayed(rt: Runtime, drop_id: str, mode: str = "") -> Outcome:
    """One run of the delayed rule for drop_id. Never raises for a failure it could record on the drop.

    mode: "" (the upload PEP's run, or an admin's reprocess), "break-lock" (a forced reprocess),
    "if-unstarted" (the fallback of an empty manifest arrival: a no-op once any run started),
    "retry" (a retry this module scheduled, or a run the sweep restarted: it continues the count and
    returns at once when the drop is already final).
    """
    try:
        config = rt.load_config()
    except Exception as e:  # noqa: BLE001 - any unreadable configuration ends the drop, naming why
        return _fail_without_config(rt, drop_id, e)
    zone = rt.open_zone(config)
    try:
        return _run(rt, config, zone, drop_id, mode)
    finally:
        close = getattr(zone, "close", None)
        if close is not None:
            close()


def _run(rt: Runtime, config: PolicyConfig, zone: Zone, drop_id: str, mode: str) -> Outcome:
    from policy.drop_lock import LockLost, live_lock_expiry
    from policy.process import process_drop

    if not is_safe_drop_id(drop_id) or zone.user != config.service_account:
        return process_drop(zone, config, _no_mapping(), drop_id)  # its refusal, nothing written
    retrying = mode == RETRY
    landing = config.landing_collection + "/" + drop_id
    retry = config.retry
    try:
        avus = zone.metadata(landing)
    except NotFound:
        now_at = drop_status(zone, config, drop_id)  # moved on (quarantined) or never there
        if retrying and now_at.status in V.FINAL:
            return _finished(rt, config, zone, drop_id, now_at.status, now_at.location or landing)
        return now_at
    except Exception as e:  # noqa: BLE001 - cannot even read: the next attempt may
        return _unreadable(rt, config, zone, drop_id, e)
    status = V.first(avus, V.STATUS)
    stored = _int(V.first(avus, V.ATTEMPTS))
    if mode == IF_UNSTARTED:
        if status not in (V.QUEUED, V.ACCEPTED) or stored > 0:
            return drop_status(zone, config, drop_id)  # a run started: this fallback has nothing to do
        mode = ""
    # `quarantined` on a record still in landing: the move into quarantine did not happen (yet).
    if status in V.FINAL and status != V.QUARANTINED:
        if retrying:
            return _finished(rt, config, zone, drop_id, status, landing)
        if status != V.FAILED:
            return process_drop(zone, config, _mapping(rt, config), drop_id, break_lock=mode == BREAK_LOCK,
                                clock=rt.clock)
    attempt = stored + 1 if retrying else 1
    if attempt > retry.max_attempts and status == V.QUARANTINED:
        return drop_status(zone, config, drop_id)  # refused and kept in landing (see ingest.quarantine)
    if attempt > retry.max_attempts:
        # The last attempt was scheduled no successor and did not record its end: it was killed.
        return _mark_failed(rt, zone, config, drop_id, exhausted_reason(
            stored, "did not finish (killed, or its server stopped)"))
    try:
        foreign = foreign_objects(zone, config, drop_id)
    except Exception as e:  # noqa: BLE001
        return _unreadable(rt, config, zone, drop_id, e)
    if foreign:
        return process_drop(zone, config, _no_mapping(), drop_id)  # refused, and nothing written or scheduled
    problem = rt.check_prerequisites(config)
    if problem is not None:
        return _mark_failed(rt, zone, config, drop_id, problem)
    try:
        mapping = rt.load_mapping(config)
    except Exception as e:  # noqa: BLE001 - a broken mapping file is the admin's to fix
        return _mark_failed(rt, zone, config, drop_id, "the user mapping file {} cannot be used ({}); the "
                            "facility's admin must correct it and run reprocess".format(config.mapping_file,
                                                                                      describe(e)))
    now = rt.clock()
    delay: Optional[int] = retry.backoff_seconds[attempt - 1] if attempt <= len(retry.backoff_seconds) else None
    try:
        held_until = live_lock_expiry(zone, config, drop_id, now) if mode != BREAK_LOCK else None
    except Exception as e:  # noqa: BLE001
        return _unreadable(rt, config, zone, drop_id, e)
    if held_until is not None:
        # Another run holds the lock: it may be alive (then it finishes the drop) or dead (then its lease
        # ends within limits.lock_seconds and it can be taken over). Come back when the lease ends, not after
        # the next backoff: this is not an attempt of ours.
        delay = max(1, int(held_until - now) + 1)
    scheduled = _schedule(rt, zone, drop_id, delay) if delay is not None else False

    def count_attempt() -> None:
        # Read again under the lock: a run that held it may have ended the drop since our first read
        # (then this run finds nothing to do, and is no attempt).
        current = zone.metadata(landing)
        if V.first(current, V.STATUS) in (V.COMPLETE, V.PLACED_STATE):
            return
        ops = V.replace_ops(current, {V.ATTEMPTS: str(max(attempt, _int(V.first(current, V.ATTEMPTS)) + 1)
                                                      if retrying else attempt)})
        if ops:
            zone.apply_metadata(landing, ops)

    try:
        out = process_drop(zone, config, mapping, drop_id, break_lock=mode == BREAK_LOCK,
                           on_locked=count_attempt, clock=rt.clock)
    except LockLost as e:
        rt.log("drop {}: {}; the run that took it over finishes the drop".format(drop_id, e))
        return Outcome(drop_id, status or "received", str(e), location=landing)
    except Exception as e:  # noqa: BLE001 - classified below; the trace goes to the server log
        rt.log("drop {} attempt {} of {} failed:\n{}".format(drop_id, attempt, retry.max_attempts,
                                                             traceback.format_exc()[-2000:]))
        if is_transient(e):
            if scheduled:
                return _note_retry(zone, drop_id, landing, status, attempt, retry.max_attempts, delay, e)
            if delay is None:
                return _mark_failed(rt, zone, config, drop_id, exhausted_reason(
                    attempt, "failed too, with {} (a fault that usually passes: connection, timeout, lock or "
                    "catalog busy)".format(describe(e))))
            raise  # no retry could be scheduled: the sweep restarts the drop (after its grace time)
        # Neither transient nor a refusal (refusals end the drop without raising): an iRODS answer that a rerun
        # usually meets again, or a bug. It may also have happened once (the catalog changed under the run, a
        # fault of the moment), and the work is resumable: one more attempt (retry.error_attempts) before
        # `failed` costs a researcher a backoff, and saves an admin's reprocess when it does not recur.
        most = min(retry.error_attempts, retry.max_attempts)
        if scheduled and attempt < most:
            return _note_retry(zone, drop_id, landing, status, attempt, most, delay, e)
        if attempt > 1:
            return _mark_failed(rt, zone, config, drop_id, exhausted_reason(attempt, "failed too: {}".format(
                permanent_reason(e, hint=False))))
        return _mark_failed(rt, zone, config, drop_id, permanent_reason(e))
    return out


def _finished(rt: Runtime, config: PolicyConfig, zone: Zone, drop_id: str, status: str, landing: str) -> Outcome:
    """A retry of a drop that is final: nothing to do, but a lock its last run left behind (killed after
    the final status, before the release) is removed once it has expired; until then, come back."""
    from policy.drop_lock import acquire, live_lock_expiry, lock_path

    note = "already {}: this retry has nothing to do".format(status)
    if not exists(zone, lock_path(config, drop_id)):
        return Outcome(drop_id, status, note, location=landing)
    now = rt.clock()
    held_until = live_lock_expiry(zone, config, drop_id, now)
    if held_until is not None:
        _schedule(rt, zone, drop_id, int(held_until - now) + 1)
        return Outcome(drop_id, status, note + "; its lock is held until {}: checked again then".format(held_until),
                       location=landing)
    lock = acquire(zone, config, drop_id, clock=rt.clock)  # takes over the dead run's lock...
    if lock is not None:
        lock.release()  # ... only to remove it
    return Outcome(drop_id, status, note + "; removed the lock its last run left", location=landing)


def _schedule(rt: Runtime, zone: Zone, drop_id: str, delay: int) -> bool:
    try:
        zone.schedule(retry_call(drop_id), delay)
        return True
    except Exception as e:  # noqa: BLE001 - the work goes on; the sweep covers a drop left unscheduled
        rt.log("drop {}: could not schedule its retry ({}); the sweep will restart it if this run fails"
               .format(drop_id, describe(e)))
        return False


def _note_retry(zone: Zone, drop_id: str, landing: str, status: Optional[str], attempt: int, most: int,
                delay: Optional[int], exc: BaseException) -> Outcome:
    """Say on the landing record why the drop waits (best effort: the retry is scheduled either way)."""
    reason = "attempt {} of {} failed ({}); the next attempt starts by itself in about {} s".format(
        attempt, most, describe(exc), delay)
    try:
        ops = V.replace_ops(zone.metadata(landing), {V.REASON: reason})
        if ops:
            zone.apply_metadata(landing, ops)
    except Exception:  # noqa: BLE001,S110 - a note only
        pass
    return Outcome(drop_id, status or "received", reason, location=landing)


def _unreadable(rt: Runtime, config: PolicyConfig, zone: Zone, drop_id: str, exc: BaseException) -> Outcome:
    """The drop's state could not be read: schedule a retry if the cause can pass, else give up this run."""
    rt.log("drop {}: cannot read its state ({})".format(drop_id, describe(exc)))
    if is_transient(exc):
        # The count is unreadable too; the retry reads it again (and counts) once the catalog answers.
        delay = config.retry.backoff_seconds[0] if config.retry.backoff_seconds else 60
        _schedule(rt, zone, drop_id, delay)
        return Outcome(drop_id, "unknown", "state unreadable ({}); retried in {} s".format(describe(exc), delay))
    raise exc  # nothing known about the drop: left as it is; the sweep restarts it if it is stranded


def _mark_failed(rt: Runtime, zone: Zone, config: PolicyConfig, drop_id: str, reason: str) -> Outcome:
    """End the drop `failed` with `reason`: on the snapshot first (if it is still ours), then the landing
    record, whose final status is what stops the retries. Nothing is moved, removed or overwritten."""
    landing = config.landing_collection + "/" + drop_id
    rt.log("drop {} failed: {}".format(drop_id, reason))
    try:
        avus = zone.metadata(landing)
    except NotFound:
        return drop_status(zone, config, drop_id)
    if V.first(avus, V.STATUS) in (V.COMPLETE, V.PLACED_STATE, V.QUARANTINED):
        return drop_status(zone, config, drop_id)  # it ended meanwhile (another run): never undo that
    snapshot = V.first(avus, V.SNAPSHOT_PATH)
    if snapshot:
        try:
            if V.first(zone.metadata(snapshot), V.STATUS) == V.ACCEPTED:
                raise NotFound(-310000, snapshot)  # only the verdict's claim, nothing placed: the landing record
            if not owns(zone, snapshot, zone.user):
                # Handed over already: the work was done; only the landing record was left to write.
                final = V.first(zone.metadata(snapshot), V.STATUS) or V.PLACED_STATE
                set_status(zone, landing, final, None, {V.SNAPSHOT_PATH: snapshot})
                return drop_status(zone, config, drop_id)
            set_status(zone, snapshot, V.FAILED, reason)
        except NotFound:
            snapshot = None
    set_status(zone, landing, V.FAILED, reason, {V.DROP_ID: drop_id})
    return Outcome(drop_id, V.FAILED, reason, snapshot, V.first(avus, V.IRODS_USER),
                   location=snapshot or landing)


def _fail_without_config(rt: Runtime, drop_id: str, exc: BaseException) -> Outcome:
    """The configuration does not load: fail the drop with what is wrong, if it can still be found."""
    reason = ("the policy configuration cannot be used ({}); the facility's admin must correct it (the doctor "
              "rule names the problem) and run reprocess".format(describe(exc)))
    rt.log("drop {}: {}".format(drop_id, reason))
    try:
        landing_root, svc = rt.minimal_config()
    except Exception:  # noqa: BLE001 - nothing says where the drop is: only the log can tell
        return Outcome(drop_id, "unknown", reason)
    zone = rt.open_zone(None)
    try:
        if not is_safe_drop_id(drop_id) or zone.user != svc:
            return Outcome(drop_id, "refused", reason)
        landing = landing_root + "/" + drop_id
        try:
            status = V.first(zone.metadata(landing), V.STATUS)
        except NotFound:
            return Outcome(drop_id, "unknown", reason)
        if status not in V.FINAL or status == V.FAILED:
            set_status(zone, landing, V.FAILED, reason, {V.DROP_ID: drop_id})
        return Outcome(drop_id, V.FAILED, reason, location=landing)
    finally:
        close = getattr(zone, "close", None)
        if close is not None:
            close()


def _mapping(rt: Runtime, config: PolicyConfig) -> UserMapping:
    return rt.load_mapping(config)


def _no_mapping() -> UserMapping:
    return UserMapping([])


def _int(value: Optional[str]) -> int:
    return int(value) if value is not None and value.isdigit() else 0

