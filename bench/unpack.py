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

Only the simulated zone is measured: a live mode against a real iRODS server is NOT implemented
(see bench/README.md).
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
from typing import Any, Dict, List, Optional

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
    ap.add_argument("--size-mb", type=int, default=1024, help="size of each archive's content in MiB (default 1024)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="where results.json goes")
    ap.add_argument("--keep", action="store_true", help="keep the generated archives and work directory")
    ap.add_argument("--tmp", default=None, help="parent of the temporary work directory (default: $TMPDIR)")
    ap.add_argument("--baseline-runs", type=int, default=3, help="baseline runs per archive; the median is used")
    ap.add_argument("--skip-double", action="store_true", help="skip the 2x few-large flat-memory run")
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
