"""The fixity audit (issue 19, policy/fixity.py) on a REAL iRODS zone (`pytest -m live`).

Configured like tests/test_live.py. Corrupting a replica means writing its vault file on the server's disk, so
every test here also needs OMERO_SNAPSHOTS_REAL_ZONE=1 and root (tests/live/real_zone.sh's live.env), like the
host-side tests of tests/test_live_families.py; elsewhere they skip and say why.

What is checked: a sound snapshot audits ok; a member whose vault file had one byte flipped is found by the
admin's audit and by one periodic run, reported by status, list, the doctor, the CLI (as the guide runs it)
and OMERO's List, and the snapshot is left byte for byte as it was; a vault file removed shows as `missing`;
a periodic run re-reads no more bytes than `fixity.bytes_per_run` (measured: its `bytes_read`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from typing import Any, Dict

import pytest
from harness import LiveHarness
from scenarios import FIXTURES, drop, manifest
from test_describe import validate_ro_crate
from test_live_families import CONFIG_FILE, VAULT, on_server_host, server_file

from omero_client.snapshots import format_listing, snapshots_of
from policy import fixity as F
from policy import vocabulary as V
from policy.irods_rules_client import call_rule

pytestmark = pytest.mark.live
LAST_TOKEN = "f" * 16  # larger than any armed chain's token: a run with it never continues a chain


def vault_file(h: LiveHarness, path: str) -> str:
    return VAULT + path[len("/" + h.zone_name):]


def flip_byte(path: str, offset: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def snapshot(h: LiveHarness, archive: str, omero_user: str) -> Any:
    drop_id = drop(h, archive, manifest(h, archive, omero_user))
    st = h.wait(drop_id)
    assert st["status"] == "complete", st
    return drop_id, st["snapshot"]


def disk_state(h: LiveHarness, snap: str) -> Dict[str, Any]:
    """Every object's vault bytes, catalog checksum, AVUs and ACL: what a repair would change."""
    out: Dict[str, Any] = {}
    for path, kind in h.walk(snap):
        if kind == "data_object":
            with open(vault_file(h, path), "rb") as f:
                out[path] = (f.read(), h.admin.stat(path).checksum, sorted(h.acl(path)))
    out["avus"] = h.metadata(snap)
    return out


def cli(*args: str) -> Any:
    """The CLI as docs/install.md runs it: the irods OS user with the rodsadmin's environment."""
    return subprocess.run(["sudo", "-iu", "irods", "omero-snapshots"] + list(args), capture_output=True, text=True,
                          timeout=300)


def test_corrupted_and_missing_replicas_are_found_and_reported_nothing_repaired(h: LiveHarness) -> None:
    on_server_host()
    user, omero_user = h.researcher()
    good, snap = snapshot(h, FIXTURES["image_tar"], omero_user)
    res = h.admin_rule("omero_snapshots_fixity_audit", good)
    assert res["ok"] and res["result"] == "ok" and res["finished"] and res["checked"] > 1, res
    assert h.metadata(h.landing + "/" + good)[V.FIXITY] == ["ok"]

    member = sorted(p for p, k in h.walk(snap + "/content") if k == "data_object")[0]
    flip_byte(vault_file(h, member))
    before = disk_state(h, snap)
    res = h.admin_rule("omero_snapshots_fixity_audit", snap)
    assert res["ok"] and res["result"] == F.MISMATCH, res
    assert [(f["path"], f["outcome"]) for f in res["findings"]] == [(member, F.MISMATCH)]
    assert disk_state(h, snap) == before  # untouched: not repaired, not re-checksummed, nothing removed
    assert h.admin_rule("omero_snapshots_status", good)["fixity"] == F.MISMATCH
    listed = h.admin_rule("omero_snapshots_list", user)["snapshots"]
    assert [(s["path"], s["fixity"]) for s in listed] == [(snap, F.MISMATCH)]
    doctor = h.admin_rule("omero_snapshots_doctor")
    check = [c for c in doctor["checks"] if c["check"] == "fixity"][0]
    assert not check["ok"] and snap in check["detail"], doctor
    assert [c for c in doctor["checks"] if c["check"] == "fixity audit"][0]["ok"], doctor
    snaps = snapshots_of(h.service_zone(), h.landing, omero_user, h.omero_server)  # OMERO's List
    assert [s.fixity for s in snaps] == [F.MISMATCH]
    assert "INTEGRITY CHECK FAILED (mismatch" in format_listing(snaps)
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        p = cli("fixity", good, "--json")
        assert p.returncode == 1 and json.loads(p.stdout)["result"] == F.MISMATCH, (p.stdout, p.stderr)

    other, snap2 = snapshot(h, FIXTURES["dataset_zip"], omero_user)
    archive = snap2 + "/transfer.zip"
    os.remove(vault_file(h, archive))
    res = h.admin_rule("omero_snapshots_fixity_audit", other)
    assert res["result"] == F.MISSING and res["findings"][0]["path"] == archive, res
    assert h.admin.stat(archive).checksum  # the catalog entry is kept as it was


def test_a_periodic_run_is_bounded_and_finds_a_corruption(h: LiveHarness) -> None:
    on_server_host()
    user, omero_user = h.researcher()
    drop_id, snap = snapshot(h, FIXTURES["dataset_zip"], omero_user)
    objects = {p: h.admin.stat(p).size for p, k in h.walk(snap) if k == "data_object"
               and F.audited(p, snap, "transfer.zip")}
    budget = max(1, sum(objects.values()) // 3)

    def small_budget(doc: Dict[str, Any]) -> None:
        doc.setdefault("fixity", {})["bytes_per_run"] = budget

    armed = h.admin_rule("omero_snapshots_fixity_start")["fixity"]
    assert armed.startswith("armed"), armed  # so the runs below, with the largest token, never start a chain
    runs = []
    with server_file(CONFIG_FILE, small_budget):
        for _ in range(12):
            out = call_rule(h.svc.session, F.FIXITY_RULE, [LAST_TOKEN])
            run = json.loads(out[0])
            runs.append(run)
            assert run["budget"] == budget and not run["continued"], run
            alone = sum(s["checked"] for s in run["snapshots"]) <= 1
            assert run["bytes_read"] <= budget or alone, run  # bounded (one oversized object alone)
            if h.metadata(h.landing + "/" + drop_id).get(V.FIXITY) == ["ok"]:
                break
        assert h.metadata(h.landing + "/" + drop_id)[V.FIXITY] == ["ok"], runs
        assert len(runs) >= 2  # the budget split the snapshot over several runs
        member = sorted(p for p in objects if "/content/" in p)[-1]
        flip_byte(vault_file(h, member))
        found = None
        for _ in range(12):
            run = json.loads(call_rule(h.svc.session, F.FIXITY_RULE, [LAST_TOKEN])[0])
            runs.append(run)
            bad = [f for s in run["snapshots"] for f in s["findings"] if f["path"] == member]
            if bad:
                found = bad[0]
                break
    assert found is not None and found["outcome"] == F.MISMATCH, runs
    assert h.admin_rule("omero_snapshots_status", drop_id)["fixity"] == F.MISMATCH
    print("fixity live: budget {} B, bytes read per run {}".format(budget, [r["bytes_read"] for r in runs]))


# ====================================================================== self-describing snapshots (policy/describe.py)
def test_a_complete_snapshot_describes_itself_and_an_older_one_gets_it(h: LiveHarness, tmp_path: Any,
                                                                       monkeypatch: Any) -> None:
    """On the real zone: the two description files are in every new snapshot (handed over with it), agree
    with the bytes and the AVUs, validate with `bagit` (laid out as a bag) and `roc-validator`; the admin rule
    gives a snapshot without them (here: their owner removed them) new ones, and a second call writes nothing."""
    from policy import describe as D

    user, omero_user = h.researcher()
    drop_id, snap = snapshot(h, FIXTURES["dataset_zip"], omero_user)
    objs = {p[len(snap) + 1:]: p for p, k in h.walk(snap) if k == "data_object"}
    assert set(D.FILES) <= set(objs)
    for name in D.FILES:
        assert h.acl(snap + "/" + name) == {(user, "own"), (h.service_account, "read_object")}
    data = {rel: h.read_bytes(p) for rel, p in objs.items()}
    listed = dict(reversed(line.split("  ", 1)) for line in data[D.PAYLOAD_MANIFEST].decode().splitlines())
    assert set(listed) == set(data) - set(D.FILES)
    assert all(hashlib.sha256(data[r]).hexdigest() == digest for r, digest in listed.items())
    crate = {e["@id"]: e for e in json.loads(data[D.DESCRIPTION])["@graph"]}
    meta = h.metadata(snap)
    assert crate["./"]["identifier"] == snap and crate["#omero-user"]["name"] == meta[V.OMERO_USER][0] == omero_user
    bagit = pytest.importorskip("bagit")
    bag = tmp_path / "bag"
    for rel, b in data.items():
        if rel not in D.FILES:
            os.makedirs(os.path.dirname(str(bag / "data" / rel)), exist_ok=True)
            (bag / "data" / rel).write_bytes(b)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    (bag / "manifest-sha256.txt").write_text("".join("{}  data/{}\n".format(d, r) for r, d in sorted(listed.items())))
    bagit.Bag(str(bag)).validate()
    copy = tmp_path / "copy"  # iget -r of the snapshot, as its owner would do
    for rel, b in data.items():
        os.makedirs(os.path.dirname(str(copy / rel)), exist_ok=True)
        (copy / rel).write_bytes(b)
    validate_ro_crate(str(copy), monkeypatch)

    owner = h._zone_as(user)  # the owner removes both files: the snapshot now looks like an older one
    for name in D.FILES:
        owner.session.data_objects.unlink(snap + "/" + name, force=True)
    res = h.admin_rule("omero_snapshots_describe", drop_id)
    assert res["ok"] and sorted(res["written"]) == sorted(D.FILES), res
    assert h.read_bytes(snap + "/" + D.PAYLOAD_MANIFEST) == data[D.PAYLOAD_MANIFEST]
    for name in D.FILES:
        assert h.acl(snap + "/" + name) == {(user, "own"), (h.service_account, "read_object")}
    again = h.admin_rule("omero_snapshots_describe", snap)
    assert again["ok"] and again["written"] == [], again
