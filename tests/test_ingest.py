"""The save path end to end on the simulated zone, through the fake PREP runtime and core.py.d.

Every drop here goes the way it would on a server: an upload fires the PEP of
core.py.d, the PEP queues a delayed rule, the delay server runs it as the
service account.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import pytest
from helpers import FIXTURES, OMERO_SERVER, config_with, drop, enrolled_deployment, manifest_doc, sha256_file

from policy import vocabulary as V
from policy.errors import NoPermission
from policy.ingest import drop_status
from policy.manifest import new_drop_id
from policy.process import process_drop

SVC = "omero-svc"


@pytest.fixture
def dep(tmp_path: Any) -> Any:
    """The save path alone: unpacking off, so a good drop ends `placed` (test_unpack.py covers the rest)."""
    return enrolled_deployment(str(tmp_path / "zone"), config_with(enabled=False))


def avus(d: Any, path: str) -> Dict[str, List[str]]:
    return V.as_dict(d.catalog.metadata(path))


def acl_set(d: Any, path: str) -> set:
    return {(a.user, a.level) for a in d.catalog.acl(path)}


def vault_bytes(d: Any, path: str) -> bytes:
    """The bytes behind a data object, read from the vault directly (inspection, no ACL check)."""
    row = d.catalog._obj_row(path)
    assert row is not None, path
    with open(row[8], "rb") as f:
        return f.read()


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_fixture_packet_is_placed_owned_by_mapped_user(dep: Any, key: str) -> None:
    archive = FIXTURES[key]
    drop_id, up = drop(dep, archive)
    assert up.manifest_pep.client_error is None and up.archive_pep.client_error is None
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "placed", st
    snap = st.snapshot
    assert snap is not None and snap.startswith("/tempZone/home/alice/omero-snapshots/")
    # owner is the mapped user; the service account holds read only, everywhere below
    for path, _kind in dep.catalog.walk(snap):
        assert acl_set(dep, path) == {("alice", "own"), (SVC, "read_object")}, path
    name = manifest_doc(archive)["archive"]["name"]
    assert vault_bytes(dep, snap + "/" + name) == open(archive, "rb").read()
    meta = avus(dep, snap)
    assert meta[V.STATUS] == ["placed"]
    assert meta[V.DROP_ID] == [drop_id]
    assert meta[V.IRODS_USER] == ["alice"]
    assert meta[V.OMERO_USER] == ["jdoe"] and meta[V.OMERO_USER_ID] == ["52"]
    assert meta[V.OMERO_GROUP] == ["lab"] and meta[V.OMERO_SERVER] == [OMERO_SERVER]
    assert meta[V.ARCHIVE_SHA256] == [sha256_file(archive)]
    assert meta[V.OBJECT] == ["Image:51"]
    assert meta[V.LABEL] == ["my label"]
    # the landing record points at the snapshot and the drop collection is empty
    landing = dep.config.landing_collection + "/" + drop_id
    assert avus(dep, landing)[V.SNAPSHOT_PATH] == [snap]
    assert dep.catalog.list_collection(landing).data_objects == []


def test_service_account_cannot_touch_a_placed_snapshot(dep: Any) -> None:
    drop_id, _ = drop(dep, FIXTURES["image_tar"])
    snap = drop_status(dep.admin(), dep.config, drop_id).snapshot
    svc = dep.zone_as(SVC)
    with pytest.raises(NoPermission):
        svc.rename(snap + "/transfer.tar", snap + "/x.tar")
    with pytest.raises(NoPermission):
        svc.apply_metadata(snap, [V.MetaOp("add", "x", "y")])
    with pytest.raises(NoPermission):
        svc.remove_object(snap + "/manifest.json")
    assert svc.read_small(snap + "/manifest.json", 65536)  # but it can still read


def test_two_drops_same_label_same_second_give_two_snapshots(dep: Any) -> None:
    archive = FIXTURES["dataset_zip"]
    created = "2026-11-25T10:00:00Z"
    ids = ["20261125T100000Z-aaaaaaaa1111", "20261125T100000Z-bbbbbbbb2222"]
    snaps = []
    for i in ids:
        drop(dep, archive, manifest_doc(archive, i, created=created))
        snaps.append(drop_status(dep.admin(), dep.config, i).snapshot)
    assert snaps[0] != snaps[1]
    assert all(s and "20261125T100000Z_jdoe_my-label_" in s for s in snaps)


def test_object_already_at_destination_is_never_modified(dep: Any) -> None:
    """Pre-create the exact computed snapshot path with other content: the drop takes the next name."""
    archive = FIXTURES["image_tar"]
    drop_id = "20261125T100000Z-cccccccc3333"
    doc = manifest_doc(archive, drop_id, created="2026-11-25T10:00:00Z")
    root = "/tempZone/home/alice/omero-snapshots"
    squatter = root + "/20261125T100000Z_jdoe_my-label_cccc3333"
    alice = dep.zone_as("alice")
    alice.create_collection(squatter)
    with alice.open_new(squatter + "/transfer.tar") as f:
        f.write(b"alice's own bytes")
    drop(dep, archive, doc)
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "placed"
    assert st.snapshot == squatter + "-2"
    assert vault_bytes(dep, squatter + "/transfer.tar") == b"alice's own bytes"
    assert V.DROP_ID not in avus(dep, squatter)


def test_rerun_is_idempotent(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive)
    first = drop_status(dep.admin(), dep.config, drop_id)
    before = dep.catalog.walk("/tempZone/home/alice")
    # the delay server (or an admin) runs the rule again
    dep.server.irule(SVC, "omero_snapshots_process_drop", [drop_id],
                     instance="irods_rule_engine_plugin-irods_rule_language-instance")
    again = process_drop(dep.zone_as(SVC), dep.config, _mapping(dep), drop_id)
    assert again.snapshot == first.snapshot and again.status == "placed"
    assert dep.catalog.walk("/tempZone/home/alice") == before


def _mapping(dep: Any) -> Any:
    from policy.mapping import load_mapping

    return load_mapping(dep.mapping_path)


def test_pep_firing_twice_schedules_once(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, run=False)
    path = dep.config.landing_collection + "/" + drop_id + "/manifest.json"
    from simzone.prep import PepOutcome

    before = [r for r in dep.catalog.delay_rows() if r[4] == "pending"]
    assert len(before) == 2  # create()'s empty arrival (a late fallback) and the arrival with the bytes
    dep.server.fire_write_peps(path, SVC, 10, "prc", PepOutcome())  # a third arrival, whole: nothing more
    pending = [r for r in dep.catalog.delay_rows() if r[4] == "pending"]
    assert pending == before
    assert pending[0][3] == "callback.omero_snapshots_process_drop('{}', 'if-unstarted')".format(drop_id)
    pending = pending[1:]
    assert pending[0][1] == SVC and pending[0][3] == "callback.omero_snapshots_process_drop('{}')".format(drop_id)
    assert "<INST_NAME>irods_rule_engine_plugin-python-instance</INST_NAME>" in pending[0][2]


def test_iput_style_upload_triggers_too(dep: Any) -> None:
    archive = FIXTURES["dataset_zip"]
    doc = manifest_doc(archive)
    drop_id = doc["drop_id"]
    dep.upload_drop(archive, json.dumps(doc).encode(), drop_id, archive_name="transfer.zip", api="put")
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "placed"


def test_uploads_outside_landing_cost_no_catalog_call(dep: Any) -> None:
    dep.add_user("bob")
    before = dict(dep.catalog.calls)
    out = dep.server.client_put("bob", "/tempZone/home/bob/manifest.json", b"{}")
    # create() + open('w'): the PEP fires for the empty replica, then for the written one (round 9)
    assert out.fired == ["pep_resource_modified_post"] * 2 and out.client_error is None
    made = {k: v - before.get(k, 0) for k, v in dep.catalog.calls.items() if v != before.get(k, 0)}
    # only the client's own upload touched the catalog, not the PEP
    assert set(made) <= {"open_new", "create_object", "write", "stat"}, made


def test_broken_config_never_fails_an_upload(dep: Any) -> None:
    with open(os.path.join(dep.config_dir, "config.json"), "w") as f:
        f.write("{ not json")
    drop_id, up = drop(dep, FIXTURES["image_tar"], run=False)
    assert up.manifest_pep.client_error is None
    assert dep.catalog.delay_rows() == []


# ---------------------------------------------------------------------- refusals
def _assert_quarantined(dep: Any, drop_id: str, archive: str, archive_name: str, reason_part: str,
                        rule: str) -> None:
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "quarantined", st
    assert reason_part in (st.reason or ""), st.reason
    q = dep.config.quarantine_collection + "/" + drop_id
    assert st.location == q
    meta = avus(dep, q)
    assert meta[V.NS + "refusal_rule"] == [rule]
    if archive_name:
        assert vault_bytes(dep, q + "/" + archive_name) == open(archive, "rb").read()
    assert not dep.catalog.exists(dep.config.landing_collection + "/" + drop_id)
    assert dep.catalog.walk("/tempZone/home/alice/omero-snapshots") == [
        ("/tempZone/home/alice/omero-snapshots", "collection")]


def test_invalid_json_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    drop_id = new_drop_id()
    drop(dep, archive, {"drop_id": drop_id}, raw=b'{"drop_id": "x",', drop_id=drop_id, archive_name="transfer.tar")
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "not valid JSON", "manifest_invalid")


@pytest.mark.parametrize("field,value,expect", [
    ("sha256", "xyz", "manifest.archive.sha256: 'xyz' does not match"),
    ("format", "rar", "manifest.archive.format: 'rar' is not one of"),
    ("size", -1, "manifest.archive.size: -1 is less than the minimum of 0"),
])
def test_schema_violations_are_quarantined_with_the_field(dep: Any, field: str, value: Any, expect: str) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    doc["archive"][field] = value
    drop_id, _ = drop(dep, archive, doc, raw=json.dumps(doc).encode(), drop_id=doc["drop_id"])
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", expect, "manifest_invalid")


def test_missing_required_and_extra_fields_are_named(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    del doc["who"]["omero_user"]
    doc["surprise"] = 1
    drop_id, _ = drop(dep, archive, doc, raw=json.dumps(doc).encode(), drop_id=doc["drop_id"])
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert "manifest.who: 'omero_user' is a required property" in st.reason
    assert "surprise" in st.reason


def test_checksum_mismatch_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive, archive_sha256="0" * 64)
    drop_id, _ = drop(dep, archive, doc)
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "checksum mismatch", "checksum_mismatch")


def test_size_mismatch_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive, archive_size=os.path.getsize(archive) + 1)
    drop_id, _ = drop(dep, archive, doc)
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "size mismatch", "size_mismatch")


def test_missing_archive_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    drop_id, _ = drop(dep, archive, doc, archive_name="other.tar")
    _assert_quarantined(dep, drop_id, archive, "", "archive is missing", "archive_missing")
    q = dep.config.quarantine_collection + "/" + drop_id
    assert vault_bytes(dep, q + "/other.tar") == open(archive, "rb").read()


def test_unmapped_user_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive, omero_user="stranger")
    drop_id, _ = drop(dep, archive, doc)
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "OMERO user 'stranger'", "unmapped")
    assert "omero-snapshots enrol" in (drop_status(dep.admin(), dep.config, drop_id).reason or "")


def test_user_mapped_to_rodsadmin_is_quarantined(dep: Any) -> None:
    from policy.mapping import MappingEntry, load_mapping, save_mapping

    mapping = load_mapping(dep.mapping_path).with_entry(MappingEntry(OMERO_SERVER, "boss", "rods"))
    save_mapping(dep.mapping_path, mapping)
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, manifest_doc(archive, omero_user="boss"))
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "a rodsadmin", "mapped_to_rodsadmin")


def test_user_mapped_to_service_account_is_quarantined(dep: Any) -> None:
    from policy.mapping import MappingEntry, load_mapping, save_mapping

    save_mapping(dep.mapping_path, load_mapping(dep.mapping_path).with_entry(MappingEntry(OMERO_SERVER, "s", SVC)))
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, manifest_doc(archive, omero_user="s"))
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "service account", "mapped_to_service_account")


def test_mapped_but_not_enrolled_is_quarantined(dep: Any) -> None:
    from policy.mapping import MappingEntry, load_mapping, save_mapping

    dep.add_user("carol")
    save_mapping(dep.mapping_path, load_mapping(dep.mapping_path).with_entry(MappingEntry(OMERO_SERVER, "c", "carol")))
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, manifest_doc(archive, omero_user="c"))
    _assert_quarantined(dep, drop_id, archive, "transfer.tar", "not enrolled", "not_enrolled")


def test_drop_id_mismatch_is_quarantined(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    drop_id = new_drop_id() + "x"
    drop(dep, archive, doc, drop_id=drop_id)
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "quarantined" and "does not match" in (st.reason or "")


def test_drop_by_another_user_is_not_processed_at_all(dep: Any) -> None:
    dep.add_user("mallory")
    dep.catalog.set_acl(SVC, dep.config.landing_collection, "mallory", "modify_object")
    archive = FIXTURES["image_tar"]
    drop_id, up = drop(dep, archive, as_user="mallory")
    assert up.manifest_pep.client_error is None
    landing = dep.config.landing_collection + "/" + drop_id
    assert dep.catalog.metadata(landing) == []  # no status written: untouched
    assert dep.catalog.delay_rows() == []
    assert vault_bytes(dep, landing + "/transfer.tar") == open(archive, "rb").read()
    # even if the delayed rule is run for it by hand, it refuses and changes nothing
    out = process_drop(dep.zone_as(SVC), dep.config, _mapping(dep), drop_id)
    assert out.status == "refused" and "not written by the service account" in (out.reason or "")
    assert dep.catalog.metadata(landing) == []


def test_quarantine_name_clash_keeps_both(dep: Any) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive, archive_sha256="1" * 64)
    drop_id = doc["drop_id"]
    q = dep.config.quarantine_collection
    svc = dep.zone_as(SVC)
    svc.create_collection(q + "/" + drop_id, recursive=True)
    drop(dep, archive, doc)
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "quarantined"
    assert dep.catalog.exists(q + "/" + drop_id + "-2/transfer.tar")


def test_a_pep_that_says_empty_for_a_manifest_with_bytes_is_judged_by_the_catalog(dep: Any) -> None:
    """The PEP's file_size said 0 but the catalog holds the manifest's bytes: the drop is not left to the 60 s
    fallback (tests/test_manifest_arrival.py has the really empty cases)."""
    from simzone.prep import PepOutcome

    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, run=False)
    # the manifest's first close happened at size 0 in this scenario: what was scheduled then?
    dep.catalog.db.execute("DELETE FROM delay")
    dep.catalog.apply_metadata(SVC, json.dumps({"entity_name": dep.config.landing_collection + "/" + drop_id,
                                                "entity_type": "collection", "operations": [
                                                    {"operation": "remove", "attribute": V.STATUS,
                                                     "value": "accepted", "units": ""}]}))  # the verdict's
    path = dep.config.landing_collection + "/" + drop_id + "/manifest.json"
    dep.server.fire_write_peps(path, SVC, 0, "prc", PepOutcome())
    rows = [r for r in dep.catalog.delay_rows() if r[4] == "pending"]
    assert len(rows) == 1 and "<PLUSET>{}s</PLUSET>".format(dep.config.delay_seconds) in rows[0][2], rows
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "placed"
