"""One OMERO, two iRODS zones (issue 7): routing, saves landing in one zone only, List/Load across zones, a zone down.

Two simulated deployments run side by side in one test: tempZone (service
account omero-svc) and labZone (service account omero-lab), each with its own
configuration and user mapping, exactly as two independent servers would be.
The OMERO side reads a real zones file and real (private) environment files;
only the connection is injected: the factory hands out simzone ClientZones, or
raises what python-irodsclient would when a zone is down or refuses the account.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import FIXTURES, OMERO_SERVER

from omero_client import script_support
from omero_client import zones as Z
from omero_client.save import ARCHIVE_NAME, UPLOADING, Poll
from omero_client.settings import SettingsError
from omero_client.snapshots import drop_status, snapshots_of
from policy import vocabulary as V
from policy.errors import IrodsError, error_for
from policy.manifest import parse_manifest
from policy.placement import is_safe_drop_id
from simzone.deploy import SimulatedDeployment
from simzone.zone import ClientZone

TEMP, LAB = "tempZone", "labZone"
SERVICE = {TEMP: "omero-svc", LAB: "omero-lab"}


# ---------------------------------------------------------------------------------------------- doubles
class Packer:
    name = "omero-cli-transfer"
    version = "1.3.2"

    def __init__(self, archive: str = FIXTURES["image_tar"]) -> None:
        self.archive = archive
        self.calls: List[Any] = []

    def pack(self, objects: List[Tuple[str, int]], folder: str) -> None:
        self.calls.append((list(objects), folder))
        os.makedirs(folder)
        with tarfile.open(self.archive) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(folder, filter="data")
            else:  # our own fixture
                t.extractall(folder)


class Unpacker:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, bytes]] = []

    def unpack(self, path: str) -> List[Tuple[str, int]]:
        with open(path, "rb") as f:
            self.calls.append((path, f.read()))
        return [("Image", 700 + len(self.calls))]


class Client:
    def __init__(self, inputs: Optional[Dict[str, Any]] = None) -> None:
        self.inputs = inputs or {}
        self.outputs: Dict[str, Any] = {}

    def getInputs(self, unwrap: bool = False) -> Dict[str, Any]:  # noqa: N802 (omero's name)
        return dict(self.inputs)

    def setOutput(self, key: str, value: Any) -> None:  # noqa: N802
        self.outputs[key] = value


class Conn:
    """BlitzGateway as the tasks use it: the event context, and the groups the user is a member of."""

    def __init__(self, user: str = "jdoe", group: str = "lab", groups: Tuple[str, ...] = ("lab", "other")) -> None:
        self.user, self.group, self.groups = user, group, groups

    def getEventContext(self) -> Any:  # noqa: N802
        return SimpleNamespace(userName=self.user, userId=52, groupName=self.group, groupId=3)

    def getGroupsMemberOf(self) -> List[Any]:  # noqa: N802
        return [SimpleNamespace(getName=lambda n=n: n) for n in self.groups]


class World:
    """Two zones, their env files, a zones file, and the factory the OMERO side opens zones with."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.deps = {TEMP: SimulatedDeployment(os.path.join(root, "temp"), zone_name=TEMP,
                                               service_account=SERVICE[TEMP]),
                     LAB: SimulatedDeployment(os.path.join(root, "lab"), zone_name=LAB, service_account=SERVICE[LAB])}
        for zone, irods_user in ((TEMP, "alice"), (TEMP, "bob"), (LAB, "lana")):
            omero_user = "bsmith" if irods_user == "bob" else "jdoe"
            assert self.deps[zone].enrol(irods_user, omero_user, OMERO_SERVER)["ok"]
        self.workdir = os.path.join(root, "scratch")
        os.makedirs(self.workdir)
        self.env_files = {z: self.write_env(z) for z in (TEMP, LAB)}
        self.failing: Dict[str, BaseException] = {}
        self.opened: List[Tuple[str, str]] = []
        self.zones_file = self.write_zones(default_zone=TEMP)

    def write_env(self, zone: str) -> str:
        folder = os.path.join(self.root, "omero-home", ".irods", zone)
        os.makedirs(folder, mode=0o700)
        path = os.path.join(folder, "irods_environment.json")
        doc = {"irods_host": zone.lower() + ".example.org", "irods_port": 1247, "irods_zone_name": zone,
               "irods_user_name": SERVICE[zone], "irods_authentication_scheme": "native",
               "omero_snapshots_server_name": OMERO_SERVER, "omero_snapshots_workdir": self.workdir}
        for p, text in ((path, json.dumps(doc)), (os.path.join(folder, ".irodsA"), "scrambled")):
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(p, 0o600)
        return path

    def zones_doc(self, default_zone: Optional[str]) -> Dict[str, Any]:
        return {"zones_version": 1,
                "zones": [{"name": TEMP, "irods_environment_file": self.env_files[TEMP]},
                          {"name": LAB, "irods_environment_file": self.env_files[LAB],
                           "landing": "/labZone/home/omero-lab/landing", "server_name": OMERO_SERVER}],
                "routes": [{"omero_user": "bsmith", "zone": TEMP}, {"omero_group": "lab", "zone": LAB}],
                "default_zone": default_zone}

    def write_zones(self, default_zone: Optional[str] = TEMP, doc: Optional[Dict[str, Any]] = None) -> str:
        path = os.path.join(self.root, "omero-home", ".irods", "omero_zones.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc if doc is not None else self.zones_doc(default_zone), f)
        os.chmod(path, 0o600)
        return path

    def factory(self, entry: Z.ZoneEntry, settings: Any) -> ClientZone:
        if entry.name in self.failing:
            raise self.failing[entry.name]
        self.opened.append((entry.name, settings.irods_user))
        return ClientZone(self.deps[entry.name].server, settings.irods_user)

    def zone_set(self) -> Z.ZoneSet:
        return Z.open_zone_set({Z.ZONES_FILE_VAR: self.zones_file}, factory=self.factory)

    def poll(self) -> Poll:
        def both() -> None:
            for d in self.deps.values():
                d.run_delay_server()
        return Poll(timeout=60, interval=0, sleep=lambda s: None, hook=both)

    def landing_drops(self, zone: str) -> List[str]:
        d = self.deps[zone]
        return [c for c in d.catalog.list_collection(d.config.landing_collection).collections
                if is_safe_drop_id(c.rsplit("/", 1)[-1])]  # not quarantine/ or the policy's .locks

    def save(self, conn: Conn, packer: Optional[Packer] = None, label: str = "snap") -> str:
        client = Client({"Data_Type": "Image", "IDs": [51], "Label": label})
        return script_support.run_script(client, "Save to iRODS", lambda: script_support.save_task(
            client, conn, packer=packer or Packer(), out=io.StringIO(), poll=self.poll(), zones=self.zone_set()), str)

    def list(self, conn: Conn) -> str:
        client = Client()
        return script_support.run_script(client, "List", lambda: script_support.list_task(
            client, conn, out=io.StringIO(), zones=self.zone_set()), str)

    def load(self, conn: Conn, unpacker: Unpacker, **inputs: Any) -> str:
        client = Client(inputs)
        return script_support.run_script(client, "Load", lambda: script_support.load_task(
            client, conn, unpacker=unpacker, out=io.StringIO(), zones=self.zone_set()), str, io.StringIO())

    def snaps(self, zone: str, omero_user: str = "jdoe") -> List[Any]:
        d = self.deps[zone]
        return snapshots_of(ClientZone(d.server, SERVICE[zone]), d.config.landing_collection, omero_user,
                            OMERO_SERVER)


@pytest.fixture
def world(tmp_path: Any) -> World:
    return World(str(tmp_path))


def _at(monkeypatch: Any, when: str) -> None:
    import policy.manifest

    monkeypatch.setattr(policy.manifest, "utc_now", lambda: when)


# ---------------------------------------------------------------------------------------------- the schema
def _schema() -> Dict[str, Any]:
    with open(Z.schema_path(), encoding="utf-8") as f:
        return dict(json.load(f))


def test_schema_examples_pass_the_code_checks_too() -> None:
    """Well-formedness, strictness and example validity are test_schemas.py's (omero-zones is in SCHEMA_NAMES);
    here the examples must also survive the checks the schema cannot express."""
    for ex in _schema()["examples"]:
        assert Z.validate_zones(ex) == []
        config = Z.parse_zones(ex, "example")
        assert config.zones and config.default_zone in [None] + [z.name for z in config.zones]


def _example() -> Dict[str, Any]:
    return copy.deepcopy(_schema()["examples"][0])


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.pop("default_zone"), "zones: 'default_zone' is a required property"),
    (lambda d: d["zones"].append(copy.deepcopy(d["zones"][0])), "duplicate zone name 'tempZone'"),
    (lambda d: d["routes"].append({"omero_group": "x", "zone": "nowhere"}), "zones.routes[2].zone: no zone is named"),
    (lambda d: d["routes"].append({"omero_user": "bsmith", "zone": "labZone"}), "a second rule for 'bsmith'"),
    (lambda d: d.update(default_zone="nowhere"), "zones.default_zone: no zone is named 'nowhere'"),
    (lambda d: d["routes"][0].update(omero_group="lab"), "zones.routes[0]"),
    (lambda d: d["zones"][0].update(irods_environment_file="relative/env.json"), "irods_environment_file"),
    (lambda d: d["zones"][0].update(password="x"), "'password' was unexpected"),
    (lambda d: d.update(zones=[]), "zones.zones"),
])
def test_zones_file_checks(change: Any, expected: str) -> None:
    doc = _example()
    change(doc)
    with pytest.raises(Z.ZonesError) as e:
        Z.parse_zones(doc, "/x/omero_zones.json")
    assert any(expected in err for err in e.value.errors), e.value.errors
    assert isinstance(e.value, SettingsError)  # shown to the researcher as is, like any configuration problem


def test_routing_precedence_user_then_group_then_default() -> None:
    config = Z.parse_zones(_example(), "f")
    assert config.route("bsmith", "Imaging Lab").name == TEMP  # the user's rule beats the group's
    assert config.route("jdoe", "Imaging Lab").name == LAB
    assert config.route("jdoe", "other").name == TEMP  # default
    assert config.route_with_reason("jdoe", "Imaging Lab")[1] == "routed by OMERO group 'Imaging Lab'"
    assert [z.name for z in config.zones_for("jdoe", ["Imaging Lab", "other"])] == [TEMP, LAB]
    assert [z.name for z in config.zones_for("jdoe", ["Imaging Lab"])] == [LAB]
    assert [z.name for z in config.zones_for("bsmith", ["Imaging Lab"])] == [TEMP]
    strict = Z.parse_zones(_schema()["examples"][1], "/etc/zones.json")  # default_zone null
    with pytest.raises(Z.RoutingError) as e:
        strict.route("jdoe", "other")
    assert "OMERO user 'jdoe' saving from group 'other'" in str(e.value) and "/etc/zones.json" in str(e.value)
    assert [z.name for z in strict.zones_for("jdoe", ["other", "Imaging Lab"])] == [LAB]
    with pytest.raises(Z.RoutingError):
        strict.zones_for("jdoe", ["other"])


def test_zones_file_must_be_private_and_is_optional(world: World, tmp_path: Any, monkeypatch: Any) -> None:
    os.chmod(world.zones_file, 0o640)
    with pytest.raises(SettingsError, match="chmod 600 " + world.zones_file):
        world.zone_set()
    os.chmod(world.zones_file, 0o600)
    assert world.zone_set().multi
    with pytest.raises(Z.ZonesError, match="does not exist"):
        Z.find_zones_file({Z.ZONES_FILE_VAR: str(tmp_path / "missing.json")})
    with open(world.zones_file, "w", encoding="utf-8") as f:
        f.write('{"zones_version": 1, "zones_version": 1}')
    with pytest.raises(Z.ZonesError, match="duplicate key"):
        world.zone_set()
    # no zones file anywhere: the single environment file, exactly as before
    monkeypatch.setattr(Z, "DEFAULT_ZONES_FILE", str(tmp_path / "none.json"))
    monkeypatch.setattr(Z, "FALLBACK_ZONES_FILE", str(tmp_path / "none2.json"))
    single = Z.open_zone_set({"OMERO_IRODS_ENVIRONMENT_FILE": world.env_files[TEMP]}, factory=world.factory)
    assert not single.multi and [z.name for z in single.config.zones] == [TEMP]


def test_each_zone_uses_its_own_account_and_irodsA(world: World) -> None:
    zs = Z.open_zone_set({Z.ZONES_FILE_VAR: world.zones_file, "IRODS_AUTHENTICATION_FILE": "/elsewhere/.irodsA"},
                         factory=world.factory)
    lab = zs.settings(zs.config.entry(LAB))
    assert (lab.irods_user, lab.zone_name, lab.landing) == ("omero-lab", LAB, "/labZone/home/omero-lab/landing")
    assert lab.auth_file == os.path.join(os.path.dirname(world.env_files[LAB]), ".irodsA")
    os.remove(lab.auth_file)
    with pytest.raises(Z.ZoneUnavailable, match="iRODS zone 'labZone'.*no .irodsA"):
        world.zone_set().settings(zs.config.entry(LAB))


# ---------------------------------------------------------------------------------------------- save
def test_save_routed_by_group_lands_in_that_zone_only(world: World) -> None:
    msg = world.save(Conn("jdoe", "lab"))
    assert msg.startswith("Saved to iRODS zone 'labZone': /labZone/home/lana/omero-snapshots/"), msg
    assert "iRODS zone 'labZone' was chosen as routed by OMERO group 'lab'" in msg
    [snap] = world.snaps(LAB)
    assert snap.status in (V.PLACED_STATE, V.COMPLETE) and snap.irods_user == "lana"
    with world.deps[LAB].catalog.open_read("lana", snap.path + "/manifest.json") as f:
        assert parse_manifest(f.read()).who.omero_server == OMERO_SERVER
    # only there: the other zone's landing collection is empty and it holds no snapshot of jdoe
    assert world.landing_drops(TEMP) == [] and world.snaps(TEMP) == []
    assert [z for z, _ in world.opened] == [LAB] and world.opened[0][1] == "omero-lab"


def test_save_routed_by_user_rule_beats_the_group(world: World) -> None:
    msg = world.save(Conn("bsmith", "lab"))
    assert msg.startswith("Saved to iRODS zone 'tempZone': /tempZone/home/bob/"), msg
    assert "routed by OMERO user 'bsmith'" in msg
    assert world.landing_drops(LAB) == [] and world.snaps(LAB, "bsmith") == []
    assert [s.irods_user for s in world.snaps(TEMP, "bsmith")] == ["bob"]


def test_default_zone_and_no_default(world: World) -> None:
    msg = world.save(Conn("jdoe", "other"))
    assert msg.startswith("Saved to iRODS zone 'tempZone': /tempZone/home/alice/") and "the default zone" in msg
    world.zones_file = world.write_zones(default_zone=None)
    packer = Packer()
    msg = world.save(Conn("jdoe", "other"), packer)
    assert msg.startswith("Save to iRODS failed: no iRODS zone is configured for OMERO user 'jdoe' saving from "
                          "group 'other'"), msg
    assert packer.calls == [] and world.landing_drops(LAB) == [] and len(world.landing_drops(TEMP)) == 1


# ---------------------------------------------------------------------------------------------- list and load
def test_list_shows_both_zones_and_load_works_in_the_second(world: World, monkeypatch: Any) -> None:
    _at(monkeypatch, "2026-01-01T10:00:00Z")
    assert world.save(Conn("jdoe", "other"), label="in temp").startswith("Saved to iRODS zone 'tempZone'")
    _at(monkeypatch, "2026-02-01T10:00:00Z")
    assert world.save(Conn("jdoe", "lab"), label="in lab").startswith("Saved to iRODS zone 'labZone'")
    [temp_snap], [lab_snap] = world.snaps(TEMP), world.snaps(LAB)

    msg = world.list(Conn("jdoe", "other"))
    assert msg.startswith("2 snapshots saved by jdoe in iRODS zones tempZone, labZone"), msg
    lines = msg.splitlines()
    assert "in lab" in lines[1] and lines[2].strip() == "labZone: " + lab_snap.path
    assert "in temp" in lines[3] and lines[4].strip() == "tempZone: " + temp_snap.path
    # a user routed to one zone only sees that zone
    assert world.list(Conn("jdoe", "lab", groups=("lab",))).startswith("1 snapshot saved by jdoe in iRODS zone "
                                                                       "labZone")

    unpacker = Unpacker()
    msg = world.load(Conn("jdoe", "other"), unpacker, Snapshot_Index=1)
    assert msg.startswith("Loaded {} (".format(lab_snap.path)) and "from iRODS zone 'labZone'" in msg
    with world.deps[LAB].catalog.open_read("lana", lab_snap.path + "/" + ARCHIVE_NAME) as f:
        assert unpacker.calls[0][1] == f.read()
    # as List shows it, and as a bare path (its iRODS zone name tells which zone)
    assert "Image 702" in world.load(Conn("jdoe", "other"), unpacker, Snapshot="labZone: " + lab_snap.path)
    assert "from iRODS zone 'tempZone'" in world.load(Conn("jdoe", "other"), unpacker, Snapshot=temp_snap.path)
    # the wrong zone in front: refused, naming it; an unknown zone: refused
    msg = world.load(Conn("jdoe", "other"), unpacker, Snapshot="tempZone:" + lab_snap.path)
    assert msg.startswith("Load failed: iRODS zone 'tempZone': there is no snapshot at"), msg
    msg = world.load(Conn("jdoe", "other"), unpacker, Snapshot="elsewhere: " + lab_snap.path)
    assert "not routed to an iRODS zone named 'elsewhere'" in msg
    assert len(unpacker.calls) == 3


# ---------------------------------------------------------------------------------------------- a zone down
@pytest.mark.parametrize("failure", [
    error_for(-1828000, "connect: NetworkException: Could not connect to specified host and port: labzone:1247"),
    IrodsError(-826000, "CAT_INVALID_AUTHENTICATION"),
    ConnectionRefusedError(111, "Connection refused"),
], ids=["network", "auth", "oserror"])
def test_one_zone_down_is_named_and_the_other_keeps_working(world: World, monkeypatch: Any,
                                                            failure: BaseException) -> None:
    _at(monkeypatch, "2026-01-01T10:00:00Z")
    assert world.save(Conn("jdoe", "lab"), label="lab before").startswith("Saved to iRODS zone 'labZone'")
    world.failing[LAB] = failure
    packer = Packer()
    msg = world.save(Conn("jdoe", "lab"), packer)
    assert msg.startswith("Save to iRODS failed: iRODS zone 'labZone' is not available: it cannot be reached or "
                          "refused the OMERO service account ("), msg
    assert type(failure).__name__ in msg and "Other zones are not affected" in msg
    assert packer.calls == []  # probed before packing: nothing packed, nothing sent
    assert len(world.landing_drops(LAB)) == 1  # the earlier drop only

    _at(monkeypatch, "2026-02-01T10:00:00Z")
    msg = world.save(Conn("jdoe", "other"), label="temp while lab is down")
    assert msg.startswith("Saved to iRODS zone 'tempZone'"), msg

    msg = world.list(Conn("jdoe", "other"))
    assert msg.startswith("1 snapshot saved by jdoe in iRODS zones tempZone, labZone"), msg
    assert "temp while lab is down" in msg and "lab before" not in msg
    assert "Not listed: iRODS zone 'labZone' is not available" in msg

    unpacker = Unpacker()
    msg = world.load(Conn("jdoe", "other"), unpacker, Snapshot_Index=1)
    assert msg.startswith("Load failed: snapshot numbers cannot be trusted while iRODS zone 'labZone'"), msg
    [temp_snap] = world.snaps(TEMP)
    assert "from iRODS zone 'tempZone'" in world.load(Conn("jdoe", "other"), unpacker, Snapshot=temp_snap.path)
    msg = world.load(Conn("jdoe", "other"), unpacker, Snapshot="labZone: /labZone/home/lana/omero-snapshots/x")
    assert msg.startswith("Load failed: iRODS zone 'labZone' is not available"), msg


def test_a_zone_whose_credentials_file_is_unsafe_is_refused_by_name(world: World) -> None:
    os.chmod(world.env_files[LAB], 0o644)
    msg = world.save(Conn("jdoe", "lab"))
    assert msg.startswith("Save to iRODS failed: iRODS zone 'labZone' is not available: its configuration on the "
                          "OMERO server is not usable"), msg
    assert "chmod 600 " + world.env_files[LAB] in msg
    assert world.save(Conn("jdoe", "other")).startswith("Saved to iRODS zone 'tempZone'")


class _DyingZone(ClientZone):
    """The zone goes away during the archive's upload: the write fails, and so does every call after it."""

    dead = False

    def open_new(self, path: str) -> Any:
        writer = super().open_new(path)
        zone = self
        inner_write = writer.write

        def write(data: bytes) -> int:
            if zone.dead:
                raise error_for(-1828000, "connection lost")
            zone.dead = True
            return int(inner_write(data))

        writer.write = write  # type: ignore[method-assign]
        return writer

    def remove_object(self, path: str) -> None:
        raise error_for(-1828000, "connection lost")

    def remove_collection(self, path: str) -> None:
        raise error_for(-1828000, "connection lost")


def test_upload_cut_off_midway_leaves_a_marked_drop_and_names_the_zone(world: World) -> None:
    factory = world.factory

    def dying(entry: Z.ZoneEntry, settings: Any) -> Any:
        if entry.name == LAB:
            return _DyingZone(world.deps[LAB].server, settings.irods_user)
        return factory(entry, settings)

    world.factory = dying  # type: ignore[method-assign]
    msg = world.save(Conn("jdoe", "lab"))
    assert msg.startswith("Save to iRODS failed: the upload to iRODS zone 'labZone' failed (RULE_ENGINE_ERROR); "
                          "nothing was saved. The partial drop /labZone/home/omero-lab/landing/"), msg
    assert "marked 'uploading'" in msg and "never process it" in msg
    [drop] = world.landing_drops(LAB)
    assert drop.rsplit("/", 1)[-1] in msg
    d = world.deps[LAB]
    status = drop_status(ClientZone(d.server, SERVICE[LAB]), d.config.landing_collection, drop.rsplit("/", 1)[-1])
    assert status.status == UPLOADING and "interrupted" in (status.reason or "")
    assert [o for o in d.catalog.list_collection(drop).data_objects if o.path.endswith("manifest.json")] == []
    d.run_delay_server()
    assert world.snaps(LAB) == []
    # the other zone is unaffected
    assert world.save(Conn("jdoe", "other")).startswith("Saved to iRODS zone 'tempZone'")


def test_failed_upload_with_the_zone_still_up_leaves_nothing(world: World) -> None:
    """The zone refuses the archive but still answers: the partial drop is removed, and the message says so."""

    class Refusing(ClientZone):
        def open_new(self, path: str) -> Any:
            if path.endswith(ARCHIVE_NAME):
                raise error_for(-830000, "quota exceeded")
            return super().open_new(path)

    world.factory = lambda entry, settings: Refusing(world.deps[entry.name].server,  # type: ignore[method-assign]
                                                     settings.irods_user)
    msg = world.save(Conn("jdoe", "lab"))
    assert "iRODS zone 'labZone'" in msg and "the partial upload was removed" in msg, msg
    assert world.landing_drops(LAB) == [] and world.landing_drops(TEMP) == []
