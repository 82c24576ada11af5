"""Self-describing snapshots (issue 19 part 2, policy/describe.py) on the simulated zone: every complete snapshot
carries a BagIt payload manifest and RO-Crate 1.1 metadata beside transfer.tar and content/, written before the
hand-over, consistent with the AVUs and the bytes, valid for the standards' own validators (the `bagit` and
`roc-validator` packages, when installed); older snapshots get them from an admin rule that never overwrites."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List

import pytest
from helpers import FIXTURES, drop, enrolled_deployment

from policy import describe as D
from policy import vocabulary as V
from policy.ingest import drop_status

SVC = "omero-svc"


def snapshot_of(d: Any, drop_id: str) -> str:
    out = drop_status(d.zone_as(SVC), d.config, drop_id)
    assert out.status == V.COMPLETE, out
    return str(out.snapshot)


def download(d: Any, snap: str, dest: str) -> Dict[str, bytes]:
    """What `iget -r` of the snapshot gives its owner: relative path -> bytes, written under dest."""
    out = {}
    for path in d.catalog.objects_under(snap):
        rel = path[len(snap) + 1:]
        with d.catalog.open_read("alice", path) as f:
            out[rel] = f.read()
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(out[rel])
    return out


def crate_of(files: Dict[str, bytes]) -> Dict[str, Dict[str, Any]]:
    doc = json.loads(files[D.DESCRIPTION])
    assert doc["@context"] == D.RO_CRATE_CONTEXT
    return {e["@id"]: e for e in doc["@graph"]}


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_every_complete_snapshot_describes_itself(key: str, tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, _ = drop(d, FIXTURES[key])
    snap = snapshot_of(d, drop_id)
    files = download(d, snap, str(tmp_path / "copy"))
    assert D.DESCRIPTION in files and D.PAYLOAD_MANIFEST in files
    # the payload manifest: every other file, with the sha256 of its bytes (what sha256sum -c checks)
    listed = {}
    for line in files[D.PAYLOAD_MANIFEST].decode().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    payload = {rel: data for rel, data in files.items() if rel not in D.FILES}
    assert set(listed) == set(payload) and any(r.startswith("content/") for r in listed)
    assert all(hashlib.sha256(payload[r]).hexdigest() == h for r, h in listed.items())
    # the RO-Crate: the same files, sizes and digests, and what the AVUs say
    ents = crate_of(files)
    avus = V.as_dict(d.catalog.metadata(snap))
    root = ents["./"]
    for rel, data in payload.items():
        e = ents[D._id(rel)]
        assert (e["@type"], e["contentSize"], e["sha256"]) == ("File", str(len(data)), listed[rel])
    assert root["identifier"] == snap and root["dateCreated"] == avus[V.CREATED][0]
    assert ents["#omero-user"]["name"] == avus[V.OMERO_USER][0]
    assert ents["#omero-group"]["name"] == avus[V.OMERO_GROUP][0]
    assert ents["#packer"]["name"] + " " + ents["#packer"]["version"] == avus[V.PACKER][0]
    assert sorted(e["identifier"] for e in ents.values() if e["@id"].startswith("#omero-") and "identifier" in e
                  and ":" in e["identifier"] and "@" not in e["identifier"]) == sorted(avus[V.OBJECT])
    assert "omero transfer unpack" in ents["#how-to-load"]["text"]
    carried = {(e["name"], e["value"]) for e in ents.values() if e.get("@type") == "PropertyValue"}
    assert (V.ARCHIVE_SHA256, avus[V.ARCHIVE_SHA256][0]) in carried and (V.DROP_ID, drop_id) in carried
    # handed over with the rest: the owner owns the files, the service account reads them
    for name in D.FILES:
        acl = {(a.user, a.level) for a in d.catalog.acl(snap + "/" + name)}
        assert ("alice", "own") in acl and (SVC, "read_object") in acl, acl


def test_the_description_validates_with_the_standards_own_validators(tmp_path: Any, monkeypatch: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, _ = drop(d, FIXTURES["plate_zip"])
    snap = snapshot_of(d, drop_id)
    copy = str(tmp_path / "copy")
    files = download(d, snap, copy)
    bagit = pytest.importorskip("bagit")
    # BagIt: the downloaded snapshot laid out as a bag (payload under data/), with OUR payload manifest
    bag = tmp_path / "bag"
    os.makedirs(bag / "data")
    for rel, data in files.items():
        if rel not in D.FILES:
            os.makedirs(os.path.dirname(bag / "data" / rel), exist_ok=True)
            (bag / "data" / rel).write_bytes(data)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    lines = files[D.PAYLOAD_MANIFEST].decode().splitlines()
    (bag / "manifest-sha256.txt").write_text("".join("{}  data/{}\n".format(*ln.split("  ", 1)) for ln in lines))
    bagit.Bag(str(bag)).validate()  # raises BagValidationError on any missing, extra or changed file
    validate_ro_crate(copy, monkeypatch)
    from rocrate.rocrate import ROCrate

    crate = ROCrate(copy)
    assert crate.root_dataset["identifier"] == snap
    assert {e.id for e in crate.data_entities} >= {"transfer.zip", "manifest.json", "content/"}


def validate_ro_crate(folder: str, monkeypatch: Any) -> None:
    """roc-validator, profile ro-crate-1.1, severity REQUIRED: no issue. Offline: the RO-Crate 1.1 context comes
    from the copy the rocrate package ships (the validator would fetch it from w3id.org)."""
    services = pytest.importorskip("rocrate_validator.services")
    models = pytest.importorskip("rocrate_validator.models")
    http = pytest.importorskip("rocrate_validator.utils.http")
    rocrate = pytest.importorskip("rocrate")
    import requests

    context = os.path.join(os.path.dirname(rocrate.__file__), "data", "ro-crate.jsonld")

    def get(self: Any, url: str, **_kw: Any) -> Any:
        r = requests.Response()
        if url.rstrip("/") == D.RO_CRATE_CONTEXT:
            with open(context, "rb") as f:
                r.status_code, r._content = 200, f.read()
            r.headers["Content-Type"] = "application/ld+json"
        else:
            r.status_code = 504
        return r

    monkeypatch.setattr(http.HttpRequester, "get", get, raising=False)
    settings = services.ValidationSettings(rocrate_uri=folder, profile_identifier="ro-crate-1.1",
                                           requirement_severity=models.Severity.REQUIRED, offline=True)
    result = services.validate(settings)
    assert not result.has_issues(), [(i.severity, i.message) for i in result.get_issues()]


def without_description(monkeypatch: Any) -> None:
    """Snapshots as the policy made them before self-description."""
    monkeypatch.setattr(D, "write_description", lambda *a, **k: {"written": []})


def test_an_older_snapshot_gets_its_description_once_and_nothing_is_overwritten(tmp_path: Any,
                                                                                monkeypatch: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    with monkeypatch.context() as m:
        without_description(m)
        drop_id, _ = drop(d, FIXTURES["image_tar"])
    snap = snapshot_of(d, drop_id)
    assert not d.catalog.exists(snap + "/" + D.DESCRIPTION)
    # the owner already put a file of that name there: it is theirs and stays as it is
    alice = d.zone_as("alice")
    with alice.open_new(snap + "/" + D.PAYLOAD_MANIFEST) as w:
        w.write(b"mine\n")
    before = {p: v for p, v in d.catalog.objects_under(snap).items()}
    res = d.admin_rule("omero_snapshots_describe", drop_id)
    assert res["ok"] and res["written"] == [D.DESCRIPTION] and res["kept"] == [D.PAYLOAD_MANIFEST], res
    with d.catalog.open_read("alice", snap + "/" + D.PAYLOAD_MANIFEST) as f:
        assert f.read() == b"mine\n"
    after = d.catalog.objects_under(snap)
    assert {p: v for p, v in after.items() if p in before} == before  # nothing else touched
    acl = {(a.user, a.level) for a in d.catalog.acl(snap + "/" + D.DESCRIPTION)}
    assert ("alice", "own") in acl and (SVC, "read_object") in acl
    again = d.admin_rule("omero_snapshots_describe", snap)  # idempotent, by path too
    assert again["ok"] and again["written"] == [] and sorted(again["kept"]) == sorted(D.FILES), again


def test_describe_is_refused_for_what_is_not_a_snapshot(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    assert not d.admin_rule("omero_snapshots_describe", "20990101T000000Z-000000000000")["ok"]
    # the owner-side rule checks that its caller owns the snapshot
    drop_id, _ = drop(d, FIXTURES["image_tar"])
    snap = snapshot_of(d, drop_id)
    d.add_user("mallory")
    from policy.irods_rules_client import call_rule
    from simzone.rule_exec import FakeRule, RuleSession

    out = call_rule(RuleSession(d.server, "mallory"), "omero_snapshots_owner_describe", [snap], rule_class=FakeRule)
    assert not json.loads(out[0])["ok"]


def test_a_leftover_partial_file_is_replaced_not_kept(tmp_path: Any, monkeypatch: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    with monkeypatch.context() as m:
        without_description(m)
        drop_id, _ = drop(d, FIXTURES["image_tar"])
    snap = snapshot_of(d, drop_id)
    alice = d.zone_as("alice")
    with alice.open_new(snap + "/." + D.DESCRIPTION + D.PART) as w:
        w.write(b'{"half": ')
    res = d.admin_rule("omero_snapshots_describe", drop_id)
    assert res["ok"] and sorted(res["written"]) == sorted(D.FILES), res
    with d.catalog.open_read("alice", snap + "/" + D.DESCRIPTION) as f:
        assert json.loads(f.read())["@context"] == D.RO_CRATE_CONTEXT
    assert not d.catalog.exists(snap + "/." + D.DESCRIPTION + D.PART)


def test_pure_builders() -> None:
    items: List[D.Member] = [("content/a b%.tif", 3, "ab" * 32), ("transfer.tar", 10, "cd" * 32)]
    assert D.payload_manifest(items) == ("ab" * 32 + "  content/a b%25.tif\n" + "cd" * 32 + "  transfer.tar\n").encode()
    crate = D.ro_crate("/z/home/a/s", {V.LABEL: ["x"], V.OBJECT: ["Image:1"], V.PACKER: ["omero-cli-transfer 1.3.2"]},
                       items)
    ids = {e["@id"] for e in crate["@graph"]}
    assert {"content/a%20b%25.tif", "transfer.tar", "content/", "#omero-Image-1", "#packer"} <= ids
