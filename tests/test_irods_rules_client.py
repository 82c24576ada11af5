"""policy.irods_rules_client and the CLI's real-zone path, without a server.

The rule calls go through python-irodsclient's REAL irods.rule.Rule and message classes; only the
session's connection is faked: it records the request and answers with the XML an iRODS server
sends back for an exec-my-rule call (an MsParamArray_PI trimmed to outParamDesc).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional
from xml.sax.saxutils import escape

import pytest

pytest.importorskip("irods")

from irods.message import MsParamArray, iRODSMessage  # noqa: E402

from policy import irods_rules_client as rc  # noqa: E402
from policy.cli import main  # noqa: E402
from policy.errors import IrodsError  # noqa: E402


def ms_param_array_xml(values: Dict[str, str], with_exec_out: bool = True) -> bytes:
    """What the server answers: one MsParam_PI per output label (STR_PI), optionally ruleExecOut too."""
    parts = ["<MsParamArray_PI>", "<paramLen>{}</paramLen>".format(len(values) + int(with_exec_out)),
             "<oprType>0</oprType>"]
    if with_exec_out:
        parts.append("<MsParam_PI><label>ruleExecOut</label><type>ExecCmdOut_PI</type><ExecCmdOut_PI>"
                     "<BinBytesBuf_PI><buflen>2</buflen><buf>aGk=</buf></BinBytesBuf_PI>"
                     "<BinBytesBuf_PI><buflen>2</buflen><buf>aGk=</buf></BinBytesBuf_PI>"
                     "<status>0</status></ExecCmdOut_PI></MsParam_PI>")
    for label, value in values.items():
        parts.append("<MsParam_PI><label>{}</label><type>STR_PI</type><STR_PI><myStr>{}</myStr></STR_PI>"
                     "</MsParam_PI>".format(label, escape(value, {'"': "&quot;", "'": "&apos;"})))
    parts.append("</MsParamArray_PI>")
    return "\n".join(parts).encode()


class FakeConnection:
    def __init__(self, session: "FakeSession") -> None:
        self.session = session

    def __enter__(self) -> "FakeConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def send(self, request: Any) -> None:
        self.session.sent.append(request)

    def recv(self, acceptable_errors: Any = (), return_message: Any = ()) -> Any:
        if self.session.error is not None:
            raise self.session.error
        return iRODSMessage(msg=self.session.answer(self.session.sent[-1]))


class FakePool:
    def __init__(self, session: "FakeSession") -> None:
        self.session = session

    def get_connection(self) -> FakeConnection:
        return FakeConnection(self.session)


class FakeSession:
    """Enough of iRODSSession for irods.rule.Rule.execute(): a pool whose connection answers like a server."""

    def __init__(self, outputs: Optional[Dict[str, str]] = None, error: Optional[BaseException] = None,
                 username: str = "rods") -> None:
        self.outputs = outputs or {}
        self.error = error
        self.sent: List[Any] = []
        self.pool = FakePool(self)
        self.username = username
        self.zone = "tempZone"
        self.cleaned = 0

    def answer(self, request: Any) -> bytes:
        wanted = [x for x in request.msg.outParamDesc.split("%") if x]
        return ms_param_array_xml({k: v for k, v in self.outputs.items() if k in wanted})

    def cleanup(self) -> None:
        self.cleaned += 1

    def request(self) -> Dict[str, Any]:
        msg = self.sent[-1].msg
        cond = dict(zip(msg.condInput.keyWord, msg.condInput.svalue))
        return {"rule": msg.myRule, "out": msg.outParamDesc, "cond": cond,
                "params": {p.label: (p.type, p.inOutStruct.myStr) for p in msg.inpParamArray.MsParam_PI},
                "xml": str(msg.pack())}


# ---------------------------------------------------------------------- escaping
@pytest.mark.parametrize("value", ["alice", "20261125T100000Z-aaaaaaaa1111", "omero.example.org:4064",
                                   "/tempZone/home/alice/omero-snapshots/x_y-z", "purge:20261125T100000Z-ab12cd34",
                                   "a b", "é", "a;b", "a=b", ""])
def test_safe_values_travel_unquoted(value: str) -> None:
    # round 9: a real server hands input parameters over verbatim, so they go without quotes
    body, params = rc.build_call("omero_snapshots_status", [value])
    assert params == {"*a0": value, "*out": ""}
    assert rc.rule_literal(value) == '"' + value + '"'


@pytest.mark.parametrize("value", ['a"b', '"alice"', "'alice'", "a%b", "a\\b", "a\nb", "a\rb", "a\tb", "*x", "a*b",
                                   "$userNameClient", "\x00", "\x7f", "\x85", "x" * (rc.MAX_ARG_CHARS + 1),
                                   '"); callback.evil("', " alice", "alice "])
def test_dangerous_values_are_refused_before_anything_is_sent(value: str) -> None:
    session = FakeSession({"*out": "{}"})
    with pytest.raises(rc.RuleArgumentError):
        rc.call_admin_rule(session, "omero_snapshots_status", value)
    assert session.sent == []


@pytest.mark.parametrize("rule", ["", "omero_snapshots_status(*x)", "a b", "1rule", "x;y", "r\n"])
def test_rule_names_are_checked(rule: str) -> None:
    with pytest.raises(rc.RuleArgumentError):
        rc.build_call(rule, ["x"])


def test_non_strings_are_refused() -> None:
    with pytest.raises(rc.RuleArgumentError):
        rc.rule_literal(3)  # type: ignore[arg-type]


def test_build_call_is_the_irule_form_of_the_install_guide() -> None:
    body, params = rc.build_call("omero_snapshots_enrol", ["alice", "jdoe", "omero.example.org"])
    assert body == "omero_snapshots_enrol(*a0, *a1, *a2, *out)"
    assert params == {"*a0": "alice", "*a1": "jdoe", "*a2": "omero.example.org", "*out": ""}
    assert rc.build_call("omero_snapshots_doctor", []) == ("omero_snapshots_doctor(*out)", {"*out": ""})


# ---------------------------------------------------------------------- the request and the answer
def test_admin_rule_request_and_out_parameter_through_the_real_rule_class() -> None:
    result = {"ok": True, "status": "complete", "reason": None, "note": "a&b <c> 'd' \"e\""}
    session = FakeSession({"*out": json.dumps(result, sort_keys=True)})
    assert rc.call_admin_rule(session, "omero_snapshots_status", "20261125T100000Z-aaaaaaaa1111") == result
    req = session.request()
    assert req["rule"] == "@external rule { omero_snapshots_status(*a0, *out) }"
    assert req["out"] == "*out"
    assert req["cond"] == {"instance_name": rc.NATIVE_INSTANCE}
    # round 9: exactly the python-irodsclient params a real server passed through as 'alice' and ''
    assert req["params"] == {"*a0": ("STR_PI", "20261125T100000Z-aaaaaaaa1111"), "*out": ("STR_PI", "")}
    assert "<outParamDesc>*out</outParamDesc>" in req["xml"]
    assert session.cleaned == 0  # execute(session_cleanup=False): the session's connections are kept


def test_out_values_reads_str_pi_by_label_from_a_server_answer() -> None:
    xml = ms_param_array_xml({"*a0": '{"ok": true}', "*out": "x"})
    arr = iRODSMessage(msg=xml).get_main_message(MsParamArray)
    assert rc.out_values(arr) == {"*a0": '{"ok": true}', "*out": "x"}
    assert rc.out_values(MsParamArray()) == {}  # what Rule.execute() returns for an unparseable answer
    assert rc.out_values(None) == {}


@pytest.mark.parametrize("out,expect", [(None, "returned no value"), ("", "returned no value"),
                                        ("not json", "not JSON"), ("[1, 2]", "not a JSON object")])
def test_unusable_out_values_are_errors(out: Optional[str], expect: str) -> None:
    session = FakeSession({} if out is None else {"*out": out})
    with pytest.raises(rc.RuleCallError, match=expect):
        rc.call_admin_rule(session, "omero_snapshots_list", "alice")


def test_server_errors_keep_their_code() -> None:
    from irods.exception import get_exception_by_code

    session = FakeSession(error=get_exception_by_code(-1102000, "no rule"))
    with pytest.raises(rc.RuleCallError) as info:
        rc.call_admin_rule(session, "omero_snapshots_list", "alice")
    assert info.value.code == -1102000 and isinstance(info.value, IrodsError)
    assert "omero_snapshots_list" in str(info.value)


def test_call_rule_returns_what_the_rule_wrote_back() -> None:
    session = FakeSession({"*a0": '{"ok": true, "released_to": "/x"}'})
    out = rc.call_rule(session, "omero_snapshots_svc_release", ["20261125T100000Z-aaaaaaaa1111", "break-lock"])
    assert out == ['{"ok": true, "released_to": "/x"}', "break-lock"]
    assert session.request()["out"] == "*a0%*a1"
    assert session.request()["rule"] == "@external rule { omero_snapshots_svc_release(*a0, *a1) }"


def test_run_rule_as_refuses_hostile_arguments_before_connecting() -> None:
    from policy.errors import InvalidInput
    from policy.prc_zone import run_rule_as

    with pytest.raises(InvalidInput):
        run_rule_as("omero-svc", "omero_snapshots_process_drop", ['x"); evil("'])


# ---------------------------------------------------------------------- the CLI against a "real" zone
def _env_file(tmp_path: Any) -> str:
    path = tmp_path / "irods_environment.json"
    path.write_text(json.dumps({"irods_host": "localhost", "irods_port": 1247, "irods_zone_name": "tempZone",
                                "irods_user_name": "rods"}))
    return str(path)


@pytest.fixture
def real(monkeypatch: Any, tmp_path: Any) -> Dict[str, Any]:
    """The CLI's AdminClient on a fake session (no server), its env file set as a real one would be."""
    state: Dict[str, Any] = {"session": FakeSession()}
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", _env_file(tmp_path))
    original = rc.AdminClient.__init__

    def init(self: Any, env_file: str, session: Any = None, rule_class: Any = None) -> None:
        original(self, env_file, session=state["session"], rule_class=rule_class)

    monkeypatch.setattr(rc.AdminClient, "__init__", init)
    return state


def test_cli_status_on_a_real_zone(real: Dict[str, Any], capsys: Any) -> None:
    st: Dict[str, Any] = {"ok": True, "drop": "20261125T100000Z-aaaaaaaa1111", "status": "complete", "reason": None,
          "snapshot": "/tempZone/home/alice/omero-snapshots/s", "location": "/tempZone/home/alice/omero-snapshots/s"}
    real["session"].outputs = {"*out": json.dumps(st)}
    assert main(["status", st["drop"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == st
    assert main(["status", st["drop"]]) == 0
    assert "status: complete" in capsys.readouterr().out
    real["session"].outputs = {"*out": json.dumps({"ok": True, "status": "unknown", "drop": "x"})}
    assert main(["status", "20261125T100000Z-bbbbbbbb2222"]) == 1


def test_cli_list_and_admin_commands_on_a_real_zone(real: Dict[str, Any], capsys: Any) -> None:
    snap = {"path": "/tempZone/home/alice/omero-snapshots/s", "created": "2026-11-25T10:00:00Z", "status": "complete",
            "archive_size": 10, "label": "L"}
    real["session"].outputs = {"*out": json.dumps({"ok": True, "snapshots": [snap]})}
    assert main(["list", "--user", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [snap]
    assert '*a0' in real["session"].request()["params"] and real["session"].request()["params"]["*a0"][1] == "alice"
    real["session"].outputs = {"*out": json.dumps({"ok": False, "error": "purge deletes ... 'purge:x'"})}
    assert main(["purge", "20261125T100000Z-aaaaaaaa1111"]) == 1
    assert real["session"].request()["rule"] == "@external rule { omero_snapshots_purge(*a0, *a1, *out) }"
    real["session"].outputs = {"*out": json.dumps({"ok": True, "checks": [
        {"check": "configuration", "ok": True, "detail": "fine"}]})}
    assert main(["doctor"]) == 0
    assert "ok   configuration" in capsys.readouterr().out


def test_cli_tells_a_non_admin_what_to_do(real: Dict[str, Any], capsys: Any) -> None:
    real["session"] = FakeSession({"*out": json.dumps({"ok": False, "error": "admin rules need a rodsadmin"})},
                                  username="omero-svc")
    assert main(["list", "--user", "alice"]) == 1
    err = capsys.readouterr().err
    assert "authenticates as 'omero-svc'" in err and "IRODS_ENVIRONMENT_FILE" in err


def test_cli_refuses_hostile_arguments_with_exit_2(real: Dict[str, Any], capsys: Any) -> None:
    assert main(["status", 'x"); evil("']) == 2
    assert "refusing" in capsys.readouterr().err
    assert real["session"].sent == []


def test_cli_reports_a_server_error_with_exit_2(real: Dict[str, Any], capsys: Any) -> None:
    from irods.exception import get_exception_by_code

    real["session"].error = get_exception_by_code(-1102000, "no rule")
    assert main(["doctor"]) == 2
    assert "iRODS" in capsys.readouterr().err


def test_cli_without_environment_exits_2(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(tmp_path / "missing.json"))
    for argv in (["list", "--user", "alice"], ["status", "x"], ["doctor"], ["zone", "ls", "/tempZone"],
                 ["enrol", "alice", "--omero-user", "al"], ["release", "d"], ["reprocess", "d"],
                 ["unenrol", "--omero-user", "al"],
                 ["purge", "d", "--confirm", "purge:d"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert "no iRODS environment" in err and "--zone-dir" in err, err


def test_cli_default_environment_is_the_users(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.delenv("IRODS_ENVIRONMENT_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rc.environment_file() == os.path.join(str(tmp_path), ".irods", "irods_environment.json")


def test_simulate_never_touches_a_real_zone(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    monkeypatch.setenv("IRODS_ENVIRONMENT_FILE", str(tmp_path / "missing.json"))
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "valid_single_image.tar")
    assert main(["simulate", data, "--omero-user", "jdoe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] in ("placed", "complete")
