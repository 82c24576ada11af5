"""An OMERO server double for the OMERO side's tests: a small model serving REAL bytes.

It plays three parts, all from the same model:

- ``OmeroModel`` answers omero_client.stream_pack.OmeroReads (the IQuery /
  RawFileStore / Exporter reads of zero-copy Save), in chunks no larger than
  asked, counting the readers it opened and closed;
- ``transfer_xml(model, keys)`` writes the transfer.xml omero-cli-transfer's
  ``populate_xml`` would for those images (CLITransferServerPath as
  ``create_filepath_annotations`` computes it: the file's repository path for a
  one-file fileset, the common root plus ``mock_folder`` for several files,
  ``pixel_images/<id>.tiff`` without a fileset; ``file_annotations/<id>/<name>``);
- ``write_binaries_all(model, folder, file_ids)`` is what ``--binaries all``
  leaves: omero-cli-transfer 1.3.2's ``_copy_files`` with omero-py's
  ``download_fileset`` and ``export`` (an independent transcription, which
  tests/test_stream_pack.py also checks against the real ``_copy_files``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

from omero_client.stream_pack import OriginalFileInfo


def blob(seed: str, size: int) -> bytes:
    """Deterministic bytes that differ per seed (a tar member swapped for another is caught)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256("{}:{}".format(seed, counter).encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


@dataclass
class Fileset:
    id: int
    template_prefix: str
    files: List[OriginalFileInfo]


@dataclass
class OmeroModel:
    filesets: Dict[int, Fileset] = field(default_factory=dict)
    image_fileset: Dict[int, Optional[int]] = field(default_factory=dict)  # image id -> fileset id (None: none)
    image_names: Dict[int, str] = field(default_factory=dict)
    annotations: Dict[int, OriginalFileInfo] = field(default_factory=dict)  # FileAnnotation id -> its file
    data: Dict[int, bytes] = field(default_factory=dict)  # OriginalFile id -> bytes
    exports: Dict[int, bytes] = field(default_factory=dict)  # image id -> its OME-TIFF export
    max_read: int = 1 << 16
    opened: int = 0
    closed: int = 0
    reads: List[Tuple[str, int, int]] = field(default_factory=list)
    lie_about_size: Dict[int, int] = field(default_factory=dict)  # file id -> size the query reports instead

    # -------------------------------------------------------------- building
    def add_fileset(self, fs_id: int, prefix: str, files: Sequence[Tuple[int, str, str, int]],
                    images: Sequence[int]) -> None:
        infos = []
        for fid, sub, name, size in files:
            self.data[fid] = blob("file{}".format(fid), size)
            infos.append(OriginalFileInfo(fid, prefix + sub, name, size))
        self.filesets[fs_id] = Fileset(fs_id, prefix, infos)
        for i in images:
            self.image_fileset[i] = fs_id
            self.image_names[i] = infos[0].name

    def add_pixel_image(self, image_id: int, export_size: int) -> None:
        self.image_fileset[image_id] = None
        self.image_names[image_id] = "image {}".format(image_id)
        self.exports[image_id] = blob("export{}".format(image_id), export_size)

    def add_file_annotation(self, ann_id: int, file_id: int, name: str, size: int) -> None:
        self.data[file_id] = blob("file{}".format(file_id), size)
        self.annotations[ann_id] = OriginalFileInfo(file_id, "/", name, size)

    def data_bytes(self) -> int:
        return sum(len(b) for b in self.data.values()) + sum(len(b) for b in self.exports.values())

    # -------------------------------------------------------------- OmeroReads
    def fileset_of(self, image_id: int) -> Optional[Tuple[int, str]]:
        fs = self.image_fileset[image_id]
        return None if fs is None else (fs, self.filesets[fs].template_prefix)

    def fileset_files(self, fileset_id: int) -> List[OriginalFileInfo]:
        return [OriginalFileInfo(f.id, f.path, f.name, self.lie_about_size.get(f.id, f.size))
                for f in self.filesets[fileset_id].files]

    def annotation_file(self, annotation_id: int) -> OriginalFileInfo:
        return self.annotations[annotation_id]

    def open_file(self, file_id: int) -> "ChunkReader":
        self.opened += 1
        return ChunkReader(self, "OriginalFile:{}".format(file_id), self.data[file_id])

    def export_tiff(self, image_id: int) -> Tuple[int, "ChunkReader"]:
        self.opened += 1
        data = self.exports[image_id]
        return len(data), ChunkReader(self, "Export:{}".format(image_id), data)


class ChunkReader:
    """A RawFileStore/Exporter read loop as seen through stream_pack: at most ``max_read`` bytes per call."""

    def __init__(self, model: OmeroModel, what: str, data: bytes) -> None:
        self.model = model
        self.what = what
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        n = min(n, self.model.max_read)
        block = self.data[self.pos:self.pos + n]
        self.pos += len(block)
        self.model.reads.append((self.what, self.pos - len(block), len(block)))
        return block

    def close(self) -> None:
        self.model.closed += 1


# ------------------------------------------------------------------------------------------ transfer.xml
def server_path(model: OmeroModel, image_id: int) -> str:
    """generate_xml.create_filepath_annotations (not simple) for one image."""
    fs = model.image_fileset[image_id]
    if fs is None:
        return "pixel_images/{}.tiff".format(image_id)
    fpaths = [f.path + f.name for f in model.filesets[fs].files]
    if len(fpaths) == 1:
        return fpaths[0]
    common = Path(*os.path.commonprefix([Path(f).parts for f in fpaths])).as_posix()
    return posixpath.join(common, "mock_folder")


def transfer_xml(model: OmeroModel, images: Sequence[int], file_annotations: Sequence[int] = (),
                 dataset: Optional[str] = "day 3") -> bytes:
    lines = ['<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">']
    anns: List[str] = []
    next_id = [900000000000000000]

    def xml_ann(path: str) -> str:
        next_id[0] += 1
        aid = "Annotation:{}".format(next_id[0])
        anns.append('<XMLAnnotation ID="{}" Namespace="openmicroscopy.org/cli/transfer"><Value>'
                    '<CLITransferServerPath><Path>{}</Path></CLITransferServerPath></Value></XMLAnnotation>'
                    .format(aid, path))
        return aid

    if dataset is not None:
        lines.append('<Dataset ID="Dataset:1" Name={}>'.format(quoteattr(dataset)) + "".join(
            '<ImageRef ID="Image:{}"/>'.format(i) for i in images) + "</Dataset>")
    for i in images:
        # the provenance XMLAnnotation comes FIRST in the document, as populate_image writes it
        next_id[0] += 1
        meta = "Annotation:{}".format(next_id[0])
        anns.append('<XMLAnnotation ID="{}" Namespace="openmicroscopy.org/cli/transfer"><Value><CLITransferMetadata>'
                    '<origin_image_id>{}</origin_image_id><md5>TBC</md5></CLITransferMetadata></Value>'
                    '</XMLAnnotation>'.format(meta, i))
        path_ann = xml_ann(server_path(model, i))
        refs = "".join('<AnnotationRef ID="Annotation:{}"/>'.format(a) for a in file_annotations)
        lines.append('<Image ID="Image:{}" Name={}><Pixels ID="Pixels:{}" DimensionOrder="XYZCT" Type="uint8" '
                     'SizeX="1" SizeY="1" SizeZ="1" SizeC="1" SizeT="1"><MetadataOnly/></Pixels>{}'
                     '<AnnotationRef ID="{}"/><AnnotationRef ID="{}"/></Image>'.format(
                         i, quoteattr(model.image_names[i]), i, refs, meta, path_ann))
    for a in file_annotations:
        f = model.annotations[a]
        path_ann = xml_ann("file_annotations/{}/{}".format(a, f.name))
        anns.append('<FileAnnotation ID="Annotation:{}"><AnnotationRef ID="{}"/><BinaryFile FileName={} Size="{}">'
                    '<BinData BigEndian="true" Length="0"></BinData></BinaryFile></FileAnnotation>'.format(
                        a, path_ann, quoteattr(f.name), f.size))
    lines.append("<StructuredAnnotations>" + "".join(anns) + "</StructuredAnnotations></OME>")
    return "\n".join(lines).encode("utf-8")


# ------------------------------------------------------------------------------------------ --binaries all
def write_binaries_all(model: OmeroModel, folder: str, file_ids: Sequence[Tuple[str, Optional[str]]]) -> None:
    """omero-cli-transfer 1.3.2 ``_copy_files`` + omero download/export, writing the model's bytes."""
    downloaded: List[int] = []
    for key, path in file_ids:
        assert path is not None
        clean_id = int(key.split(":")[-1])
        if key.startswith("Image"):
            if clean_id in downloaded:
                continue
            rel = str(Path(path).parent)
            subfolder = os.path.join(folder, rel)
            os.makedirs(subfolder, exist_ok=True)
            fs = model.image_fileset[clean_id]
            if rel == "pixel_images" or fs is None:
                with open(os.path.join(subfolder, "{}.tiff".format(clean_id)), "wb") as out:
                    out.write(model.exports[clean_id])
                continue
            fileset = model.filesets[fs]
            for f in fileset.files:  # DownloadControl.download_fileset
                target_dir = os.path.join(subfolder, f.path.replace(fileset.template_prefix, ""))
                os.makedirs(target_dir, exist_ok=True)
                target = os.path.join(target_dir, f.name)
                if not os.path.exists(target):
                    with open(target, "wb") as out:
                        out.write(model.data[f.id])
            downloaded += [i for i, s in model.image_fileset.items() if s == fs]
        else:
            target = os.path.join(folder, path)
            os.makedirs(str(PurePosixPath(target).parent), exist_ok=True)
            with open(target, "wb") as out:
                out.write(model.data[model.annotations[clean_id].id])


def several_filesets(scale: int = 1) -> Tuple[OmeroModel, List[int], List[int]]:
    """A packet of several filesets: one file, several files in subfolders (two images), another user's
    fileset, an image without a fileset (exported), and a file annotation. ``scale`` multiplies the sizes."""
    m = OmeroModel()
    mib = 1 << 20
    m.add_fileset(10, "jdoe_52/2026-11/25/09-17-25.123/", [(101, "", "stack.tiff", 3 * mib * scale + 17)],
                  images=[51])
    m.add_fileset(11, "jdoe_52/2026-11/25/09-20-00.001/",
                  [(111, "", "experiment.lif", 2 * mib * scale + 5), (112, "meta/", "experiment.xml", 7000),
                   (113, "meta/deeper/", "notes.txt", 0)], images=[52, 53])
    # every file in a subfolder: the common root is deeper than the template prefix, and download_fileset
    # then repeats the subfolder (omero-cli-transfer 1.3.2 behaviour, kept so unpack finds the files)
    m.add_fileset(12, "bsmith_7/2025-01/02/03-04-05.678/", [(121, "sub/", "plate&fields=1.fake", mib * scale),
                                                             (122, "sub/", "plate.companion", 300)], images=[54])
    m.add_pixel_image(55, mib * scale + 99)
    m.add_file_annotation(7, 131, "results (final).xlsx", 120000)
    return m, [51, 52, 53, 54, 55], [7]
