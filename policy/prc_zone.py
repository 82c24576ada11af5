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

import os
from typing import Any, BinaryIO, List, Optional, Sequence

from policy.errors import IrodsError, error_for
from policy.zone import COLLECTION, DATA_OBJECT, Ace, Avu, Listing, MetaOp, Stat

SERVER_ENV_FILE = "~/.irods/irods_environment.json"


def _translate(exc: BaseException, what: str) -> IrodsError:
    """python-irodsclient exceptions carry the iRODS code as `.code`; map it to our types."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code < 0:
        return error_for(code, "{}: {}".format(what, type(exc).__name__))
    name = type(exc).__name__
    if name in ("DataObjectDoesNotExist", "CollectionDoesNotExist", "UserDoesNotExist"):
        return error_for(-310000, "{}: {}".format(what, name))
    return IrodsError(-1828000, "{}: {}: {}".format(what, name, str(exc)[:200]))


class PrcZone:
    """Zone over an iRODSSession, acting as the session's (client) user."""

    def __init__(self, session: Any, zone_name: Optional[str] = None) -> None:
        self.session = session
        self.zone_name = zone_name or session.zone
        self.user = getattr(session, "client_user", None) or session.username

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_environment(cls, env_file: Optional[str] = None, client_user: Optional[str] = None) -> "PrcZone":
        from irods.session import iRODSSession

        path = os.path.expanduser(env_file or os.environ.get("IRODS_ENVIRONMENT_FILE") or SERVER_ENV_FILE)
        kwargs = {"irods_env_file": path}
        if client_user:
            kwargs["client_user"] = client_user
        return cls(iRODSSession(**kwargs))

    def close(self) -> None:
        self.session.cleanup()

    # ------------------------------------------------------------------ helpers
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from irods.exception import iRODSException

        try:
            return fn(*args, **kwargs)
        except iRODSException as e:
            raise _translate(e, what) from None

    def _obj(self, path: str) -> Any:
        return self._call("get " + path, self.session.data_objects.get, path)

    def _coll(self, path: str) -> Any:
        return self._call("get " + path, self.session.collections.get, path)

    def _entity(self, path: str) -> Any:
        if self.session.collections.exists(path):
            return self._coll(path)
        if self.session.data_objects.exists(path):
            return self._obj(path)
        raise error_for(-310000, path)

    def _exists(self, path: str) -> bool:
        return bool(self.session.collections.exists(path) or self.session.data_objects.exists(path))

    # ------------------------------------------------------------------ control plane
    def stat(self, path: str) -> Stat:
        ent = self._entity(path)
        if self.session.collections.exists(path):
            return Stat(path=path, kind=COLLECTION, owner=getattr(ent, "owner_name", None))
        return Stat(path=path, kind=DATA_OBJECT, size=int(ent.size or 0), checksum=ent.checksum or None,
                    owner=getattr(ent, "owner_name", None))

    def create_collection(self, path: str, recursive: bool = False) -> None:
        if not recursive and self._exists(path):
            raise error_for(-809000, path)
        self._call("create " + path, self.session.collections.create, path, recurse=recursive)

    def rename(self, src: str, dst: str) -> None:
        # python-irodsclient moves INTO an existing collection; refuse any existing destination instead.
        if self.session.collections.exists(dst):
            raise error_for(-833000, dst)
        if self.session.data_objects.exists(dst):
            raise error_for(-834000, dst)
        if self.session.collections.exists(src):
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
        return [Ace(a.user_name, a.access_name) for a in self._call("get ACL", self.session.acls.get,
                                                                      self._entity(path))]

    def apply_metadata(self, path: str, ops: Sequence[MetaOp]) -> None:
        from irods.meta import AVUOperation, iRODSMeta

        if not ops:
            return
        ent = self._entity(path)
        avu_ops = [AVUOperation(operation=o.operation, avu=iRODSMeta(o.attribute, o.value, o.units or None))
                   for o in ops]
        self._call("metadata on " + path, ent.metadata.apply_atomic_operations, *avu_ops)

    def metadata(self, path: str) -> List[Avu]:
        return [Avu(m.name, m.value, m.units or "") for m in self._entity(path).metadata.items()]

    def checksum(self, path: str) -> str:
        return str(self._call("checksum " + path, self.session.data_objects.chksum, path))

    def list_collection(self, path: str) -> Listing:
        coll = self._coll(path)
        return Listing(collections=sorted(c.path for c in coll.subcollections),
                       data_objects=sorted((Stat(path=o.path, kind=DATA_OBJECT, size=int(o.size or 0),
                                                 checksum=o.checksum or None, owner=getattr(o, "owner_name", None))
                                            for o in coll.data_objects), key=lambda s: s.path))

    def find_by_metadata(self, attribute: str, value: str, kind: str = COLLECTION) -> List[str]:
        from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

        if kind == COLLECTION:
            q = self.session.query(Collection.name).filter(CollectionMeta.name == attribute) \
                .filter(CollectionMeta.value == value)
            return sorted({r[Collection.name] for r in q})
        q = self.session.query(Collection.name, DataObject.name).filter(DataObjectMeta.name == attribute) \
            .filter(DataObjectMeta.value == value)
        return sorted({r[Collection.name] + "/" + r[DataObject.name] for r in q})

    def user_type(self, name: str) -> Optional[str]:
        from irods.exception import UserDoesNotExist

        try:
            return str(self.session.users.get(name).type)
        except UserDoesNotExist:
            return None

    def schedule(self, rule_call: str, delay_seconds: int = 1) -> None:
        raise IrodsError(-1828000, "a client session cannot schedule delayed rules; the server's PEP does")

    def remove_object(self, path: str) -> None:
        self._call("remove " + path, self.session.data_objects.unlink, path)

    def remove_collection(self, path: str) -> None:
        self._call("remove " + path, self.session.collections.remove, path, recurse=False)

    # ------------------------------------------------------------------ data plane
    def read_small(self, path: str, limit: int) -> bytes:
        st = self.stat(path)
        if st.size > limit:
            raise error_for(-130000, "{} is {} bytes, over the limit of {}".format(path, st.size, limit))
        with self.open_read(path) as f:
            return bytes(f.read(limit + 1))

    def open_read(self, path: str) -> BinaryIO:
        return self._call("open " + path, self.session.data_objects.open, path, "r")

    def open_new(self, path: str) -> BinaryIO:
        """Create first (fails on an existing path: no force flag), then open the new, empty object."""
        self._call("create " + path, self.session.data_objects.create, path)
        return self._call("open " + path, self.session.data_objects.open, path, "w")


def in_server_session_zone(client_user: str, zone_name: Optional[str] = None) -> PrcZone:
    """The data plane inside a rule: the server's own environment, proxying as the rule's client user."""
    zone = PrcZone.from_environment(os.path.expanduser(SERVER_ENV_FILE), client_user=client_user)
    if zone_name:
        zone.zone_name = zone_name
    return zone


NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"


def run_rule_as(user: str, rule: str, args: List[str]) -> List[Any]:
    """Call a core rule as `user` through the native rule language (what a rodsuser may do), from inside
    the server, with the server's own environment proxying as that user. Arguments must be plain,
    already validated strings (drop ids, confirmations): they are placed in rule text.

    Returns the rule's arguments as far as the server reports them back; callers read the outcome
    from the catalog (AVUs) rather than rely on this.
    """
    from irods.rule import Rule

    for a in args:
        if '"' in a or "\\" in a or "\n" in a:
            raise IrodsError(-130000, "refusing to put {!r} in rule text".format(a[:80]))
    params = {"*a{}".format(i): '"{}"'.format(a) for i, a in enumerate(args)}
    body = "{}({})".format(rule, ", ".join("*a{}".format(i) for i in range(len(args))))
    zone = PrcZone.from_environment(os.path.expanduser(SERVER_ENV_FILE), client_user=user)
    try:
        Rule(zone.session, body=body, params=params, output="ruleExecOut", instance_name=NATIVE_INSTANCE).execute()
    finally:
        zone.close()
    return list(args)
