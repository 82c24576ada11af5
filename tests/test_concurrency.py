"""Runs that overlap: a retry while the first run goes on, drops racing for one name, squatters."""

from __future__ import annotations

import threading
from typing import Any, List

from helpers import FIXTURES, config_with, drop, enrolled_deployment, manifest_doc

from policy import vocabulary as V
from policy.drop_lock import acquire, lock_path
from policy.ingest import drop_status
from policy.mapping import load_mapping
from policy.process import process_drop
from simzone.catalog import SimCatalog
from simzone.zone import SimZone

SVC = "omero-svc"
ROOT = "/tempZone/home/alice/omero-snapshots"


def snapshots(d: Any) -> List[str]:
    return [p for p, _ in d.catalog.walk(ROOT) if p.count("/") == ROOT.count("/") + 1]


def test_a_second_run_stops_while_the_lock_is_held(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, _ = drop(d, FIXTURES["image_tar"], run=False)
    svc = d.zone_as(SVC)
    held = acquire(svc, d.config, drop_id)
    assert held is not None and held.path == lock_path(d.config, drop_id)
    out = process_drop(svc, d.config, load_mapping(d.mapping_path), drop_id)
    assert "another run is processing" in (out.reason or "")
    # only the upload PEP's verdict claimed the snapshot's place: nothing moved in
    assert all(d.catalog.walk(s) == [(s, "collection")] for s in snapshots(d)) and len(snapshots(d)) <= 1
    assert d.catalog.exists(d.config.landing_collection + "/" + drop_id + "/transfer.tar")
    # an expired lock is taken over
    taken = acquire(svc, d.config, drop_id, now=10**12)
    assert taken is not None and taken.path == held.path and not held.held()
    taken.release()
    out = process_drop(svc, d.config, load_mapping(d.mapping_path), drop_id, break_lock=True)
    assert out.status == "complete" and len(snapshots(d)) == 1


def test_two_runs_of_one_drop_at_once_make_one_snapshot(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="never"))
    drop_id, _ = drop(d, FIXTURES["dataset_zip"], run=False)
    results: List[Any] = []
    errors: List[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        zone = SimZone(SimCatalog(d.zone_dir), SVC)  # its own connection, like another agent
        start.wait()
        try:
            results.append(process_drop(zone, d.config, load_mapping(d.mapping_path), drop_id))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(snapshots(d)) == 1
    final = drop_status(d.admin(), d.config, drop_id)
    assert final.status == "complete"
    statuses = sorted(r.status for r in results)
    assert "complete" in statuses


def test_drops_racing_for_one_name_each_get_their_own(tmp_path: Any) -> None:
    """Crafted drop ids with the same last 8 characters compute the same snapshot name."""
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(enabled=False))
    archive = FIXTURES["image_tar"]
    ids = ["20261125T100000Z-a-same8ch", "20261125T100000Z-b-same8ch", "20261125T100000Z-c-same8ch"]
    for i in ids:
        drop(d, archive, manifest_doc(archive, i, created="2026-11-25T10:00:00Z"), run=False)
    d.run_delay_server()
    snaps = [drop_status(d.admin(), d.config, i).snapshot for i in ids]
    assert len(set(snaps)) == 3 and all(snaps)
    for i, s in zip(ids, snaps):
        assert V.first(d.catalog.metadata(s), V.DROP_ID) == i
        assert d.catalog.exists(s + "/transfer.tar")
    assert sorted(snaps) == sorted(snapshots(d))


def test_a_squatted_staging_name_is_left_alone(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(enabled=False))
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    alice = d.zone_as("alice")
    squat = ROOT + "/.incoming-" + doc["drop_id"]
    alice.create_collection(squat)
    drop(d, archive, doc)
    st = drop_status(d.admin(), d.config, doc["drop_id"])
    assert st.status == "placed"
    assert d.catalog.metadata(squat) == [] and {(a.user, a.level) for a in d.catalog.acl(squat)} == {("alice", "own")}
