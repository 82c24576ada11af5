"""The three OMERO scripts, parsed by real omero-py (omero.scripts.parse_file), and their thin shells run.

omero-py needs zeroc-ice 3.6, which PyPI has only as a source archive that does
not build on CPython 3.11; ../shared/wheels/ has a wheel for it (see its
README). Where omero-py cannot be imported these tests skip, with that reason.
"""

from __future__ import annotations

import os
import runpy
from typing import Any, Dict, List

import pytest

try:  # importorskip would only catch a missing module; a broken zeroc-ice raises other ImportErrors
    import omero.gateway  # noqa: F401
    import omero.scripts as scripts
    from omero.rtypes import RListI, RLongI, RStringI, unwrap
except ImportError as e:
    pytest.skip("omero-py is not importable ({}); install it with: pip install ../shared/wheels/zeroc_ice-3.6.5-"
                "cp311-cp311-linux_x86_64.whl omero-py==5.23.0".format(e), allow_module_level=True)

from omero_client import script_support  # noqa: E402  (after the skip)

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "omero_client", "scripts")


def parsed(name: str) -> Any:
    return scripts.parse_file(os.path.join(SCRIPTS, name))


def test_save_script_parameters() -> None:
    p = parsed("Save_to_iRODS.py")
    assert p.name == "Save_to_iRODS.py"
    assert sorted(p.inputs) == ["Data_Type", "IDs", "Label"]
    dt, ids, label = p.inputs["Data_Type"], p.inputs["IDs"], p.inputs["Label"]
    assert isinstance(dt.prototype, RStringI) and not dt.optional
    assert unwrap(dt.values) == ["Project", "Dataset", "Image", "Screen", "Plate"]
    assert isinstance(ids.prototype, RListI) and not ids.optional
    assert isinstance(ids.prototype.val[0], RLongI)  # List of Long, as OMERO.web pre-fills it
    assert isinstance(label.prototype, RStringI) and label.optional
    assert [dt.grouping, ids.grouping, label.grouping] == ["1", "2", "3"]
    assert list(p.outputs) == ["Message"] and isinstance(p.outputs["Message"].prototype, RStringI)


def test_list_script_has_no_inputs() -> None:
    p = parsed("List_iRODS_Snapshots.py")
    assert p.name == "List_iRODS_Snapshots.py"
    assert dict(p.inputs) == {}
    assert list(p.outputs) == ["Message"]


def test_load_script_parameters() -> None:
    p = parsed("Load_from_iRODS.py")
    assert p.name == "Load_from_iRODS.py"
    assert sorted(p.inputs) == ["Snapshot", "Snapshot_Index"]
    assert isinstance(p.inputs["Snapshot"].prototype, RStringI) and p.inputs["Snapshot"].optional
    assert isinstance(p.inputs["Snapshot_Index"].prototype, RLongI) and p.inputs["Snapshot_Index"].optional
    assert list(p.outputs) == ["Message"]


def test_no_script_takes_credentials_hosts_or_paths_for_iRODS() -> None:
    for name in ("Save_to_iRODS.py", "List_iRODS_Snapshots.py", "Load_from_iRODS.py"):
        for key in parsed(name).inputs:
            low = key.lower()
            assert not any(w in low for w in ("password", "user", "host", "zone", "landing", "irods")), (name, key)


class ShellClient:
    def __init__(self) -> None:
        self.outputs: Dict[str, Any] = {}
        self.closed = 0
        self.keepalive = 0

    def enableKeepAlive(self, seconds: int) -> None:  # noqa: N802
        self.keepalive = seconds

    def setOutput(self, key: str, value: Any) -> None:  # noqa: N802 (omero's name)
        self.outputs[key] = value

    def closeSession(self) -> None:  # noqa: N802
        self.closed += 1


@pytest.mark.parametrize("name,task", [("Save_to_iRODS.py", "save_task"), ("List_iRODS_Snapshots.py", "list_task"),
                                       ("Load_from_iRODS.py", "load_task")])
@pytest.mark.parametrize("fail", [False, True])
def test_script_shell_sets_message_and_always_closes_the_session(monkeypatch: Any, name: str, task: str,
                                                                 fail: bool) -> None:
    client = ShellClient()
    calls: List[Any] = []
    conn = object()

    def fake_task(c: Any, cn: Any) -> str:
        calls.append((c, cn))
        if fail:
            raise ValueError("no such snapshot")
        return "done: " + name

    monkeypatch.setattr(scripts, "client", lambda *a, **k: client)
    monkeypatch.setattr(omero.gateway, "BlitzGateway", lambda client_obj: conn)
    monkeypatch.setattr(script_support, task, fake_task)
    runpy.run_path(os.path.join(SCRIPTS, name), run_name="__main__")
    assert calls == [(client, conn)]
    assert client.closed == 1
    assert client.keepalive == 60  # a long transfer must not let the job's session idle out
    message = unwrap(client.outputs["Message"])
    assert message == ("done: " + name if not fail else message)
    if fail:
        assert message.endswith("failed: no such snapshot")


@pytest.mark.parametrize("name,title", [("Save_to_iRODS.py", "Save to iRODS"),
                                        ("List_iRODS_Snapshots.py", "List iRODS snapshots"),
                                        ("Load_from_iRODS.py", "Load from iRODS")])
def test_a_missing_library_still_leaves_a_message_naming_it(monkeypatch: Any, capsys: Any, name: str,
                                                            title: str) -> None:
    import sys

    client = ShellClient()
    monkeypatch.setattr(scripts, "client", lambda *a, **k: client)
    monkeypatch.setitem(sys.modules, "omero_client", None)  # "import omero_client" now fails
    monkeypatch.setitem(sys.modules, "omero_client.script_support", None)
    runpy.run_path(os.path.join(SCRIPTS, name), run_name="__main__")
    message = unwrap(client.outputs["Message"])
    assert message.startswith(title + " failed: ") and "'omero_client'" in message
    assert client.closed == 1
    assert message in capsys.readouterr().err
