"""The streaming unpack's data plane against a real server from a CLIENT process: the tuning loop of issue 17.

Why: the live bench (bench/unpack.py --live) needs the policy installed and the zone's exclusive lock for
minutes; the cost it measures is the data plane's (bench/README.md "Issue 17": over 99% of the unpack's
time is in DATA_OBJ_PUT / create / open / close / chksum). This runs exactly that code
(policy.archive_stream.stream_unpack into policy.unpack.ZoneSink over a policy.prc_zone.PrcZone, the
way policy.unpack._stream does in the delayed rule) in a fresh child process on this machine, as a
rodsuser the admin environment proxies (client_user), with nothing installed: a SHARED-lock probe.

    flock -s /run/lock/omero-snapshots-real-zone.lock python bench/probes/stream_client.py \
        --shape hcs:1000 --writers 4 --runs 1

Reported per run: seconds, round trips per API (python-irodsclient's requests, counted in the child),
and the child's peak RSS growth over its RSS before the unpack (ru_maxrss is not reset by a fork, so
the child reads VmHWM/VmRSS of its own). The user's scratch collection is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def count_round_trips() -> Dict[str, List[float]]:
    """Wrap python-irodsclient's Connection.send/recv in THIS process: api name -> [calls, seconds]."""
    from irods.api_number import api_number
    from irods.connection import Connection

    names = {v: k for k, v in api_number.items()}
    tally: Dict[str, List[float]] = {}
    lock = threading.Lock()
    local = threading.local()
    send, recv = Connection.send, Connection.recv

    def counted_send(self: Any, message: Any) -> Any:
        local.api = names.get(getattr(message, "int_info", 0), "connect/other")
        local.t0 = time.perf_counter()
        return send(self, message)

    def counted_recv(self: Any, *a: Any, **k: Any) -> Any:
        try:
            return recv(self, *a, **k)
        finally:
            api = getattr(local, "api", None)
            if api is not None:
                with lock:
                    row = tally.setdefault(api, [0, 0.0])
                    row[0] += 1
                    row[1] += time.perf_counter() - local.t0
                local.api = None

    Connection.send, Connection.recv = counted_send, counted_recv  # type: ignore[method-assign]
    import policy.prc_zone as prc_zone

    direct = prc_zone._request_with_bytes

    def counted_direct(conn: Any, body: Any, api: int, data: Any, message_class: Any) -> Any:
        local.api = names.get(api, str(api))
        local.t0 = time.perf_counter()
        return direct(conn, body, api, data, message_class)

    prc_zone._request_with_bytes = counted_direct  # type: ignore[assignment]
    return tally


def child(args: Any, archive: str, content: str) -> Dict[str, Any]:
    from policy.archive_stream import stream_unpack
    from policy.prc_zone import PrcZone
    from policy.unpack import ZoneSink

    zone = PrcZone.from_environment(args.env, client_user=args.user)
    tally = count_round_trips()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    sink = ZoneSink(zone, content, None, zone if args.writers > 1 else None)
    with zone.open_stream(archive) as src:  # what policy.unpack._stream opens on this data plane
        report = stream_unpack(src, sink, writers=args.writers)
    took = time.perf_counter() - t0
    print("stream ended {:.3f}".format(time.time()), file=sys.stderr, flush=True)
    listed = zone.objects_under(content)
    zone.close()
    import base64

    want = {content + "/" + m.path: "sha2:" + base64.b64encode(bytes.fromhex(m.sha256)).decode() for m in
            report.members}
    return {"seconds": round(took, 3), "members": len(report.members), "refusal": str(report.refusal or ""),
            "all_checksums_match": all(listed.get(p, (0, ""))[1] == c for p, c in want.items()),
            "rss_before_mb": round(rss0 / 1024, 1), "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
            "api": {k: [int(v[0]), round(v[1], 3)] for k, v in sorted(tally.items())}}


def make_archive(shape: str, work: str) -> Tuple[str, int]:
    import unpack as bench

    pool = bench.make_pool()
    path = os.path.join(work, shape.replace(":", "-") + ".tar")
    kind, _, count = shape.partition(":")
    if kind == "round6":
        info = bench.write_round6(path, pool)
    elif kind == "hcs":
        info = bench.write_hcs_plate(path, pool, int(count or 5000))
    else:
        raise SystemExit("--shape is round6 or hcs[:N]")
    return path, int(info["members"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="hcs:1000")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--user", default="wt-perf_probe")
    ap.add_argument("--env", default=os.environ.get("IRODS_ADMIN_ENVIRONMENT_FILE",
                                                    "/var/tmp/omero-snapshots-live/admin/irods_environment.json"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args, *args.child)))
        return 0
    import subprocess

    from policy.prc_zone import PrcZone

    zone = PrcZone.from_environment(args.env, client_user=args.user)
    base = "/{}/home/{}/stream-{}".format(zone.zone_name, args.user, int(time.time()))
    with tempfile.TemporaryDirectory() as work:
        local, members = make_archive(args.shape, work)
        zone.create_collection(base, recursive=False)
        zone.session.data_objects.put(local, base + "/a.tar")
        try:
            for run in range(args.runs):
                content = "{}/content{}".format(base, run)
                proc = subprocess.run([sys.executable, __file__, "--writers", str(args.writers), "--user", args.user,
                                       "--env", args.env, "--child", base + "/a.tar", content],
                                      capture_output=True, text=True)
                print(proc.stderr[-3000:], file=sys.stderr)
                if proc.returncode != 0:
                    return 1
                doc = json.loads(proc.stdout.strip().splitlines()[-1])
                doc.update({"shape": args.shape, "writers": args.writers, "run": run})
                print(json.dumps(doc, sort_keys=True))
        finally:
            zone.session.collections.remove(base, recurse=True, force=True)
            zone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
