"""What a transfer.xml says about its packet, read with the standard library only.

Two callers need the same facts omero-cli-transfer derives from its own
transfer.xml, without importing omero-cli-transfer (which needs omero-py):

- zero-copy Save (omero_client.stream_pack) needs the path every binary gets in
  the packet. omero-cli-transfer's pack computes ``path_id_dict =
  generate_xml.list_file_ids(ome)`` from the very OME it writes out, so reading
  the written transfer.xml back gives the same dict: per image (in document
  order) the ``CLITransferServerPath`` of its first XMLAnnotation that carries
  one (``get_server_path``), then per FileAnnotation that is not an OMERO.figure
  the same for the file annotation;
- Load (omero_client.pack.CliTransferUnpacker) needs what to expect: the images
  (source ids, names, paths) and the containers unpack will create.

tests/test_stream_pack.py checks this reader against omero-cli-transfer's own
``list_file_ids`` where omero-cli-transfer is installed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: N817 (the usual name)
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

SERVER_PATH = "CLITransferServerPath"
FIGURE_NS = "omero.web.figure.json"
CONTAINERS = ("Project", "Dataset", "Screen", "Plate")


class TransferXmlError(ValueError):
    """transfer.xml cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class PacketImage:
    key: str  # "Image:51": the SOURCE server's id, as omero-cli-transfer writes it
    name: str
    path: Optional[str]  # its CLITransferServerPath (None: omero-cli-transfer would fail on it)

    @property
    def source_id(self) -> int:
        return int(self.key.split(":")[-1])


@dataclass
class PacketIndex:
    """The facts of one transfer.xml that Save and Load act on."""

    images: List[PacketImage] = field(default_factory=list)
    file_annotations: List[Tuple[str, Optional[str]]] = field(default_factory=list)  # ("Annotation:7", path)
    containers: Dict[str, List[str]] = field(default_factory=dict)  # "Dataset" -> names, document order

    def file_ids(self) -> List[Tuple[str, Optional[str]]]:
        """omero-cli-transfer's ``list_file_ids(ome)`` as ordered pairs: images first, then file annotations."""
        return [(i.key, i.path) for i in self.images] + list(self.file_annotations)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(el: ET.Element, name: str) -> List[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _server_paths(annotations: List[ET.Element]) -> Dict[str, str]:
    """XMLAnnotation id -> the Path of its CLITransferServerPath (only those that carry one)."""
    out: Dict[str, str] = {}
    for ann in annotations:
        if _local(ann.tag) != "XMLAnnotation":
            continue
        for value in _children(ann, "Value"):
            for sp in _children(value, SERVER_PATH):
                for p in _children(sp, "Path"):
                    ann_id = ann.get("ID")
                    if ann_id is not None and ann_id not in out:
                        out[ann_id] = (p.text or "").strip()
    return out


def _path_of(el: ET.Element, xml_ids: List[str], paths: Dict[str, str]) -> Optional[str]:
    """get_server_path: the first XMLAnnotation in DOCUMENT order (not ref order) that el refers to."""
    refs = {r.get("ID") for r in _children(el, "AnnotationRef")}
    for ann_id in xml_ids:
        if ann_id in refs and ann_id in paths:
            return paths[ann_id]
    return None


def parse_transfer_xml(data: bytes) -> PacketIndex:
    """Read transfer.xml bytes; raise TransferXmlError when it is not an OME document."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise TransferXmlError("transfer.xml is not well-formed XML ({})".format(e)) from None
    if _local(root.tag) != "OME":
        raise TransferXmlError("transfer.xml is not an OME document (its root is <{}>)".format(_local(root.tag)))
    annotations: List[ET.Element] = []
    for sa in _children(root, "StructuredAnnotations"):
        annotations.extend(list(sa))
    xml_ids = [a.get("ID") or "" for a in annotations if _local(a.tag) == "XMLAnnotation"]
    paths = _server_paths(annotations)
    index = PacketIndex(containers={c: [] for c in CONTAINERS})
    for img in _children(root, "Image"):
        index.images.append(PacketImage(img.get("ID") or "", img.get("Name") or "", _path_of(img, xml_ids, paths)))
    for ann in annotations:
        if _local(ann.tag) == "FileAnnotation" and ann.get("Namespace") != FIGURE_NS:
            index.file_annotations.append((ann.get("ID") or "", _path_of(ann, xml_ids, paths)))
    for kind in CONTAINERS:
        index.containers[kind] = [el.get("Name") or "" for el in _children(root, kind)]
    return index


def read_transfer_xml(path: str) -> PacketIndex:
    with open(path, "rb") as f:
        return parse_transfer_xml(f.read())


MAX_TRANSFER_XML = 256 << 20  # a screen's transfer.xml is ~150 KB; a refusal, not a memory blow-up, beyond this


def index_of_archive(path: str) -> PacketIndex:
    """The transfer.xml at the root of a packet archive (.tar or .zip), as omero transfer unpack reads it."""
    import tarfile
    import zipfile

    data: Optional[bytes] = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename in ("transfer.xml", "./transfer.xml"):
                    if info.file_size > MAX_TRANSFER_XML:
                        raise TransferXmlError("transfer.xml is larger than {} bytes".format(MAX_TRANSFER_XML))
                    data = z.read(info)
                    break
    else:
        with tarfile.open(path, mode="r:*") as t:
            for m in t:
                if m.isfile() and m.name in ("transfer.xml", "./transfer.xml"):
                    if m.size > MAX_TRANSFER_XML:
                        raise TransferXmlError("transfer.xml is larger than {} bytes".format(MAX_TRANSFER_XML))
                    f = t.extractfile(m)
                    data = f.read() if f is not None else None
                    break
    if data is None:
        raise TransferXmlError("the archive has no transfer.xml at its root")
    return parse_transfer_xml(data)
