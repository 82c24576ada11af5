"""Unpack benchmark (issue 3, item 6): the whole server policy against `tar -x` + `sha256sum` by hand.

    python bench/unpack.py [--size-mb N] [--out DIR] [--keep] [--tmp DIR]

Generates, in a fresh temporary directory (streamed to disk, never held in memory):

- many-small: a tar of N MiB as 64 KiB files in nested directories, `./` prefixes and a
  transfer.xml, laid out like an omero-cli-transfer packet;
- few-large: a tar of N MiB as 4 files;
- many-small.tar.gz: the many-small content, gzipped (12-bit "pixel" data: compressible, not trivially);
- few-large at 2N (only for the flat-memory check of the streaming path).

Each archive goes through `omero-snapshots simulate ARCHIVE --json` in a SUBPROCESS (a fresh simulated
zone each time), once with the default configuration (fast path where the policy allows it) and once
with `unpack.fast_path = "never"` (streaming). Reported per run: `timings.process` from the JSON, the
baseline (same archive, same disk, same run: `tar -x` into a fresh directory then `sha256sum` of every
extracted file, timed together), ratio = baseline / process, the subprocess's peak RSS, catalog calls
per member during processing (the upload's own calls excluded; data-plane `write` calls reported
separately), from the simulated catalog's call counters (OMERO_SNAPSHOTS_SIM_CALLS_OUT).

With `--live [--size-mb N | --round6] [--runs K]` the same comparison runs against a REAL iRODS server with
this policy installed (docker/ stack), through python-irodsclient: the service account from
$IRODS_ENVIRONMENT_FILE uploads each archive as OMERO does (landing/<drop_id>/transfer.tar, the manifest last)
for an enrolled test user created for the run (a rodsadmin from $IRODS_ADMIN_ENVIRONMENT_FILE creates, enrols
and afterwards removes it), and the time from the manifest's close to the drop's final status is compared with
a plain `msiTarFileExtract` of the same archive (as the service account, through the native rule language)
followed by a checksum of every extracted object. Without configuration or server it exits 2 (see
bench/README.md, "Against a real server").
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from policy.config import default_config_dict  # noqa: E402

MiB = 1 << 20
SMALL_FILE = 64 << 10
FILES_PER_DIR = 1024
LARGE_FILES = 4
POOL_SIZE = 8 * MiB  # > gzip's 32 KiB window: slices of it do not compress as repeats
TRANSFER_XML = os.path.join(ROOT, "tests", "data", "transfer.xml")
MTIME = 1702911480  # fixed, so archives of the same size are byte-identical across runs


# ---------------------------------------------------------------------- data
def make_pool() -> bytes:
    """Little-endian uint16 pixels with 12 significant bits: the high byte carries 4 random bits."""
    rnd = os.urandom(POOL_SIZE)
    high_mask = bytes(b & 0x0F for b in range(256))
    out = bytearray(rnd)
    out[1::2] = rnd[1::2].translate(high_mask)  # odd (high) bytes keep 4 random bits, even ones 8
    return bytes(out)


class PoolReader(io.RawIOBase):
    """`size` bytes taken from the pool starting at `offset` (wrapping), without materialising them."""

    def __init__(self, pool: bytes, offset: int, size: int) -> None:
        self.pool = memoryview(pool)
        self.pos = offset % len(pool)
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        want = min(len(b), self.left)
        done = 0
        while done < want:  # fill completely (tarfile treats a short read as the end of the data)
            n = min(want - done, len(self.pool) - self.pos)
            b[done:done + n] = self.pool[self.pos:self.pos + n]
            self.pos = (self.pos + n) % len(self.pool)
            done += n
        self.left -= done
        return done


def _dir_info(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = MTIME
    return ti


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = MTIME
    return ti


def _add_transfer_xml(tf: tarfile.TarFile) -> int:
    with open(TRANSFER_XML, "rb") as f:
        data = f.read()
    tf.addfile(_file_info("./transfer.xml", len(data)), io.BytesIO(data))
    return len(data)


def write_many_small(path: str, total: int, pool: bytes, gz: bool = False) -> Dict[str, Any]:
    """./root_0/2023-12/18/dir_NNN/img_NNNNN.tif, 64 KiB each, FILES_PER_DIR per directory."""
    rng = random.Random(7)
    nfiles = max(1, total // SMALL_FILE)
    members = 0
    nbytes = 0
    tf = (tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) if gz
          else tarfile.open(path, "w", format=tarfile.PAX_FORMAT))
    with tf:
        for d in ("./", "./root_0/", "./root_0/2023-12/", "./root_0/2023-12/18/"):
            tf.addfile(_dir_info(d))
        for i in range(nfiles):
            if i % FILES_PER_DIR == 0:
                tf.addfile(_dir_info("./root_0/2023-12/18/dir_{:03d}/".format(i // FILES_PER_DIR)))
            name = "./root_0/2023-12/18/dir_{:03d}/img_{:05d}.tif".format(i // FILES_PER_DIR, i)
            off = rng.randrange(len(pool))
            tf.addfile(_file_info(name, SMALL_FILE), PoolReader(pool, off, SMALL_FILE))
            members += 1
            nbytes += SMALL_FILE
        nbytes += _add_transfer_xml(tf)
        members += 1
    return {"members": members, "bytes": nbytes}


def write_few_large(path: str, total: int, pool: bytes) -> Dict[str, Any]:
    rng = random.Random(11)
    size = max(1, total // LARGE_FILES)
    nbytes = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("./", "./root_0/", "./root_0/2023-12/", "./root_0/2023-12/18/"):
            tf.addfile(_dir_info(d))
        for i in range(LARGE_FILES):
            name = "./root_0/2023-12/18/plate_{}.ome.tiff".format(i)
            tf.addfile(_file_info(name, size), PoolReader(pool, rng.randrange(len(pool)), size))
            nbytes += size
        nbytes += _add_transfer_xml(tf)
    return {"members": LARGE_FILES + 1, "bytes": nbytes}


# ---------------------------------------------------------------------- measurement
def simulate_command() -> List[str]:
    exe = shutil.which("omero-snapshots")
    if exe:
        return [exe, "simulate"]
    return [sys.executable, "-m", "policy.cli", "simulate"]


def _time_prefix() -> Optional[List[str]]:
    if os.path.exists("/usr/bin/time"):
        probe = subprocess.run(["/usr/bin/time", "-v", "true"], capture_output=True, text=True)
        if "Maximum resident set size" in probe.stderr:
            return ["/usr/bin/time", "-v"]
    return None


_WRAPPER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['omero-snapshots'] + sys.argv[1:]\n"
    "try:\n"
    "    from policy.cli import main\n"
    "    code = main()\n"
    "finally:\n"
    "    sys.stderr.write('Maximum resident set size (kbytes): %d\\n' % "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_policy(archive: str, work: str, config: Optional[Dict[str, Any]], label: str) -> Dict[str, Any]:
    zone_dir = os.path.join(work, "zone-" + label)
    calls_file = os.path.join(work, "calls-" + label + ".json")
    cmd = simulate_command()
    argv = [archive, "--omero-user", "bench", "--zone-dir", zone_dir, "--json", "--object", "Image:1"]
    if config is not None:
        cfg_path = os.path.join(work, "config-" + label + ".json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        argv += ["--config", cfg_path]
    prefix = _time_prefix()
    if prefix is not None:
        full = prefix + cmd + argv
    else:
        full = [sys.executable, "-c", _WRAPPER, "simulate"] + argv
    env = dict(os.environ, OMERO_SNAPSHOTS_SIM_CALLS_OUT=calls_file)
    _settle()
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("simulate failed ({}):\n{}\n{}".format(proc.returncode, proc.stdout[-2000:],
                                                                  proc.stderr[-4000:]))
    result = json.loads(lines[-1])
    with open(calls_file, encoding="utf-8") as f:
        calls = json.load(f)[-1]
    avus = {a["attribute"]: a["value"] for a in result.get("entry", {}).get("avus", [])}
    shutil.rmtree(zone_dir, ignore_errors=True)
    return {"status": result["status"], "reason": result.get("reason"), "timings": result["timings"],
            "wall_s": round(wall, 3), "peak_rss_mb": round(int(m.group(1)) / 1024, 1) if m else None,
            "calls": calls, "path": avus.get("omero.snapshot.unpack_path"),
            "members_avu": avus.get("omero.snapshot.member_count")}


def _settle() -> None:
    """Flush dirty pages left by the previous step, so every timed step starts from the same state."""
    if hasattr(os, "sync"):
        os.sync()


def baseline(archive: str, work: str, runs: int) -> Dict[str, Any]:
    """Median of `runs` baseline runs (each: tar -x, then sha256sum of every extracted file)."""
    results = sorted((baseline_once(archive, work) for _ in range(max(1, runs))), key=lambda r: r["seconds"])
    med = dict(results[len(results) // 2])
    med["all_seconds"] = [r["seconds"] for r in results]
    return med


def baseline_once(archive: str, work: str) -> Dict[str, Any]:
    """tar -x into a fresh directory on the same disk, then sha256sum of every extracted file."""
    dest = os.path.join(work, "baseline")
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    _settle()
    t0 = time.perf_counter()
    subprocess.run(["tar", "-x", "-f", archive, "-C", dest], check=True)
    t1 = time.perf_counter()
    out = subprocess.run("find . -type f -print0 | xargs -0 sha256sum", shell=True, cwd=dest, check=True,
                         capture_output=True, text=True).stdout
    t2 = time.perf_counter()
    nfiles = len(out.splitlines())
    shutil.rmtree(dest, ignore_errors=True)
    return {"seconds": round(t2 - t0, 3), "tar_s": round(t1 - t0, 3), "sha256sum_s": round(t2 - t1, 3),
            "files": nfiles}


# What the simulated msiTarFileExtract does inside its ONE call, per member (simzone/native_extract.py); on
# the fast path the policy itself creates nothing under content/, so these counts are the extractor's
# (less the handful of collections the ingest creates, hence "approx.").
NATIVE_INTERNAL = ("create_collection", "open_new", "create_object")


def per_member(calls: Dict[str, Any], members: int, path: Optional[str]) -> Dict[str, Any]:
    process = calls["process"]
    writes = process.get("write", 0)
    catalog = sum(v for k, v in process.items() if k != "write")
    out = {"catalog_calls_per_member": round(catalog / members, 2), "writes_per_member": round(writes / members, 2),
           "catalog_calls": catalog, "writes": writes, "by_name": process}
    if path == "fast":
        own = catalog - sum(process.get(k, 0) for k in NATIVE_INTERNAL)
        out["policy_calls_per_member_excl_native_approx"] = round(own / members, 2)
    return out


# ---------------------------------------------------------------------- driver
def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=None, help="size of each archive's content in MiB (default 1024; "
                    "with --live, the round-6 archive instead)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="where results.json goes")
    ap.add_argument("--keep", action="store_true", help="keep the generated archives and work directory")
    ap.add_argument("--tmp", default=None, help="parent of the temporary work directory (default: $TMPDIR)")
    ap.add_argument("--baseline-runs", type=int, default=3, help="baseline runs per archive; the median is used")
    ap.add_argument("--skip-double", action="store_true", help="skip the 2x few-large flat-memory run")
    live = ap.add_argument_group("live mode (a real iRODS server with the policy installed)")
    live.add_argument("--live", action="store_true", help="measure a real server ($IRODS_ENVIRONMENT_FILE = the "
                      "service account, $IRODS_ADMIN_ENVIRONMENT_FILE = a rodsadmin) instead of the simulated zone")
    live.add_argument("--round6", action="store_true", help="live: the archive of prep-observed round 6 "
                      "(150 x 1 MiB + 2 x 25 MiB, a 200 MiB tar); the default when --size-mb is not given")
    live.add_argument("--runs", type=int, default=None, help="live: runs of each measurement per archive "
                      "(default 1); medians are reported")
    live.add_argument("--no-hcs", action="store_true", help="live: skip the HCS-plate archive (5,000 x 64 KiB)")
    live.add_argument("--hcs-members", type=int, default=None, help="live: files in the HCS-plate archive (default "
                      "5,000; fewer for a short profiling run, not for the goal)")
    live.add_argument("--fast-path", choices=("auto", "never"), default=None, help="live: set unpack.fast_path in "
                      "the server's policy configuration (--server-config, a file on THIS machine) for the run and "
                      "restore the file byte for byte afterwards (default: leave the configuration alone)")
    live.add_argument("--server-config", default=SERVER_CONFIG, help="live: the policy configuration --fast-path "
                      "edits (default {})".format(SERVER_CONFIG))
    live.add_argument("--timeout", type=float, default=LIVE_TIMEOUT_S, help="live: seconds a drop may take to "
                      "reach its final status (default {:.0f})".format(LIVE_TIMEOUT_S))
    args = ap.parse_args(argv)
    if args.live:
        if args.round6 and args.size_mb is not None:
            ap.error("--round6 and --size-mb exclude each other")
        if args.runs is not None and args.runs < 1:
            ap.error("--runs must be at least 1")
        if args.hcs_members is not None and args.hcs_members < 1:
            ap.error("--hcs-members must be at least 1")
        return live_main(args, argv)
    if args.round6 or args.runs is not None or args.no_hcs or args.hcs_members is not None or args.fast_path:
        ap.error("--round6, --runs, --no-hcs, --hcs-members and --fast-path apply to --live only")
    if args.size_mb is None:
        args.size_mb = 1024

    total = args.size_mb * MiB
    work = tempfile.mkdtemp(prefix="unpack-bench-", dir=args.tmp)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print("work dir: {}".format(work), file=sys.stderr)
    default_cfg = default_config_dict()
    streaming_cfg = default_config_dict()
    streaming_cfg["unpack"]["fast_path"] = "never"
    rows: List[Dict[str, Any]] = []
    try:
        pool = make_pool()
        t0 = time.perf_counter()
        archives = []
        for name, writer in (("many-small.tar", lambda p: write_many_small(p, total, pool)),
                             ("few-large.tar", lambda p: write_few_large(p, total, pool)),
                             ("many-small.tar.gz", lambda p: write_many_small(p, total, pool, gz=True))):
            path = os.path.join(work, name)
            info = writer(path)
            archives.append((name, path, info))
            print("generated {} ({} members, {} bytes content, {} bytes archive) at {:.1f}s".format(
                name, info["members"], info["bytes"], os.path.getsize(path), time.perf_counter() - t0),
                file=sys.stderr)
        plans: List[Any] = []
        for name, path, info in archives:
            if name.endswith(".tar.gz"):  # the fast path is for uncompressed tar only
                plans.append((name, path, info, [("default", None)]))
            else:
                plans.append((name, path, info, [("default", default_cfg), ("never", streaming_cfg)]))
        for name, path, info, runs in plans:
            base = baseline(path, work, args.baseline_runs)
            for cfg_label, cfg in runs:
                label = "{}-{}".format(name.replace(".", "_"), cfg_label)
                r = run_policy(path, work, cfg, label)
                pm = per_member(r["calls"], info["members"], r["path"])
                proc_s = r["timings"]["process"]
                row = {"archive": name, "members": info["members"], "bytes": info["bytes"],
                       "archive_bytes": os.path.getsize(path), "config_fast_path": "auto" if cfg_label == "default"
                       else "never", "path": r["path"], "status": r["status"], "reason": r["reason"],
                       "process_s": proc_s, "upload_s": r["timings"]["upload"], "baseline_s": base["seconds"],
                       "baseline": base, "ratio": round(base["seconds"] / proc_s, 3) if proc_s else None,
                       "peak_rss_mb": r["peak_rss_mb"], **pm}
                rows.append(row)
                print("{} [{}]: {} process {:.2f}s baseline {:.2f}s ratio {} rss {} MB calls/member {}".format(
                    name, row["path"], row["status"], proc_s, base["seconds"], row["ratio"], row["peak_rss_mb"],
                    row["catalog_calls_per_member"]), file=sys.stderr)
        flat: Dict[str, Any] = {}
        if not args.skip_double:
            big = os.path.join(work, "few-large-2x.tar")
            info2 = write_few_large(big, 2 * total, pool)
            r1 = next(r for r in rows if r["archive"] == "few-large.tar" and r["config_fast_path"] == "never")
            r2 = run_policy(big, work, streaming_cfg, "few_large_2x-never")
            flat = {"streaming_few_large": [
                {"bytes": r1["bytes"], "peak_rss_mb": r1["peak_rss_mb"], "process_s": r1["process_s"]},
                {"bytes": info2["bytes"], "peak_rss_mb": r2["peak_rss_mb"], "process_s": r2["timings"]["process"],
                 "status": r2["status"]}]}
            if not args.keep:
                os.remove(big)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    table = format_table(rows, flat)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    given = argv if argv is not None else sys.argv[1:]
    doc = {"started": started, "size_mb": args.size_mb, "command": " ".join(["python", "bench/unpack.py"] + given),
           "python": sys.version.split()[0], "rows": rows, "flat_memory": flat, "table": table}
    out = os.path.join(args.out, "unpack-{}mb.json".format(args.size_mb))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print("\nresults: {}".format(out), file=sys.stderr)
    return 0 if all(r["status"] == "complete" for r in rows) else 1


def format_table(rows: List[Dict[str, Any]], flat: Dict[str, Any]) -> str:
    head = ("| archive | members | bytes | path | process s | baseline s | ratio | peak RSS MB | "
            "catalog calls/member | writes/member |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        calls = str(r["catalog_calls_per_member"])
        if "policy_calls_per_member_excl_native_approx" in r:
            calls += " ({} excl. msiTarFileExtract internals)".format(r["policy_calls_per_member_excl_native_approx"])
        lines.append("| {archive} | {members} | {bytes} | {path} | {process_s:.2f} | {baseline_s:.2f} | {ratio} | "
                     "{peak_rss_mb} | {calls} | {writes_per_member} |".format(calls=calls, **r))
    if flat:
        a, b = flat["streaming_few_large"]
        lines.append("")
        lines.append("Flat memory (streaming, few-large): {} bytes -> {} MB peak RSS; {} bytes -> {} MB peak RSS "
                     "({:.2f}s, {:.2f}s)".format(a["bytes"], a["peak_rss_mb"], b["bytes"], b["peak_rss_mb"],
                                                 a["process_s"], b["process_s"]))
    return "\n".join(lines)


# ====================================================================== live mode: a real iRODS server
# Everything below talks to a server only through the objects handed to it (a LiveHarness of tests/harness.py, a
# policy.prc_zone.PrcZone, a python-irodsclient session), so tests/test_bench_live.py drives it with fakes.
ROUND6_SMALL = (150, MiB)  # prep-observed round 6: 150 x 1 MiB + 2 x 25 MiB, a 209,797,120-byte tar
ROUND6_LARGE = (2, 25 * MiB)
LIVE_POLL_S = 0.5  # the status admin rule is called every 0.5 s
LIVE_TIMEOUT_S = 1800.0
LOCK_WAIT_S = 60.0
EXIT_UNAVAILABLE = 2
GOALS = {"fast": 1.5, "streaming": 3.0}  # issue 13: ours / (msiTarFileExtract + checksums) on a real server
BEFORE_PROCESSING = ("received", "queued", "accepted", "unknown")  # `accepted`: the PEP's verdict, not yet a run
BEFORE_VERDICT = ("received", "queued", "unknown")  # what OMERO's Save keeps waiting on (omero_client.snapshots)
FINAL = ("placed", "complete", "failed", "quarantined")
UNPACK_PATH = "omero.snapshot.unpack_path"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"
# The paths go into the rule TEXT as string literals, never as input parameters: parameters reach the rule
# verbatim (prep-observed round 9: `*tar="/z/a.tar"` arrives WITH its quotes), so msiTarFileExtract got
# '"/z/.../transfer.tar"' and '"/z/.../content"'; rsStructFileExtAndReg takes a hint that does not start with
# '/' as a whole zone name (getZoneNameFromHint), the two "zones" differ, and it returns
# SYS_CROSS_ZONE_MV_NOT_SUPPORTED (-109000) before opening anything: what the first real run showed.
# errorcode() keeps the rule going so the msi's code always comes back, as a string in *out (python-irodsclient
# 3.x cannot unpack an INT_PI); the native rule language call shape is round 10's (rodsuser, literals, *s).
NATIVE_EXTRACT_BODY = '*e = errorcode(msiTarFileExtract({tar}, {coll}, {resc}, *s)); *out = "*e"'
# What the codes a real server gave for msiTarFileExtract mean (prep-observed round 10, and the run).
NATIVE_EXTRACT_ERRORS = {-46000: "SYS_COPY_ALREADY_IN_RESC (members already there)",
                         -1821000: "REPLICA_NOT_IN_RESC (archive missing or unreadable on that resource)",
                         -78000: "SYS_RESC_DOES_NOT_EXIST", -818000: "CAT_NO_ACCESS_PERMISSION",
                         -109000: "SYS_CROSS_ZONE_MV_NOT_SUPPORTED (paths with quotes, or in two zones)",
                         -1: "not a tar archive"}
HCS_PLATE = (5000, SMALL_FILE)  # issue 13: an HCS plate's thousands of small files, 5,000 x 64 KiB


class LiveError(Exception):
    """A live run that cannot go on (timeout, a failed call); the message says what happened."""


def write_round6(path: str, pool: bytes, small: Any = ROUND6_SMALL, large: Any = ROUND6_LARGE) -> Dict[str, Any]:
    """The archive of prep-observed round 6: n x 1 MiB + m x 25 MiB regular files and nothing else (no directory
    entries, no transfer.xml, ustar headers only), so 152 members and 209,797,120 bytes."""
    rng = random.Random(6)
    members = nbytes = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for kind, (count, size) in (("img_{:03d}.tif", small), ("plate_{}.ome.tiff", large)):
            for i in range(count):
                name = "./root_0/2023-12/18/" + kind.format(i)
                tf.addfile(_file_info(name, size), PoolReader(pool, rng.randrange(len(pool)), size))
                members += 1
                nbytes += size
    return {"members": members, "bytes": nbytes}


def write_hcs_plate(path: str, pool: bytes, count: Optional[int] = None, size: Optional[int] = None
                    ) -> Dict[str, Any]:
    """An HCS plate's shape: `count` files of `size` bytes (HCS_PLATE: 5,000 x 64 KiB), one well per directory
    (./plate/<row><col>/field_NNN.tif, 96 wells), with a transfer.xml like an omero-cli-transfer packet."""
    count = HCS_PLATE[0] if count is None else count
    size = HCS_PLATE[1] if size is None else size
    rng = random.Random(13)
    wells = ["{}{:02d}".format(r, c) for r in "ABCDEFGH" for c in range(1, 13)]
    members = nbytes = 0
    made = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_dir_info("./"))
        tf.addfile(_dir_info("./plate/"))
        for i in range(count):
            well = wells[i % len(wells)]
            if well not in made:
                tf.addfile(_dir_info("./plate/{}/".format(well)))
                made.add(well)
            name = "./plate/{}/field_{:03d}.tif".format(well, i // len(wells))
            tf.addfile(_file_info(name, size), PoolReader(pool, rng.randrange(len(pool)), size))
            members += 1
            nbytes += size
        nbytes += _add_transfer_xml(tf)
        members += 1
    return {"members": members, "bytes": nbytes}


def live_archives(args: Any, work: str, pool: bytes) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(name, local path, {members, bytes}) of the archives a live run measures (uncompressed tar only: the
    native extraction the goals compare with is for tar, and so is our fast path). The HCS plate
    (5,000 x 64 KiB) is measured in every mode unless --no-hcs."""
    if args.size_mb is None:
        plan = [("round6.tar", lambda p: write_round6(p, pool))]
    else:
        total = args.size_mb * MiB
        plan = [("many-small.tar", lambda p: write_many_small(p, total, pool)),
                ("few-large.tar", lambda p: write_few_large(p, total, pool))]
    if not getattr(args, "no_hcs", False):
        count = getattr(args, "hcs_members", None)
        name = "hcs-5000x64k.tar" if count is None else "hcs-{}x64k.tar".format(count)  # the goal's, or a trial's
        plan.append((name, lambda p: write_hcs_plate(p, pool, count)))
    out = []
    for name, writer in plan:
        path = os.path.join(work, name)
        info = writer(path)
        out.append((name, path, info))
        print("generated {} ({} members, {} bytes content, {} bytes archive)".format(
            name, info["members"], info["bytes"], os.path.getsize(path)), file=sys.stderr)
    return out


def sha256_of(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------- ours: a drop, as OMERO makes it
def upload_like_omero(zone: Any, landing: str, drop_id: str, archive: str, manifest: bytes,
                      clock: Optional[Callable[[], float]] = None, marks: Optional[Dict[str, float]] = None) -> float:
    """omero_client.save's steps for a ready-made archive: create landing/<drop_id>, mark it `uploading`, stream
    the archive into transfer.tar in 1 MiB writes, unmark, write manifest.json LAST (the commit marker the
    server's PEP waits for). Returns clock() right after the manifest's close."""
    from omero_client.save import ARCHIVE_NAME, UPLOADING, _write_manifest, uploading_reason
    from omero_client.upload import CHUNK
    from policy import vocabulary as V
    from policy.zone import MetaOp

    drop = landing + "/" + drop_id
    zone.create_collection(drop)
    reason = uploading_reason()
    zone.apply_metadata(drop, [MetaOp("add", V.STATUS, UPLOADING), MetaOp("add", V.REASON, reason)])
    writer = zone.open_new(drop + "/" + ARCHIVE_NAME)
    try:
        with open(archive, "rb") as f:
            shutil.copyfileobj(f, writer, CHUNK)
    finally:
        writer.close()
    zone.apply_metadata(drop, [MetaOp("remove", V.STATUS, UPLOADING), MetaOp("remove", V.REASON, reason)])
    if marks is not None:
        marks["manifest_write"] = (clock or time.perf_counter)()  # its close runs the upload PEP (the verdict)
    _write_manifest(zone, drop, manifest)  # the same helper OMERO's save uses (it cleans up on failure)
    return (clock or time.perf_counter)()


def landing_record(admin: Any, drop: str) -> Tuple[Optional[str], Optional[str]]:
    """(status, updated) of the drop's landing record as the admin sees it; (None, None) once it is gone."""
    from policy import vocabulary as V
    from policy.errors import NotFound

    try:
        avus = admin.metadata(drop)
    except NotFound:
        return None, None
    return V.first(avus, V.STATUS), V.first(avus, V.UPDATED)


def is_done(poll: Dict[str, Any]) -> bool:
    """Final for the status rule AND for the landing record, which the policy writes last (after the hand-over
    of the snapshot); a record that is gone (quarantine moved it) does not hold anything up."""
    return poll["status"] in FINAL and (poll["landing_status"] is None or poll["landing_status"] in FINAL)


def poll_drop(status_fn: Callable[[], Dict[str, Any]], landing_fn: Callable[[], Tuple[Optional[str], Optional[str]]],
              t0: float, timeout: float, clock: Optional[Callable[[], float]] = None,
              sleep: Optional[Callable[[float], None]] = None, interval: Optional[float] = None
              ) -> List[Dict[str, Any]]:
    """Call the status rule (and read the landing record) every `interval` s from t0 until the drop is done.

    Each poll: t (seconds since t0, taken when the answers are in: the state it shows was reached by then),
    the status rule's status and snapshot, the landing record's status and `updated` AVU.
    """
    clock, sleep = clock or time.perf_counter, sleep or time.sleep
    interval = LIVE_POLL_S if interval is None else interval
    polls: List[Dict[str, Any]] = []
    next_at = t0
    while True:
        st = status_fn()
        landing_status, updated = landing_fn()
        poll = {"t": round(clock() - t0, 3), "status": st.get("status"), "snapshot": st.get("snapshot"),
                "reason": st.get("reason"), "landing_status": landing_status, "landing_updated": updated}
        polls.append(poll)
        if is_done(poll):
            return polls
        if poll["t"] > timeout:
            raise LiveError("the drop did not reach a final state within {:.0f}s (is the delay server running, and is "
                            "the uploading account the policy's service account?); last status: {}".format(
                                timeout, {k: poll[k] for k in ("status", "landing_status", "reason")}))
        next_at += interval
        sleep(max(0.0, next_at - clock()))


def _utc_seconds(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def derive_timings(polls: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Our time and the delay server's queue wait, from the polls of one drop.

    - total_s: t of the first poll that saw the drop done (so at most one interval plus a poll late);
    - queue wait (polls): the drop left `queued` between the last poll that still showed it queued (or the
      manifest's close) and the first that showed anything else; the estimate is the middle of that interval;
    - queue wait (AVUs): the landing record's `updated` when first seen `processing` minus when first seen
      `queued` (the server's clock, whole seconds; None when a state was never seen by a poll);
    - excl_s = total_s - the polls' queue-wait estimate: the policy's own time;
    - verdict_s: t of the first poll that showed what OMERO's Save answers with (anything past `queued`: the
      upload PEP's `accepted` with the snapshot's place, a refusal, or a later state). An upper bound: that
      state was reached before the poll's answer came.
    """
    done = next((i for i, p in enumerate(polls) if is_done(p)), None)
    out: Dict[str, Any] = {"polls": len(polls), "status": polls[-1]["status"] if polls else None}
    if done is None:
        return out
    total = polls[done]["t"]
    first_past = next((i for i, p in enumerate(polls) if p["status"] not in BEFORE_PROCESSING), done)
    upper = polls[first_past]["t"]
    lower = polls[first_past - 1]["t"] if first_past > 0 else 0.0
    wait = (lower + upper) / 2
    first_verdict = next((i for i, p in enumerate(polls) if p["status"] not in BEFORE_VERDICT), done)
    seen: Dict[str, Optional[float]] = {}
    for p in polls:
        if p["landing_status"] in ("queued", "accepted", "processing") and p["landing_status"] not in seen:
            seen[p["landing_status"]] = _utc_seconds(p["landing_updated"])
    queued_at = seen.get("queued") if seen.get("queued") is not None else seen.get("accepted")
    processing_at = seen.get("processing")
    avu_wait = processing_at - queued_at if queued_at is not None and processing_at is not None else None
    out.update({"total_s": round(total, 3), "done_after_s": round(polls[done - 1]["t"] if done else 0.0, 3),
                "queue_wait_s": round(wait, 3), "queue_wait_bounds_s": [round(lower, 3), round(upper, 3)],
                "queue_wait_avu_s": avu_wait, "excl_s": round(total - wait, 3), "status": polls[done]["status"],
                "verdict_s": polls[first_verdict]["t"], "verdict_status": polls[first_verdict]["status"],
                "snapshot": polls[done]["snapshot"], "reason": polls[done]["reason"]})
    return out


def run_ours(h: Any, archive: str, info: Dict[str, Any], sha256: str, omero_user: str, timeout: float,
             clock: Optional[Callable[[], float]] = None, sleep: Optional[Callable[[float], None]] = None,
             interval: Optional[float] = None, wall: Optional[Callable[[], float]] = None) -> Dict[str, Any]:
    """One drop through the installed policy, timed from the manifest's close to the final status."""
    clock, sleep, wall = clock or time.perf_counter, sleep or time.sleep, wall or time.time
    interval = LIVE_POLL_S if interval is None else interval
    from omero_client.save import ARCHIVE_NAME
    from policy import vocabulary as V
    from policy.manifest import build_manifest, manifest_to_json, new_drop_id

    drop_id = new_drop_id()
    h.drops.append(drop_id)  # LiveHarness.close() removes it (and the snapshot, with the user's home)
    doc = build_manifest(drop_id=drop_id, omero_user=omero_user, omero_user_id=52, omero_group="bench",
                         omero_server=h.omero_server, objects={"Image": [1]}, archive_name=ARCHIVE_NAME,
                         archive_size=os.path.getsize(archive), archive_sha256=sha256, archive_format="tar",
                         packer_version="1.3.2", label="unpack bench")
    started = clock()
    marks: Dict[str, float] = {}
    t0 = upload_like_omero(h.svc, h.landing, drop_id, archive, manifest_to_json(doc), clock, marks)
    manifest_epoch = wall()  # the manifest's close on this machine's clock (the rule's stats use the server's)
    drop = h.landing + "/" + drop_id
    polls = poll_drop(lambda: h.admin_rule("omero_snapshots_status", drop_id), lambda: landing_record(h.admin, drop),
                      t0, timeout, clock, sleep, interval)
    timings = derive_timings(polls)
    run: Dict[str, Any] = {"drop_id": drop_id, "upload_s": round(t0 - started, 3),
                           "manifest_write_s": round(t0 - marks.get("manifest_write", t0), 3), **timings,
                           "timeline": [(p["t"], p["status"], p["landing_status"]) for p in polls]}
    snapshot = timings.get("snapshot")
    if snapshot:
        avus = V.as_dict(h.admin.metadata(snapshot))
        run["path"] = (avus.get(UNPACK_PATH) or [None])[0]
        run["member_count_avu"] = (avus.get(V.MEMBER_COUNT) or [None])[0]
        run["member_bytes_avu"] = (avus.get(V.MEMBER_BYTES) or [None])[0]
        run.update(rule_stats((avus.get(UNPACK_STATS) or [None])[0], manifest_epoch))
    # Not timed: let the run release its lock before the next drop (LiveHarness.wait does the same).
    lock = h.landing + "/.locks/" + drop_id
    deadline = clock() + LOCK_WAIT_S
    while h.exists(lock) and clock() < deadline:
        sleep(interval)
    return run


UNPACK_STATS = "omero.snapshot.unpack_stats"
SERVER_CONFIG = "/etc/irods/omero_snapshots/config.json"


class ServerConfigEdit:
    """unpack.fast_path set in the server's policy configuration for one run, the file restored byte for byte
    (content, mode, owner, times) on exit: the policy re-reads config.json when it changes, so no restart."""

    def __init__(self, path: str, fast_path: Optional[str]) -> None:
        self.path, self.fast_path = path, fast_path
        self._saved: Optional[bytes] = None
        self._stat: Any = None

    def __enter__(self) -> "ServerConfigEdit":
        if self.fast_path is None:
            return self
        with open(self.path, "rb") as f:
            self._saved = f.read()
        self._stat = os.stat(self.path)
        doc = json.loads(self._saved.decode("utf-8"))
        doc.setdefault("unpack", {})["fast_path"] = self.fast_path
        self._write(json.dumps(doc, indent=4).encode("utf-8") + b"\n")
        return self

    def _write(self, data: bytes) -> None:
        tmp = self.path + ".bench-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, self._stat.st_mode & 0o7777)
        if hasattr(os, "chown"):
            try:
                os.chown(tmp, self._stat.st_uid, self._stat.st_gid)
            except PermissionError:
                pass
        os.replace(tmp, self.path)

    def __exit__(self, *exc: Any) -> None:
        if self._saved is None:
            return
        self._write(self._saved)
        os.utime(self.path, ns=(self._stat.st_atime_ns, self._stat.st_mtime_ns))
        self._saved = None


def rule_stats(text: Optional[str], manifest_epoch: Optional[float]) -> Dict[str, Any]:
    """What the delayed rule measured itself (policy.unpack's unpack_stats AVU): its unpack time and phases, the
    peak RSS of the agent that ran it, and (across two clocks: this machine's and the server's) the time from
    the manifest's close to the start of the unpack."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {"rule_stats_error": "unreadable unpack_stats AVU: {!r}".format(text[:200])}
    peak_kb = doc.get("vmhwm_kb") or doc.get("ru_maxrss_kb")
    out: Dict[str, Any] = {"rule_unpack_s": doc.get("seconds"), "rule_phases": doc.get("phases"),
                           "rule_writers": doc.get("writers"), "agent_pid": doc.get("pid"),
                           "agent_peak_rss_mb": round(peak_kb / 1024, 1) if peak_kb else None,
                           "agent_rss_at_end_mb": round(doc["vmrss_kb"] / 1024, 1) if doc.get("vmrss_kb") else None,
                           "agent_rss_at_start_mb": round(doc["vmrss_start_kb"] / 1024, 1)
                           if doc.get("vmrss_start_kb") else None}
    out["rule_stats_doc"] = doc  # everything the rule recorded (e.g. its data-plane call counts)
    if manifest_epoch is not None and doc.get("started") is not None:
        out["manifest_to_unpack_start_s"] = round(float(doc["started"]) - manifest_epoch, 3)
    return out


# ---------------------------------------------------------------------- the baseline: plain msiTarFileExtract
def native_extract_call(tar: str, coll: str, resc: str) -> Tuple[str, Dict[str, str], str]:
    """Body, input parameters and output label of the rule that runs msiTarFileExtract: the three values as
    string literals IN the rule text (refused rather than escaped when they could end the literal or be
    interpolated: policy.irods_rules_client.rule_literal), only the output as a parameter."""
    from policy.irods_rules_client import rule_literal

    body = NATIVE_EXTRACT_BODY.format(tar=rule_literal(tar), coll=rule_literal(coll), resc=rule_literal(resc))
    return body, {"*out": ""}, "*out"


def run_native_extract(session: Any, tar: str, coll: str, resc: str, rule_class: Any = None) -> int:
    """msiTarFileExtract(tar, coll, resc) as the session's user through the native rule language instance, which
    a rodsuser may run; returns the msi's status (0), LiveError when the server reports none or an error."""
    if rule_class is None:
        from irods.rule import Rule

        rule_class = Rule
    body, params, output = native_extract_call(tar, coll, resc)
    rule = rule_class(session, body=body, params=params, output=output, instance_name=NATIVE_INSTANCE)
    result = rule.execute(session_cleanup=False)  # cleanup would drop every connection of the session
    try:
        answers = list(result.MsParam_PI or [])
    except (AttributeError, KeyError):
        answers = []
    text = next((getattr(p.inOutStruct, "myStr", None) for p in answers
                 if getattr(p, "label", None) == output and getattr(p, "type", None) == "STR_PI"), None)
    try:
        status = int(str(text).strip())
    except ValueError:
        raise LiveError("msiTarFileExtract returned no status ({!r}): the rule failed".format(text)) from None
    if status < 0:
        raise LiveError("msiTarFileExtract failed with status {}{}".format(
            status, " ({})".format(NATIVE_EXTRACT_ERRORS[status]) if status in NATIVE_EXTRACT_ERRORS else ""))
    return status


def archive_resource(session: Any, path: str) -> str:
    """The resource the archive's replica is on (the root of its hierarchy): where the policy's fast path
    extracts too (it extracts onto the archive's own resource)."""
    obj = session.data_objects.get(path)
    replica = obj.replicas[0]
    return str(getattr(replica, "resc_hier", None) or replica.resource_name).split(";")[0]


def native_baseline(zone: Any, archive: str, scratch: str, clock: Optional[Callable[[], float]] = None,
                    rule_class: Any = None) -> Dict[str, Any]:
    """As the service account: the archive into a scratch collection (not timed), msiTarFileExtract into
    <scratch>/content (timed), then the listing and a checksum of every extracted object (timed); the scratch
    collection is removed afterwards, whatever happened."""
    from policy.zone import DATA_OBJECT

    clock = clock or time.perf_counter
    session = zone.session
    out: Dict[str, Any] = {"scratch": scratch}
    zone.create_collection(scratch)
    try:
        tar = scratch + "/transfer.tar"
        t = clock()
        writer = zone.open_new(tar)
        try:
            with open(archive, "rb") as f:
                shutil.copyfileobj(f, writer, MiB)
        finally:
            writer.close()
        out["upload_s"] = round(clock() - t, 3)
        resc = archive_resource(session, tar)
        content = scratch + "/content"
        t0 = clock()
        out["msi_status"] = run_native_extract(session, tar, content, resc, rule_class)
        t1 = clock()
        objects = [p for p, kind in zone.walk(content) if kind == DATA_OBJECT]
        t2 = clock()
        sums = [session.data_objects.chksum(p) for p in objects]
        t3 = clock()
        scheme = sums[0].split(":", 1)[0] if sums and ":" in sums[0] else ("md5" if sums else None)
        out.update({"resource": resc, "objects": len(objects), "checksum_scheme": scheme,
                    "extract_s": round(t1 - t0, 3), "list_s": round(t2 - t1, 3), "chksum_s": round(t3 - t2, 3),
                    "checksums_s": round(t3 - t1, 3), "total_s": round(t3 - t0, 3)})
    finally:
        try:
            session.collections.remove(scratch, recurse=True, force=True)
        except Exception as e:  # noqa: BLE001 - reported, the measurement stands
            out["cleanup_error"] = "{}: {}".format(type(e).__name__, e)
    return out


# ---------------------------------------------------------------------- figures
def _median(values: List[float]) -> Optional[float]:
    import statistics

    return round(statistics.median(values), 3) if values else None


def summarise(name: str, info: Dict[str, Any], archive_bytes: int, ours: List[Dict[str, Any]],
              native: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One table row: medians over the runs that worked, the ratio and the goal of issue 13 for our path.

    ratio = ours (excl. queue wait) / (msiTarFileExtract + listing + checksums): the same result (objects with
    checksums); ratio_extract_only = ours / msiTarFileExtract alone, the stricter reading of the goal.
    """
    good = [r for r in ours if r.get("status") == "complete" and r.get("total_s") is not None]
    base = [r for r in native if r.get("total_s") is not None]
    statuses = sorted({str(r.get("status") or "error") for r in ours})
    paths = sorted({str(r["path"]) for r in ours if r.get("path")})
    row: Dict[str, Any] = {
        "archive": name, "members": info["members"], "bytes": info["bytes"], "archive_bytes": archive_bytes,
        "status": "/".join(statuses), "path": "/".join(paths) or None,
        "ours_s": _median([r["total_s"] for r in good]), "ours_excl_s": _median([r["excl_s"] for r in good]),
        "queue_wait_s": _median([r["queue_wait_s"] for r in good]),
        "verdict_s": _median([r["verdict_s"] for r in good if r.get("verdict_s") is not None]),
        "manifest_write_s": _median([r["manifest_write_s"] for r in good if r.get("manifest_write_s") is not None]),
        "queue_wait_avu_s": _median([r["queue_wait_avu_s"] for r in good if r.get("queue_wait_avu_s") is not None]),
        "native_extract_s": _median([r["extract_s"] for r in base]),
        "native_s": _median([r["total_s"] for r in base]),
        "native_objects": sorted({r["objects"] for r in base}), "ours_runs": ours, "native_runs": native,
        "rule_unpack_s": _median([r["rule_unpack_s"] for r in good if r.get("rule_unpack_s") is not None]),
        "manifest_to_unpack_start_s": _median([r["manifest_to_unpack_start_s"] for r in good
                                               if r.get("manifest_to_unpack_start_s") is not None]),
        "agent_peak_rss_mb": max([r["agent_peak_rss_mb"] for r in good if r.get("agent_peak_rss_mb")], default=None),
        "rule_phases": _median_phases([r.get("rule_phases") or {} for r in good])}
    ours_s, native_s, extract_s = row["ours_excl_s"], row["native_s"], row["native_extract_s"]
    row["ratio"] = round(ours_s / native_s, 3) if ours_s is not None and native_s else None
    row["ratio_extract_only"] = round(ours_s / extract_s, 3) if ours_s is not None and extract_s else None
    rule_s = row["rule_unpack_s"]
    row["ratio_rule_unpack"] = round(rule_s / native_s, 3) if rule_s is not None and native_s else None
    goal = GOALS.get(row["path"] or "")
    row["goal"] = goal
    row["goal_met"] = None if goal is None or row["ratio"] is None else row["ratio"] <= goal
    row["goal_met_extract_only"] = (None if goal is None or row["ratio_extract_only"] is None
                                    else row["ratio_extract_only"] <= goal)
    return row


def _median_phases(runs: List[Dict[str, float]]) -> Dict[str, Optional[float]]:
    names = sorted({k for r in runs for k in r})
    return {k: _median([r[k] for r in runs if k in r]) for k in names}


def _num(value: Optional[float]) -> str:
    return "-" if value is None else "{:.2f}".format(value)


def _goal_text(row: Dict[str, Any]) -> str:
    if row["goal"] is None:
        return "-"
    met = {True: "met", False: "NOT met", None: "n/a"}
    text = "{} <= {:g}x: {}".format(row["path"], row["goal"], met[row["goal_met"]])
    if row["goal_met_extract_only"] is not None and row["goal_met_extract_only"] != row["goal_met"]:
        text += " ({} vs extract alone)".format(met[row["goal_met_extract_only"]])
    return text


def format_live_table(rows: List[Dict[str, Any]]) -> str:
    head = ("| archive | members | bytes | our path | ours s (incl. / excl. queue wait) | manifest -> verdict s | "
            "manifest -> processing s | unpack s (rule's own) | agent peak RSS MB | msiTarFileExtract s | "
            "+checksums s | ratio ours/native | goal |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        path = r["path"] or "-"
        if r["status"] != "complete":
            path += " ({})".format(r["status"])
        wait = _num(r["queue_wait_s"])
        if r["queue_wait_avu_s"] is not None:
            wait += " (AVUs: {:g})".format(r["queue_wait_avu_s"])
        ratio = "-" if r["ratio"] is None else "{:.2f}".format(r["ratio"])
        if r["ratio_extract_only"] is not None:
            ratio += " ({:.2f} vs extract alone)".format(r["ratio_extract_only"])
        rule = _num(r.get("rule_unpack_s"))
        if r.get("ratio_rule_unpack") is not None:
            rule += " ({:.2f}x)".format(r["ratio_rule_unpack"])
        lines.append("| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["archive"], r["members"], r["bytes"], path, _num(r["ours_s"]), _num(r["ours_excl_s"]),
            _num(r.get("verdict_s")), wait, rule,
            _num(r.get("agent_peak_rss_mb")), _num(r["native_extract_s"]), _num(r["native_s"]), ratio,
            _goal_text(r)))
    return "\n".join(lines)


LIVE_NOTES = """\
- our path: what the snapshot reports (omero.snapshot.unpack_path). To measure the other path, run with
  --fast-path never (or auto) on the server's machine: the policy configuration (--server-config) is set for
  the run and restored byte for byte afterwards; without it the configuration is left alone.
- ours s incl.: from the manifest's close to the drop's final status (status admin rule polled every 0.5 s,
  so up to 0.5 s late); it includes the delay server's pickup (the policy's delay_seconds plus up to the
  delay server's sleep interval, 30 s on the docker/ stack). excl.: minus the queue wait, the middle of the
  interval between the last poll that showed the drop queued and the first that showed it processing
  (+-0.25 s); "AVUs": the same wait from the landing record's omero.snapshot.updated (whole seconds).
- manifest -> verdict s: from the manifest's close to the first poll showing what OMERO's Save answers with
  (the upload PEP's `accepted` with the snapshot's place, or a refusal; issue 20), median; an upper bound
  (the poll that saw it, every 0.5 s). The manifest's own write and close (which runs the upload PEP, and so
  the verdict) is in the JSON as manifest_write_s.
- manifest -> processing s: the queue wait above, apart (the delay server's pickup, not the policy's work).
- unpack s (rule's own): the unpack step as the delayed rule timed it itself (omero.snapshot.unpack_stats AVU:
  scan, extraction or streaming, verification, transfer.xml; phases in the JSON), and in parentheses its ratio
  to +checksums; agent peak RSS MB: that AVU's peak resident size (VmHWM, else ru_maxrss) of the agent process
  that ran the delayed rule (its whole life, so an upper bound for the unpack), the largest over the runs.
- msiTarFileExtract s: the plain native extraction of the same archive, as the service account, through the
  native rule language (paths as literals in the rule text); +checksums s: that plus listing and
  checksumming every extracted object one after another (what ichksum -r does).
- ratio ours/native = ours excl. / +checksums (the same result: objects with checksums); the goal of issue 13
  (fast <= 1.5x, streaming <= 3x) is judged on it, and against msiTarFileExtract alone in parentheses."""


# ---------------------------------------------------------------------- driver
def open_live(work: str) -> Any:
    """A LiveHarness on the configured zone, or LiveUnavailable saying why not (tests replace this)."""
    from tests.harness import LiveHarness, LiveUnavailable, live_configuration, probe

    svc_env, admin_env = live_configuration()
    try:
        import irods  # noqa: F401
    except ImportError:
        raise LiveUnavailable("python-irodsclient is not installed (pip install -e '.[test]')") from None
    try:
        probe(svc_env, admin_env)
    except LiveUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - wrong password, expired certificate, ...: not usable either
        raise LiveUnavailable("live iRODS not usable: {}: {}".format(type(e).__name__, e)) from None
    try:
        return LiveHarness(svc_env, admin_env, workdir=os.path.join(work, "harness"))
    except Exception as e:  # noqa: BLE001
        raise LiveUnavailable("live iRODS not usable: {}: {}".format(type(e).__name__, e)) from None


def measure_live(h: Any, args: Any, work: str, omero_user: str, runs: int) -> List[Dict[str, Any]]:
    """For each archive, `runs` times: ours (a drop through the policy), then the native baseline."""
    rows = []
    pool = make_pool()
    for name, path, info in live_archives(args, work, pool):
        sha256 = sha256_of(path)
        ours: List[Dict[str, Any]] = []
        native: List[Dict[str, Any]] = []
        for k in range(runs):
            try:
                r = run_ours(h, path, info, sha256, omero_user, args.timeout)
            except Exception as e:  # noqa: BLE001 - recorded, the other measurements go on
                r = {"status": "error", "error": "{}: {}".format(type(e).__name__, e)}
            ours.append(r)
            note = r.get("error") or r.get("reason")
            print("{} run {}: ours {} [{}] total {} s, manifest write+close {} s, verdict {} s ({}), queue wait {} s, "
                  "excl. {} s{}".format(name, k + 1, r.get("status"), r.get("path"), r.get("total_s"),
                                        r.get("manifest_write_s"), r.get("verdict_s"), r.get("verdict_status"),
                                        r.get("queue_wait_s"), r.get("excl_s"), "; " + str(note) if note else ""),
                  file=sys.stderr)
            scratch = "/{}/home/{}/unpack-bench-{}".format(h.zone_name, h.service_account, h.unique("s"))
            try:
                b = native_baseline(h.svc, path, scratch)
            except Exception as e:  # noqa: BLE001
                b = {"scratch": scratch, "error": "{}: {}".format(type(e).__name__, e)}
            native.append(b)
            print("{} run {}: msiTarFileExtract {} s, +checksums {} s ({} objects, {}){}".format(
                name, k + 1, b.get("extract_s"), b.get("total_s"), b.get("objects"), b.get("checksum_scheme"),
                "; " + b["error"] if b.get("error") else ""), file=sys.stderr)
        rows.append(summarise(name, info, os.path.getsize(path), ours, native))
    return rows


def live_main(args: Any, argv: Optional[List[str]]) -> int:
    from tests.harness import LiveUnavailable

    runs = args.runs or 1
    work = tempfile.mkdtemp(prefix="unpack-bench-live-", dir=args.tmp)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        h = open_live(work)
    except LiveUnavailable as e:
        shutil.rmtree(work, ignore_errors=True)
        print("unpack.py --live: {}".format(e), file=sys.stderr)
        return EXIT_UNAVAILABLE
    print("work dir: {}; zone {}, service account {}, landing {}".format(
        work, h.zone_name, h.service_account, h.landing), file=sys.stderr)
    rows: List[Dict[str, Any]] = []
    teardown_error: Optional[str] = None
    setup_error: Optional[str] = None
    try:
        try:
            user, omero_user = h.researcher()  # a new rodsuser and OMERO identity, enrolled by the admin rule
        except Exception as e:  # noqa: BLE001
            setup_error = "could not create and enrol a test user: {}: {}".format(type(e).__name__, e)
        else:
            print("enrolled test user {} (OMERO {}@{})".format(user, omero_user, h.omero_server), file=sys.stderr)
            with ServerConfigEdit(args.server_config, args.fast_path):
                rows = measure_live(h, args, work, omero_user, runs)
    finally:
        try:
            h.close()
        except Exception as e:  # noqa: BLE001 - reported below; the figures are still written
            teardown_error = str(e)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if setup_error:
        print("unpack.py --live: {}{}".format(setup_error, "; " + teardown_error if teardown_error else ""),
              file=sys.stderr)
        return 1

    table = format_live_table(rows)
    print(table)
    print("\n" + LIVE_NOTES)
    if teardown_error:
        print("\nWARNING: " + teardown_error, file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    given = argv if argv is not None else sys.argv[1:]
    label = "round6" if args.size_mb is None else "{}mb".format(args.size_mb)
    doc = {"started": started, "mode": "live", "archives": label, "runs": runs, "fast_path_set": args.fast_path,
           "command": " ".join(["python", "bench/unpack.py"] + list(given)), "python": sys.version.split()[0],
           "zone": h.zone_name, "service_account": h.service_account, "landing": h.landing,
           "poll_interval_s": LIVE_POLL_S, "rows": rows, "table": table, "notes": LIVE_NOTES,
           "teardown_error": teardown_error}
    out = os.path.join(args.out, "unpack-live-{}.json".format(label))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    print("\nresults: {}".format(out), file=sys.stderr)
    ok = rows and all(r["status"] == "complete" and r["native_s"] is not None and
                      all(not b.get("error") for b in r["native_runs"]) for r in rows)
    return 0 if ok and not teardown_error else 1


if __name__ == "__main__":
    sys.exit(main())
