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
    path_avu: str = ""
    # from the landing record (policy/fixity.py): the service account cannot write on the snapshot
    fixity: str = "unverified"
    fixity_verified: str = ""
    fixity_detail: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("path_avu", None)
        return d


def snapshot_info(zone: Zone, path: str, landing: Optional[str] = None) -> SnapshotInfo:
    """A snapshot's AVUs; with `landing` (the landing collection), its fixity from its landing record."""
    avus = V.as_dict(zone.metadata(path))

    def one(attr: str, default: str = "") -> str:
        vals = avus.get(attr)
        return vals[0] if vals else default

    reason = one(V.REASON) or None
    fix: Dict[str, str] = {}
    if landing is not None and one(V.DROP_ID) and "/" not in one(V.DROP_ID):
        from policy.fixity import fixity_of

        try:
            record = zone.metadata(landing + "/" + one(V.DROP_ID))
        except NotFound:
            record = []
        if V.first(record, V.SNAPSHOT_PATH) == path:
            fix = fixity_of(record)
    return SnapshotInfo(**fix,path=path, drop_id=one(V.DROP_ID), status=one(V.STATUS, "unknown"),
                        reason=None if reason == "-" else reason, irods_user=one(V.IRODS_USER),
                        omero_user=one(V.OMERO_USER), omero_server=one(V.OMERO_SERVER), label=one(V.LABEL) or None,
                        created=one(V.CREATED), archive_size=int(one(V.ARCHIVE_SIZE, "0") or 0),
                        objects=sorted(avus.get(V.OBJECT, [])), path_avu=one(V.SNAPSHOT_PATH))


def list_snapshots(zone: Zone, irods_user: str, root: Optional[str] = None,
                   landing: Optional[str] = None) -> List[SnapshotInfo]:
    """A user's snapshots, newest first (by the time OMERO made them).

    Landing records carry the user too, but only a snapshot's own path AVU points at itself. Anyone
    may tag a collection of their own with these AVUs: given the user's snapshot root, only its
    direct children count (the policy puts snapshots nowhere else).
    """
    out = []
    for path in zone.find_by_metadata(V.IRODS_USER, irods_user, COLLECTION):
        if root is not None and (not path.startswith(root + "/") or "/" in path[len(root) + 1:]):
            continue
        info = snapshot_info(zone, path, landing)
        if info.path_avu == path:
            out.append(info)
    return sorted(out, key=lambda s: (s.created, s.path), reverse=True)


def status_of(zone: Zone, config: PolicyConfig, ident: str) -> Dict[str, Any]:
    """Status of a drop id or of a snapshot path."""
    if ident.startswith("/"):
        try:
            return snapshot_info(zone, ident, config.landing_collection).to_dict()
        except NotFound:
            return {"path": ident, "status": "unknown", "reason": "no such collection"}
    if not is_safe_drop_id(ident):
        return {"drop": ident, "status": "unknown", "reason": "not a valid drop id or absolute path"}
    out = drop_status(zone, config, ident).to_dict()
    if out.get("snapshot"):
        from policy.fixity import fixity_of

        try:
            out.update(fixity_of(zone.metadata(config.landing_collection + "/" + ident)))
        except NotFound:
            pass
    return out
