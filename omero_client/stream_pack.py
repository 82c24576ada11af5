"""Zero-copy Save: the packet omero-cli-transfer would make, with its binaries streamed from OMERO, never stored.

``omero transfer pack --binaries all`` downloads every original file into a
local folder (1x the data) before anything can be sent. Here the packet is
made in two parts:

1. ``omero transfer pack --binaries none Type:ids <folder>`` writes ONLY
   ``<folder>/transfer.xml`` (omero-cli-transfer's own metadata, unchanged);
2. every binary ``--binaries all`` would have fetched is read from the OMERO
   API while the tar is written (omero_client.upload.stream_packet_as_tar), at
   exactly the path ``--binaries all`` would have given it, so ``omero transfer
   unpack`` of the snapshot works unchanged.

The paths are omero-cli-transfer 1.3.x's ``_copy_files`` with omero-py's
``omero download`` (``DownloadControl.download_fileset``), applied to
``list_file_ids`` (omero_client.transfer_xml):

- an image with a fileset: every OriginalFile of the fileset at
  ``parent(server path) / (file.path with the template prefix removed) / file.name``,
  once per fileset (the other images of the fileset are skipped, as there);
- an image without a fileset (or whose server path is under ``pixel_images``):
  ``parent(server path)/<image id>.tiff``, the OME-TIFF OMERO's Exporter
  generates (what ``omero export --file`` writes);
- a file annotation: its OriginalFile at its server path
  (``file_annotations/<annotation id>/<name>``);
- a path already taken is skipped (``omero download``: "File exists! Skipping...").

The reads are the OMERO services ``omero download`` and ``omero export`` use
(IQuery, RawFileStore, Exporter), across groups (``omero.group=-1``) as
``omero download`` does. ``SessionReads`` imports nothing from omero at module
level; tests give ``plan_members`` a double serving real bytes.
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Set, Tuple

from omero_client.pack import (
    ObjectList,
    PackError,
    _run_cli,
    _session_args,
    default_cli,
    object_spec,
    packer_version,
    parameters,
    require_cli_transfer,
)
from omero_client.transfer_xml import TransferXmlError, read_transfer_xml

log = logging.getLogger("omero_snapshots.omero_client")

READ_CHUNK = 1 << 20  # bytes per RawFileStore/Exporter read: one Ice message, well under Ice.MessageSizeMax
ALL_GROUPS = {"omero.group": "-1"}


@dataclass(frozen=True)
class OriginalFileInfo:
    id: int
    path: str  # OriginalFile.path (the ManagedRepository directory, ending with '/')
    name: str
    size: int


class Reader(Protocol):
    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class PacketMember:
    """One binary of the packet: where it goes, and how to read it once, from the start."""

    path: str  # relative POSIX path inside the packet, normalised, no leading "./"
    size: Optional[int]  # known before reading (OriginalFile.size); None for an export (known once generated)
    source: str  # "OriginalFile:12" / "Image:51 (OME-TIFF export)": for messages
    open: Callable[[], Tuple[int, Reader]]  # -> (exact size, reader of exactly that many bytes)


class OmeroReads(Protocol):
    """The OMERO calls zero-copy Save needs (SessionReads on a real session; doubles in tests)."""

    def fileset_of(self, image_id: int) -> Optional[Tuple[int, str]]:
        """(fileset id, template prefix), or None when the image has no fileset."""
        ...

    def fileset_files(self, fileset_id: int) -> List[OriginalFileInfo]: ...

    def annotation_file(self, annotation_id: int) -> OriginalFileInfo: ...

    def open_file(self, file_id: int) -> Reader: ...

    def export_tiff(self, image_id: int) -> Tuple[int, Reader]: ...


# ---------------------------------------------------------------------------------------------- paths
def _inside(folder_rel: str, *parts: str) -> str:
    """os.path.join as omero-cli-transfer and omero download do, refused when the result leaves the packet."""
    joined = posixpath.join(folder_rel, *parts)
    norm = posixpath.normpath(joined)
    if joined.startswith("/") or norm == ".." or norm.startswith("../") or norm in ("", "."):
        raise PackError("omero-cli-transfer would write {!r} outside the packet; this object cannot be saved "
                        "(tell the facility)".format(joined))
    return norm


def _id_of(key: str) -> int:
    try:
        return int(key.split(":")[-1])
    except ValueError:
        raise PackError("transfer.xml names an object {!r} without a numeric id".format(key)) from None


def plan_members(file_ids: Sequence[Tuple[str, Optional[str]]], reads: OmeroReads) -> List[PacketMember]:
    """The binaries of ``--binaries all`` for omero-cli-transfer's ``path_id_dict``, in its order."""
    members: List[PacketMember] = []
    taken: Set[str] = {"transfer.xml"}
    done_filesets: Set[int] = set()

    def add(member: PacketMember) -> None:
        if member.path in taken:
            log.info("%s: %s is already in the packet, skipped (as omero download does)", member.source,
                     member.path)
            return
        taken.add(member.path)
        members.append(member)

    for key, path in file_ids:
        dtype = key.split(":")[0]
        if path is None:
            raise PackError("transfer.xml gives {} no file path; omero-cli-transfer could not pack it either"
                            .format(key))
        if dtype == "Image":
            image_id = _id_of(key)
            rel = str(PurePosixPath(path).parent)
            fileset = reads.fileset_of(image_id)
            if rel == "pixel_images" or fileset is None:
                add(PacketMember(_inside(rel, "{}.tiff".format(image_id)), None,
                                 "Image:{} (OME-TIFF export)".format(image_id),
                                 _export_opener(reads, image_id)))
                continue
            fileset_id, prefix = fileset
            if fileset_id in done_filesets:
                continue
            done_filesets.add(fileset_id)
            for f in reads.fileset_files(fileset_id):
                sub = f.path.replace(prefix, "") if prefix else f.path
                add(PacketMember(_inside(rel, sub, f.name), f.size, "OriginalFile:{}".format(f.id),
                                 _file_opener(reads, f)))
        else:
            f = reads.annotation_file(_id_of(key))
            add(PacketMember(_inside(path), f.size, "OriginalFile:{} of File{}".format(f.id, key),
                             _file_opener(reads, f)))
    return members


def _file_opener(reads: OmeroReads, f: OriginalFileInfo) -> Callable[[], Tuple[int, Reader]]:
    return lambda: (f.size, reads.open_file(f.id))


def _export_opener(reads: OmeroReads, image_id: int) -> Callable[[], Tuple[int, Reader]]:
    return lambda: reads.export_tiff(image_id)


# ---------------------------------------------------------------------------------------------- OMERO session
class _Chunked:
    """``read(n)`` over an OMERO ``read(offset, length)`` service, returning exactly n bytes until the end."""

    def __init__(self, service: Any, size: int, close: Callable[[], None]) -> None:
        self.service = service
        self.size = size
        self.offset = 0
        self._close = close

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and self.offset < self.size:
            want = min(n - len(out), READ_CHUNK, self.size - self.offset)
            block = self.service.read(self.offset, want)
            if not block:
                break
            out += block[:want]
            self.offset += len(block[:want])
        return bytes(out)

    def close(self) -> None:
        self._close()


class SessionReads:
    """OmeroReads on the script's session: IQuery for the layout, RawFileStore and Exporter for the bytes."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _session(self) -> Any:
        return self.client.getSession()

    def _ctx(self) -> Dict[str, str]:
        """The call context omero download uses: the client's implicit context, in every group."""
        getter = getattr(self.client, "getContext", None)
        return dict(getter(group=-1)) if getter is not None else dict(ALL_GROUPS)

    def _rows(self, hql: str, **ids: int) -> List[List[Any]]:
        from omero.rtypes import unwrap

        p = parameters()
        for name, value in ids.items():
            p.addLong(name, value)
        rows = self._session().getQueryService().projection(hql, p, self._ctx())
        return [[unwrap(c) for c in row] for row in rows]

    def fileset_of(self, image_id: int) -> Optional[Tuple[int, str]]:
        rows = self._rows("select fs.id, fs.templatePrefix from Image i join i.fileset fs where i.id = :id",
                          id=image_id)
        if not rows:
            return None
        return int(rows[0][0]), str(rows[0][1] or "")

    def fileset_files(self, fileset_id: int) -> List[OriginalFileInfo]:
        rows = self._rows("select o.id, o.path, o.name, o.size from FilesetEntry fe join fe.originalFile o "
                          "where fe.fileset.id = :id order by fe.id", id=fileset_id)
        return [OriginalFileInfo(int(r[0]), str(r[1] or ""), str(r[2] or ""), int(r[3] or 0)) for r in rows]

    def annotation_file(self, annotation_id: int) -> OriginalFileInfo:
        rows = self._rows("select o.id, o.path, o.name, o.size from FileAnnotation fa join fa.file o "
                          "where fa.id = :id", id=annotation_id)
        if not rows:
            raise PackError("FileAnnotation:{} has no file OMERO lets you read".format(annotation_id))
        r = rows[0]
        return OriginalFileInfo(int(r[0]), str(r[1] or ""), str(r[2] or ""), int(r[3] or 0))

    def open_file(self, file_id: int) -> Reader:
        rfs = self._session().createRawFileStore()
        try:
            rfs.setFileId(file_id, self._ctx())
            size = int(rfs.size())
        except Exception as e:
            rfs.close()
            raise PackError("OriginalFile:{} cannot be read ({}); the OMERO server may not allow downloading it "
                            "(omero.policy.binary_access)".format(file_id, type(e).__name__)) from None
        return _Chunked(rfs, size, rfs.close)

    def export_tiff(self, image_id: int) -> Tuple[int, Reader]:
        exporter = self._session().createExporter()
        try:
            exporter.addImage(image_id)
            size = int(exporter.generateTiff())
        except Exception as e:
            exporter.close()
            raise PackError("Image:{} has no original file and OMERO could not export it as OME-TIFF ({})".format(
                image_id, type(e).__name__)) from None
        return size, _Chunked(exporter, size, exporter.close)


# ---------------------------------------------------------------------------------------------- the packer
class CliTransferStreamPacker:
    """Zero-copy packer: ``omero transfer pack --binaries none`` for transfer.xml, the binaries from OMERO.

    ``prepare(objects, folder)`` leaves ``folder/transfer.xml`` and returns the
    members to stream; save() tars both into iRODS (omero_client.upload).
    """

    name = "omero-cli-transfer"
    mode = "stream"

    def __init__(self, client: Any, reads: Optional[OmeroReads] = None,
                 cli_factory: Optional[Callable[[], Any]] = None) -> None:
        self.client = client
        self.reads = reads or SessionReads(client)
        self.cli_factory = cli_factory or default_cli
        self.version = packer_version()

    def prepare(self, objects: ObjectList, folder: str) -> List[PacketMember]:
        spec = object_spec(objects)
        if os.path.splitext(folder)[1]:
            raise ValueError("the metadata folder {!r} must have no extension (omero-cli-transfer writes "
                             "<folder without extension>/transfer.xml)".format(folder))
        if os.path.exists(folder):
            raise ValueError("the packet folder {} already exists".format(folder))
        if self.cli_factory is default_cli:
            require_cli_transfer()
        args = _session_args(self.client) + ["transfer", "pack", "--binaries", "none", spec, folder]
        log.info("packing the metadata of %s into %s", spec, folder)
        _run_cli(self.cli_factory, args, "omero transfer pack --binaries none " + spec, os.path.dirname(folder),
                 self.client)
        xml = os.path.join(folder, "transfer.xml")
        if not os.path.isfile(xml):
            raise PackError("omero transfer pack --binaries none {} wrote no transfer.xml".format(spec))
        try:
            index = read_transfer_xml(xml)
        except TransferXmlError as e:
            raise PackError("omero transfer pack {} wrote a transfer.xml that cannot be read: {}".format(
                spec, e)) from None
        return plan_members(index.file_ids(), self.reads)
