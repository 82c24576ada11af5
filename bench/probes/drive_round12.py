"""Run the round-12 probe (tests/data/prep-observed/probe_rules_round12.py) on the local real server.

Why a driver: the probe is Python rule TEXT run with irule -F as the server's rodsadmin (nothing is
installed into the server); this fills in its constants, runs it as the `irods` OS user and prints its
JSON records. Take the SHARED lock around it (it does not rely on the installed policy):

    flock -s /run/lock/omero-snapshots-real-zone.lock python bench/probes/drive_round12.py \
        --user wt-perf_probe --n 200 --plan current:1,put_reg:1,put_reg:4

The user is created (a rodsuser) when missing; --remove-user removes it afterwards. The probe removes
its own collection. --site defaults to the directory python-irodsclient is imported from here, so a
server whose python3 lacks python-irodsclient can still run it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = Path(__file__).resolve().parents[2] / "tests" / "data" / "prep-observed" / "probe_rules_round12.py"
AS_IRODS = ["runuser", "-u", "irods", "--", "env", "HOME=/var/lib/irods"]


def _run(cmd: list, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(AS_IRODS + cmd, capture_output=True, text=True, check=check)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", default="wt-perf_probe")
    ap.add_argument("--zone", default="tempZone")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--plan", default="current:1,put_reg:1")
    ap.add_argument("--site", default=None)
    ap.add_argument("--remove-user", action="store_true")
    a = ap.parse_args()
    site = a.site
    if site is None:
        import irods

        site = str(Path(irods.__file__).resolve().parents[1])
    if _run(["iadmin", "lu", a.user], check=False).stdout.strip() in ("", "No rows found"):
        _run(["iadmin", "mkuser", a.user, "rodsuser"])
    base = "/{}/home/{}/round12-{}".format(a.zone, a.user, int(time.time()))
    text = PROBE.read_text()
    for key, value in (("@SITE@", site), ("@USER@", a.user), ("@BASE@", base), ("@N@", str(a.n)),
                       ("@PLAN@", a.plan)):
        text = text.replace(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        rule = Path(tmp) / "probe_round12.r"
        rule.write_text(text)
        os.chmod(rule, 0o644)
        t0 = time.time()
        load_before = [round(x, 2) for x in os.getloadavg()]
        proc = _run(["irule", "-r", "irods_rule_engine_plugin-python-instance", "-F", str(rule)], check=False)
    sys.stdout.write(proc.stdout)
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"probe": "round12_driver", "plan": a.plan, "objects_per_step": a.n,
                      "wall_s": round(time.time() - t0, 1), "load_average_before": load_before,
                      "load_average_after": load_after}))
    if proc.returncode != 0 or proc.stderr.strip():
        sys.stderr.write("irule exit {}: {}\n".format(proc.returncode, proc.stderr.strip()))
    if a.remove_user:
        _run(["iadmin", "rmuser", a.user], check=False)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
