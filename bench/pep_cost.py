"""Per-call cost of the upload PEP for uploads OUTSIDE the landing collection (the common case).

Every upload on the server, by every user, fires pep_resource_modified_post.
This measures our PEP against a baseline PEP that only reads the path the
same way and returns RULE_ENGINE_CONTINUE, in the same run, and reports the
ratio. It also checks that no heavy module got imported on that path.

    python bench/pep_cost.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simzone import prep_types  # noqa: E402
from simzone.deploy import SimulatedDeployment  # noqa: E402
from simzone.prep import RESOURCE_MODIFIED_KEYS, make_rei  # noqa: E402


def baseline(rule_args, callback, rei):  # the cheapest possible PEP doing the same read
    path = str(rule_args[1].map().get("logical_path", ""))
    if path.endswith("/manifest.json"):
        return 0
    return 5000000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    dep = SimulatedDeployment(tempfile.mkdtemp(prefix="pep-bench-"))
    pep = dep.server.core.pep_resource_modified_post
    heavy = ("jsonschema", "libarchive", "irods.session")
    for name in heavy:
        sys.modules.pop(name, None)
    values = {k: "" for k in RESOURCE_MODIFIED_KEYS}
    results = {}
    for label, path in (("other path", "/tempZone/home/bob/data/image_0001.tif"),
                        ("other manifest.json", "/tempZone/home/bob/manifest.json")):
        values["logical_path"] = path
        ctx = prep_types.PluginContext(values)
        args = ["irods_rule_engine_plugin-python-instance", ctx, ""]
        rei = make_rei("bob", "tempZone")
        cb = dep.server.callback("bob")
        calls_before = sum(dep.catalog.calls.values())
        for fn in (baseline, pep):  # warm up
            fn(args, cb, rei)
        t0 = time.perf_counter()
        for _ in range(n):
            baseline(args, cb, rei)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):
            pep(args, cb, rei)
        t_pep = time.perf_counter() - t0
        results[label] = (t_base / n * 1e6, t_pep / n * 1e6, t_pep / t_base,
                          sum(dep.catalog.calls.values()) - calls_before)
    print("calls per case: {}".format(n))
    for label, (b, p, r, c) in results.items():
        print("{:<22} baseline {:.2f} us/call, ours {:.2f} us/call, ratio ours/baseline {:.2f}, catalog calls {}"
              .format(label, b, p, r, c))
    print("heavy modules imported on this path: {}".format([m for m in heavy if m in sys.modules] or "none"))


if __name__ == "__main__":
    main()
