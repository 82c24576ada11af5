"""The OMERO side (omero_client) end to end against the simulated zone, without an OMERO server.

The service account's client is simzone.zone.ClientZone: a finished upload
fires the server's PEPs (core.py.d), the poll hook runs the delay server, so a
save goes the whole way: pack (fake Packer, the fixture packets) -> stream tar
-> manifest last -> PEP -> delayed rule -> placed/unpacked -> status message.
OMERO pieces (CLI, session, connection) are test doubles that record calls.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import zipfile
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import FIXTURES, OMERO_SERVER, enrolled_deployment

from omero_client import script_support
from omero_client.load import LoadRefused, load
from omero_client.pack import CliTransferPacker, PackError, object_spec
from omero_client.progress import ProgressLog, TerminalProgressBar, format_progress, human_bytes, terminal_progress
from omero_client.save import ARCHIVE_NAME, Poll, SaveError, folder_bytes, save
from omero_client.settings import Settings, SettingsError, load_settings
from omero_client.snapshots import drop_status, format_listing, list_snapshots, resolve_irods_user, snapshots_of
from omero_client.upload import PacketError, estimate_tar_size, stream_folder_as_tar
from policy import vocabulary as V
from policy.manifest import Who, parse_manifest
from simzone.zone import ClientZone

SVC = "omero-svc"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JDOE = Who(omero_user="jdoe", omero_user_id=52, omero_group="lab", omero_server=OMERO_SERVER, omero_group_id=3)
PASSWORD = "Pw-7f3a-never-print-me"
SESSION_KEY = "0a1b2c3d-session-key-never-print"


# ---------------------------------------------------------------------------------------------- doubles
def extract_fixture(archive: str, folder: str) -> None:
    """What omero transfer pack would leave in the folder: the packet's files, no archive."""
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(folder)
        return
    with tarfile.open(archive) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(folder, filter="data")
        else:  # Python < 3.12 without the backport: the fixture is ours and trusted
            t.extractall(folder)


def packet_files(archive: str) -> Dict[str, int]:
    """name -> size of the regular files in a fixture packet."""
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return {i.filename: i.file_size for i in z.infolist() if not i.is_dir()}
    with tarfile.open(archive) as t:
        return {m.name[2:] if m.name.startswith("./") else m.name: m.size for m in t.getmembers() if m.isfile()}


class FakePacker:
    """Packer double: the fixture packet's files into the folder, calls recorded."""

    name = "omero-cli-transfer"
    version = "1.3.2"

    def __init__(self, archive: str, probe: Optional["ScratchProbe"] = None) -> None:
        self.archive = archive
        self.probe = probe
        self.calls: List[Tuple[List[Tuple[str, int]], str]] = []

    def pack(self, objects: List[Tuple[str, int]], folder: str) -> None:
        assert not os.path.exists(folder)
        self.calls.append((list(objects), folder))
        os.makedirs(folder)
        extract_fixture(self.archive, folder)
        if self.probe is not None:
            self.probe(0, None)


class FakeUnpacker:
    def __init__(self, new: Optional[List[Tuple[str, int]]] = None) -> None:
        self.new = new if new is not None else [("Dataset", 401), ("Image", 301)]
        self.calls: List[Tuple[str, bytes]] = []

    def unpack(self, path: str) -> List[Tuple[str, int]]:
        with open(path, "rb") as f:
            self.calls.append((path, f.read()))
        return list(self.new)


class ScratchProbe:
    """Progress callback that measures the local scratch at every call: bytes on disk, and any tar file."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.peak = 0
        self.calls = 0
        self.tars: List[str] = []

    def __call__(self, done: int, total: Optional[int]) -> None:
        self.calls += 1
        size = 0
        for root, _dirs, files in os.walk(self.workdir):
            for name in files:
                path = os.path.join(root, name)
                size += os.lstat(path).st_size
                with open(path, "rb") as f:
                    head = f.read(265)
                if name.lower().endswith((".tar", ".tar.gz", ".tgz")) or head[257:262] == b"ustar":
                    self.tars.append(path)
        self.peak = max(self.peak, size)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class FakeClient:
    """The script's omero.client as the library uses it."""

    def __init__(self, inputs: Optional[Dict[str, Any]] = None) -> None:
        self.inputs = inputs or {}
        self.outputs: Dict[str, Any] = {}

    def getInputs(self, unwrap: bool = False) -> Dict[str, Any]:  # noqa: N802 (omero's name)
        return dict(self.inputs)

    def setOutput(self, key: str, value: Any) -> None:  # noqa: N802
        self.outputs[key] = value

    def getProperty(self, key: str) -> str:  # noqa: N802
        return {"omero.host": "omero.example.org", "omero.port": "4064"}.get(key, "")

    def getSessionId(self) -> str:  # noqa: N802
        return SESSION_KEY

    def getSession(self) -> Any:  # noqa: N802
        ec = SimpleNamespace(userName="jdoe")
        admin = SimpleNamespace(getEventContext=lambda: ec)
        return SimpleNamespace(getAdminService=lambda: admin)


class FakeConn:
    def __init__(self, user: str = "jdoe") -> None:
        self.user = user

    def getEventContext(self) -> Any:  # noqa: N802
        return SimpleNamespace(userName=self.user, userId=52, groupName="lab", groupId=3)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def d(tmp_path: Any) -> Any:
    return enrolled_deployment(str(tmp_path / "zone"))


@pytest.fixture
def workdir(tmp_path: Any) -> str:
    path = str(tmp_path / "scratch")
    os.makedirs(path)
    return path


def svc_zone(d: Any) -> ClientZone:
    return ClientZone(d.server, SVC)


def poll_for(d: Any, clock: Optional[FakeClock] = None, run: bool = True) -> Poll:
    clock = clock or FakeClock()
    return Poll(timeout=60, interval=2, clock=clock.clock, sleep=clock.sleep,
                hook=d.run_delay_server if run else None)


def do_save(d: Any, workdir: str, archive: str = FIXTURES["image_tar"], who: Who = JDOE,
            objects: Optional[List[Tuple[str, int]]] = None, label: Optional[str] = "my label") -> Any:
    return save(svc_zone(d), d.config.landing_collection, who, objects or [("Image", 51)], FakePacker(archive),
                label=label, workdir=workdir, poll=poll_for(d))


def vault_bytes(d: Any, path: str) -> bytes:
    with d.catalog.open_read("alice", path) as f:  # the owner
        return bytes(f.read())


# ---------------------------------------------------------------------------------------------- save
@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_save_fixture_packet_lands_with_path_in_message_and_1x_scratch(d: Any, workdir: str, key: str) -> None:
    archive = FIXTURES[key]
    probe = ScratchProbe(workdir)
    packer = FakePacker(archive, probe)
    zone = svc_zone(d)
    result = save(zone, d.config.landing_collection, JDOE, [("Image", 51), ("Image", 52)], packer,
                  label="day 3", workdir=workdir, progress=probe, poll=poll_for(d))

    assert result.status in (V.PLACED_STATE, V.COMPLETE), result
    assert result.ok and result.snapshot and result.snapshot.startswith("/tempZone/home/alice/omero-snapshots/")
    assert result.snapshot in result.message and "alice" in result.message
    assert result.irods_user == "alice"
    # the packer got the selection and a folder path without extension under workdir
    assert packer.calls[0][0] == [("Image", 51), ("Image", 52)]
    assert packer.calls[0][1].startswith(workdir) and os.path.splitext(packer.calls[0][1])[1] == ""
    # scratch: the packet folder only (1x), never a tar file, and nothing left afterwards
    expected = sum(packet_files(archive).values())
    assert probe.tars == []
    assert probe.calls >= 2
    assert probe.peak == expected == result.scratch_peak_bytes
    assert os.listdir(workdir) == []
    # the archive in iRODS is what was hashed, and has omero-cli-transfer's member layout
    data = vault_bytes(d, result.snapshot + "/" + ARCHIVE_NAME)
    assert len(data) == result.archive_size and hashlib.sha256(data).hexdigest() == result.archive_sha256
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        names = t.getnames()
        files = {m.name: m.size for m in t.getmembers() if m.isfile()}
    assert names[0] == "." and all(n == "." or n.startswith("./") for n in names)
    assert files == {"./" + k: v for k, v in packet_files(archive).items()}
    # the manifest went in last and says what OMERO packed
    m = parse_manifest(vault_bytes(d, result.snapshot + "/manifest.json"))
    assert (m.who.omero_user, m.who.omero_server, m.label) == ("jdoe", OMERO_SERVER, "day 3")
    assert [(o.type, o.ids) for o in m.objects] == [("Image", (51, 52))]
    assert (m.archive.name, m.archive.format, m.archive.size) == (ARCHIVE_NAME, "tar", result.archive_size)
    assert [p.manifest_pep if hasattr(p, "manifest_pep") else p for p in zone.pep_outcomes]  # both uploads fired
    print("\nscratch {}: peak {} bytes = packet {} bytes; archive streamed {} bytes".format(
        key, probe.peak, expected, result.archive_size))


def test_refused_save_says_quarantined_why_and_what_to_ask(d: Any, workdir: str) -> None:
    mallory = Who(omero_user="mallory", omero_user_id=9, omero_group="lab", omero_server=OMERO_SERVER)
    result = do_save(d, workdir, who=mallory)
    assert result.status == V.QUARANTINED and not result.ok
    assert result.refusal_rule == "unmapped"
    assert "quarantined" in result.message
    assert result.reason and result.reason in result.message
    assert "enrol OMERO user 'mallory' on server '{}'".format(OMERO_SERVER) in result.message
    assert result.drop_id in result.message
    assert result.location == d.config.landing_collection + "/quarantine/" + result.drop_id
    assert os.listdir(workdir) == []


def test_bad_selection_or_label_fails_before_packing(d: Any, workdir: str) -> None:
    packer = FakePacker(FIXTURES["image_tar"])
    zone = svc_zone(d)
    landing = d.config.landing_collection
    with pytest.raises(ValueError, match="mixes"):
        save(zone, landing, JDOE, [("Image", 1), ("Dataset", 2)], packer, workdir=workdir)
    with pytest.raises(ValueError, match="only Project"):
        save(zone, landing, JDOE, [("Well", 1)], packer, workdir=workdir)
    with pytest.raises(ValueError, match="label"):
        save(zone, landing, JDOE, [("Image", 1)], packer, label="x" * 201, workdir=workdir)
    assert packer.calls == []
    assert d.catalog.list_collection(landing).collections == []


class _BrokenWriter:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += 1
        if self.n > 1:
            from policy.errors import error_for

            raise error_for(-1828000, "connection lost")
        return int(self.inner.write(data))

    def close(self) -> None:
        self.inner.close()


def test_failed_upload_removes_partial_drop_and_writes_no_manifest(d: Any, workdir: str) -> None:
    zone = svc_zone(d)
    inner_open = zone.open_new
    zone.open_new = lambda path: _BrokenWriter(inner_open(path))  # type: ignore[method-assign]
    with pytest.raises(SaveError, match="upload to iRODS failed"):
        save(zone, d.config.landing_collection, JDOE, [("Image", 51)], FakePacker(FIXTURES["image_tar"]),
             workdir=workdir, poll=poll_for(d))
    assert d.catalog.list_collection(d.config.landing_collection).collections == []
    assert os.listdir(workdir) == []


def test_save_shows_where_the_snapshot_will_be_before_the_delay_server_runs(d: Any, workdir: str) -> None:
    """Issue 20: the upload PEP's verdict (valid, mapped, enrolled, place claimed) is Save's answer; the delay
    server has not run yet (no hook), the unpack comes later."""
    clock = FakeClock()
    result = save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", 51)], FakePacker(FIXTURES["image_tar"]),
                  workdir=workdir, poll=poll_for(d, clock, run=False))
    assert result.status == V.ACCEPTED and result.polls == 1 and clock.t == 0
    assert result.snapshot and result.snapshot.startswith("/tempZone/home/alice/omero-snapshots/")
    assert result.irods_user == "alice"
    assert result.snapshot in result.message and "verifying" in result.message
    d.run_delay_server()
    st = drop_status(svc_zone(d), d.config.landing_collection, result.drop_id)
    assert st.status == V.COMPLETE and st.snapshot == result.snapshot  # where Save said it would be


def test_save_shows_a_refusal_before_the_delay_server_runs(d: Any, workdir: str) -> None:
    clock = FakeClock()
    who = Who(omero_user="nobody", omero_user_id=9, omero_group="lab", omero_server=JDOE.omero_server)
    result = save(svc_zone(d), d.config.landing_collection, who, [("Image", 51)], FakePacker(FIXTURES["image_tar"]),
                  workdir=workdir, poll=poll_for(d, clock, run=False))
    assert result.status == V.QUARANTINED and clock.t == 0, result
    assert "Not saved" in result.message and "enrol" in result.message


def test_poll_is_bounded_and_reports_still_processing(d: Any, workdir: str, monkeypatch: Any) -> None:
    import policy.ingest

    def no_verdict(*a: Any, **k: Any) -> Any:
        raise RuntimeError("the verdict could not be given")  # then only the delayed rule decides
    monkeypatch.setattr(policy.ingest, "verdict", no_verdict)
    clock = FakeClock()
    result = save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", 51)], FakePacker(FIXTURES["image_tar"]),
                  workdir=workdir, poll=poll_for(d, clock, run=False))
    assert result.status == V.QUEUED
    assert clock.t >= 60 and sum(clock.sleeps) == pytest.approx(60)
    assert "not finished" in result.message and result.drop_id in result.message
    # the server gets to it later: the status is then readable by drop id
    d.run_delay_server()
    assert drop_status(svc_zone(d), d.config.landing_collection, result.drop_id).status in (V.PLACED_STATE,
                                                                                            V.COMPLETE)


# ---------------------------------------------------------------------------------------------- list
def _save_at(d: Any, workdir: str, monkeypatch: Any, when: str, label: str, who: Who = JDOE) -> Any:
    import policy.manifest

    monkeypatch.setattr(policy.manifest, "utc_now", lambda: when)
    return do_save(d, workdir, label=label, who=who)


def _forge_snapshot(d: Any) -> str:
    """alice dresses up a collection of her own as jdoe's snapshot and lets the service account read it."""
    alice = d.zone_as("alice")
    fake = "/tempZone/home/alice/omero-snapshots/forged"
    alice.create_collection(fake)
    from policy.zone import Avu

    alice.apply_metadata(fake, V.add_missing_ops([], [
        Avu(V.OMERO_USER, "jdoe"), Avu(V.OMERO_SERVER, OMERO_SERVER), Avu(V.SNAPSHOT_PATH, fake),
        Avu(V.DROP_ID, "20990101T000000Z-forgedforged"), Avu(V.STATUS, "complete"), Avu(V.IRODS_USER, "alice"),
        Avu(V.ARCHIVE_NAME, "transfer.tar"), Avu(V.ARCHIVE_FORMAT, "tar"), Avu(V.CREATED, "2099-01-01T00:00:00Z")]))
    alice.set_acl(fake, SVC, "read")
    return fake


def test_list_shows_own_snapshots_newest_first_and_nothing_else(d: Any, workdir: str, monkeypatch: Any) -> None:
    d.enrol("bob", "bsmith", OMERO_SERVER)
    old = _save_at(d, workdir, monkeypatch, "2026-01-01T10:00:00Z", "first")
    new = _save_at(d, workdir, monkeypatch, "2026-02-01T10:00:00Z", "second")
    bsmith = Who(omero_user="bsmith", omero_user_id=7, omero_group="lab", omero_server=OMERO_SERVER)
    other = _save_at(d, workdir, monkeypatch, "2026-03-01T10:00:00Z", "bob's", who=bsmith)
    elsewhere = Who(omero_user="jdoe", omero_user_id=52, omero_group="lab", omero_server="other.example.org")
    _save_at(d, workdir, monkeypatch, "2026-03-02T10:00:00Z", "other server", who=elsewhere)  # quarantined
    forged = _forge_snapshot(d)
    assert other.ok and old.ok and new.ok

    zone = svc_zone(d)
    landing = d.config.landing_collection
    snaps = snapshots_of(zone, landing, "jdoe", OMERO_SERVER)
    assert [s.path for s in snaps] == [new.snapshot, old.snapshot]
    assert [s.label for s in snaps] == ["second", "first"]
    assert all(s.status in (V.PLACED_STATE, V.COMPLETE) and s.archive_size > 0 for s in snaps)
    assert forged not in [s.path for s in snaps]
    assert resolve_irods_user(zone, landing, "jdoe", OMERO_SERVER) == "alice"
    assert resolve_irods_user(zone, landing, "nobody", OMERO_SERVER) is None
    # the policy's own view of the iRODS user (what an admin sees) includes the forged collection's owner's data
    assert {s.path for s in list_snapshots(zone, "alice")} >= {new.snapshot, old.snapshot}
    text = format_listing(snaps)
    assert text.splitlines()[0].lstrip().startswith("1. 2026-02-01 10:00 UTC") and "second" in text
    assert new.snapshot in text and old.snapshot in text


# ---------------------------------------------------------------------------------------------- load
def test_load_own_snapshot_unpacks_the_downloaded_archive(d: Any, workdir: str) -> None:
    saved = do_save(d, workdir)
    unpacker = FakeUnpacker()
    probe = ScratchProbe(workdir)
    result = load(svc_zone(d), saved.snapshot, "jdoe", OMERO_SERVER, unpacker, workdir,
                  landing=d.config.landing_collection, progress=probe)
    assert len(unpacker.calls) == 1
    path, data = unpacker.calls[0]
    assert path.endswith("/" + ARCHIVE_NAME) and path.startswith(workdir)
    assert data == vault_bytes(d, saved.snapshot + "/" + ARCHIVE_NAME)
    assert result.new_objects == [("Dataset", 401), ("Image", 301)]
    assert "NEW objects" in result.message and "Image 301" in result.message and "Dataset 401" in result.message
    assert os.listdir(workdir) == []
    assert probe.peak == saved.archive_size  # 1x the archive while downloading


def test_load_of_another_users_snapshot_is_refused(d: Any, workdir: str) -> None:
    d.enrol("bob", "bsmith", OMERO_SERVER)
    bsmith = Who(omero_user="bsmith", omero_user_id=7, omero_group="lab", omero_server=OMERO_SERVER)
    theirs = do_save(d, workdir, who=bsmith)
    assert theirs.ok
    unpacker = FakeUnpacker()
    with pytest.raises(LoadRefused) as e:
        load(svc_zone(d), theirs.snapshot, "jdoe", OMERO_SERVER, unpacker, workdir,
             landing=d.config.landing_collection)
    assert "not saved by you" in str(e.value) and "jdoe" in str(e.value)
    # same name on another OMERO server is another person
    mine = do_save(d, workdir)
    with pytest.raises(LoadRefused, match="not saved by you"):
        load(svc_zone(d), mine.snapshot, "jdoe", "other.example.org", unpacker, workdir,
             landing=d.config.landing_collection)
    assert unpacker.calls == []


def test_load_refuses_forged_missing_quarantined_and_altered(d: Any, workdir: str) -> None:
    landing = d.config.landing_collection
    zone = svc_zone(d)
    unpacker = FakeUnpacker()
    forged = _forge_snapshot(d)
    with pytest.raises(LoadRefused, match="landing record"):
        load(zone, forged, "jdoe", OMERO_SERVER, unpacker, workdir, landing=landing)
    with pytest.raises(LoadRefused, match="no snapshot at"):
        load(zone, "/tempZone/home/alice/omero-snapshots/nope", "jdoe", OMERO_SERVER, unpacker, workdir,
             landing=landing)
    with pytest.raises(LoadRefused, match="not an iRODS collection path"):
        load(zone, "relative/path", "jdoe", OMERO_SERVER, unpacker, workdir, landing=landing)
    refused = do_save(d, workdir, who=Who(omero_user="jdoe", omero_user_id=52, omero_group="lab",
                                          omero_server="other.example.org"))
    with pytest.raises(LoadRefused):
        load(zone, refused.location, "jdoe", "other.example.org", unpacker, workdir, landing=landing)
    # the owner replaces the archive's bytes in iRODS: the recorded sha256 no longer matches
    saved = do_save(d, workdir)
    with d.catalog.open_overwrite("alice", saved.snapshot + "/" + ARCHIVE_NAME) as w:
        w.write(b"not the archive")
    with pytest.raises(LoadRefused, match="does not match"):
        load(zone, saved.snapshot, "jdoe", OMERO_SERVER, unpacker, workdir, landing=landing)
    assert unpacker.calls == []
    assert os.listdir(workdir) == []


# ---------------------------------------------------------------------------------------------- upload / progress
def test_stream_tar_is_exact_estimated_and_never_seeks(tmp_path: Any) -> None:
    folder = str(tmp_path / "p")
    extract_fixture(FIXTURES["image_tar"], folder)

    class ForwardOnly:
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, data: bytes) -> int:
            self.buf += data
            return len(data)

    sink = ForwardOnly()
    seen: List[Tuple[int, Optional[int]]] = []
    size, sha = stream_folder_as_tar(folder, sink, lambda a, b: seen.append((a, b)))  # type: ignore[arg-type]
    assert size == len(sink.buf) == estimate_tar_size(folder)
    assert sha == hashlib.sha256(bytes(sink.buf)).hexdigest()
    assert seen[-1] == (size, size) and all(b == size for _, b in seen)
    assert folder_bytes(folder) == sum(packet_files(FIXTURES["image_tar"]).values())


def test_stream_tar_refuses_symlinks(tmp_path: Any) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "transfer.xml").write_text("<OME/>")
    os.symlink("/etc/passwd", str(folder / "link"))
    with pytest.raises(PacketError, match="neither a file nor a directory"):
        stream_folder_as_tar(str(folder), io.BytesIO())


def test_progress_log_and_terminal_bar() -> None:
    out = io.StringIO()
    log = ProgressLog(out, step=25, interval=1e9, clock=lambda: 0.0)
    for done in range(0, 101, 5):
        log(done * 1024 * 1024, 100 * 1024 * 1024)
    lines = out.getvalue().splitlines()
    assert lines[0] == "uploaded 0 B of 100.0 MiB (0%)"
    assert lines[-1] == "uploaded 100.0 MiB of 100.0 MiB (100%)"
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert human_bytes(1536) == "1.5 KiB" and format_progress(5, None) == "5 B"

    pipe = io.StringIO()
    bar = TerminalProgressBar(pipe)
    bar(1, 2)
    bar.finish()
    assert pipe.getvalue() == "" and terminal_progress(stream=pipe) is None

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = TerminalProgressBar(tty, width=10)
    bar(512, 1024)
    bar(1024, 1024)
    bar.finish()
    assert tty.getvalue().startswith("\r[#####.....]  50%") and tty.getvalue().endswith("100%  1.0 KiB of 1.0 KiB\n")


# ------------------------------------------------------------------------------ omero-cli-transfer adapter
class FakeCli:
    def __init__(self, rv: int = 0, make: bool = True) -> None:
        self.rv = rv
        self.make = make
        self.invoked: List[List[str]] = []
        self.sessiondir: Optional[str] = None
        self.current: Any = None
        self.closed = False

    def invoke(self, args: List[str], strict: bool = False) -> None:
        self.invoked.append(list(args))
        self.sessiondir = os.environ.get("OMERO_SESSIONDIR")
        assert self.sessiondir and os.path.isdir(self.sessiondir)
        try:  # what omero-cli-transfer's own CLI commands (download, import) will log in with
            from omero.util.sessions import SessionsStore

            self.current = SessionsStore(self.sessiondir).get_current()
        except ImportError:
            self.current = None
        if self.rv:
            err = RuntimeError("NonZeroReturnCode")
            err.rv = self.rv  # type: ignore[attr-defined]
            raise err
        if self.make:
            os.makedirs(args[-1])

    def close(self) -> None:
        self.closed = True


def test_object_spec() -> None:
    assert object_spec([("Image", 1), ("Image", 2), ("Image", 1)]) == "Image:1,2"
    with pytest.raises(ValueError):
        object_spec([])
    with pytest.raises(ValueError):
        object_spec([("Image", 0)])


def test_cli_transfer_packer_joins_the_session_and_packs_to_a_folder(tmp_path: Any, caplog: Any,
                                                                     capsys: Any) -> None:
    caplog.set_level(logging.DEBUG)
    cli = FakeCli()
    packer = CliTransferPacker(FakeClient(), cli_factory=lambda: cli)
    folder = str(tmp_path / "packet")
    packer.pack([("Dataset", 3), ("Dataset", 4)], folder)
    assert cli.invoked == [["-q", "-s", "omero.example.org", "-p", "4064", "-k", SESSION_KEY,
                            "transfer", "pack", "--binaries", "all", "Dataset:3,4", folder]]
    assert cli.closed and cli.sessiondir and not os.path.exists(cli.sessiondir)
    try:
        import omero.util.sessions  # noqa: F401
    except ImportError:
        pass
    else:  # the store the CLI sees has the script's session as its CURRENT one (host, user, key, port)
        assert cli.current == ("omero.example.org", "jdoe", SESSION_KEY, "4064"), cli.current
    assert "OMERO_SESSIONDIR" not in os.environ or os.environ["OMERO_SESSIONDIR"] != cli.sessiondir
    failing = CliTransferPacker(FakeClient(), cli_factory=lambda: FakeCli(rv=3))
    with pytest.raises(PackError, match=r"exit 3") as e:
        failing.pack([("Image", 1)], str(tmp_path / "other"))
    with pytest.raises(PackError, match="no packet folder"):
        CliTransferPacker(FakeClient(), cli_factory=lambda: FakeCli(make=False)).pack([("Image", 1)],
                                                                                      str(tmp_path / "x"))
    with pytest.raises(ValueError, match="folder"):
        packer.pack([("Image", 1)], str(tmp_path / "a.tar"))
    seen = str(e.value) + capsys.readouterr().out + "".join(r.getMessage() for r in caplog.records)
    assert SESSION_KEY not in seen


# ---------------------------------------------------------------------------------------------- settings and secrets
def write_env(tmp_path: Any, mode: int = 0o600, auth_mode: int = 0o600, home_name: str = "irods-home",
              **extra: Any) -> str:
    from irods.password_obfuscation import encode

    home = tmp_path / home_name
    home.mkdir()
    env = {"irods_host": "127.0.0.1", "irods_port": 9, "irods_zone_name": "tempZone", "irods_user_name": SVC,
           "irods_authentication_scheme": "native", "irods_password": PASSWORD}
    env.update(extra)
    path = home / "irods_environment.json"
    path.write_text(json.dumps(env))
    os.chmod(str(path), mode)
    auth = home / ".irodsA"
    auth.write_text(encode(PASSWORD))
    os.chmod(str(auth), auth_mode)
    return str(path)


def test_settings_from_the_env_file(tmp_path: Any) -> None:
    path = write_env(tmp_path, omero_snapshots_server_name="omero.example.org")
    s = load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": path})
    assert (s.env_file, s.irods_user, s.zone_name) == (path, SVC, "tempZone")
    assert s.landing == "/tempZone/home/omero-svc/landing"
    assert s.auth_file == os.path.join(os.path.dirname(path), ".irodsA")
    assert s.server_name == "omero.example.org"
    s2 = load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": write_env(tmp_path, home_name="b",
                                                                          omero_snapshots_landing="/tempZone/x/l"),
                        "OMERO_SNAPSHOTS_SERVER_NAME": "omero.lab.org:4064"}, hostname="ignored")
    assert (s2.landing, s2.server_name) == ("/tempZone/x/l", "omero.lab.org:4064")
    with pytest.raises(SettingsError, match="inside zone"):
        load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": write_env(tmp_path, home_name="c",
                                                                                omero_snapshots_landing="/other/l")})
    with pytest.raises(SettingsError, match="looked at"):
        load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": str(tmp_path / "missing.json")})
    with pytest.raises(SettingsError, match="not a host name"):
        load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": path, "OMERO_SNAPSHOTS_SERVER_NAME": "bad name"})


@pytest.mark.parametrize("which", ["env", "auth"])
def test_settings_refuse_group_or_other_readable_credentials(tmp_path: Any, which: str) -> None:
    path = write_env(tmp_path, mode=0o644 if which == "env" else 0o600, auth_mode=0o640 if which == "auth" else 0o600)
    bad = path if which == "env" else os.path.join(os.path.dirname(path), ".irodsA")
    with pytest.raises(SettingsError) as e:
        load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": path})
    assert bad in str(e.value) and "chmod 600 " + bad in str(e.value)
    assert PASSWORD not in str(e.value)


def test_password_never_in_output_log_or_manifest(d: Any, tmp_path: Any, workdir: str, caplog: Any,
                                                  capsys: Any) -> None:
    from irods.password_obfuscation import encode

    caplog.set_level(logging.DEBUG)
    path = write_env(tmp_path, omero_snapshots_landing=d.config.landing_collection,
                     omero_snapshots_server_name=OMERO_SERVER, omero_snapshots_workdir=workdir)
    settings = load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": path})
    outputs: List[str] = [repr(settings), str(settings)]

    # a whole Save through the script glue, against the simulated zone
    client = FakeClient({"Data_Type": "Image", "IDs": [51], "Label": "secret-free"})
    msg = script_support.run_script(client, "Save to iRODS", lambda: script_support.save_task(
        client, FakeConn(), settings=settings, zone=svc_zone(d), packer=FakePacker(FIXTURES["image_tar"]),
        poll=poll_for(d)), str)
    assert "Saved to iRODS" in msg
    outputs.append(msg)
    saved = snapshots_of(svc_zone(d), d.config.landing_collection, "jdoe", OMERO_SERVER)[0]
    outputs.append(vault_bytes(d, saved.path + "/manifest.json").decode("utf-8"))
    # a List and a failing real connection (python-irodsclient reads the .irodsA, then cannot connect)
    for task in (lambda: script_support.list_task(client, FakeConn(), settings=settings, zone=svc_zone(d)),
                 lambda: script_support.list_task(client, FakeConn(), settings=settings)):
        outputs.append(script_support.run_script(client, "List", task, str))
    assert "failed" in outputs[-1]
    # permission refusal message
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError) as e:
        load_settings({"OMERO_IRODS_ENVIRONMENT_FILE": path})
    outputs.append(str(e.value))

    captured = capsys.readouterr()
    outputs += [captured.out, captured.err]
    outputs += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    text = "\n".join(outputs)
    assert "Saved to iRODS" in text and "List failed" in text
    assert PASSWORD not in text
    assert encode(PASSWORD) not in text


# ---------------------------------------------------------------------------------------------- script glue
def _settings(d: Any, workdir: str) -> Settings:
    return Settings(env_file="/nonexistent", auth_file=None, irods_user=SVC, zone_name="tempZone",
                    landing=d.config.landing_collection, server_name=OMERO_SERVER, workdir=workdir,
                    poll_seconds=5)


def test_script_tasks_save_list_load(d: Any, workdir: str) -> None:
    settings = _settings(d, workdir)
    out = io.StringIO()
    client = FakeClient({"Data_Type": "Dataset", "IDs": [3], "Label": "from the script"})
    packer = FakePacker(FIXTURES["dataset_zip"])
    msg = script_support.run_script(client, "Save to iRODS", lambda: script_support.save_task(
        client, FakeConn(), settings=settings, zone=svc_zone(d), packer=packer, out=out, poll=poll_for(d)), str)
    assert client.outputs["Message"] == msg and msg.startswith("Saved to iRODS: /tempZone/home/alice/")
    assert packer.calls[0][0] == [("Dataset", 3)]
    assert "uploaded" in out.getvalue() and "(100%)" in out.getvalue()

    client = FakeClient()
    msg = script_support.run_script(client, "List", lambda: script_support.list_task(
        client, FakeConn(), settings=settings, zone=svc_zone(d), out=out), str)
    assert msg.startswith("1 snapshot saved by jdoe on omero.example.org") and "from the script" in msg

    unpacker = FakeUnpacker([("Image", 900)])
    client = FakeClient({"Snapshot_Index": 1})
    msg = script_support.run_script(client, "Load", lambda: script_support.load_task(
        client, FakeConn(), settings=settings, zone=svc_zone(d), unpacker=unpacker, out=out), str)
    assert "Image 900" in msg and len(unpacker.calls) == 1

    client = FakeClient({"Snapshot_Index": 2})
    msg = script_support.run_script(client, "Load", lambda: script_support.load_task(
        client, FakeConn(), settings=settings, zone=svc_zone(d), unpacker=unpacker, out=out), str)
    assert msg.startswith("Load failed: there is no snapshot number 2")

    snap = snapshots_of(svc_zone(d), d.config.landing_collection, "jdoe", OMERO_SERVER)[0].path
    client = FakeClient({"Snapshot": snap})
    err = io.StringIO()
    msg = script_support.run_script(client, "Load", lambda: script_support.load_task(
        client, FakeConn("someone"), settings=settings, zone=svc_zone(d), unpacker=unpacker, out=out), str, err)
    assert msg.startswith("Load failed: ") and "not saved by you" in msg and "not saved by you" in err.getvalue()
    assert "Traceback" not in err.getvalue() and len(unpacker.calls) == 1


def test_unexpected_error_leaves_a_message_and_a_traceback() -> None:
    client = FakeClient()
    err = io.StringIO()

    def boom() -> str:
        raise KeyError("x")

    msg = script_support.run_script(client, "List", boom, str, err)
    assert client.outputs["Message"] == msg and "unexpectedly (KeyError)" in msg
    assert "Traceback" in err.getvalue()


# ---------------------------------------------------------------------------------------------- import hygiene
def _module_level_imports(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: List[str] = []
    for node in tree.body:  # module level only; imports inside functions are fine
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    names += [a.name for a in sub.names]
                elif isinstance(sub, ast.ImportFrom) and sub.module:
                    names.append(sub.module)
    return names


def test_no_omero_or_irods_import_at_module_level() -> None:
    paths = glob.glob(os.path.join(ROOT, "omero_client", "**", "*.py"), recursive=True)
    assert len(paths) >= 10
    for path in paths:
        heavy = [n for n in _module_level_imports(path) if n.split(".")[0] in ("omero", "Ice", "irods")]
        assert heavy == [], (path, heavy)
    # and the library really imports without them
    assert "omero_client.save" in sys.modules and "omero_client.load" in sys.modules


def test_an_owner_retagging_a_snapshot_cannot_hand_it_to_someone_else(d: Any, workdir: str) -> None:
    """alice owns her snapshot and may edit its AVUs; the service account's landing record still decides."""
    d.enrol("bob", "bsmith", OMERO_SERVER)
    mine = do_save(d, workdir)
    alice = d.zone_as("alice")
    alice.apply_metadata(mine.snapshot, [V.MetaOp("remove", V.OMERO_USER, "jdoe"),
                                         V.MetaOp("add", V.OMERO_USER, "bsmith")])
    assert [s.path for s in snapshots_of(svc_zone(d), d.config.landing_collection, "bsmith", OMERO_SERVER)] == []
    unpacker = FakeUnpacker()
    with pytest.raises(LoadRefused, match="changed after it was saved"):
        load(svc_zone(d), mine.snapshot, "bsmith", OMERO_SERVER, unpacker, workdir,
             landing=d.config.landing_collection)
    assert unpacker.calls == []


def test_an_owner_swapping_the_archive_and_its_checksum_avu_cannot_get_it_loaded(d: Any, workdir: str) -> None:
    mine = do_save(d, workdir)
    alice = d.zone_as("alice")
    evil = b"not the archive OMERO saved"
    alice.remove_object(mine.snapshot + "/transfer.tar")
    with alice.open_new(mine.snapshot + "/transfer.tar") as f:
        f.write(evil)
    alice.set_acl(mine.snapshot + "/transfer.tar", SVC, "read")
    old = V.first(alice.metadata(mine.snapshot), V.ARCHIVE_SHA256)
    alice.apply_metadata(mine.snapshot, [V.MetaOp("remove", V.ARCHIVE_SHA256, old or ""),
                                         V.MetaOp("add", V.ARCHIVE_SHA256, hashlib.sha256(evil).hexdigest())])
    unpacker = FakeUnpacker()
    with pytest.raises(LoadRefused, match="changed in iRODS"):
        load(svc_zone(d), mine.snapshot, "jdoe", OMERO_SERVER, unpacker, workdir,
             landing=d.config.landing_collection)
    assert unpacker.calls == []


@pytest.mark.parametrize("name", ["traversal", "absolute", "symlink", "hardlink", "chardev", "zip_slip"])
def test_archive_check_refuses_what_unpack_archive_would_follow(tmp_path: Any, name: str) -> None:
    import archive_corpus as corpus

    from omero_client.archive_check import check_archive

    data, rule = corpus.HOSTILE[name]()
    path = tmp_path / ("a.zip" if data[:2] == b"PK" else "a.tar")
    path.write_bytes(data)
    refusal = check_archive(str(path))
    assert refusal is not None and refusal.rule == rule, refusal
    assert check_archive(FIXTURES["image_tar"]) is None and check_archive(FIXTURES["plate_zip"]) is None


def test_a_partial_load_says_so(d: Any, workdir: str) -> None:
    mine = do_save(d, workdir)  # the image packet: its transfer.xml holds one image
    full = load(svc_zone(d), mine.snapshot, "jdoe", OMERO_SERVER, FakeUnpacker(), workdir,
                landing=d.config.landing_collection)
    assert "INCOMPLETE" not in full.message
    partial = load(svc_zone(d), mine.snapshot, "jdoe", OMERO_SERVER, FakeUnpacker(new=[("Dataset", 9)]), workdir,
                   landing=d.config.landing_collection)
    assert "Images: 0 of the 1 in the snapshot imported." in partial.message
    assert "INCOMPLETE" in partial.message and "Dataset 9" in partial.message


def test_missing_jsonschema_is_named_in_the_message(tmp_path: Any, monkeypatch: Any) -> None:
    """The settings file is validated with jsonschema, imported lazily: without it the Message says so."""
    from omero_client.settings import load_site_settings

    path = tmp_path / "omero_snapshots.json"
    path.write_text('{"settings_version": 1}')
    os.chmod(str(path), 0o600)
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    monkeypatch.setitem(sys.modules, "jsonschema.exceptions", None)
    client = FakeClient()
    err = io.StringIO()
    msg = script_support.run_script(client, "List", lambda: str(load_site_settings(
        {"OMERO_SNAPSHOTS_SETTINGS": str(path)})), str, err)
    assert msg.startswith("List failed: the OMERO server's Python environment cannot import 'jsonschema")
    assert client.outputs["Message"] == msg and msg in err.getvalue()
