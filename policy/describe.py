"""Self-describing snapshots: a machine-readable description beside transfer.tar and content/.

A snapshot kept for ten years must explain itself without OMERO and without this project. Two files,
written by the policy into the snapshot before the hand-over (afterwards the service account may only
read it), both generated from the data the AVUs come from (the snapshot's `omero.snapshot.*` AVUs and
the checksums iRODS recorded), so they cannot disagree with them:

- `manifest-sha256.txt`: a BagIt payload manifest (RFC 8493 section 2.1.3): one line per object,
  `<sha256 hex>  <path relative to the snapshot>`; `sha256sum -c manifest-sha256.txt` checks a copy.
- `ro-crate-metadata.json`: RO-Crate 1.1 metadata (JSON-LD, schema.org): what the snapshot is (the OMERO
  objects, server, user, group, label, date), every object with its size and sha256, the packer and its
  version, the manifest, and how to load it back.

Snapshots made before this existed get them through the admin rule omero_snapshots_describe, which acts
as the snapshot's owner (the only one who may write there after the hand-over; no admin-mode ACL), writes
only files that are absent (never overwriting) and gives the service account `read` on them.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from policy import vocabulary as V
from policy.zone import Zone, basename_of

DESCRIPTION = "ro-crate-metadata.json"
PAYLOAD_MANIFEST = "manifest-sha256.txt"
FILES = (PAYLOAD_MANIFEST, DESCRIPTION)
PART = ".part"
RO_CRATE_CONTEXT = "https://w3id.org/ro/crate/1.1/context"
RO_CRATE_SPEC = "https://w3id.org/ro/crate/1.1"

Member = Tuple[str, int, str]  # (path relative to the snapshot, size, sha256 hex)


class DescribeError(ValueError):
    """The description cannot be made; the message says why and what to do."""


def _hex(irods_sha2: str) -> Optional[str]:
    from policy.ingest import hex_of_irods_sha2

    return hex_of_irods_sha2(irods_sha2) if irods_sha2 else None


def members(zone: Zone, snapshot: str, manifest_max_bytes: int = 1 << 20,
            listing: Optional[Dict[str, Tuple[int, str]]] = None) -> List[Member]:
    """Every object of the snapshot with its size and sha256, from the checksums iRODS recorded.

    manifest.json gets no checksum at ingest: it is small, and read and hashed here. Any other object
    without a recorded checksum (one its owner added later) cannot be described truthfully: refused."""
    import hashlib

    from policy.fixity import _objects

    out: List[Member] = []
    for path, (size, chk) in sorted((listing if listing is not None else _objects(zone, snapshot)).items()):
        rel = path[len(snapshot) + 1:]
        if rel in FILES or basename_of(rel).endswith(PART):
            continue
        digest = _hex(chk)
        if digest is None and rel == "manifest.json":
            digest = hashlib.sha256(zone.read_small(path, manifest_max_bytes)).hexdigest()
        if digest is None:
            raise DescribeError("{} has no recorded checksum; the description would not be verifiable (an "
                                "object added after the snapshot was made?)".format(path))
        out.append((rel, int(size), digest))
    return out


def _bagit_path(rel: str) -> str:
    """RFC 8493 section 2.1.3: CR, LF and % in a file path are percent-encoded."""
    return rel.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def payload_manifest(items: Sequence[Member]) -> bytes:
    return "".join("{}  {}\n".format(h, _bagit_path(rel)) for rel, _s, h in sorted(items)).encode("utf-8")


def _id(rel: str) -> str:
    """An RO-Crate data entity's @id: the relative path as a URI path (percent-encoded)."""
    return quote(rel, safe="/")


def ro_crate(snapshot: str, avus: Dict[str, List[str]], items: Sequence[Member]) -> Dict[str, Any]:
    """The RO-Crate 1.1 metadata of a snapshot, from its AVUs and its members."""
    def one(attr: str, default: str = "") -> str:
        vals = avus.get(attr)
        return vals[0] if vals else default

    label = one(V.LABEL)
    created = one(V.CREATED)
    archive = one(V.ARCHIVE_NAME, "transfer.tar")
    packer = one(V.PACKER)
    pname, _, pversion = packer.partition(" ")
    objects = sorted(avus.get(V.OBJECT, []))
    names = {k: v for k, v in avus.items() if k.startswith(V.NS + "packet.") and k.endswith("_name")}
    how = ("Load it back into OMERO: download the snapshot (iget -r), check it (sha256sum -c {pm}, in the "
           "snapshot's folder), then `omero transfer unpack {archive}` with omero-cli-transfer (version {pv} or "
           "newer): it creates NEW objects in the OMERO server you are logged in to. Without OMERO: {archive} is "
           "an omero-cli-transfer packet; content/ holds its members as they were packed (original image files "
           "under root_*/ or pixel_images/, and transfer.xml, an OME-XML description of every object)."
           ).format(pm=PAYLOAD_MANIFEST, archive=archive, pv=pversion or "?")
    graph: List[Dict[str, Any]] = [
        {"@id": DESCRIPTION, "@type": "CreativeWork", "conformsTo": {"@id": RO_CRATE_SPEC}, "about": {"@id": "./"}},
    ]
    parts: List[Dict[str, str]] = []
    files: List[Dict[str, Any]] = []
    content: List[Dict[str, str]] = []
    formats = {"tar": "application/x-tar", "zip": "application/zip", "tar.gz": "application/gzip"}
    for rel, size, digest in items:
        entity: Dict[str, Any] = {"@id": _id(rel), "@type": "File", "name": basename_of(rel),
                                  "contentSize": str(size), "sha256": digest}
        if rel == archive:
            entity["encodingFormat"] = formats.get(one(V.ARCHIVE_FORMAT), "application/octet-stream")
            entity["description"] = "The archive exactly as OMERO sent it (omero-cli-transfer packet)."
        elif rel == "manifest.json":
            entity["encodingFormat"] = "application/json"
            entity["description"] = ("OMERO's instruction manifest (schema: manifest-v1.schema.json of "
                                     "omero-irods-snapshots): who saved what, and the archive's size and sha256.")
        if rel.startswith("content/"):
            content.append({"@id": _id(rel)})
        else:
            parts.append({"@id": _id(rel)})
        files.append(entity)
    if content:
        parts.append({"@id": "content/"})
    parts.append({"@id": PAYLOAD_MANIFEST})
    root: Dict[str, Any] = {
        "@id": "./", "@type": "Dataset",
        "name": "OMERO snapshot{}".format(": " + label if label else " " + basename_of(snapshot)),
        "description": ("A snapshot of OMERO objects ({}) saved by OMERO user '{}' of group '{}' on OMERO server "
                        "'{}' on {}, kept in iRODS at {}. {}").format(
                            ", ".join(objects) or "see transfer.xml", one(V.OMERO_USER), one(V.OMERO_GROUP),
                            one(V.OMERO_SERVER), created or "?", snapshot, how),
        "datePublished": created, "dateCreated": created, "identifier": snapshot,
        "creator": {"@id": "#omero-user"}, "about": [{"@id": "#omero-" + o.replace(":", "-")} for o in objects],
        "hasPart": parts, "usageInfo": {"@id": "#how-to-load"}, "license": {"@id": "#license"},
        "mentions": {"@id": "#save"},
        "additionalProperty": [{"@id": "#avu-{}".format(i)} for i, _ in enumerate(sorted(_flat(avus)))],
    }
    graph.append(root)
    if content:
        graph.append({"@id": "content/", "@type": "Dataset", "name": "content",
                      "description": "The archive's members, unpacked and verified (sha256) by the policy.",
                      "hasPart": content})
    graph.extend(files)
    graph.append({"@id": PAYLOAD_MANIFEST, "@type": "File", "name": PAYLOAD_MANIFEST, "encodingFormat": "text/plain",
                  "description": "BagIt payload manifest (RFC 8493 2.1.3): sha256 and path of every file above."})
    group = {"@id": "#omero-group", "@type": "Organization", "name": one(V.OMERO_GROUP),
             "identifier": one(V.OMERO_GROUP_ID) or None}
    graph.append({"@id": "#omero-user", "@type": "Person", "name": one(V.OMERO_USER),
                  "identifier": "{}@{}".format(one(V.OMERO_USER), one(V.OMERO_SERVER)),
                  "memberOf": {"@id": "#omero-group"}})
    graph.append({k: v for k, v in group.items() if v is not None})
    for o in objects:
        kind, _, ident = o.partition(":")
        name = (names.get(V.NS + "packet." + kind.lower() + "_name") or [""])[0] if kind else ""
        graph.append({"@id": "#omero-" + o.replace(":", "-"), "@type": "CreativeWork", "name": name or o,
                      "identifier": o, "description": "OMERO {} {} on {}".format(kind, ident, one(V.OMERO_SERVER))})
    graph.append({"@id": "#packer", "@type": "SoftwareApplication", "name": pname or "?", "version": pversion or "?"})
    graph.append({"@id": "#policy", "@type": "SoftwareApplication", "name": "omero-irods-snapshots policy",
                  "version": one(V.POLICY_VERSION, "?")})
    graph.append({"@id": "#save", "@type": "CreateAction", "name": "Save to iRODS", "endTime": created,
                  "agent": {"@id": "#omero-user"}, "instrument": [{"@id": "#packer"}, {"@id": "#policy"}],
                  "object": [{"@id": "#omero-" + o.replace(":", "-")} for o in objects], "result": {"@id": "./"}})
    graph.append({"@id": "#license", "@type": "CreativeWork", "name": "No license stated",
                  "description": "OMERO states no license for the data. The snapshot belongs to iRODS user '{}'; "
                                 "its use is governed by the owner and the facility that keeps it.".format(
                                     one(V.IRODS_USER))})
    graph.append({"@id": "#how-to-load", "@type": "CreativeWork", "name": "How to load this snapshot back",
                  "text": how})
    for i, (attr, value) in enumerate(sorted(_flat(avus))):
        graph.append({"@id": "#avu-{}".format(i), "@type": "PropertyValue", "name": attr, "value": value})
    return {"@context": RO_CRATE_CONTEXT, "@graph": graph}


def _flat(avus: Dict[str, List[str]]) -> List[Tuple[str, str]]:
    """The AVUs the description carries verbatim: every omero.snapshot.* one but the changing state."""
    # the state, and what differs from one run to the next (a rerun must write the same bytes)
    skip = {V.STATUS, V.REASON, V.UPDATED, V.PLACED, V.NS + "unpack_stats", V.ATTEMPTS}
    return [(k, v) for k, vals in avus.items() if k.startswith(V.NS) and k not in skip for v in vals]


def description_files(zone: Zone, snapshot: str, manifest_max_bytes: int = 1 << 20,
                      listing: Optional[Dict[str, Tuple[int, str]]] = None) -> Dict[str, bytes]:
    """name -> bytes of both files, from the snapshot as it is now (listing: its objects, when known)."""
    items = members(zone, snapshot, manifest_max_bytes, listing)
    avus = V.as_dict(zone.metadata(snapshot))
    crate = ro_crate(snapshot, avus, items)
    return {PAYLOAD_MANIFEST: payload_manifest(items),
            DESCRIPTION: (json.dumps(crate, indent=1, ensure_ascii=False) + "\n").encode("utf-8")}


def _same(zone: Zone, path: str, size: int, data: bytes) -> bool:
    if size != len(data):
        return False
    with zone.open_read(path) as f:
        return bytes(f.read()) == data


def write_description(zone: Zone, snapshot: str, reader: Optional[str] = None,
                      manifest_max_bytes: int = 1 << 20, own_unfinished: bool = False) -> Dict[str, Any]:
    """Write the files that are absent, never overwriting one that is there.

    own_unfinished (the delayed run, before the hand-over, when everything in the snapshot is the service
    account's own unfinished work): a file that is there but not what this run would write was left by a
    run that died while writing it; it is removed and written again, like a partial content/. The bytes
    are the same on every run (nothing that changes between runs goes in), so a complete file is kept.
    Otherwise (the owner's rule for an older snapshot) each file is written under a temporary name and
    renamed, so a crash never leaves a half-written file under the final name; a leftover temporary file
    is removed first. reader: a user to give `read` on the new files."""
    from policy.fixity import _objects

    listing = _objects(zone, snapshot)  # one listing: which files are there, and every checksum
    present = [n for n in FILES if snapshot + "/" + n in listing]
    if len(present) == len(FILES) and not own_unfinished:
        return {"snapshot": snapshot, "written": [], "kept": present}
    data = description_files(zone, snapshot, manifest_max_bytes, listing)
    written, kept = [], []
    for name in FILES:
        final = snapshot + "/" + name
        if name in present:
            if not own_unfinished or _same(zone, final, listing[final][0], data[name]):
                kept.append(name)
                continue
            zone.remove_object(final)
        if own_unfinished:
            with zone.open_new(final) as w:
                w.write(data[name])
        else:
            tmp = snapshot + "/." + name + PART
            if tmp in listing:
                zone.remove_object(tmp)  # a run that died while writing it: our own leftover
            with zone.open_new(tmp) as w:
                w.write(data[name])
            zone.rename(tmp, final)
        if reader is not None:
            zone.set_acl(final, reader, "read")
        written.append(name)
    return {"snapshot": snapshot, "written": written, "kept": kept}
