"""Unpack a placed snapshot's archive into <snapshot>/content/, verified, with searchable metadata.

Runs in the delayed rule, as the service account, between `placed` and the
hand-over (ingest's process hook). Two paths give the same objects,
checksums, AVUs and statuses:

- streaming (everywhere): the archive is read once, sequentially, through
  libarchive; each member is checked before any of its bytes are written,
  then written once in 4 MiB writes; its sha256 is computed on the way and
  compared with the checksum iRODS computes for the new object;
- fast (a tar on a local unixfilesystem resource, when the zone offers
  msiTarFileExtract): our own full safety scan first (one read), then the
  native bulk extraction, then every extracted object's iRODS checksum
  compared with the scan's sha256 and the member list compared name by name.
  A mismatch (an archive swapped between scan and extraction) fails the
  snapshot and removes what was extracted.

A refusal or failure leaves nothing under content/ and the archive untouched;
a crash leaves a partial content/ that the rerun removes before starting
again (status `unpacking` marks it), so reruns converge.
"""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from typing import Any, BinaryIO, Dict, List, Optional, Set, Tuple

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import InvalidInput, IrodsError, NotFound
from policy.ingest import hex_of_irods_sha2, set_status
from policy.manifest import Manifest
from policy.zone import Avu, MetaOp, Zone

CONTENT = "content"
log = logging.getLogger("omero_snapshots.unpack")


class UnpackFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


MAX_IRODS_PATH_BYTES = 1087  # MAX_NAME_LEN (1088) minus the terminating NUL: a whole logical path


def safety_limits(config: PolicyConfig, content: str = "") -> Any:
    """The configured limits, with the member path capped so that content/<member> fits an iRODS path."""
    from policy.member_safety import SafetyLimits

    lim = config.limits
    room = MAX_IRODS_PATH_BYTES - len(content.encode("utf-8")) - 1 if content else lim.max_member_path_bytes
    return SafetyLimits(max_members=lim.max_members, max_total_bytes=lim.max_total_bytes,
                        max_expansion_ratio=lim.max_expansion_ratio,
                        max_member_path_bytes=max(1, min(lim.max_member_path_bytes, room)),
                        max_member_name_bytes=lim.max_member_name_bytes,
                        case_insensitive_duplicates=config.unpack.case_insensitive_duplicates)


STATS = V.NS + "unpack_stats"  # JSON: the unpack's own timings, peak RSS and writer count (bench/unpack.py --live)


def concurrent_plane(zone: Zone) -> Any:
    """The zone's data plane when it may be used from several threads at once (one connection per open
    object: python-irodsclient's pool), else None (the simulated zone, PREP buffers)."""
    probe = getattr(zone, "concurrent_plane", None)
    return probe() if probe is not None else None


def writer_count(zone: Zone, config: PolicyConfig) -> Tuple[int, Any]:
    """(writers, plane): how many members may be written (and checksums verified) at once, and over what."""
    plane = concurrent_plane(zone)
    wanted = config.unpack.parallel_writers
    if plane is None or wanted <= 1:
        return 1, None
    return wanted, plane


def data_plane(zone: Zone) -> Any:
    """Where member bytes go on the one-writer pass: the zone's data plane (PrepZone delegates it to
    python-irodsclient in production, to the simulated zone in tests), or the zone itself."""
    getter = getattr(zone, "data_plane", None)
    return getter() if getter is not None else zone


class ZoneSink:
    """Writes members as new data objects under content/, creating each collection once.

    A member held whole (smaller than the 4 MiB write buffer: nearly every member of a packet) goes out
    in ONE call when the data plane offers `put_new` (python-irodsclient: one DATA_OBJ_PUT carrying the
    bytes, never over an existing object, the server verifying our sha256 as it registers its checksum;
    bench/README.md "Issue 17": 1 round trip instead of about 12). Larger members are created, opened with
    the checksum registered at close when the plane offers `open_new_checksummed`, and written in chunks.

    With a concurrent plane, members are written on writer threads (put_prepared / open_prepared) after
    the reading thread prepared them (prepare_member: heartbeat and collections, in archive order).
    """

    def __init__(self, zone: Zone, content: str, guard: Any = None, plane: Any = None) -> None:
        self.zone = zone
        self.content = content
        self.guard = guard
        self.plane = plane
        self.made: Set[str] = set()
        zone.create_collection(content, recursive=False)
        self.made.add(content)
        writer = plane if plane is not None else data_plane(zone)
        self._put_new = getattr(writer, "put_new", None)
        if self._put_new is None:
            self.put_member = None  # type: ignore[assignment]
            self.put_prepared = None  # type: ignore[assignment]
        if plane is None:  # the one-writer pass: no thread-side methods, stream_unpack writes itself
            self.prepare_member = None  # type: ignore[assignment]
            self.open_prepared = None  # type: ignore[assignment]
            self.put_prepared = None  # type: ignore[assignment]

    def make_collection(self, relpath: str) -> None:
        path = self.content + "/" + relpath
        if path in self.made:
            return
        parent = path.rsplit("/", 1)[0]
        if parent not in self.made:
            self.make_collection(parent[len(self.content) + 1:])
        self.zone.create_collection(path, recursive=False)
        self.made.add(path)

    def open_member(self, relpath: str, size: int) -> BinaryIO:
        self._prepare(relpath)
        return self.zone.open_new(self.content + "/" + relpath)

    def put_member(self, relpath: str, data: memoryview, sha256: str) -> None:
        """The one-writer pass: a whole member in one call, on the reading thread."""
        self._prepare(relpath)
        self._put(relpath, data, sha256)

    def prepare_member(self, relpath: str, size: int) -> None:
        self._prepare(relpath)

    def put_prepared(self, relpath: str, data: memoryview, sha256: str) -> None:
        self._put(relpath, data, sha256)

    def _prepare(self, relpath: str) -> None:
        if self.guard is not None:
            self.guard.beat()  # keeps the drop's lock alive; stops here if another run took it over
        parent = relpath.rsplit("/", 1)[0] if "/" in relpath else ""
        if parent:
            self.make_collection(parent)

    def _put(self, relpath: str, data: memoryview, sha256: str) -> None:
        assert self._put_new is not None
        try:
            self._put_new(self.content + "/" + relpath, data, sha256)
        except IrodsError as e:
            if e.code == CHECKSUM_MISMATCH:
                raise UnpackFailed("member {!r}: the checksum iRODS computed for the written object differs "
                                   "from the archive's sha256 {} ({})".format(relpath, sha256, e)) from None
            raise

    def open_prepared(self, relpath: str, size: int) -> Any:
        path = self.content + "/" + relpath
        summed = getattr(self.plane, "open_new_checksummed", None)
        if summed is not None:
            return summed(path)
        return _ChecksumOnClose(self.plane, path)


CHECKSUM_MISMATCH = -314000  # USER_CHKSUM_MISMATCH: a verified put whose bytes iRODS hashed differently (round 12)


class _ChecksumOnClose:
    """A new object's writer that asks iRODS for its checksum once it is closed (same writer thread): for a
    data plane that cannot register the checksum at close itself."""

    def __init__(self, plane: Any, path: str) -> None:
        self._plane = plane
        self._path = path
        self._out = plane.open_new(path)

    def write(self, data: Any) -> Any:
        return self._out.write(data)

    def close(self) -> None:
        self._out.close()
        self._plane.checksum(self._path)


def remove_tree(zone: Zone, top: str) -> int:
    """Remove a collection the service account filled itself (a partial or refused unpack). Depth first."""
    removed = 0
    try:
        listing = zone.list_collection(top)
    except NotFound:
        return 0
    for sub in listing.collections:
        removed += remove_tree(zone, sub)
    for obj in listing.data_objects:
        zone.remove_object(obj.path)
        removed += 1
    zone.remove_collection(top)
    return removed


def _walk_objects(zone: Zone, top: str) -> Dict[str, Tuple[int, str]]:
    """relpath -> (size, iRODS checksum or '') of every data object under top.

    One catalog query for all of them when the zone offers it (objects_under), else one listing per
    collection.
    """
    batched = getattr(zone, "objects_under", None)
    if batched is not None:
        cut = len(top) + 1
        return {p[cut:]: v for p, v in batched(top).items()}
    out: Dict[str, Tuple[int, str]] = {}
    todo = [top]
    while todo:
        here = todo.pop()
        listing = zone.list_collection(here)
        todo.extend(listing.collections)
        for obj in listing.data_objects:
            out[obj.path[len(top) + 1:]] = (obj.size, obj.checksum or "")
    return out


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _verify(zone: Zone, content: str, members: List[Any], total_bytes: int, guard: Any = None,
            plane: Any = None, workers: int = 1) -> None:
    """The objects under content/ are exactly the archive's members, byte for byte (iRODS' own checksums).

    Checksums the catalog already holds (computed by the writers right after each close) are read with
    the listing; the others are computed now, over `workers` connections of `plane` when there is one.
    Every member's checksum is compared, in member order, whoever computed it.
    """
    from policy.parallel_write import bounded_map

    listed = _walk_objects(zone, content)  # name iRODS holds -> (size, checksum or '')
    actual = {_nfc(k): k for k in listed}  # NFC key -> the name iRODS holds
    expected = {_nfc(m.path): m for m in members}
    if actual.keys() != expected.keys():
        missing = sorted(set(expected) - set(actual))[:3]
        extra = sorted(set(actual) - set(expected))[:3]
        raise UnpackFailed("content does not match the archive's member list (missing {}, unexpected {})"
                           .format(missing or "none", extra or "none"))
    held = sum(v[0] for v in listed.values())
    if held != total_bytes:
        raise UnpackFailed("content holds {} bytes, the archive's members {}".format(held, total_bytes))
    order = sorted(expected)
    for rel in order:
        size = listed[actual[rel]][0]
        if size != expected[rel].size:
            raise UnpackFailed("member {!r}: {} bytes in iRODS, {} in the archive".format(rel, size,
                                                                                     expected[rel].size))

    def one(rel: str) -> str:
        if plane is not None or guard is None:
            return str((plane if plane is not None else zone).checksum(content + "/" + actual[rel]))
        with guard.covering_bytes(expected[rel].size):  # one microservice call: no heartbeat meanwhile
            return str(zone.checksum(content + "/" + actual[rel]))

    step = max(64, 16 * max(1, workers))
    for i in range(0, len(order), step):  # batch by batch: the lock's heartbeat between them, on this thread
        if guard is not None:
            guard.beat()
        batch = order[i:i + step]
        todo = [rel for rel in batch if not listed[actual[rel]][1]]
        computed = dict(zip(todo, bounded_map(one, todo, workers if plane is not None else 1)))
        for rel in batch:
            got = hex_of_irods_sha2(computed.get(rel) or listed[actual[rel]][1])
            if got != expected[rel].sha256:
                raise UnpackFailed("member {!r}: iRODS checksum {} differs from the archive's sha256 {}; the "
                                   "archive changed during unpacking".format(rel, got, expected[rel].sha256))


def _metadata_from_transfer_xml(zone: Zone, content: str) -> Tuple[List[Avu], Optional[str]]:
    from policy.transfer_xml import TransferXmlError, summarize, summary_avus

    try:
        with zone.open_read(content + "/transfer.xml") as f:
            summary = summarize(f)
    except NotFound:
        return [], "the packet has no transfer.xml: it cannot be loaded back with omero transfer unpack"
    except TransferXmlError as e:
        return [], str(e)
    return [Avu(a, v) for a, v in summary_avus(summary, V.NS)], None


def _can_fast_path(zone: Zone, config: PolicyConfig, manifest: Manifest, archive: str) -> Optional[str]:
    """The resource to extract onto, when the native bulk extraction may be used; else None."""
    if config.unpack.fast_path != "auto" or manifest.archive.format != "tar":
        return None
    probe = getattr(zone, "native_extract_resource", None)
    if probe is None:
        return None
    resc: Optional[str] = probe(archive, config.unpack.resource or None)
    return resc


def _stream(zone: Zone, config: PolicyConfig, archive: str, content: str, guard: Any = None) -> Any:
    from policy.archive_stream import stream_unpack

    workers, plane = writer_count(zone, config)
    sink = ZoneSink(zone, content, guard, plane)
    # one long forward read in 1 MiB blocks: the data plane's unbuffered reader when it has one
    opener = getattr(data_plane(zone), "open_stream", None) or zone.open_read
    try:
        with opener(archive) as src:
            return stream_unpack(src, sink, safety_limits(config, content), writers=workers)
    except InvalidInput as e:
        # iRODS refused a name our rules let through: an input problem, not a transient one
        raise UnpackFailed("iRODS refused a member's name or path ({})".format(e)) from None


def _fast(zone: Zone, config: PolicyConfig, archive: str, content: str, resource: str,
          clock: Optional["_Phases"] = None, guard: Any = None) -> Any:
    from policy.archive_stream import scan_archive

    with zone.open_read(archive) as src:
        report = scan_archive(src, safety_limits(config, content))
    if clock is not None:
        clock.mark("scan")
    if report.refusal is not None:
        return report
    # One microservice call for the whole archive: no heartbeat runs meanwhile (round 12), the lease covers it.
    with (guard.covering_bytes(report.archive_bytes) if guard is not None else contextlib.nullcontext()):
        zone.native_extract(archive, content, resource)  # type: ignore[attr-defined]
    if clock is not None:
        clock.mark("native_extract")
    return report


class _Phases:
    """Wall time of each unpack phase and the process's peak RSS, for the unpack_stats AVU: on a real
    server this is the only view of where the delayed rule's time and memory go (bench/unpack.py --live)."""

    def __init__(self) -> None:
        import time

        self._time = time
        self.started = time.time()
        self._t0 = self._last = time.perf_counter()
        self.phases: Dict[str, float] = {}
        self.rss_start_kb = peak_rss().get("vmrss_kb")  # what the agent held before: the unpack's growth is apart

    def mark(self, name: str) -> None:
        now = self._time.perf_counter()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self._last, 3)
        self._last = now

    def summary(self, path: str, workers: int, members: int) -> str:
        import json

        doc: Dict[str, Any] = {"seconds": round(self._time.perf_counter() - self._t0, 3),
                               "started": round(self.started, 3), "path": path, "writers": workers,
                               "members": members, "phases": self.phases}
        doc.update(peak_rss())
        if self.rss_start_kb is not None:
            doc["vmrss_start_kb"] = self.rss_start_kb
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def peak_rss() -> Dict[str, Any]:
    """This process's peak and current RSS in KiB (the agent running the delayed rule, on a server)."""
    out: Dict[str, Any] = {"pid": 0}
    try:
        import os
        import resource

        out["pid"] = os.getpid()
        out["ru_maxrss_kb"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key.lower() + "_kb"] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def unpack_step(zone: Zone, config: PolicyConfig, manifest: Manifest, snapshot: str,
                guard: Any = None) -> Tuple[str, Optional[str]]:
    """Process hook: (final status, reason). Never raises for a bad archive; zone failures propagate.

    If the native extraction fails after our scan accepted the archive, the cause is the server,
    not the archive: what it extracted is removed and the streaming path does the work instead.
    """
    from policy.drop_lock import NoLock

    guard = guard if guard is not None else NoLock()
    clock = _Phases()
    archive = snapshot + "/" + manifest.archive.name
    content = snapshot + "/" + CONTENT
    guard.check()
    set_status(zone, snapshot, V.UNPACKING)
    leftover = remove_tree(zone, content)
    if leftover:
        log.info("removed %d objects of an earlier, interrupted unpack under %s", leftover, content)
    resource = _can_fast_path(zone, config, manifest, archive)
    path_used = "fast" if resource else "streaming"
    workers, plane = writer_count(zone, config)
    note: Optional[str] = None
    clock.mark("prepare")
    try:
        report = None
        if resource:
            try:
                report = _fast(zone, config, archive, content, resource, clock, guard)
                guard.beat()
            except IrodsError as e:
                remove_tree(zone, content)
                note = "native extraction failed ({}), unpacked by streaming instead".format(e.name)
                log.warning("%s: %s", snapshot, note)
                path_used = "streaming"
        if report is None:
            report = _stream(zone, config, archive, content, guard)
            clock.mark("stream")
        if report.refusal is not None:
            raise UnpackFailed("archive refused: " + report.refusal.reason())
        guard.objects_hint = len(report.members)  # sizes the hand-over's lease (ingest)
        if report.archive_sha256 != manifest.archive.sha256:
            raise UnpackFailed("the archive read during unpacking has sha256 {}, the manifest says {}".format(
                report.archive_sha256, manifest.archive.sha256))
        guard.beat()
        _verify(zone, content, list(report.members), report.total_bytes, guard, plane, workers)
        clock.mark("verify")
    except UnpackFailed as e:
        guard.check()
        remove_tree(zone, content)
        reason = "unpack failed ({} path), nothing kept under content/, the archive is untouched: {}".format(
            path_used, e.reason)
        set_status(zone, snapshot, V.FAILED, reason)
        return V.FAILED, reason
    guard.check()
    extra, xml_problem = _metadata_from_transfer_xml(zone, content)
    clock.mark("transfer_xml")
    stats = clock.summary(path_used, workers, len(report.members))
    avus = [Avu(V.MEMBER_COUNT, str(len(report.members))), Avu(V.MEMBER_BYTES, str(report.total_bytes)),
            Avu(V.CONTENT, content), Avu(V.NS + "unpack_path", path_used), Avu(STATS, stats)] + extra
    current = zone.metadata(snapshot)
    ops = V.add_missing_ops(current, avus)
    ops += [MetaOp("remove", a.attribute, a.value, a.units) for a in current
            if a.attribute in (V.MEMBER_COUNT, V.MEMBER_BYTES, V.CONTENT, V.NS + "unpack_path", STATS)
            and a.value not in {x.value for x in avus if x.attribute == a.attribute}]
    zone.apply_metadata(snapshot, ops)  # one atomic call for all of them
    notes = [n for n in (note, xml_problem) if n]
    final_note = "complete; note: " + "; ".join(notes) if notes else None
    set_status(zone, snapshot, V.COMPLETE, final_note)
    return V.COMPLETE, final_note
