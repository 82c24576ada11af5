"""The delayed rule's use case: ingest a drop, then (when enabled) unpack it, then hand it over.

The unpack step plugs in as ingest's process hook, between `placed` and the
hand-over, because only the service account can write the content and it
loses write access at the hand-over.
"""

from __future__ import annotations

from typing import Optional

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


def process_drop(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str,
                 break_lock: bool = False) -> Outcome:
    """Ingest (and unpack) one drop, holding its lock; a concurrent run of the same drop stops at once."""
    from policy.drop_lock import acquire, release
    from policy.ingest import drop_status
    from policy.placement import is_safe_drop_id

    if not is_safe_drop_id(drop_id):
        return Outcome(drop_id, "refused", "not a valid drop id: {!r}".format(drop_id[:80]))
    if zone.user != config.service_account:
        return Outcome(drop_id, "refused", "drops are processed only as the service account '{}', not as '{}'"
                       .format(config.service_account, zone.user))
    lock = acquire(zone, config, drop_id, break_lock=break_lock)
    if lock is None:
        now = drop_status(zone, config, drop_id)
        return Outcome(drop_id, now.status, "another run is processing this drop now (lock {}); this run "
                       "stopped without changing anything".format(config.landing_collection + "/.locks/" + drop_id),
                       now.snapshot, now.irods_user, now.location)
    try:
        return ingest_drop(zone, config, mapping, drop_id, process_hook=unpack_hook(config))
    finally:
        release(zone, lock)
