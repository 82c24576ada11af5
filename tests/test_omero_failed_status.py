"""What the OMERO side shows of a drop the server ended `failed` by itself (issue 11): Save's verdict and
List's entry carry the status and the reason the policy wrote. Same doubles as tests/test_omero_client.py
(imported from it), against the simulated zone with the delay server run by Save's poll hook.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Tuple

from helpers import FIXTURES, OMERO_SERVER, enrolled_deployment
from test_omero_client import JDOE, FakePacker, poll_for, svc_zone

from omero_client.save import save
from omero_client.snapshots import format_listing, snapshots_of
from policy import vocabulary as V


def _save(d: Any, tmp_path: Any) -> Any:
    workdir = tmp_path / "scratch"
    workdir.mkdir()
    return save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", 51)], FakePacker(FIXTURES["image_tar"]),
                label="day 4", workdir=str(workdir), poll=poll_for(d))


def test_save_shows_failed_naming_the_missing_package(tmp_path: Any, monkeypatch: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    monkeypatch.setitem(sys.modules, "libarchive", None)  # a bare server install: libarchive-c missing
    result = _save(d, tmp_path)
    assert result.status == V.FAILED and not result.ok, result
    assert result.reason and "the Python package libarchive-c is not importable" in result.reason
    assert result.reason in result.message
    # failed before placement: no "Snapshot: None", but where the upload waits, intact
    assert "Snapshot: None" not in result.message and "kept intact at " + d.config.landing_collection in \
        result.message, result.message


def test_list_shows_a_snapshot_failed_by_a_bug_with_its_reason(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))

    def bug_while_unpacking(op: str, args: Tuple[Any, ...]) -> None:
        if op in ("open_new", "put_new") and "/content/" in str(args[0] if args else ""):
            raise AttributeError("'NoneType' object has no attribute 'size'")

    cfg = json.load(open(d.config_dir + "/config.json"))
    cfg["unpack"]["fast_path"] = "never"  # the streaming path writes each member: that is where the bug bites
    with open(d.config_dir + "/config.json", "w") as f:
        json.dump(cfg, f)
    d.catalog.fault_hook = bug_while_unpacking
    result = _save(d, tmp_path)
    d.catalog.fault_hook = None
    want = ("gave up after 2 attempts: the last one failed too: internal error in the policy (AttributeError: "
            "'NoneType' object has no attribute 'size'); nothing was deleted or overwritten; the facility's admin "
            "can see the server log and run reprocess")  # a bug that recurs: retry.error_attempts, then failed
    assert result.status == V.FAILED and result.reason == want, result
    assert want in result.message and result.snapshot and result.snapshot in result.message
    snaps = snapshots_of(svc_zone(d), d.config.landing_collection, "jdoe", OMERO_SERVER)
    assert [(s.path, s.status, s.reason) for s in snaps] == [(result.snapshot, V.FAILED, want)]
    assert "failed" in format_listing(snaps)
