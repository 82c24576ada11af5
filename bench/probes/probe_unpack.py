"""Probes for what issue 13's unpack changes rely on (run on a real server in round 11:
tests/data/prep-observed/round11-unpack.jsonl).

Style of tests/data/prep-observed/probe_rules.py (a copy of ../shared/reference/prep-observed/, relative to the
project root): install these functions into a private test server's core (e.g. append this file to
/etc/irods/core.py, or drop it in core.py.d), then trigger them as drive_unpack.py (beside this file) does.
Every probe appends ONE JSON record to PROBE_OUT; the records of round 11 are in
tests/data/prep-observed/round11-unpack.jsonl, to compare with the expectations in the docstrings (what
policy/unpack.py, policy/parallel_write.py, policy/prep_zone.py objects_under and bench/unpack.py assume).

Each probe takes rule_args[0] = a scratch collection the service account owns (created by the driver),
rule_args[1] = the service account's name; rule_args[0] is set to "done" at the end.
"""
import json
import os
import tempfile
import time

PROBE_OUT = os.environ.get("PREP_PROBE_OUT", os.path.join(tempfile.gettempdir(), "prep-probe.jsonl"))
SERVER_ENV = "~/.irods/irods_environment.json"


def _rec(name, **kw):
    kw["probe"] = name
    with open(PROBE_OUT, "a") as f:
        f.write(json.dumps(kw, default=repr) + "\n")


def _session(as_user):
    from irods.session import iRODSSession

    return iRODSSession(irods_env_file=os.path.expanduser(SERVER_ENV), client_user=as_user)


def _rss():
    out = {"pid": os.getpid(), "ppid": os.getppid()}
    try:
        import resource

        out["ru_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open("/proc/self/status") as f:
            for line in f:
                if line.split(":")[0] in ("VmHWM", "VmRSS", "Threads"):
                    out[line.split(":")[0]] = line.split(":", 1)[1].strip()
        with open("/proc/self/cmdline", "rb") as f:
            out["cmdline"] = f.read().replace(b"\0", b" ").decode("utf-8", "replace")[:200]
    except Exception as e:  # noqa: BLE001 - recorded
        out["rss_error"] = repr(e)
    return out


def probe_unpack_concurrent_writes(rule_args, callback, rei):
    """EXPECTED (policy/parallel_write.py, PrcZone.concurrent_plane): one in-rule python-irodsclient session
    (server env, client_user=svc) used from 4 threads at once, each create(force=False)+open('w')+write+close
    +chksum of 64 KiB objects, succeeds; every object is owned by svc with the right size and a sha2 checksum;
    the 4-thread run takes clearly less than the 1-thread run of as many objects (per-object round trips
    overlap); an existing path fails (no overwrite) in a thread like in the main one."""
    import base64
    import concurrent.futures
    import hashlib

    base, svc = rule_args[0], rule_args[1]
    rec = {"threads": 4, "objects_each_run": 64}
    data = os.urandom(64 << 10)
    want = "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    try:
        with _session(svc) as s:
            for label, workers in (("serial", 1), ("parallel", 4)):
                coll = "{}/{}".format(base, label)
                s.collections.create(coll)

                def one(i, coll=coll, s=s):
                    p = "{}/m{:03d}".format(coll, i)
                    s.data_objects.create(p, force=False)
                    with s.data_objects.open(p, "w") as f:
                        f.write(data)
                    return s.data_objects.chksum(p)

                t0 = time.time()
                with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
                    sums = list(ex.map(one, range(64)))
                rec[label + "_s"] = round(time.time() - t0, 3)
                rec[label + "_all_checksums_right"] = all(c == want for c in sums)
                objs = s.collections.get(coll).data_objects
                rec[label + "_owners"] = sorted({o.owner_name for o in objs})
                rec[label + "_sizes"] = sorted({o.size for o in objs})
            try:  # no overwrite from a writer thread either
                with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
                    ex.submit(s.data_objects.create, base + "/parallel/m000", force=False).result()
                rec["create_existing_in_thread"] = "succeeded (UNEXPECTED)"
            except Exception as e:  # noqa: BLE001
                rec["create_existing_in_thread"] = "{}: {}".format(type(e).__name__, getattr(e, "code", ""))
            rec["pool_connections_after"] = len(getattr(s.pool, "idle", ())) + len(getattr(s.pool, "active", ()))
    except Exception:  # noqa: BLE001
        import traceback
        rec["exc"] = traceback.format_exc()[-1200:]
    rec.update(_rss())
    _rec("unpack_concurrent_writes", **rec)
    rule_args[0] = "done"


def probe_unpack_checksum_genquery(rule_args, callback, rei):
    """EXPECTED (PrepZone.objects_under, unpack._verify): genquery Query(callback, [COLL_NAME, DATA_NAME,
    DATA_SIZE, DATA_CHECKSUM], "COLL_NAME like '<top>/%'") as the service account yields one tuple per
    replica for 300 objects in 3 subcollections (paging transparent, > 256 rows), DATA_CHECKSUM '' for the
    objects never checksummed and exactly msiDataObjChksum's 'sha2:...' for the others; `COLL_NAME = '<top>'`
    gives the top's own objects only; the same through python-irodsclient's query with Like()."""
    from genquery import Query

    base, svc = rule_args[0], rule_args[1]
    top = base + "/gq"
    rec = {}
    try:
        callback.msiCollCreate(top, "1", 0)
        made = {}
        for d in range(3):
            callback.msiCollCreate("{}/d{}".format(top, d), "1", 0)
            for i in range(100):
                p = "{}/d{}/m{:03d}".format(top, d, i)
                r = callback.msiDataObjCreate(p, "", 0)
                callback.msiDataObjClose(r["arguments"][2], 0)
                made[p] = ""
        callback.msiDataObjCreate(top + "/top.txt", "", 0)
        for p in sorted(made)[::2]:  # every other one checksummed
            made[p] = str(callback.msiDataObjChksum(p, "", "")["arguments"][2])
        rows = list(Query(callback, ["COLL_NAME", "DATA_NAME", "DATA_SIZE", "DATA_CHECKSUM"],
                          "COLL_NAME like '{}/%'".format(top)))
        rec["like_rows"] = len(rows)
        colls = list(Query(callback, ["COLL_NAME"], "COLL_NAME like '{}/%'".format(top)))  # PrepZone.objects_under
        rec["coll_like_rows"] = sorted(colls)  # EXPECTED: the three d<i> collections, as str rows
        rec["like_row_type"] = type(rows[0]).__name__ if rows else None
        got = {r[0] + "/" + r[1]: r[3] for r in rows}
        rec["like_paths_match"] = sorted(got) == sorted(made)
        rec["like_checksums_match"] = all(got.get(p) == c for p, c in made.items())
        rec["like_empty_checksum_repr"] = repr(next((v for v in got.values() if not v), None))
        top_rows = list(Query(callback, ["COLL_NAME", "DATA_NAME", "DATA_SIZE", "DATA_CHECKSUM"],
                              "COLL_NAME = '{}'".format(top)))
        rec["eq_rows"] = [list(r) for r in top_rows]
        from irods.column import Like
        from irods.models import Collection, DataObject

        with _session(svc) as s:
            q = s.query(Collection.name, DataObject.name, DataObject.checksum).filter(
                Like(Collection.name, top + "/%"))
            prc = {r[Collection.name] + "/" + r[DataObject.name]: (r[DataObject.checksum] or "") for r in q}
        rec["prc_like_rows"] = len(prc)
        rec["prc_checksums_match"] = all(prc.get(p) == c for p, c in made.items())
        rec["prc_empty_checksum_repr"] = repr(next((v for v in prc.values() if not v), None))
    except Exception:  # noqa: BLE001
        import traceback
        rec["exc"] = traceback.format_exc()[-1200:]
    _rec("unpack_checksum_genquery", **rec)
    rule_args[0] = "done"


def probe_unpack_parallel_chksum_after_native(rule_args, callback, rei):
    """EXPECTED (fast path, unpack._verify with a concurrent plane): after msiTarFileExtract(archive, target,
    'demoResc', 0) every extracted object's DATA_CHECKSUM is '' (the extractor does not checksum); 4 threads of
    the in-rule session calling data_objects.chksum on them all succeed, give the same values as
    msiDataObjChksum would, and take less time than one thread. rule_args[2] = the archive (a tar of many
    small files the driver uploaded)."""
    import concurrent.futures

    from genquery import Query

    base, svc, archive = rule_args[0], rule_args[1], rule_args[2]
    rec = {}
    try:
        for label, workers in (("serial", 1), ("parallel", 4)):
            target = "{}/x-{}".format(base, label)
            t0 = time.time()
            callback.msiTarFileExtract(archive, target, "demoResc", 0)
            rec[label + "_extract_s"] = round(time.time() - t0, 3)
            rows = list(Query(callback, ["COLL_NAME", "DATA_NAME", "DATA_CHECKSUM"],
                              "COLL_NAME like '{}%'".format(target)))
            paths = [r[0] + "/" + r[1] for r in rows]
            rec[label + "_objects"] = len(paths)
            rec[label + "_all_empty_before"] = all(not r[2] for r in rows)
            with _session(svc) as s:
                t0 = time.time()
                with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
                    sums = list(ex.map(s.data_objects.chksum, paths))
                rec[label + "_chksum_s"] = round(time.time() - t0, 3)
            rec[label + "_all_sha2"] = all(str(c).startswith("sha2:") for c in sums)
    except Exception:  # noqa: BLE001
        import traceback
        rec["exc"] = traceback.format_exc()[-1200:]
    _rec("unpack_parallel_chksum_after_native", **rec)
    rule_args[0] = "done"


def probe_unpack_delayed_rss(rule_args, callback, rei):
    """EXPECTED (unpack_stats' agent peak RSS): a delayed rule runs in an agent process whose /proc/self and
    getrusage(RUSAGE_SELF) are its own; two delayed rules queued together either run in different pids, or
    the record shows the same pid (then ru_maxrss/VmHWM is the agent's peak over both, an upper bound).
    Queues two delayed calls of probe_unpack_record_rss (this probe itself runs as svc or rods)."""
    for k in (1, 2):
        callback.delayExec("<INST_NAME>irods_rule_engine_plugin-python-instance</INST_NAME><PLUSET>1s</PLUSET>",
                           "callback.probe_unpack_record_rss('{}')".format(k), "")
    _rec("unpack_delayed_rss_queued", **_rss())
    rule_args[0] = "done"


def probe_unpack_record_rss(rule_args, callback, rei):
    big = bytearray(50 << 20)  # 50 MiB touched: the peak must show it
    for i in range(0, len(big), 4096):
        big[i] = 1
    del big
    _rec("unpack_delayed_rss", which=rule_args[0] if rule_args else None, user=str(rei.uoic.userName), **_rss())
