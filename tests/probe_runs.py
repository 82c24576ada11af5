"""Run the project's probes the same way on a real iRODS zone and on the fake, and make their records comparable.

A probe here is rule text a server runs without anything installed in it (irule -F): part 1 is Python rule
text run as a rodsadmin, which writes one JSON record per call to `<tempdir>/<out file>` on the server; part
2 (optional) is native rule text run as the rodsuser (it may not run Python rule text), which prints one
`check code` / `check rows=N` line per call. The same texts, with the same substitutions, run on the fake
(simzone.prep.FakeServer: irule_file, its temp dir pointed at a work dir) and on a real zone (icommands'
irule with the two client environments of the live suite). `normalise` then elides what differs from run
to run (run ids, the rodsuser's name, what conformance_support.normalise elides), so the two record lists
compare field by field. tests/test_live_probes.py compares them on a real zone; tests/test_conformance.py
compares the fake's run with the golden records (tests/data/prep-observed/).

The real zone's server must be on this machine: part 1's records are read from its temp dir
($OMERO_SNAPSHOTS_SERVER_TMPDIR, default /tmp), as the irods OS user writes them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    import conformance_support as cs
except ImportError:  # tests/ imported as a package
    from tests import conformance_support as cs  # type: ignore[no-redef]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROBES = os.path.join(HERE, "data", "prep-probes")
OBSERVED = os.path.join(HERE, "data", "prep-observed")
ZONE = "tempZone"
SVC = "omero-svc"  # the rodsuser's name in the probe texts and the golden records
PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"


@dataclass(frozen=True)
class PairedProbe:
    """A Python part as rods then a native part as the rodsuser, the second working on the first's base."""

    name: str
    python_file: str
    svc_file: Optional[str]
    out_name: str  # the file name part 1 writes in the server's temp dir
    base_placeholder: str  # *b of part 2 in the file, replaced by part 1's base
    svc_fixture: str  # part 2's own collection in the rodsuser's home (made fresh for every run)
    run_ids: Tuple[str, ...]  # regexes of the run-specific parts of part 1's names
    golden: str  # the golden record file (tests/data/prep-observed/) of a real server's answers
    # texts of part 2 made unique per run (a delayed rule's name it queues for an hour and then counts: an
    # earlier run's rule would still be queued)
    svc_unique: Tuple[str, ...] = ()


PAIRED: Dict[str, PairedProbe] = {
    "prepzone_calls": PairedProbe(
        "prepzone_calls", os.path.join(PROBES, "probe_prepzone_calls.py"),
        os.path.join(PROBES, "probe_prepzone_calls_svc.r"), "probe-pz.jsonl",
        "/tempZone/home/rods/probe-pz-RUN", "/tempZone/home/omero-svc/probe-pz-svc",
        (r"(probe-pz-)\d+",), "round11-prepzone-calls.jsonl", ("pz-svc-delayed",)),
    "prepzone_quotes": PairedProbe(
        "prepzone_quotes", os.path.join(PROBES, "probe_prepzone_quotes.py"),
        os.path.join(PROBES, "probe_prepzone_quotes_svc.r"), "probe-pq.jsonl",
        "/tempZone/home/rods/probe-pq-RUN", "/tempZone/home/omero-svc/probe-pq-svc",
        (r"(probe-pq-)\d+", r"(it's )\d+", r"(it''s )\d+"), "round12-prepzone-quotes.jsonl"),
}


# Probes that cannot run through irule -F alone (tests/test_live_probes.py lists them as skipped), why, and
# what stands for them.
NEEDS_INSTALL = {
    "round1-8 probe_rules.py + drivers/": "installed as the server's whole core.py (PEPs of client uploads, "
                                          "delayed rules): replacing core.py needs a restart and takes the "
                                          "policy out; replayed on the fake against the golden rounds 1-8 by "
                                          "tests/test_conformance.py",
    "round9 read_to_eof / rule arguments": "the recorder's rule ran through the installed policy's core; "
                                           "tests/test_conformance.py and tests/test_rule_arguments.py replay it",
    "round11 docs/probes/probe_round11_self_healing.py": "its rules must be in core for the delay server to "
                                                         "call them (a core.py.d module and a restart), and it "
                                                         "waits ~2 minutes for the delay server; golden: "
                                                         "round11-self-healing.jsonl",
    "round11 bench/probes/probe_unpack.py + drive_unpack.py": "its rules must be in core (a core.py.d module and a "
                                                              "restart), with python-irodsclient in the server's "
                                                              "python3; golden: round11-unpack.jsonl",
    "round11 tests/data/prep-probes/probe_rule_arguments.py": "P1/P2 replace core.py (the upload PEPs), A1/A2 "
                                                              "need a core.py.d module: both a restart; golden: "
                                                              "round11-arguments.jsonl",
    "round12 probe_rules_round12.py (bench/probes/drive_round12.py), bench/probes/stream_client.py":
        "python-irodsclient inside a rule, timing a real server's data plane (no fake runs python-irodsclient); "
        "its edge cases are replayed on the simulated catalog by tests/test_put_whole.py; stream_client.py is a "
        "client-side benchmark of the same data plane, not a probe; golden: round12-unpack-*.jsonl",
    "round12 tests/data/prep-probes/probe_round12_heartbeat.py": "irule -F, no install, but what it records are "
                                                                 "threads' ticks and timings during microservice "
                                                                 "calls, not comparable record by record (and its "
                                                                 "H2 hangs the agent); its findings are reproduced "
                                                                 "by tests/test_lease_heartbeat.py; golden: "
                                                                 "round12-heal-heartbeat.jsonl",
}


# ---------------------------------------------------------------------------------------------- the two servers
class ProbeServer:
    """Where a probe runs: irule -F of Python text as the admin, of native text as the rodsuser."""

    svc_user: str = SVC
    zone: str = ZONE

    def python_rule(self, text: str) -> List[str]:
        raise NotImplementedError

    def native_rule(self, text: str) -> List[str]:
        raise NotImplementedError

    def read_records(self, out_name: str) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def cleanup(self, paths: Sequence[str]) -> List[str]:
        return []


class FakeProbeServer(ProbeServer):
    """A fresh fake server (simzone) set up like the probed real one: the rodsuser, demoResc on localhost."""

    def __init__(self, workdir: str, svc_user: str = SVC) -> None:
        from simzone.catalog import SimCatalog
        from simzone.prep import FakeServer

        self.workdir = workdir
        self.svc_user = svc_user
        self.catalog = SimCatalog(os.path.join(workdir, "zone"), ZONE)
        self.catalog.add_user(svc_user, "rodsuser")
        self.catalog.db.execute("UPDATE resources SET loc='localhost' WHERE name='demoResc'")
        self.server = FakeServer(self.catalog, None, os.path.join(workdir, "rodsLog"))
        self._n = 0

    def _file(self, text: str) -> str:
        self._n += 1
        path = os.path.join(self.workdir, "rule{}.r".format(self._n))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def python_rule(self, text: str) -> List[str]:
        from simzone.prep import PYTHON_INSTANCE as PY

        saved = tempfile.tempdir
        tempfile.tempdir = self.workdir  # the probe writes <tempdir>/<out file>, as on the server
        try:
            return list(self.server.irule_file("rods", self._file(text), PY))
        finally:
            tempfile.tempdir = saved

    def native_rule(self, text: str) -> List[str]:
        from simzone.prep import NATIVE_INSTANCE as NATIVE

        return list(self.server.irule_file(self.svc_user, self._file(text), NATIVE))

    def read_records(self, out_name: str) -> List[Dict[str, Any]]:
        return _read_jsonl(os.path.join(self.workdir, out_name))

    def close(self) -> None:
        self.catalog.close()


class RealProbeServer(ProbeServer):
    """A real zone through icommands: the admin's and the rodsuser's client environments (each with its
    .irodsA beside it, as the live suite's are), the server's temp dir on this machine."""

    def __init__(self, admin_env: str, svc_env: str, workdir: str, server_tmpdir: Optional[str] = None) -> None:
        self.admin_env, self.svc_env, self.workdir = admin_env, svc_env, workdir
        self.server_tmpdir = server_tmpdir or os.environ.get("OMERO_SNAPSHOTS_SERVER_TMPDIR") or "/tmp"
        with open(svc_env, encoding="utf-8") as f:
            env = json.load(f)
        self.svc_user = str(env["irods_user_name"])
        self.zone = str(env.get("irods_zone_name") or ZONE)
        self._n = 0

    @staticmethod
    def _env(env_file: str) -> Dict[str, str]:
        env = dict(os.environ, IRODS_ENVIRONMENT_FILE=env_file)
        with open(env_file, encoding="utf-8") as f:
            if "irods_authentication_file" not in json.load(f):
                env["IRODS_AUTHENTICATION_FILE"] = os.path.join(os.path.dirname(env_file), ".irodsA")
        return env

    def _run(self, env_file: str, args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self._env(env_file), capture_output=True, text=True, timeout=timeout)

    def _irule(self, env_file: str, text: str, instance: str) -> List[str]:
        self._n += 1
        path = os.path.join(self.workdir, "rule{}.r".format(self._n))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        p = self._run(env_file, ["irule", "-r", instance, "-F", path])
        if p.returncode != 0:
            raise RuntimeError("irule -F {} ({}) failed ({}): {} {}".format(
                os.path.basename(path), instance, p.returncode, p.stdout[-500:], p.stderr[-1500:]))
        return p.stdout.splitlines()

    def python_rule(self, text: str) -> List[str]:
        return self._irule(self.admin_env, text, PYTHON_INSTANCE)

    def native_rule(self, text: str) -> List[str]:
        return self._irule(self.svc_env, text, NATIVE_INSTANCE)

    def read_records(self, out_name: str) -> List[Dict[str, Any]]:
        path = os.path.join(self.server_tmpdir, out_name)
        try:
            return _read_jsonl(path)
        finally:
            try:
                os.remove(path)
            except OSError:
                pass

    def cleanup_rules(self, tag: str) -> List[str]:
        """Take this run's delayed rules (their text holds the run's tag) out of the rodsuser's queue."""
        q = self._run(self.svc_env, ["iquest", "--no-page", "%s", "select RULE_EXEC_ID where RULE_EXEC_NAME like "
                                     "'%{}%'".format(tag)])
        ids = [x.strip() for x in q.stdout.splitlines() if x.strip().isdigit()]
        errors = []
        for rule_id in ids:
            p = self._run(self.svc_env, ["iqdel", rule_id])
            if p.returncode != 0:
                errors.append("iqdel {}: {}".format(rule_id, p.stderr.strip()[-200:]))
        return errors

    def cleanup(self, paths: Sequence[str]) -> List[str]:
        """Remove what a probe made, for good: as the admin; what the rodsuser made in its home (partly handed
        over to rods) as the rodsuser, after the admin gave it own on all of it in admin mode."""
        errors = []
        for path in paths:
            if self._run(self.admin_env, ["ils", path]).returncode != 0:
                continue
            if self._run(self.admin_env, ["irm", "-r", "-f", path]).returncode == 0:
                continue
            admin = self._run(self.admin_env, ["iuserinfo"]).stdout.split("name: ", 1)[-1].split()[0]
            owner = admin if path.startswith("/{}/home/{}/".format(self.zone, admin)) else self.svc_user
            self._run(self.admin_env, ["ichmod", "-r", "-M", "own", owner, path])
            p = self._run(self.admin_env if owner == admin else self.svc_env, ["irm", "-r", "-f", path])
            if p.returncode != 0:
                errors.append("irm -rf {}: {}".format(path, p.stderr.strip()[-300:]))
        return errors


def _read_jsonl(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------- running
@dataclass
class ProbeRun:
    records: List[Dict[str, Any]] = field(default_factory=list)
    made: List[str] = field(default_factory=list)  # what the run left in the zone (removed by cleanup)
    tag: str = ""


def run_paired(probe: PairedProbe, server: ProbeServer, tag: Optional[str] = None) -> ProbeRun:
    """Part 1 as the admin, then part 2 as the rodsuser with part 1's base, on `server`; the records in the
    order of the golden files (part 1's as written, then one per check line of part 2)."""
    run = ProbeRun(tag=tag or secrets.token_hex(4))
    out_name = "{}-{}.jsonl".format(probe.out_name.rsplit(".", 1)[0], run.tag)
    with open(probe.python_file, encoding="utf-8") as f:
        text = f.read()
    text = text.replace('"{}"'.format(probe.out_name), '"{}"'.format(out_name))
    text = text.replace('"{}"'.format(SVC), '"{}"'.format(server.svc_user)).replace("/tempZone/", "/{}/".format(
        server.zone))
    server.python_rule(text)
    run.records = server.read_records(out_name)
    done = [r for r in run.records if r.get("probe") == "done"]
    if not done:
        raise RuntimeError("{}: part 1 wrote no 'done' record: {}".format(probe.name, run.records[-3:]))
    base = str(done[0]["base"])
    run.made.append(base)
    if probe.svc_file:
        fixture = probe.svc_fixture.replace("/tempZone/home/{}/".format(SVC), "/{}/home/{}/".format(
            server.zone, server.svc_user)) + "-" + run.tag
        run.made.append(fixture)
        with open(probe.svc_file, encoding="utf-8") as f:
            svc_text = f.read()
        svc_text = svc_text.replace(probe.base_placeholder, base).replace(probe.svc_fixture, fixture)
        svc_text = svc_text.replace('"{}"'.format(SVC), '"{}"'.format(server.svc_user))
        for text in probe.svc_unique:
            svc_text = svc_text.replace(text, "{}-{}".format(text, run.tag))
        for res in cs._native_results(server.native_rule(svc_text)):
            run.records.append(dict({"probe": res.pop("check")}, **res))
    return run


def normalise_run(probe: PairedProbe, run: ProbeRun, svc_user: str = SVC, zone: str = ZONE) -> List[Dict[str, Any]]:
    """Records comparable across runs and servers: run ids -> RUN, this run's fixture -> the file's name, the
    rodsuser -> omero-svc, the zone -> tempZone, then conformance_support.normalise."""
    text = json.dumps(run.records)
    text = text.replace("-" + run.tag, "")
    if zone != ZONE:
        text = text.replace("/{}/".format(zone), "/{}/".format(ZONE)).replace('"{}"'.format(zone), '"{}"'.format(ZONE))
    if svc_user != SVC:
        text = re.sub(r"\b{}\b".format(re.escape(svc_user)), SVC, text)
    for pat in probe.run_ids:
        text = re.sub(pat, r"\1RUN", text)
    return [cs.normalise(r, "") for r in json.loads(text)]


# ---------------------------------------------------------------------------------------------- round 10
ROUND10_PROBE = os.path.join(OBSERVED, "probe_rules_round10.py")
ROUND10_FIXTURE = "/tempZone/home/omero-svc/probe10-fixture"
# The fixture the rodsuser made before round 10's probe ran (probe_rules_round10.py's header; contents and
# AVU as conformance_support.round10_fixture), as native rule text the rodsuser runs (FIXTURE and ADMIN
# replaced).
ROUND10_FIXTURE_RULE = os.path.join(PROBES, "probe_round10_fixture_svc.r")
# Records whose answer depends on what else the zone holds, not on the call: how many rules matching
# '%probe10 delayed%' wait in the delay queue (this run's, plus an earlier run's the delay server has not run
# yet). Compared without their rows.
ROUND10_STATE_DEPENDENT = ("gq_delayed_rules_like",)


def run_round10(server: ProbeServer, golden: str = OBSERVED, admin: str = "rods", tag: Optional[str] = None
                ) -> ProbeRun:
    """Round 10 as it ran on the real server: the rodsuser's fixture, probe_rules_round10.py as the admin
    (irule -F), then the rodsuser's native rule text of the golden record with the names put back."""
    run = ProbeRun(tag=tag or secrets.token_hex(4))
    svc_home = "/{}/home/{}/".format(server.zone, server.svc_user)
    fixture = ROUND10_FIXTURE.replace("/tempZone/home/{}/".format(SVC), svc_home) + "-" + run.tag
    run.made.append(fixture)
    with open(ROUND10_FIXTURE_RULE, encoding="utf-8") as f:
        lines = server.native_rule(f.read().replace("FIXTURE", fixture).replace("ADMIN", admin))
    bad = [ln for ln in lines if not ln.endswith(" 0")]
    if bad:
        raise RuntimeError("round 10 fixture: {}".format(bad))
    out_name = "probe10-{}.jsonl".format(run.tag)
    with open(ROUND10_PROBE, encoding="utf-8") as f:
        text = f.read()
    text = text.replace('"probe10.jsonl"', '"{}"'.format(out_name)).replace('"{}"'.format(ROUND10_FIXTURE),
                                                                             '"{}"'.format(fixture))
    text = text.replace('"{}"'.format(SVC), '"{}"'.format(server.svc_user)).replace(
        "'{}'".format(SVC), "'{}'".format(server.svc_user)).replace("/tempZone/", "/{}/".format(server.zone)).replace(
        "'tempZone'", "'{}'".format(server.zone))
    server.python_rule(text)
    run.records = server.read_records(out_name)
    done = [r for r in run.records if r.get("probe") == "done"]
    if not done:
        raise RuntimeError("round 10: the probe wrote no 'done' record: {}".format(run.records[-3:]))
    base = str(done[0]["base"])
    run.made.insert(0, base)
    native = [r for r in _read_jsonl(os.path.join(golden, "round10-prepzone-calls.jsonl"))
              if r.get("probe") == "rodsuser_native_rule_language_calls"][0]
    rule = native["rule"].replace("/tempZone/home/rods/probe10-RUN", base).replace(
        "/tempZone/home/{}/probe10-RUN".format(SVC), fixture)
    run.records.append({"probe": native["probe"], "rule": rule,
                        "results": cs._native_results(server.native_rule(rule))})
    return run


def normalise_round10(run: ProbeRun, svc_user: str = SVC, zone: str = ZONE) -> List[Dict[str, Any]]:
    probe = PairedProbe("round10", "", None, "", "", "", (), "")
    recs = normalise_run(probe, run, svc_user, zone)
    for r in recs:
        if r.get("probe") in ROUND10_STATE_DEPENDENT:
            r.pop("rows", None)
            r.pop("n", None)
    return recs


def golden_records(probe: PairedProbe, base: str = OBSERVED) -> List[Dict[str, Any]]:
    return [cs.normalise(r, "/etc/irods") for r in _read_jsonl(os.path.join(base, probe.golden))]


def run_on_fake(probe: PairedProbe, workdir: str) -> List[Dict[str, Any]]:
    """The probe on a fresh fake server, normalised (what the fake answers today)."""
    srv = FakeProbeServer(workdir)
    try:
        return normalise_run(probe, run_paired(probe, srv))
    finally:
        srv.close()


def fresh_workdir(prefix: str = "probe-run-") -> str:
    return tempfile.mkdtemp(prefix=prefix)


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    """python -m tests.probe_runs NAME --real ADMIN_ENV SVC_ENV [--out FILE]: run one paired probe on a real
    zone (under the shared lock, see docs) and write its normalised records (how round 12 was recorded)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.probe_runs")
    ap.add_argument("name", choices=sorted(PAIRED) + ["round10"])
    ap.add_argument("--real", nargs=2, metavar=("ADMIN_ENV", "SVC_ENV"))
    ap.add_argument("--out")
    ns = ap.parse_args(list(argv))
    work = fresh_workdir()
    try:
        if ns.real and ns.name == "round10":
            srv: Any = RealProbeServer(ns.real[0], ns.real[1], work)
            run = run_round10(srv)
            recs = normalise_round10(run, srv.svc_user, srv.zone)
            errors = srv.cleanup(run.made)
            if errors:
                print("cleanup: " + "; ".join(errors), file=__import__("sys").stderr)
        elif ns.name == "round10":
            srv = FakeProbeServer(work)
            recs = normalise_round10(run_round10(srv))
            srv.close()
        elif ns.real:
            probe = PAIRED[ns.name]
            srv = RealProbeServer(ns.real[0], ns.real[1], work)
            run = run_paired(probe, srv)
            recs = normalise_run(probe, run, srv.svc_user, srv.zone)
            errors = srv.cleanup(run.made) + srv.cleanup_rules(run.tag)
            if errors:
                print("cleanup: " + "; ".join(errors), file=__import__("sys").stderr)
        else:
            recs = run_on_fake(PAIRED[ns.name], work)
    finally:
        remove_workdir(work)
    lines = "".join(json.dumps(r) + "\n" for r in recs)
    if ns.out:
        with open(ns.out, "w", encoding="utf-8") as f:
            f.write(lines)
    else:
        print(lines, end="")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
