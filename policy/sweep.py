"""The sweep: a periodic delayed rule that restarts drops nothing is scheduled for.

Two ways a drop can be left with nothing in the delay queue: the upload PEP failed (or its agent died)
before it queued the drop, or a delayed run was killed in the short window before it scheduled its own
retry (policy/retry.py). Both leave a drop whose landing record has no final status, no change for a
while, no live lock and no delayed rule naming it. The sweep finds those and schedules a retry run for
each (which continues the drop's attempt count, so the bound on attempts holds).

The sweep is one self-rescheduling delayed rule, run as the service account, every
`retry.sweep_seconds`. It is armed by the doctor rule (docs/install.md step 10; again on every doctor
run, a no-op when armed) or by omero_snapshots_sweep_start, and, like a retry, it schedules its next
run BEFORE it works, so a sweep that crashes still leaves the next one. Each chain carries a token in
its rule text; if two chains ever exist (two admins arming at once), the one with the larger token
sees the other and ends.
"""

from __future__ import annotations

import calendar
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from policy import vocabulary as V
from policy.config import QUARANTINE_NAME, PolicyConfig
from policy.errors import NotFound
from policy.placement import is_safe_drop_id
from policy.retry import PROCESS_RULE, retry_call
from policy.zone import Zone, basename_of, owns

log = logging.getLogger("omero_snapshots.sweep")

SWEEP_RULE = "omero_snapshots_sweep"
_TOKEN_CHARS = set("0123456789abcdef")


def sweep_call(token: str) -> str:
    return "callback.{}('{}')".format(SWEEP_RULE, token)


def new_token() -> str:
    return secrets.token_hex(8)


def _tokens(zone: Zone) -> List[str]:
    """Tokens of the sweep rules in the delay queue (pending, or running where the server lists those)."""
    out = []
    for text, _when in delayed_rules_naming(zone, SWEEP_RULE):
        tok = str(text).split("('", 1)[-1].split("'", 1)[0]
        if tok and set(tok) <= _TOKEN_CHARS:
            out.append(tok)
    return out


def delayed_rules_naming(zone: Zone, name_part: str) -> List[Tuple[str, str]]:
    """(rule text, time) of our delayed rules whose text contains name_part; [] where the zone cannot
    list them (a client session): the sweep then may restart a drop twice, which its lock makes harmless."""
    query = getattr(zone, "delayed_rules", None)
    return [] if query is None else [(str(a), str(b)) for a, b in query(name_part)]


def arm(zone: Zone, config: PolicyConfig) -> str:
    """Schedule the sweep unless one is already queued. Runs as the service account."""
    if zone.user != config.service_account:
        return "not armed: the sweep runs as the service account '{}', not as '{}'".format(
            config.service_account, zone.user)
    if _tokens(zone):
        return "armed (a sweep is already queued)"
    zone.schedule(sweep_call(new_token()), config.retry.sweep_seconds)
    return "armed: the first sweep runs in {} s".format(config.retry.sweep_seconds)


@dataclass
class SweepResult:
    continued: bool
    restarted: List[str] = field(default_factory=list)
    note: str = ""
    locks_removed: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"continued": self.continued, "restarted": self.restarted, "note": self.note,
                "locks_removed": self.locks_removed}


def run_sweep(zone: Zone, config: PolicyConfig, token: str, now: Optional[float] = None,
              limit: int = 500) -> SweepResult:
    """One sweep: first the next one is scheduled (unless another chain survives), then stranded drops
    are restarted. `now` is the server's time (a simulated zone passes its own)."""
    t = time.time() if now is None else now
    if zone.user != config.service_account:
        return SweepResult(False, note="only the service account runs the sweep")
    try:
        others = sorted(x for x in _tokens(zone) if x != token)
    except Exception:  # noqa: BLE001 - unknown: go on (two chains are harmless; they merge next time)
        others = []
    continued = not (others and others[0] < token)
    if continued:
        zone.schedule(sweep_call(token), config.retry.sweep_seconds)
    result = SweepResult(continued, note="" if continued else "another sweep chain ({}) goes on".format(others[0]))
    for drop_id in stranded(zone, config, t, limit):
        zone.schedule(retry_call(drop_id), max(1, config.delay_seconds))
        result.restarted.append(drop_id)
        log.warning("sweep: drop %s had nothing scheduled; restarted", drop_id)
    result.locks_removed = remove_dead_locks(zone, config, t)
    return result


def remove_dead_locks(zone: Zone, config: PolicyConfig, now: float) -> List[str]:
    """Locks a run left behind after its drop ended (killed between the final status and the release),
    once expired, and locks a takeover moved aside (`.broken-*`) and did not get to remove."""
    from policy.drop_lock import LOCKS, acquire, live_lock_expiry

    locks = config.landing_collection + "/" + LOCKS
    try:
        names = [basename_of(c) for c in zone.list_collection(locks).collections]
    except NotFound:
        return []
    removed = []
    for name in names:
        if ".broken-" in name:
            try:
                zone.remove_collection(locks + "/" + name)
                removed.append(name)
            except NotFound:
                pass
            continue
        if not is_safe_drop_id(name):
            continue
        try:
            status = V.first(zone.metadata(config.landing_collection + "/" + name), V.STATUS)
        except NotFound:
            status = V.QUARANTINED  # the landing record moved into quarantine: the drop ended
        if status not in V.FINAL or live_lock_expiry(zone, config, name, now) is not None:
            continue  # a live run, or a dead one whose drop the retries/stranded() take care of
        lock = acquire(zone, config, name, now=now)
        if lock is not None:
            lock.release()
            removed.append(name)
    return removed


def stranded(zone: Zone, config: PolicyConfig, now: float, limit: int = 500) -> List[str]:
    """Drops of the service account with no final status, quiet for the grace time, with no live lock
    and no delayed rule naming them."""
    from policy.drop_lock import live_lock_expiry

    landing = config.landing_collection
    try:
        listing = zone.list_collection(landing)
    except NotFound:
        return []
    out: List[str] = []
    grace = config.retry.sweep_grace_seconds
    for coll in sorted(listing.collections, reverse=True)[:limit]:  # drop ids start with their time: newest
        drop_id = basename_of(coll)
        if drop_id == QUARANTINE_NAME or not is_safe_drop_id(drop_id):
            continue
        avus = zone.metadata(coll)
        status = V.first(avus, V.STATUS)
        if status in V.FINAL and status != V.QUARANTINED:
            continue
        if now - _last_change(zone, coll, V.first(avus, V.UPDATED)) < grace:
            continue
        if status is None and not _complete_upload(zone, config, coll):
            continue  # still uploading, or not the service account's: the upload PEP's rules apply
        if live_lock_expiry(zone, config, drop_id, now) is not None:
            continue
        if any(PROCESS_RULE in text and recent(when, now, grace)
               for text, when in delayed_rules_naming(zone, drop_id)):
            continue
        out.append(drop_id)
    return out


def recent(when: str, now: float, grace: int) -> bool:
    """A queued rule counts as taking care of the drop unless it is long overdue: a rule the delay
    server listed for longer than the grace time after it was due belongs to a run that died (whether
    the server ever drops such a row is not observed), and restarting the drop is safe (its lock)."""
    try:
        return now - float(when) < grace
    except ValueError:
        return True


def _last_change(zone: Zone, coll: str, updated: Optional[str]) -> float:
    if updated:
        try:
            return float(calendar.timegm(time.strptime(updated, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            pass
    return float(zone.stat(coll).modify_time or 0)


def _complete_upload(zone: Zone, config: PolicyConfig, coll: str) -> bool:
    """A drop with no status yet counts only once its manifest (written last) is there, non-empty, and
    the drop is the service account's (what the upload PEP would have queued)."""
    svc = config.service_account
    if not owns(zone, coll, svc):
        return False
    objs = {basename_of(s.path): s for s in zone.list_collection(coll).data_objects}
    manifest = objs.get("manifest.json")
    return manifest is not None and manifest.size > 0 and manifest.owner == svc
