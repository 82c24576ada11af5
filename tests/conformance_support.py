"""Replay the PREP probe drivers on the fake runtime and compare its records with the real servers' ones.

The golden records were written by reference/prep-observed/probe_rules.py installed as core.py on a real
iRODS 5.0.2 + PREP 5.0.1 server (and 4.3.5 + PREP 4.3.5.0), driven by the scripts in
reference/prep-observed/drivers/. Here the very same probe_rules.py is loaded as the fake server's core
module, the drivers' actions are replayed in the same order on a FakeServer, and the records it writes are
compared field by field with the golden ones. Only what cannot be equal is normalised; NORMALISATIONS
lists every such rule (docs/simulated-zone.md repeats it).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from policy.errors import NAMES, IrodsError
from simzone.catalog import SimCatalog
from simzone.prep import NATIVE_INSTANCE, PYTHON_INSTANCE, FakeServer, IruleClientError, PepOutcome
from simzone.zone import SimZone

ZONE = "tempZone"
ADMIN, SVC, ALICE = "rods", "svc", "alice"
# A 10-digit stand-in for the drivers' int(time.time()): run-id length decides where probe_as_user's
# repr(...)[:200] cuts the JSON, so it must have the real length. It is the stamp of the golden round 3.
STAMP = 1795591184
BIG_UPLOAD = 40 * 1024 * 1024
V502, V435 = "5.0.2", "4.3.5"

_HERE = os.path.dirname(os.path.abspath(__file__))
_GOLDEN_CANDIDATES = (
    os.environ.get("PREP_OBSERVED_DIR", ""),
    os.path.join(_HERE, "data", "prep-observed"),  # a verbatim copy of reference/prep-observed/
)


def golden_dir() -> Optional[str]:
    """Where the golden records are: $PREP_OBSERVED_DIR, else the repo's verbatim copy in tests/data."""
    for c in _GOLDEN_CANDIDATES:
        if c and os.path.isfile(os.path.join(c, "probe_rules.py")):
            return c
    return None


# ---------------------------------------------------------------------------------------------- golden files
# round -> (5.0.2 file(s), line filter the driver applied when that file was kept or None, 4.3.5 file(s))
LineFilter = Optional[Callable[[str], bool]]
GOLDEN_FILES: Dict[str, Tuple[Sequence[str], LineFilter, Sequence[str]]] = {
    "round1": (["round1-uploads-and-microservices.jsonl"], None, ["4.3.5/round1.jsonl"]),
    "round2": (["round2-runtime-and-rodsuser.jsonl"], None, ["4.3.5/round2.jsonl"]),
    # 4.3.5's delay server ran round 3's delayed rule after the file was collected: a follow-up file.
    "round3": (["round3-buffers-and-delay.jsonl"], None,
               ["4.3.5/round3.jsonl", "4.3.5/round3-delay-followup.jsonl"]),
    # drive8.py kept only the lines containing "setacl" on 5.0.2; 4.3.5 kept the whole file.
    "round8": (["round8-setacl-unknown-user.jsonl"], lambda line: "setacl" in line, ["4.3.5/round8.jsonl"]),
}
ROUNDS = tuple(GOLDEN_FILES)


def read_lines(paths: Sequence[str], base: str) -> List[str]:
    out: List[str] = []
    for p in paths:
        with open(os.path.join(base, p), encoding="utf-8") as f:
            out.extend(line.rstrip("\n") for line in f if line.strip())
    return out


def golden_records(round_name: str, version: str, base: str) -> Tuple[List[Dict[str, Any]], LineFilter]:
    files502, line_filter, files435 = GOLDEN_FILES[round_name]
    files = files502 if version == V502 else files435
    lines = read_lines(files, base)
    return [json.loads(line) for line in lines], (line_filter if version == V502 else None)


def golden_privilege_flows(version: str, base: str) -> Dict[str, List[Dict[str, Any]]]:
    """round5 split at its {"note": ...} lines into flow A (inheritance on) and flow B (off)."""
    name = "round5-privilege-flow.jsonl" if version == V502 else "4.3.5/round5-privilege-flow.jsonl"
    flows: Dict[str, List[Dict[str, Any]]] = {}
    current = ""
    for line in read_lines([name], base):
        rec = json.loads(line)
        if "note" in rec:
            current = "A" if "inheritance ON" in rec["note"] else "B"
            flows[current] = []
        else:
            flows[current].append(rec)
    return flows


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class ProbeReplay:
    """What the fake server recorded, round by round, plus what the drivers' clients saw."""

    lines: Dict[str, List[str]] = field(default_factory=dict, repr=False)
    etc_dir: str = ""
    uploads: Dict[str, PepOutcome] = field(default_factory=dict)
    stored_size: Dict[str, Optional[int]] = field(default_factory=dict)
    python_text_refusal: Optional[int] = None
    driver_errors: List[str] = field(default_factory=list)
    config_dir_on_sys_path: bool = False

    def records(self, round_name: str, line_filter: LineFilter = None) -> List[Dict[str, Any]]:
        return [json.loads(line) for line in self.lines[round_name] if line_filter is None or line_filter(line)]


def replay_probe_rounds(workdir: str, golden: str) -> ProbeReplay:
    """Rounds 1, 2, 3 and 8 of the drivers, in that order, on one fake server with probe_rules.py as core."""
    out = ProbeReplay()
    etc = os.path.join(workdir, "etc", "irods")
    os.makedirs(etc)
    core_py = os.path.join(etc, "core.py")
    shutil.copyfile(os.path.join(golden, "probe_rules.py"), core_py)
    probe_out = os.path.join(workdir, "prep-probe.jsonl")
    out.etc_dir = etc

    saved_env = os.environ.get("PREP_PROBE_OUT")
    saved_core = sys.modules.get("core")
    saved_path = list(sys.path)
    os.environ["PREP_PROBE_OUT"] = probe_out  # the module reads it at import
    try:
        core = FakeServer.load_core(core_py)
        out.config_dir_on_sys_path = etc in sys.path
        cat = SimCatalog(os.path.join(workdir, "zone"), ZONE)
        for user in (SVC, ALICE):
            cat.add_user(user, "rodsuser")
        srv = FakeServer(cat, core, os.path.join(workdir, "rodsLog"))

        def collect(round_name: str) -> None:
            lines: List[str] = []
            if os.path.exists(probe_out):
                with open(probe_out, encoding="utf-8") as f:
                    lines = [line.rstrip("\n") for line in f if line.strip()]
                os.remove(probe_out)  # every driver removes the file before it starts
            out.lines[round_name] = lines

        def step(what: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - reported by the tests, the replay goes on
                out.driver_errors.append("{}: {!r}".format(what, e))
                return None

        home = "/{}/home/".format(ZONE)
        # ---- round 1 (drive.py), as rods
        base = home + "rods/probe-{}".format(STAMP)
        cat.create_collection(ADMIN, base, recursive=True)
        step("round1 small.bin", lambda: srv.client_put(ADMIN, base + "/small.bin", b"x" * 1000, api="prc"))
        step("round1 put_small.bin", lambda: srv.client_put(ADMIN, base + "/put_small.bin", b"y" * 2000, api="prc"))
        step("round1 big.bin", lambda: srv.client_put(ADMIN, base + "/big.bin", os.urandom(BIG_UPLOAD), api="prc"))
        step("round1 irule probe_msi", lambda: srv.irule(ADMIN, "probe_msi", [base]))
        srv.run_delay_queue()  # time.sleep(15): the delay server's turn
        collect("round1")

        # ---- round 2 (drive2.py): rods, then svc
        base = home + "rods/probe2-{}".format(STAMP)
        cat.create_collection(ADMIN, base, recursive=True)
        step("round2 irule probe_runtime", lambda: srv.irule(ADMIN, "probe_runtime", [base]))
        base = home + "svc/probe2-{}".format(STAMP)
        cat.create_collection(SVC, base, recursive=True)
        try:
            srv.irule(SVC, "probe_raise_in_post", ["x"], PYTHON_INSTANCE)
        except IrodsError as e:
            out.python_text_refusal = e.code
        step("round2 native probe_as_user",
             lambda: srv.irule(SVC, "probe_as_user", [base, ALICE, SVC], instance=NATIVE_INSTANCE))
        for suffix in (".raise", ".negative"):
            p = base + "/up" + suffix
            outcome = step("round2 upload " + suffix, functools.partial(srv.client_put, SVC, p, b"payload", api="prc"))
            if outcome is not None:
                out.uploads[suffix] = outcome
            out.stored_size[suffix] = cat.stat(SVC, p).size if cat.exists(p) else None
        collect("round2")

        # ---- round 3 (drive3.py): rods, then svc uploads d-<stamp>.delay; sleep 8 = the delay server's turn
        base = home + "rods/probe3-{}".format(STAMP)
        cat.create_collection(ADMIN, base, recursive=True)
        step("round3 irule probe_buffers", lambda: srv.irule(ADMIN, "probe_buffers", [base]))
        step("round3 d.delay upload",
             lambda: srv.client_put(SVC, home + "svc/d-{}.delay".format(STAMP), b"x", api="prc"))
        srv.run_delay_queue()
        collect("round3")

        # ---- round 8 (drive8.py), as svc through the native rule language
        base = home + "svc/probe8-{}".format(STAMP)
        cat.create_collection(SVC, base, recursive=True)
        step("round8 native probe_setacl_unknown_user",
             lambda: srv.irule(SVC, "probe_setacl_unknown_user", [base], instance=NATIVE_INSTANCE))
        collect("round8")
        cat.close()
    finally:
        if saved_env is None:
            os.environ.pop("PREP_PROBE_OUT", None)
        else:
            os.environ["PREP_PROBE_OUT"] = saved_env
        if saved_core is None:
            sys.modules.pop("core", None)
        else:
            sys.modules["core"] = saved_core
        sys.path[:] = saved_path
    return out


# ---------------------------------------------------------------------------------------------- round 10
ROUND10_FILE = "round10-prepzone-calls.jsonl"
ROUND10_PROBE = "probe_rules_round10.py"
SVC10 = "omero-svc"
FIXTURE10 = "/{}/home/{}/probe10-fixture".format(ZONE, SVC10)
# The hand-written records at the end of round 10: what the clients saw, not what the probe rule wrote.
ROUND10_CLIENT_RECORDS = ("rodsuser_native_rule_language_calls", "rodsuser_python_rule_text", "irule_F_limits")
DELAYED_BODY10 = "callback.writeLine('serverLog', 'probe10 delayed rule ran')"
DELAYED_COND10 = "<INST_NAME>{}</INST_NAME><PLUSET>1s</PLUSET>".format(PYTHON_INSTANCE)


@dataclass
class Round10Replay:
    records: List[Dict[str, Any]] = field(default_factory=list)
    base: str = ""
    log_text: str = ""


def round10_golden(base: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in read_lines([ROUND10_FILE], base)]


def round10_fixture(cat: SimCatalog) -> None:
    """probe10-fixture as the rodsuser made it first (probe_rules_round10.py header; sizes and checksum as
    recorded): privsub/, private.txt with AVU probe10.k=v, readable.txt with read granted to rods."""
    cat.create_collection(SVC10, FIXTURE10, recursive=True)
    cat.create_collection(SVC10, FIXTURE10 + "/privsub")
    for name, data in (("private.txt", b"svc private!\n"), ("readable.txt", b"svc readable\n")):
        with cat.open_new(SVC10, FIXTURE10 + "/" + name) as w:
            w.write(data)
    cat.apply_metadata(SVC10, json.dumps({"entity_name": FIXTURE10 + "/private.txt", "entity_type": "data_object",
                                          "operations": [{"operation": "add", "attribute": "probe10.k",
                                                          "value": "v", "units": ""}]}))
    cat.set_acl(SVC10, FIXTURE10 + "/readable.txt", ADMIN, "read")


def _client_saw(e: IrodsError) -> str:
    return "rcExecMyRule error.  status = {} {}".format(e.code, NAMES.get(e.code, ""))


def _native_results(lines: List[str]) -> List[Dict[str, Any]]:
    """The recorder's reading of svc.r's stdout: 'check code [out]', '  row X' lines, 'check rows=N'."""
    out: List[Dict[str, Any]] = []
    rows: List[str] = []
    for line in lines:
        if line.startswith("  row "):
            rows.append(line[len("  row "):])
            continue
        check, _, rest = line.partition(" ")
        if rest.startswith("rows="):
            rec: Dict[str, Any] = {"check": check, "rows": int(rest[len("rows="):])}
            if rows:
                rec["row_values"] = rows
            rows = []
        else:
            code, _, extra = rest.partition(" ")
            rec = {"check": check, "errorcode": int(code)}
            if extra:
                rec["out"] = extra
        out.append(rec)
    return out


def replay_round10(workdir: str, golden: str) -> Round10Replay:
    """probe_rules_round10.py through the fake's irule -F as rods, then the rodsuser's native rule of the
    golden record, on a fresh fake server set up like the probed one (fixture, demoResc on localhost, and
    the delayed rule an earlier run of the same probe had left queued: the golden gq_delayed_rules_like
    counts it)."""
    import tempfile

    out = Round10Replay()
    cat = SimCatalog(os.path.join(workdir, "zone"), ZONE)
    cat.add_user(SVC10, "rodsuser")
    cat.db.execute("UPDATE resources SET loc='localhost' WHERE name='demoResc'")
    srv = FakeServer(cat, None, os.path.join(workdir, "rodsLog"))
    round10_fixture(cat)
    earlier = cat.enqueue_delay(ADMIN, DELAYED_COND10, DELAYED_BODY10)
    srv.clock.pending()  # its due time, fixed at submission (as delayExec does)
    cat.db.execute("UPDATE delay SET created = created - 120 WHERE id=?", (earlier,))  # submitted by a run before
    cat.db.execute("UPDATE sim_delay_due SET due = due - 120 WHERE id=?", (earlier,))
    rule_r = os.path.join(workdir, "r10.r")
    shutil.copyfile(os.path.join(golden, ROUND10_PROBE), rule_r)
    saved_tmp = tempfile.tempdir
    tempfile.tempdir = workdir  # the probe writes <tempdir>/probe10.jsonl
    try:
        srv.irule_file(ADMIN, rule_r, PYTHON_INSTANCE)
    finally:
        tempfile.tempdir = saved_tmp
    with open(os.path.join(workdir, "probe10.jsonl"), encoding="utf-8") as f:
        out.records = [json.loads(line) for line in f if line.strip()]
    done = [r for r in out.records if r.get("probe") == "done"]
    out.base = done[0]["base"] if done else ""

    gold = {r["probe"]: r for r in round10_golden(golden)}
    # ---- the rodsuser's calls: the golden rule text, with the elided names put back
    native = gold["rodsuser_native_rule_language_calls"]
    text = native["rule"].replace("/{}/home/rods/probe10-RUN".format(ZONE), out.base) \
        .replace("/{}/home/{}/probe10-RUN".format(ZONE, SVC10), FIXTURE10)
    svc_r = os.path.join(workdir, "svc.r")
    with open(svc_r, "w", encoding="utf-8") as f:
        f.write(text)
    lines = srv.irule_file(SVC10, svc_r, NATIVE_INSTANCE)
    out.records.append({"probe": native["probe"], "rule": text, "results": _native_results(lines)})
    # ---- Python rule text from the rodsuser
    t_r = os.path.join(workdir, "t.r")
    with open(t_r, "w", encoding="utf-8") as f:
        f.write("def main(rule_args, callback, rei):\n    pass\nINPUT null\nOUTPUT ruleExecOut\n")
    try:
        srv.irule_file(SVC10, t_r, PYTHON_INSTANCE)
        saw = "ran"
    except IrodsError as e:
        saw = _client_saw(e)
    out.records.append({"probe": "rodsuser_python_rule_text", "client_saw": saw})
    # ---- irule -F limits: a .py name; the uncompacted 23845-character file
    limits: List[Dict[str, Any]] = []
    try:
        srv.irule_file(ADMIN, os.path.join(golden, ROUND10_PROBE), PYTHON_INSTANCE)
        limits.append({"file": ROUND10_PROBE, "client_saw": "ran"})
    except IruleClientError as e:
        limits.append({"file": ROUND10_PROBE, "client_saw": str(e)})
    long_r = os.path.join(workdir, "long.r")
    with open(os.path.join(golden, ROUND10_PROBE), encoding="utf-8") as f:
        probe_text = f.read()
    # The uncompacted file is not in the records: stand in for it with the probe plus a parenthesised block of
    # padding near its end (where the real cut fell inside an open '('), 23845 characters in all.
    at = probe_text.index("    import irods_errors as E")
    head, tail = "    _uncompacted = (\n", "    )\n"
    room = 23845 - len(probe_text) - len(head) - len(tail)
    line = '        "' + "x" * 88 + '"\n'
    body = line * (room // len(line))
    body += '        "' + "x" * (room - len(body) - 11) + '"\n' if room - len(body) >= 11 else " " * (room - len(body))
    padded = probe_text[:at] + head + body + tail + probe_text[at:]
    with open(long_r, "w", encoding="utf-8") as f:
        f.write(padded)
    log_before = os.path.getsize(srv.log_path) if os.path.exists(srv.log_path) else 0
    try:
        srv.irule_file(ADMIN, long_r, PYTHON_INSTANCE)
        limits.append({"file": "r10.r of {} characters".format(len(padded)), "client_saw": "ran"})
    except IrodsError as e:
        with open(srv.log_path, encoding="utf-8") as f:
            f.seek(log_before)
            logged = [line for line in f.read().splitlines() if "SyntaxError" in line]
        limits.append({"file": "r10.r of {} characters".format(len(padded)), "client_saw": _client_saw(e),
                       "server_log": logged[0].split(" ", 1)[1] if logged else ""})
    out.records.append({"probe": "irule_F_limits", "results": limits})
    with open(srv.log_path, encoding="utf-8") as f:
        out.log_text = f.read()
    cat.close()
    return out


# ---------------------------------------------------------------------------------------------- normalisation
# Every rule that makes a fake record and a golden record comparable. Nothing else is touched.
NORMALISATIONS: Tuple[Tuple[str, str], ...] = (
    ("run ids", "'probe<N>-<10 digits>' -> 'probe-RUN' (the golden files were elided the same way)"),
    ("upload stamp", "'d-<digits>.delay' -> 'd-STAMP.delay' (driver's int(time.time()); 4.3.5 ran at another time)"),
    ("object addresses", "'0x<hex>' in reprs -> '0xADDR'"),
    ("error text", "'exc' of a RuntimeError -> only its '[iRods__Error__Code:N]' prefix (the rest is elided C++)"),
    ("timings", "every key ending in '_s' (seconds) is dropped"),
    ("interpreter", "probe 'python': 'version' and 'path' are dropped (the test's python, not the server's)"),
    ("machine packages", "probe 'import' of jsonschema / libarchive: only the module name is compared"),
    ("config dir", "probe 'import' 'file': the server config dir ('/etc/irods' vs the temp etc dir) -> '<etc>'"),
    ("buffer garbage", "pep_api_replica_close_post 'buf': bytes after the JSON's closing brace -> '<garbage>' "
                       "(whatever followed the unterminated buffer in server memory)"),
    ("delay timing", "'delayed_ran' records are taken out of each round and compared as one ordered list over "
                     "rounds 1-3 (when the delay server woke up is timing)"),
    ("round 10 run ids", "'probe10-<10 digits>' and the fixture's 'probe10-fixture' -> 'probe10-RUN' (the golden "
                         "round 10 elided both that way)"),
    ("round 10 elided values", "RodsObjStat modifyTime/createTime of exactly 11 digits -> '<epoch seconds, "
                               "zero-padded to 11 digits>', dataId of digits -> '<numeric id as str>', a "
                               "RULE_EXEC_TIME row value of digits -> '<epoch seconds>' (the golden file elided "
                               "them so; a value of another form is left as it is and shows as a difference)"),
    ("recorder's words", "keys 'how' and 'note' (written by the person who ran the probes, not by a probe) are "
                         "dropped"),
    ("unfilled rescHier", "RodsObjStat 'rescHier' other than '' or a resource name -> '' (msiObjStat does not fill "
                          "it; twice the real server left memory garbage there: an SQL fragment, 'deb12u1)')"),
    ("irule -F cut", "irule_F_limits 'server_log': only whether it reports a SyntaxError (where the cut text "
                     "breaks depends on the uncompacted 23845-character file, which is not in the records)"),
)

_RUN10_RE = re.compile(r"probe10-(\d{10}|fixture)")
_RUN_RE = re.compile(r"probe\d*-\d+")
_STAMP_RE = re.compile(r"d-\d+\.delay")
_ADDR_RE = re.compile(r"0x[0-9a-fA-F]+")
_CODE_RE = re.compile(r"^\[iRods__Error__Code:(-?\d+)\]")
_MACHINE_MODULES = ("jsonschema", "libarchive")


def _norm_str(s: str) -> str:
    s = _RUN10_RE.sub("probe10-RUN", s)
    s = _RUN_RE.sub("probe-RUN", s)
    s = _STAMP_RE.sub("d-STAMP.delay", s)
    return _ADDR_RE.sub("0xADDR", s)


def _norm_value(v: Any) -> Any:
    if isinstance(v, str):
        return _norm_str(v)
    if isinstance(v, list):
        return [_norm_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm_value(x) for k, x in v.items() if k not in _ANNOTATIONS}
    return v


def normalise(rec: Dict[str, Any], config_dir: str) -> Dict[str, Any]:
    """One record, comparable: see NORMALISATIONS."""
    r = {k: _norm_value(v) for k, v in rec.items() if not k.endswith("_s") and k not in _ANNOTATIONS}
    probe = r.get("probe")
    _norm_round10(r)
    if isinstance(r.get("exc"), str):
        m = _CODE_RE.match(r["exc"])
        if m:
            r["exc"] = "[iRods__Error__Code:{}]".format(m.group(1))
    if probe == "python":
        r.pop("version", None)
        r.pop("path", None)
    if probe == "import":
        if r.get("module") in _MACHINE_MODULES:
            r = {"probe": probe, "module": r["module"]}
        elif isinstance(r.get("file"), str) and os.path.dirname(r["file"]) == config_dir:
            r["file"] = "<etc>/" + os.path.basename(r["file"])
    if probe == "pep_api_replica_close_post" and isinstance(r.get("buf"), str):
        head, brace, rest = r["buf"].rpartition("}")
        if brace:
            r["buf"] = head + brace + ("<garbage>" if rest else "")
    return r


_ELIDED_TIME = "<epoch seconds, zero-padded to 11 digits>"
_ANNOTATIONS = ("how", "note")
_RESOURCES = ("", "demoResc")


def _norm_round10(r: Dict[str, Any]) -> None:
    for a in r.get("arguments") or []:
        if isinstance(a, dict) and a.get("type") == "RodsObjStat":
            for k in ("modifyTime", "createTime"):
                if isinstance(a.get(k), str) and re.fullmatch(r"\d{11}", a[k]):
                    a[k] = _ELIDED_TIME
            if isinstance(a.get("dataId"), str) and re.fullmatch(r"\d+", a["dataId"]):
                a["dataId"] = "<numeric id as str>"
            if isinstance(a.get("rescHier"), str) and a["rescHier"] not in _RESOURCES:
                a["rescHier"] = ""  # msiObjStat leaves rescHier unfilled: leftover server memory
    cols = r.get("columns")
    if isinstance(cols, list) and "RULE_EXEC_TIME" in cols and isinstance(r.get("rows"), list):
        i = cols.index("RULE_EXEC_TIME")
        for row in r["rows"]:
            if isinstance(row, list) and isinstance(row[i], str) and re.fullmatch(r"\d+", row[i]):
                row[i] = "<epoch seconds>"
    if r.get("probe") == "irule_F_limits":
        for res in r.get("results") or []:
            if isinstance(res.get("server_log"), str):
                res["server_log"] = "SyntaxError" if "SyntaxError" in res["server_log"] else res["server_log"]


def split_delayed(records: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    rest = [r for r in records if r.get("probe") != "delayed_ran"]
    delayed = [r for r in records if r.get("probe") == "delayed_ran"]
    return rest, delayed


# ---------------------------------------------------------------------------------------------- comparison
def _describe(rec: Dict[str, Any]) -> str:
    what = rec.get("probe", "?")
    for k in ("logical_path", "obj_path", "path", "module"):
        if k in rec:
            return "{}({})".format(what, rec[k])
    return str(what)


def _diff_value(where: str, g: Any, f: Any, out: List[str]) -> None:
    if isinstance(g, dict) and isinstance(f, dict):
        for k in sorted(set(g) | set(f)):
            if k not in f:
                out.append("{}.{}: only in golden ({!r})".format(where, k, g[k]))
            elif k not in g:
                out.append("{}.{}: only in fake ({!r})".format(where, k, f[k]))
            else:
                _diff_value("{}.{}".format(where, k), g[k], f[k], out)
    elif isinstance(g, list) and isinstance(f, list):
        if len(g) != len(f) and all(isinstance(x, str) for x in g + f):
            missing, extra = sorted(set(g) - set(f)), sorted(set(f) - set(g))
            out.append("{}: {} items in golden, {} in fake; missing {} extra {}".format(
                where, len(g), len(f), missing, extra))
            return
        if len(g) != len(f):
            out.append("{}: golden {!r} != fake {!r}".format(where, g, f))
            return
        for i, (x, y) in enumerate(zip(g, f)):
            _diff_value("{}[{}]".format(where, i), x, y, out)
    elif g != f or type(g) is not type(f):
        out.append("{}: golden {!r} != fake {!r}".format(where, g, f))


def compare_records(label: str, golden: List[Dict[str, Any]], fake: List[Dict[str, Any]]) -> List[str]:
    """Every difference, as 'label golden#i/fake#j probe(path).field: golden X != fake Y' lines."""
    out: List[str] = []
    gnames = [_describe(r) for r in golden]
    fnames = [_describe(r) for r in fake]
    sm = difflib.SequenceMatcher(a=gnames, b=fnames, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                i, j = i1 + k, j1 + k
                _diff_value("{} golden#{}/fake#{} {}".format(label, i, j, gnames[i]), golden[i], fake[j], out)
            continue
        if i2 > i1:
            out.append("{} golden#{}..{}: records the fake did not write: {}".format(label, i1, i2 - 1, gnames[i1:i2]))
        if j2 > j1:
            out.append("{} fake#{}..{}: records the real server did not write: {}".format(
                label, j1, j2 - 1, fnames[j1:j2]))
    return out


def matching_records(golden: List[Dict[str, Any]], fake: List[Dict[str, Any]]) -> Tuple[int, List[str]]:
    """How many golden records the fake wrote identically (paired by probe name, in order); the rest."""
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for r in fake:
        by_name.setdefault(_describe(r), []).append(r)
    n, differing = 0, []
    for g in golden:
        cands = by_name.get(_describe(g), [])
        if cands and cands[0] == g:
            n += 1
        else:
            differing.append(_describe(g))
        if cands:
            cands.pop(0)
    return n, differing


def report(diffs: List[str], limit: int = 60) -> str:
    more = "" if len(diffs) <= limit else "\n... and {} more".format(len(diffs) - limit)
    return "\n" + "\n".join(diffs[:limit]) + more


# ---------------------------------------------------------------------------------------------- round 5
def exc_name(e: BaseException) -> str:
    """The name python-irodsclient gave the exception (iRODS error name for a coded error)."""
    if isinstance(e, IrodsError):
        return NAMES.get(e.code, str(e.code))
    return type(e).__name__


def acl_set(cat: SimCatalog, path: str) -> Set[Tuple[str, str]]:
    return {(a.user, a.level) for a in cat.acl(path)}


class FlowLog:
    """privflow_*.py's rec(): run a step, log ok or the exception's name."""

    def __init__(self) -> None:
        self.log: List[Dict[str, Any]] = []

    def rec(self, step: str, fn: Callable[[], Any]) -> Any:
        try:
            r = fn()
            self.log.append({"step": step, "ok": True})
            return r
        except Exception as e:  # noqa: BLE001 - the outcome is what is compared
            self.log.append({"step": step, "ok": False, "exc": exc_name(e)})
            return None

    def add(self, entry: Dict[str, Any]) -> None:
        self.log.append(entry)


def prc_write(zone: SimZone, path: str, data: bytes) -> None:
    """data_objects.open(p, 'w').write(data) + close: create if absent, else overwrite (needs modify_object)."""
    cat = zone.catalog
    w = cat.open_overwrite(zone.user, path) if cat.exists(path) else cat.open_new(zone.user, path)
    with w:
        w.write(data)


def prc_read(zone: SimZone, path: str) -> bytes:
    with zone.open_read(path) as f:
        return f.read()


def prc_add_avu(zone: SimZone, path: str, attr: str, value: str) -> None:
    """collection.metadata.add(iRODSMeta(attr, value)): the same server check as the atomic msi."""
    zone.catalog.apply_metadata(zone.user, json.dumps({
        "entity_name": path, "entity_type": zone.stat(path).kind,
        "operations": [{"operation": "add", "attribute": attr, "value": value, "units": ""}]}))


def flow_inherit(cat: SimCatalog) -> List[Dict[str, Any]]:
    """privflow_inherit.py step by step on the simulated zone."""
    st = STAMP
    a, s = SimZone(cat, ADMIN), SimZone(cat, SVC)
    log = FlowLog()
    root = "/{}/home/alice/omero-{}".format(ZONE, st)
    cat.set_acl(ADMIN, "/{}/home/alice".format(ZONE), ADMIN, "admin:own")
    a.create_collection(root, recursive=True)
    a.set_acl(root, ALICE, "own")
    a.set_acl(root, SVC, "modify_object")
    a.set_acl(root, "", "inherit")
    log.rec("admin: remove rods own on root (leave alice own, svc write)", lambda: a.set_acl(root, ADMIN, "null"))
    land = "/{}/home/svc/landing-{}/d1".format(ZONE, st)
    s.create_collection(land, recursive=True)
    prc_write(s, land + "/transfer.tar", b"tar-bytes")
    snap = root + "/snap1"
    log.rec("svc: create snapshot collection in alice's root (svc has modify_object, inherit on)",
            lambda: s.create_collection(snap, recursive=True))
    log.rec("svc: acls on new snapshot collection", lambda: None)
    log.log[-1]["acl"] = acl_set(cat, snap)
    log.rec("svc: rename its landing object into the snapshot", lambda: s.rename(land + "/transfer.tar",
                                                                                 snap + "/transfer.tar"))
    obj = log.rec("svc: stat moved object", lambda: s.stat(snap + "/transfer.tar"))
    if obj:
        log.log[-1]["acl"] = acl_set(cat, snap + "/transfer.tar")
    log.rec("svc: add AVU on snapshot collection", lambda: prc_add_avu(s, snap, "omero.snapshot.status", "placed"))
    log.rec("svc: grant own to alice on snapshot, recursive", lambda: s.set_acl(snap, ALICE, "own", recursive=True))
    log.rec("svc: lower itself to read on snapshot, recursive", lambda: s.set_acl(snap, SVC, "read", recursive=True))
    log.rec("svc: after read, delete moved object (must fail)", lambda: s.remove_object(snap + "/transfer.tar"))
    log.rec("svc: after read, still reads it", lambda: prc_read(s, snap + "/transfer.tar"))
    log.rec("svc: after read, can create a second snapshot in root",
            lambda: s.create_collection(root + "/snap2", recursive=True))
    log.rec("svc: create in bob's home (must fail)",
            lambda: s.create_collection("/{}/home/bob-{}".format(ZONE, st), recursive=True))
    log.add({"step": "final acl on snapshot collection", "acl": acl_set(cat, snap)})
    if cat.exists(snap + "/transfer.tar"):
        log.add({"step": "final acl on archive", "acl": acl_set(cat, snap + "/transfer.tar")})
    else:
        log.add({"step": "admin: archive in snapshot", "exc": "DataObjectDoesNotExist",
                 "listing": [os.path.basename(o.path) for o in a.list_collection(snap).data_objects]})
    log.add({"step": "final acl on snap2", "acl": acl_set(cat, root + "/snap2")})
    return log.log


def flow_noinherit(cat: SimCatalog) -> List[Dict[str, Any]]:
    """privflow_noinherit.py step by step on the simulated zone."""
    st = STAMP
    a, s, u = SimZone(cat, ADMIN), SimZone(cat, SVC), SimZone(cat, ALICE)
    log = FlowLog()
    root = "/{}/home/alice/omero-noinherit-{}".format(ZONE, st)
    a.create_collection(root, recursive=True)
    a.set_acl(root, ALICE, "own")
    a.set_acl(root, SVC, "modify_object")
    a.set_acl(root, ADMIN, "null")
    log.add({"step": "enrolled root acl (no inherit)", "acl": acl_set(cat, root)})
    land = "/{}/home/svc/landing-{}/d1".format(ZONE, st)
    s.create_collection(land, recursive=True)
    prc_write(s, land + "/transfer.tar", b"tar-bytes")
    prc_write(s, land + "/manifest.json", b"{}")
    snap = root + "/snap1"
    log.rec("svc: create snapshot collection", lambda: s.create_collection(snap, recursive=True))
    log.log[-1]["acl"] = acl_set(cat, snap)
    log.rec("svc: rename archive into snapshot", lambda: s.rename(land + "/transfer.tar", snap + "/transfer.tar"))
    log.rec("svc: rename manifest into snapshot", lambda: s.rename(land + "/manifest.json", snap + "/manifest.json"))
    def unpack_member() -> None:
        s.create_collection(snap + "/content/a", recursive=True)
        prc_write(s, snap + "/content/a/x.tif", b"member")

    log.rec("svc: create member collection + object (unpack)", unpack_member)
    log.rec("svc: add AVU on snapshot", lambda: prc_add_avu(s, snap, "omero.snapshot.status", "complete"))
    log.rec("svc: grant own to alice, recursive", lambda: s.set_acl(snap, ALICE, "own", recursive=True))
    log.rec("svc: lower itself to read, recursive", lambda: s.set_acl(snap, SVC, "read", recursive=True))
    log.rec("svc: delete archive after read (must fail)", lambda: s.remove_object(snap + "/transfer.tar"))
    log.rec("svc: overwrite member after read (must fail)", lambda: prc_write(s, snap + "/content/a/x.tif", b"evil"))
    log.rec("svc: add AVU after read (must fail)", lambda: prc_add_avu(s, snap, "x", "y"))
    log.rec("svc: remove whole snapshot after read (must fail)",
            lambda: cat.remove_collection(SVC, snap, recursive=True))
    log.rec("svc: read archive after read", lambda: prc_read(s, snap + "/transfer.tar"))
    log.add({"step": "final snapshot acl", "acl": acl_set(cat, snap)})
    log.add({"step": "final archive acl", "acl": acl_set(cat, snap + "/transfer.tar")})
    log.add({"step": "final member acl", "acl": acl_set(cat, snap + "/content/a/x.tif")})
    log.add({"step": "objects left",
             "names": [os.path.basename(o.path) for o in a.list_collection(snap).data_objects]})
    log.rec("alice: reads her snapshot archive", lambda: prc_read(u, snap + "/transfer.tar"))
    log.rec("alice: can delete her snapshot member", lambda: u.remove_object(snap + "/content/a/x.tif"))
    return log.log


def flow_catalog(workdir: str) -> SimCatalog:
    cat = SimCatalog(workdir, ZONE)
    for user in (SVC, ALICE):
        cat.add_user(user, "rodsuser")
    return cat


def golden_flow_entry(rec: Dict[str, Any]) -> Dict[str, Any]:
    """ACL rows come back in a different order on each version: compare them as sets of (user, level)."""
    r = dict(rec)
    if "acl" in r:
        r["acl"] = {tuple(x) for x in r["acl"]}
    return r


def compare_flow(label: str, golden: List[Dict[str, Any]], fake: List[Dict[str, Any]]) -> List[str]:
    out: List[str] = []
    g = [golden_flow_entry(r) for r in golden]
    gsteps = [r["step"] for r in g]
    fsteps = [r["step"] for r in fake]
    if gsteps != fsteps:
        out.append("{}: step sequence differs:\n  ".format(label) + "\n  ".join(
            difflib.unified_diff(gsteps, fsteps, "golden", "fake", lineterm="")))
        return out
    for i, (x, y) in enumerate(zip(g, fake)):
        for k in sorted(set(x) | set(y)):
            if x.get(k, "<absent>") != y.get(k, "<absent>"):
                out.append("{} step#{} {!r} field {}: golden {!r} != fake {!r}".format(
                    label, i, x["step"], k, x.get(k, "<absent>"), y.get(k, "<absent>")))
    return out


__all__ = ["ADMIN", "ALICE", "SVC", "ROUNDS", "V435", "V502", "NORMALISATIONS", "ProbeReplay", "compare_flow",
           "compare_records", "flow_catalog", "flow_inherit", "flow_noinherit", "golden_dir",
           "golden_privilege_flows", "golden_records", "normalise", "replay_probe_rounds", "report",
           "split_delayed"]


# ---------------------------------------------------------------------------------------------- round 11
ROUND11_SELF_HEALING = "round11-self-healing.jsonl"
SELF_HEALING_PROBE = os.path.join(os.path.dirname(_HERE), "docs", "probes", "probe_round11_self_healing.py")
_ORDER11 = ("start_scheduled", "start_queued_rows", "delayed_ran", "delayed_sees_itself", "delayed_scheduled_successor",
            "chained_ran")


def self_healing_variant(text: str) -> str:
    """The second run of round 11 (round11-README.md): the rules renamed probe11q_*, and the LIKE pattern
    without its embedded quotes ('_' matching each), which the genquery parser refused."""
    text = text.replace("probe11_", "probe11q_").replace("probe11.jsonl", "probe11q.jsonl")
    return text.replace("\"probe11q_delayed('{}')\".format(run)", "\"probe11q_delayed(_{}_)\".format(run)")


def self_healing_view(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What round 11's E1-E4 compare, run by run: which records, by whom, queued rows with RULE_EXEC_TIME as
    seconds after the start (E3: the due time), whether a delayed rule ran no earlier than its PLUSET after
    it was queued (E2: 30 s; 5 s for the chained one) - not when exactly: the delay server wakes every 30 s."""
    timed = [r for r in records if "t" in r]
    start = {(r.get("variant", ""), r["run"]): r["t"] for r in timed if r["probe"] == "start_scheduled"}
    ran = {(r.get("variant", ""), r["run"]): r["t"] for r in timed if r["probe"] == "delayed_ran"}
    out = []
    for r in timed:
        key = (r.get("variant", ""), r["run"])
        v: Dict[str, Any] = {k: r[k] for k in ("probe", "run", "user", "ok", "pluset") if k in r}
        v["variant"] = key[0]
        rows = r.get("rows")
        if isinstance(rows, str):
            m = re.search(r"Code:(-?\d+)", rows)
            v["rows"] = "error {}".format(m.group(1) if m else rows)
        elif isinstance(rows, list):
            v["rows"] = [[row[0], int(row[1]) - int(start[key]), row[2]] for row in rows]
        if r["probe"] == "delayed_ran":
            v["not_before_pluset"] = r["t"] - start[key] >= 30 - 0.5
        if r["probe"] == "chained_ran":
            v["not_before_pluset"] = r["t"] - ran[key] >= 5 - 0.5
        out.append(v)
    return sorted(out, key=lambda v: (v["variant"], v["run"], _ORDER11.index(v["probe"])))


def replay_round11_self_healing(workdir: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """docs/probes/probe_round11_self_healing.py as round 11 ran it, twice (as written, then the variant),
    on fake servers: loaded as core, probe11_start("RUN") and ("RUN-raise") through the native rule
    language as the rodsuser, then the delay server until nothing is left; the probe's clock is the
    server's (SimClock). Returns the records and the rules still queued afterwards (iqstat -a)."""
    import tempfile
    import types

    from simzone.prep import NATIVE_INSTANCE

    records: List[Dict[str, Any]] = []
    left: List[str] = []
    with open(SELF_HEALING_PROBE, encoding="utf-8") as f:
        text = f.read()
    saved_tmp, saved_core = tempfile.tempdir, sys.modules.get("core")
    try:
        for variant, prefix in (("", "probe11"), ("probe11q", "probe11q")):
            work = os.path.join(workdir, variant or "probe11")
            os.makedirs(work)
            core_py = os.path.join(work, "core.py")
            with open(core_py, "w", encoding="utf-8") as f:
                f.write(self_healing_variant(text) if variant else text)
            tempfile.tempdir = work  # the module computes OUT at import
            cat = SimCatalog(os.path.join(work, "zone"), ZONE)
            cat.add_user(SVC10, "rodsuser")
            srv = FakeServer(cat, FakeServer.load_core(core_py), os.path.join(work, "rodsLog"))
            sys.modules["core"].time = types.SimpleNamespace(time=srv.clock.now)  # type: ignore[attr-defined]
            for run in ("RUN", "RUN-raise"):
                srv.irule(SVC10, prefix + "_start", [run], instance=NATIVE_INSTANCE)
            srv.run_delay_queue(horizon=None)
            with open(os.path.join(work, prefix + ".jsonl"), encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if variant:
                        rec["variant"] = variant
                    records.append(rec)
            left += [body for _id, _due, body in srv.clock.pending() if prefix in body]
            cat.close()
    finally:
        tempfile.tempdir = saved_tmp
        if saved_core is None:
            sys.modules.pop("core", None)
        else:
            sys.modules["core"] = saved_core
    return records, left
