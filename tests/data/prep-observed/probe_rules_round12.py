# Round 12 probe (issue 17): the per-object floor of the streaming unpack's data plane, from inside a rule.
#
# A Python rule TEXT (not installed anywhere): bench/probes/drive_round12.py fills in the four constants
# below, saves it under a .r name and runs it as the server's rodsadmin with
#     irule -r irods_rule_engine_plugin-python-instance -F probe.r
# It opens ONE python-irodsclient session the way the policy's data plane does (the server's own
# environment, client_user = a rodsuser: policy.prc_zone.in_server_session_zone) and writes N objects of
# 64 KiB per variant into BASE/<variant>-t<threads>, timing each variant; then it checks every object
# with one genquery (size, checksum, replica status, owner) and probes the edge cases the unpack relies
# on. Every record is one JSON line on stdout (callback.writeLine).
#
# Variants (per object):
#   current      data_objects.create(force=False) + open('w') + write + close + chksum: the code before
#                issue 17 (policy.prc_zone.PrcZone.open_new, policy.unpack._ChecksumOnClose)
#   create_fd    DATA_OBJ_CREATE (no forceFlag) keeping the returned descriptor + one write + close,
#                regChksum in the create's condInput (checksum registered at close)
#   create_fd_nochk   the same without regChksum
#   put_reg      ONE DATA_OBJ_PUT with the bytes in the request (dataIncluded) and regChksum
#   put_nochk    the same without regChksum
#   put_verify   the same with verifyChksum=<sha2 of the bytes> (the server compares at close)
#   open_reg     data_objects.create(force=False) + open('w', regChksum='') + one write on the raw handle +
#                close: the streamed writer of members too large for one request (checksum registered at close)
#   objstat      OBJ_STAT of an existing object: the bare round trip through an agent
import json
import os
import sys
import time

SITE = "@SITE@"        # a directory holding python-irodsclient when the server's python lacks it ("" = none)
USER = "@USER@"        # the rodsuser the session proxies as (client_user)
BASE = "@BASE@"        # a collection USER owns (created by the driver), removed by the driver afterwards
N = int("@N@")         # objects per variant and thread count
PLAN = "@PLAN@"        # variant:threads,... e.g. "current:1,put_reg:1,put_reg:4"
SERVER_ENV = "~/.irods/irods_environment.json"
SIZE = 64 << 10


def _out(callback, **rec):
    callback.writeLine("stdout", json.dumps(rec, sort_keys=True, default=repr))


def _session():
    if SITE and SITE not in sys.path:
        sys.path.insert(0, SITE)
    from irods.session import iRODSSession

    return iRODSSession(irods_env_file=os.path.expanduser(SERVER_ENV), client_user=USER)


def _sha2(data):
    import base64
    import hashlib

    return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def _api(s, name, path, options, data=b"", size=None):
    """One API request carrying a DataObjInp; returns the reply's int_info (raises on an error)."""
    from irods.api_number import api_number
    from irods.message import FileOpenRequest, StringStringMap, iRODSMessage

    body = FileOpenRequest(objPath=path, createMode=0o644, openFlags=0, offset=0,
                           dataSize=len(data) if size is None else size, numThreads=0,
                           oprType=1 if name == "DATA_OBJ_PUT_AN" else 0,
                           KeyValPair_PI=StringStringMap(options))
    msg = iRODSMessage("RODS_API_REQ", msg=body, bs=data, int_info=api_number[name])
    with s.pool.get_connection() as conn:
        conn.send(msg)
        return conn.recv().int_info


def _put(s, path, data, chk):
    opts = {"dataIncluded": "", "dataSize": str(len(data)), "dataType": "generic"}
    if chk == "reg":
        opts["regChksum"] = ""
    elif chk == "verify":
        opts["verifyChksum"] = _sha2(data)
    elif chk.startswith("verify="):
        opts["verifyChksum"] = chk[len("verify="):]
    return _api(s, "DATA_OBJ_PUT_AN", path, opts, data)


def _create_fd(s, path, data, reg):
    from irods.api_number import api_number
    from irods.message import FileOpenRequest, StringStringMap, iRODSMessage

    opts = {"dataType": "generic"}
    if reg:
        opts["regChksum"] = ""
    body = FileOpenRequest(objPath=path, createMode=0o644, openFlags=0, offset=0, dataSize=-1, numThreads=0,
                           oprType=0, KeyValPair_PI=StringStringMap(opts))
    conn = s.pool.get_connection()
    try:
        conn.send(iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["DATA_OBJ_CREATE_AN"]))
        fd = conn.recv().int_info
        conn.write_file(fd, data)
        conn.close_file(fd)
    finally:
        conn.release()


def _one(s, variant, path, data):
    if variant == "current":
        s.data_objects.create(path, force=False)
        with s.data_objects.open(path, "w") as f:
            f.write(data)
        s.data_objects.chksum(path)
    elif variant == "create_fd":
        _create_fd(s, path, data, True)
    elif variant == "create_fd_nochk":
        _create_fd(s, path, data, False)
    elif variant == "open_reg":
        s.data_objects.create(path, force=False)
        holder = []
        buffered = s.data_objects.open(path, "w", regChksum="", _raw_fd_holder=holder)
        raw = holder[-1]
        raw.write(data)
        raw.close()
        buffered.close()  # nothing left to do: its raw handle is closed
    elif variant == "put_reg":
        _put(s, path, data, "reg")
    elif variant == "put_nochk":
        _put(s, path, data, "none")
    elif variant == "put_verify":
        _put(s, path, data, "verify")
    elif variant == "objstat":
        from irods.api_number import api_number
        from irods.message import FileOpenRequest, StringStringMap, iRODSMessage

        body = FileOpenRequest(objPath=BASE + "/edge/exists", createMode=0, openFlags=0, offset=0, dataSize=0,
                               numThreads=0, oprType=0, KeyValPair_PI=StringStringMap({}))
        with s.pool.get_connection() as conn:
            conn.send(iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["OBJ_STAT_AN"]))
            conn.recv()
    else:
        raise ValueError(variant)


def _listing(s, coll):
    from irods.models import Collection, DataObject

    q = s.query(DataObject.name, DataObject.size, DataObject.checksum, DataObject.replica_status,
                DataObject.owner_name).filter(Collection.name == coll)
    return {r[DataObject.name]: (int(r[DataObject.size]), r[DataObject.checksum] or "",
                                 str(r[DataObject.replica_status]), r[DataObject.owner_name]) for r in q}


def _err(e):
    return {"error": type(e).__name__, "code": getattr(e, "code", None)}


def _edge(s, callback):
    """What the new writer relies on besides speed: no overwrite, checksum verification, empty members."""
    import os as _os

    edge = BASE + "/edge"
    s.collections.create(edge)
    a = _os.urandom(SIZE)
    b = _os.urandom(SIZE)
    _put(s, edge + "/exists", a, "reg")

    def state(name):
        got = _listing(s, edge).get(name)
        if got is None:
            return None
        return {"size": got[0], "checksum_is": "a" if got[1] == _sha2(a) else ("b" if got[1] == _sha2(b) else
                                                                                 (got[1] or "''")),
                "repl_status": got[2], "owner_is_user": got[3] == USER}

    for label, target, fn in (
        ("put_over_existing", "exists", lambda: _put(s, edge + "/exists", b, "reg")),
        ("create_fd_over_existing", "exists", lambda: _create_fd(s, edge + "/exists", b, True)),
        ("put_verify_wrong", "wrong", lambda: _put(s, edge + "/wrong", a, "verify=" + _sha2(b))),
        ("put_verify_right", "right", lambda: _put(s, edge + "/right", a, "verify")),
        ("put_empty_reg", "empty", lambda: _put(s, edge + "/empty", b"", "reg")),
        ("put_4mib_reg", "big", lambda: _put(s, edge + "/big", _os.urandom(4 << 20), "reg")),
        ("put_into_missing_collection", "nocoll/x", lambda: _put(s, edge + "/nocoll/x", a, "reg")),
        ("put_without_permission", None, lambda: _put(s, "/" + s.zone + "/home/rods/round12-noperm", a, "reg")),
        ("open_reg_small", "openreg", lambda: _one(s, "open_reg", edge + "/openreg", a)),
    ):
        try:
            rec = {"status": fn()}
        except Exception as e:  # noqa: BLE001 - the outcome is the record
            rec = _err(e)
        if target is not None:
            rec["after"] = state(target)
        _out(callback, probe="round12_edge", case=label, **rec)
    empty = _listing(s, edge).get("empty")
    _out(callback, probe="round12_edge", case="empty_checksum",
         is_sha2_of_nothing=bool(empty) and empty[1] == _sha2(b""))


def main(rule_args, callback, rei):
    import concurrent.futures

    data = os.urandom(SIZE)
    want = _sha2(data)
    with _session() as s:
        import irods

        s.collections.create(BASE)

        _out(callback, probe="round12_session", prc_version=getattr(irods, "__version__", "?"), pid=os.getpid(),
             server_version=list(s.server_version))
        _edge(s, callback)
        for step in PLAN.split(","):
            variant, threads = step.split(":")
            workers = int(threads)
            coll = "{}/{}-t{}".format(BASE, variant, workers)
            s.collections.create(coll)
            paths = ["{}/m{:05d}".format(coll, i) for i in range(N)]
            t0 = time.perf_counter()
            if workers == 1:
                for p in paths:
                    _one(s, variant, p, data)
            else:
                with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
                    list(ex.map(lambda p: _one(s, variant, p, data), paths))
            took = time.perf_counter() - t0
            rec = {"probe": "round12_floor", "variant": variant, "threads": workers, "objects": N,
                   "bytes_each": SIZE, "seconds": round(took, 3), "ms_per_object": round(1000 * took / N, 1),
                   "pool_connections": len(s.pool.idle) + len(s.pool.active)}
            if variant != "objstat":
                listed = _listing(s, coll)
                rec["listed"] = len(listed)
                rec["sizes"] = sorted({v[0] for v in listed.values()})
                rec["checksums"] = sorted({"expected" if v[1] == want else ("" if not v[1] else "other")
                                           for v in listed.values()})
                rec["repl_status"] = sorted({v[2] for v in listed.values()})
                rec["owners_are_user"] = all(v[3] == USER for v in listed.values())
            _out(callback, **rec)
        s.collections.remove(BASE, recurse=True, force=True)


INPUT null
OUTPUT ruleExecOut
