"""policy.prc_zone.PrcZone against a fake python-irodsclient session (no server).

The fake reproduces the python-irodsclient 3.x behaviour the adapter must cope with: DoesNotExist
exceptions that are not iRODSException, server errors with an errno folded into `.code`, moves INTO
an existing collection, unlink without force going to the trash, 4.2-style level names.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest

pytest.importorskip("irods")

from irods.collection import iRODSCollection  # noqa: E402
from irods.data_object import iRODSDataObject  # noqa: E402
from irods.exception import (  # noqa: E402
    CollectionDoesNotExist,
    DataObjectDoesNotExist,
    DataObjectExistsAtLogicalPath,
    NetworkException,
    UserDoesNotExist,
    get_exception_by_code,
)

from policy.errors import AlreadyExists, IrodsError, NoPermission, NotFound  # noqa: E402
from policy.prc_zone import PrcZone  # noqa: E402


def _coll(path: str) -> iRODSCollection:
    c = iRODSCollection(None)
    c.path, c.name, c.owner_name, c.modify_time = path, path.rsplit("/", 1)[-1], "alice", None
    return c


def _obj(path: str, size: int) -> iRODSDataObject:
    o = iRODSDataObject(None)
    o.path, o.name, o.size, o.checksum, o.owner_name = path, path.rsplit("/", 1)[-1], size, "sha2:x", "alice"
    return o


class Access:
    def __init__(self, access_name: str, user_name: str) -> None:
        self.access_name, self.user_name = access_name, user_name


class Colls:
    def __init__(self, fake: "Fake") -> None:
        self.f = fake

    def get(self, path: str) -> iRODSCollection:
        if self.f.error:
            raise self.f.error
        if path not in self.f.colls:
            raise CollectionDoesNotExist()
        return _coll(path)

    def exists(self, path: str) -> bool:
        return path in self.f.colls

    def create(self, path: str, recurse: bool = True) -> None:
        self.f.calls.append(("coll.create", path, recurse))
        if path in self.f.colls and not recurse:
            raise get_exception_by_code(-809000)
        self.f.colls.add(path)

    def move(self, src: str, dst: str) -> None:
        self.f.calls.append(("coll.move", src, dst))

    def remove(self, path: str, recurse: bool = True, force: bool = False) -> None:
        self.f.calls.append(("coll.remove", path, recurse, force))


class Objs:
    def __init__(self, fake: "Fake") -> None:
        self.f = fake

    def get(self, path: str) -> iRODSDataObject:
        if path.rsplit("/", 1)[0] not in self.f.colls:
            raise CollectionDoesNotExist()
        if path not in self.f.objs:
            raise DataObjectDoesNotExist()
        return _obj(path, self.f.objs[path])

    def exists(self, path: str) -> bool:
        return path in self.f.objs

    def move(self, src: str, dst: str) -> None:
        self.f.calls.append(("obj.move", src, dst))

    def unlink(self, path: str, force: bool = False) -> None:
        self.f.calls.append(("obj.unlink", path, force))
        if self.f.unlink_error:
            raise self.f.unlink_error

    def create(self, path: str, force: Any = None) -> None:
        self.f.calls.append(("obj.create", path, force))
        if path in self.f.objs and not force:
            raise DataObjectExistsAtLogicalPath()

    def open(self, path: str, mode: str) -> str:
        self.f.calls.append(("obj.open", path, mode))
        return "handle"

    def chksum(self, path: str) -> str:
        return "sha2:abc"


class Acls:
    def __init__(self, fake: "Fake") -> None:
        self.f = fake

    def get(self, target: Any) -> List[Access]:
        return [Access("own", "alice"), Access("read object", "omero-svc"), Access("modify_object", "bob")]

    def set(self, acc: Any, recursive: bool = False, admin: bool = False) -> None:
        self.f.calls.append(("acl.set", acc.access_name, acc.path, acc.user_name, recursive, admin))


class Users:
    def get(self, name: str) -> Any:
        if name == "ghost":
            raise UserDoesNotExist()

        class U:
            type = "rodsuser"
        return U()


class Fake:
    def __init__(self) -> None:
        self.colls = {"/z", "/z/home", "/z/home/alice", "/z/home/alice/c"}
        self.objs: Dict[str, int] = {"/z/home/alice/f.tar": 10}
        self.calls: List[Tuple[Any, ...]] = []
        self.error: Optional[BaseException] = None
        self.unlink_error: Optional[BaseException] = None
        self.collections, self.data_objects, self.acls, self.users = Colls(self), Objs(self), Acls(self), Users()
        self.username, self.zone = "omero-svc", "z"


@pytest.fixture
def fz() -> Tuple[Fake, PrcZone]:
    fake = Fake()
    return fake, PrcZone(fake)


def test_identity_is_the_client_user(fz: Tuple[Fake, PrcZone]) -> None:
    _, z = fz
    assert z.user == "omero-svc" and z.zone_name == "z"


def test_stat_of_collection_object_and_missing(fz: Tuple[Fake, PrcZone]) -> None:
    _, z = fz
    assert z.stat("/z/home/alice/c").kind == "collection"
    st = z.stat("/z/home/alice/f.tar")
    assert (st.kind, st.size, st.checksum, st.owner) == ("data_object", 10, "sha2:x", "alice")
    for missing in ("/z/home/alice/nope", "/z/nowhere/x"):  # object missing; parent collection missing
        with pytest.raises(NotFound):
            z.stat(missing)
    assert z.exists("/z/home/alice/c") and z.exists("/z/home/alice/f.tar") and not z.exists("/z/x/y")


def test_server_errors_are_typed_with_the_errno_folded_away(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    fake.error = get_exception_by_code(-818013, "denied")
    with pytest.raises(NoPermission) as info:
        z.stat("/z/home/alice/c")
    assert info.value.code == -818000
    fake.error = NetworkException("Could not connect")
    with pytest.raises(IrodsError):
        z.stat("/z/home/alice/c")


def test_create_collection_refuses_an_existing_name(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    with pytest.raises(AlreadyExists):
        z.create_collection("/z/home/alice/c")
    z.create_collection("/z/home/alice/new")
    z.create_collection("/z/home/alice/c", recursive=True)
    assert ("coll.create", "/z/home/alice/new", False) in fake.calls


def test_rename_never_moves_into_an_existing_destination(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    with pytest.raises(AlreadyExists):
        z.rename("/z/home/alice/f.tar", "/z/home/alice/c")
    with pytest.raises(AlreadyExists):
        z.rename("/z/home/alice/c", "/z/home/alice/f.tar")
    z.rename("/z/home/alice/f.tar", "/z/home/alice/g.tar")
    z.rename("/z/home/alice/c", "/z/home/alice/d")
    assert [c for c in fake.calls if c[0].endswith("move")] == [
        ("obj.move", "/z/home/alice/f.tar", "/z/home/alice/g.tar"), ("coll.move", "/z/home/alice/c", "/z/home/alice/d")]


def test_acl_levels_are_normalised_and_admin_mode_is_passed(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    assert {(a.user, a.level) for a in z.acl("/z/home/alice/c")} == {
        ("alice", "own"), ("omero-svc", "read_object"), ("bob", "modify_object")}
    z.set_acl("/z/home/alice/c", "bob", "admin:null")
    z.set_inheritance("/z/home/alice/c", False)
    assert fake.calls[-2:] == [("acl.set", "null", "/z/home/alice/c", "bob", False, True),
                               ("acl.set", "noinherit", "/z/home/alice/c", "", False, False)]


def test_removal_never_goes_to_the_trash(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    z.remove_object("/z/home/alice/f.tar")
    z.remove_collection("/z/home/alice/c")
    assert fake.calls[-2:] == [("obj.unlink", "/z/home/alice/f.tar", True),
                               ("coll.remove", "/z/home/alice/c", False, False)]
    fake.unlink_error = get_exception_by_code(-817000)
    with pytest.raises(NotFound):
        z.remove_object("/z/home/alice/f.tar")


def test_open_new_never_truncates_an_existing_object(fz: Tuple[Fake, PrcZone]) -> None:
    fake, z = fz
    with pytest.raises(AlreadyExists):
        z.open_new("/z/home/alice/f.tar")
    assert not [c for c in fake.calls if c[0] == "obj.open"]
    assert z.open_new("/z/home/alice/new.bin") == "handle"
    assert fake.calls[-2:] == [("obj.create", "/z/home/alice/new.bin", False),
                               ("obj.open", "/z/home/alice/new.bin", "w")]


def test_user_type(fz: Tuple[Fake, PrcZone]) -> None:
    _, z = fz
    assert z.user_type("alice") == "rodsuser" and z.user_type("ghost") is None


def test_a_paging_connection_that_died_is_replaced_on_the_next_query() -> None:
    """objects_under pages on one cloned session; a server restart kills its connection: the clone is dropped
    on the error and the next call gets a new one (seen live: the stop/start healing test)."""
    from policy.prc_zone import PrcZone

    class Clone:
        def __init__(self, fail: bool) -> None:
            self.fail, self.cleaned = fail, False

        def cleanup(self) -> None:
            self.cleaned = True

    class Session:
        zone, username = "tempZone", "omero-svc"

        def __init__(self) -> None:
            self.clones: list = []

        def clone(self) -> Clone:
            self.clones.append(Clone(fail=not self.clones))  # the first one has a dead connection
            return self.clones[-1]

        def cleanup(self) -> None:
            pass

    sess = Session()
    zone = PrcZone(sess)
    with pytest.raises(ConnectionError):
        with zone._one_connection() as s:
            if s.fail:
                raise ConnectionError("Could not receive server response")
    with zone._one_connection() as s:
        assert not s.fail
    assert len(sess.clones) == 2 and sess.clones[0].cleaned
    zone.reset_connections()
    assert sess.clones[1].cleaned
