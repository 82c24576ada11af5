"""Admin rules called exactly as docs/install.md and the CLI call them, with a real server's argument passing.

Round 9 (tests/data/prep-observed/round9-eof-and-rule-arguments.jsonl) showed that a real iRODS hands
irule's input parameters to a Python rule verbatim, quotes included. The fake's irule and
python-irodsclient Rule (simzone/rule_exec.py) do the same, so a guide or client that quotes its
values fails here as it failed on the real server.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List

import pytest
from helpers import FIXTURES, OMERO_SERVER, drop, manifest_doc

from policy.ingest import drop_status
from policy.rule_args import RuleArgumentError, received
from simzone.rule_exec import NotObserved, exec_my_rule, parse_irule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUND9 = os.path.join(ROOT, "tests", "data", "prep-observed", "round9-eof-and-rule-arguments.jsonl")


def irule_commands(doc: str) -> List[str]:
    """Every irule command of a markdown file's sh blocks, continuation lines joined."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if re.search(r"\birule\b", cmd) and not cmd.lstrip().startswith("#") and "irule -a" not in cmd:
                out.append(re.sub(r"\s+", " ", cmd.strip()))
    return out


# ---------------------------------------------------------------------- the fake passes arguments like round 9
def _round9() -> List[Dict[str, Any]]:
    with open(ROUND9, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class _Recorder:
    """A server with one rule, probe_args, that records what it received (the round-9 probe)."""

    def __init__(self) -> None:
        self.got: List[List[str]] = []

    def has_rule(self, name: str) -> bool:
        return name == "probe_args"

    def call_rule(self, name: str, args: List[Any], user: str) -> None:
        self.got.append([str(a) for a in args])
        args[-1] = "written-by-python"


def test_fake_irule_passes_arguments_as_the_real_server_did() -> None:
    rec = next(r for r in _round9() if r["probe"] == "rule_args_from_native_instance")
    for case in rec["results"]:
        server = _Recorder()
        import shlex

        _s, instance, body, params, outputs = parse_irule(shlex.split(case["irule"]))
        out = exec_my_rule(server, "rods", body, params, outputs, instance)
        assert server.got == [case["python_received"]], case["irule"]
        assert out == {"*out": "written-by-python"}  # 'the client printed *out = written-by-python'


def test_fake_python_irodsclient_rule_passes_params_as_the_real_server_did() -> None:
    from policy.irods_rules_client import execute
    from simzone.rule_exec import FakeRule, RuleSession

    rec = next(r for r in _round9() if r["probe"] == "rule_args_from_python_irodsclient")
    for case in rec["results"]:
        server = _Recorder()
        out = execute(RuleSession(server, "rods"), "probe_args(*a, *out)", case["params"], ["*out"],
                      rule_class=FakeRule)
        assert server.got == [case["python_received"]]
        assert [[k, v] for k, v in out.items()] == case["out_returned"]


ROUND11 = os.path.join(ROOT, "tests", "data", "prep-observed", "round11-arguments.jsonl")
PROBE_ARGS = os.path.join(ROOT, "tests", "data", "prep-probes", "probe_rule_arguments.py")


def _round11() -> List[Dict[str, Any]]:
    with open(ROUND11, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class _Recorder2(_Recorder):
    def has_rule(self, name: str) -> bool:
        return name == "probe_args2"


def test_round11_unquoted_values_reach_the_rule_verbatim_through_irule() -> None:
    """round11-arguments.jsonl A1/A2: each COMMAND of probe_rule_arguments.py as rods; the values ('/', ':',
    '=', ';', non-ASCII, empty) arrive verbatim and the empty OUT parameter comes back as the rule wrote it."""
    import shlex

    recs = _round11()
    phase = [i for i, r in enumerate(recs) if r["probe"] == "phase"][0]
    received_ = [r["received"] for r in recs[:phase] if r["probe"] == "probe_args2"]
    clients = [r for r in recs[:phase] if r["probe"] == "irule_client"]
    assert len(received_) == len(clients) == 7
    for got, client in zip(received_, clients):
        server = _Recorder2()
        _s, instance, body, params, outputs = parse_irule(shlex.split(client["command"]))
        out = exec_my_rule(server, "rods", body, params, outputs, instance)
        assert server.got == [got], client["command"]
        assert ["{} = {}".format(k, v) for k, v in out.items()] == client["stdout"].splitlines()


def test_round11_values_reach_the_rule_verbatim_through_python_irodsclient() -> None:
    """round11-arguments.jsonl, the DRIVER's Rule(..., params={"*a": v, "*out": ""}) as the rodsuser."""
    from policy.irods_rules_client import execute
    from simzone.rule_exec import FakeRule, RuleSession

    recs = _round11()
    phase = [i for i, r in enumerate(recs) if r["probe"] == "phase"][0]
    for rec in [r for r in recs[phase:] if r["probe"] == "probe_args2"]:
        server = _Recorder2()
        execute(RuleSession(server, "omero-svc"), "probe_args2(*a, *out)", {"*a": rec["received"][0], "*out": ""},
                ["*out"], rule_class=FakeRule)
        assert server.got == [rec["received"]]


def test_round11_create_then_write_fires_the_upload_peps_twice(tmp_path: Any) -> None:
    """round11-arguments.jsonl P1/P2: python-irodsclient create() + open('w') + write of 8 bytes fires
    pep_resource_modified_post (file_size 0, then 8), acPostProcForPut and pep_api_data_obj_close_post for
    BOTH closes. probe_rule_arguments.py loaded as the fake server's core, the DRIVER's upload replayed."""
    from simzone.catalog import SimCatalog
    from simzone.prep import FakeServer

    recs = _round11()
    phase = [i for i, r in enumerate(recs) if r["probe"] == "phase"][0]
    golden = [r for r in recs[phase + 1:] if r["probe"] != "probe_args2" and r["probe"] != "driver_client"]
    out = tmp_path / "prep-probe.jsonl"
    saved = os.environ.get("PREP_PROBE_OUT")
    os.environ["PREP_PROBE_OUT"] = str(out)
    try:
        core_py = tmp_path / "core.py"
        core_py.write_text(open(PROBE_ARGS, encoding="utf-8").read())
        cat = SimCatalog(str(tmp_path / "zone"))
        cat.add_user("omero-svc", "rodsuser")
        srv = FakeServer(cat, FakeServer.load_core(str(core_py)), str(tmp_path / "rodsLog"))
        coll = "/tempZone/home/omero-svc/probe-args-1"
        cat.create_collection("omero-svc", coll)
        srv.client_put("omero-svc", coll + "/manifest.json", b'{"x": 1}', api="prc_create")
    finally:
        if saved is None:
            os.environ.pop("PREP_PROBE_OUT", None)
        else:
            os.environ["PREP_PROBE_OUT"] = saved
        import sys

        sys.modules.pop("core", None)
    fake = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert fake == golden


def test_what_no_record_shows_is_refused_not_guessed() -> None:
    with pytest.raises(NotObserved):
        parse_irule(["irule", "-s", "-r", "x", "r(*a)", '*a="quoted"', "*a"])
    with pytest.raises(NotObserved):
        exec_my_rule(_Recorder(), "rods", 'probe_args("a*b", *out)', {"*out": ""}, ["*out"])


# ---------------------------------------------------------------------- the rules refuse quoted values with the fix
def test_a_quoted_value_is_refused_with_the_fix() -> None:
    with pytest.raises(RuleArgumentError) as e:
        received(["alice", '"jdoe"'], "omero_snapshots_enrol")
    assert "argument 2 of omero_snapshots_enrol" in str(e.value) and "*name=jdoe" in str(e.value)
    assert received(["alice", "", "with space"], "r") == ["alice", "", "with space"]


def test_the_old_documented_quoted_form_fails_on_the_fake_as_it_did_on_the_server(dep: Any) -> None:
    dep.add_user("bob")
    out = dep.irule("irule -r irods_rule_engine_plugin-irods_rule_language-instance "
                    "'omero_snapshots_enrol(*irods_user, *omero_user, *omero_server, *out)' "
                    "'*irods_user=\"bob\"%*omero_user=\"bob\"%*omero_server=\"omero.example.org\"%*out=\"\"' '*out'")
    res = json.loads(out["*out"])
    assert not res["ok"] and "quotes included" in res["error"] and "*name=bob" in res["error"]
    assert dep.catalog.user_type("bob") == "rodsuser" and not dep.catalog.exists("/tempZone/home/bob/omero-snapshots")
    out = dep.irule("irule -s -r irods_rule_engine_plugin-irods_rule_language-instance "
                    "'omero_snapshots_list(*irods_user, *out)' '*irods_user=alice%*out=' '*out'")
    assert "quotes included" in json.loads(out["*out"])["error"]


# ---------------------------------------------------------------------- every documented command works
def _fill(cmd: str, values: Dict[str, str]) -> str:
    for placeholder, value in values.items():
        cmd = cmd.replace(placeholder, value)
    return cmd


def _run(dep: Any, cmd: str) -> Dict[str, Any]:
    out = dep.irule(cmd)
    assert set(out) == {"*out"}, cmd
    return dict(json.loads(out["*out"]))


def test_install_guide_lists_every_admin_rule_with_irule() -> None:
    rules = {re.search(r"'(omero_snapshots_\w+)\(", c).group(1) for c in irule_commands("docs/install.md")}
    assert rules == {"omero_snapshots_" + r for r in
                     ("enrol", "list", "status", "unenrol", "reprocess", "release", "purge", "doctor",
                      "sweep_start", "fixity_start")}


def test_every_irule_command_of_the_install_guide_works_as_written(dep: Any) -> None:
    cmds = {re.search(r"'(omero_snapshots_\w+)\(", c).group(1): c for c in irule_commands("docs/install.md")}
    # step 9: enrol (alice exists: the guide says `iadmin mkuser alice rodsuser` first)
    dep.add_user("carol")
    res = _run(dep, cmds["omero_snapshots_enrol"].replace("alice", "carol"))
    assert res["ok"], res
    acl = {(a.user, a.level) for a in dep.admin().acl("/tempZone/home/carol/omero-snapshots")}
    assert acl == {("carol", "own"), ("omero-svc", "modify_object")}
    done, _ = drop(dep, FIXTURES["image_tar"])
    res = _run(dep, cmds["omero_snapshots_list"])
    assert res["ok"] and len(res["snapshots"]) == 1, res
    res = _run(dep, _fill(cmds["omero_snapshots_status"], {"<drop id or snapshot path>": done}))
    assert res["ok"] and res["status"] == "complete", res
    res = _run(dep, _fill(cmds["omero_snapshots_reprocess"], {"<drop id>": done}))
    assert res["ok"] and res["status"] == "complete", res
    # a quarantined drop: release after enrolment, then another one purged
    stray, _ = drop(dep, FIXTURES["image_tar"], manifest_doc(FIXTURES["image_tar"], omero_user="carol",
                                                              omero_server="omero.example.org.other"))
    assert drop_status(dep.admin(), dep.config, stray).status == "quarantined"
    assert dep.enrol("carol", "carol", "omero.example.org.other")["ok"]
    res = _run(dep, _fill(cmds["omero_snapshots_release"], {"<drop id>": stray}))
    assert res["ok"] and res["status"] == "complete", res
    junk, _ = drop(dep, FIXTURES["image_tar"], manifest_doc(FIXTURES["image_tar"], omero_user="nobody"))
    res = _run(dep, _fill(cmds["omero_snapshots_purge"], {"<drop id>": junk}))
    assert res["ok"] and res["objects_removed"] == 2, res
    res = _run(dep, cmds["omero_snapshots_doctor"])
    assert "landing_collection" in json.dumps(res) or "landing" in json.dumps(res), res
    res = _run(dep, cmds["omero_snapshots_sweep_start"])
    assert res["ok"] and res["sweep"], res
    assert any("omero_snapshots_sweep(" in r[3] for r in dep.catalog.delay_rows() if r[4] == "pending")
    res = _run(dep, cmds["omero_snapshots_fixity_start"])
    assert res["ok"] and res["fixity"].startswith("armed"), res
    res = _run(dep, cmds["omero_snapshots_unenrol"].replace("alice", "carol"))
    assert res["ok"] and res["irods_user"] == "carol", res


def test_docker_readme_enrol_command_works_as_written(dep: Any) -> None:
    (cmd,) = [c for c in irule_commands("docker/README.md") if "omero_snapshots_enrol" in c]
    cmd = cmd.split(" -- ", 1)[1]  # after `docker compose exec irods-provider runuser -u irods --`
    dep.add_user("alice2")
    res = _run(dep, cmd.replace("alice", "alice2"))
    assert res["ok"], res


def _cli_on_the_fake(dep: Any, monkeypatch: Any, tmp_path: Any) -> None:
    """Point the CLI's real-zone path (AdminClient over python-irodsclient's Rule) at the fake server."""
    from policy import irods_rules_client as rc
    from simzone.rule_exec import FakeRule, RuleSession

    env = tmp_path / "irods_environment.json"
    env.write_text("{}")
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(env))
    original = rc.AdminClient.__init__

    def init(self: Any, env_file: str, session: Any = None, rule_class: Any = None) -> None:
        original(self, env_file, session=RuleSession(dep.server, "rods"), rule_class=FakeRule)

    monkeypatch.setattr(rc.AdminClient, "__init__", init)
    monkeypatch.setattr(rc.AdminClient, "close", lambda self: None)
    monkeypatch.setattr(rc.AdminClient, "user_type", lambda self, name: dep.catalog.user_type(name))


def test_cli_admin_commands_reach_the_rules_with_unquoted_arguments(dep: Any, monkeypatch: Any,
                                                                   tmp_path: Any, capsys: Any) -> None:
    from policy.cli import main

    _cli_on_the_fake(dep, monkeypatch, tmp_path)
    done, _ = drop(dep, FIXTURES["image_tar"])
    assert main(["status", done, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "complete"
    assert main(["list", "--user", "alice", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["reprocess", done, "--json"]) == 0
    capsys.readouterr()
    assert main(["enrol", "alice", "--omero-user", "jdoe2", "--omero-server", OMERO_SERVER]) == 0
    capsys.readouterr()
    assert main(["status", '"' + done + '"']) == 2  # refused by the client before anything is sent
    assert "double quote" in capsys.readouterr().err


def test_every_cli_command_of_the_install_guide_works_as_written(dep: Any, monkeypatch: Any, tmp_path: Any,
                                                                capsys: Any) -> None:
    import shlex

    from policy.cli import main

    _cli_on_the_fake(dep, monkeypatch, tmp_path)
    with open(os.path.join(ROOT, "docs", "install.md"), encoding="utf-8") as f:
        text = f.read()
    cmds = re.findall(r"^sudo -iu irods (omero-snapshots [^\n`]+)$", text, re.M)
    cmds += re.findall(r"`sudo -iu irods (omero-snapshots [^`]+)`", text)
    assert {c.split()[1] for c in cmds} >= {"enrol", "list", "status", "doctor"}, cmds
    done, _ = drop(dep, FIXTURES["image_tar"])
    for cmd in cmds:
        argv = shlex.split(cmd.replace("<drop id or snapshot path>", done))[1:]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (cmd, out, err)
