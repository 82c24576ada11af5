"""Load: bring a snapshot back into OMERO as NEW objects, only for the researcher who saved it.

The service account can read every snapshot (the policy leaves it `read`), so
OMERO itself must refuse to hand one researcher's snapshot to another. The
rule (omero_client.snapshots explains why it needs no user mapping): the
snapshot's ``omero.snapshot.omero_user`` / ``omero_server`` must be the
current OMERO user on this OMERO server, its landing record must vouch for it,
and its status must be placed or complete. A refusal says which rule failed
without naming anybody else.

The archive is streamed to a private scratch directory, checked against the
size and sha256 the policy verified at placement, handed to the Unpacker
(``omero transfer unpack``: always new objects, never an overwrite), and
removed afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional, Tuple

from omero_client.archive_check import check_archive
from omero_client.pack import ObjectList, Unpacker, UnpackReport
from omero_client.progress import ProgressCallback, human_bytes, terminal_progress
from omero_client.snapshots import LOADABLE, provenance_problem
from policy import vocabulary as V
from policy.errors import IrodsError
from policy.zone import Zone

log = logging.getLogger("omero_snapshots.omero_client")

CHUNK = 1 << 20
_ARCHIVE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # manifest schema's archive.name
UNPACKABLE = {"tar": ".tar", "zip": ".zip"}  # omero transfer unpack reads these suffixes only


class LoadRefused(Exception):
    """This snapshot may not (or cannot) be loaded by this user; the message says why, for the researcher."""


@dataclass
class LoadResult:
    snapshot: str
    archive_size: int
    new_objects: ObjectList
    message: str
    report: Optional[UnpackReport] = None


def load(zone: Zone, snapshot_path: str, current_omero_user: str, omero_server: str, unpacker: Unpacker,
         workdir: Optional[str] = None, *, landing: str, progress: Optional[ProgressCallback] = None,
         zone_label: Optional[str] = None) -> LoadResult:
    """Check, download, unpack; raise LoadRefused with a clear reason when the snapshot is not this user's.

    ``zone`` is the zone the snapshot is in, with that zone's ``landing`` and
    ``omero_server`` (several zones: omero_client.zones picks them; ``zone_label``
    then names the zone in the message).
    """
    path = snapshot_path.rstrip("/") or snapshot_path
    if not path.startswith("/"):
        raise LoadRefused("{!r} is not an iRODS collection path (it must start with /)".format(snapshot_path))
    try:
        avus = zone.metadata(path)
    except IrodsError:
        raise LoadRefused("there is no snapshot at {} that OMERO can read (check the path with 'List iRODS "
                          "Snapshots')".format(path)) from None
    values = V.as_dict(avus)
    if values.get(V.OMERO_USER) != [current_omero_user] or values.get(V.OMERO_SERVER) != [omero_server]:
        raise LoadRefused("{} was not saved by you (OMERO user '{}' on '{}'): only the OMERO user who saved a "
                          "snapshot can load it through OMERO. Its owner can share the data with you in iRODS."
                          .format(path, current_omero_user, omero_server))
    problem = provenance_problem(zone, landing, path, avus)
    if problem is not None:
        raise LoadRefused("{} cannot be loaded: {}.".format(path, problem))
    status = V.first(avus, V.STATUS) or "unknown"
    if status not in LOADABLE:
        reason = V.first(avus, V.REASON)
        raise LoadRefused("{} cannot be loaded yet: its status is '{}' (it must be placed or complete){}".format(
            path, status, "; " + reason if reason and reason != "-" else ""))
    name = V.first(avus, V.ARCHIVE_NAME) or ""
    fmt = V.first(avus, V.ARCHIVE_FORMAT) or ""
    if not _ARCHIVE_NAME_RE.match(name) or name == "manifest.json":
        raise LoadRefused("{} records no usable archive name".format(path))
    if fmt not in UNPACKABLE or not name.lower().endswith(UNPACKABLE[fmt]):
        raise LoadRefused("{} holds a {!r} archive; OMERO can load back only tar and zip archives".format(path, fmt))
    # What to expect comes from the landing record, which only the service account can write: the
    # snapshot's own AVUs are its owner's to change, and so is its transfer.tar.
    try:
        record = V.as_dict(zone.metadata(landing + "/" + (V.first(avus, V.DROP_ID) or "")))
    except IrodsError:
        record = {}
    size_text = (record.get(V.ARCHIVE_SIZE) or [""])[0]
    sha256 = (record.get(V.ARCHIVE_SHA256) or [""])[0]
    if not size_text.isdigit() or len(sha256) != 64:
        raise LoadRefused("{} was saved before its landing record kept the archive's checksum; OMERO cannot "
                          "verify it: ask the iRODS facility to load it for you".format(path))
    size = int(size_text)

    bar = terminal_progress("download") if progress is None else None  # library use from a terminal
    progress = progress or bar
    scratch = tempfile.mkdtemp(prefix="omero-snapshot-load-", dir=workdir)
    try:
        local = os.path.join(scratch, name)
        got_size, got_sha = _download(zone, path + "/" + name, local, size, progress)
        if got_size != size or got_sha != sha256:
            raise LoadRefused("the archive of {} does not match what was recorded when it was saved ({} bytes "
                              "read, {} recorded): it was changed in iRODS; tell the iRODS facility".format(
                                  path, got_size, size))
        if bar is not None:
            bar.finish()
        refusal = check_archive(local)
        if refusal is not None:
            raise LoadRefused("the archive of {} is not safe to extract on the OMERO server: {}; tell the iRODS "
                              "facility".format(path, refusal.reason()))
        outcome = unpacker.unpack(local)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = outcome if isinstance(outcome, UnpackReport) else UnpackReport(created=list(outcome))
    if report.expected_images is None:
        # The server counted the packet's images when it unpacked it (what a plain Unpacker cannot tell).
        expected = (V.as_dict(avus).get(V.NS + "packet.image_count") or [""])[0]
        if expected.isdigit():
            report.expected_images = int(expected)
            report.imported_images = sum(1 for t, _ in report.created if t == "Image")
    message = load_message(path, got_size, report, zone_label)
    return LoadResult(snapshot=path, archive_size=got_size, new_objects=report.created, message=message,
                      report=report)


def _download(zone: Zone, src: str, dst: str, expected: int, progress: Optional[ProgressCallback]) -> Tuple[int, str]:
    h = hashlib.sha256()
    done = 0
    try:
        reader = zone.open_read(src)
    except IrodsError as e:
        raise LoadRefused("the archive {} cannot be read ({}); the snapshot's owner may have removed OMERO's "
                          "access".format(src, e.name)) from None
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while True:
                block = reader.read(CHUNK)
                if not block:
                    break
                h.update(block)
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, expected if expected > 0 else None)
    finally:
        reader.close()
    return done, h.hexdigest()


def load_message(path: str, size: int, report: "UnpackReport | ObjectList", zone_label: Optional[str] = None) -> str:
    """Every object Load created, images expected against imported, and which failed, in plain words."""
    if not isinstance(report, UnpackReport):
        report = UnpackReport(created=list(report))
    where = "iRODS" if zone_label is None else "iRODS zone '{}'".format(zone_label)
    new = report.created
    parts = []
    for otype in ("Project", "Dataset", "Screen", "Plate", "Image"):
        ids = [str(i) for t, i in new if t == otype]
        if ids:
            parts.append("{} {}".format(otype, ", ".join(ids)))
    if parts:
        lines = ["Loaded {} ({}) from {} as NEW objects: {}.".format(path, human_bytes(size), where, "; ".join(parts))]
    else:
        lines = ["Loaded {} ({}) from {}, but OMERO shows no new objects from it.".format(path, human_bytes(size),
                                                                                      where)]
    expected, got = report.expected_images, report.imported_images
    incomplete = bool(report.failed) or (expected is not None and got < expected)
    if expected is not None:
        lines.append("Images: {} of the {} in the snapshot imported.".format(got, expected))
    if report.failed:
        shown = report.failed[:10]
        more = len(report.failed) - len(shown)
        lines.append("Not imported: {}{}.".format("; ".join(shown), " and {} more".format(more) if more else ""))
    if report.orphans:
        lines.append("Imported but not linked to the snapshot's objects (find them among your orphaned images): "
                     "Image {}.".format(", ".join(str(i) for i in report.orphans)))
    if incomplete:
        lines.append("INCOMPLETE: remove the new objects above before trying again, and tell the facility if it "
                     "happens again.")
    elif not parts:
        lines.append("Look for recently imported images among your orphaned images, and tell the facility.")
    return "\n".join(lines)
