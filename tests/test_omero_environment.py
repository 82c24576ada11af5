"""The scripts in the environment OMERO's script processor really gives them.

omero.processor builds a script's environment with omero.util.Environment from
a fixed list of names (HOME, PATH, PYTHONPATH, OMERODIR, LANG, ...): no TMPDIR,
no OMERO_SNAPSHOTS_*, OMERO_IRODS_* or IRODS_* variable survives. The list is
read here from omero-py's own omero/processor.py (its make_env), so a change
there shows up in this test; the whole Save then runs with os.environ replaced
by exactly that environment and must find every setting in the settings file.
"""

from __future__ import annotations

import ast
import json
import os
from typing import Any, Dict, List

import pytest
from helpers import OMERO_SERVER, enrolled_deployment
from test_omero_client import FakeClient, FakeConn, FakePacker, svc_zone, vault_bytes

from omero_client import script_support
from omero_client import zones as zones_mod
from omero_client.save import Poll
from omero_client.settings import SettingsError, load_settings, load_site_settings
from omero_client.zones import find_zones_file
from policy.manifest import parse_manifest

FIXTURE_TAR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "valid_single_image.tar")


def processor_names() -> List[str]:
    """The names omero.processor's make_env passes to omero.util.Environment, from omero-py's source."""
    try:
        import omero.processor as processor
    except ImportError as e:
        pytest.skip("omero-py not importable ({}): the list lives in omero/processor.py".format(e))
    with open(processor.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "make_env":
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "Environment":
                    return [a.value for a in call.args if isinstance(a, ast.Constant)]
    raise AssertionError("omero.processor has no make_env calling omero.util.Environment")


def processor_environment(parent: Dict[str, str], monkeypatch: Any) -> Dict[str, str]:
    """omero.util.Environment(*names)() evaluated in a process whose environment is ``parent``."""
    names = processor_names()  # skips without omero-py
    import omero.util

    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in parent.items():
        monkeypatch.setenv(key, value)
    env = dict(omero.util.Environment(*names)())
    assert "HOME" in names and "TMPDIR" not in names
    return env


def write_private(path: str, doc: Any) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(path, 0o600)


def server_home(tmp_path: Any, landing: str, workdir: str, **extra: Any) -> str:
    """The omero-server user's HOME: .irods/ with the environment, the .irodsA and the settings file."""
    home = str(tmp_path / "home")
    irods = os.path.join(home, ".irods")
    write_private(os.path.join(irods, "irods_environment.json"), {
        "irods_host": "irods.example.org", "irods_port": 1247, "irods_zone_name": "tempZone",
        "irods_user_name": "omero-svc", "irods_authentication_scheme": "native"})
    write_private(os.path.join(irods, ".irodsA"), "scrambled")
    settings = {"settings_version": 1, "server_name": OMERO_SERVER, "landing": landing, "workdir": workdir,
                "poll_seconds": 42, "save_mode": "folder"}
    settings.update(extra)
    write_private(os.path.join(irods, "omero_snapshots.json"), settings)
    return home


def test_a_save_in_the_processors_environment_finds_every_setting(tmp_path: Any, monkeypatch: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    workdir = str(tmp_path / "work")
    os.makedirs(workdir)
    home = server_home(tmp_path, d.config.landing_collection, workdir)
    # what the OMERO server's own process has: the variables a facility might set for the CLI, and TMPDIR
    parent = {"HOME": home, "PATH": "/usr/bin:/bin", "OMERODIR": "/opt/omero/server/OMERO.server", "LANG": "C.UTF-8",
              "TMPDIR": str(tmp_path / "tmpdir-not-passed"),
              "OMERO_SNAPSHOTS_SERVER_NAME": "wrong.example.org",  # would quarantine every save as unmapped
              "OMERO_IRODS_ENVIRONMENT_FILE": "/nonexistent/irods_environment.json",
              "OMERO_SNAPSHOTS_WORKDIR": "/nonexistent", "OMERO_SNAPSHOTS_POLL_SECONDS": "1",
              "IRODS_AUTHENTICATION_FILE": "/nonexistent/.irodsA", "OMERO_SNAPSHOTS_SAVE_MODE": "stream"}
    env = processor_environment(parent, monkeypatch)
    assert env["HOME"] == home and not any(k.startswith(("OMERO_SNAPSHOTS", "OMERO_IRODS", "IRODS_", "TMPDIR"))
                                           for k in env)
    for key in list(os.environ):  # the script runs with exactly that environment
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    s = load_settings()
    assert s.settings_file == os.path.join(home, ".irods", "omero_snapshots.json")
    assert s.env_file == os.path.join(home, ".irods", "irods_environment.json")
    assert s.auth_file == os.path.join(home, ".irods", ".irodsA")
    assert (s.server_name, s.landing, s.workdir, s.poll_seconds, s.save_mode) == (
        OMERO_SERVER, d.config.landing_collection, workdir, 42.0, "folder")

    # the whole Save through the script logic, the zone opened by the (patched) default factory
    modes: List[str] = []
    packer = FakePacker(FIXTURE_TAR)
    polls: List[float] = []

    def fake_make_packer(client: Any, mode: str) -> Any:
        modes.append(mode)
        return packer

    def fake_poll(timeout: float) -> Poll:
        polls.append(timeout)
        return Poll(timeout=timeout, interval=1, sleep=lambda _s: None, hook=d.run_delay_server)

    monkeypatch.setattr(zones_mod, "_default_factory", lambda entry, settings: svc_zone(d))
    monkeypatch.setattr(script_support, "make_packer", fake_make_packer)
    monkeypatch.setattr(script_support, "Poll", fake_poll)
    client = FakeClient({"Data_Type": "Image", "IDs": [51], "Label": "processor env"})
    msg = script_support.run_script(client, "Save to iRODS", lambda: script_support.save_task(client, FakeConn()),
                                    str)
    assert msg.startswith("Saved to iRODS: /tempZone/home/alice/"), msg
    assert modes == ["folder"] and polls == [42.0]
    assert packer.calls[0][1].startswith(workdir + os.sep)
    snap = msg.split(": ", 1)[1].splitlines()[0]
    assert parse_manifest(vault_bytes(d, snap + "/manifest.json")).who.omero_server == OMERO_SERVER


def test_the_zones_file_beside_the_settings_file_is_found_through_home(tmp_path: Any, monkeypatch: Any) -> None:
    home = server_home(tmp_path, "/tempZone/home/omero-svc/landing", str(tmp_path))
    zones = os.path.join(home, ".irods", "omero_zones.json")
    write_private(zones, {"zones_version": 1, "zones": [{"name": "tempZone", "irods_environment_file": os.path.join(
        home, ".irods", "irods_environment.json")}], "routes": [], "default_zone": "tempZone"})
    env = processor_environment({"HOME": home, "PATH": "/bin", "OMERO_IRODS_ZONES_FILE": "/nonexistent"},
                                monkeypatch)
    site = load_site_settings(env)
    assert find_zones_file(env, site) == zones


def test_a_bad_settings_file_is_refused_with_its_path_and_the_schema(tmp_path: Any) -> None:
    home = server_home(tmp_path, "/tempZone/home/omero-svc/landing", str(tmp_path), save_mode="copy",
                       poll_seconds=-1)
    path = os.path.join(home, ".irods", "omero_snapshots.json")
    with pytest.raises(SettingsError) as e:
        load_settings({"HOME": home})
    assert path in str(e.value) and "settings.save_mode" in str(e.value) and "settings.poll_seconds" in str(e.value)
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600 " + path):
        load_settings({"HOME": home})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"HOME": home, "OMERO_SNAPSHOTS_SETTINGS": "/nonexistent.json"})


def test_variables_still_override_for_the_cli(tmp_path: Any) -> None:
    home = server_home(tmp_path, "/tempZone/home/omero-svc/landing", str(tmp_path))
    s = load_settings({"HOME": home, "OMERO_SNAPSHOTS_SERVER_NAME": "cli.example.org",
                       "OMERO_SNAPSHOTS_SAVE_MODE": "stream"})
    assert (s.server_name, s.save_mode, s.poll_seconds) == ("cli.example.org", "stream", 42.0)
    # without a settings file the default is the zero-copy stream
    os.remove(os.path.join(home, ".irods", "omero_snapshots.json"))
    assert load_settings({"HOME": home}, hostname="h.example.org").save_mode == "stream"
