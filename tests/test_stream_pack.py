"""Zero-copy Save (omero_client.stream_pack): the tar the folder path would make, with nothing stored locally.

The OMERO server is tests/omero_doubles.py: a model serving real bytes, read
in small chunks. The reference is the EXISTING folder path: the folder that
``--binaries all`` leaves (write_binaries_all, and where omero-cli-transfer is
installed its real ``_copy_files`` with omero-py's real ``download_fileset``),
tarred by stream_folder_as_tar.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from typing import Any, Dict, List, Optional, Tuple

import pytest
from helpers import FIXTURES, OMERO_SERVER, enrolled_deployment
from omero_doubles import OmeroModel, several_filesets, transfer_xml, write_binaries_all
from test_omero_client import JDOE, ScratchProbe, poll_for, svc_zone, vault_bytes

from omero_client.pack import PackError
from omero_client.save import ARCHIVE_NAME, save
from omero_client.stream_pack import CliTransferStreamPacker, plan_members
from omero_client.transfer_xml import parse_transfer_xml
from omero_client.upload import CHUNK, PacketError, stream_folder_as_tar, stream_packet_as_tar


class Sink:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.buf += data
        self.writes += 1
        return len(data)


def tar_members(data: bytes) -> List[Tuple[str, str, Optional[bytes]]]:
    """(name, type, bytes) of every member, in archive order."""
    out: List[Tuple[str, str, Optional[bytes]]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        assert t.pax_headers == {} or isinstance(t.pax_headers, dict)
        for m in t:
            f = t.extractfile(m) if m.isfile() else None
            out.append((m.name, "dir" if m.isdir() else "file" if m.isfile() else "other",
                        f.read() if f is not None else None))
    return out


class MetadataCli:
    """``omero transfer pack --binaries none`` as a CLI double: writes <folder>/transfer.xml only."""

    def __init__(self, model: OmeroModel, images: List[int], anns: List[int]) -> None:
        self.model, self.images, self.anns = model, images, anns
        self.invoked: List[List[str]] = []

    def invoke(self, args: List[str], strict: bool = False) -> None:
        self.invoked.append(list(args))
        i = args.index("pack")
        assert args[i + 1:i + 3] == ["--binaries", "none"], args
        folder = args[i + 4]
        os.makedirs(folder, exist_ok=True)  # omero-cli-transfer: splitext(filepath)[0], DIR_PERM, exist_ok
        with open(os.path.join(folder, "transfer.xml"), "wb") as f:
            f.write(transfer_xml(self.model, self.images, self.anns))


class FakeClient:
    def __init__(self, router: str = "OMERO.Glacier2/router:ssl -p 4064 -h omero.example.org") -> None:
        self.router = router

    def getProperty(self, key: str) -> str:  # noqa: N802 (omero's name)
        return {"Ice.Default.Router": self.router, "omero.port": "4064"}.get(key, "")

    def getSessionId(self) -> str:  # noqa: N802
        return "session-key"

    def getSession(self) -> Any:  # noqa: N802
        from types import SimpleNamespace

        ec = SimpleNamespace(userName="jdoe")
        return SimpleNamespace(getAdminService=lambda: SimpleNamespace(getEventContext=lambda: ec))


def folder_path_tar(tmp: str, model: OmeroModel, images: List[int], anns: List[int],
                    writer: Any = write_binaries_all) -> Tuple[bytes, str]:
    """The existing path: the full packet folder, then stream_folder_as_tar."""
    folder = os.path.join(tmp, "folder-path")
    os.makedirs(folder)
    xml = transfer_xml(model, images, anns)
    with open(os.path.join(folder, "transfer.xml"), "wb") as f:
        f.write(xml)
    writer(model, folder, parse_transfer_xml(xml).file_ids())
    sink = Sink()
    stream_folder_as_tar(folder, sink)  # type: ignore[arg-type]
    return bytes(sink.buf), folder


def stream_path_tar(tmp: str, model: OmeroModel, images: List[int], anns: List[int]) -> Tuple[bytes, Any]:
    cli = MetadataCli(model, images, anns)
    packer = CliTransferStreamPacker(FakeClient(), reads=model, cli_factory=lambda: cli)
    folder = os.path.join(tmp, "stream-path", "packet")
    os.makedirs(os.path.dirname(folder))
    members = packer.prepare([("Image", i) for i in images], folder)
    assert os.listdir(folder) == ["transfer.xml"]  # metadata only, no binaries
    sink = Sink()
    stream_packet_as_tar(folder, members, sink)  # type: ignore[arg-type]
    return bytes(sink.buf), cli


def test_zero_copy_tar_has_the_folder_paths_member_names_and_bytes(tmp_path: Any) -> None:
    model, images, anns = several_filesets()
    folder_tar, _ = folder_path_tar(str(tmp_path), model, images, anns)
    stream_tar, cli = stream_path_tar(str(tmp_path), model, images, anns)
    want, got = tar_members(folder_tar), tar_members(stream_tar)
    assert [n for n, _, _ in got] == [n for n, _, _ in want]  # same names, same order
    assert got == want  # same types and bytes, member by member
    assert len(stream_tar) == len(folder_tar)
    names = [n for n, _, _ in got]
    # the layout --binaries all gives: repository paths, the repeated subfolder, pixel_images, file_annotations
    assert "./jdoe_52/2026-11/25/09-20-00.001/meta/deeper/notes.txt" in names
    assert "./bsmith_7/2025-01/02/03-04-05.678/sub/sub/plate&fields=1.fake" in names
    assert "./pixel_images/55.tiff" in names and "./file_annotations/7/results (final).xlsx" in names
    # the multi-image fileset was read once, every reader was closed, and reads stayed chunked
    assert sum(1 for w, off, _ in model.reads if w == "OriginalFile:111" and off == 0) == 1
    assert model.opened == model.closed == 8
    assert max(n for _, _, n in model.reads) <= model.max_read
    # pax/POSIX like the folder path, and the CLI got the script's session at the router's address
    with tarfile.open(fileobj=io.BytesIO(stream_tar)) as t:
        assert all(m.uid == 0 and m.uname == "" for m in t.getmembers())
    args = cli.invoked[0]
    assert args[args.index("-s") + 1] == "omero.example.org" and args[args.index("-p") + 1] == "4064"


def test_zero_copy_paths_match_the_real_omero_cli_transfer(tmp_path: Any, monkeypatch: Any) -> None:
    """omero-cli-transfer's own _copy_files and omero-py's download_fileset make the reference folder."""
    try:
        import omero_cli_transfer
        from omero.gateway import BlitzGateway
        from omero.plugins.download import DownloadControl
    except ImportError as e:
        pytest.skip("omero-cli-transfer/omero-py not importable ({}): pip install omero-cli-transfer".format(e))
    from types import SimpleNamespace

    model, images, anns = several_filesets()

    class Gateway(BlitzGateway):  # _copy_files checks isinstance(conn, BlitzGateway)
        def __init__(self) -> None:
            self.c = None  # download_fileset hands conn.c to download_file

        def getObject(self, otype: str, oid: int) -> Any:  # noqa: N802
            assert otype == "Image"
            fs = model.image_fileset[oid]
            if fs is None:
                return SimpleNamespace(getFileset=lambda: None)
            fileset = model.filesets[fs]
            wrapped = SimpleNamespace(
                id=fs, getTemplatePrefix=lambda: fileset.template_prefix,
                listFiles=lambda: [SimpleNamespace(path=f.path, name=f.name, _obj=f) for f in fileset.files],
                copyImages=lambda: [SimpleNamespace(getId=lambda i=i: i)
                                    for i, s in model.image_fileset.items() if s == fs])
            return SimpleNamespace(getFileset=lambda: wrapped)

    gateway = Gateway()

    class Cli:
        def loadplugins(self) -> None:
            pass

        def invoke(self, args: List[str], strict: bool = False) -> None:
            if args[0] == "export":
                with open(args[2], "wb") as f:
                    f.write(model.exports[int(args[3].split(":")[1])])
                return
            assert args[0] == "download"
            kind, oid = args[1].split(":")
            ctx = SimpleNamespace(out=lambda *a: None)

            def download_file(client: Any, orig: Any, target: str) -> None:
                if not os.path.exists(target):
                    with open(target, "wb") as f:
                        f.write(model.data[orig.id])

            me = SimpleNamespace(ctx=ctx, download_file=download_file)
            if kind == "Image":
                DownloadControl.download_fileset(me, gateway, gateway.getObject("Image", int(oid)).getFileset(),
                                                 args[2])
            else:
                assert kind == "FileAnnotation"
                download_file(None, model.annotations[int(oid)], args[2])

    monkeypatch.setattr(omero_cli_transfer, "CLI", Cli)

    def real_copy(m: OmeroModel, folder: str, file_ids: Any) -> None:
        control = omero_cli_transfer.TransferControl.__new__(omero_cli_transfer.TransferControl)
        control._copy_files(dict(file_ids), folder, False, gateway)

    folder_tar, _ = folder_path_tar(str(tmp_path), model, images, anns, writer=real_copy)
    stream_tar, _ = stream_path_tar(str(tmp_path), model, images, anns)
    assert tar_members(stream_tar) == tar_members(folder_tar)


def test_transfer_xml_reader_agrees_with_omero_cli_transfer(tmp_path: Any) -> None:
    try:
        from generate_xml import list_file_ids
        from ome_types import from_xml
    except ImportError as e:
        pytest.skip("omero-cli-transfer not importable ({}): pip install omero-cli-transfer".format(e))
    import zipfile

    docs = [transfer_xml(*several_filesets()[:1], [51, 52, 53, 54, 55], [7])]
    for key in ("image_tar", "dataset_zip", "plate_zip"):
        path = FIXTURES[key]
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                docs.append(z.read(next(n for n in z.namelist() if n.endswith("transfer.xml"))))
        else:
            with tarfile.open(path) as t:
                f = t.extractfile("./transfer.xml")
                assert f is not None
                docs.append(f.read())
    for i, doc in enumerate(docs):
        p = tmp_path / "t{}.xml".format(i)
        p.write_bytes(doc)
        theirs = list_file_ids(from_xml(str(p)))
        assert dict(parse_transfer_xml(doc).file_ids()) == theirs, i
        assert list(dict(parse_transfer_xml(doc).file_ids())) == list(theirs)


def test_zero_copy_save_scratch_is_transfer_xml_only(tmp_path: Any) -> None:
    """A whole Save into the simulated zone; local scratch measured at every progress callback."""
    d = enrolled_deployment(str(tmp_path / "zone"))
    workdir = str(tmp_path / "scratch")
    os.makedirs(workdir)
    model, images, anns = several_filesets(scale=4)
    probe = ScratchProbe(workdir)
    cli = MetadataCli(model, images, anns)
    packer = CliTransferStreamPacker(FakeClient(), reads=model, cli_factory=lambda: cli)
    result = save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", i) for i in images], packer,
                  workdir=workdir, progress=probe, poll=poll_for(d))
    assert result.ok and result.save_mode == "stream", result.message
    data = model.data_bytes()
    xml = len(transfer_xml(model, images, anns))
    assert probe.tars == [] and probe.calls > 10
    assert probe.peak == xml == result.scratch_peak_bytes  # transfer.xml, nothing else on disk
    assert probe.peak < data / 100 and probe.peak < 64 << 20
    assert os.listdir(workdir) == []
    stored = vault_bytes(d, result.snapshot + "/" + ARCHIVE_NAME)
    assert hashlib.sha256(stored).hexdigest() == result.archive_sha256 and len(stored) == result.archive_size
    got = {n: b for n, t, b in tar_members(stored) if t == "file"}
    assert got["./jdoe_52/2026-11/25/09-17-25.123/stack.tiff"] == model.data[101]
    assert got["./pixel_images/55.tiff"] == model.exports[55]
    print("\nzero-copy scratch: peak {} bytes on disk (transfer.xml) for {} bytes of data = {:.4f}%; memory "
          "buffer bounded by 2 x {} bytes".format(probe.peak, data, 100.0 * probe.peak / data, CHUNK))


def test_a_file_that_changes_size_fails_the_save_and_leaves_no_drop(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    workdir = str(tmp_path / "scratch")
    os.makedirs(workdir)
    model, images, anns = several_filesets()
    model.lie_about_size[112] = 7001  # the catalogue says one byte more than the file has
    packer = CliTransferStreamPacker(FakeClient(), reads=model, cli_factory=lambda: MetadataCli(model, images, anns))
    with pytest.raises(PacketError, match="OriginalFile:112 .*save again"):
        save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", i) for i in images], packer,
             workdir=workdir, poll=poll_for(d))
    assert d.catalog.list_collection(d.config.landing_collection).collections == []
    assert os.listdir(workdir) == [] and model.opened == model.closed


def test_a_path_leaving_the_packet_is_refused() -> None:
    model, _, _ = several_filesets()
    model.filesets[10].files[0] = type(model.filesets[10].files[0])(101, "../../../etc/", "x", 1)
    model.filesets[10].template_prefix = "nomatch/"
    with pytest.raises(PackError, match="outside the packet"):
        plan_members([("Image:51", "jdoe_52/a/x")], model)
    with pytest.raises(PackError, match="no file path"):
        plan_members([("Image:51", None)], model)


@pytest.mark.parametrize("router,server,port", [
    ("OMERO.Glacier2/router:ssl -p 14064 -h omero.example.org", "omero.example.org", "14064"),
    ("OMERO.Glacier2/router:tcp -p 14063 -h 10.0.0.5:ssl -p 14064 -h 10.0.0.5", "tcp://10.0.0.5", "14063"),
    ('OMERO.Glacier2/router:ssl -h "omero.example.org" -t 60000 -p 4444', "omero.example.org", "4444"),
])
def test_cli_joins_at_the_routers_host_and_port(router: str, server: str, port: str) -> None:
    """The processor gives the script only Ice.Default.Router; omero.port would say 4064 whatever it is."""
    from omero_client.pack import _session_args, router_endpoint, server_address

    client = FakeClient(router)
    assert server_address(client) == (server, port)
    args = _session_args(client)
    assert args[args.index("-s") + 1] == server and args[args.index("-p") + 1] == port
    assert router_endpoint("") is None and router_endpoint("OMERO.Glacier2/router") is None


def test_router_from_a_real_omero_client_property(tmp_path: Any) -> None:
    """The same string through omero-py's own client properties (what a script's client holds)."""
    try:
        import omero.clients  # noqa: F401
        from omero import client as omero_client
    except ImportError as e:
        pytest.skip("omero-py not importable ({})".format(e))
    from omero_client.pack import server_address

    c = omero_client(args=["--Ice.Default.Router=OMERO.Glacier2/router:ssl -p 14064 -h 127.0.0.2"])
    try:
        assert c.getProperty("omero.port") in ("", "4064")  # what the old code passed on
        assert server_address(c) == ("127.0.0.2", "14064")
    finally:
        c.closeSession()


def sizes(members: Any) -> Dict[str, Optional[int]]:
    return {m.path: m.size for m in members}


def test_members_know_their_sizes_except_exports() -> None:
    model, images, anns = several_filesets()
    members = plan_members(parse_transfer_xml(transfer_xml(model, images, anns)).file_ids(), model)
    s = sizes(members)
    assert s["pixel_images/55.tiff"] is None
    assert s["jdoe_52/2026-11/25/09-17-25.123/stack.tiff"] == len(model.data[101])
    assert len(members) == 8 and model.opened == 0  # planning reads nothing


_ = OMERO_SERVER


def test_nested_cli_chatter_goes_to_the_job_log_not_stderr(tmp_path: Any, capfd: Any) -> None:
    """omero-cli-transfer's nested CLIs print 'Using session ...' and import output, some from child processes."""
    import subprocess
    import sys

    from omero_client.pack import _run_cli

    class Chatty:
        def invoke(self, args: List[str], strict: bool = False) -> None:
            print("Using session for jdoe@omero.example.org:4064. Idle timeout: 10 min.", file=sys.stderr)
            print("Downloading file ID: 101 to ...")
            os.write(2, b"child-like write straight to fd 2\n")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('import: 1 image imported\\n')"],
                           check=True)
            if "fail" in args:
                raise RuntimeError("boom session-key")

    log = io.StringIO()
    _run_cli(lambda: Chatty(), ["transfer", "pack"], "omero transfer pack", str(tmp_path), FakeClient(), log)
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    text = log.getvalue()
    for line in ("Using session for jdoe", "Downloading file ID: 101", "child-like write", "1 image imported"):
        assert line in text
    with pytest.raises(PackError) as e:
        _run_cli(lambda: Chatty(), ["transfer", "fail"], "omero transfer pack", str(tmp_path), FakeClient(), log)
    assert "boom <session>" in str(e.value) and "1 image imported" in str(e.value)
    assert "session-key" not in str(e.value)
    assert capfd.readouterr().err == ""
    assert os.listdir(str(tmp_path)) == []  # the capture file and session store are gone


def test_session_reads_against_services_answering_like_omero(tmp_path: Any) -> None:
    """SessionReads' HQL (names bound exactly, rtypes back), RawFileStore and Exporter, over the model."""
    import re

    try:
        from omero.rtypes import RLongI, rlong, rstring
    except ImportError as e:
        pytest.skip("omero-py not importable ({})".format(e))
    from types import SimpleNamespace

    from omero_client.stream_pack import SessionReads

    model, images, anns = several_filesets()
    log: List[Any] = []

    class Query:
        def projection(self, hql: str, params: Any, ctx: Any = None) -> List[List[Any]]:
            assert ctx["omero.group"] == "-1"
            bound = dict(params.map)
            assert set(re.findall(r":(\w+)", hql)) == set(bound) == {"id"} and isinstance(bound["id"], RLongI)
            oid = bound["id"].val
            if hql == "select fs.id, fs.templatePrefix from Image i join i.fileset fs where i.id = :id":
                fs = model.image_fileset[oid]
                return [] if fs is None else [[rlong(fs), rstring(model.filesets[fs].template_prefix)]]
            files = {"select o.id, o.path, o.name, o.size from FilesetEntry fe join fe.originalFile o "
                     "where fe.fileset.id = :id order by fe.id": lambda: model.filesets[oid].files,
                     "select o.id, o.path, o.name, o.size from FileAnnotation fa join fa.file o "
                     "where fa.id = :id": lambda: [model.annotations[oid]]}[hql]()
            return [[rlong(f.id), rstring(f.path), rstring(f.name), rlong(f.size)] for f in files]

    class Store:  # RawFileStore / Exporter: read(offset, length) -> bytes
        def __init__(self) -> None:
            self.data = b""

        def setFileId(self, fid: int, ctx: Any = None) -> None:  # noqa: N802
            self.data = model.data[fid]

        def size(self) -> int:
            return len(self.data)

        def addImage(self, iid: int) -> None:  # noqa: N802
            self.data = model.exports[iid]

        def generateTiff(self) -> int:  # noqa: N802
            return len(self.data)

        def read(self, offset: int, length: int) -> bytes:
            log.append(length)
            return self.data[offset:offset + length]

        def close(self) -> None:
            log.append("close")

    session = SimpleNamespace(getQueryService=lambda: Query(), createRawFileStore=Store, createExporter=Store)
    client = SimpleNamespace(getSession=lambda: session, getContext=lambda group=None: {"omero.group": str(group)})
    members = plan_members(parse_transfer_xml(transfer_xml(model, images, anns)).file_ids(), SessionReads(client))
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "transfer.xml").write_bytes(transfer_xml(model, images, anns))
    sink = Sink()
    stream_packet_as_tar(str(meta), members, sink)  # type: ignore[arg-type]
    folder_tar, _ = folder_path_tar(str(tmp_path), model, images, anns)
    assert tar_members(bytes(sink.buf)) == tar_members(folder_tar)
    assert log.count("close") == 8 and max(n for n in log if n != "close") <= 1 << 20


def test_a_file_omero_will_not_serve_fails_with_its_reason_and_removes_the_drop(tmp_path: Any) -> None:
    d = enrolled_deployment(str(tmp_path / "zone"))
    workdir = str(tmp_path / "scratch")
    os.makedirs(workdir)
    model, images, anns = several_filesets()

    def refuse(file_id: int) -> Any:
        raise PackError("OriginalFile:{} cannot be read (SecurityViolation); the OMERO server may not allow "
                        "downloading it (omero.policy.binary_access)".format(file_id))

    model.open_file = refuse  # type: ignore[method-assign]
    packer = CliTransferStreamPacker(FakeClient(), reads=model, cli_factory=lambda: MetadataCli(model, images, anns))
    with pytest.raises(PackError, match="binary_access"):
        save(svc_zone(d), d.config.landing_collection, JDOE, [("Image", i) for i in images], packer,
             workdir=workdir, poll=poll_for(d))
    assert d.catalog.list_collection(d.config.landing_collection).collections == []
    assert os.listdir(workdir) == []


def test_the_size_estimate_is_exact_when_omero_knows_every_size(tmp_path: Any) -> None:
    """Progress is reported against the estimate; without exports it is the archive's exact size."""
    from omero_client.upload import estimate_packet_size

    model, _, anns = several_filesets()
    images = [51, 52, 53, 54]  # no export: every size comes from the catalogue
    xml = transfer_xml(model, images, anns)
    (tmp_path / "transfer.xml").write_bytes(xml)
    members = plan_members(parse_transfer_xml(xml).file_ids(), model)
    seen: List[Tuple[int, Optional[int]]] = []
    size, _ = stream_packet_as_tar(str(tmp_path), members, Sink(), lambda a, b: seen.append((a, b)))  # type: ignore
    assert size == estimate_packet_size(str(tmp_path), members) and seen[-1] == (size, size)
    assert all(total == size for _, total in seen)
