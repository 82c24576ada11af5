"""End-to-end scenarios, written once, run on two zones.

Each `scenario_<name>(h)` drives a zone through a Harness (tests/harness.py) the way OMERO and an
admin would, and asserts what a person would check with ils/imeta. tests/test_scenarios.py runs
them on the simulated zone (default suite); tests/test_live.py runs the very same functions on a
real iRODS (`pytest -m live`). A scenario never reaches into one zone's internals: it makes its
own uniquely named users and OMERO identities, so runs never see each other's data.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import Any, Callable, Dict, List, Optional

import archive_corpus as corpus
from harness import Harness
from helpers import members_of

from policy import vocabulary as V
from policy.errors import IrodsError
from policy.manifest import build_manifest, new_drop_id
from simzone.deploy import archive_format, file_sha256

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURES = {
    "image_tar": os.path.join(DATA, "valid_single_image.tar"),
    "dataset_zip": os.path.join(DATA, "valid_single_dataset.zip"),
    "plate_zip": os.path.join(DATA, "simple_plate.zip"),
}
REFUSAL_RULE = V.NS + "refusal_rule"


# ---------------------------------------------------------------------- building drops
def manifest(h: Harness, archive: str, omero_user: str, drop_id: Optional[str] = None, **over: Any) -> Dict[str, Any]:
    """A valid manifest for `archive` as OMERO writes it, for `omero_user` on the harness's OMERO server."""
    fmt = archive_format(archive)
    kw: Dict[str, Any] = dict(
        drop_id=drop_id or new_drop_id(), omero_user=omero_user, omero_user_id=52, omero_group="lab",
        omero_server=h.omero_server, objects={"Image": [51]}, archive_name="transfer." + fmt,
        archive_size=os.path.getsize(archive), archive_sha256=file_sha256(archive), archive_format=fmt,
        packer_version="1.3.2", label="my label")
    kw.update(over)
    return build_manifest(**kw)


def drop(h: Harness, archive: str, doc: Dict[str, Any], as_user: Optional[str] = None,
         archive_name: Optional[str] = None) -> str:
    """Upload archive + manifest as OMERO would (the manifest last); returns the drop id."""
    drop_id = str(doc["drop_id"])
    h.upload_drop(archive, doc, drop_id, as_user=as_user, archive_name=archive_name or doc["archive"]["name"])
    return drop_id


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def irods_sha256(data: bytes) -> str:
    return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def handed_over(h: Harness, user: str) -> set:
    return {(user, "own"), (h.service_account, "read_object")}


def only_root_left(h: Harness, user: str) -> None:
    root = h.snapshot_root(user)
    assert h.walk(root) == [(root, "collection")], h.walk(root)


def assert_quarantined(h: Harness, drop_id: str, st: Dict[str, Any], archive: Optional[str], archive_name: str,
                       reason_part: str, rule: str) -> str:
    """Refused: the whole drop moved, intact, to quarantine/<drop>, with the reason and the rule."""
    assert st["status"] == "quarantined", st
    assert reason_part in (st.get("reason") or ""), st
    q = h.quarantine + "/" + drop_id
    assert st.get("location") == q, st
    assert h.metadata(q)[REFUSAL_RULE] == [rule]
    if archive is not None:
        assert h.read_bytes(q + "/" + archive_name) == file_bytes(archive)
    assert not h.exists(h.landing + "/" + drop_id)
    return q


# ---------------------------------------------------------------------- the save path and unpacking
def scenario_fixture_packets_complete(h: Harness) -> None:
    """Real omero-cli-transfer packets: placed, unpacked byte for byte, owned by the mapped user, svc read only."""
    user, omero_user = h.researcher()
    drops = {key: drop(h, path, manifest(h, path, omero_user)) for key, path in sorted(FIXTURES.items())}
    for key, drop_id in drops.items():
        archive = FIXTURES[key]
        st = h.wait(drop_id)
        assert st["status"] == "complete", (key, st)
        assert st.get("reason") is None, (key, st)
        snap = st["snapshot"]
        assert snap and snap.startswith(h.snapshot_root(user) + "/"), st
        tree = h.walk(snap)
        for path, _kind in tree:
            assert h.acl(path) == handed_over(h, user), (path, h.acl(path))
        name = "transfer." + archive_format(archive)
        assert h.read_bytes(snap + "/" + name) == file_bytes(archive)
        meta = h.metadata(snap)
        assert meta[V.STATUS] == ["complete"]
        assert meta[V.DROP_ID] == [drop_id]
        assert meta[V.IRODS_USER] == [user]
        assert meta[V.OMERO_USER] == [omero_user] and meta[V.OMERO_SERVER] == [h.omero_server]
        assert meta[V.ARCHIVE_SHA256] == [file_sha256(archive)]
        assert meta[V.OBJECT] == ["Image:51"] and meta[V.LABEL] == ["my label"]
        content = snap + "/content"
        expected = members_of(archive)
        got = {p[len(content) + 1:]: p for p, k in tree if k == "data_object" and p.startswith(content + "/")}
        assert set(got) == set(expected), (key, sorted(set(got) ^ set(expected))[:10])
        for rel, data in expected.items():
            assert h.read_bytes(got[rel]) == data, rel
        assert meta[V.MEMBER_COUNT] == [str(len(expected))]
        assert meta[V.MEMBER_BYTES] == [str(sum(len(b) for b in expected.values()))]
        # the landing record points at the snapshot; the drop collection itself is empty
        landing = h.landing + "/" + drop_id
        assert h.metadata(landing)[V.SNAPSHOT_PATH] == [snap]
        assert [p for p, k in h.walk(landing) if k == "data_object"] == []


def scenario_service_account_cannot_change_a_snapshot(h: Harness) -> None:
    """After the hand-over the service account may read, and nothing else."""
    user, omero_user = h.researcher()
    archive = FIXTURES["dataset_zip"]
    st = h.wait(drop(h, archive, manifest(h, archive, omero_user)))
    snap = st["snapshot"]
    before = {p: (h.acl(p), h.metadata(p)) for p, _ in h.walk(snap)}
    svc = h.service_zone()
    attempts: List[Callable[[], Any]] = [
        lambda: svc.rename(snap + "/transfer.zip", snap + "/renamed.zip"),
        lambda: svc.apply_metadata(snap, [V.MetaOp("add", V.NS + "tampered", "yes")]),
        lambda: svc.remove_object(snap + "/manifest.json"),
        lambda: svc.set_acl(snap, h.service_account, "own"),
    ]
    for attempt in attempts:
        try:
            attempt()
        except IrodsError:
            continue
        raise AssertionError("the service account changed a handed-over snapshot")
    assert {p: (h.acl(p), h.metadata(p)) for p, _ in h.walk(snap)} == before
    assert h.read_bytes(snap + "/transfer.zip") == file_bytes(archive)


def scenario_two_drops_same_label_same_second(h: Harness) -> None:
    """Same user, label and second: two snapshots, neither overwrites the other."""
    user, omero_user = h.researcher()
    archive = FIXTURES["dataset_zip"]
    created, stamp = "2026-11-25T10:00:00Z", "20261125T100000Z"
    ids = ["{}-{}".format(stamp, secrets.token_hex(6)) for _ in range(2)]
    for drop_id in ids:
        drop(h, archive, manifest(h, archive, omero_user, drop_id, created=created))
    snaps = [h.wait(drop_id)["snapshot"] for drop_id in ids]
    assert snaps[0] != snaps[1], snaps
    for s in snaps:
        assert s and s.startswith(h.snapshot_root(user) + "/{}_{}_my-label_".format(stamp, omero_user)), s
        assert h.read_bytes(s + "/transfer.zip") == file_bytes(archive)


# ---------------------------------------------------------------------- refusals
def scenario_checksum_mismatch_quarantined(h: Harness) -> None:
    user, omero_user = h.researcher()
    archive = FIXTURES["image_tar"]
    drop_id = drop(h, archive, manifest(h, archive, omero_user, archive_sha256="0" * 64))
    st = h.wait(drop_id)
    assert_quarantined(h, drop_id, st, archive, "transfer.tar", "checksum mismatch", "checksum_mismatch")
    only_root_left(h, user)


def scenario_unmapped_user_quarantined(h: Harness) -> None:
    user, _ = h.researcher()
    stranger = h.unique("o")
    archive = FIXTURES["image_tar"]
    drop_id = drop(h, archive, manifest(h, archive, stranger))
    st = h.wait(drop_id)
    assert_quarantined(h, drop_id, st, archive, "transfer.tar", "OMERO user '{}'".format(stranger), "unmapped")
    assert "omero-snapshots enrol" in st["reason"], st
    only_root_left(h, user)


def scenario_drop_by_another_user_not_processed(h: Harness) -> None:
    """Someone else who can write to the landing collection: the drop is left exactly as it is."""
    user, omero_user = h.researcher()
    mallory = h.create_user()
    h.allow_landing_writer(mallory)
    archive = FIXTURES["image_tar"]
    drop_id = drop(h, archive, manifest(h, archive, omero_user), as_user=mallory)
    h.settle()
    landing = h.landing + "/" + drop_id
    assert h.metadata(landing) == {}, h.metadata(landing)  # no status written: untouched
    st = h.status(drop_id)
    assert st["status"] == "received" and st.get("snapshot") is None, st
    assert h.read_bytes(landing + "/transfer.tar", as_user=mallory) == file_bytes(archive)
    assert not h.exists(h.quarantine + "/" + drop_id)
    only_root_left(h, user)


def _hostile(h: Harness, case: str) -> None:
    """A hostile archive: placed, then unpacking fails with the member-safety rule; nothing under content/."""
    data, rule = corpus.HOSTILE[case]()
    assert rule
    user, omero_user = h.researcher()
    ext = "zip" if data[:2] == b"PK" else "tar.gz" if data[:2] == b"\x1f\x8b" else "tar"
    archive = h.file("{}-{}.{}".format(case, secrets.token_hex(3), ext), data)
    drop_id = drop(h, archive, manifest(h, archive, omero_user))
    st = h.wait(drop_id)
    assert st["status"] == "failed", (case, st)
    assert rule in (st.get("reason") or ""), (case, rule, st)
    snap = st["snapshot"]
    assert snap and snap.startswith(h.snapshot_root(user) + "/"), st
    assert not h.exists(snap + "/content")
    assert h.read_bytes(snap + "/transfer." + ext) == data
    assert h.acl(snap) == handed_over(h, user)
    root = h.snapshot_root(user)
    outside = [p for p, _ in h.walk(root) if p != root and not (p == snap or p.startswith(snap + "/"))]
    assert outside == [], outside
    assert [p for p, _ in h.walk(snap) if "passwd" in p or "/etc" in p[len(snap):]] == []


def scenario_hostile_traversal(h: Harness) -> None:
    _hostile(h, "traversal")


def scenario_hostile_symlink(h: Harness) -> None:
    _hostile(h, "symlink")


def scenario_hostile_duplicate(h: Harness) -> None:
    _hostile(h, "duplicate")


# ---------------------------------------------------------------------- admin rules
def scenario_release_after_enrolment_completes(h: Harness) -> None:
    """Quarantined for want of a mapping; the admin enrols the user and releases it: it completes."""
    newcomer = h.unique("o")
    archive = FIXTURES["image_tar"]
    drop_id = drop(h, archive, manifest(h, archive, newcomer))
    st = h.wait(drop_id)
    assert st["status"] == "quarantined", st
    refused = h.admin_rule("omero_snapshots_reprocess", drop_id)
    assert not refused["ok"] and "release it" in refused["error"], refused
    user = h.create_user()
    assert h.enrol(user, newcomer)["ok"]
    res = h.admin_rule("omero_snapshots_release", drop_id)
    assert res["ok"] and res["status"] == "complete", res
    assert res["snapshot"].startswith(h.snapshot_root(user) + "/"), res
    final = h.wait(drop_id)
    assert final["status"] == "complete" and final["snapshot"] == res["snapshot"], final
    assert not h.exists(h.quarantine + "/" + drop_id)
    assert h.read_bytes(res["snapshot"] + "/transfer.tar") == file_bytes(archive)
    assert h.acl(res["snapshot"]) == handed_over(h, user)


SCENARIOS: Dict[str, Callable[[Harness], None]] = {
    name[len("scenario_"):]: fn for name, fn in sorted(globals().items())
    if name.startswith("scenario_") and callable(fn)
}
