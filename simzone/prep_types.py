"""Stand-ins for the modules PREP gives a rule: irods_types, irods_errors, genquery, session_vars.

They behave like the real ones did on the probed servers, quirks included:
BytesBuf.get_bytes() returns a list of ints, its .buf is an opaque char_array,
objType is an enum whose repr is 'irods_types.objType.DATA_OBJ', a genquery
with no rows yields nothing. `install()` puts them in sys.modules so the same
rule code imports them as it would inside the server.
"""

from __future__ import annotations

import re
import sys
import types
from typing import Any, Dict, Iterator, List, Optional, Sequence

from policy.errors import CODES, RULE_ENGINE_CONTINUE


class _IrodsType:
    """Gives every stand-in the module name the real classes report in reprs."""


def _irods_class(cls: type) -> type:
    cls.__module__ = "irods_types"
    return cls


def _public_dir(obj: object) -> List[str]:
    """dir() without the stand-in's private state, so `dir(BytesBuf())` lists what the real class has."""
    return [n for n in object.__dir__(obj) if n.startswith("__") or not n.startswith("_")]


@_irods_class
class char_array:  # noqa: N801 - real name
    """Opaque, like the real one: len() and slicing work, iteration yields 1-char strings, no buffer protocol.

    str() reads it as the C string it is: up to the first NUL, and on past `len` into whatever follows when
    the server did not NUL-terminate the buffer (observed: pep_api_replica_close_post's JSON + garbage).
    """

    def __init__(self, data: bytes, tail: bytes = b"") -> None:
        self._data = data
        self._tail = tail

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            return char_array(self._data[item])
        return chr(self._data[item])

    def __iter__(self) -> Iterator[str]:
        return (chr(b) for b in self._data)

    def __str__(self) -> str:
        raw = self._data + self._tail
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def __dir__(self) -> List[str]:
        return _public_dir(self)


@_irods_class
class BytesBuf:
    def __init__(self) -> None:
        self._data = b""
        self._tail = b""

    def __dir__(self) -> List[str]:
        return _public_dir(self)

    @property
    def buf(self) -> char_array:
        return char_array(self._data, self._tail)

    @property
    def len(self) -> int:
        return len(self._data)

    def set_buffer(self, data: Any) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._data = bytes(data)
        self._tail = b""

    def get_bytes(self) -> List[int]:
        return list(self._data)

    def get_byte(self, i: int) -> int:
        return self._data[i]

    def clear_buffer(self) -> None:
        self._data = b""
        self._tail = b""


def unterminated_bytes_buf(data: bytes, garbage: bytes) -> BytesBuf:
    """A BytesBuf as the server hands one to a PEP: `len` bytes of content, not NUL-terminated, so str(buf.buf)
    runs on into `garbage` (round 1, pep_api_replica_close_post)."""
    b = BytesBuf()
    b.set_buffer(data)
    b._tail = bytes(garbage)
    return b


class _ObjTypeValue:
    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __repr__(self) -> str:
        return "irods_types.objType." + self.name

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _ObjTypeValue):
            return self.value == other.value
        return other == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@_irods_class
class objType:  # noqa: N801 - real name
    UNKNOWN_OBJ_T = _ObjTypeValue("UNKNOWN_OBJ_T", 0)
    DATA_OBJ = _ObjTypeValue("DATA_OBJ", 1)
    COLL_OBJ = _ObjTypeValue("COLL_OBJ", 2)


@_irods_class
class RodsObjStat:
    """The text fields are char_array on a real server (round 10: read them with str())."""

    def __init__(self) -> None:
        self.objType: _ObjTypeValue = objType.UNKNOWN_OBJ_T
        self.objSize = 0
        self.modifyTime: Any = char_array(b"")
        self.createTime: Any = char_array(b"")
        self.dataId: Any = char_array(b"")
        self.chksum: Any = char_array(b"")
        self.ownerName: Any = char_array(b"")
        self.ownerZone: Any = char_array(b"")
        self.rescHier: Any = char_array(b"")
        self.dataMode = 0
        self.specColl: Any = None


@_irods_class
class PluginContext:
    def __init__(self, values: Dict[str, str]) -> None:
        self._values = dict(values)

    def map(self) -> Dict[str, str]:
        return dict(self._values)


@_irods_class
class OpenedDataObjInp:
    def __init__(self, l1descInx: int = 3) -> None:  # noqa: N803 - real name
        self.l1descInx = l1descInx
        self.len = 0
        self.whence = 0
        self.offset = 0


@_irods_class
class KeyValPair:
    def __init__(self) -> None:
        self._kv: Dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self._kv[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._kv[key] = value


@_irods_class
class DataObjInp:
    def __init__(self, objPath: str = "") -> None:  # noqa: N803 - real name
        self.objPath = objPath
        self.condInput = KeyValPair()


def make_irods_types() -> types.ModuleType:
    m = types.ModuleType("irods_types")
    for cls in (char_array, BytesBuf, objType, RodsObjStat, PluginContext, OpenedDataObjInp, KeyValPair,
                DataObjInp):
        setattr(m, cls.__name__, cls)
    return m


# Names the real irods_errors gave codes the round-10 probes met (its 'error_names' record) that the policy
# itself does not need to name. -1 (a non-tar archive to msiTarFileExtract) has no name there.
ROUND10_NAMES: Dict[str, int] = {
    "BAD_INPUT_DESC_INDEX": -345000,
    "CAT_INVALID_ARGUMENT": -816000,
    "INPUT_ARG_NOT_WELL_FORMED_ERR": -1084000,
    "NO_COLUMN_NAME_FOUND": -1107000,
    "REPLICA_NOT_IN_RESC": -1821000,
    "SAME_SRC_DEST_PATHS_ERR": -339000,
    "SYS_RESC_DOES_NOT_EXIST": -78000,
}


def make_irods_errors() -> types.ModuleType:
    m = types.ModuleType("irods_errors")
    m.RULE_ENGINE_CONTINUE = RULE_ENGINE_CONTINUE  # type: ignore[attr-defined]
    m.RULE_ENGINE_SKIP_OPERATION = 5001000  # type: ignore[attr-defined]
    for name, code in list(CODES.items()) + list(ROUND10_NAMES.items()):
        setattr(m, name, code)
    return m


# ---------------------------------------------------------------------- genquery
# The subset of GenQuery1 columns the policy and the probes use, mapped onto the simulated catalog.
_COLUMNS = {
    "COLL_NAME": "c.path",
    "COLL_PARENT_NAME": "c.parent",
    "COLL_OWNER_NAME": "c.owner",
    "COLL_INHERITANCE": "c.inherit",
    "DATA_NAME": "o.name",
    "DATA_SIZE": "o.size",
    "DATA_CHECKSUM": "o.checksum",
    "DATA_OWNER_NAME": "o.owner",
    "DATA_ACCESS_NAME": "da.level",
    "COLL_ACCESS_NAME": "ca.level",
    "COLL_USER_NAME": "ca.user",  # r_coll_user_main: the user an r_coll_access row is about
    "USER_NAME": "u.name",
    "USER_TYPE": "u.type",
    "USER_ZONE": "(SELECT value FROM meta WHERE key = 'zone')",
    "META_COLL_ATTR_NAME": "cm.attr",
    "META_COLL_ATTR_VALUE": "cm.value",
    "META_COLL_ATTR_UNITS": "cm.units",
    "META_DATA_ATTR_NAME": "dm.attr",
    "META_DATA_ATTR_VALUE": "dm.value",
    "META_DATA_ATTR_UNITS": "dm.units",
    "DATA_RESC_NAME": "o.resc",
    "DATA_RESC_HIER": "o.resc",
    "RESC_NAME": "r.name",
    "RESC_TYPE_NAME": "r.type",
    "RESC_LOC": "r.loc",
    "RULE_EXEC_NAME": "dq.body",
    "RULE_EXEC_TIME": "dq.created",
    "RULE_EXEC_USER_NAME": "dq.user",
}
# A value is quoted with single quotes; a quote inside it is written doubled (round 12: '' is GenQuery1's escape).
# A lone quote inside a value, a backslash before a quote or a double-quoted value does not parse: the real
# server answers -1084000 INPUT_ARG_NOT_WELL_FORMED_ERR (rounds 11 and 12), as this does.
_COND_RE = re.compile(r"\s*([A-Z_]+)\s*(=|like|LIKE|!=|<>)\s*'((?:[^']|'')*)'\s*")


AS_TUPLE, AS_DICT, AS_LIST = 0, 1, 2


NO_COLUMN_NAME_FOUND, INPUT_ARG_NOT_WELL_FORMED_ERR = -1107000, -1084000  # round 10


def _gq_error(code: int, what: str) -> RuntimeError:
    return RuntimeError("[iRods__Error__Code:{}] [-]\tsimulated genquery: {}".format(code, what))


def _genquery_sql(columns: Sequence[str], conditions: str, principals: Optional[List[str]] = None,
                  visible_levels: Sequence[str] = ()) -> Any:
    """SQL for one GenQuery1 query. principals given (a rodsuser): only rows of entities one of them may
    read come back (round 10: the rodsuser saw no data objects it had no ACL on, only the granted
    subcollection, no metadata of an unreadable collection; users and resources unfiltered)."""
    used = list(columns)
    conds = []
    params: List[str] = []
    rest = conditions.strip()
    while rest:
        m = _COND_RE.match(rest)
        if not m:
            raise _gq_error(INPUT_ARG_NOT_WELL_FORMED_ERR, "cannot parse " + rest)
        col, op, val = m.group(1), m.group(2).lower(), m.group(3).replace("''", "'")
        if col not in _COLUMNS:
            raise _gq_error(NO_COLUMN_NAME_FOUND, "no column " + col)
        used.append(col)
        if op == "like":
            conds.append("pg_like({}, ?)".format(_COLUMNS[col]))
        else:
            conds.append("{} {} ?".format(_COLUMNS[col], {"=": "=", "!=": "!=", "<>": "!="}[op]))
        params.append(val)
        rest = rest[m.end():]
        if rest.lower().startswith("and "):
            rest = rest[4:]
        elif rest:
            raise _gq_error(INPUT_ARG_NOT_WELL_FORMED_ERR, "cannot parse " + rest)
    for col in columns:
        if col not in _COLUMNS:
            raise _gq_error(NO_COLUMN_NAME_FOUND, "no column " + col)
    prefixes = {_COLUMNS[c].split(".")[0] for c in used if not _COLUMNS[c].startswith("(")}
    if "ca" in prefixes and "u" in prefixes:
        # GenQuery1 links R_USER_MAIN only to data-object access: a real server answers this with the users
        # of the collection's DATA OBJECTS (nothing for an empty collection). Refuse rather than answer right.
        raise RuntimeError("[iRods__Error__Code:-130000] [-]\tsimulated genquery: USER_NAME/USER_TYPE with "
                           "COLL_ACCESS_* does not give a collection's ACL on a real server; use COLL_USER_NAME")
    data_side = bool(prefixes & {"o", "da", "dm"})
    joins = []
    if data_side:
        base = "objs o JOIN colls c ON o.coll = c.path"
        if "da" in prefixes:
            joins.append("JOIN acl da ON da.kind='D' AND da.oid=o.id")
        if "dm" in prefixes:
            joins.append("JOIN avu dm ON dm.kind='D' AND dm.oid=o.id")
        if "r" in prefixes:
            joins.append("JOIN resources r ON r.name = o.resc")
        if "u" in prefixes:
            joins.append("JOIN users u ON u.name = " + ("da.user" if "da" in prefixes else "o.owner"))
    elif prefixes & {"c", "ca", "cm"}:
        base = "colls c"
        if "ca" in prefixes:
            joins.append("JOIN acl ca ON ca.kind='C' AND ca.oid=c.id")
        if "cm" in prefixes:
            joins.append("JOIN avu cm ON cm.kind='C' AND cm.oid=c.id")
        if "u" in prefixes:
            joins.append("JOIN users u ON u.name = " + ("ca.user" if "ca" in prefixes else "c.owner"))
    elif "r" in prefixes:
        base = "resources r"
    elif "dq" in prefixes:
        base = "delay dq"  # r_rule_exec holds only rules not yet finished
        conds.append("dq.state IN ('pending', 'running')")
    else:
        base = "users u"
    if principals is not None and (data_side or prefixes & {"c", "ca", "cm"}):
        # A rodsuser sees a row only if it may read the entity (round 10); a data object's row also needs its
        # collection readable when the query involves collection columns (round 11: an object read-granted in
        # a collection it may not read gives no row to COLL_NAME = ... and DATA_NAME = ...; round 12: the same
        # object is listed by DATA_NAME = ... alone).
        checks = [("D", "o.id")] if data_side else []
        if not data_side or prefixes & {"c", "ca", "cm"}:
            checks.append(("C", "c.id"))
        for kind, ref in checks:
            conds.append("EXISTS (SELECT 1 FROM acl v WHERE v.kind='{}' AND v.oid={} AND v.user IN ({}) AND v.level "
                         "IN ({}))".format(kind, ref, ",".join("?" * len(principals)),
                                           ",".join("?" * len(visible_levels))))
            params.extend(list(principals) + list(visible_levels))
    sql = "SELECT DISTINCT {} FROM {} {}{} ORDER BY {}".format(
        ", ".join(_COLUMNS[c] for c in columns), base, " ".join(joins),
        (" WHERE " + " AND ".join(conds)) if conds else "", ", ".join(_COLUMNS[c] for c in columns))
    return sql, params


class Query:
    """genquery.Query over the simulated catalog reached through the fake callback."""

    def __init__(self, callback: Any, columns: Any, conditions: str = "", output: int = AS_TUPLE,
                 offset: int = 0, limit: Optional[int] = None, case_sensitive: bool = True,
                 options: int = 0, parser: Any = None, order_by: Any = None) -> None:
        self.callback = callback
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        self.conditions = conditions
        self.output = output
        self.offset = offset
        self.limit = limit

    def _rows(self) -> List[Any]:
        server = self.callback._server
        cat = server.catalog
        cat._op("genquery", self.conditions)
        user = self.callback._user
        principals = None if cat._is_admin(user) else cat._principals(user)
        sql, params = _genquery_sql(self.columns, self.conditions, principals, cat.visible_levels())
        rows = server.catalog.query_rows(sql, params)[self.offset:]
        if self.limit is not None:
            rows = rows[: self.limit]
        out: List[Any] = []
        for r in rows:
            vals = ["" if v is None else str(v) for v in r]
            if self.output == AS_DICT:
                out.append(dict(zip(self.columns, vals)))
            elif self.output == AS_LIST:
                out.append(vals)
            elif len(vals) == 1:
                out.append(vals[0])
            else:
                out.append(tuple(vals))
        return out

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows())

    def first(self) -> Any:
        rows = self._rows()
        return rows[0] if rows else None

    def total_rows(self) -> int:
        return len(self._rows())

    def close(self) -> None:
        pass


def make_genquery() -> types.ModuleType:
    m = types.ModuleType("genquery")
    m.Query = Query  # type: ignore[attr-defined]
    m.AS_TUPLE, m.AS_DICT, m.AS_LIST = AS_TUPLE, AS_DICT, AS_LIST  # type: ignore[attr-defined]
    return m


def make_session_vars() -> types.ModuleType:
    m = types.ModuleType("session_vars")

    def get_map(rei: Any) -> Dict[str, Any]:
        return {
            "client_user": {"user_name": str(rei.uoic.userName), "rods_zone": str(rei.uoic.rodsZone)},
            "proxy_user": {"user_name": str(rei.uoip.userName), "rods_zone": str(rei.uoip.rodsZone)},
            "collection": {}, "connection": {}, "data_object": {"object_path": rei.doi.objPath},
            "key_value_pairs": {}, "operation_type": "", "other_user": {},
            "plugin_instance_name": "irods_rule_engine_plugin-python-instance", "status": 0,
        }

    m.get_map = get_map  # type: ignore[attr-defined]
    return m


def install() -> None:
    """Make `import irods_types` (and friends) work as inside the server."""
    for name, maker in (("irods_types", make_irods_types), ("irods_errors", make_irods_errors),
                        ("genquery", make_genquery), ("session_vars", make_session_vars)):
        if name not in sys.modules or not getattr(sys.modules[name], "_simzone", False):
            mod = maker()
            mod._simzone = True  # type: ignore[attr-defined]
            sys.modules[name] = mod
