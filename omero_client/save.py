"""Save: pack OMERO objects, drop them into the landing collection, wait for the server's verdict.

The OMERO side stays dumb on purpose: it never decides where data goes in
iRODS. It writes two things into ``<landing>/<drop_id>/`` as the service
account, the archive first and the manifest LAST (the manifest is the commit
marker the server's PEP waits for), then reads the status the server's policy
writes back and explains it to the researcher.

Local disk depends on the packer (the facility's ``save_mode``, docs/omero.md):

- ``stream`` (the default; omero_client.stream_pack): transfer.xml only. The
  original files are read from OMERO straight into the tar that goes to
  iRODS; the memory buffer is bounded (omero_client.upload.CHUNK);
- ``folder`` (the fallback): the packet folder ``omero transfer pack
  --binaries all`` writes, about 1x the data, tarred on the fly.

Either way no tar file exists locally, and the scratch folder is removed as
soon as the upload is done, whatever happened.

While the archive streams, the drop's landing record carries the status
``uploading`` (with a reason saying what a leftover means); it is removed just
before the manifest is written, because the server's PEP schedules only a drop
whose record has no status yet. So an upload cut off midway (the zone went
down, the connection broke) is removed, or, when even the removal fails, left
marked ``uploading``: never processed, and plainly a leftover to the facility.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from omero_client.pack import ObjectList, object_spec
from omero_client.progress import ProgressCallback, human_bytes, terminal_progress
from omero_client.snapshots import IN_PROGRESS, DropStatus, drop_status
from omero_client.upload import stream_folder_as_tar, stream_packet_as_tar
from policy import vocabulary as V
from policy.errors import IrodsError, NotFound
from policy.manifest import MANIFEST_NAME, Who, build_manifest, manifest_to_json, new_drop_id
from policy.zone import MetaOp, Zone

log = logging.getLogger("omero_snapshots.omero_client")

ARCHIVE_NAME = "transfer.tar"
PACKET_DIR = "packet"  # no extension: omero-cli-transfer then leaves a folder, not an archive
UPLOADING = "uploading"  # the landing record's status while OMERO streams the archive (never seen by the server)


@dataclass
class Poll:
    """How long and how to wait for the server's verdict; clock, sleep and hook are injectable for tests.

    ``hook`` runs before each status read (tests run the simulated delay
    server there). Waiting stops at the first status that is not in progress.
    """

    timeout: float = 180.0
    interval: float = 3.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    hook: Optional[Callable[[], None]] = None


@dataclass
class SaveResult:
    drop_id: str
    status: str
    reason: Optional[str]
    snapshot: Optional[str]
    irods_user: Optional[str]
    location: Optional[str]
    refusal_rule: Optional[str]
    archive_size: int
    archive_sha256: str
    scratch_peak_bytes: int  # bytes of the local packet folder (transfer.xml alone when streaming)
    message: str
    save_mode: str = "folder"  # "stream": binaries read from OMERO into the tar; "folder": a local packet
    polls: int = 0
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (V.PLACED_STATE, V.COMPLETE)


class SaveError(Exception):
    """The save did not reach the server; the message says what happened, for the researcher."""


def folder_bytes(folder: str) -> int:
    """Bytes of the regular files under ``folder`` (what the packet occupies on disk, give or take blocks)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def group_objects(objects: Sequence[Tuple[str, int]]) -> List[Tuple[str, List[int]]]:
    """[("Image", 1), ("Image", 2)] -> [("Image", [1, 2])] for the manifest's what.objects."""
    grouped: Dict[str, List[int]] = {}
    for otype, oid in objects:
        ids = grouped.setdefault(otype, [])
        if oid not in ids:
            ids.append(oid)
    return list(grouped.items())


def _manifest(drop_id: str, who: Who, objects: ObjectList, label: Optional[str], size: int, sha256: str,
              packer: Any) -> Dict[str, object]:
    return build_manifest(
        drop_id=drop_id, omero_user=who.omero_user, omero_user_id=who.omero_user_id, omero_group=who.omero_group,
        omero_group_id=who.omero_group_id, email=who.email, omero_server=who.omero_server,
        objects=group_objects(objects), archive_name=ARCHIVE_NAME, archive_size=size, archive_sha256=sha256,
        archive_format="tar", packer_name=packer.name, packer_version=packer.version, label=label or None)


def save(zone: Zone, landing: str, who: Who, objects: ObjectList, packer: Any, label: Optional[str] = None,
         workdir: Optional[str] = None, progress: Optional[ProgressCallback] = None, poll: Optional[Poll] = None,
         drop_id: Optional[str] = None, zone_label: Optional[str] = None) -> SaveResult:
    """Save ``objects`` as one snapshot; return the outcome with a message for the researcher.

    ``packer`` is a folder Packer (``pack(objects, folder)``) or a streaming one
    (``prepare(objects, folder)`` writes transfer.xml and returns the members
    to read from OMERO, omero_client.stream_pack).

    Raises SaveError (or ValueError for a bad selection/label) when nothing
    reached the server; any verdict of the server, refusals included, is a
    SaveResult. ``zone_label`` (several zones, omero_client.zones) puts the
    zone's name into every message, so a researcher knows which zone to ask about.
    """
    where = _where(zone_label)
    poll = poll or Poll()
    drop_id = drop_id or new_drop_id()
    object_spec(objects)  # one type, valid ids: fail before packing, which is the expensive part
    # The same checks the server makes, before any work: a bad label or identity fails here, not in quarantine.
    _manifest(drop_id, who, objects, label, 0, "0" * 64, packer)
    timings: Dict[str, float] = {}
    bar = terminal_progress("upload") if progress is None else None  # library use from a terminal
    progress = progress or bar
    scratch = tempfile.mkdtemp(prefix="omero-snapshot-", dir=workdir)
    drop = landing + "/" + drop_id
    try:
        folder = os.path.join(scratch, PACKET_DIR)
        t0 = time.monotonic()
        members: Optional[Sequence[Any]] = None
        if hasattr(packer, "prepare"):
            members = packer.prepare(objects, folder)
        else:
            packer.pack(objects, folder)
        timings["pack"] = time.monotonic() - t0
        if not os.path.isdir(folder):
            raise SaveError("packing produced no packet folder; nothing was sent to {}".format(where))
        peak = folder_bytes(folder)
        t0 = time.monotonic()
        size, sha256 = _upload(zone, drop, folder, progress, where, members)
        manifest = _manifest(drop_id, who, objects, label, size, sha256, packer)
        _write_manifest(zone, drop, manifest_to_json(manifest), where)
        timings["upload"] = time.monotonic() - t0
    finally:
        if bar is not None:
            bar.finish()
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("drop %s uploaded (%s), waiting for the server", drop_id, human_bytes(size))
    t0 = time.monotonic()
    try:
        status, polls = wait_for_verdict(zone, landing, drop_id, poll)
    except Exception as e:
        if not _zone_failure(e):
            raise
        # Uploaded and committed: the server has it, only reading its verdict failed.
        status, polls = DropStatus(drop_id, "unknown", "its status could not be read ({})".format(_name(e)), None,
                                   None, landing + "/" + drop_id), 0
    timings["wait"] = time.monotonic() - t0
    return SaveResult(drop_id=drop_id, status=status.status, reason=status.reason, snapshot=status.snapshot,
                      irods_user=status.irods_user, location=status.location, refusal_rule=status.refusal_rule,
                      archive_size=size, archive_sha256=sha256, scratch_peak_bytes=peak,
                      message=save_message(status, who, size, landing, zone_label), polls=polls, timings=timings,
                      save_mode="folder" if members is None else "stream")


def _where(zone_label: Optional[str]) -> str:
    return "iRODS" if zone_label is None else "iRODS zone '{}'".format(zone_label)


def _zone_failure(e: BaseException) -> bool:
    """An iRODS error, typed (IrodsError) or raw from python-irodsclient (connection, authentication)."""
    return isinstance(e, IrodsError) or type(e).__module__.split(".")[0] == "irods"


def _name(e: BaseException) -> str:
    return e.name if isinstance(e, IrodsError) else type(e).__name__


def uploading_reason() -> str:
    """What a landing record marked ``uploading`` means, for whoever finds it (imeta, the CLI's status)."""
    return ("OMERO started uploading this drop at {}; there is no manifest.json yet. If this status stays, the upload "
            "was interrupted: nothing here will be processed, and the iRODS facility may remove the drop".format(
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))


def _upload(zone: Zone, drop: str, folder: str, progress: Optional[ProgressCallback],
            where: str = "iRODS", members: Optional[Sequence[Any]] = None) -> Tuple[int, str]:
    """Create the drop, mark it ``uploading``, stream the archive, unmark; on failure remove what we wrote."""
    try:
        zone.create_collection(drop)
    except IrodsError as e:
        raise SaveError("could not create the drop {} in {} ({}); ask the facility whether the OMERO "
                        "service account can write to its landing collection".format(drop, where, e.name)) from None
    target = drop + "/" + ARCHIVE_NAME
    reason = uploading_reason()
    marked = False
    try:
        zone.apply_metadata(drop, [MetaOp("add", V.STATUS, UPLOADING), MetaOp("add", V.REASON, reason)])
        marked = True
        writer = zone.open_new(target)
        try:
            if members is None:
                result = stream_folder_as_tar(folder, writer, progress)
            else:
                result = stream_packet_as_tar(folder, members, writer, progress)
        finally:
            writer.close()
        # The server's PEP schedules a drop only while its landing record has no status: unmark before the manifest.
        zone.apply_metadata(drop, [MetaOp("remove", V.STATUS, UPLOADING), MetaOp("remove", V.REASON, reason)])
        return result
    except BaseException as e:
        left = _cleanup(zone, drop, [target])
        if _zone_failure(e):
            raise SaveError(_failed_upload_message(where, _name(e), drop, left, marked)) from None
        raise


def _failed_upload_message(where: str, error: str, drop: str, left: List[str], marked: bool) -> str:
    head = "the upload to {} failed ({}); nothing was saved".format(where, error)
    if not left:
        return head + " and the partial upload was removed: try again"
    drop_id = drop.rsplit("/", 1)[-1]
    state = "it is marked '{}' and ".format(UPLOADING) if marked else "it "
    return ("{}. The partial drop {} could not be removed: {}has no manifest, so the server will never process it; "
            "the facility may remove it (quote drop {}). Try again later".format(head, drop, state, drop_id))


def _write_manifest(zone: Zone, drop: str, data: bytes, where: str = "iRODS") -> None:
    """Write the manifest LAST; if that fails, leave no archive behind that nobody will ever process."""
    path = drop + "/" + MANIFEST_NAME
    try:
        writer = zone.open_new(path)
        try:
            writer.write(data)
        finally:
            writer.close()
        return
    except Exception as e:
        if not _zone_failure(e):
            raise
        error = _name(e)
    drop_id = drop.rsplit("/", 1)[-1]
    try:
        zone.stat(path)
        present = True
    except NotFound:
        present = False
    except Exception:
        present = None  # the zone stopped answering
    if present:
        raise SaveError("the manifest's upload to {} reported an error ({}), but the manifest is there: the server "
                        "may still process drop {}; check 'List iRODS Snapshots' before saving again".format(
                            where, error, drop_id))
    left = _cleanup(zone, drop, [drop + "/" + ARCHIVE_NAME, path]) if present is False else [drop]
    if not left:
        raise SaveError("the archive reached {} but its manifest could not be written ({}); the partial drop was "
                        "removed and nothing was saved: try again".format(where, error))
    raise SaveError("the archive reached {} but its manifest could not be written ({}), and the drop {} could not be "
                    "removed: it may hold an archive without a manifest, which the server never processes; the "
                    "facility may remove it (quote drop {}). Try again later".format(where, error, drop, drop_id))


def _cleanup(zone: Zone, drop: str, objects: Sequence[str]) -> List[str]:
    """Best effort: a drop without a manifest is never processed, but it should not linger either.

    Returns what could not be removed (a zone that went down refuses everything).
    """
    left: List[str] = []
    steps = [(zone.remove_object, path) for path in objects] + [(zone.remove_collection, drop)]
    for remove, path in steps:  # the objects first, then their (then empty) collection
        try:
            remove(path)
        except NotFound:
            pass
        except Exception as e:
            if not _zone_failure(e):
                raise
            log.warning("could not remove %s after a failed upload", path)
            left.append(path)
    return left


def wait_for_verdict(zone: Zone, landing: str, drop_id: str, poll: Poll) -> Tuple[DropStatus, int]:
    """Read the drop's status until it leaves received/queued/processing or the time is up."""
    deadline = poll.clock() + poll.timeout
    polls = 0
    while True:
        if poll.hook is not None:
            poll.hook()
        status = drop_status(zone, landing, drop_id)
        polls += 1
        if status.status not in IN_PROGRESS or poll.clock() >= deadline:
            return status, polls
        poll.sleep(max(0.0, min(poll.interval, deadline - poll.clock())))


# ------------------------------------------------------------------ messages for researchers
_ENROL_RULES = ("unmapped", "mapped_to_service_account", "mapped_user_missing", "mapped_to_rodsadmin",
                "mapped_to_group", "not_enrolled", "placement")
_DAMAGE_RULES = ("manifest_missing", "manifest_unreadable", "manifest_invalid", "drop_id_mismatch",
                 "archive_missing", "unexpected_object", "size_mismatch", "checksum_mismatch")


def _advice(status: DropStatus, who: Who) -> str:
    rule = status.refusal_rule or ""
    if rule in _ENROL_RULES:
        return ("Ask the iRODS facility to enrol OMERO user '{}' on server '{}' (map it to your iRODS account), "
                "then save again.".format(who.omero_user, who.omero_server))
    if rule == "archive_too_large":
        return "Save fewer objects at a time, or ask the iRODS facility for a higher size limit."
    if rule in _DAMAGE_RULES:
        return "The upload was incomplete or damaged on the way: save again. If it happens again, tell the facility."
    return "Tell the iRODS facility."


def save_message(status: DropStatus, who: Who, size: int, landing: str, zone_label: Optional[str] = None) -> str:
    """What happened, where the data is, and what to do next, in words a researcher can act on."""
    ref = "drop {}".format(status.drop_id)
    where = _where(zone_label)
    if status.status in (V.PLACED_STATE, V.COMPLETE):
        done = "complete" if status.status == V.COMPLETE else "placed (the archive is stored)"
        return ("Saved to {}: {}\nOwner: iRODS user '{}'. Status: {}. Archive: {}.\n"
                "It is listed by 'List iRODS Snapshots' and can be loaded back with 'Load from iRODS'.".format(
                    where, status.snapshot, status.irods_user, done, human_bytes(size)))
    if status.status == V.FAILED and not status.snapshot:
        # Failed before placement (a missing package on the server, a bug, retries exhausted): the upload is
        # still in the landing collection, untouched.
        return ("Uploaded ({}) to {}, but the server could not process it: {}\nNothing was lost: the upload is "
                "kept intact at {}, and the facility can process it again once the cause is fixed.\n"
                "Tell the iRODS facility ({}).".format(human_bytes(size), where, status.reason or "no reason given",
                                                      status.location or landing, ref))
    if status.status == V.FAILED:
        return ("Saved to {}, but the server refused to unpack it: {}\nSnapshot: {} (owner: iRODS user '{}'); "
                "the archive is kept intact in iRODS for the facility to examine, but it cannot be loaded back "
                "into OMERO.\nTell the iRODS facility ({}).".format(
                    where, status.reason or "no reason given", status.snapshot, status.irods_user, ref))
    if status.status == V.QUARANTINED:
        return ("Not saved: {} refused the snapshot (quarantined).\nWhy: {}\n{}\nThe upload is kept intact at {} "
                "for the facility; quote {}.".format(where, status.reason or "no reason given", _advice(status, who),
                                                      status.location, ref))
    if status.status == V.ACCEPTED:
        return ("Saved to {}: {}\nOwner: iRODS user '{}'. The server accepted it and is now verifying the archive's "
                "checksum and unpacking it; 'List iRODS Snapshots' shows when it is complete.".format(
                    where, status.snapshot, status.irods_user))
    if status.status == V.UNPACKING:
        return ("Saved to {}: {}\nOwner: iRODS user '{}'. The server is still unpacking it; 'List iRODS "
                "Snapshots' shows when it is complete.".format(where, status.snapshot, status.irods_user))
    if status.status in IN_PROGRESS:
        return ("Uploaded ({}), and {} has not finished with it yet (status: {}). 'List iRODS Snapshots' will show "
                "it once it is placed; if it never appears, tell the iRODS facility ({} in {}).".format(
                    human_bytes(size), where, status.status, ref, landing))
    return ("Uploaded ({}), but {} reports status '{}'{}. Tell the iRODS facility ({} in {}).".format(
        human_bytes(size), where, status.status, ": " + status.reason if status.reason else "", ref, landing))
