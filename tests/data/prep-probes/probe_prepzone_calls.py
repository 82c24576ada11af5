# PrepZone call-level probes NOT yet covered by a golden record (tests/prepzone_calls.py lists which are).
# Part 1, as rods (rodsadmin), a Python rule through irule -F (copy it to a .r name; keep it under 20 KiB):
#   cp probe_prepzone_calls.py pz.r; irule -r irods_rule_engine_plugin-python-instance -F pz.r
# It prints 'probe-pz done: <base>' and writes one JSON line per call to <tempdir>/probe-pz.jsonl.
# Part 2, as the rodsuser omero-svc (it may not run Python rule text): put <base> into *b of
# probe_prepzone_calls_svc.r, then
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F probe_prepzone_calls_svc.r
# and keep its stdout: one 'check code' or 'check rows=N' line per call ('  row ...' lines before it).
import json
import os
import tempfile
import time

OUT = os.path.join(tempfile.gettempdir(), "probe-pz.jsonl")


def _render(a):
    import irods_types
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    t = type(a).__name__
    if isinstance(a, irods_types.RodsObjStat):
        d = {"type": t}
        for f in ("objType", "objSize", "ownerName", "ownerZone", "modifyTime", "createTime", "dataId",
                  "chksum", "rescHier", "dataMode", "specColl"):
            try:
                v = getattr(a, f)
                d[f] = str(v) if type(v).__name__ == "char_array" else v if type(v) in (int, str) else repr(v)
            except Exception as e:  # noqa: BLE001
                d[f] = "<error {!r}>".format(e)
        return d
    return {"type": t, "repr": repr(a)[:200]}


def _rec(name, **kw):
    rec = {"probe": name}
    rec.update(kw)
    with open(OUT, "a") as f:
        f.write(json.dumps(rec, default=repr) + "\n")


def _code(text):
    import re
    m = re.search(r"\[iRods__Error__Code:(-?\d+)\]", text)
    return int(m.group(1)) if m else None


def _call(callback, name, msi, *args):
    shown = [a if isinstance(a, (int, str)) else "<{}>".format(type(a).__name__) for a in args]
    try:
        r = getattr(callback, msi)(*args)
        out = {"call": msi, "args": shown, "ok": True, "code": r.get("code"), "status": r.get("status"),
               "arguments": [_render(a) for a in r.get("arguments", [])]}
        _rec(name, **out)
        return r
    except Exception as e:  # noqa: BLE001
        _rec(name, call=msi, args=shown, ok=False, exc_type=type(e).__name__, error_code=_code(str(e)))
        return None


def _q(callback, name, columns, conditions):
    from genquery import Query
    rec = {"call": "genquery.Query", "columns": list(columns), "conditions": conditions}
    try:
        rows = list(Query(callback, list(columns), conditions))
        rec.update(ok=True, n=len(rows), row_type=type(rows[0]).__name__ if rows else None,
                   rows=[r if isinstance(r, str) else list(r) for r in rows[:8]])
    except Exception as e:  # noqa: BLE001
        rec.update(ok=False, exc_type=type(e).__name__, error_code=_code(str(e)))
    _rec(name, **rec)


def _mk(callback, path, content):
    import irods_types
    fd = callback.msiDataObjCreate(path, "forceFlag=", 0)["arguments"][2]
    bb = irods_types.BytesBuf()
    bb.set_buffer(content)
    callback.msiDataObjWrite(fd, bb, 0)
    callback.msiDataObjClose(fd, 0)


def main(rule_args, callback, rei):
    import irods_types
    cb = callback
    user = str(rei.uoic.userName)
    base = "/tempZone/home/{}/probe-pz-{}".format(user, int(time.time()))
    cb.msiCollCreate(base + "/sub", "1", 0)
    cb.msiCollCreate(base + "/r1", "1", 0)
    _mk(cb, base + "/a.txt", b"hello world\n")
    _mk(cb, base + "/ck.txt", b"checksummed\n")

    def CN(coll, name):
        return "COLL_NAME = '{}' and DATA_NAME = '{}'".format(coll, name)

    # PrepZone.kind(): existence through genquery (no msiObjStat error line for a missing path)
    _q(cb, "pz_gq_kind_collection", ["COLL_NAME"], "COLL_NAME = '{}'".format(base))
    _q(cb, "pz_gq_kind_collection_missing", ["COLL_NAME"], "COLL_NAME = '{}/missingc'".format(base))
    _q(cb, "pz_gq_kind_collection_is_data_object", ["COLL_NAME"], "COLL_NAME = '{}/a.txt'".format(base))
    _q(cb, "pz_gq_kind_data_object", ["DATA_NAME"], CN(base, "a.txt"))
    _q(cb, "pz_gq_kind_data_object_missing", ["DATA_NAME"], CN(base, "missing.txt"))
    _q(cb, "pz_gq_kind_data_object_is_collection", ["DATA_NAME"], CN(base, "sub"))
    _q(cb, "pz_gq_kind_missing_parent", ["DATA_NAME"], CN(base + "/nope", "a.txt"))
    # PrepZone.objects_under(): the collections below a top (LIKE; '_' would match any character)
    _q(cb, "pz_gq_collections_below", ["COLL_NAME"], "COLL_NAME like '{}/%'".format(base))
    # PrepZone.stat() of an object whose checksum is stored: what msiObjStat puts in chksum
    cb.msiDataObjChksum(base + "/ck.txt", "", "")
    _call(cb, "pz_objstat_checksummed_object", "msiObjStat", base + "/ck.txt", irods_types.RodsObjStat())
    # PrepZone.user_type() when no zone name is known
    _q(cb, "pz_gq_user_type_without_zone", ["USER_TYPE"], "USER_NAME = '{}'".format(user))
    # the hand-over shapes: own to a user recursively, then the caller lowers itself to read recursively
    _call(cb, "pz_setacl_own_recursive", "msiSetACL", "recursive", "own", "omero-svc", base + "/r1")
    _call(cb, "pz_setacl_read_recursive_self", "msiSetACL", "recursive", "read", user, base + "/r1")
    _q(cb, "pz_gq_acl_after_handover", ["COLL_ACCESS_NAME", "COLL_USER_NAME"], "COLL_NAME = '{}/r1'".format(base))
    # what the rodsuser part needs from this collection: read on ck.txt (its checksum is stored)
    _call(cb, "pz_setacl_read_for_svc", "msiSetACL", "default", "read", "omero-svc", base + "/ck.txt")
    _rec("done", base=base)
    callback.writeLine("stdout", "probe-pz done: " + base)


INPUT null
OUTPUT ruleExecOut
