"""Old packets keep loading (issue 19 part 3): every omero-cli-transfer packet in ../shared/fixtures/ (the
facility's reference packets, omero-cli-transfer 0.8.0 and newer) and the copies in tests/data/ is saved as a
snapshot on the simulated zone exactly as it was packed, then loaded back as far as can be done offline: the
archive reaches the Unpacker (`omero transfer unpack`) byte for byte, the Unpacker's own first step (reading
the packet's transfer.xml) finds every image, and the Load report is right (all imported: complete; one
missing: INCOMPLETE, naming the count).

The manifest schema's versioning rule these snapshots rely on is in docs/schemas.md ("Versioning").
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tarfile
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import OMERO_SERVER, drop, enrolled_deployment, manifest_doc

from omero_client.load import load
from omero_client.transfer_xml import index_of_archive
from policy import vocabulary as V
from policy.ingest import drop_status
from simzone.zone import ClientZone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "fixtures")
SVC = "omero-svc"


def packets() -> List[str]:
    """Every .tar/.zip packet under ../shared/fixtures/ (when this checkout has it) and tests/data/."""
    found = sorted(glob.glob(os.path.join(SHARED, "**", "*.tar"), recursive=True)
                   + glob.glob(os.path.join(SHARED, "**", "*.zip"), recursive=True))
    found += sorted(glob.glob(os.path.join(ROOT, "tests", "data", "*.tar"))
                    + glob.glob(os.path.join(ROOT, "tests", "data", "*.zip")))
    return found


def transfer_xml(archive: str) -> bytes:
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read("transfer.xml")
    with tarfile.open(archive) as t:
        for m in t.getmembers():
            if m.name.lstrip("./") == "transfer.xml":
                f = t.extractfile(m)
                assert f is not None
                return f.read()
    raise AssertionError("no transfer.xml in " + archive)


def packer_version(archive: str) -> Optional[Tuple[int, ...]]:
    """omero-cli-transfer's version from the packet's CLITransferMetadata (None: a packet before 0.8.0)."""
    m = re.search(rb"<CLITransferMetadata.*?<version>([0-9.]+)</version>", transfer_xml(archive), re.S)
    return tuple(int(x) for x in m.group(1).decode().split(".")) if m else None


class RecordingUnpacker:
    """`omero transfer unpack` up to what can run offline: it gets the archive path, reads the packet's
    transfer.xml as omero-cli-transfer does first, and reports NEW objects for the images it would import."""

    def __init__(self, skip: int = 0) -> None:
        self.skip = skip
        self.seen: List[Tuple[str, str, int]] = []

    def unpack(self, path: str) -> List[Tuple[str, int]]:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        images = index_of_archive(path).images
        self.seen.append((os.path.splitext(path)[1], digest, len(images)))
        return [("Image", 1000 + i) for i in range(len(images) - self.skip)]


def test_the_fixtures_are_found() -> None:
    shared = [p for p in packets() if os.path.abspath(p).startswith(os.path.abspath(SHARED))]
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/fixtures/ is not beside this checkout; only tests/data/'s packets are loaded")
    assert shared, "no packet found under ../shared/fixtures/"


@pytest.mark.parametrize("archive", packets(), ids=lambda p: os.path.relpath(p, os.path.dirname(ROOT)))
def test_a_snapshot_of_an_old_packet_loads(archive: str, tmp_path: Any) -> None:
    version = packer_version(archive)
    assert version is None or version >= (0, 8, 0), version
    fmt = "zip" if archive.endswith(".zip") else "tar"
    d = enrolled_deployment(str(tmp_path / "zone"))
    doc = manifest_doc(archive, packer_version=".".join(map(str, version)) if version else "0.8.0")
    drop_id, _ = drop(d, archive, doc)
    st = drop_status(d.zone_as(SVC), d.config, drop_id)
    assert st.status == V.COMPLETE, st
    avus = V.as_dict(d.catalog.metadata(str(st.snapshot)))
    expected = len(index_of_archive(archive).images)
    assert avus[V.NS + "packet.image_count"] == [str(expected)] and expected >= 1
    if version is not None:
        assert avus[V.NS + "packet.version"] == [".".join(map(str, version))]

    with open(archive, "rb") as f:
        original = hashlib.sha256(f.read()).hexdigest()
    zone = ClientZone(d.server, SVC)
    work = str(tmp_path / "scratch")
    os.makedirs(work)
    unpacker = RecordingUnpacker()
    res = load(zone, str(st.snapshot), "jdoe", OMERO_SERVER, unpacker, work, landing=d.config.landing_collection)
    assert unpacker.seen == [("." + fmt, original, expected)]  # intact, under a name unpack accepts
    assert res.report is not None and (res.report.expected_images, res.report.imported_images) == (expected, expected)
    assert "Images: {0} of the {0} in the snapshot imported.".format(expected) in res.message
    assert "INCOMPLETE" not in res.message and os.listdir(work) == []

    partial = load(zone, str(st.snapshot), "jdoe", OMERO_SERVER, RecordingUnpacker(skip=1), work,
                   landing=d.config.landing_collection)
    assert "Images: {} of the {} in the snapshot imported.".format(expected - 1, expected) in partial.message
    assert "INCOMPLETE" in partial.message


def test_packet_versions_covered() -> None:
    """Which omero-cli-transfer versions the packets above were made with (the report names them)."""
    versions: Dict[str, List[str]] = {}
    for p in packets():
        v = packer_version(p)
        versions.setdefault(".".join(map(str, v)) if v else "before 0.8.0", []).append(os.path.basename(p))
    assert versions and all(k == "before 0.8.0" or tuple(map(int, k.split("."))) >= (0, 8, 0) for k in versions)


# ---------------------------------------------------------------------- the manifest's versioning rule
MANIFESTS_V1 = os.path.join(ROOT, "tests", "data", "manifests-v1")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(MANIFESTS_V1) if n.endswith(".json")))
def test_every_v1_manifest_ever_written_still_parses(name: str) -> None:
    """Rule 1 (docs/schemas.md "Versioning"): v1 is frozen; these files are never changed or removed."""
    from policy.manifest import parse_manifest

    with open(os.path.join(MANIFESTS_V1, name), "rb") as f:
        data = f.read()
    m = parse_manifest(data, expected_drop_id=json.loads(data)["drop_id"])
    assert m.drop_id == json.loads(data)["drop_id"]


def test_a_newer_manifest_version_is_refused_by_name() -> None:
    """Rule 4: a reader older than the manifest says so and what to do."""
    from policy.manifest import MANIFEST_VERSION, ManifestError, parse_manifest

    with open(os.path.join(MANIFESTS_V1, "schema-example-0.json")) as f:
        doc = json.load(f)
    doc["manifest_version"] = MANIFEST_VERSION + 1
    with pytest.raises(ManifestError) as e:
        parse_manifest(json.dumps(doc).encode(), expected_drop_id=doc["drop_id"])
    assert "is newer than this policy reads" in str(e.value) and "upgrade the policy" in str(e.value)
