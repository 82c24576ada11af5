"""Read-only views for users and admins: a user's snapshots, the status of a drop or snapshot.

Everything is read back from the `omero.snapshot.*` AVUs, the same truth
OMERO's List script and plain `imeta` see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import NotFound
from policy.ingest import drop_status
from policy.placement import is_safe_drop_id
from policy.zone import COLLECTION, Zone


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    drop_id: str
    status: str
    reason: Optional[str]
    irods_user: str
    omero_user: str
    omero_server: str
    label: Optional[str]
    created: str
    archive_size: int
    objects: List[str]

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def snapshot_info(zone: Zone, path: str) -> SnapshotInfo:
    avus = V.as_dict(zone.metadata(path))

    def one(attr: str, default: str = "") -> str:
        vals = avus.get(attr)
        return vals[0] if vals else default

    reason = one(V.REASON) or None
    return SnapshotInfo(path=path, drop_id=one(V.DROP_ID), status=one(V.STATUS, "unknown"),
                        reason=None if reason == "-" else reason, irods_user=one(V.IRODS_USER),
                        omero_user=one(V.OMERO_USER), omero_server=one(V.OMERO_SERVER), label=one(V.LABEL) or None,
                        created=one(V.CREATED), archive_size=int(one(V.ARCHIVE_SIZE, "0") or 0),
                        objects=sorted(avus.get(V.OBJECT, [])))


def list_snapshots(zone: Zone, irods_user: str) -> List[SnapshotInfo]:
    """A user's snapshots, newest first (by the time OMERO made them).

    Landing records carry the user too, but only a snapshot's own path AVU points at itself.
    """
    out = []
    for path in zone.find_by_metadata(V.IRODS_USER, irods_user, COLLECTION):
        avus = zone.metadata(path)
        if V.first(avus, V.SNAPSHOT_PATH) == path:
            out.append(snapshot_info(zone, path))
    return sorted(out, key=lambda s: (s.created, s.path), reverse=True)


def status_of(zone: Zone, config: PolicyConfig, ident: str) -> Dict[str, Any]:
    """Status of a drop id or of a snapshot path."""
    if ident.startswith("/"):
        try:
            return snapshot_info(zone, ident).to_dict()
        except NotFound:
            return {"path": ident, "status": "unknown", "reason": "no such collection"}
    if not is_safe_drop_id(ident):
        return {"drop": ident, "status": "unknown", "reason": "not a valid drop id or absolute path"}
    return drop_status(zone, config, ident).to_dict()
