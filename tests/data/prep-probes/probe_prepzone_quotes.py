# Round 12 probes: GenQuery1 values holding a single quote or a backslash (names from archive members,
# e.g. "Bob's image.tif"), the LIKE shapes PrepZone uses for them, and what a rodsuser sees of an object it
# may read in a collection it may not. Same style and output as probe_prepzone_calls.py.
# Part 1, as rods (rodsadmin), a Python rule through irule -F (copy it to a .r name):
#   cp probe_prepzone_quotes.py pq.r; irule -r irods_rule_engine_plugin-python-instance -F pq.r
# It prints 'probe-pq done: <base>' and writes one JSON line per call to <tempdir>/probe-pq.jsonl.
# Part 2, as the rodsuser (omero-svc), with <base> of part 1 put into *b of probe_prepzone_quotes_svc.r (the
# native language parses SELECT itself and refuses a doubled quote, so part 2 uses LIKE with _ only):
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance -F probe_prepzone_quotes_svc.r
# and keep its stdout: one 'check code' or 'check rows=N' line per call ('  row ...' lines before it).
import json
import os
import tempfile
import time

OUT = os.path.join(tempfile.gettempdir(), "probe-pq.jsonl")


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
        _rec(name, call=msi, args=shown, ok=True, code=r.get("code"), status=r.get("status"))
        return r
    except Exception as e:  # noqa: BLE001
        _rec(name, call=msi, args=shown, ok=False, exc_type=type(e).__name__, error_code=_code(str(e)))
        return None


def _q(callback, name, columns, conditions):
    from genquery import Query
    rec = {"call": "genquery.Query", "columns": list(columns), "conditions": conditions}
    try:
        rows = list(Query(callback, list(columns), conditions))
        rows = sorted(r if isinstance(r, str) else list(r) for r in rows)
        rec.update(ok=True, n=len(rows), rows=rows[:8])
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
    cb = callback
    user = str(rei.uoic.userName)
    base = "/tempZone/home/{}/probe-pq-{}".format(user, int(time.time()))
    q, u, x, bs = base + "/q'c", base + "/q_c", base + "/qXc", base + "/b\\s"
    for c in (q + "/sub'1", u + "/sub_1", x, bs, base + "/p%c/in"):
        cb.msiCollCreate(c, "1", 0)
    _mk(cb, q + "/o'1.txt", b"quoted\n")
    _mk(cb, u + "/o_1.txt", b"underscore\n")
    _mk(cb, x + "/oX1.txt", b"x\n")
    _mk(cb, bs + "/o.txt", b"backslash\n")
    _mk(cb, base + "/ho.txt", b"hidden?\n")
    value = "it's {}".format(base.rsplit("-", 1)[1])
    cb.msi_atomic_apply_metadata_operations(json.dumps({"entity_name": q + "/o'1.txt", "entity_type": "data_object",
        "operations": [{"operation": "add", "attribute": "pq.k", "value": value, "units": ""}]}), "")
    # a quote inside a quoted value, written four ways; the doubled quote is GenQuery1's escape
    _q(cb, "pq_gq_eq_quote", ["COLL_NAME"], "COLL_NAME = '{}'".format(q))
    _q(cb, "pq_gq_eq_doubled_quote", ["COLL_NAME"], "COLL_NAME = '{}'".format(q.replace("'", "''")))
    _q(cb, "pq_gq_eq_backslash_quote", ["COLL_NAME"], "COLL_NAME = '{}'".format(q.replace("'", "\\'")))
    _q(cb, "pq_gq_eq_double_quoted", ["COLL_NAME"], 'COLL_NAME = "{}"'.format(q))
    _q(cb, "pq_gq_like_quote", ["COLL_NAME"], "COLL_NAME like '{}'".format(q))
    _q(cb, "pq_gq_like_doubled_quote", ["COLL_NAME"], "COLL_NAME like '{}'".format(q.replace("'", "''")))
    _q(cb, "pq_gq_like_delayed_rule_text", ["RULE_EXEC_NAME", "RULE_EXEC_TIME"],
       "RULE_EXEC_NAME like '%omero_snapshots_process_drop('x')%'")
    _q(cb, "pq_gq_like_delayed_rule_text_doubled", ["RULE_EXEC_NAME", "RULE_EXEC_TIME"],
       "RULE_EXEC_NAME like '%omero_snapshots_process_drop(''x'')%'")
    # PrepZone's own shapes for a quoted name (archive members): the quote doubled
    qq = q.replace("'", "''")
    _q(cb, "pq_gq_kind_object_doubled_quote", ["DATA_NAME"], "COLL_NAME = '{}' and DATA_NAME = 'o''1.txt'".format(qq))
    _q(cb, "pq_gq_subcollections_doubled_quote", ["COLL_NAME"], "COLL_PARENT_NAME = '{}'".format(qq))
    _q(cb, "pq_gq_objects_doubled_quote", ["DATA_NAME", "DATA_SIZE", "DATA_CHECKSUM", "DATA_OWNER_NAME"],
       "COLL_NAME = '{}'".format(qq))
    _q(cb, "pq_gq_below_like_doubled_quote", ["COLL_NAME"], "COLL_NAME like '{}/%'".format(qq))
    _q(cb, "pq_gq_acl_doubled_quote", ["COLL_ACCESS_NAME", "COLL_USER_NAME"], "COLL_NAME = '{}'".format(qq))
    _q(cb, "pq_gq_metadata_doubled_quote", ["META_DATA_ATTR_NAME", "META_DATA_ATTR_VALUE", "META_DATA_ATTR_UNITS"],
       "COLL_NAME = '{}' and DATA_NAME = 'o''1.txt'".format(qq))
    _q(cb, "pq_gq_find_by_metadata_doubled_quote", ["COLL_NAME", "DATA_NAME"],
       "META_DATA_ATTR_NAME = 'pq.k' and META_DATA_ATTR_VALUE = '{}'".format(value.replace("'", "''")))
    # LIKE: '_' matches any one character (q'c, q_c and qXc), and is case-sensitive
    _q(cb, "pq_gq_like_underscore", ["COLL_NAME"], "COLL_NAME like '{}'".format(base + "/q_c"))
    _q(cb, "pq_gq_like_other_case", ["COLL_NAME"], "COLL_NAME like '{}'".format(base + "/Q_C"))
    # a backslash: literal with '=', PostgreSQL's LIKE escape character with LIKE ('_' in its place matches it)
    _q(cb, "pq_gq_eq_backslash", ["COLL_NAME"], "COLL_NAME = '{}'".format(bs))
    _q(cb, "pq_gq_objects_eq_backslash", ["DATA_NAME", "DATA_SIZE", "DATA_CHECKSUM", "DATA_OWNER_NAME"],
       "COLL_NAME = '{}'".format(bs))
    _q(cb, "pq_gq_like_backslash", ["COLL_NAME"], "COLL_NAME like '{}'".format(bs))
    _q(cb, "pq_gq_like_underscore_for_backslash", ["COLL_NAME"], "COLL_NAME like '{}'".format(base + "/b_s"))
    # '%' in a value: literal with '=', a wildcard with LIKE
    _q(cb, "pq_gq_eq_percent", ["COLL_NAME"], "COLL_NAME = '{}'".format(base + "/p%c"))
    _q(cb, "pq_gq_below_like_percent", ["COLL_NAME"], "COLL_NAME like '{}/%'".format(base + "/p%c"))
    # what part 2 needs: read on ho.txt for the rodsuser (none on base)
    _call(cb, "pq_setacl_read_for_svc", "msiSetACL", "default", "read", "omero-svc", base + "/ho.txt")
    _rec("done", base=base)
    callback.writeLine("stdout", "probe-pq done: " + base)


INPUT null
OUTPUT ruleExecOut
