"""What the upload PEP does once it knows a manifest arrived in the landing collection.

Cheap and harmless if it fires twice: it never reads the archive, refuses
uploads by anyone but the service account (leaving them untouched), marks
the drop `queued` and schedules the delayed rule with only the drop id
(delayExec rule text must stay under 5440 bytes).
"""

from __future__ import annotations

from typing import Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.ingest import set_status
from policy.placement import is_safe_drop_id
from policy.zone import Zone


def on_manifest_arrival(zone: Zone, config: PolicyConfig, drop_id: str, uploader: str, rule_call: str,
                        delay_seconds: Optional[int] = None) -> str:
    if uploader != config.service_account:
        return "ignored: uploaded by '{}', not by the service account '{}'; left untouched".format(
            uploader, config.service_account)
    if not is_safe_drop_id(drop_id):
        return "ignored: {!r} is not a valid drop id".format(drop_id[:80])
    drop = config.landing_collection + "/" + drop_id
    status = V.first(zone.metadata(drop), V.STATUS)
    if status is not None:
        return "already {}: not scheduled again".format(status)
    set_status(zone, drop, V.QUEUED, None, {V.DROP_ID: drop_id})
    zone.schedule(rule_call, config.delay_seconds if delay_seconds is None else delay_seconds)
    return "queued"
