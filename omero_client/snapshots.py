"""What the OMERO side may read back from iRODS: drop status, and the snapshots a researcher saved.

The OMERO side cannot read the facility's user mapping (it lives on the iRODS
server, readable by the policy only), so it never asks "which iRODS user is
this researcher?". It asks instead "which snapshots did this researcher save?":
the policy stamps every snapshot with ``omero.snapshot.omero_user`` and
``omero.snapshot.omero_server`` taken from the manifest of a drop that only
the service account can write, AFTER the mapping accepted it. So:

- List shows the snapshots carrying the current OMERO user name and this
  OMERO server's name (``find_by_metadata(omero_user, name)`` then a filter on
  the server), newest first;
- Load accepts only such a snapshot (load.py).

Because the snapshot's owner (the mapped iRODS user) may edit its AVUs, a
snapshot only counts if its landing record agrees: ``<landing>/<drop_id>``,
owned by the service account and writable by nobody else, must name this very
snapshot and its iRODS user. A collection someone dressed up with
``omero.snapshot.*`` AVUs has no such record and is ignored.

``resolve_irods_user`` reports the iRODS user the researcher's snapshots went
to (shown to them, never used to authorise anything).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from omero_client.progress import human_bytes
from policy import vocabulary as V
from policy.errors import IrodsError, NotFound
from policy.ingest import NS_RULE, Outcome, drop_status_at
from policy.listing import SnapshotInfo, snapshot_info
from policy.listing import list_snapshots as _policy_list_snapshots
from policy.placement import is_safe_drop_id
from policy.zone import COLLECTION, Avu, Zone

log = logging.getLogger("omero_snapshots.omero_client")

LOADABLE = (V.PLACED_STATE, V.COMPLETE)
IN_PROGRESS = ("received", V.QUEUED, V.PROCESSING)  # `accepted` is a verdict: the snapshot's place is known


@dataclass(frozen=True)
class DropStatus:
    """A drop's state as the OMERO side sees it (policy.ingest.Outcome plus the refusal's machine id)."""

    drop_id: str
    status: str
    reason: Optional[str]
    snapshot: Optional[str]
    irods_user: Optional[str]
    location: Optional[str]
    refusal_rule: Optional[str] = None


def drop_status(zone: Zone, landing: str, drop_id: str) -> DropStatus:
    """Read a drop's status AVUs (landing record, quarantine, then the snapshot it became)."""
    out: Outcome = drop_status_at(zone, landing, drop_id)
    rule = None
    if out.status == V.QUARANTINED and out.location:
        try:
            rule = V.first(zone.metadata(out.location), NS_RULE)
        except IrodsError:
            rule = None
    return DropStatus(out.drop_id, out.status, out.reason, out.snapshot, out.irods_user, out.location, rule)


def provenance_problem(zone: Zone, landing: str, path: str, avus: Sequence[Avu]) -> Optional[str]:
    """Why ``path`` is not a snapshot the policy placed from one of our drops, or None if it is."""
    if V.first(avus, V.SNAPSHOT_PATH) != path:
        return "it is not a snapshot (its omero.snapshot.path does not point at itself)"
    drop_id = V.first(avus, V.DROP_ID) or ""
    if not is_safe_drop_id(drop_id):
        return "it carries no valid drop id"
    record = landing + "/" + drop_id
    try:
        st = zone.stat(record)
        ravus = zone.metadata(record)
    except IrodsError:
        return "the OMERO service has no landing record for it (it was not saved through OMERO)"
    if st.owner and st.owner != zone.user:
        return "its landing record does not belong to the OMERO service account"
    if V.first(ravus, V.SNAPSHOT_PATH) != path or V.first(ravus, V.IRODS_USER) != V.first(avus, V.IRODS_USER):
        return "its landing record names another snapshot or owner"
    # The snapshot's owner may edit the snapshot's AVUs; the landing record only the service account can.
    for attr in (V.OMERO_USER, V.OMERO_SERVER):
        recorded = V.first(ravus, attr)
        if recorded is not None and recorded != V.first(avus, attr):
            return "its {} was changed after it was saved (landing record says {!r})".format(attr, recorded)
    return None


def snapshots_of(zone: Zone, landing: str, omero_user: str, omero_server: str) -> List[SnapshotInfo]:
    """The snapshots this OMERO user saved from this OMERO server, newest first."""
    out = []
    for path in zone.find_by_metadata(V.OMERO_USER, omero_user, COLLECTION):
        try:
            avus = zone.metadata(path)
        except IrodsError:
            continue  # the owner withdrew the service account's access: no longer ours to list
        values = V.as_dict(avus)
        if values.get(V.OMERO_USER) != [omero_user] or values.get(V.OMERO_SERVER) != [omero_server]:
            continue
        problem = provenance_problem(zone, landing, path, avus)
        if problem is not None:
            log.warning("ignoring %s: %s", path, problem)
            continue
        try:
            out.append(snapshot_info(zone, path, landing))
        except NotFound:
            continue
    return sorted(out, key=lambda s: (s.created, s.path), reverse=True)


def list_snapshots(zone: Zone, irods_user: str) -> List[SnapshotInfo]:
    """All snapshots handed to an iRODS user, newest first (policy.listing; what an admin or the CLI sees)."""
    return _policy_list_snapshots(zone, irods_user)


def resolve_irods_user(zone: Zone, landing: str, omero_user: str, omero_server: str) -> Optional[str]:
    """The iRODS user this OMERO user's newest snapshot was handed to; None before the first save.

    Informative only: the mapping is the facility's and may change; what a
    researcher may load is decided by who SAVED a snapshot (snapshots_of).
    """
    snaps = snapshots_of(zone, landing, omero_user, omero_server)
    return snaps[0].irods_user if snaps else None


def short_time(iso: str) -> str:
    """'2026-11-25T08:47:40Z' -> '2026-11-25 08:47 UTC' (as stored when it does not parse)."""
    if len(iso) >= 16 and iso[10:11] == "T":
        return "{} {} UTC".format(iso[:10], iso[11:16])
    return iso or "?"


def format_listing(snaps: Sequence[SnapshotInfo], limit: Optional[int] = None,
                   zones: Optional[Sequence[str]] = None) -> str:
    """A numbered table (the numbers are what Load's Snapshot_Index takes) with each snapshot's path.

    ``zones`` (one zone label per snapshot, several zones configured) prefixes
    each path with its zone as ``labZone: /labZone/home/...``, which is also
    what Load's Snapshot parameter accepts as it is.
    """
    if not snaps:
        return "No snapshots saved from OMERO yet."
    shown = snaps if limit is None else snaps[:limit]
    lines: List[str] = []
    for i, s in enumerate(shown, 1):
        label = s.label or "(no label)"
        lines.append("{:>3}. {}  {:<10} {:>10}  {}".format(i, short_time(s.created), s.status,
                                                         human_bytes(s.archive_size), label))
        lines.append("     {}{}".format("" if zones is None else zones[i - 1] + ": ", s.path))
        if s.fixity in ("mismatch", "missing", "unrecorded"):
            lines.append("     INTEGRITY CHECK FAILED ({}, {}): {}".format(
                s.fixity, short_time(s.fixity_verified) if s.fixity_verified else "this pass", s.fixity_detail[:300]))
        elif s.fixity == "ok":
            lines.append("     integrity verified {}".format(short_time(s.fixity_verified)))
    if len(snaps) > len(shown):
        lines.append("... and {} older (see the full list in the Info output)".format(len(snaps) - len(shown)))
    return "\n".join(lines)


def counts_by_status(snaps: Sequence[SnapshotInfo]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for s in snaps:
        out[s.status] = out.get(s.status, 0) + 1
    return out
