"""What the upload PEP does once it knows a manifest arrived in the landing collection.

Cheap, and acts once per manifest even though python-irodsclient's create()
fires it twice (first empty, then whole: round 9). It never reads the archive, refuses
uploads by anyone but the service account (leaving them untouched), marks
the drop `queued`, gives the VERDICT (issue 20: validation, mapping, enrolment and the
snapshot's place, with catalog calls only; a refusal quarantines the drop at once, an
acceptance claims the snapshot and marks the drop `accepted`), and schedules the delayed
rule with only the drop id (delayExec rule text must stay under 5440 bytes), which
verifies the archive's checksum, moves, unpacks and hands over. OMERO's Save thus learns
where the snapshot will be within seconds of the manifest's close, whatever the delay
server's sleep. If the verdict cannot be given (any error), the delayed rule decides, as
before; the PEP itself never fails the upload.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.ingest import set_status
from policy.placement import is_safe_drop_id
from policy.retry import IF_UNSTARTED, process_call
from policy.zone import Zone

# The reason a drop carries while its manifest exists but is still empty. python-irodsclient's
# create() + open('w') (what the OMERO side does: create never truncates) fires the upload PEP twice,
# first for the empty replica (round 9), then with the bytes about 0.1 s later.
AWAITING_BYTES = "the manifest arrived empty; waiting for its bytes"
EMPTY_MANIFEST_DELAY = 60  # seconds: the fallback run for a manifest that stays empty (e.g. iput of 0 bytes)


def on_manifest_arrival(zone: Zone, config: PolicyConfig, drop_id: str, uploader: str,
                        delay_seconds: Optional[int] = None, empty: bool = False,
                        load_mapping: Optional[Callable[[], Any]] = None) -> str:
    """Queue the drop once per manifest, whole.

    An empty arrival is not yet the manifest: it only schedules a late fallback run (so a manifest that
    stays empty is still refused, as empty, without an admin) and says so in the reason. The arrival
    with the bytes then schedules the real run at the normal delay; the fallback (mode IF_UNSTARTED)
    later finds a run started and changes nothing. iput fires the PEP once, with the bytes, and is
    queued at once.
    """
    if uploader != config.service_account:
        return "ignored: uploaded by '{}', not by the service account '{}'; left untouched".format(
            uploader, config.service_account)
    if not is_safe_drop_id(drop_id):
        return "ignored: {!r} is not a valid drop id".format(drop_id[:80])
    drop = config.landing_collection + "/" + drop_id
    delay = config.delay_seconds if delay_seconds is None else delay_seconds
    if empty:
        # The PEP's file_size said 0. Ask the catalog too: the second close of python-irodsclient's create()
        # + write reports its size (round 11, P1: file_size 0, then 8), but a client whose write's close
        # said 0 would otherwise leave the drop to the late fallback run.
        empty = _catalog_size(zone, drop + "/manifest.json") == 0
    avus = zone.metadata(drop)
    status = V.first(avus, V.STATUS)
    if status is None:
        if empty:
            set_status(zone, drop, V.QUEUED, AWAITING_BYTES, {V.DROP_ID: drop_id})
            zone.schedule(process_call(drop_id, IF_UNSTARTED), max(delay, EMPTY_MANIFEST_DELAY))
            return "manifest empty so far: fallback run in {} s".format(max(delay, EMPTY_MANIFEST_DELAY))
        set_status(zone, drop, V.QUEUED, None, {V.DROP_ID: drop_id})
        return _judge_and_schedule(zone, config, drop_id, delay, load_mapping, "queued")
    if not empty and status == V.QUEUED and V.first(avus, V.REASON) == AWAITING_BYTES:
        set_status(zone, drop, V.QUEUED, None)
        return _judge_and_schedule(zone, config, drop_id, delay, load_mapping, "queued (the manifest's bytes arrived)")
    return "already {}: not scheduled again".format(status)


def _judge_and_schedule(zone: Zone, config: PolicyConfig, drop_id: str, delay: int,
                        load_mapping: Optional[Callable[[], Any]], note: str) -> str:
    """The verdict, then the delayed run (unless the verdict already ended the drop: quarantined)."""
    said = ""
    if load_mapping is not None:
        from policy.ingest import verdict

        try:
            out = verdict(zone, config, load_mapping(), drop_id)
        except Exception as e:  # noqa: BLE001 - the delayed rule decides instead; the upload stays fine
            said = "; verdict left to the delayed rule ({}: {})".format(type(e).__name__, str(e)[:200])
        else:
            if out.status == V.QUARANTINED:
                return "quarantined at once: {}".format(out.reason)
            said = "; {}{}".format(out.status, " at " + out.snapshot if out.snapshot else "")
    zone.schedule(process_call(drop_id), delay)
    return note + said


def _catalog_size(zone: Zone, path: str) -> int:
    """The size the catalog records for path; 0 when it cannot say (the caller then treats it as empty)."""
    try:
        return int(zone.stat(path).size)
    except Exception:  # noqa: BLE001 - a PEP must not fail on this; empty is the cautious answer
        return 0
