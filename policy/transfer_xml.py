"""What an omero-cli-transfer packet holds, read from its transfer.xml (OME-XML) in one streaming pass.

A plain expat parser fed in blocks: memory stays flat whatever the file size
(a screen's transfer.xml runs to hundreds of KB, the whole OME model is what
ome-types would build), and a document type declaration is refused outright,
so entity-expansion bombs cannot run. Only the facts worth searching for are
kept: object types, ids and names, and the CLITransferMetadata provenance.
"""

from __future__ import annotations

import xml.parsers.expat
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, List, Optional, Tuple

OBJECT_TAGS = ("Project", "Dataset", "Screen", "Plate", "Image")
PROVENANCE = ("original_user", "original_group", "origin_hostname", "software", "version", "packing_timestamp")
MAX_NAMES = 1000  # per object type; beyond that the packet's own transfer.xml is the record


class TransferXmlError(ValueError):
    """transfer.xml is missing, not XML, or not what omero-cli-transfer writes."""


@dataclass
class TransferSummary:
    objects: Dict[str, List[Tuple[int, str]]] = field(default_factory=dict)  # type -> [(id, name)]
    provenance: Dict[str, List[str]] = field(default_factory=dict)
    truncated: bool = False

    def count(self, kind: str) -> int:
        return len(self.objects.get(kind, []))


def _local(name: str) -> str:
    return name.rsplit(":", 1)[-1].rsplit("}", 1)[-1]


def summarize(stream: BinaryIO, max_bytes: int = 256 << 20, block: int = 1 << 16) -> TransferSummary:
    out = TransferSummary()
    parser = xml.parsers.expat.ParserCreate()
    stack: List[str] = []
    text: List[str] = []
    seen_root = [False]

    def refuse_dtd(*_args: object) -> None:
        raise TransferXmlError("transfer.xml declares a document type; refused (entity expansion risk)")

    def start(name: str, attrs: Dict[str, str]) -> None:
        tag = _local(name)
        if not stack:
            if tag != "OME":
                raise TransferXmlError("transfer.xml root element is <{}>, not <OME>".format(tag[:40]))
            seen_root[0] = True
        stack.append(tag)
        text.clear()
        if tag in OBJECT_TAGS and "ID" in attrs and len(stack) <= 3:
            ident = attrs["ID"]
            num = ident.rsplit(":", 1)[-1]
            if ident.startswith(tag + ":") and num.isdigit():
                items = out.objects.setdefault(tag, [])
                if len(items) < MAX_NAMES:
                    items.append((int(num), attrs.get("Name", "")[:512]))
                else:
                    out.truncated = True

    def end(name: str) -> None:
        tag = stack.pop() if stack else ""
        if tag in PROVENANCE and "CLITransferMetadata" in stack:
            value = "".join(text).strip()[:512]
            vals = out.provenance.setdefault(tag, [])
            if value and value not in vals and len(vals) < 100:
                vals.append(value)
        text.clear()

    def chars(data: str) -> None:
        if stack and stack[-1] in PROVENANCE and sum(len(t) for t in text) < 4096:
            text.append(data)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    total = 0
    try:
        while True:
            data = stream.read(block)
            if not data:
                break
            total += len(data)
            if total > max_bytes:
                raise TransferXmlError("transfer.xml is larger than {} bytes".format(max_bytes))
            parser.Parse(data, False)
        parser.Parse(b"", True)
    except xml.parsers.expat.ExpatError as e:
        raise TransferXmlError("transfer.xml is not well-formed XML: {}".format(e)) from None
    if not seen_root[0]:
        raise TransferXmlError("transfer.xml is empty")
    return out


def summary_avus(summary: TransferSummary, ns: str) -> List[Tuple[str, str]]:
    """(attribute, value) pairs: searchable names and ids of what the packet holds, and its provenance."""
    pairs: List[Tuple[str, str]] = []
    for kind in OBJECT_TAGS:
        items = summary.objects.get(kind, [])
        names = []
        for ident, name in items:
            pairs.append((ns + "packet." + kind.lower(), "{}:{}".format(kind, ident)))
            if name and name not in names:
                names.append(name)
        for name in names:
            pairs.append((ns + "packet." + kind.lower() + "_name", name))
        if items:
            pairs.append((ns + "packet." + kind.lower() + "_count", str(len(items))))
    for key in PROVENANCE:
        for value in summary.provenance.get(key, []):
            pairs.append((ns + "packet." + key, value))
    if summary.truncated:
        pairs.append((ns + "packet.truncated", "more than {} objects of a type; see transfer.xml".format(MAX_NAMES)))
    return pairs


def first_or_none(summary: TransferSummary, key: str) -> Optional[str]:
    vals = summary.provenance.get(key)
    return vals[0] if vals else None
