"""PrepZone (the production adapter) on the fake PREP runtime, held to what a real server did (round 10).

Each test exercises a behaviour the landed adapter got wrong on a real iRODS 5.0.2 + PREP 5.0.1 because the
old fake guessed it: a None buffer at end of file, failures that RETURN code -808000 instead of raising,
char_array stat fields, rows hidden from a rodsuser, and msiObjStat on a missing path filling the log with
error lines.
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

import pytest

from policy.errors import AlreadyExists, InvalidInput, IrodsError, NoPermission, NotFound
from policy.prep_zone import PrepZone
from policy.zone import COLLECTION, DATA_OBJECT, MetaOp, exists
from simzone.catalog import SimCatalog
from simzone.prep import FakeServer, make_rei

SVC, ADMIN, ALICE = "omero-svc", "rods", "alice"
HOME = "/tempZone/home/"


@pytest.fixture()
def world(tmp_path: Any) -> Tuple[FakeServer, SimCatalog]:
    cat = SimCatalog(str(tmp_path / "zone"))
    cat.add_user(SVC, "rodsuser")
    cat.add_user(ALICE, "rodsuser")
    return FakeServer(cat, None, str(tmp_path / "rodsLog")), cat


def _zone(srv: FakeServer, user: str) -> PrepZone:
    return PrepZone(srv.callback(user), make_rei(user, "tempZone"), "tempZone")


def _put(cat: SimCatalog, user: str, path: str, data: bytes) -> None:
    with cat.open_new(user, path) as w:
        w.write(data)


class _Spy:
    """Wraps the fake callback and records what each microservice returned (None buffers included)."""

    def __init__(self, cb: Any) -> None:
        self._cb = cb
        self.calls: List[Tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._cb, name)
        if name.startswith("_") or not callable(fn):
            return fn

        def call(*args: Any) -> Any:
            r = fn(*args)
            self.calls.append((name, r))
            return r
        return call


def test_read_small_stops_on_the_none_buffer_at_end_of_file(world: Any) -> None:
    """Round 9: the second msiDataObjRead of every manifest returned None; the adapter raised AttributeError."""
    srv, cat = world
    data = json.dumps({"k": "v" * 70000}).encode()  # more than one 64 KiB read, then end of file
    _put(cat, SVC, HOME + SVC + "/manifest.json", data)
    z = _zone(srv, SVC)
    spy = _Spy(z.callback)
    z.callback = spy
    assert z.read_small(HOME + SVC + "/manifest.json", 1 << 20) == data
    reads = [r for name, r in spy.calls if name == "msiDataObjRead"]
    assert reads[-1]["arguments"][2] is None, "the read loop must have met the server's end-of-file None"
    assert len(reads) == 3


def test_read_small_of_an_empty_object(world: Any) -> None:
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/empty.json", b"")
    assert _zone(srv, SVC).read_small(HOME + SVC + "/empty.json", 100) == b""


def test_read_small_refuses_an_object_over_the_limit(world: Any) -> None:
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/big.json", b"x" * 101)
    with pytest.raises(InvalidInput):
        _zone(srv, SVC).read_small(HOME + SVC + "/big.json", 100)


def test_rename_of_a_missing_source_raises_not_found(world: Any) -> None:
    """msiDataObjRename of a missing source RETURNS -808000: a move that did not happen must not pass."""
    srv, cat = world
    z = _zone(srv, SVC)
    with pytest.raises(NotFound):
        z.rename(HOME + SVC + "/missing.txt", HOME + SVC + "/moved.txt")
    assert not cat.exists(HOME + SVC + "/moved.txt")


def test_msi_turns_a_returned_failure_code_into_the_typed_error(world: Any) -> None:
    """Whatever the path checks before, a non-zero `code` in the returned dict is an error (round 10)."""
    srv, cat = world
    z = _zone(srv, SVC)
    _put(cat, SVC, HOME + SVC + "/a.txt", b"a")
    with pytest.raises(NotFound):  # wrong type flag: returned -808000, not raised
        z._msi("msiDataObjRename", HOME + SVC + "/a.txt", HOME + SVC + "/b.txt", "1", 0)
    with pytest.raises(NotFound):
        z._msi("msiDataObjChksum", HOME + SVC + "/missing.txt", "", "")
    assert cat.exists(HOME + SVC + "/a.txt")


def test_checksum_of_a_missing_path_or_collection_is_not_an_empty_checksum(world: Any) -> None:
    srv, cat = world
    z = _zone(srv, SVC)
    with pytest.raises(NotFound):
        z.checksum(HOME + SVC + "/missing.txt")
    with pytest.raises(NotFound):
        z.checksum(HOME + SVC)


def test_checksum_of_an_object(world: Any) -> None:
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/a.txt", b"hello world\n")
    assert _zone(srv, SVC).checksum(HOME + SVC + "/a.txt") == "sha2:qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc="


def test_remove_object_of_a_missing_path_raises_not_found(world: Any) -> None:
    srv, _ = world
    with pytest.raises(NotFound):
        _zone(srv, SVC).remove_object(HOME + SVC + "/missing.txt")


def test_stat_reads_the_char_array_fields(world: Any) -> None:
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/a.txt", b"12345")
    st = _zone(srv, SVC).stat(HOME + SVC + "/a.txt")
    assert (st.kind, st.size, st.owner) == (DATA_OBJECT, 5, SVC)
    assert st.modify_time == cat.stat(SVC, HOME + SVC + "/a.txt").modify_time > 0
    coll = _zone(srv, SVC).stat(HOME + SVC + "/")
    assert (coll.kind, coll.owner) == (COLLECTION, SVC)


def test_missing_paths_are_tested_without_a_server_error(world: Any) -> None:
    """msiObjStat of a missing path logs an error line on a real server: existence goes through genquery."""
    srv, cat = world
    z = _zone(srv, SVC)
    for p in (HOME + SVC + "/quarantine", HOME + SVC + "/missing.txt", HOME + "nobody/root"):
        assert not exists(z, p)
        with pytest.raises(NotFound):
            z.stat(p)
    assert exists(z, HOME + SVC) and exists(z, HOME + SVC + "/")
    _put(cat, SVC, HOME + SVC + "/a.txt", b"a")
    assert exists(z, HOME + SVC + "/a.txt")
    assert srv.error_lines == []


def test_an_unreadable_object_looks_missing_to_the_rodsuser(world: Any) -> None:
    srv, cat = world
    _put(cat, ALICE, HOME + ALICE + "/private.txt", b"p")
    cat.set_acl(ALICE, HOME + ALICE, SVC, "read")
    svc = _zone(srv, SVC)
    assert not exists(svc, HOME + ALICE + "/private.txt")
    with pytest.raises(NotFound):
        svc.stat(HOME + ALICE + "/private.txt")
    assert svc.list_collection(HOME + ALICE).data_objects == []
    assert exists(_zone(srv, ADMIN), HOME + ALICE + "/private.txt")
    assert srv.error_lines == []


def test_adding_an_existing_avu_is_a_no_op_and_removing_a_missing_one_succeeds(world: Any) -> None:
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/a.txt", b"a")
    z = _zone(srv, SVC)
    z.apply_metadata(HOME + SVC + "/a.txt", [MetaOp("add", "k", "v")])
    z.apply_metadata(HOME + SVC + "/a.txt", [MetaOp("add", "k", "v"), MetaOp("remove", "k", "nosuch")])
    assert [(a.attribute, a.value) for a in z.metadata(HOME + SVC + "/a.txt")] == [("k", "v")]


def test_create_collection_codes(world: Any) -> None:
    srv, cat = world
    z = _zone(srv, SVC)
    z.create_collection(HOME + SVC + "/c")
    with pytest.raises(AlreadyExists):
        z.create_collection(HOME + SVC + "/c")
    _put(cat, SVC, HOME + SVC + "/obj", b"x")
    with pytest.raises(AlreadyExists):  # -834000 on a data object's name
        z.create_collection(HOME + SVC + "/obj")
    with pytest.raises(NoPermission):
        z.create_collection(HOME + ALICE + "/c")


def test_remove_collection_refuses_a_non_empty_one(world: Any) -> None:
    """msiRmColl with forceFlag is recursive on a real server: the adapter must check emptiness itself."""
    srv, cat = world
    z = _zone(srv, SVC)
    z.create_collection(HOME + SVC + "/full")
    _put(cat, SVC, HOME + SVC + "/full/keep.txt", b"keep")
    with pytest.raises(IrodsError):
        z.remove_collection(HOME + SVC + "/full")
    assert cat.exists(HOME + SVC + "/full/keep.txt")
    z.create_collection(HOME + SVC + "/empty")
    z.remove_collection(HOME + SVC + "/empty")
    assert not cat.exists(HOME + SVC + "/empty")


def test_native_extract_codes(world: Any) -> None:
    import io
    import tarfile

    srv, cat = world
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("m.txt")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"m"))
    _put(cat, SVC, HOME + SVC + "/t.tar", buf.getvalue())
    z = _zone(srv, SVC)
    with pytest.raises(IrodsError) as e:
        z.native_extract(HOME + SVC + "/t.tar", HOME + SVC + "/tx", "nosuchResc")
    assert e.value.code == -78000
    with pytest.raises(IrodsError) as e:
        z.native_extract(HOME + SVC + "/missing.tar", HOME + SVC + "/tx", "demoResc")
    assert e.value.code == -1821000
    z.native_extract(HOME + SVC + "/t.tar", HOME + SVC + "/tx", "demoResc")
    with pytest.raises(AlreadyExists):  # -46000: never onto existing members
        z.native_extract(HOME + SVC + "/t.tar", HOME + SVC + "/tx", "demoResc")


# ---------------------------------------------------------------------- whole drops on the simulated deployment
def test_a_normal_drop_reads_its_manifest_to_the_none_and_logs_no_error(tmp_path: Any) -> None:
    """The landed policy stopped every drop at 'processing' on a real server (round 9); and each drop's
    msiObjStat of missing paths (quarantine, a new snapshot root) wrote error lines to the server log."""
    from helpers import FIXTURES, drop, enrolled_deployment

    from policy.ingest import drop_status

    d = enrolled_deployment(str(tmp_path / "zone"))
    drop_id, _ = drop(d, FIXTURES["image_tar"])
    assert drop_status(d.admin(), d.config, drop_id).status == "complete"
    assert d.server.eof_reads >= 1, "the manifest was read through the end-of-file None"
    assert d.server.error_lines == []


def test_a_quarantined_drop_logs_no_error(tmp_path: Any) -> None:
    from helpers import FIXTURES, drop, enrolled_deployment, manifest_doc

    from policy.ingest import drop_status

    d = enrolled_deployment(str(tmp_path / "zone"))
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(d, archive, manifest_doc(archive, archive_sha256="0" * 64))
    assert drop_status(d.admin(), d.config, drop_id).status == "quarantined"
    assert d.server.error_lines == []


def test_names_with_a_quote_are_answered_by_genquery(world: Any) -> None:
    """A quote is doubled in every query (round 12: GenQuery1's escape); a lone one makes the real server refuse
    the query (-1084000, rounds 11-12), as the fake does. No msiObjStat, so no error line for a missing name."""
    srv, cat = world
    spy = _Spy(srv.callback(SVC))
    z = PrepZone(spy, make_rei(SVC, "tempZone"), "tempZone")
    top = HOME + SVC + "/q'c"
    z.create_collection(top + "/sub'1", recursive=True)
    z.create_collection(HOME + SVC + "/q_c/sub_1", recursive=True)  # a sibling LIKE's '_' would match too
    _put(cat, SVC, top + "/it's.txt", b"q")
    _put(cat, SVC, HOME + SVC + "/q_c/it_s.txt", b"uu")
    assert exists(z, top + "/it's.txt") and z.kind(top) == COLLECTION
    assert not exists(z, top + "/isn't.txt")
    assert z.stat(top + "/it's.txt").size == 1
    listing = z.list_collection(top)
    assert listing.collections == [top + "/sub'1"] and [o.path for o in listing.data_objects] == [top + "/it's.txt"]
    assert z.objects_under(top) == {top + "/it's.txt": (1, "")}
    z.apply_metadata(top + "/it's.txt", [MetaOp("add", "k", "Bob's")])
    assert [a.value for a in z.metadata(top + "/it's.txt")] == ["Bob's"]
    assert z.find_by_metadata("k", "Bob's", DATA_OBJECT) == [top + "/it's.txt"]
    assert [(a.user, a.level) for a in z.acl(top)] == [(SVC, "own")]
    assert srv.error_lines == []
    assert [n for n, _ in spy.calls].count("msiObjStat") == 1  # only stat() of the existing object


def test_the_fake_genquery_parses_quotes_and_like_as_the_server(world: Any) -> None:
    """Round 12 (probe_prepzone_quotes.py): a lone quote, a backslash-escaped quote and double quotes are
    refused with -1084000; a doubled quote is a quote; LIKE is case-sensitive and a backslash escapes in it."""
    from genquery import Query

    srv, cat = world
    for c in ("q'c", "q_c", "qXc", "b\\s"):
        cat.create_collection(ADMIN, HOME + "rods/" + c)
    cb = srv.callback(ADMIN)

    def rows(cond: str) -> Any:
        return sorted(Query(cb, ["COLL_NAME"], cond))

    for bad in ("COLL_NAME = '{}q'c'", "COLL_NAME = '{}q\\'c'", 'COLL_NAME = "{}q\'c"', "COLL_NAME like '{}q'c'"):
        with pytest.raises(RuntimeError, match="-1084000"):
            rows(bad.format(HOME + "rods/"))
    assert rows("COLL_NAME = '{}q''c'".format(HOME + "rods/")) == [HOME + "rods/q'c"]
    assert rows("COLL_NAME like '{}q_c'".format(HOME + "rods/")) == [HOME + "rods/" + c for c in ("q'c", "qXc", "q_c")]
    assert rows("COLL_NAME like '{}Q_C'".format(HOME + "rods/")) == []
    assert rows("COLL_NAME = '{}b\\s'".format(HOME + "rods/")) == [HOME + "rods/b\\s"]
    assert rows("COLL_NAME like '{}b\\s'".format(HOME + "rods/")) == []
    assert rows("COLL_NAME like '{}b_s'".format(HOME + "rods/")) == [HOME + "rods/b\\s"]


def test_delayed_rules_filters_what_like_matched_loosely(world: Any) -> None:
    """'_' in a drop id is LIKE's any-character: another drop's rule must not count as this one's."""
    srv, cat = world
    z = _zone(srv, SVC)
    z.schedule("callback.omero_snapshots_process_drop('20261208T000000Z-abcXdef0')", 3600)
    assert z.delayed_rules("20261208T000000Z-abc_def0") == []
    assert len(z.delayed_rules("20261208T000000Z-abcXdef0")) == 1


def test_an_object_readable_in_a_collection_it_may_not_read_is_hidden(world: Any) -> None:
    """Round 11: no row for COLL_NAME = ... and DATA_NAME = ..., checksum -808000; round 12: msiObjStat -310000,
    open -358000, metadata -130000, but a query on DATA_NAME alone lists it; msiObjStat of a collection it may
    not read: -310000 (round 11)."""
    from genquery import Query

    srv, cat = world
    cat.create_collection(ADMIN, HOME + "rods/closed")
    _put(cat, ADMIN, HOME + "rods/closed/ho.txt", b"h")
    cat.set_acl(ADMIN, HOME + "rods/closed/ho.txt", SVC, "read")
    cb = srv.callback(SVC)
    assert list(Query(cb, ["DATA_NAME"], "COLL_NAME = '{}rods/closed' and DATA_NAME = 'ho.txt'".format(HOME))) == []
    assert list(Query(cb, ["DATA_NAME"], "DATA_NAME = 'ho.txt'")) == ["ho.txt"]
    assert cb.msiDataObjChksum(HOME + "rods/closed/ho.txt", "", "")["code"] == -808000
    for call in (lambda: cb.msiObjStat(HOME + "rods/closed/ho.txt", None),
                 lambda: cb.msiObjStat(HOME + "rods/closed", None),
                 lambda: cb.msiDataObjOpen("objPath={}rods/closed/ho.txt++++openFlags=O_RDONLY".format(HOME), 0)):
        with pytest.raises(RuntimeError, match=r"-310000|-358000"):
            call()
    assert not exists(_zone(srv, SVC), HOME + "rods/closed/ho.txt")


def test_a_collection_named_with_a_trailing_slash(world: Any) -> None:
    """msiObjStat and msiCollCreate accept 'x/' for the collection x (round 10); the queries must too."""
    srv, cat = world
    z = _zone(srv, SVC)
    z.create_collection(HOME + SVC + "/slash/")
    assert cat.exists(HOME + SVC + "/slash")
    z.apply_metadata(HOME + SVC + "/slash/", [MetaOp("add", "k", "v")])
    assert [a.value for a in z.metadata(HOME + SVC + "/slash/")] == ["v"]
    assert [(a.user, a.level) for a in z.acl(HOME + SVC + "/slash/")] == [(SVC, "own")]
    _put(cat, SVC, HOME + SVC + "/slash/m.txt", b"m")
    assert [o.path for o in z.list_collection(HOME + SVC + "/slash/").data_objects] == [HOME + SVC + "/slash/m.txt"]


def test_an_empty_checksum_is_never_returned(world: Any) -> None:
    """Even if a server returned success with arguments[2] left '' (as its failures leave it), no '' passes."""
    srv, cat = world
    _put(cat, SVC, HOME + SVC + "/a.txt", b"a")
    z = _zone(srv, SVC)

    class Blank:
        def __getattr__(self, name: str) -> Any:
            fn = getattr(srv.callback(SVC), name)
            if name != "msiDataObjChksum":
                return fn
            return lambda *a: {"arguments": [a[0], a[1], ""], "code": 0, "status": True}

    z.callback = Blank()
    with pytest.raises(NotFound):
        z.checksum(HOME + SVC + "/a.txt")
