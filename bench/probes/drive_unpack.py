"""Driver for bench/probes/probe_unpack.py and for the live bench's native rule (run in round 11: round11-unpack.jsonl).

    IRODS_ENVIRONMENT_FILE=<svc env> IRODS_ADMIN_ENVIRONMENT_FILE=<rods env> python bench/probes/drive_unpack.py

Needs probe_unpack.py installed in the server's core (see its docstring). Runs, as the service account:

1. the exact rule bench/unpack.py's native baseline sends (paths as literals in the rule text, errorcode(),
   *out), on a small tar: EXPECTED *out == "0" and the members extracted; and the first shape (paths as
   quoted input parameters): EXPECTED it fails with SYS_CROSS_ZONE_MV_NOT_SUPPORTED (-109000);
2. the Python probes through the native rule language instance (a rodsuser may call core rules that way,
   prep-observed "What a rodsuser may do"), each with a fresh scratch collection.

Prints one JSON line per check; the probes' own records go to the server's PREP_PROBE_OUT file.
"""

import io
import json
import os
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
NATIVE = "irods_rule_engine_plugin-irods_rule_language-instance"


def _tar(n: int = 200, size: int = 64 << 10) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(n):
            data = os.urandom(size)
            info = tarfile.TarInfo("./plate/w{:02d}/f{:04d}.tif".format(i % 12, i))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> int:
    from irods.rule import Rule
    from irods.session import iRODSSession

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import unpack as bench  # bench/unpack.py

    env = os.path.expanduser(os.environ["IRODS_ENVIRONMENT_FILE"])
    with iRODSSession(irods_env_file=env) as s:
        base = "/{}/home/{}/probe11-{}".format(s.zone, s.username, int(time.time()))
        s.collections.create(base)
        with s.data_objects.open(base + "/t.tar", "w") as f:
            f.write(_tar())
        # 1. the bench's rule, then the first (broken) shape
        body, params, out = bench.native_extract_call(base + "/t.tar", base + "/content", "demoResc")
        try:
            status = bench.run_native_extract(s, base + "/t.tar", base + "/content", "demoResc")
            n = sum(len(objs) for _, _, objs in s.collections.get(base + "/content").walk())
            print(json.dumps({"check": "bench_native_rule", "body": body, "status": status, "objects": n}))
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"check": "bench_native_rule", "body": body, "error": repr(e)}))
        old = Rule(s, body='msiTarFileExtract(*tar, *coll, *resc, *status); *out = "*status"',
                   params={"*tar": '"{}/t.tar"'.format(base), "*coll": '"{}/content2"'.format(base),
                           "*resc": '"demoResc"', "*out": '""'}, output="*out", instance_name=NATIVE)
        try:
            old.execute(session_cleanup=False)
            print(json.dumps({"check": "first_rule_shape", "result": "no error (UNEXPECTED)"}))
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"check": "first_rule_shape", "error": type(e).__name__,
                              "code": getattr(e, "code", None)}))
        # 2. the python probes, through the native instance, literals in the rule text
        for probe, extra in (("probe_unpack_concurrent_writes", []), ("probe_unpack_checksum_genquery", []),
                             ("probe_unpack_parallel_chksum_after_native", [base + "/t.tar"]),
                             ("probe_unpack_delayed_rss", [])):
            scratch = "{}/{}".format(base, probe)
            s.collections.create(scratch)
            args = ", ".join('"{}"'.format(a) for a in [scratch, s.username] + extra)
            t0 = time.time()
            try:
                Rule(s, body="{}({})".format(probe, args), output="ruleExecOut",
                     instance_name=NATIVE).execute(session_cleanup=False)
                print(json.dumps({"check": probe, "called": True, "seconds": round(time.time() - t0, 2)}))
            except Exception as e:  # noqa: BLE001
                print(json.dumps({"check": probe, "error": repr(e)[:500]}))
        print(json.dumps({"scratch": base, "note": "remove it with: irm -rf " + base + " (after the delayed "
                          "probe_unpack_record_rss rules ran, ~30-60 s)"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
