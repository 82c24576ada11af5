"""The one AVU vocabulary (namespace `omero.snapshot.`) every reader and writer shares.

OMERO's List script, the CLI and plain `imeta ls` / `iquest` read the same
attributes, so they are defined once, here, and documented in docs/metadata.md.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from policy.zone import Avu, MetaOp

NS = "omero.snapshot."

STATUS = NS + "status"
REASON = NS + "reason"
UPDATED = NS + "updated"
DROP_ID = NS + "drop_id"
SNAPSHOT_PATH = NS + "path"
IRODS_USER = NS + "irods_user"
OMERO_USER = NS + "omero_user"
OMERO_USER_ID = NS + "omero_user_id"
OMERO_GROUP = NS + "omero_group"
OMERO_GROUP_ID = NS + "omero_group_id"
OMERO_SERVER = NS + "omero_server"
OBJECT = NS + "object"  # one per object, value "Image:51"
LABEL = NS + "label"
CREATED = NS + "created"  # when OMERO made the drop (manifest), UTC ISO 8601
PLACED = NS + "placed"  # when the policy placed it
ARCHIVE_NAME = NS + "archive.name"
ARCHIVE_SHA256 = NS + "archive.sha256"
ARCHIVE_SIZE = NS + "archive.size"
ARCHIVE_FORMAT = NS + "archive.format"
PACKER = NS + "packer"
POLICY_VERSION = NS + "policy_version"
# written by the unpack step
MEMBER_COUNT = NS + "member_count"
MEMBER_BYTES = NS + "member_bytes"
CONTENT = NS + "content"  # path of the unpacked content collection
# written by the delayed rule's retry logic (policy/retry.py), on the landing record
ATTEMPTS = NS + "attempts"  # runs of the current chain that took the drop's lock and started work
# written by the fixity audit (policy/fixity.py), on the landing record (the service account cannot write
# on a handed-over snapshot; the landing record is what OMERO already trusts for provenance)
FIXITY = NS + "fixity"  # ok | mismatch | missing | unrecorded | error (absent: never verified)
FIXITY_VERIFIED = NS + "fixity.verified"  # when the last full pass ended, UTC ISO 8601
FIXITY_DETAIL = NS + "fixity.detail"  # the first findings, "-" when none
FIXITY_RESUME = NS + "fixity.resume"  # only mid-pass: the last object verified
FIXITY_PASS = NS + "fixity.pass"  # only mid-pass: the worst outcome of the pass so far

# Drop and snapshot states, in order of progress.
QUEUED = "queued"
ACCEPTED = "accepted"  # the upload PEP's verdict: valid, mapped, enrolled, snapshot place claimed (issue 20)
PROCESSING = "processing"
PLACED_STATE = "placed"
UNPACKING = "unpacking"
COMPLETE = "complete"
FAILED = "failed"
QUARANTINED = "quarantined"
STATES = (QUEUED, ACCEPTED, PROCESSING, PLACED_STATE, UNPACKING, COMPLETE, FAILED, QUARANTINED)
FINAL_GOOD = (PLACED_STATE, COMPLETE)
FINAL = (PLACED_STATE, COMPLETE, FAILED, QUARANTINED)  # nothing runs for the drop any more

MAX_OBJECT_AVUS = 1000
MAX_VALUE_CHARS = 2700  # iRODS keeps AVU values up to 2700 bytes


def clip(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """AVU values have a size limit; a reason must still fit (and never be empty)."""
    if limit < 4:
        raise ValueError("clip limit must be at least 4 bytes, not {}".format(limit))
    value = value if value else "-"
    data = value.encode("utf-8")
    if len(data) <= limit:
        return value
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def first(avus: Sequence[Avu], attribute: str) -> Optional[str]:
    for a in avus:
        if a.attribute == attribute:
            return a.value
    return None


def as_dict(avus: Sequence[Avu]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for a in avus:
        out.setdefault(a.attribute, []).append(a.value)
    return out


def replace_ops(current: Sequence[Avu], wanted: Dict[str, str]) -> List[MetaOp]:
    """Operations that make each wanted attribute single-valued with the wanted value (one atomic batch)."""
    ops: List[MetaOp] = []
    for attr, value in wanted.items():
        value = clip(value)
        have = [a for a in current if a.attribute == attr]
        if len(have) == 1 and have[0].value == value:
            continue
        ops.extend(MetaOp("remove", a.attribute, a.value, a.units) for a in have)
        ops.append(MetaOp("add", attr, value, ""))
    return ops


def add_missing_ops(current: Sequence[Avu], wanted: Sequence[Avu]) -> List[MetaOp]:
    """Add-only operations for AVUs not yet present (lets a retry finish a half-written set)."""
    have = {(a.attribute, a.value) for a in current}
    ops = []
    for a in wanted:
        if (a.attribute, clip(a.value)) not in have:
            ops.append(MetaOp("add", a.attribute, clip(a.value), a.units))
            have.add((a.attribute, clip(a.value)))
    return ops
