"""Before/after on the simulated zone, in ONE run: the same archives and baselines for two source trees.

    python bench/compare_trees.py --before DIR [--size-mb N] [--reps K] [--out FILE]

DIR is another checkout of this project (e.g. `git archive <commit> | tar -x -C DIR`). Each archive of
bench/unpack.py (many-small.tar, few-large.tar, many-small.tar.gz) is generated once; its baseline
(`tar -x` + `sha256sum`, median of 3) is measured once; then, K times, each tree's `simulate` runs it
(fast path where allowed, then streaming), the two trees alternating and their order swapped every
repetition, so that load from other processes falls on both alike. Reported per archive and path: the
median process time of each tree, its ratio baseline / process (as bench/unpack.py), and the peak RSS.
No time is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv: Optional[List[str]] = None) -> int:
    import unpack as bench  # bench/unpack.py of THIS tree: generators, baseline, run_policy

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the other source tree")
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args(argv)
    trees = {"before": os.path.abspath(args.before), "after": bench.ROOT}
    from policy.config import default_config_dict

    default_cfg = default_config_dict()
    default_cfg["unpack"].pop("parallel_writers", None)  # a field the other tree's schema may not know
    streaming_cfg = json.loads(json.dumps(default_cfg))
    streaming_cfg["unpack"]["fast_path"] = "never"
    work = tempfile.mkdtemp(prefix="unpack-compare-", dir=args.tmp)
    total = args.size_mb * bench.MiB
    rows: List[Dict[str, Any]] = []
    try:
        pool = bench.make_pool()
        for name, writer in (("many-small.tar", lambda p: bench.write_many_small(p, total, pool)),
                             ("few-large.tar", lambda p: bench.write_few_large(p, total, pool)),
                             ("many-small.tar.gz", lambda p: bench.write_many_small(p, total, pool, gz=True))):
            path = os.path.join(work, name)
            info = writer(path)
            base = bench.baseline(path, work, 3)
            cfgs = [("default", None)] if name.endswith(".gz") else [("default", default_cfg),
                                                                     ("never", streaming_cfg)]
            for label, cfg in cfgs:
                runs: Dict[str, List[Dict[str, Any]]] = {"before": [], "after": []}
                for rep in range(args.reps):
                    order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
                    for tree in order:
                        bench.ROOT = trees[tree]  # run_policy puts ROOT first on PYTHONPATH and runs there
                        r = bench.run_policy(path, work, cfg, "{}-{}-{}-{}".format(name, label, tree, rep))
                        runs[tree].append({"process_s": r["timings"]["process"], "rss_mb": r["peak_rss_mb"],
                                           "path": r["path"], "status": r["status"]})
                bench.ROOT = trees["after"]
                row: Dict[str, Any] = {"archive": name, "members": info["members"], "config": label,
                                       "baseline_s": base["seconds"], "baseline_all_s": base["all_seconds"]}
                for tree in ("before", "after"):
                    ts = [x["process_s"] for x in runs[tree]]
                    med = statistics.median(ts)
                    row[tree] = {"process_s": round(med, 3), "all_s": ts, "ratio": round(base["seconds"] / med, 3),
                                 "rss_mb": max(x["rss_mb"] or 0 for x in runs[tree]),
                                 "path": sorted({x["path"] for x in runs[tree]}),
                                 "status": sorted({x["status"] for x in runs[tree]})}
                rows.append(row)
                print("{} [{}] baseline {:.2f}s | before {:.2f}s ratio {:.3f} rss {} | after {:.2f}s ratio {:.3f} "
                      "rss {}".format(name, row["after"]["path"][0], base["seconds"], row["before"]["process_s"],
                                      row["before"]["ratio"], row["before"]["rss_mb"], row["after"]["process_s"],
                                      row["after"]["ratio"], row["after"]["rss_mb"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| archive | path | baseline s | before s | before ratio | before RSS MB | after s | after ratio | "
          "after RSS MB |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {} | {} | {:.2f} | {:.2f} | {:.3f} | {} | {:.2f} | {:.3f} | {} |".format(
            r["archive"], "/".join(r["after"]["path"]), r["baseline_s"], r["before"]["process_s"],
            r["before"]["ratio"], r["before"]["rss_mb"], r["after"]["process_s"], r["after"]["ratio"],
            r["after"]["rss_mb"]))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"size_mb": args.size_mb, "reps": args.reps, "trees": trees, "rows": rows}, f, indent=1)
    return 0 if all(r[t]["status"] == ["complete"] for r in rows for t in ("before", "after")) else 1


if __name__ == "__main__":
    sys.exit(main())
