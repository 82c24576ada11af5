"""Profile one run of the whole server policy on the simulated zone: where does the time go?

    python bench/profile_unpack.py [--shape round6|hcs|many-small] [--fast-path auto|never] [--top N]

Generates one archive (round6: 150 x 1 MiB + 2 x 25 MiB; hcs: 5,000 x 64 KiB; many-small: 256 MiB of
64 KiB files), runs `omero-snapshots simulate` on it IN this process under cProfile, and prints the
functions with the most own time and the most cumulative time, plus the catalog's call counts. Not a
test and no timing is asserted; the simulated zone stands in for a server (bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def main(argv: Optional[List[str]] = None) -> int:
    import unpack as bench  # bench/unpack.py

    from policy.config import default_config_dict

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("round6", "hcs", "many-small"), default="round6")
    ap.add_argument("--fast-path", choices=("auto", "never"), default="auto")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="unpack-profile-", dir=args.tmp)
    try:
        pool = bench.make_pool()
        archive = os.path.join(work, args.shape + ".tar")
        if args.shape == "round6":
            info = bench.write_round6(archive, pool)
        elif args.shape == "hcs":
            info = bench.write_hcs_plate(archive, pool)
        else:
            info = bench.write_many_small(archive, 256 * bench.MiB, pool)
        cfg = default_config_dict()
        cfg["unpack"]["fast_path"] = args.fast_path
        cfg_path = os.path.join(work, "config.json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        from policy.cli import main as cli

        calls = os.path.join(work, "calls.json")
        os.environ["OMERO_SNAPSHOTS_SIM_CALLS_OUT"] = calls
        out = io.StringIO()
        prof = cProfile.Profile()
        real_stdout = sys.stdout
        sys.stdout = out
        try:
            prof.enable()
            rc = cli(["simulate", archive, "--omero-user", "bench", "--zone-dir", os.path.join(work, "zone"),
                      "--json", "--object", "Image:1", "--config", cfg_path])
            prof.disable()
        finally:
            sys.stdout = real_stdout
        result = json.loads([ln for ln in out.getvalue().splitlines() if ln.startswith("{")][-1])
        avus = {a["attribute"]: a["value"] for a in result.get("entry", {}).get("avus", [])}
        print("archive {} ({} members, {} bytes); exit {}; status {}; path {}; timings {}".format(
            args.shape, info["members"], info["bytes"], rc, result["status"],
            avus.get("omero.snapshot.unpack_path"), result["timings"]))
        print("unpack_stats: {}".format(avus.get("omero.snapshot.unpack_stats")))
        with open(calls, encoding="utf-8") as f:
            print("catalog calls during processing: {}".format(json.load(f)[-1]["process"]))
        for key in ("tottime", "cumulative"):
            s = io.StringIO()
            pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(args.top)
            print("\n--- by {} ---".format(key))
            print("\n".join(s.getvalue().splitlines()[6:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
