"""The delayed rule's use case: ingest a drop, then (when enabled) unpack it, then hand it over.

The unpack step plugs in as ingest's process hook, between `placed` and the
hand-over, because only the service account can write the content and it
loses write access at the hand-over.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from policy.config import PolicyConfig
from policy.ingest import Outcome, ProcessHook, ingest_drop
from policy.mapping import UserMapping
from policy.zone import Zone


def unpack_hook(config: PolicyConfig) -> Optional[ProcessHook]:
    """The unpack step (policy.unpack), or None when the configuration turns it off."""
    if not config.unpack.enabled:
        return None
    from policy.unpack import unpack_step

    return unpack_step


def heartbeat_opener(zone: Zone) -> Optional[Callable[[], Zone]]:
    """How the lease's heartbeat thread opens its own connection to the zone; None when the zone has none to
    offer (then the main thread refreshes the lease between steps, policy/drop_lock.py)."""
    probe = getattr(zone, "heartbeat_opener", None)
    return probe() if probe is not None else None


def process_drop(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str,
                 break_lock: bool = False, on_locked: Optional[Callable[[], None]] = None,
                 clock: Callable[[], float] = time.time) -> Outcome:
    """Ingest (and unpack) one drop, holding its lock; a concurrent run of the same drop stops at once.

    break_lock takes over a lock even from a run that still looks alive: only for an admin who knows
    that run is dead (a forced reprocess). A lock whose holder stopped refreshing it is taken over anyway.
    on_locked runs once the lock is held, before any work (the retry logic counts the attempt there:
    a run that only found the lock taken is not an attempt). clock: the server's time, for the lock.
    """
    from policy import vocabulary as V
    from policy.drop_lock import LockUnavailable, acquire, expires_at
    from policy.ingest import drop_status, set_status
    from policy.placement import is_safe_drop_id
    from policy.zone import exists

    if not is_safe_drop_id(drop_id):
        return Outcome(drop_id, "refused", "not a valid drop id: {!r}".format(drop_id[:80]))
    if zone.user != config.service_account:
        return Outcome(drop_id, "refused", "drops are processed only as the service account '{}', not as '{}'"
                       .format(config.service_account, zone.user))
    try:
        lock = acquire(zone, config, drop_id, break_lock=break_lock, clock=clock)
    except LockUnavailable as e:
        drop = config.landing_collection + "/" + drop_id
        now = drop_status(zone, config, drop_id)
        if now.status not in V.FINAL_GOOD and exists(zone, drop):  # only an unfinished landing record
            set_status(zone, drop, V.FAILED, "not processed: {}".format(e))
        return Outcome(drop_id, V.FAILED, "not processed: {}".format(e), location=now.location)
    if lock is None:
        now = drop_status(zone, config, drop_id)
        return Outcome(drop_id, now.status, "another run is processing this drop now (its lock {} is refreshed "
                       "until {}); this run stopped without changing anything".format(
                           config.landing_collection + "/.locks/" + drop_id, expires_at(zone, config, drop_id)),
                       now.snapshot, now.irods_user, now.location)
    try:
        # The lease's heartbeat: its own connection (the data plane's kind), so no step in progress stops it.
        lock.start_heartbeat(heartbeat_opener(zone))
        if on_locked is not None:
            on_locked()
        return ingest_drop(zone, config, mapping, drop_id, process_hook=unpack_hook(config), guard=lock)
    finally:
        try:
            lock.release()
        except Exception as e:  # noqa: BLE001 - the outcome stands; the lock expires and is removed later
            logging.getLogger("omero_snapshots.process").warning("drop %s: could not remove its lock %s (%s); "
                                                                  "it expires, then the next retry or the "
                                                                  "sweep removes it", drop_id, lock.path, e)
