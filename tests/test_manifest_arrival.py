"""One manifest, one run: python-irodsclient's double PEP (round 9) must not delay or repeat a drop.

Observed: data_objects.create() + open('w') (what the OMERO side's PrcZone.open_new does) fires
pep_resource_modified_post twice, first for the empty replica. The old trigger scheduled the drop at
that first arrival with a 60 s "empty manifest" delay, so every save waited about a minute.
"""

from __future__ import annotations

import json
import re
from typing import Any, List, Tuple

from helpers import FIXTURES, manifest_doc

from policy import vocabulary as V
from policy.ingest import drop_status
from policy.trigger import AWAITING_BYTES, EMPTY_MANIFEST_DELAY

SVC = "omero-svc"


def _pending(dep: Any, drop_id: str) -> List[Tuple[int, int]]:
    """(row id, PLUSET seconds) of the pending delayed runs of a drop."""
    out = []
    for rid, _user, cond, body, state in dep.catalog.delay_rows():
        if state == "pending" and drop_id in body:
            m = re.search(r"<PLUSET>(\d+)s</PLUSET>", cond)
            out.append((rid, int(m.group(1)) if m else 0))
    return out


def _upload(dep: Any, archive: str, api: str) -> str:
    doc = manifest_doc(archive)
    dep.upload_drop(archive, json.dumps(doc).encode(), doc["drop_id"],
                    archive_name="transfer." + archive.rsplit(".", 1)[1], api=api)
    return str(doc["drop_id"])


def test_a_python_irodsclient_save_is_scheduled_at_the_normal_delay(dep: Any) -> None:
    drop_id = _upload(dep, FIXTURES["image_tar"], "prc_create")
    pending = _pending(dep, drop_id)
    # the empty arrival's fallback, then the real run at the configured delay (not 60 s)
    assert sorted(d for _, d in pending) == sorted([dep.config.delay_seconds,
                                                    max(dep.config.delay_seconds, EMPTY_MANIFEST_DELAY)])
    landing = dep.config.landing_collection + "/" + drop_id
    assert V.first(dep.admin().metadata(landing), V.REASON) == "-"  # no longer "waiting for its bytes"
    log = open(dep.server.log_path, encoding="utf-8").read()
    assert "manifest empty so far" in log and "queued (the manifest's bytes arrived)" in log


def test_the_run_at_the_normal_delay_does_the_work_and_the_fallback_changes_nothing(dep: Any) -> None:
    drop_id = _upload(dep, FIXTURES["image_tar"], "prc_create")
    fallback = max(_pending(dep, drop_id), key=lambda p: p[1])
    # run only the run at the normal delay: the verdict comes without the 60 s fallback
    dep.catalog.db.execute("UPDATE delay SET state='held' WHERE id=?", (fallback[0],))
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"
    before = [(p, k) for p, k in dep.catalog.walk("/tempZone/home/alice")]
    avus = sorted((a.attribute, a.value) for a in dep.admin().metadata(
        drop_status(dep.admin(), dep.config, drop_id).snapshot))
    dep.catalog.db.execute("UPDATE delay SET state='pending' WHERE id=?", (fallback[0],))
    dep.run_delay_server()
    assert dep.catalog.walk("/tempZone/home/alice") == before
    after = drop_status(dep.admin(), dep.config, drop_id)
    assert after.status == "complete"
    assert sorted((a.attribute, a.value) for a in dep.admin().metadata(after.snapshot)) == avus


def test_iput_fires_once_and_is_queued_at_once(dep: Any) -> None:
    drop_id = _upload(dep, FIXTURES["dataset_zip"], "put")
    assert [d for _, d in _pending(dep, drop_id)] == [dep.config.delay_seconds]
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"


def test_an_iput_of_an_empty_manifest_is_quarantined_without_an_admin(dep: Any) -> None:
    from simzone.prep import PepOutcome

    archive = FIXTURES["image_tar"]
    drop_id = manifest_doc(archive)["drop_id"]
    landing = dep.config.landing_collection + "/" + drop_id
    dep.catalog.create_collection(SVC, landing)
    dep.server.client_put_stream(SVC, landing + "/transfer.tar", [open(archive, "rb").read()], api="put")
    w = dep.catalog.open_new(SVC, landing + "/manifest.json")
    w.close()
    dep.server.fire_write_peps(landing + "/manifest.json", SVC, 0, "put", PepOutcome())
    assert V.first(dep.admin().metadata(landing), V.REASON) == AWAITING_BYTES
    assert [d for _, d in _pending(dep, drop_id)] == [max(dep.config.delay_seconds, EMPTY_MANIFEST_DELAY)]
    dep.run_delay_server()
    st = drop_status(dep.admin(), dep.config, drop_id)
    assert st.status == "quarantined" and "empty" in (st.reason or ""), st
    assert dep.catalog.exists(dep.config.quarantine_collection + "/" + drop_id + "/transfer.tar")


def test_the_omero_side_client_zone_fires_the_empty_arrival_first(dep: Any) -> None:
    from simzone.zone import ClientZone

    fired: List[str] = []
    original = dep.server.fire_create_peps

    def spy(path: str, user: str, outcome: Any) -> None:
        fired.append(path)
        original(path, user, outcome)

    dep.server.fire_create_peps = spy  # type: ignore[method-assign]
    z = ClientZone(dep.server, SVC)
    with z.open_new(dep.config.landing_collection + "/x.bin") as f:
        f.write(b"abc")
    assert fired == [dep.config.landing_collection + "/x.bin"]


def test_a_failed_empty_arrival_is_made_good_by_the_arrival_with_the_bytes(dep: Any) -> None:
    from policy.errors import error_for

    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    drop_id = doc["drop_id"]
    landing = dep.config.landing_collection + "/" + drop_id
    dep.catalog.create_collection(SVC, landing)
    dep.server.client_put(SVC, landing + "/transfer.tar", open(archive, "rb").read(), api="put")
    calls = [0]

    def first_metadata_write_fails(name: str, args: Any) -> None:
        if name == "apply_metadata":
            calls[0] += 1
            if calls[0] == 1:
                raise error_for(-806000, "catalog busy")

    dep.catalog.fault_hook = first_metadata_write_fails
    out = dep.server.client_put(SVC, landing + "/manifest.json", json.dumps(doc).encode())  # create + write
    dep.catalog.fault_hook = None
    assert out.client_error is None
    assert [d for _, d in _pending(dep, drop_id)] == [dep.config.delay_seconds]  # no fallback, one real run
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"


def test_the_fallback_works_only_when_no_run_started(dep: Any) -> None:
    """A run of the empty arrival's fallback on a drop whose real run happened changes nothing and counts no
    attempt; with the real run lost (its PEP failed after the empty arrival), the fallback processes it."""
    drop_id = _upload(dep, FIXTURES["image_tar"], "prc_create")
    rows = [r for r in dep.catalog.delay_rows() if r[4] == "pending" and drop_id in r[3]]
    fallback = [r for r in rows if "if-unstarted" in r[3]]
    assert len(fallback) == 1 and len(rows) == 2
    # lose the real run: only the fallback is left
    real = [r for r in rows if "if-unstarted" not in r[3]][0]
    dep.catalog.db.execute("UPDATE delay SET state='lost' WHERE id=?", (real[0],))
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"
    other = _upload(dep, FIXTURES["image_tar"], "prc_create")
    dep.run_delay_server()
    landing = dep.config.landing_collection + "/" + other
    assert V.first(dep.admin().metadata(landing), V.ATTEMPTS) == "1"  # the fallback did not count


def test_a_second_arrival_that_reports_size_0_is_judged_by_the_catalog(dep: Any) -> None:
    """If the write's close reported file_size 0 in its PEP too (not observed either way), the catalog's size
    decides: the drop is queued at the normal delay, not left to the fallback."""
    from simzone.prep import PepOutcome

    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    drop_id = doc["drop_id"]
    landing = dep.config.landing_collection + "/" + drop_id
    dep.catalog.create_collection(SVC, landing)
    dep.server.client_put(SVC, landing + "/transfer.tar", open(archive, "rb").read(), api="put")
    w = dep.catalog.open_new(SVC, landing + "/manifest.json")
    dep.server.fire_write_peps(landing + "/manifest.json", SVC, 0, "prc", PepOutcome())  # create()'s close
    w.write(json.dumps(doc).encode())
    w.close()
    dep.server.fire_write_peps(landing + "/manifest.json", SVC, 0, "prc", PepOutcome())  # says 0 again
    assert sorted(d for _, d in _pending(dep, drop_id)) == sorted(
        [dep.config.delay_seconds, max(dep.config.delay_seconds, EMPTY_MANIFEST_DELAY)])
    dep.run_delay_server()
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"
