"""The fixity audit (issue 19, policy/fixity.py) on the simulated zone: a corrupted member or a missing replica
is found within one run, recorded on the landing record, shown by status, list, the doctor, the CLI and
OMERO's List; nothing is repaired; each run re-reads no more than its configured bytes."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import pytest
from helpers import FIXTURES, drop, enrolled_deployment

from omero_client.snapshots import format_listing, snapshots_of
from policy import fixity as F
from policy import vocabulary as V
from policy.cli import main
from policy.config import default_config_dict
from policy.ingest import drop_status

SVC = "omero-svc"


def deployment(tmp_path: Any, **fixity: Any) -> Any:
    cfg = default_config_dict()
    cfg["fixity"].update(fixity)
    return enrolled_deployment(str(tmp_path / "zone"), cfg)


def snapshot_of(d: Any, drop_id: str) -> str:
    out = drop_status(d.zone_as(SVC), d.config, drop_id)
    assert out.status == V.COMPLETE, out
    return str(out.snapshot)


def members(d: Any, snap: str) -> Dict[str, Any]:
    return d.catalog.objects_under(snap)


def vault(d: Any, path: str) -> str:
    return str(d.catalog._obj_row(path)[8])


def corrupt(d: Any, path: str) -> None:
    """Flip one byte of the replica's file, same size: what a failing disk does."""
    with open(vault(d, path), "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]))


def record(d: Any, drop_id: str) -> Dict[str, List[str]]:
    return V.as_dict(d.catalog.metadata(d.config.landing_collection + "/" + drop_id))


def state(d: Any, snap: str) -> Any:
    """Everything a repair would change: every object's bytes and checksum, the snapshot's AVUs and ACL."""
    objs = {}
    for p, (size, chk) in members(d, snap).items():
        with open(vault(d, p), "rb") as f:
            objs[p] = (size, chk, f.read())
    return objs, sorted(map(repr, d.catalog.metadata(snap))), sorted(map(repr, d.catalog.acl(snap)))


def first_content(d: Any, snap: str) -> str:
    return sorted(p for p in members(d, snap) if "/content/" in p)[0]


# ---------------------------------------------------------------------- pure decisions
def test_order_in_progress_then_never_then_oldest() -> None:
    c = [F.Candidate("d1", "/s1", "2026-01-02T00:00:00Z", ""), F.Candidate("d2", "/s2", "", ""),
         F.Candidate("d3", "/s3", "2026-01-01T00:00:00Z", ""),
         F.Candidate("d4", "/s4", "2026-01-03T00:00:00Z", "/s4/x")]
    assert [x.drop_id for x in F.audit_order(c)] == ["d4", "d2", "d3", "d1"]


def test_budget_takes_what_fits_and_one_oversized_object_alone() -> None:
    objs = [("a", 40), ("b", 40), ("c", 40)]
    assert F.take_budget(objs, 100, 0) == 2
    assert F.take_budget(objs, 100, 90) == 0
    assert F.take_budget([("big", 500), ("b", 1)], 100, 0) == 1  # an unspent run verifies it alone
    assert F.take_budget([("big", 500)], 100, 10) == 0
    assert F.worst([F.OK, F.MISSING, F.MISMATCH]) == F.MISMATCH and F.worst([]) == F.OK


def test_audited_objects_are_the_archive_and_content() -> None:
    assert F.audited("/s/transfer.tar", "/s", "transfer.tar")
    assert F.audited("/s/content/root_0/a.tif", "/s", "transfer.tar")
    assert not F.audited("/s/manifest.json", "/s", "transfer.tar")
    assert not F.audited("/other/content/x", "/s", "transfer.tar")


# ---------------------------------------------------------------------- the admin's audit of one snapshot
def test_sound_snapshot_audits_ok_and_is_recorded_on_the_landing_record(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["image_tar"])
    snap = snapshot_of(d, drop_id)
    before = state(d, snap)
    res = d.admin_rule("omero_snapshots_fixity_audit", drop_id)
    assert res["ok"] and res["result"] == F.OK and res["finished"], res
    audited = [p for p in members(d, snap) if F.audited(p, snap, "transfer.tar")]
    assert res["checked"] == len(audited) > 1
    assert res["bytes"] == sum(members(d, snap)[p][0] for p in audited)
    rec = record(d, drop_id)
    assert rec[V.FIXITY] == ["ok"] and rec[V.FIXITY_VERIFIED][0].endswith("Z") and V.FIXITY_RESUME not in rec
    assert state(d, snap) == before  # nothing written on the snapshot
    by_path = d.admin_rule("omero_snapshots_fixity_audit", snap)  # a snapshot path works as well
    assert by_path["result"] == F.OK and by_path["drop"] == drop_id
    st = d.admin_rule("omero_snapshots_status", drop_id)
    assert st["fixity"] == "ok" and st["fixity_verified"]


def test_corrupted_member_is_found_reported_everywhere_and_left_untouched(tmp_path: Any, capsys: Any) -> None:
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["image_tar"])
    snap = snapshot_of(d, drop_id)
    victim = first_content(d, snap)
    corrupt(d, victim)
    before = state(d, snap)
    res = d.admin_rule("omero_snapshots_fixity_audit", drop_id)
    assert res["ok"] and res["result"] == F.MISMATCH, res
    assert [f["path"] for f in res["findings"]] == [victim] and res["findings"][0]["outcome"] == F.MISMATCH
    assert state(d, snap) == before  # not repaired, not removed
    rec = record(d, drop_id)
    assert rec[V.FIXITY] == [F.MISMATCH] and victim in rec[V.FIXITY_DETAIL][0]
    # status and list (admin rules), the doctor
    assert d.admin_rule("omero_snapshots_status", snap)["fixity"] == F.MISMATCH
    listed = d.admin_rule("omero_snapshots_list", "alice")["snapshots"]
    assert [s["fixity"] for s in listed] == [F.MISMATCH]
    doc = d.admin_rule_unchecked("omero_snapshots_doctor")
    check = [c for c in doc["checks"] if c["check"] == "fixity"][0]
    assert not check["ok"] and snap in check["detail"] and not doc["ok"]
    # OMERO's List (as the service account, from the landing record it owns)
    snaps = snapshots_of(d.zone_as(SVC), d.config.landing_collection, "jdoe", "omero.example.org")
    assert snaps[0].fixity == F.MISMATCH
    assert "INTEGRITY CHECK FAILED (mismatch" in format_listing(snaps)
    # the CLI: the audit exits 1 and names the member; list shows it
    zone = str(tmp_path / "zone")
    assert main(["fixity", drop_id, "--zone-dir", zone]) == 1
    assert victim in capsys.readouterr().out
    assert main(["list", "--user", "alice", "--zone-dir", zone]) == 0
    assert "FIXITY mismatch" in capsys.readouterr().out


def test_missing_replica_is_reported_as_missing(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    drop_id, _ = drop(d, FIXTURES["dataset_zip"])
    snap = snapshot_of(d, drop_id)
    victim = snap + "/transfer.zip"
    os.remove(vault(d, victim))
    res = d.admin_rule("omero_snapshots_fixity_audit", drop_id)
    assert res["result"] == F.MISSING and res["findings"][0]["path"] == victim, res
    assert "-510002" in res["findings"][0]["detail"]
    assert record(d, drop_id)[V.FIXITY] == [F.MISSING]
    assert d.catalog._obj_row(victim) is not None  # the catalog entry stays: nothing is cleaned up


def test_audit_of_a_drop_without_snapshot_is_refused(tmp_path: Any) -> None:
    d = deployment(tmp_path)
    res = d.admin_rule("omero_snapshots_fixity_audit", "20990101T000000Z-000000000000")
    assert not res["ok"] and "error" in res


# ---------------------------------------------------------------------- the periodic audit
def last_run(d: Any) -> Dict[str, Any]:
    text = open(os.path.join(d.zone_dir, "rodsLog")).read()
    line = [x for x in text.splitlines() if "[omero-snapshots] fixity " in x][-1]
    return dict(json.loads(line.split(": ", 2)[-1]))


def test_doctor_arms_the_audit_and_each_run_stays_within_its_budget(tmp_path: Any) -> None:
    d = deployment(tmp_path, bytes_per_run=40000, interval_seconds=3600)
    ids = [drop(d, FIXTURES["image_tar"])[0], drop(d, FIXTURES["dataset_zip"])[0]]
    snaps = [snapshot_of(d, i) for i in ids]
    doc = d.admin_rule("omero_snapshots_doctor")
    check = [c for c in doc["checks"] if c["check"] == "fixity audit"][0]
    assert check["ok"] and check["detail"].startswith("armed"), doc
    assert d.admin_rule("omero_snapshots_fixity_start")["fixity"].startswith("armed (an audit is already queued)")
    sizes = {p: s for snap in snaps for p, (s, _c) in members(d, snap).items()
             if F.audited(p, snap, "transfer.tar") or p == snap + "/transfer.zip"}
    total = sum(sizes.values())
    runs: List[Dict[str, Any]] = []
    for _ in range(40):
        d.server.run_delay_queue(max_rules=1, horizon=None)
        try:
            runs.append(last_run(d))
        except IndexError:
            continue
        if all(record(d, i).get(V.FIXITY) == ["ok"] for i in ids):
            break
    runs = [dict(r) for r in {json.dumps(r, sort_keys=True): r for r in runs}.values()]
    assert all(record(d, i)[V.FIXITY] == ["ok"] for i in ids)
    assert len(runs) >= 2 and sum(r["bytes_read"] for r in runs) >= total - max(sizes.values())
    biggest = max(sizes.values())
    for r in runs:  # bounded by the budget, or one object larger than the whole budget, alone
        alone = sum(s["checked"] for s in r["snapshots"]) == 1
        assert r["bytes_read"] <= 40000 or (r["bytes_read"] <= biggest and alone), r


def test_periodic_run_finds_a_corruption_within_one_run(tmp_path: Any) -> None:
    d = deployment(tmp_path, interval_seconds=3600)  # the default budget covers both snapshots
    ids = [drop(d, FIXTURES["image_tar"])[0], drop(d, FIXTURES["dataset_zip"])[0]]
    snap = snapshot_of(d, ids[1])
    d.admin_rule("omero_snapshots_fixity_start")
    d.server.run_delay_queue(max_rules=1, horizon=None)
    assert [record(d, i)[V.FIXITY] for i in ids] == [["ok"], ["ok"]]
    victim = first_content(d, snap)
    corrupt(d, victim)
    d.server.run_delay_queue(max_rules=1, horizon=None)
    run = last_run(d)
    assert run["continued"] and run["bytes_read"] > 0
    assert record(d, ids[1])[V.FIXITY] == [F.MISMATCH] and record(d, ids[0])[V.FIXITY] == ["ok"]


def test_disabled_audit_is_not_armed(tmp_path: Any) -> None:
    d = deployment(tmp_path, enabled=False)
    res = d.admin_rule("omero_snapshots_fixity_start")
    assert res["fixity"].startswith("disabled")
    assert not [r for r in d.catalog.delay_rows() if F.FIXITY_RULE in r[3]]


@pytest.mark.parametrize("bad", [{"bytes_per_run": 0}, {"interval_seconds": 5}, {"enabled": "yes"}, {"nope": 1}])
def test_fixity_configuration_is_validated(bad: Dict[str, Any]) -> None:
    from policy.config import ConfigError, parse_config

    cfg = default_config_dict()
    cfg["fixity"].update(bad)
    with pytest.raises(ConfigError) as e:
        parse_config(cfg, None)
    assert "fixity" in str(e.value.errors)


# ---------------------------------------------------------------------- the simulated zone against the real one
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prep-observed",
                      "round12-fixity-verify.jsonl")


def golden_records() -> List[Dict[str, Any]]:
    with open(GOLDEN) as f:
        return [json.loads(line) for line in f if line.strip()]


def probe_objects(tmp_path: Any) -> Any:
    """The probe's setup (tests/data/prep-probes/round12-fixity/setup.sh) on a simulated zone: four objects of
    rods, three checksummed, read granted to fix_reader; then one replica corrupted, one removed."""
    from simzone.deploy import SimulatedDeployment

    d = SimulatedDeployment(str(tmp_path / "zone"))
    d.add_user("fix_reader")
    rods = d.admin()
    base = "/tempZone/home/rods/fix_probe"
    rods.create_collection(base, recursive=True)
    data = bytes(range(256)) * 400
    for n in ("ok", "corrupt", "missing", "nochk"):
        with rods.open_new("{}/{}.bin".format(base, n)) as w:
            w.write(data)
        if n != "nochk":
            rods.checksum("{}/{}.bin".format(base, n))
        rods.set_acl("{}/{}.bin".format(base, n), "fix_reader", "read")
    rods.set_acl(base, "fix_reader", "read")
    corrupt(d, base + "/corrupt.bin")
    os.remove(vault(d, base + "/missing.bin"))
    return d, base


def fake_msi(d: Any, user: str, path: str, opts: str) -> Tuple[int, str]:
    """(errorcode, out) the way the native rule's errorcode() and PREP see them."""
    from policy.errors import code_from_text

    try:
        r = d.server.callback(user).msiDataObjChksum(path, opts, "")
    except RuntimeError as e:
        return int(code_from_text(str(e)) or -1), ""
    return (int(r["code"]) if not r.get("status", True) else 0), str(r["arguments"][2])


def test_the_fake_answers_the_fixity_probe_as_the_real_server_did(tmp_path: Any) -> None:
    d, base = probe_objects(tmp_path)
    native = [r for r in golden_records() if r["probe"] == "native_msiDataObjChksum_as_read_only_rodsuser"]
    assert len(native) == 16
    stored = d.catalog._obj_row(base + "/ok.bin")[4]  # the probe's bytes were random: its checksum stands for it
    real_stored = [r for r in golden_records() if r["probe"] == "data_plane_read_as_reader"][0]["catalog_checksum"]

    def same(out: str) -> str:
        return stored if out == real_stored else out

    for r in native:
        got = fake_msi(d, "fix_reader", "{}/{}.bin".format(base, r["name"]), r["opts"])
        assert got == (r["errorcode"], same(r["out"])), (r, got)
    # the data plane, as the reader: the corrupt bytes come back; a missing replica cannot be opened (-510002)
    zone = d.zone_as("fix_reader")
    for r in [r for r in golden_records() if r["probe"] == "data_plane_read_as_reader"]:
        path = "{}/{}.bin".format(base, r["name"])
        if "error" in r:
            with pytest.raises(Exception) as e:
                zone.open_read(path).read()
            assert getattr(e.value, "code", None) == r["code"]
        else:
            import base64
            import hashlib

            with zone.open_read(path) as f:
                got = "sha2:" + base64.b64encode(hashlib.sha256(f.read()).digest()).decode()
            recorded = d.catalog._obj_row(path)[4]
            assert (got == recorded) == (r["recomputed"] == r["catalog_checksum"]), r
    # then (as in the probe's order) PREP as rods, the owner: verify raises -407000 for a corrupt or missing replica
    prep = [r for r in golden_records() if r["probe"] == "prep_msiDataObjChksum"]
    assert len(prep) == 12
    for r in prep:
        code, out = fake_msi(d, "rods", "{}/{}.bin".format(base, r["name"]), r["opts"])
        if "raised" in r:
            assert code == int(r["raised"].split(":")[1].split("]")[0]), (r, code)
        else:
            assert (code, out) == (r["returned"]["code"], same(r["returned"]["out"])), (r, code, out)
