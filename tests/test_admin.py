"""Admin rules (irule as rodsadmin) and their CLI commands: reprocess, release, purge, doctor."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from helpers import FIXTURES, OMERO_SERVER, drop, manifest_doc

from policy.cli import main
from policy.ingest import drop_status
from simzone.prep import NATIVE_INSTANCE

SVC = "omero-svc"


def quarantined_drop(dep: Any) -> str:
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, manifest_doc(archive, omero_user="newcomer"))
    assert drop_status(dep.admin(), dep.config, drop_id).status == "quarantined"
    return drop_id


def test_release_after_enrolment_completes_the_drop(dep: Any) -> None:
    drop_id = quarantined_drop(dep)
    refused = dep.admin_rule("omero_snapshots_reprocess", drop_id)
    assert not refused["ok"] and "release it" in refused["error"]
    assert dep.enrol("bob", "newcomer", OMERO_SERVER)["ok"]
    res = dep.admin_rule("omero_snapshots_release", drop_id)
    assert res["ok"] and res["status"] == "complete", res
    assert res["snapshot"].startswith("/tempZone/home/bob/omero-snapshots/")
    assert dep.catalog.walk(dep.config.quarantine_collection) == [(dep.config.quarantine_collection, "collection")]


def test_release_of_a_drop_not_in_quarantine_is_refused(dep: Any) -> None:
    res = dep.admin_rule("omero_snapshots_release", "20261125T100000Z-nothere1")
    assert not res["ok"] and "not in quarantine" in res["error"]


def test_purge_needs_the_exact_confirmation(dep: Any) -> None:
    drop_id = quarantined_drop(dep)
    q = dep.config.quarantine_collection + "/" + drop_id
    for confirm in ("", "yes", "purge:" + drop_id + "x"):
        res = dep.admin_rule("omero_snapshots_purge", drop_id, confirm)
        assert not res["ok"] and "purge:" + drop_id in res["error"]
        assert dep.catalog.exists(q + "/transfer.tar")
    res = dep.admin_rule("omero_snapshots_purge", drop_id, "purge:" + drop_id)
    assert res["ok"] and res["objects_removed"] == 2, res
    assert not dep.catalog.exists(q)


def test_purge_never_touches_snapshots_or_live_drops(dep: Any) -> None:
    drop_id, _ = drop(dep, FIXTURES["image_tar"])
    res = dep.admin_rule("omero_snapshots_purge", drop_id, "purge:" + drop_id)
    assert not res["ok"] and "not in quarantine" in res["error"]
    assert drop_status(dep.admin(), dep.config, drop_id).status == "complete"


def test_reprocess_respects_a_live_lock_and_force_takes_it_over(dep: Any) -> None:
    from policy.drop_lock import acquire

    drop_id, _ = drop(dep, FIXTURES["dataset_zip"], run=False)
    held = acquire(dep.zone_as(SVC), dep.config, drop_id)  # a run that holds the lock (alive, or died just now)
    assert held is not None
    # Within its lease (limits.lock_seconds): the drop's own run finds the lock held and comes back at the
    # lease's end, after this horizon.
    dep.server.run_delay_queue(horizon=dep.config.limits.lock_seconds // 2)
    assert drop_status(dep.admin(), dep.config, drop_id).status == "accepted"  # the upload PEP's verdict
    res = dep.admin_rule("omero_snapshots_reprocess", drop_id)
    assert not res["ok"] and "another run is processing" in res["error"] and "force" in res["error"], res
    res = dep.admin_rule("omero_snapshots_reprocess", drop_id, "force")
    assert res["ok"] and res["status"] == "complete", res
    assert not held.held()  # taken over: the old holder would stop at its next check


def test_enrol_replace_remaps_an_enrolled_user(dep: Any, capsys: Any) -> None:
    res = dep.enrol("bob", "jdoe", OMERO_SERVER)
    assert not res["ok"] and "--replace" in res["error"]
    assert main(["enrol", "bob", "--omero-user", "jdoe", "--omero-server", OMERO_SERVER, "--replace",
                 "--zone-dir", dep.zone_dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["irods_user"] == "bob"
    from policy.mapping import load_mapping

    assert load_mapping(dep.mapping_path).lookup(OMERO_SERVER, "jdoe") == "bob"


def test_admin_rules_refuse_non_admins(dep: Any) -> None:
    drop_id = quarantined_drop(dep)
    for user in ("alice", SVC):
        out = dep.server.irule(user, "omero_snapshots_purge", [drop_id, "purge:" + drop_id, ""], NATIVE_INSTANCE)
        assert json.loads(out[2]) == {"ok": False, "error": "admin rules need a rodsadmin"}
    out = dep.server.irule("alice", "omero_snapshots_svc_purge", [drop_id, "purge:" + drop_id], NATIVE_INSTANCE)
    assert json.loads(out[0])["error"] == "only the service account runs this rule"
    assert dep.catalog.exists(dep.config.quarantine_collection + "/" + drop_id)


def test_doctor_reports_health_and_problems(dep: Any) -> None:
    res = dep.admin_rule("omero_snapshots_doctor")
    assert res["ok"], res
    assert {c["check"] for c in res["checks"]} >= {"configuration", "mapping", "service account",
                                                   "landing collection", "rules loaded", "delay server"}
    # a delayed rule nobody runs for a long time: the delay server is down
    dep.catalog.enqueue_delay(SVC, "<INST_NAME>irods_rule_engine_plugin-python-instance</INST_NAME>",
                              "callback.omero_snapshots_process_drop('x')")
    dep.catalog.db.execute("UPDATE delay SET created = created - 3600")
    res = dep.admin_rule("omero_snapshots_doctor")
    bad = {c["check"]: c for c in res["checks"] if not c["ok"]}
    assert not res["ok"] and "delay server" in bad and "is the delay server running" in bad["delay server"]["detail"]
    with open(os.path.join(dep.config_dir, "config.json"), "w") as f:
        f.write('{"config_version": 1}')
    res = dep.admin_rule("omero_snapshots_doctor")
    assert not res["ok"] and res["checks"][0]["check"] == "configuration" and not res["checks"][0]["ok"]


def test_cli_admin_commands(dep: Any, capsys: Any) -> None:
    drop_id = quarantined_drop(dep)
    z = ["--zone-dir", dep.zone_dir]
    assert main(["doctor"] + z) == 0
    assert "landing collection" in capsys.readouterr().out
    assert main(["purge", drop_id] + z) == 1
    assert "purge:" + drop_id in capsys.readouterr().out
    assert main(["reprocess", drop_id, "--json"] + z) == 1
    assert main(["purge", drop_id, "--confirm", "purge:" + drop_id, "--json"] + z) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["objects_removed"] == 2


@pytest.mark.parametrize("bad", ["../x", "a b", "x'); callback.evil('"])
def test_hostile_drop_ids_never_reach_rule_text(dep: Any, bad: str) -> None:
    # Straight to the server, past the client's own refusal (tests/test_rule_arguments.py has that one).
    res = dep.admin_rule_unchecked("omero_snapshots_reprocess", bad)
    assert not res["ok"] and "not a valid drop id" in res["error"]
    assert [r for r in dep.catalog.delay_rows() if "evil" in r[3]] == []


def test_doctor_names_drops_nothing_works_on(dep: Any) -> None:
    from policy.admin import stuck_drops

    drop_id, _ = drop(dep, FIXTURES["dataset_zip"], run=False)  # accepted by the upload PEP, its delayed rule never ran
    svc = dep.zone_as(SVC)
    assert stuck_drops(svc, dep.config) == []  # just queued: not stuck yet
    later = __import__("time").time() + 3600
    assert stuck_drops(svc, dep.config, now=later) == ["{} (accepted)".format(drop_id)]
    dep.run_delay_server()
    assert stuck_drops(svc, dep.config, now=later) == []  # complete


def test_doctor_does_not_name_a_drop_whose_retry_is_due(dep: Any) -> None:
    """The doctor runs through PREP as the rodsadmin, who sees the delayed rules (round 10)."""
    from policy.admin import stuck_drops
    from policy.prep_zone import PrepZone
    from simzone.prep import make_rei

    def prep(user: str) -> PrepZone:
        return PrepZone(dep.server.callback(user), make_rei(user, "tempZone"), "tempZone")

    drop_id, _ = drop(dep, FIXTURES["dataset_zip"], run=False)
    dep.catalog.db.execute("UPDATE delay SET state='lost'")  # the PEP's runs are gone
    now = dep.server.clock.now()
    assert stuck_drops(prep("rods"), dep.config, now=now + 3600) == ["{} (accepted)".format(drop_id)]
    # a retry waiting out an hour's backoff: something works on the drop
    prep(SVC).schedule("callback.omero_snapshots_process_drop('{}', 'retry')".format(drop_id), 3500)
    assert stuck_drops(prep("rods"), dep.config, now=now + 3600) == []
    # long overdue (its delay server is gone): named again
    assert stuck_drops(prep("rods"), dep.config, now=now + 3500 + 7200) == ["{} (accepted)".format(drop_id)]
