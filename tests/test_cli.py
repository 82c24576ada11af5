"""omero-snapshots CLI, run in-process on simulated zones under tmp_path."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, Dict, List, Tuple

import pytest

import policy.manifest
from policy.cli import main
from policy.config import default_config_dict
from policy.vocabulary import FINAL_GOOD

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
IMAGE_TAR = os.path.join(DATA, "valid_single_image.tar")
DATASET_ZIP = os.path.join(DATA, "valid_single_dataset.zip")
PLATE_ZIP = os.path.join(DATA, "simple_plate.zip")
ROOT = "/tempZone/home/jdoe/omero-snapshots"
LANDING = "/tempZone/home/omero-svc/landing"
SVC = "omero-svc"


@pytest.fixture
def placed_config(tmp_path: Any) -> str:
    """Issue 2's pipeline (stop at `placed`): the default configuration with unpacking turned off."""
    cfg = default_config_dict()
    cfg["unpack"]["enabled"] = False
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def run(capsys: Any, *argv: str) -> Tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def simulate(capsys: Any, zone: str, *archives: str, extra: Tuple[str, ...] = ()) -> Tuple[int, List[Dict], str]:
    """simulate as jdoe with unpacking off (the zone's config is then <zone>/../config.json from placed_config)."""
    cfg = os.path.join(os.path.dirname(zone), "config.json")
    code, out, err = run(capsys, "simulate", *archives, "--omero-user", "jdoe", "--zone-dir", zone, "--json",
                         "--config", cfg, *extra)
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def zone_ls(capsys: Any, zone: str, path: str, recursive: bool = True) -> List[Dict]:
    code, out, _ = run(capsys, "zone", "ls", "--zone-dir", zone, "--json", *(["-r"] if recursive else []), path)
    assert code == 0
    return json.loads(out)


def acl(entry: Dict) -> Dict[str, str]:
    return {a["user"]: a["level"] for a in entry["acl"]}


def zone_bytes(zone: str, entry: Dict) -> bytes:
    """The stored bytes of a data object, read back as its owner (to check 'byte-identical')."""
    from simzone.deploy import SimulatedDeployment

    with SimulatedDeployment(zone).zone_as(entry["owner"]).open_read(entry["path"]) as f:
        return f.read()


def fixture_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def irods_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return "sha2:" + base64.b64encode(hashlib.sha256(f.read()).digest()).decode()


# ---------------------------------------------------------------------- simulate, good drops
def test_simulate_json_one_line_per_drop(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    code, results, _ = simulate(capsys, zone, IMAGE_TAR, DATASET_ZIP, PLATE_ZIP)
    assert code == 0
    assert len(results) == 3
    for r in results:
        assert r["status"] == "placed"
        assert r["reason"] is None
        assert r["snapshot"].startswith(ROOT + "/")
        assert r["snapshot"].count("/") == ROOT.count("/") + 1
        assert set(r["timings"]) >= {"upload", "process"}
        assert all(isinstance(v, (int, float)) and v >= 0 for v in r["timings"].values())
        assert r["drop"] and "/" not in r["drop"]
    assert len({r["snapshot"] for r in results}) == 3
    assert len({r["drop"] for r in results}) == 3


def test_default_config_human_output_says_where_and_who(tmp_path, capsys):
    """The README's trial: no --config (whatever the default pipeline is, it must end in a good state)."""
    code, out, _ = run(capsys, "simulate", IMAGE_TAR, "--omero-user", "jdoe", "--zone-dir", str(tmp_path / "z"))
    assert code == 0, out
    status = out.splitlines()[0].rsplit(": ", 1)[1]
    assert status in FINAL_GOOD
    assert "  snapshot: " + ROOT + "/" in out and "owner:    jdoe" in out


def test_zone_persists_and_views_agree(tmp_path, capsys, monkeypatch, placed_config):
    zone = str(tmp_path / "zone")
    times = iter(["2025-01-14T10:00:00Z", "2025-01-14T11:30:00Z"])
    monkeypatch.setattr(policy.manifest, "utc_now", lambda: next(times))
    code, (first,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--label", "first run"))
    assert code == 0
    code, (second,), _ = simulate(capsys, zone, DATASET_ZIP)
    assert code == 0
    assert first["snapshot"] != second["snapshot"]
    assert "first-run" in first["snapshot"]

    code, out, _ = run(capsys, "list", "--user", "jdoe", "--zone-dir", zone, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [s["path"] for s in listed] == [second["snapshot"], first["snapshot"]]  # newest first
    assert [s["drop_id"] for s in listed] == [second["drop"], first["drop"]]
    assert listed[1]["label"] == "first run"
    assert listed[1]["archive_size"] == os.path.getsize(IMAGE_TAR)

    code, out, _ = run(capsys, "status", first["drop"], "--zone-dir", zone, "--json")
    assert code == 0
    st = json.loads(out)
    assert st["status"] == "placed" and st["snapshot"] == first["snapshot"]

    code, out, _ = run(capsys, "status", first["snapshot"], "--zone-dir", zone, "--json")
    assert code == 0 and json.loads(out)["drop_id"] == first["drop"]

    entries = zone_ls(capsys, zone, first["snapshot"])
    for e in entries:
        assert set(e) >= {"path", "type", "size", "checksum", "acl", "avus"}
        assert e["type"] in ("collection", "data_object")
        assert all(set(a) == {"user", "level"} for a in e["acl"])
        assert all(set(a) == {"attribute", "value", "units"} for a in e["avus"])
    by_path = {e["path"]: e for e in entries}
    snap = by_path[first["snapshot"]]
    assert snap["type"] == "collection"
    assert acl(snap) == {"jdoe": "own", SVC: "read_object"}
    avus = {a["attribute"]: a["value"] for a in snap["avus"]}
    assert avus["omero.snapshot.status"] == "placed"
    assert avus["omero.snapshot.drop_id"] == first["drop"]
    assert avus["omero.snapshot.irods_user"] == "jdoe"
    assert avus["omero.snapshot.created"] == "2025-01-14T10:00:00Z"
    archives = [e for e in entries if e["type"] == "data_object" and e["path"].endswith(".tar")]
    assert len(archives) == 1
    assert archives[0]["size"] == os.path.getsize(IMAGE_TAR)
    assert archives[0]["checksum"] == irods_sha256(IMAGE_TAR)
    assert acl(archives[0]) == {"jdoe": "own", SVC: "read_object"}
    assert any(e["path"] == first["snapshot"] + "/manifest.json" for e in entries)

    # the snapshot root: user owns, service account may create snapshots
    (root_entry,) = [e for e in zone_ls(capsys, zone, ROOT, recursive=False) if e["path"] == ROOT]
    assert acl(root_entry) == {"jdoe": "own", SVC: "modify_object"}


def test_zone_ls_missing_path(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    simulate(capsys, zone, PLATE_ZIP)
    code, _, err = run(capsys, "zone", "ls", "--zone-dir", zone, "/tempZone/nope")
    assert code == 1 and "no such path" in err


def test_status_of_unknown_drop(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    simulate(capsys, zone, PLATE_ZIP)
    code, out, _ = run(capsys, "status", "20990101T000000Z-000000000000", "--zone-dir", zone, "--json")
    assert code == 1 and json.loads(out)["status"] == "unknown"


# ---------------------------------------------------------------------- simulate, bad drops
def test_invalid_json_manifest_is_quarantined(tmp_path, capsys, placed_config):
    bad = tmp_path / "manifest.json"
    bad.write_bytes(b'{"drop_id": "abc')
    zone = str(tmp_path / "zone")
    code, (r,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--manifest", str(bad)))
    assert code == 1
    assert r["status"] == "quarantined" and r["snapshot"] is None
    assert "JSON" in r["reason"]
    entries = zone_ls(capsys, zone, r["location"])
    assert r["location"].startswith(LANDING + "/quarantine/")
    archives = [e for e in entries if e["type"] == "data_object" and e["size"] == os.path.getsize(IMAGE_TAR)]
    assert len(archives) == 1
    assert zone_bytes(zone, archives[0]) == fixture_bytes(IMAGE_TAR)
    manifest = [e for e in entries if e["path"].endswith("/manifest.json")]
    assert manifest and manifest[0]["size"] == bad.stat().st_size
    # nothing was placed for jdoe
    assert [e for e in zone_ls(capsys, zone, ROOT) if e["path"] != ROOT] == []


def test_mapping_without_user_refuses_as_not_enrolled(tmp_path, capsys, placed_config):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"mapping_version": 1, "users": [
        {"omero_server": "omero.local", "omero_user": "bob", "irods_user": "bob"}]}))
    zone = str(tmp_path / "zone")
    code, (r,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--mapping", str(mapping)))
    assert code == 1
    assert r["status"] == "quarantined" and r["snapshot"] is None
    assert "not enrolled" in r["reason"] and "jdoe" in r["reason"]
    # jdoe was not silently enrolled: no root, no snapshot; the archive is intact in quarantine
    homes = [e["path"] for e in zone_ls(capsys, zone, "/tempZone/home")]
    assert ROOT not in homes and "/tempZone/home/bob/omero-snapshots" in homes
    code, out, _ = run(capsys, "list", "--user", "jdoe", "--zone-dir", zone, "--json")
    assert code == 0 and json.loads(out) == []
    (arch,) = [e for e in zone_ls(capsys, zone, r["location"]) if e["path"].endswith("/transfer.tar")]
    # refused by the upload PEP's verdict, before any checksum was computed
    assert arch["size"] == os.path.getsize(IMAGE_TAR) and arch["checksum"] in (None, irods_sha256(IMAGE_TAR))


def test_mapping_to_rodsadmin_is_refused(tmp_path, capsys, placed_config):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"mapping_version": 1, "users": [
        {"omero_server": "omero.local", "omero_user": "jdoe", "irods_user": "rods"}]}))
    code, (r,), _ = simulate(capsys, str(tmp_path / "zone"), IMAGE_TAR, extra=("--mapping", str(mapping)))
    assert code == 1 and r["status"] == "quarantined" and "rodsadmin" in r["reason"]


def test_drop_by_another_user_is_left_untouched(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    code, (r,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--as-user", "mallory"))
    assert code == 1
    assert r["status"] == "not_processed" and r["snapshot"] is None
    assert "mallory" in r["reason"]
    drop = LANDING + "/" + r["drop"]
    entries = {e["path"]: e for e in zone_ls(capsys, zone, drop)}
    arch = entries[drop + "/transfer.tar"]
    assert arch["size"] == os.path.getsize(IMAGE_TAR)
    assert arch["avus"] == [] and acl(arch) == {"mallory": "own"}
    assert zone_bytes(zone, arch) == fixture_bytes(IMAGE_TAR)
    assert entries[drop]["avus"] == []  # no status written: not processed at all
    assert drop + "/manifest.json" in entries
    assert [e for e in zone_ls(capsys, zone, ROOT) if e["path"] != ROOT] == []


@pytest.mark.parametrize("argv", [
    ["simulate", IMAGE_TAR, "--json"],                                     # missing --omero-user
    ["simulate", "/nonexistent/archive.tar", "--omero-user", "jdoe"],
    ["simulate", "--omero-user", "jdoe"],                                  # no archive
    ["simulate", IMAGE_TAR, "--omero-user", "jdoe\n"],                     # not an iRODS name
    ["simulate", IMAGE_TAR, "--omero-user", "jdoe", "--object", "Image:x"],
    ["frobnicate"],
    ["list", "--user", "jdoe"],                                            # no --zone-dir
])
def test_usage_errors_exit_2(tmp_path, capsys, monkeypatch, argv):
    # without --zone-dir a command looks for a real zone: make sure none is configured on this machine
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(tmp_path / "no-such-irods_environment.json"))
    if argv[0] == "simulate" and "--zone-dir" not in argv and "--omero-user" in argv:
        argv = argv + ["--zone-dir", str(tmp_path / "zone")]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.strip()
    assert "placed" not in out


def test_manifest_with_several_archives_is_usage_error(tmp_path, capsys):
    m = tmp_path / "m.json"
    m.write_text("{}")
    code, _, err = run(capsys, "simulate", IMAGE_TAR, PLATE_ZIP, "--omero-user", "jdoe", "--manifest", str(m),
                       "--zone-dir", str(tmp_path / "zone"))
    assert code == 2 and "exactly one" in err


def test_bad_drop_on_existing_zone_keeps_good_snapshot(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    simulate(capsys, zone, PLATE_ZIP)  # creates zone, enrols jdoe
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    code, (r,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--manifest", str(bad)))
    assert code == 1 and r["status"] == "quarantined"
    code, out, _ = run(capsys, "list", "--user", "jdoe", "--zone-dir", zone, "--json")
    assert len(json.loads(out)) == 1  # the good one still listed, the bad one not


# ---------------------------------------------------------------------- enrol
def test_enrol_creates_root_with_right_acl(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    code, out, _ = run(capsys, "enrol", "alice", "--omero-user", "al", "--zone-dir", zone, "--create-user", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["ok"] is True
    assert res["root"] == "/tempZone/home/alice/omero-snapshots"
    assert res["irods_user"] == "alice" and res["omero_user"] == "al"
    (root,) = [e for e in zone_ls(capsys, zone, res["root"], recursive=False) if e["path"] == res["root"]]
    assert acl(root) == {"alice": "own", SVC: "modify_object"}

    # idempotent: enrolling again changes nothing
    code, out, _ = run(capsys, "enrol", "alice", "--omero-user", "al", "--zone-dir", zone, "--json")
    assert code == 0 and json.loads(out)["mapping_changed"] is False

    # and the enrolled OMERO user's drops now land under alice
    code, out, _ = run(capsys, "simulate", PLATE_ZIP, "--omero-user", "al", "--zone-dir", zone, "--json",
                       "--config", placed_config)
    assert code == 0 and json.loads(out)["status"] == "placed"
    assert json.loads(out)["snapshot"].startswith(res["root"] + "/")


def test_enrol_unknown_user_without_create_is_usage_error(tmp_path, capsys):
    code, _, err = run(capsys, "enrol", "carol", "--omero-user", "c", "--zone-dir", str(tmp_path / "z"))
    assert code == 2 and "--create-user" in err


@pytest.mark.parametrize("user, words", [("rods", "rodsadmin"), (SVC, "service account")])
def test_enrol_refuses_privileged_accounts(tmp_path, capsys, user, words):
    zone = str(tmp_path / "zone")
    code, out, _ = run(capsys, "enrol", user, "--omero-user", "r", "--zone-dir", zone, "--json")
    assert code == 1
    res = json.loads(out)
    assert res["ok"] is False and words in res["error"]
    assert not [e for e in zone_ls(capsys, zone, "/tempZone/home") if e["path"].endswith("/omero-snapshots")]


def test_zone_ls_of_the_root_recurses_like_ils(tmp_path, capsys, placed_config):
    zone = str(tmp_path / "zone")
    simulate(capsys, zone, PLATE_ZIP)
    paths = [e["path"] for e in zone_ls(capsys, zone, "/")]
    assert paths[0] == "/" and "/tempZone/home/omero-svc/landing" in paths
    assert any(p.startswith("/tempZone/home/jdoe/omero-snapshots/") and p.endswith("/manifest.json") for p in paths)


def test_simulate_without_libarchive_fails_at_once_naming_it(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "libarchive", None)  # import libarchive -> ImportError
    zone = str(tmp_path / "zone")
    code, out, err = run(capsys, "simulate", PLATE_ZIP, "--omero-user", "jdoe", "--zone-dir", zone, "--json")
    assert code == 2 and out == ""
    assert "libarchive-c" in err and "libarchive13" in err and '"enabled": false' in err
    from simzone.deploy import SimulatedDeployment

    landing = SimulatedDeployment(zone).config.landing_collection
    assert [p for p, _ in SimulatedDeployment(zone).catalog.walk(landing)] == [landing]  # nothing was dropped


def test_release_that_ends_in_quarantine_again_exits_1(tmp_path, capsys, placed_config):
    """README: exit 1 when a drop was rejected; a release of a still-unmapped drop puts it back into quarantine."""
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"mapping_version": 1, "users": [
        {"omero_server": "omero.local", "omero_user": "bob", "irods_user": "bob"}]}))
    zone = str(tmp_path / "zone")
    code, (r,), _ = simulate(capsys, zone, IMAGE_TAR, extra=("--mapping", str(mapping)))
    assert code == 1 and r["status"] == "quarantined"
    code, out, _ = run(capsys, "release", r["drop"], "--zone-dir", zone, "--json")
    assert code == 1 and json.loads(out)["status"] == "quarantined", out
    code, out, _ = run(capsys, "status", r["drop"], "--zone-dir", zone, "--json")
    assert code == 0 and json.loads(out)["status"] == "quarantined"  # status only reports: 0
