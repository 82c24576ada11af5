"""The upload PEP's verdict (issue 20): Save learns where the snapshot will be, or why it was refused, from
the manifest's arrival itself, not after the delay server's sleep.

On the manifest's whole arrival the PEP validates the manifest, the drop, the mapping and the enrolment
(catalog calls only, no checksum): a refusal quarantines the drop at once and schedules nothing; an
acceptable drop gets its snapshot place claimed (empty, the service account's, status `accepted`). The
delayed rule then verifies the checksum (a mismatch gives the claim back and quarantines), moves, unpacks
and hands over, into exactly the claimed place.
"""

from __future__ import annotations

import json
from typing import Any, List

from helpers import FIXTURES, OMERO_SERVER, drop, enrolled_deployment, manifest_doc

from policy import vocabulary as V
from policy.ingest import drop_status

SVC = "omero-svc"
ROOT = "/tempZone/home/alice/omero-snapshots"


def pending_runs(d: Any, drop_id: str) -> List[Any]:
    return [r for r in d.catalog.delay_rows() if r[4] == "pending" and drop_id in r[3]]


def landing(d: Any, drop_id: str) -> Any:
    return V.as_dict(d.catalog.metadata(d.config.landing_collection + "/" + drop_id))


def test_an_acceptable_drop_is_accepted_by_the_pep_with_its_snapshot_place(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, up = drop(d, FIXTURES["image_tar"], run=False)  # the PEP only: no delay server yet
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == V.ACCEPTED and st.snapshot and st.snapshot.startswith(ROOT + "/"), st
    assert st.irods_user == "alice"
    assert landing(d, drop_id)[V.STATUS] == [V.ACCEPTED]
    # the claim: empty, the service account's, nothing handed over yet, the archive still in landing
    assert d.catalog.walk(st.snapshot) == [(st.snapshot, "collection")]
    assert {(a.user, a.level) for a in d.catalog.acl(st.snapshot)} == {(SVC, "own")}
    assert d.catalog.exists(d.config.landing_collection + "/" + drop_id + "/transfer.tar")
    assert pending_runs(d, drop_id), "the delayed run was not scheduled"
    d.run_delay_server()
    done = drop_status(d.admin(), d.config, drop_id)
    assert done.status == V.COMPLETE and done.snapshot == st.snapshot


def test_a_refusal_is_quarantined_by_the_pep_and_nothing_is_scheduled(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    doc = manifest_doc(FIXTURES["image_tar"], omero_user="nobody")
    drop_id, _ = drop(d, FIXTURES["image_tar"], doc, run=False)
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == V.QUARANTINED and "nobody" in (st.reason or ""), st
    assert st.location == d.config.quarantine_collection + "/" + drop_id
    assert not [r for r in pending_runs(d, drop_id) if "'if-unstarted'" not in r[3]]
    assert [p for p, _ in d.catalog.walk(ROOT)] == [ROOT]  # no snapshot claimed
    d.run_delay_server()  # the empty arrival's fallback, if any, finds it final
    assert drop_status(d.admin(), d.config, drop_id).status == V.QUARANTINED


def test_a_checksum_mismatch_found_later_gives_the_claim_back_and_quarantines(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    doc = manifest_doc(FIXTURES["image_tar"], archive_sha256="0" * 64)
    drop_id, _ = drop(d, FIXTURES["image_tar"], doc, run=False)
    claimed = drop_status(d.admin(), d.config, drop_id)
    assert claimed.status == V.ACCEPTED and claimed.snapshot  # the PEP does not read the archive
    d.run_delay_server()
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == V.QUARANTINED and "checksum mismatch" in (st.reason or ""), st
    assert not d.catalog.exists(claimed.snapshot) and [p for p, _ in d.catalog.walk(ROOT)] == [ROOT]
    q = d.config.quarantine_collection + "/" + drop_id
    assert V.SNAPSHOT_PATH not in V.as_dict(d.catalog.metadata(q))
    with open(FIXTURES["image_tar"], "rb") as f:
        assert bytes(d.catalog.open_read(SVC, q + "/transfer.tar").read()) == f.read()


def test_a_mapping_changed_after_the_verdict_places_the_snapshot_for_the_new_user(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, _ = drop(d, FIXTURES["image_tar"], run=False)
    old = drop_status(d.admin(), d.config, drop_id).snapshot
    assert old and old.startswith(ROOT + "/")
    d.add_user("bob")
    res = json.loads(d.server.irule("rods", "omero_snapshots_enrol", ["bob", "jdoe", OMERO_SERVER, "replace", ""])[4])
    assert res["ok"], res
    d.run_delay_server()
    st = drop_status(d.admin(), d.config, drop_id)
    assert st.status == V.COMPLETE and st.irods_user == "bob" and st.snapshot.startswith(
        "/tempZone/home/bob/omero-snapshots/"), st
    assert not d.catalog.exists(old)  # the first claim was given back


def test_a_verdict_that_cannot_be_given_leaves_the_decision_to_the_delayed_rule(tmp_path: Any, monkeypatch: Any
                                                                              ) -> None:
    import policy.ingest

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("catalog hiccup")
    monkeypatch.setattr(policy.ingest, "verdict", broken)
    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, up = drop(d, FIXTURES["image_tar"], run=False)
    assert up.manifest_pep.client_error is None  # the upload is never failed
    assert drop_status(d.admin(), d.config, drop_id).status == V.QUEUED
    monkeypatch.undo()
    d.run_delay_server()
    assert drop_status(d.admin(), d.config, drop_id).status == V.COMPLETE
