"""Ingest one drop: validate, map, place without overwriting, record, hand over.

Runs in the delayed rule as the service account (a plain rodsuser), so every
step uses that account's own rights. Order matters and is the privilege
model (reference/prep-observed.md, round 5): every write first, then `own`
to the mapped user, and as the very last step the service account lowers
itself to `read`, after which it can no longer change the snapshot.

Re-running a drop is idempotent: the snapshot name is derived from the drop
alone, an existing snapshot carrying this drop's id is resumed, and any
other object at a computed path is left alone and the next name is used.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import AlreadyExists, IrodsError, NotFound
from policy.identity import resolve_identity
from policy.manifest import Manifest, ManifestError, parse_manifest
from policy.mapping import UserMapping
from policy.placement import PlacementError, candidate, is_safe_drop_id, snapshot_name, snapshot_root
from policy.zone import COLLECTION, DATA_OBJECT, Avu, Zone, basename_of, exists, owns

POLICY_VERSION = "1"
MANIFEST_NAME = "manifest.json"
MAX_NAME_ATTEMPTS = 50

log = logging.getLogger("omero_snapshots.ingest")


@dataclass(frozen=True)
class Outcome:
    """What happened to a drop: the status OMERO, the CLI and imeta all read."""

    drop_id: str
    status: str
    reason: Optional[str] = None
    snapshot: Optional[str] = None
    irods_user: Optional[str] = None
    location: Optional[str] = None  # where the drop's status AVUs are (landing, quarantine or snapshot)

    def to_dict(self) -> dict:
        return {"drop": self.drop_id, "status": self.status, "reason": self.reason, "snapshot": self.snapshot,
                "irods_user": self.irods_user, "location": self.location}


class Refused(Exception):
    """The drop's input is wrong: quarantine it with this reason."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule
        self.root: Optional[str] = None  # the snapshot root, when the refusal came after it was known


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- status
def set_status(zone: Zone, path: str, status: str, reason: Optional[str] = None,
               extra: Optional[dict] = None) -> None:
    """Replace status and reason in ONE atomic metadata call (readers never see a half update)."""
    wanted = {V.STATUS: status, V.UPDATED: utc_now(), V.REASON: reason or "-"}
    if extra:
        wanted.update(extra)
    ops = V.replace_ops(zone.metadata(path), wanted)
    if ops:
        zone.apply_metadata(path, ops)


def drop_status(zone: Zone, config: PolicyConfig, drop_id: str) -> Outcome:
    """Where a drop is now and what state it is in, from the AVUs alone."""
    return drop_status_at(zone, config.landing_collection, drop_id)


def drop_status_at(zone: Zone, landing_collection: str, drop_id: str) -> Outcome:
    """drop_status knowing only the landing collection (all the OMERO side knows)."""
    from policy.config import QUARANTINE_NAME

    landing = landing_collection + "/" + drop_id
    for path in (landing, landing_collection + "/" + QUARANTINE_NAME + "/" + drop_id):
        try:
            avus = zone.metadata(path)
        except NotFound:
            continue
        status = V.first(avus, V.STATUS)
        if status is None:
            return Outcome(drop_id, "received" if path == landing else V.QUARANTINED,
                           None if path == landing else "quarantined, status not yet recorded", location=path)
        reason = V.first(avus, V.REASON)
        snap = V.first(avus, V.SNAPSHOT_PATH)
        if snap:
            try:
                savus = zone.metadata(snap)
                sstatus = V.first(savus, V.STATUS) or status
                sreason = V.first(savus, V.REASON)
                user = V.first(savus, V.IRODS_USER) or V.first(avus, V.IRODS_USER)
                if sstatus == V.ACCEPTED and status != V.ACCEPTED:
                    # claimed by the verdict, nothing placed yet: the landing record is ahead (processing, or
                    # failed before placement: then there is no snapshot to show, the upload waits in landing)
                    return Outcome(drop_id, status, None if reason in (None, "-") else reason,
                                   None if status in V.FINAL else snap, user, location=path)
                return Outcome(drop_id, sstatus, None if sreason in (None, "-") else sreason, snap, user,
                               location=snap)
            except NotFound:
                pass
        return Outcome(drop_id, status, None if reason in (None, "-") else reason, snap,
                       V.first(avus, V.IRODS_USER), location=path)
    hits = zone.find_by_metadata(V.DROP_ID, drop_id, COLLECTION)
    for path in hits:
        avus = zone.metadata(path)
        reason = V.first(avus, V.REASON)
        return Outcome(drop_id, V.first(avus, V.STATUS) or "unknown", None if reason in (None, "-") else reason,
                       path if V.first(avus, V.IRODS_USER) else None, V.first(avus, V.IRODS_USER), location=path)
    return Outcome(drop_id, "unknown", "no drop, quarantined drop or snapshot carries this drop id")


# ---------------------------------------------------------------------- quarantine
def quarantine(zone: Zone, config: PolicyConfig, drop_id: str, reason: str, rule: str) -> Outcome:
    """Move the whole drop aside, intact, and say why. Never deletes anything.

    The status goes on first: AVUs travel with a rename, so a drop is never in quarantine without
    its reason, whatever fails or dies in between (a rerun quarantines it again).
    """
    src = config.landing_collection + "/" + drop_id
    set_status(zone, src, V.QUARANTINED, reason, {V.DROP_ID: drop_id, NS_RULE: rule})
    qroot = config.quarantine_collection
    zone.create_collection(qroot, recursive=True)
    if not owns(zone, qroot, zone.user):
        note = ("{} (the drop stays in {}: {} is not owned by the service account, so someone else can write into "
                "the landing collection; the admin must remove it and restrict the landing collection)"
                .format(reason, src, qroot))
        set_status(zone, src, V.QUARANTINED, note, {V.DROP_ID: drop_id, NS_RULE: rule})
        log.warning("drop %s refused but not moved: %s", drop_id, note)
        return Outcome(drop_id, V.QUARANTINED, note, None, location=src)
    dst = qroot + "/" + drop_id
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        dst = qroot + "/" + (drop_id if attempt == 1 else "{}-{}".format(drop_id, attempt))
        try:
            zone.rename(src, dst)
            break
        except AlreadyExists:
            continue
    else:
        raise IrodsError(-809000, "no free quarantine name for " + drop_id)
    log.warning("drop %s quarantined at %s: %s", drop_id, dst, reason)
    return Outcome(drop_id, V.QUARANTINED, reason, None, location=dst)


NS_RULE = V.NS + "refusal_rule"


# ---------------------------------------------------------------------- validation
def hex_of_irods_sha2(value: str) -> Optional[str]:
    import base64
    import binascii

    if not value.startswith("sha2:"):
        return None
    try:
        return base64.b64decode(value[5:], validate=True).hex()
    except (ValueError, binascii.Error):
        return None


def validate_drop(zone: Zone, config: PolicyConfig, drop_id: str, guard: Any = None,
                  checksum: bool = True) -> Manifest:
    """Everything that can be wrong with the input, checked before anything moves.

    checksum=False: all but the archive's checksum (the upload PEP's verdict, which must stay cheap).

    guard: the drop's lease; the archive's checksum is one microservice call as long as the archive is big,
    during which no heartbeat runs (round 12), so the lease covers it first."""
    drop = config.landing_collection + "/" + drop_id
    listing = zone.list_collection(drop)
    names = {basename_of(s.path): s for s in listing.data_objects}
    if MANIFEST_NAME not in names:
        raise Refused("the drop has no {}; OMERO writes it last, so the upload did not finish: "
                      "save again from OMERO".format(MANIFEST_NAME), "manifest_missing")
    if names[MANIFEST_NAME].size > config.limits.manifest_max_bytes:
        raise Refused("the manifest is {} bytes, over the limit of {}".format(
            names[MANIFEST_NAME].size, config.limits.manifest_max_bytes), "manifest_unreadable")
    # Any other failure to read it is the zone's, not the input's: it propagates and a rerun retries.
    raw = zone.read_small(drop + "/" + MANIFEST_NAME, config.limits.manifest_max_bytes)
    try:
        manifest = parse_manifest(raw, config.limits.manifest_max_bytes)
    except ManifestError as e:
        raise Refused("invalid manifest: {}".format(e), "manifest_invalid") from None
    if manifest.drop_id != drop_id:
        raise Refused("manifest.drop_id {!r} does not match the drop collection name {!r}"
                      .format(manifest.drop_id, drop_id), "drop_id_mismatch")
    archive = manifest.archive
    if archive.name not in names:
        raise Refused("manifest.archive.name {!r} is not in the drop: the archive is missing"
                      .format(archive.name), "archive_missing")
    extra = sorted(set(names) - {MANIFEST_NAME, archive.name})
    if listing.collections:
        extra += [basename_of(c) + "/" for c in listing.collections]
    if extra:
        raise Refused("the drop holds objects the manifest does not name: {}; a drop holds exactly the archive "
                      "and {}".format(", ".join(extra[:5]), MANIFEST_NAME), "unexpected_object")
    st = names[archive.name]
    if st.size != archive.size:
        raise Refused("archive size mismatch: manifest.archive.size says {} bytes, iRODS holds {} bytes; the "
                      "upload was incomplete or altered".format(archive.size, st.size), "size_mismatch")
    if archive.size > config.limits.archive_max_bytes:
        raise Refused("archive is {} bytes, over the limit of {}".format(archive.size,
                                                                          config.limits.archive_max_bytes),
                      "archive_too_large")
    if checksum:
        verify_checksum(zone, config, drop_id, manifest, guard)
    return manifest


def verify_checksum(zone: Zone, config: PolicyConfig, drop_id: str, manifest: Manifest, guard: Any = None) -> None:
    """The archive's sha256 as iRODS computes it must be the manifest's; one microservice call as long as the
    archive is big, during which no heartbeat runs (round 12): the lease covers it first."""
    archive = manifest.archive
    drop = config.landing_collection + "/" + drop_id
    with (guard.covering_bytes(archive.size) if guard is not None else contextlib.nullcontext()):
        got = hex_of_irods_sha2(zone.checksum(drop + "/" + archive.name))
    if got != archive.sha256:
        raise Refused("archive checksum mismatch: manifest.archive.sha256 is {}, iRODS computed {}; the upload "
                      "was corrupted or altered".format(archive.sha256, got), "checksum_mismatch")


def foreign_objects(zone: Zone, config: PolicyConfig, drop_id: str) -> List[str]:
    """Objects in the drop not owned by the service account: somebody else wrote into the landing zone."""
    drop = config.landing_collection + "/" + drop_id
    bad = [] if owns(zone, drop, config.service_account) else [drop]
    for obj in zone.list_collection(drop).data_objects:
        if obj.owner != config.service_account:
            bad.append(obj.path)
    return bad


# ---------------------------------------------------------------------- placement
def snapshot_avus(manifest: Manifest, irods_user: str, snapshot: str) -> List[Avu]:
    who = manifest.who
    avus = [
        Avu(V.DROP_ID, manifest.drop_id), Avu(V.IRODS_USER, irods_user), Avu(V.OMERO_USER, who.omero_user),
        Avu(V.OMERO_USER_ID, str(who.omero_user_id)), Avu(V.OMERO_GROUP, who.omero_group),
        Avu(V.OMERO_SERVER, who.omero_server), Avu(V.CREATED, manifest.created),
        Avu(V.ARCHIVE_NAME, manifest.archive.name), Avu(V.ARCHIVE_SHA256, manifest.archive.sha256),
        Avu(V.ARCHIVE_SIZE, str(manifest.archive.size)), Avu(V.ARCHIVE_FORMAT, manifest.archive.format),
        Avu(V.PACKER, "{} {}".format(manifest.archive.packer_name, manifest.archive.packer_version)),
        Avu(V.POLICY_VERSION, POLICY_VERSION), Avu(V.SNAPSHOT_PATH, snapshot),
    ]
    if who.omero_group_id is not None:
        avus.append(Avu(V.OMERO_GROUP_ID, str(who.omero_group_id)))
    if manifest.label:
        avus.append(Avu(V.LABEL, manifest.label))
    n = 0
    for ref in manifest.objects:
        for oid in ref.ids:
            if n >= V.MAX_OBJECT_AVUS:
                break
            avus.append(Avu(V.OBJECT, "{}:{}".format(ref.type, oid)))
            n += 1
    return avus


INCOMING = ".incoming-"


def _claim_snapshot(zone: Zone, config: PolicyConfig, manifest: Manifest, root: str,
                    status: str = V.PROCESSING) -> str:
    """Create (or find again) this drop's snapshot collection; never reuse another drop's.

    The collection is made under a staging name only this drop uses (`.incoming-<drop_id>`; drop
    ids are unique names in the landing collection), marked with the drop id, and only then renamed
    to its final name. A rename is atomic and never overwrites, so no collection ever carries a
    final name without its owner's drop id, and drops racing for one name each get their own.
    """
    drop_id = manifest.drop_id
    staging = None
    for path in zone.find_by_metadata(V.DROP_ID, drop_id, COLLECTION):
        if path.startswith(root + "/") and path.count("/") == root.count("/") + 1:
            if not path[len(root) + 1:].startswith(INCOMING):
                return path  # an earlier run finished the claim
            staging = path
    if staging is None:
        staging = _make_staging(zone, root, drop_id, status)
    name = snapshot_name(config.naming_template, manifest.created, manifest.who.omero_user,
                         manifest.label or "", drop_id, config.limits.label_max_chars)
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        path = candidate(root, name, attempt)
        try:
            zone.rename(staging, path)
            return path
        except AlreadyExists:
            continue
        except NotFound:
            # a concurrent run of the same drop renamed it first: find where it went
            for found in zone.find_by_metadata(V.DROP_ID, drop_id, COLLECTION):
                if found.startswith(root + "/") and not found[len(root) + 1:].startswith(INCOMING):
                    return found
            raise
    raise IrodsError(-809000, "no free snapshot name after {} attempts under {}".format(MAX_NAME_ATTEMPTS, root))


def _make_staging(zone: Zone, root: str, drop_id: str, status: str = V.PROCESSING) -> str:
    for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
        staging = root + "/" + INCOMING + drop_id + ("" if attempt == 1 else "-{}".format(attempt))
        try:
            zone.create_collection(staging, recursive=False)
        except AlreadyExists:
            if not owns(zone, staging, zone.user):
                continue  # somebody else's collection that merely looks like ours: leave it alone
        zone.apply_metadata(staging, V.add_missing_ops(zone.metadata(staging), [
            Avu(V.DROP_ID, drop_id), Avu(V.STATUS, status)]))
        return staging
    raise IrodsError(-809000, "no free staging name for drop {} under {}".format(drop_id, root))


def _move_in(zone: Zone, drop: str, snapshot: str, name: str) -> None:
    """Rename one drop object into the snapshot; a rerun after a completed move is a no-op."""
    src, dst = drop + "/" + name, snapshot + "/" + name
    try:
        zone.rename(src, dst)
    except NotFound:
        try:
            if zone.stat(dst).kind == DATA_OBJECT:
                return  # moved by an earlier run
        except NotFound:
            pass
        raise


# ---------------------------------------------------------------------- the decision (the PEP's verdict)
def _decide(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str, guard: Any = None,
            checksum: bool = True) -> Tuple[Manifest, str, str]:
    """(manifest, iRODS user, snapshot root) of an acceptable drop; raises Refused with what is wrong (and, for
    the checksum, checked last, the root: where a claim of this drop may have to be given back)."""
    manifest = validate_drop(zone, config, drop_id, guard, checksum=False)
    decision = resolve_identity(mapping, manifest.who.omero_server, manifest.who.omero_user,
                                config.service_account, zone.user_type)
    if not decision.ok:
        raise Refused(decision.refusal or "refused", decision.rule or "identity")
    assert decision.irods_user is not None
    irods_user = decision.irods_user
    try:
        root = snapshot_root(config.snapshot_root_template, config.zone, irods_user)
    except PlacementError as e:
        raise Refused("cannot place the snapshot: {}".format(e), "placement") from None
    answer = _collection_answer(zone, root)
    if answer is not None:
        # the reason names iRODS' own answer too: a catalog that said "not found" for a root that is there (a
        # fault) must be told from a user who was never enrolled
        raise Refused("iRODS user '{}' has no snapshot root {} (not enrolled; iRODS answered {}); ask the admin to "
                      "run: omero-snapshots enrol {} --omero-user {} --omero-server {}".format(
                          irods_user, root, answer, irods_user, manifest.who.omero_user,
                          manifest.who.omero_server), "not_enrolled")
    if checksum:
        try:
            verify_checksum(zone, config, drop_id, manifest, guard)
        except Refused as r:
            r.root = root
            raise
    return manifest, irods_user, root


def _collection_answer(zone: Zone, path: str) -> Optional[str]:
    """None if path is a collection, else what iRODS answered (e.g. "USER_FILE_DOES_NOT_EXIST (-310000)").
    A "no" moves the drop into quarantine, so it is believed only when a second look says the same: one catalog
    answer of the moment must not refuse a researcher's drop."""
    answer = ""
    for _ in range(2):
        try:
            if zone.stat(path).kind == COLLECTION:
                return None
            e: IrodsError = NotFound(-310000, path)  # a data object of that name: not a root either
        except NotFound as found:
            e = found
        answer = "{} ({})".format(e.name, e.code)
    return answer


def _record(manifest: Manifest, irods_user: str, snapshot: str, drop_id: str) -> dict:
    """What the landing record keeps once the snapshot is claimed. It, which only the service account can write,
    also names the OMERO user: a snapshot's owner can edit the snapshot's AVUs, so OMERO checks ownership
    against this."""
    return {V.SNAPSHOT_PATH: snapshot, V.IRODS_USER: irods_user, V.DROP_ID: drop_id,
            V.OMERO_USER: manifest.who.omero_user, V.OMERO_SERVER: manifest.who.omero_server,
            V.ARCHIVE_NAME: manifest.archive.name, V.ARCHIVE_SIZE: str(manifest.archive.size),
            V.ARCHIVE_SHA256: manifest.archive.sha256}


def verdict(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str) -> Outcome:
    """The upload PEP's verdict on a whole manifest (issue 20): every check but the archive's checksum. A
    refusal quarantines the drop now (catalog calls only); an acceptable drop gets its snapshot claimed (its
    final name and place) and the status `accepted`, so that OMERO's Save can say where the snapshot will be
    within seconds. The delayed rule then verifies the checksum and moves, unpacks and hands over.

    Anything it cannot decide is left to the delayed rule as before (the caller schedules it)."""
    drop = config.landing_collection + "/" + drop_id
    if foreign_objects(zone, config, drop_id):
        return Outcome(drop_id, V.QUEUED, "left to the delayed rule (objects not written by the service account)",
                       location=drop)
    try:
        manifest, irods_user, root = _decide(zone, config, mapping, drop_id, checksum=False)
    except Refused as r:
        return quarantine(zone, config, drop_id, r.reason, r.rule)
    snapshot = _claim_snapshot(zone, config, manifest, root, V.ACCEPTED)
    set_status(zone, drop, V.ACCEPTED, None, _record(manifest, irods_user, snapshot, drop_id))
    return Outcome(drop_id, V.ACCEPTED, None, snapshot, irods_user, location=snapshot)


def _claimed_only(zone: Zone, snapshot: str) -> bool:
    """The verdict claimed this snapshot and no run verified the drop since (or the claim is gone)."""
    try:
        return V.first(zone.metadata(snapshot), V.STATUS) == V.ACCEPTED
    except NotFound:
        return True


def _unclaim_one(zone: Zone, drop_id: str, path: str) -> None:
    """Remove one claimed snapshot collection of this drop if it is still empty and ours."""
    if exists(zone, path) and owns(zone, path, zone.user) and V.first(zone.metadata(path), V.DROP_ID) == drop_id:
        listing = zone.list_collection(path)
        if not listing.collections and not listing.data_objects:
            zone.remove_collection(path)


def _unclaim(zone: Zone, config: PolicyConfig, drop_id: str, recorded: Optional[str], root: Optional[str]) -> None:
    """Give back the snapshot places claimed for a drop refused after the claim (its checksum, or a mapping
    that changed): every collection of this drop under a snapshot root that is still EMPTY and the service
    account's (the verdict's claim, a staging collection a fault left, marked or not yet), then the landing
    record forgets it. Nothing with content is ever removed; an error propagates (the retry gives it back)."""
    from policy.zone import MetaOp

    landing = config.landing_collection
    candidates = {p for p in zone.find_by_metadata(V.DROP_ID, drop_id, COLLECTION)
                  if not (p == landing or p.startswith(landing + "/"))}
    if recorded:
        candidates.add(recorded)
    if root:
        candidates.add(root + "/" + INCOMING + drop_id)
    for path in sorted(candidates):
        if not exists(zone, path) or not owns(zone, path, zone.user):
            continue
        if V.first(zone.metadata(path), V.DROP_ID) not in (None, drop_id):
            continue  # another drop's
        listing = zone.list_collection(path)
        if not listing.collections and not listing.data_objects:
            zone.remove_collection(path)
    drop = landing + "/" + drop_id
    ops = [MetaOp("remove", a.attribute, a.value, a.units) for a in zone.metadata(drop)
           if a.attribute in (V.SNAPSHOT_PATH, V.IRODS_USER)]
    if ops:
        zone.apply_metadata(drop, ops)


# ---------------------------------------------------------------------- the use case
ProcessHook = Callable[[Zone, PolicyConfig, Manifest, str, Any], Tuple[str, Optional[str]]]


def ingest_drop(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str,
                process_hook: Optional[ProcessHook] = None, guard: Any = None) -> Outcome:
    """The delayed rule's work for one drop. Returns the outcome; raises only for zone failures.

    process_hook: the step that runs after `placed` and before the hand-over
    (unpacking, policy.unpack). It returns (status, reason). None = stop at `placed`.
    guard: the drop's lock (policy.drop_lock.DropLock): checked before each writing step, so a run
    whose lock was taken over stops instead of racing the new holder.
    """
    if guard is None:
        from policy.drop_lock import NoLock

        guard = NoLock()
    if not is_safe_drop_id(drop_id):
        return Outcome(drop_id, "refused", "not a valid drop id: {!r}".format(drop_id[:80]))
    if zone.user != config.service_account:
        return Outcome(drop_id, "refused", "drops are processed only as the service account '{}', not as '{}'"
                       .format(config.service_account, zone.user))
    drop = config.landing_collection + "/" + drop_id
    try:
        zone.stat(drop)
    except NotFound:
        return drop_status(zone, config, drop_id)  # already moved on: report where it is
    current = zone.metadata(drop)
    status = V.first(current, V.STATUS)
    snap_recorded = V.first(current, V.SNAPSHOT_PATH)
    if status in V.FINAL_GOOD and snap_recorded:
        return drop_status(zone, config, drop_id)

    foreign = foreign_objects(zone, config, drop_id)
    if foreign:
        log.warning("drop %s holds objects not written by %s (%s): left untouched", drop_id,
                    config.service_account, ", ".join(foreign[:5]))
        return Outcome(drop_id, "refused", "not processed: {} was not written by the service account '{}'"
                       .format(foreign[0], config.service_account), location=drop)

    # Resume: an earlier run may already have moved the archive into a snapshot. A snapshot only claimed by the
    # upload PEP's verdict (its own status still `accepted`) still needs the checksum, and the decision again
    # (the mapping may have changed since).
    if snap_recorded is None or _claimed_only(zone, snap_recorded):
        set_status(zone, drop, V.PROCESSING)
        try:
            manifest, irods_user, root = _decide(zone, config, mapping, drop_id, guard)
        except Refused as r:
            _unclaim(zone, config, drop_id, snap_recorded, r.root)
            return quarantine(zone, config, drop_id, r.reason, r.rule)
        snapshot = _claim_snapshot(zone, config, manifest, root)  # finds the verdict's claim again, if any
        if snap_recorded is not None and snap_recorded != snapshot:
            _unclaim_one(zone, drop_id, snap_recorded)  # claimed under another root (the mapping changed)
        if snap_recorded == snapshot:
            set_status(zone, snapshot, V.PROCESSING)  # was `accepted`
        set_status(zone, drop, V.PROCESSING, None, _record(manifest, irods_user, snapshot, drop_id))
    else:
        snapshot = snap_recorded
        irods_user = V.first(current, V.IRODS_USER) or ""
        manifest_path = snapshot + "/" + MANIFEST_NAME
        if exists(zone, drop + "/" + MANIFEST_NAME):
            manifest_path = drop + "/" + MANIFEST_NAME
        manifest = parse_manifest(zone.read_small(manifest_path, config.limits.manifest_max_bytes),
                                  config.limits.manifest_max_bytes)

    if not owns(zone, snapshot, zone.user):
        # The hand-over already happened in an earlier run: only the landing record is left to write.
        final = V.first(zone.metadata(snapshot), V.STATUS) or V.PLACED_STATE
        set_status(zone, drop, final, None, {V.SNAPSHOT_PATH: snapshot, V.IRODS_USER: irods_user})
        return drop_status(zone, config, drop_id)

    guard.check()
    _move_in(zone, drop, snapshot, manifest.archive.name)
    _move_in(zone, drop, snapshot, MANIFEST_NAME)
    zone.apply_metadata(snapshot, V.add_missing_ops(zone.metadata(snapshot),
                                                    snapshot_avus(manifest, irods_user, snapshot)))
    set_status(zone, snapshot, V.PLACED_STATE, None, {V.PLACED: utc_now()})
    final_status, final_reason = V.PLACED_STATE, None
    if process_hook is not None:
        final_status, final_reason = process_hook(zone, config, manifest, snapshot, guard)
    if final_status in V.FINAL_GOOD:
        # The self-description (policy/describe.py) must be written while the service account may still write.
        from policy.describe import write_description

        guard.check()
        write_description(zone, snapshot, manifest_max_bytes=config.limits.manifest_max_bytes, own_unfinished=True)
    # Hand-over, strictly last: own to the user, then the service account drops to read.
    guard.check()
    with guard.covering_objects(getattr(guard, "objects_hint", 0) + 2):  # two recursive microservice calls
        zone.set_acl(snapshot, irods_user, "own", recursive=True)
        zone.set_acl(snapshot, zone.user, "read", recursive=True)
    set_status(zone, drop, final_status, final_reason, {V.SNAPSHOT_PATH: snapshot, V.IRODS_USER: irods_user})
    log.info("drop %s -> %s (%s) for %s", drop_id, snapshot, final_status, irods_user)
    return Outcome(drop_id, final_status, final_reason, snapshot, irods_user, location=snapshot)
