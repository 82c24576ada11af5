"""The Zone port over a python-irodsclient session: the production data plane and the CLI's zone.

Inside the server, a rule opens a session with the server's own service
environment (~irods/.irods/irods_environment.json, a rodsadmin) that PROXIES
as the service account (`client_user`): measured at 32 MiB in 0.55 s write /
0.10 s read with exactly the service account's rights, and no new secret
stored anywhere (reference/prep-observed.md, round 4). Outside the server
(CLI, live tests) it is a plain session from an irods_environment.json.

python-irodsclient is imported lazily: this module must import on a server
where only the save path is installed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Type

from policy.errors import IrodsError, error_for
from policy.zone import COLLECTION, DATA_OBJECT, Ace, Avu, Listing, MetaOp, Stat

SERVER_ENV_FILE = "~/.irods/irods_environment.json"


def _translate(exc: BaseException, what: str) -> IrodsError:
    """A python-irodsclient exception as one of our typed errors.

    Server errors (irods.exception.iRODSException) carry the iRODS code as `.code`, possibly with an
    errno folded in (-818013); it is rounded to its thousands like the server's error table. The
    client-side DoesNotExist family (CollectionDoesNotExist, DataObjectDoesNotExist, UserDoesNotExist)
    and DataObjectExistsAtLogicalPath are NOT iRODSException subclasses (irods/exception.py).
    """
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    if isinstance(code, int) and code <= -1000:
        return error_for(-((-code) // 1000) * 1000, "{}: {}".format(what, name))
    if name in ("DataObjectDoesNotExist", "CollectionDoesNotExist", "UserDoesNotExist", "DoesNotExist"):
        return error_for(-310000, "{}: {}".format(what, name))
    if name == "DataObjectExistsAtLogicalPath":
        return error_for(-809000, "{}: {}".format(what, name))
    return IrodsError(-1828000, "{}: {}: {}".format(what, name, str(exc)[:200]))


def _irods_errors() -> Tuple[Type[BaseException], ...]:
    from irods.exception import PycommandsException, iRODSException

    return (iRODSException, PycommandsException)


def _epoch(value: Any) -> int:
    try:
        return int(value.timestamp())
    except (AttributeError, TypeError, ValueError, OverflowError):
        return 0


def _level(name: str) -> str:
    """iRODS 4.2 spells levels with a space ('read object'); 4.3/5.0 with an underscore."""
    return str(name).replace(" ", "_")


class PrcZone:
    """Zone over an iRODSSession, acting as the session's (client) user.

    python-irodsclient 3.x facts this relies on (irods/session.py, irods/manager/*.py):
    ``session.username``/``session.zone`` are the CLIENT user and zone (the proxied user of a
    ``client_user=`` session); ``collections.move``/``data_objects.move`` move INTO an existing
    collection; ``data_objects.unlink`` without ``force`` moves the object to the trash;
    ``acls.get`` reports levels as stored in the catalog; ``acls.set`` sends ``admin:<level>``
    when ``admin=True`` and ``inherit``/``noinherit`` without a user.
    """

    def __init__(self, session: Any, zone_name: Optional[str] = None) -> None:
        self.session = session
        self.zone_name = zone_name or session.zone
        self.user = getattr(session, "client_user", None) or session.username
        self._paging_lock = threading.Lock()
        self._paging: Any = None

    @contextlib.contextmanager
    def _one_connection(self) -> Iterator[Any]:
        """A session for queries that may need more than one page, used by one query at a time.

        python-irodsclient takes a connection from its pool for EACH page of a query; once the writers
        have left several connections in the pool, the next page may go to another agent than the one
        holding the query, and iRODS 5.0.2 answers that with an agent crash (round 12: a 500-row query
        after 4-thread writes fails with NetworkException, the server logs an agent stack trace; with
        one pooled connection the same query returns its rows). A clone of the session, never used by
        two threads at once, always has exactly one connection.
        """
        with self._paging_lock:
            if self._paging is None:
                clone = getattr(self.session, "clone", None)
                self._paging = clone() if clone is not None else self.session
            try:
                yield self._paging
            except Exception:
                # Its one connection may be dead (a server restarted under it): the next query gets a new one.
                self._drop_paging()
                raise

    def _drop_paging(self) -> None:
        paging, self._paging = self._paging, None
        if paging is not None and paging is not self.session:
            try:
                paging.cleanup()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped either way
                pass

    def reset_connections(self) -> None:
        """Drop every pooled connection (the session's and the paging clone's): after a server restart they are
        dead, and the session reconnects lazily on the next call."""
        with self._paging_lock:
            self._drop_paging()
        self.session.cleanup()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_environment(cls, env_file: Optional[str] = None, client_user: Optional[str] = None) -> "PrcZone":
        from irods.session import iRODSSession

        path = os.path.expanduser(env_file or os.environ.get("IRODS_ENVIRONMENT_FILE") or SERVER_ENV_FILE)
        kwargs: Dict[str, Any] = {"irods_env_file": path}
        if client_user:
            kwargs["client_user"] = client_user
        return cls(iRODSSession(**kwargs))

    def close(self) -> None:
        if self._paging is not None and self._paging is not self.session:
            self._paging.cleanup()
        self._paging = None
        self.session.cleanup()

    def heartbeat_opener(self) -> Any:
        """A second, independent session (its own connection pool) for the drop lease's heartbeat thread."""
        session, zone_name = self.session, self.zone_name
        return lambda: PrcZone(session.clone(), zone_name)

    # ------------------------------------------------------------------ helpers
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _irods_errors() as e:
            raise _translate(e, what) from None

    def _coll_or_none(self, path: str) -> Any:
        from irods.exception import CollectionDoesNotExist

        try:
            return self.session.collections.get(path)
        except CollectionDoesNotExist:
            return None
        except _irods_errors() as e:
            raise _translate(e, "get " + path) from None

    def _obj_or_none(self, path: str) -> Any:
        from irods.exception import DoesNotExist

        try:
            return self.session.data_objects.get(path)
        except DoesNotExist:  # the object, or its parent collection
            return None
        except _irods_errors() as e:
            raise _translate(e, "get " + path) from None

    def _obj(self, path: str) -> Any:
        obj = self._obj_or_none(path)
        if obj is None:
            raise error_for(-310000, path)
        return obj

    def _coll(self, path: str) -> Any:
        coll = self._coll_or_none(path)
        if coll is None:
            raise error_for(-310000, path)
        return coll

    def _entity(self, path: str) -> Any:
        coll = self._coll_or_none(path)
        if coll is not None:
            return coll
        return self._obj(path)

    def exists(self, path: str) -> bool:
        return self._coll_or_none(path) is not None or self._obj_or_none(path) is not None

    @staticmethod
    def _is_collection(ent: Any) -> bool:
        from irods.collection import iRODSCollection

        return isinstance(ent, iRODSCollection)

    # ------------------------------------------------------------------ control plane
    def stat(self, path: str) -> Stat:
        ent = self._entity(path)
        if self._is_collection(ent):
            return Stat(path=path, kind=COLLECTION, owner=getattr(ent, "owner_name", None),
                        modify_time=_epoch(getattr(ent, "modify_time", None)))
        return Stat(path=path, kind=DATA_OBJECT, size=int(ent.size or 0), checksum=ent.checksum or None,
                    owner=getattr(ent, "owner_name", None), modify_time=_epoch(getattr(ent, "modify_time", None)))

    def create_collection(self, path: str, recursive: bool = False) -> None:
        # Non-recursive: the server itself refuses an existing name (CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME),
        # which makes this a test-and-set (policy.drop_lock); the check here only names the error early.
        if not recursive and self.exists(path):
            raise error_for(-809000, path)
        self._call("create " + path, self.session.collections.create, path, recurse=recursive)

    def rename(self, src: str, dst: str) -> None:
        # python-irodsclient moves INTO an existing collection; refuse any existing destination instead.
        if self._coll_or_none(dst) is not None:
            raise error_for(-833000, dst)
        if self._obj_or_none(dst) is not None:
            raise error_for(-834000, dst)
        if self._coll_or_none(src) is not None:
            self._call("move " + src, self.session.collections.move, src, dst)
        else:
            self._call("move " + src, self.session.data_objects.move, src, dst)

    def set_acl(self, path: str, user: str, level: str, recursive: bool = False) -> None:
        from irods.access import iRODSAccess

        admin = level.startswith("admin:")
        level = level[len("admin:"):] if admin else level
        if level in ("inherit", "noinherit"):
            acc = iRODSAccess(level, path)
        else:
            acc = iRODSAccess(level, path, user)
        self._call("set ACL on " + path, self.session.acls.set, acc, recursive=recursive, admin=admin)

    def set_inheritance(self, path: str, inherit: bool, recursive: bool = False) -> None:
        self.set_acl(path, self.user, "inherit" if inherit else "noinherit", recursive)

    def acl(self, path: str) -> List[Ace]:
        ent = self._entity(path)
        return [Ace(a.user_name, _level(a.access_name)) for a in self._call("get ACL of " + path,
                                                                            self.session.acls.get, ent)]

    def apply_metadata(self, path: str, ops: Sequence[MetaOp]) -> None:
        from irods.meta import AVUOperation, iRODSMeta

        if not ops:
            return
        ent = self._entity(path)
        avu_ops = [AVUOperation(operation=o.operation, avu=iRODSMeta(o.attribute, o.value, o.units or None))
                   for o in ops]
        self._call("metadata on " + path, ent.metadata.apply_atomic_operations, *avu_ops)

    def metadata(self, path: str) -> List[Avu]:
        ent = self._entity(path)
        items = self._call("metadata of " + path, lambda: list(ent.metadata.items()))
        return [Avu(m.name, m.value, m.units or "") for m in items]

    def checksum(self, path: str) -> str:
        return str(self._call("checksum " + path, self.session.data_objects.chksum, path))

    def list_collection(self, path: str) -> Listing:
        self._coll(path)

        def read() -> Listing:
            with self._one_connection() as s:
                coll = s.collections.get(path)
                return Listing(collections=sorted(c.path for c in coll.subcollections),
                           data_objects=sorted((Stat(path=o.path, kind=DATA_OBJECT, size=int(o.size or 0),
                                                     checksum=o.checksum or None,
                                                     owner=getattr(o, "owner_name", None),
                                                     modify_time=_epoch(getattr(o, "modify_time", None)))
                                                for o in coll.data_objects), key=lambda st: st.path))
        return self._call("list " + path, read)

    def walk(self, top: str) -> List[Tuple[str, str]]:
        """(path, kind) of `top` and everything below it that this user can see, sorted by path (two queries)."""
        from irods.column import Like
        from irods.models import Collection, DataObject

        kind = COLLECTION if self._coll_or_none(top) is not None else DATA_OBJECT
        if kind == DATA_OBJECT:
            self._obj(top)
            return [(top, DATA_OBJECT)]
        prefix = top.rstrip("/") + "/"

        def below(name: str) -> bool:  # LIKE's '_' and '%' also match other characters: filter exactly
            return name == top or name.startswith(prefix)

        def read() -> List[Tuple[str, str]]:
            out: Set[Tuple[str, str]] = set()
            with self._one_connection() as s:
                for cond in (Collection.name == top, Like(Collection.name, prefix + "%")):
                    for r in s.query(Collection.name).filter(cond):
                        if below(r[Collection.name]):
                            out.add((r[Collection.name], COLLECTION))
                    for r in s.query(Collection.name, DataObject.name).filter(cond):
                        if below(r[Collection.name]):
                            out.add((r[Collection.name].rstrip("/") + "/" + r[DataObject.name], DATA_OBJECT))
            return sorted(out)
        return self._call("walk " + top, read)

    def find_by_metadata(self, attribute: str, value: str, kind: str = COLLECTION) -> List[str]:
        from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

        def read() -> List[str]:
            with self._one_connection() as s:
                if kind == COLLECTION:
                    q = s.query(Collection.name).filter(CollectionMeta.name == attribute) \
                        .filter(CollectionMeta.value == value)
                    return sorted({r[Collection.name] for r in q})
                q = s.query(Collection.name, DataObject.name).filter(DataObjectMeta.name == attribute) \
                    .filter(DataObjectMeta.value == value)
                return sorted({r[Collection.name] + "/" + r[DataObject.name] for r in q})
        return self._call("query " + attribute, read)

    def user_type(self, name: str) -> Optional[str]:
        from irods.exception import UserDoesNotExist

        try:
            return str(self.session.users.get(name).type)
        except UserDoesNotExist:
            return None
        except _irods_errors() as e:
            raise _translate(e, "user " + name) from None

    def schedule(self, rule_call: str, delay_seconds: int = 1) -> None:
        raise IrodsError(-1828000, "a client session cannot schedule delayed rules; the server's PEP does")

    def remove_object(self, path: str) -> None:
        # force: unlink without force moves the object to the user's trash (rsDataObjUnlink, trash policy).
        self._call("remove " + path, self.session.data_objects.unlink, path, force=True)

    def remove_collection(self, path: str) -> None:
        # Non-recursive: the server removes an EMPTY collection only, never to the trash (rsRmColl -> _rsRmColl).
        self._call("remove " + path, self.session.collections.remove, path, recurse=False)

    # ------------------------------------------------------------------ data plane
    def read_small(self, path: str, limit: int) -> bytes:
        st = self.stat(path)
        if st.size > limit:
            raise error_for(-130000, "{} is {} bytes, over the limit of {}".format(path, st.size, limit))
        with self.open_read(path) as f:
            data = bytes(f.read(limit + 1))
        if len(data) > limit:
            raise error_for(-130000, "{} is over the limit of {} bytes".format(path, limit))
        return data

    def open_read(self, path: str) -> BinaryIO:
        return self._call("open " + path, self.session.data_objects.open, path, "r")

    def open_new(self, path: str) -> BinaryIO:
        """Create first (force=False: an existing path fails, never truncated), then open the new, empty object."""
        self._call("create " + path, self.session.data_objects.create, path, force=False)
        return self._call("open " + path, self.session.data_objects.open, path, "w")

    def open_new_checksummed(self, path: str) -> "_RawWriter":
        """open_new, with iRODS computing and registering the object's checksum when it is closed (regChksum in
        the open's condInput, round 12: `open_reg`), written through the raw handle: each write is exactly one
        DATA_OBJ_WRITE and no buffered wrapper adds seek round trips (issue 17's profile: 2 per member)."""
        self._call("create " + path, self.session.data_objects.create, path, force=False)
        buffered = self._call("open " + path, self.session.data_objects.open, path, "w", regChksum="")
        return _RawWriter(self, path, buffered, _raw_of(buffered))

    def put_new(self, path: str, data: Any, sha256_hex: Optional[str] = None) -> None:
        """A NEW object holding `data`, in ONE request: DATA_OBJ_PUT with the bytes in the request (dataIncluded).

        What the server does with it (iRODS 5.0.2 single_buffer_put; round 12 records every case): it refuses
        an existing path (OVERWRITE_WITHOUT_FORCE_FLAG, -312000, the object untouched: no forceFlag is ever
        sent), a missing collection (-814000); it writes, computes the checksum and, with verifyChksum (our
        sha256 of the bytes), compares: a mismatch is USER_CHKSUM_MISMATCH (-314000) and leaves the object
        stale. Otherwise the checksum is registered (regChksum). One round trip where create + open + write +
        close + chksum took about twelve; python-irodsclient has no call for it (its put() opens and writes),
        so the request is built from its message classes.
        """
        if len(data) > SINGLE_BUFFER_MAX:
            raise ValueError("put_new takes at most {} bytes in one request".format(SINGLE_BUFFER_MAX))
        from irods.api_number import api_number
        from irods.message import FileOpenRequest, StringStringMap, iRODSMessage

        options = {"dataIncluded": "", "dataSize": str(len(data)), "dataType": "generic"}
        if sha256_hex:
            options["verifyChksum"] = _irods_sha2(sha256_hex)
        else:
            options["regChksum"] = ""
        resource = getattr(self.session, "default_resource", None)
        if resource:  # where python-irodsclient's own create/open would put it
            options["destRescName"] = resource
        body = FileOpenRequest(objPath=path, createMode=0o644, openFlags=0, offset=0, dataSize=len(data),
                               numThreads=0, oprType=1, KeyValPair_PI=StringStringMap(options))  # 1: PUT_OPR

        def send() -> None:
            with self.session.pool.get_connection() as conn:
                _request_with_bytes(conn, body, api_number["DATA_OBJ_PUT_AN"], data, iRODSMessage)
        self._call("put " + path, send)

    def open_stream(self, path: str) -> "_RawReader":
        """open_read for one long forward read in large blocks (the unpack's archive): through the raw handle,
        each readinto is one DATA_OBJ_READ straight into the caller's buffer; python-irodsclient's buffered
        handle adds a seek round trip to every read (issue 17's profile: 206 for the round-6 archive)."""
        buffered = self._call("open " + path, self.session.data_objects.open, path, "r")
        return _RawReader(self, path, buffered, _raw_of(buffered))


    # ------------------------------------------------------------------ batched listing, concurrent data plane
    def concurrent_plane(self) -> "PrcZone":
        """This zone may be used from several threads at once: python-irodsclient hands each open object
        and each call its own pooled connection (irods/pool.py; PRC's own parallel transfers open one
        session's objects from several threads). In a delayed rule, one in-rule session used
        from 4 threads at once wrote and checksummed every object right (round11-unpack.jsonl)."""
        return self

    def objects_under(self, top: str) -> Dict[str, Tuple[int, str]]:
        """path -> (size, catalog checksum or '' until computed) of every data object at or below `top`."""
        from irods.column import Like
        from irods.models import Collection, DataObject

        prefix = top.rstrip("/") + "/"

        def read() -> Dict[str, Tuple[int, str]]:
            out: Dict[str, Tuple[int, str]] = {}
            with self._one_connection() as s:
                for cond in (Collection.name == top, Like(Collection.name, prefix + "%")):
                    q = s.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum).filter(cond)
                    for r in q:
                        c = r[Collection.name]
                        if c != top and not c.startswith(prefix):
                            continue
                        path = c.rstrip("/") + "/" + r[DataObject.name]
                        chk = r[DataObject.checksum] or ""
                        if path not in out or (chk and not out[path][1]):
                            out[path] = (int(r[DataObject.size] or 0), chk)
            return out
        return self._call("list " + top, read)

SINGLE_BUFFER_MAX = 32 << 20  # iRODS' default maximum_size_for_single_buffer_in_megabytes


def _irods_sha2(sha256_hex: str) -> str:
    """iRODS' spelling of a sha256: 'sha2:' + base64 of the digest."""
    import base64

    return "sha2:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def _raw_of(buffered: Any) -> Any:
    """python-irodsclient's raw handle under the buffered one it returns (io.BufferedRandom.raw), when it is the
    data-object handle this module knows how to drive (descriptor and connection); else None."""
    raw = getattr(buffered, "raw", None)
    return raw if raw is not None and hasattr(raw, "desc") and hasattr(raw, "conn") else None


def _request_with_bytes(conn: Any, body: Any, api: int, data: Any, message_class: Any) -> Any:
    """One API request whose byte buffer is `data`, sent without copying it; returns the reply.

    python-irodsclient's send() packs header, message and bytes into one new bytes object, and its write()
    first copies a memoryview to bytes: two copies of every member in flight, per writer (the agent's peak
    RSS, issue 17). Here the header and message go out first, then the caller's buffer as it is, on the
    same socket, in the protocol's order (MsgHeader_PI, message, error, bytes). A failed send drops the
    connection from the pool, as python-irodsclient does.
    """
    from irods.exception import NetworkException

    main = message_class.encode_unicode(body.pack())
    view = memoryview(data).cast("B")
    head = message_class.pack_header("RODS_API_REQ", len(main), 0, len(view), api)
    try:
        conn.socket.sendall(head + main)
        if len(view):
            conn.socket.sendall(view)
    except OSError:
        conn.release(True)
        raise NetworkException("Unable to send message") from None
    return conn.recv()


class _RawWriter:
    """Writes straight to python-irodsclient's raw handle (one DATA_OBJ_WRITE per write, the caller's buffer
    sent as it is); closing it closes the replica, which registers the checksum the open asked for."""

    def __init__(self, zone: PrcZone, path: str, buffered: Any, raw: Any) -> None:
        self._zone, self._path, self._buffered, self._raw = zone, path, buffered, raw

    def write(self, data: Any) -> int:
        if self._raw is None:  # not the raw handle this module knows: write through the buffered one
            return int(self._zone._call("write " + self._path, self._buffered.write, data))
        from irods.api_number import api_number
        from irods.message import OpenedDataObjRequest, StringStringMap, iRODSMessage

        raw = self._raw
        body = OpenedDataObjRequest(l1descInx=raw.desc, len=len(data), whence=0, oprType=0, offset=0,
                                    bytesWritten=0, KeyValPair_PI=StringStringMap())
        reply = self._zone._call("write " + self._path, _request_with_bytes, raw.conn, body,
                                 api_number["DATA_OBJ_WRITE_AN"], data, iRODSMessage)
        return int(reply.int_info)

    def close(self) -> None:
        if self._raw is not None:
            self._zone._call("close " + self._path, self._raw.close)
        self._zone._call("close " + self._path, self._buffered.close)  # nothing left to do once raw is closed

    def __enter__(self) -> "_RawWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _RawReader:
    """Reads straight from python-irodsclient's raw handle into the caller's buffer (no seek round trips)."""

    def __init__(self, zone: PrcZone, path: str, buffered: Any, raw: Any) -> None:
        self._zone, self._path, self._buffered, self._raw = zone, path, buffered, raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf: Any) -> int:
        source = self._raw if self._raw is not None else self._buffered
        return int(self._zone._call("read " + self._path, source.readinto, buf) or 0)

    def read(self, size: int = -1) -> bytes:
        return bytes(self._zone._call("read " + self._path, self._buffered.read, size))

    def close(self) -> None:
        if self._raw is not None and not self._raw.closed:
            self._zone._call("close " + self._path, self._raw.close)
        self._zone._call("close " + self._path, self._buffered.close)

    def __enter__(self) -> "_RawReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def in_server_session_zone(client_user: str, zone_name: Optional[str] = None) -> PrcZone:
    """The data plane inside a rule: the server's own environment, proxying as the rule's client user."""
    zone = PrcZone.from_environment(os.path.expanduser(SERVER_ENV_FILE), client_user=client_user)
    if zone_name:
        zone.zone_name = zone_name
    return zone


RUN_AS_TIMEOUT = 24 * 3600  # seconds


def run_rule_as(user: str, rule: str, args: List[str]) -> List[Any]:
    """Call a core rule as `user` through the native rule language (what a rodsuser may do), from inside
    the server, with the server's own environment proxying as that user.

    Arguments travel as unquoted input parameters, the one form a real server passes unchanged
    (policy.rule_args), and are refused (InvalidInput) before connecting if that form cannot carry them.
    Returns the arguments'
    values after the call: a Python rule that writes ``rule_args[i]`` (the JSON outcome of
    ``omero_snapshots_process_drop`` and of the service-account rules) changes ``*a<i>``; the value as
    passed where the server sent none back.
    """
    from policy.irods_rules_client import RuleArgumentError, build_call, call_rule

    try:
        build_call(rule, args, out_label=None)  # validate before connecting
    except RuleArgumentError as e:
        raise error_for(-130000, str(e)) from None
    zone = PrcZone.from_environment(os.path.expanduser(SERVER_ENV_FILE), client_user=user)
    if hasattr(zone.session, "connection_timeout"):
        # the rule may unpack a large archive before it answers: the default 120 s would cut the admin off
        zone.session.connection_timeout = RUN_AS_TIMEOUT
    try:
        return list(call_rule(zone.session, rule, args))
    finally:
        zone.close()
