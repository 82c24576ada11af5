"""CliTransferUnpacker and its HQL, against a catalogue double answering in the real API's shapes.

IQuery.projection returns a list of rows, each a list of omero.rtypes (RLongI,
RStringI; a null as None), and takes an omero.sys.ParametersI whose ``map``
binds each ``:name``. The double checks every query binds exactly the names
it uses with the right rtype, and answers from a small catalogue that the
unpack double changes the way omero-cli-transfer's populate_omero does
(containers created whether or not an image lands in them, a provenance
MapAnnotation with the archive's md5 and origin_image_id on each imported
image, imports that fail silently, an image imported but never linked).
The HQL itself has not yet been run against a real OMERO server.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

try:
    from omero.rtypes import RLongI, RStringI, rlong, rstring

    from omero_client.pack import parameters

    parameters()  # the unpacker's own import of omero.sys.ParametersI must work
except ImportError as e:
    pytest.skip("omero-py is not importable ({}); install it with: pip install ../shared/wheels/zeroc_ice-3.6.5-"
                "cp311-cp311-linux_x86_64.whl omero-py==5.23.0".format(e), allow_module_level=True)

from helpers import OMERO_SERVER  # noqa: E402
from omero_doubles import OmeroModel, several_filesets, transfer_xml  # noqa: E402
from test_omero_client import d, do_save, svc_zone, workdir  # noqa: E402,F401 (fixtures)

from omero_client.load import load  # noqa: E402
from omero_client.pack import TRANSFER_NS, CliTransferUnpacker, PackError, UnpackReport  # noqa: E402

ME, OTHER = 52, 7


class Catalogue:
    """Objects (type -> id -> (name, owner)), MapAnnotations and annotation links."""

    def __init__(self) -> None:
        self.objects: Dict[str, Dict[int, Tuple[str, int]]] = {t: {} for t in (
            "Project", "Dataset", "Screen", "Plate", "Image", "Annotation")}
        self.maps: Dict[int, Tuple[str, List[Tuple[str, str]]]] = {}
        self.links: List[Tuple[str, int, int]] = []  # (parent type, parent id, annotation id)
        self.next = 1000
        self.queries: List[str] = []

    def new(self, otype: str, name: str, owner: int = ME) -> int:
        self.next += 1
        self.objects[otype][self.next] = (name, owner)
        return self.next

    def annotate(self, otype: str, oid: int, kv: List[Tuple[str, str]], ns: str = TRANSFER_NS) -> None:
        aid = self.new("Annotation", "")
        self.maps[aid] = (ns, kv)
        self.links.append((otype, oid, aid))


class Query:
    """IQuery.projection over the catalogue, for exactly the HQL CliTransferUnpacker sends."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    @staticmethod
    def _bound(hql: str, params: Any) -> Dict[str, Any]:
        used = set(re.findall(r":(\w+)", hql))
        bound = dict(params.map)
        assert used == set(bound), (hql, used, set(bound))
        for name, value in bound.items():
            want = RStringI if name in ("ns", "md5", "origin") else RLongI
            assert isinstance(value, want), (name, type(value))
        return {k: v.val for k, v in bound.items()}

    def projection(self, hql: str, params: Any, ctx: Optional[Dict[str, str]] = None) -> List[List[Any]]:
        self.cat.queries.append(hql)
        p = self._bound(hql, params)
        cat = self.cat
        m = re.fullmatch(r"select max\(o\.id\) from (\w+) o", hql)
        if m:
            ids = list(cat.objects[m.group(1)])
            return [[rlong(max(ids)) if ids else None]]
        m = re.fullmatch(r"select distinct l\.parent\.id(, ov\.value)? from (Image|Plate)AnnotationLink l, "
                         r"MapAnnotation a join a\.mapValue mv (join a\.mapValue ov )?where l\.child\.id = a\.id "
                         r"and a\.ns = :ns and mv\.name = 'md5' and mv\.value = :md5 (and ov\.name = :origin )?"
                         r"and a\.id > :since", hql)
        if m:
            with_origin = bool(m.group(1))
            assert with_origin == bool(m.group(3)) == bool(m.group(4))
            out: List[List[Any]] = []
            for ptype, pid, aid in cat.links:
                ns, kv = cat.maps.get(aid, ("", []))
                if ptype != m.group(2) or ns != p["ns"] or aid <= p["since"] or ("md5", p["md5"]) not in kv:
                    continue
                if with_origin:
                    out += [[rlong(pid), rstring(v)] for k, v in kv if k == p["origin"]]
                else:
                    out.append([rlong(pid)])
            return [list(r) for r in {tuple(c.val for c in r): r for r in out}.values()]  # distinct
        m = re.fullmatch(r"select (o|i)\.id, \1\.name from (\w+) \1 where \1\.id > :since and "
                         r"\1\.details\.owner\.id = :owner order by \1\.id", hql)
        if m:
            return [[rlong(i), rstring(n)] for i, (n, owner) in sorted(cat.objects[m.group(2)].items())
                    if i > p["since"] and owner == p["owner"]]
        raise AssertionError("a query the double does not know: " + hql)


class UnpackCli:
    """omero transfer unpack: populate_omero's effects on the catalogue (failing and unlinked imports too)."""

    def __init__(self, cat: Catalogue, fail: Set[int] = frozenset(), unlinked: Set[int] = frozenset(),
                 metadata: bool = True) -> None:  # type: ignore[assignment]
        self.cat, self.fail, self.unlinked, self.metadata = cat, set(fail), set(unlinked), metadata
        self.invoked: List[List[str]] = []

    def invoke(self, args: List[str], strict: bool = False) -> None:
        from omero_client.transfer_xml import index_of_archive

        self.invoked.append(list(args))
        path = args[args.index("unpack") + 1]
        with open(path, "rb") as f:
            md5 = hashlib.md5(f.read()).hexdigest()
        index = index_of_archive(path)
        self.cat.new("Dataset", "day 3", OTHER)  # someone else, at the same time: not ours
        for kind, names in index.containers.items():
            for name in names:
                self.cat.new(kind, name)  # created linked or empty
        for img in index.images:
            if img.source_id in self.fail:
                continue  # omero import without strict: silently nothing
            new = self.cat.new("Image", os.path.basename(img.path or img.name))
            if img.source_id in self.unlinked:
                continue  # imported, then not matched by clientPath (#109)
            kv = [("md5", md5)] + ([("origin_image_id", str(img.source_id))] if self.metadata else [])
            self.cat.annotate("Image", new, kv)


def client_for(cat: Catalogue) -> Any:
    ec = SimpleNamespace(userName="jdoe", userId=ME)
    session = SimpleNamespace(getQueryService=lambda: Query(cat),
                              getAdminService=lambda: SimpleNamespace(getEventContext=lambda: ec))
    return SimpleNamespace(getSession=lambda: session, getSessionId=lambda: "key",
                           getProperty=lambda k: {"Ice.Default.Router":
                                                  "OMERO.Glacier2/router:ssl -p 4064 -h localhost"}.get(k, ""))


def archive(tmp_path: Any, model: OmeroModel, images: List[int]) -> str:
    path = str(tmp_path / "transfer.tar")
    xml = transfer_xml(model, images, [])
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("./transfer.xml")
        info.size = len(xml)
        t.addfile(info, io.BytesIO(xml))
    return path


def prior_catalogue() -> Catalogue:
    cat = Catalogue()
    old_ds = cat.new("Dataset", "day 3")  # the user's own older dataset of the same name
    old = cat.new("Image", "stack.tiff")
    cat.annotate("Image", old, [("md5", "0" * 32), ("origin_image_id", "51")])
    assert old_ds < old
    return cat


def test_unpack_reports_every_new_object_containers_included(tmp_path: Any) -> None:
    model, images, _ = several_filesets()
    cat = prior_catalogue()
    cli = UnpackCli(cat)
    report = CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli, output=io.StringIO()).unpack(
        archive(tmp_path, model, images))
    assert isinstance(report, UnpackReport)
    datasets = [i for t, i in report.created if t == "Dataset"]
    new_images = [i for t, i in report.created if t == "Image"]
    assert len(datasets) == 1 and cat.objects["Dataset"][datasets[0]] == ("day 3", ME)
    assert len(new_images) == 5 and all(i > 1002 for i in new_images)
    assert (report.expected_images, report.imported_images, report.failed, report.orphans) == (5, 5, [], [])
    assert cli.invoked[0][-2] == "unpack"


def test_unpack_names_the_images_that_failed_and_the_unlinked_ones(tmp_path: Any) -> None:
    model, images, _ = several_filesets()
    cat = prior_catalogue()
    cli = UnpackCli(cat, fail={53, 55}, unlinked={54})
    report = CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli, output=io.StringIO()).unpack(
        archive(tmp_path, model, images))
    assert (report.expected_images, report.imported_images) == (5, 2)
    assert [f.split(" ")[0] for f in report.failed] == ["Image:53", "Image:54", "Image:55"]
    assert "pixel_images/55.tiff" in report.failed[2]
    assert len(report.orphans) == 1 and cat.objects["Image"][report.orphans[0]][0] == "mock_folder"
    theirs = [i for i, (_, owner) in cat.objects["Dataset"].items() if owner == OTHER]
    assert len(theirs) == 1 and ("Dataset", theirs[0]) not in report.created  # same name, same time, not ours
    assert sum(1 for t, _ in report.created if t == "Dataset") == 1  # empty or not, it was created


def test_without_origin_ids_the_report_still_counts(tmp_path: Any) -> None:
    model, images, _ = several_filesets()
    cat = prior_catalogue()
    cli = UnpackCli(cat, fail={55}, metadata=False)
    report = CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli, output=io.StringIO()).unpack(
        archive(tmp_path, model, images))
    assert (report.expected_images, report.imported_images, report.failed) == (5, 4, ["1 of the snapshot's images"])


def test_nothing_imported_lists_every_image_and_the_containers(tmp_path: Any) -> None:
    model, images, _ = several_filesets()
    cat = prior_catalogue()
    cli = UnpackCli(cat, fail=set(images))
    report = CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli, output=io.StringIO()).unpack(
        archive(tmp_path, model, images))
    assert [t for t, _ in report.created] == ["Dataset"] and len(report.failed) == 5


def test_an_archive_without_transfer_xml_is_refused_before_unpack(tmp_path: Any) -> None:
    path = str(tmp_path / "transfer.tar")
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("./other.txt")
        t.addfile(info, io.BytesIO(b""))
    cat = Catalogue()
    cli = UnpackCli(cat)
    with pytest.raises(PackError, match="no transfer.xml"):
        CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli).unpack(path)
    assert cli.invoked == [] and cat.queries == []


def test_load_message_says_what_was_created_expected_imported_and_failed(d: Any, workdir: str,  # noqa: F811
                                                                         monkeypatch: Any) -> None:
    """Through load(): the fixture image packet, whose one image fails to import."""
    mine = do_save(d, workdir)
    cat = prior_catalogue()
    cli = UnpackCli(cat, fail={51})
    unpacker = CliTransferUnpacker(client_for(cat), cli_factory=lambda: cli, output=io.StringIO())
    result = load(svc_zone(d), mine.snapshot, "jdoe", OMERO_SERVER, unpacker, workdir,
                  landing=d.config.landing_collection)
    text = result.message
    assert "Images: 0 of the 1 in the snapshot imported." in text
    assert "Not imported: Image:51 'combined_result.tiff' (root_0/" in text
    assert "INCOMPLETE" in text and "shows no new objects" in text
