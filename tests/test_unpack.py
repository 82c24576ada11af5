"""Unpacking placed snapshots, on both paths (streaming and native fast path), through the fake PREP runtime."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from typing import Any, List, Tuple

import archive_corpus as corpus
import pytest
from helpers import FIXTURES, config_with, drop, enrolled_deployment, manifest_doc, members_of

from policy import vocabulary as V
from policy.ingest import drop_status
from simzone.prep import NATIVE_INSTANCE

SVC = "omero-svc"
PATHS = ["auto", "never"]  # fast_path setting: auto = native extraction for tar, never = streaming only
ROOT = "/tempZone/home/alice/omero-snapshots"
TIME_ATTRS = {V.UPDATED, V.PLACED, V.CREATED, V.NS + "unpack_stats"}  # stats: timings, RSS


def vault_bytes(d: Any, path: str) -> bytes:
    row = d.catalog._obj_row(path)
    assert row is not None, path
    with open(row[8], "rb") as f:
        return f.read()


def objects_under(d: Any, top: str) -> List[str]:
    return [p for p, k in d.catalog.walk(top) if k == "data_object"]


def archive_file(tmp_path: Any, data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        name = "a.tar.gz"
    elif data[:2] == b"PK":
        name = "a.zip"
    else:
        name = "a.tar"
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(params=PATHS)
def dep(request: Any, tmp_path: Any) -> Any:
    return enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path=request.param))


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_fixture_packets_reach_complete_byte_for_byte(dep: Any, key: str) -> None:
    archive = FIXTURES[key]
    drop_id, _ = drop(dep, archive)
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "complete", st
    snap = st.snapshot
    content = snap + "/content"
    expected = members_of(archive)
    got = {p[len(content) + 1:]: p for p in objects_under(dep, content)}
    assert set(got) == set(expected)
    for rel, data in expected.items():
        path = got[rel]
        assert vault_bytes(dep, path) == data
        stat = dep.catalog.stat("alice", path)
        assert stat.checksum == "sha2:" + __import__("base64").b64encode(hashlib.sha256(data).digest()).decode()
    meta = V.as_dict(dep.catalog.metadata(snap))
    assert meta[V.STATUS] == ["complete"]
    assert meta[V.MEMBER_COUNT] == [str(len(expected))]
    assert meta[V.MEMBER_BYTES] == [str(sum(len(b) for b in expected.values()))]
    assert meta[V.CONTENT] == [content]
    is_fast = dep.config.unpack.fast_path == "auto" and archive.endswith(".tar")
    assert meta[V.NS + "unpack_path"] == ["fast" if is_fast else "streaming"]
    # searchable metadata from transfer.xml: image names and provenance
    xml = expected["transfer.xml"].decode()
    import re

    names = set(re.findall(r'<Image ID="Image:\d+" Name="([^"]+)"', xml))
    assert names and set(meta[V.NS + "packet.image_name"]) == {n.replace("&amp;", "&") for n in names}
    assert meta[V.NS + "packet.original_user"]
    # handed over after unpacking: the user owns every member, the service account reads
    for path, _ in dep.catalog.walk(snap):
        assert {(a.user, a.level) for a in dep.catalog.acl(path)} == {("alice", "own"), (SVC, "read_object")}


@pytest.mark.parametrize("name", sorted(corpus.HOSTILE))
def test_hostile_archive_fails_with_reason_and_leaves_nothing(dep: Any, tmp_path: Any, name: str) -> None:
    data, rule = corpus.HOSTILE[name]()
    archive = archive_file(tmp_path, data)
    zone_before = {p for p, _ in dep.catalog.walk("/tempZone")}
    drop_id, _ = drop(dep, archive)
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "failed", (name, st)
    assert rule in (st.reason or ""), (name, st.reason)
    snap = st.snapshot
    assert not dep.catalog.exists(snap + "/content")
    assert vault_bytes(dep, snap + "/" + manifest_doc(archive)["archive"]["name"]) == data
    new = {p for p, _ in dep.catalog.walk("/tempZone")} - zone_before
    outside = [p for p in new if not (p.startswith(snap) or "/landing/" in p or p.endswith("/landing/" + drop_id))]
    assert outside == [], outside
    assert {(a.user, a.level) for a in dep.catalog.acl(snap)} == {("alice", "own"), (SVC, "read_object")}


def test_gzip_bomb_is_refused(dep: Any, tmp_path: Any) -> None:
    data, rule = corpus.gzip_bomb()
    drop_id, _ = drop(dep, archive_file(tmp_path, data))
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "failed" and "expansion_ratio" in (st.reason or "")


def test_too_many_members_is_refused(tmp_path: Any) -> None:
    from policy.config import default_config_dict

    cfg = default_config_dict()
    cfg["limits"]["max_members"] = 100
    d = enrolled_deployment(str(tmp_path / "zone"), cfg)
    data, _ = corpus.many_members_tar(101)
    drop_id, _ = drop(d, archive_file(tmp_path, data))
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed" and "too_many_members" in (st.reason or "")


def test_missing_transfer_xml_is_reported_not_a_crash(dep: Any, tmp_path: Any) -> None:
    data = corpus.build_tar([("./data/a.bin", b"x" * 100)])
    drop_id, _ = drop(dep, archive_file(tmp_path, data))
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "complete"
    assert "no transfer.xml" in (st.reason or "")


def test_invalid_transfer_xml_is_reported(dep: Any, tmp_path: Any) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><OME>&a;</OME>'
    data = corpus.build_tar([("./transfer.xml", bomb)])
    drop_id, _ = drop(dep, archive_file(tmp_path, data))
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "complete" and "document type" in (st.reason or "")


# ---------------------------------------------------------------------- fast path: archive swapped
def test_archive_swapped_between_scan_and_extraction_fails(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="auto"))
    good = corpus.build_tar([("./transfer.xml", b"<OME/>"), ("./img/a.tif", b"A" * 1000)])
    evil = corpus.build_tar([("./transfer.xml", b"<OME/>"), ("./img/a.tif", b"B" * 1000)])
    assert len(good) == len(evil)

    def swap(op: str, args: Tuple[Any, ...]) -> None:
        if op == "tar_file_extract":
            row = d.catalog._obj_row(args[0])
            with open(row[8], "wb") as f:
                f.write(evil)

    d.catalog.fault_hook = swap
    drop_id, _ = drop(d, archive_file(tmp_path, good))
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == "failed"
    assert "fast path" in (st.reason or "") and "checksum" in (st.reason or "")
    assert not d.catalog.exists(st.snapshot + "/content")


# ---------------------------------------------------------------------- crash and rerun
SIX = [("./transfer.xml", b"<OME/>")] + [("./img/%d.tif" % i, bytes([65 + i]) * (1000 + i)) for i in range(6)]
KILLER = """
import os, sys
sys.path.insert(0, {root!r})
from simzone.deploy import SimulatedDeployment
d = SimulatedDeployment({zone!r})
n = [0]
def kill(op, args):
    if op in ("open_new", "put_new") and "/content/" in str(args[0]):
        if n[0] == {k}:
            os._exit(137)
        n[0] += 1
d.catalog.fault_hook = kill
d.run_delay_server()
"""


def _state(d: Any, snap: str) -> List[Tuple[Any, ...]]:
    """Everything a user would see under the snapshot, minus times: paths, sizes, checksums, ACLs, AVUs."""
    out = []
    for path, kind in d.catalog.walk(snap):
        rel = path[len(snap):]
        st = d.catalog.stat("alice", path)
        acl = sorted((a.user, a.level) for a in d.catalog.acl(path))
        avus = sorted((a.attribute, a.value) for a in d.catalog.metadata(path) if a.attribute not in TIME_ATTRS)
        out.append((rel, kind, st.size, st.checksum, acl, avus))
    return out


@pytest.mark.parametrize("fast_path", PATHS)
@pytest.mark.parametrize("kill_at", [0, 2, 5])
def test_kill_between_members_then_rerun_converges(tmp_path: Any, fast_path: str, kill_at: int) -> None:
    data = corpus.build_tar(SIX)
    archive = archive_file(tmp_path, data)
    doc = manifest_doc(archive, "20261125T100000Z-dddddddd4444", created="2026-11-25T10:00:00Z")
    # reference: a clean run in its own zone
    ref = enrolled_deployment(str(tmp_path / "ref"), config_with(fast_path=fast_path))
    drop(ref, archive, doc)
    ref_status = drop_status(ref.admin(), ref.config, doc["drop_id"])
    assert ref_status.status == "complete"
    # the victim: the delay server process is killed while writing member kill_at
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path=fast_path))
    drop(d, archive, doc, run=False)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=root, zone=d.zone_dir, k=kill_at)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    mid = drop_status(d.admin(), d.config, doc["drop_id"])
    assert mid.status in ("unpacking", "processing"), mid
    # the rerun (the rule run again, as the service account)
    # the killed run's lock is still there: a plain rerun stops at once and changes nothing
    blocked = d.server.irule(SVC, "omero_snapshots_process_drop", [doc["drop_id"]], instance=NATIVE_INSTANCE)
    assert "another run is processing this drop" in json.loads(blocked[0])["reason"]
    assert drop_status(d.admin(), d.config, doc["drop_id"]).status == mid.status
    # the admin's rerun breaks the stale lock
    d.server.irule(SVC, "omero_snapshots_process_drop", [doc["drop_id"], "break-lock"], instance=NATIVE_INSTANCE)
    final = drop_status(d.admin(), d.config, doc["drop_id"])
    assert final.status == "complete" and final.snapshot == ref_status.snapshot
    assert _state(d, final.snapshot) == _state(ref, ref_status.snapshot)
    # no leftover anywhere: exactly one snapshot, nothing else in the root, no lock left behind
    assert [p for p, k in d.catalog.walk(ROOT) if p.count("/") == ROOT.count("/") + 1] == [final.snapshot]
    assert d.catalog.walk(d.config.landing_collection + "/.locks") == [(d.config.landing_collection + "/.locks",
                                                                        "collection")]


# ---------------------------------------------------------------------- cost per member (streaming)
def _calls_for(tmp_path: Any, n: int, sub: str) -> int:
    d = enrolled_deployment(str(tmp_path / sub), config_with(fast_path="never"))
    data = corpus.build_tar([("./transfer.xml", b"<OME/>")] + [("./m/%04d.bin" % i, b"x" * 10) for i in range(n)])
    drop(d, archive_file(tmp_path, data), run=False)
    before = dict(d.catalog.calls)
    d.run_delay_server()
    return sum(v - before.get(k, 0) for k, v in d.catalog.calls.items() if k != "write")


def test_streaming_path_makes_at_most_four_catalog_calls_per_member(tmp_path: Any) -> None:
    small, large = _calls_for(tmp_path, 10, "a"), _calls_for(tmp_path, 110, "b")
    per_member = (large - small) / 100
    assert per_member <= 4, per_member


def test_transfer_xml_summary_reads_the_fixture() -> None:
    from policy.transfer_xml import summarize

    with open(os.path.join(os.path.dirname(FIXTURES["image_tar"]), "transfer.xml"), "rb") as f:
        s = summarize(io.BytesIO(f.read()), block=97)
    assert [i for i, _ in s.objects["Image"]] == [1678, 1679]
    assert s.objects["Image"][0][1] == "combined_result.tiff"
    # this transfer.xml predates omero-cli-transfer 1.0 (no CLITransferMetadata): no provenance, no crash
    assert s.provenance == {}


def test_200k_tiny_members_over_the_default_limit_are_refused_before_anything_is_written(tmp_path: Any) -> None:
    """The acceptance case at full size, on the fast path (its safety scan runs before any write).

    The streaming path refuses the same archive at member 100,001 and then removes what it wrote;
    at this size that run is left to the opt-in FULL=1 run to keep CI short.
    """
    paths = ["auto", "never"] if os.environ.get("FULL") == "1" else ["auto"]
    archive = str(tmp_path / "many.tar")
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(200_000):
            t.addfile(tarfile.TarInfo("./m/%06d" % i))
    for fast_path in paths:
        d = enrolled_deployment(str(tmp_path / ("zone-" + fast_path)), config_with(fast_path=fast_path))
        assert d.config.limits.max_members == 100_000
        drop_id, _ = drop(d, archive)
        st = drop_status(d.admin(), d.config, drop_id)
        assert st.status == "failed" and "too_many_members" in (st.reason or ""), st
        assert not d.catalog.exists(st.snapshot + "/content")
        if fast_path == "auto":
            assert d.catalog.calls.get("open_new", 0) <= 2  # only the upload's own archive and manifest
