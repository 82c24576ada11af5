"""A fake PREP runtime over the simulated catalog: callback, rei, PEP firing, delay server, irule.

The wire-facing layer of the simulation (the catalog holds state and
semantics). It reproduces what the probed servers did: every microservice
returns {'arguments','code','status'} and fails with
RuntimeError('[iRods__Error__Code:N] [-]\\t...'); msiDataObjWrite of Python
bytes writes nothing and succeeds; delayExec refuses rule text of 5440 bytes
or more with -806000 and runs the rest later as the submitting user; a
post-PEP that raises or returns a negative code makes the uploading client
see an error while the object stays stored.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import textwrap
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from policy.errors import IrodsError
from policy.zone import LEVELS
from simzone import prep_types
from simzone.catalog import SimCatalog, VaultWriter, sha2

PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"
MAX_ACTION_SIZE = 5440
MAX_IRULE_TEXT = 20 * 1024  # irule -F text kept by the server: 20187 characters ran, 23845 were cut (round 10)
PEP_REGEXES = (re.compile(r"^ac[^ ]*$"), re.compile(r"^[^ ]*pep_[^ ]*_(pre|post)$"))
LOCATION = "<simulated server: simzone.prep>"

# The keys a real pep_resource_modified_post's PluginContext.map() carried (round 1).
RESOURCE_MODIFIED_KEYS = (
    "api_index auth_scheme client_addr connect_count dataId dataType file_descriptor file_size flags_kw in_pdmo "
    "l1_desc_idx logical_path mode_kw openType option physical_path proxy_auth_info_auth_flag "
    "proxy_auth_info_auth_scheme proxy_auth_info_auth_str proxy_auth_info_flag proxy_auth_info_host "
    "proxy_auth_info_ppid proxy_rods_zone proxy_sys_uid proxy_user_name proxy_user_other_info_user_comments "
    "proxy_user_other_info_user_create proxy_user_other_info_user_info proxy_user_other_info_user_modify "
    "proxy_user_type repl_requested resc_hier socket status user_auth_info_auth_flag user_auth_info_auth_scheme "
    "user_auth_info_auth_str user_auth_info_flag user_auth_info_host user_auth_info_ppid user_rods_zone "
    "user_sys_uid user_user_name user_user_other_info_user_comments user_user_other_info_user_create "
    "user_user_other_info_user_info user_user_other_info_user_modify user_user_type"
).split()


class ReturnedCode(Exception):
    """A microservice failure the real server RETURNS ({'code': N, 'status': False}) instead of raising."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# Path shapes observed as missing (round 10): these msis then return -808000 instead of raising.
CAT_NO_ROWS_FOUND = -808000


class IruleClientError(Exception):
    """What the irule client itself refused before sending anything (its message, no iRODS code)."""


def irods_runtime_error(code: int, what: str = "") -> RuntimeError:
    return RuntimeError("[iRods__Error__Code:{}] [-]\t{}{}".format(code, LOCATION, (" " + what) if what else ""))


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def make_rei(user: str, zone: str, obj_path: str = "", proxy: Optional[str] = None) -> Any:
    """A rei with the fields rules read: uoic (client), uoip (proxy), doi, rsComm."""
    # On a server these are char_array, not str (round 10 'caller'): rules must str() them.
    uoic = _Obj(userName=prep_types.char_array(user.encode("utf-8")),
                rodsZone=prep_types.char_array(zone.encode("utf-8")))
    uoip = _Obj(userName=prep_types.char_array((proxy or user).encode("utf-8")),
                rodsZone=prep_types.char_array(zone.encode("utf-8")))
    return _Obj(uoic=uoic, uoip=uoip, doi=_Obj(objPath=obj_path),
                rsComm=_Obj(clientUser=uoic, proxyUser=uoip), status=0)


@dataclass
class PepOutcome:
    """What the uploading client saw after its upload's post-PEPs ran."""

    client_error: Optional[int] = None
    fired: List[str] = field(default_factory=list)


@dataclass
class _OpenDesc:
    path: str
    mode: str  # 'r' or 'w'
    writer: Optional[VaultWriter] = None
    reader: Any = None
    written: bool = False


class FakeServer:
    """One simulated iRODS server with PREP: a catalog, a loaded `core` module, a delay queue."""

    def __init__(self, catalog: SimCatalog, core_module: Optional[types.ModuleType] = None,
                 log_path: Optional[str] = None) -> None:
        prep_types.install()
        self.catalog = catalog
        self.core = core_module
        self.log_path = log_path or os.path.join(catalog.zone_dir, "rodsLog")
        self.delay_ran: List[Tuple[int, str, str]] = []
        self.stdout: List[str] = []  # writeLine("stdout", ...) of rules run through irule
        self.error_lines: List[str] = []  # error-level lines written to the log (log_error)
        self.eof_reads = 0  # msiDataObjRead calls answered with the end-of-file None (tests count them)
        # The agent's Python: held for the whole of every microservice call (round 12, H1: PREP does not let
        # the rule's other threads run during one). The drop lease's heartbeat zone takes it for each call.
        self.interpreter = threading.RLock()

    # ------------------------------------------------------------------ core
    @staticmethod
    def load_core(core_py: str, module_name: str = "core") -> types.ModuleType:
        """Import a core.py the way PREP does (config dir on sys.path, module named 'core')."""
        prep_types.install()
        etc = os.path.dirname(os.path.abspath(core_py))
        if etc not in sys.path:
            sys.path.append(etc)
        # On a server genquery.py and session_vars.py are files in the config directory (round 2 'import').
        for name in ("genquery", "session_vars"):
            sys.modules[name].__file__ = os.path.join(etc, name + ".py")
        spec = importlib.util.spec_from_file_location(module_name, core_py)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = mod
        spec.loader.exec_module(mod)
        return mod

    def log(self, message: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write("{} {}\n".format(time.strftime("%Y-%m-%dT%H:%M:%S"), message))

    def log_error(self, message: str) -> None:
        """An error-level line of the server log (what an admin reading rodsLog sees as an error)."""
        self.error_lines.append(message)
        self.log("ERROR: " + message)

    def callback(self, user: str, proxy: Optional[str] = None) -> "FakeCallback":
        return FakeCallback(self, user, proxy)

    def has_rule(self, name: str) -> bool:
        return self.core is not None and hasattr(self.core, name)

    def call_rule(self, name: str, args: List[Any], user: str, obj_path: str = "") -> Any:
        assert self.core is not None
        fn = getattr(self.core, name)
        rei = make_rei(user, self.catalog.zone_name, obj_path)
        return fn(args, self.callback(user), rei)

    # ------------------------------------------------------------------ PEPs
    def _fire(self, pep: str, rule_args: List[Any], user: str, obj_path: str, outcome: PepOutcome) -> None:
        if not self.has_rule(pep) or not any(r.match(pep) for r in PEP_REGEXES):
            return
        outcome.fired.append(pep)
        try:
            ret = self.call_rule(pep, rule_args, user, obj_path)
        except Exception as e:  # noqa: BLE001 - PREP logs it and the client sees an error
            self.log("PEP {} raised: {!r}".format(pep, e))
            if outcome.client_error is None:
                outcome.client_error = -1
            return
        if isinstance(ret, int) and ret < 0 and outcome.client_error is None:
            outcome.client_error = ret

    def _resource_modified_ctx(self, path: str, user: str, size: int, api_index: str = "",
                               open_type: str = "") -> Any:
        values = {k: "" for k in RESOURCE_MODIFIED_KEYS}
        values.update(logical_path=path, user_user_name=user, proxy_user_name=user, file_size=str(size),
                      user_rods_zone=self.catalog.zone_name, proxy_rods_zone=self.catalog.zone_name,
                      resc_hier="demoResc", physical_path="<vault>", user_user_type="",
                      api_index=api_index, l1_desc_idx="3")
        if "openType" in values:
            values["openType"] = open_type
        return prep_types.PluginContext(values)

    def fire_write_peps(self, path: str, user: str, size: int, api: str, outcome: PepOutcome,
                        reopened: bool = False) -> None:
        """The post-PEPs a finished upload fires, in the order the real server fired them (round 1). After
        create() (reopened), the write's close says api_index 673, openType 3 (round 11)."""
        ctx = self._resource_modified_ctx(path, user, size, *(("673", "3") if reopened else ()))
        if api == "prc_parallel":
            # The real buffer is not NUL-terminated: str(buf.buf) runs past `len` into garbage (round 1).
            buf = prep_types.unterminated_bytes_buf(
                b'{"fd": 3, "send_notification": false, "update_size": false, '
                b'"update_status": false, "compute_checksum": false}', b"0bef]]")
            self._fire("pep_api_replica_close_post", [PYTHON_INSTANCE, ctx, buf], user, path, outcome)
        self._fire("pep_resource_modified_post", [PYTHON_INSTANCE, ctx, ""], user, path, outcome)
        self._fire("acPostProcForPut", [], user, path, outcome)
        if outcome.client_error is not None:
            # The close/put API call failed, so its API post-PEP does not fire (round 2: .raise, .negative).
            return
        if api in ("prc", "prc_parallel"):
            self._fire("pep_api_data_obj_close_post", [PYTHON_INSTANCE, ctx, prep_types.OpenedDataObjInp(3)],
                       user, path, outcome)
        elif api == "put":
            inp = prep_types.DataObjInp(path)
            self._fire("pep_api_data_obj_put_post", [PYTHON_INSTANCE, ctx, inp, prep_types.BytesBuf(), None],
                       user, path, outcome)

    def fire_create_peps(self, path: str, user: str, outcome: PepOutcome) -> None:
        """What python-irodsclient's data_objects.create() fires when it closes the new, empty replica.

        Observed: pep_resource_modified_post with file size 0, from DATA_OBJ_CLOSE_AN, about 0.1 s before
        the PEPs of the write that follows (round 9); and, like any close of a written replica,
        acPostProcForPut and pep_api_data_obj_close_post after it (round 11, round11-arguments.jsonl: P2;
        api_index 673, openType 1 here, 3 for the write that follows).
        """
        ctx = self._resource_modified_ctx(path, user, 0, api_index="673", open_type="1")
        self._fire("pep_resource_modified_post", [PYTHON_INSTANCE, ctx, ""], user, path, outcome)
        self._fire("acPostProcForPut", [], user, path, outcome)
        if outcome.client_error is None:
            self._fire("pep_api_data_obj_close_post", [PYTHON_INSTANCE, ctx, prep_types.OpenedDataObjInp(3)],
                       user, path, outcome)

    # ------------------------------------------------------------------ what clients do
    def client_put(self, user: str, path: str, data: bytes, api: str = "prc_create") -> PepOutcome:
        """A client upload of a NEW object.

        'prc_create': python-irodsclient create() then open('w')/write/close, what the OMERO side does
        (policy.prc_zone.PrcZone.open_new): the PEPs fire twice, first for the empty replica (round 9);
        'prc': python-irodsclient open('w')/write/close of a new path (round 1); 'put': iput.
        python-irodsclient writes over 32 MiB go parallel and also fire pep_api_replica_close_post.
        """
        return self.client_put_stream(user, path, [data], api)

    def client_put_stream(self, user: str, path: str, chunks: Any, api: str = "prc_create") -> PepOutcome:
        """Like client_put, from an iterable of byte chunks (never the whole archive in memory)."""
        outcome = PepOutcome()
        w = self.catalog.open_new(user, path)
        created = api == "prc_create"
        if created:  # the object exists, empty, from open_new on: like create()'s result
            self.fire_create_peps(path, user, outcome)
            api = "prc"
        size = 0
        with w:
            for chunk in chunks:
                w.write(chunk)
                size += len(chunk)
        if api == "prc" and size > 32 * 1024 * 1024:
            api = "prc_parallel"
        self.fire_write_peps(path, user, size, api, outcome, reopened=created)
        return outcome

    def irule(self, user: str, rule_name: str, args: List[str], instance: str = PYTHON_INSTANCE) -> List[Any]:
        """irule of a core.py rule. The python instance refuses rule text from non-admins (SYS_NO_API_PRIV)."""
        if instance == PYTHON_INSTANCE and self.catalog.user_type(user) != "rodsadmin":
            raise IrodsError(-13000, "python rule text needs a rodsadmin; use the native rule language instance")
        if not self.has_rule(rule_name):
            raise IrodsError(-1828000, "no rule " + rule_name)
        rule_args = list(args)
        self.call_rule(rule_name, rule_args, user)
        return rule_args

    def irule_file(self, user: str, path: str, instance: str = PYTHON_INSTANCE) -> List[str]:
        """irule -F <path>: run a rule FILE (not a core.py rule) as `user`; returns what it wrote to stdout.

        Observed (round 10): the client wants a `.r` name ("ERROR: Unsupported input file type .py"); a
        rodsuser may not run Python rule text (SYS_NO_API_PRIV); the server keeps only about 20 KiB of the
        text (a longer file failed with RULE_ENGINE_ERROR and a SyntaxError in the log). The trailing
        INPUT/OUTPUT lines are irule's, not the rule's. The native language instance runs the subset of
        simzone.native_rule.
        """
        if not path.endswith(".r"):
            raise IruleClientError("ERROR: Unsupported input file type " + os.path.splitext(path)[1])
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if instance == NATIVE_INSTANCE:
            from simzone.native_rule import NativeRule

            return NativeRule(self, user).run(text)
        if self.catalog.user_type(user) != "rodsadmin":
            raise IrodsError(-13000, "python rule text needs a rodsadmin")
        text = text.encode("utf-8")[:MAX_IRULE_TEXT].decode("utf-8", "ignore")
        lines = text.splitlines()
        while lines and re.match(r"^(INPUT|OUTPUT)\b", lines[-1].strip() or "INPUT"):
            lines.pop()
        ns: Dict[str, Any] = {"__name__": "irule_rule_file"}
        try:
            exec(compile("\n".join(lines) + "\n", "<irule -F>", "exec"), ns)  # noqa: S102 - the server's job
        except SyntaxError as e:
            self.log("ERROR: irule -F: SyntaxError: {} (rule text of {} characters; the server keeps {} bytes)"
                     .format(e.msg, len(text), MAX_IRULE_TEXT))
            raise IrodsError(-1828000, "SyntaxError in the rule text") from None
        before = len(self.stdout)
        ns["main"]([], self.callback(user), make_rei(user, self.catalog.zone_name))
        return self.stdout[before:]

    # ------------------------------------------------------------------ delay server
    # Rules that reschedule themselves for ever (the policy's sweep): see run_delay_queue.
    periodic_rules: Tuple[str, ...] = ("omero_snapshots_sweep", "omero_snapshots_fixity")

    @property
    def clock(self) -> "SimClock":
        clock = self.__dict__.get("_clock")
        if clock is None:
            clock = self.__dict__["_clock"] = SimClock(self.catalog)
        return clock

    def run_delay_queue(self, max_rules: int = 1000, horizon: Optional[float] = 600) -> int:
        """Run delayed rules as their submitting users, in simulated time; returns how many ran.

        A rule is due PLUSET after it was queued (on the zone's SimClock); the queue jumps the clock to
        the next due rule instead of waiting, so retries with backoff cost no wall time. It runs every
        rule due within `horizon` simulated seconds of the call (the default covers a drop's run and
        its first retry); horizon=None runs until nothing is left to run. A rule in `periodic_rules`
        reschedules itself for ever: once only such rules wait, and each has had a turn since the last
        other rule ran, the queue counts as empty. Claiming a rule is atomic in the catalog, so
        several servers (agents) may run one queue at once.
        """
        n = 0
        had_turn: set = set()
        until = None if horizon is None else self.clock.now() + horizon
        while n < max_rules:
            pending = self.clock.pending()
            if until is not None:
                pending = [p for p in pending if p[1] <= until]
            if not pending:
                break
            if all(_rule_name(body) in self.periodic_rules and _rule_name(body) in had_turn
                   for _rid, _due, body in pending):
                break
            rid, due, _ = min(pending, key=lambda r: (r[1], r[0]))
            if due > self.clock.now() and self.clock.busy_elsewhere():
                time.sleep(0.005)  # time passes only as fast as the rule another executor runs
                continue
            self.clock.advance_to(due)
            item = self.clock.claim(rid)
            if item is None:
                continue  # another server claimed it first
            rid, user, cond, body = item
            n += 1
            name = _rule_name(body)
            if name in self.periodic_rules:
                had_turn.add(name)
            else:
                had_turn.clear()
            inst = re.search(r"<INST_NAME>(.*?)</INST_NAME>", cond)
            if inst is None or inst.group(1) != PYTHON_INSTANCE:
                # Without INST_NAME the first REP gets it; python text in the native language fails.
                self.catalog.finish_delay(rid, "failed", "not run by the python instance")
                self.log("delayed rule {} failed: no python INST_NAME".format(rid))
                continue
            src = "def expressionFcn(rule_args, callback, rei):\n" + textwrap.indent(body, "    ") + "\n"
            ns: Dict[str, Any] = {}
            try:
                exec(compile(src, "<delayed rule {}>".format(rid), "exec"), ns)  # noqa: S102 - that is the server's job
                ns["expressionFcn"]([], self.callback(user), make_rei(user, self.catalog.zone_name))
            except Exception as e:  # noqa: BLE001 - the delay server logs and goes on
                self.catalog.finish_delay(rid, "failed", repr(e))
                self.log("delayed rule {} failed: {!r}".format(rid, e))
                continue
            self.catalog.finish_delay(rid, "done")
            self.delay_ran.append((rid, user, body))
        return n


def _rule_name(body: str) -> str:
    m = re.match(r"\s*callback\.([A-Za-z0-9_]+)\(", body)
    return m.group(1) if m else body.split("(", 1)[0].strip()


_PLUSET = re.compile(r"<PLUSET>\s*(\d+)\s*([smhd]?)\s*</PLUSET>")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def pluset_seconds(cond: str) -> int:
    """The delay a delayExec condition asks for (PLUSET; none = at once)."""
    m = _PLUSET.search(cond)
    return int(m.group(1)) * _UNIT[m.group(2)] if m else 0


class SimClock:
    """Simulated time of one zone: wall time plus an offset kept in the zone's catalog, so that every
    process and agent working on the zone (a killed run, its retry) shares it.

    Only the delay queue moves it forward (to the next due rule), and never while another executor is
    still running a rule: real time does not jump an hour in the middle of a run (a jump would make that
    run's live lock look stale to the other executor). A rule's due time is fixed when delayExec queues
    it: its PLUSET after the clock's reading then.
    """

    def __init__(self, catalog: SimCatalog) -> None:
        self.catalog = catalog
        catalog.db.execute("CREATE TABLE IF NOT EXISTS sim_delay_due (id INTEGER PRIMARY KEY, due REAL)")
        catalog.db.execute("CREATE TABLE IF NOT EXISTS sim_delay_claims (id INTEGER PRIMARY KEY, pid INTEGER, "
                           "tid INTEGER)")

    def busy_elsewhere(self) -> bool:
        """Whether another live executor (a thread of this process, or another process) is running a rule.
        A rule left `running` by a killed process does not count: nothing runs it any more."""
        import threading

        rows = self.catalog.db.execute(
            "SELECT c.pid, c.tid FROM delay d JOIN sim_delay_claims c ON c.id = d.id WHERE d.state = 'running'"
        ).fetchall()
        me = threading.get_ident()
        threads = {t.ident for t in threading.enumerate()}
        for pid, tid in rows:
            if pid == os.getpid():
                if tid != me and tid in threads:
                    return True
                continue
            try:
                os.kill(int(pid), 0)
            except (OSError, ValueError):
                continue  # that process is gone
            return True
        return False

    def offset(self) -> float:
        row = self.catalog.db.execute("SELECT value FROM meta WHERE key='sim_clock_offset'").fetchone()
        return float(row[0]) if row else 0.0

    def now(self) -> float:
        return time.time() + self.offset()

    def advance_to(self, t: float) -> None:
        off = t - time.time()
        if off > self.offset():
            self.catalog.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('sim_clock_offset', ?)",
                                    (repr(off),))

    def pending(self) -> List[Tuple[int, float, str]]:
        """(id, due, body) of every pending rule, giving a due time to those seen for the first time."""
        db = self.catalog.db
        rows = db.execute("SELECT d.id, d.cond, d.body, s.due FROM delay d LEFT JOIN sim_delay_due s "
                          "ON s.id = d.id WHERE d.state = 'pending' ORDER BY d.id").fetchall()
        now = self.now()
        out = []
        for rid, cond, body, due in rows:
            if due is None:
                due = now + pluset_seconds(cond)
                db.execute("INSERT OR IGNORE INTO sim_delay_due (id, due) VALUES (?, ?)", (rid, due))
                # RULE_EXEC_TIME (the `created` column in the simulated genquery) becomes the due time:
                # observed in round 11 (docs/self-healing.md E3, round11-self-healing.jsonl).
                db.execute("UPDATE delay SET created = ? WHERE id = ?", (int(due), rid))
            out.append((int(rid), float(due), str(body)))
        return out

    def claim(self, rid: int) -> Optional[Tuple[int, str, str, str]]:
        """Take one pending rule; None if another server took it first (one UPDATE: atomic)."""
        cur = self.catalog.db.execute("UPDATE delay SET state='running' WHERE id=? AND state='pending'", (rid,))
        if cur.rowcount != 1:
            return None
        import threading

        self.catalog.db.execute("INSERT OR REPLACE INTO sim_delay_claims (id, pid, tid) VALUES (?, ?, ?)",
                                (rid, os.getpid(), threading.get_ident()))
        row = self.catalog.db.execute("SELECT id, user, cond, body FROM delay WHERE id=?", (rid,)).fetchone()
        return int(row[0]), row[1], row[2], row[3]


class _InterpreterBound:
    """A zone whose every call first takes the agent's interpreter lock (see FakeServer.interpreter)."""

    def __init__(self, zone: Any, interpreter: Any) -> None:
        self._zone = zone
        self._interpreter = interpreter
        self.user = zone.user
        self.zone_name = zone.zone_name

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._zone, name)
        if not callable(attr):
            return attr

        def bound(*args: Any, **kwargs: Any) -> Any:
            with self._interpreter:
                return attr(*args, **kwargs)
        return bound

    def close(self) -> None:
        self._zone.catalog.close()


class FakeCallback:
    """The `callback` a rule receives: microservices on the simulated catalog, and calls to other rules."""

    @staticmethod
    def sim_data_plane(callback: "FakeCallback") -> Any:
        """The data plane a PrepZone uses here; in a real server it is an in-rule python-irodsclient session."""
        from simzone.zone import SimZone

        return SimZone(callback._server.catalog, callback._user)

    @staticmethod
    def sim_heartbeat_zone(callback: "FakeCallback") -> Any:
        """The drop lease's heartbeat connection (production: a second in-rule python-irodsclient session,
        policy.prep_zone.PrepZone.heartbeat_opener): its own catalog connection, and, like any Python thread
        of a real agent, it cannot run while the rule's main thread is inside a microservice call (round 12)."""
        from simzone.zone import SimZone

        return _InterpreterBound(SimZone(SimCatalog(callback._cat.zone_dir, callback._cat.zone_name),
                                         callback._user), callback._server.interpreter)

    @staticmethod
    def sim_now(callback: "FakeCallback") -> float:
        """The server's time for the policy: the zone's simulated clock (see SimClock)."""
        return callback._server.clock.now()

    @staticmethod
    def sim_run_rule_as(callback: "FakeCallback", user: str, rule: str, args: List[str]) -> List[Any]:
        """What an in-server session proxying as `user` does in production (policy.prc_zone.run_rule_as): the
        same call_rule over python-irodsclient's Rule, here a FakeRule reaching this server with the argument
        passing of a real one (verbatim input parameters, simzone.rule_exec)."""
        from policy.irods_rules_client import call_rule
        from simzone.rule_exec import FakeRule, RuleSession

        return call_rule(RuleSession(callback._server, user), rule, list(args), rule_class=FakeRule)

    def __init__(self, server: FakeServer, user: str, proxy: Optional[str] = None) -> None:
        self._server = server
        self._user = user
        self._proxy = proxy or user
        self._fds: Dict[int, _OpenDesc] = {}
        self._thread = threading.get_ident()

    # ------------------------------------------------------------------ dispatch
    def __getattr__(self, name: str) -> Callable[..., Dict[str, Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        msi = getattr(type(self), "_msi_" + name, None)
        if msi is not None:
            def call(*args: Any) -> Dict[str, Any]:
                if threading.get_ident() != self._thread:
                    # Round 12, H2: on a real server the agent hangs for good (only SIGKILL ends it).
                    raise RuntimeError("a second thread called the rule's callback ({}): on a real server this hangs "
                                       "the agent; use a connection of its own (round 12)".format(name))
                try:
                    with self._server.interpreter:
                        out = msi(self, list(args))
                except ReturnedCode as r:
                    # Not every failure raises (round 10): the call returns, arguments unchanged.
                    return {"arguments": list(args), "code": r.code, "status": False}
                except IrodsError as e:
                    raise irods_runtime_error(e.code, name) from None
                return {"arguments": out, "code": 0, "status": True}
            return call
        if self._server.has_rule(name):
            def rule(*args: Any) -> Dict[str, Any]:
                rule_args = list(args)
                self._server.call_rule(name, rule_args, self._user)
                return {"arguments": rule_args, "code": 0, "status": True}
            return rule

        def missing(*args: Any) -> Dict[str, Any]:
            raise irods_runtime_error(-1828000, "no rule or microservice named " + name)
        return missing

    @property
    def _cat(self) -> SimCatalog:
        return self._server.catalog

    def _hidden(self, path: str) -> bool:
        """For a rodsuser an object it may not read looks exactly like a missing one (round 10)."""
        return self._cat.hidden_from(self._user, path)

    def _kind(self, path: str) -> Optional[str]:
        """'collection', 'data_object' or None (missing, or hidden from this user)."""
        if self._hidden(path):
            return None
        return self._cat.kind_of(path)

    @staticmethod
    def _no_trailing_slash(path: Any) -> str:
        """msiCollCreate and msiObjStat accept 'x/' for the collection x (round 10)."""
        p = str(path)
        return p.rstrip("/") or "/" if p.endswith("/") else p

    def _new_fd(self, desc: _OpenDesc) -> int:
        fd = 3
        while fd in self._fds:
            fd += 1
        self._fds[fd] = desc
        return fd

    @staticmethod
    def _kv(text: str) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for part in str(text).split("++++"):
            if part:
                k, _, v = part.partition("=")
                out[k] = v
        return out

    # ------------------------------------------------------------------ microservices
    def _msi_writeLine(self, a: List[Any]) -> List[Any]:  # noqa: N802 - iRODS name
        self._server.log("writeLine {}: {}".format(a[0], a[1]))
        if str(a[0]) == "stdout":
            self._server.stdout.append(str(a[1]))
        return a

    def _msi_msiSleep(self, a: List[Any]) -> List[Any]:  # noqa: N802 - iRODS name (round 12 probe)
        time.sleep(int(a[0]) + int(a[1]) / 1e6)
        return a

    def _msi_msiGetSystemTime(self, a: List[Any]) -> List[Any]:  # noqa: N802
        a[0] = str(int(time.time()))
        return a

    def _msi_msiDataObjCreate(self, a: List[Any]) -> List[Any]:  # noqa: N802
        # Observed (round 10): with or without forceFlag, an existing object is TRUNCATED to 0 bytes (needs
        # modify_object). The policy never calls it; modelled so that a test would catch a use.
        oid = self._cat.create_object(self._user, a[0], force=True)
        row = self._cat.db.execute("SELECT vault FROM objs WHERE id=?", (oid,)).fetchone()
        writer = VaultWriter(self._cat, oid, row[0])
        a[2] = self._new_fd(_OpenDesc(path=a[0], mode="w", writer=writer))
        return a

    def _msi_msiDataObjOpen(self, a: List[Any]) -> List[Any]:  # noqa: N802
        opts = self._kv(a[0])
        path = opts.get("objPath", "")
        flags = opts.get("openFlags", "O_RDONLY")
        if self._kind(path) != "data_object":
            raise IrodsError(-358000, path)  # missing, a collection, or hidden from a rodsuser (round 10)
        if flags == "O_RDONLY":
            reader = self._cat.open_read(self._user, path)
            a[1] = self._new_fd(_OpenDesc(path=path, mode="r", reader=reader))
        else:
            writer = self._cat.open_overwrite(self._user, path)
            a[1] = self._new_fd(_OpenDesc(path=path, mode="w", writer=writer))
        return a

    def _desc(self, fd: Any) -> _OpenDesc:
        d = self._fds.get(int(fd))
        if d is None:
            raise IrodsError(-130000, "bad descriptor")
        return d

    def _msi_msiDataObjWrite(self, a: List[Any]) -> List[Any]:  # noqa: N802
        d = self._desc(a[0])
        data = a[1]
        if isinstance(data, prep_types.BytesBuf):
            payload = bytes(data.get_bytes())
        elif isinstance(data, str):
            payload = data.encode("utf-8")
        else:
            # Observed: Python bytes arrive as an empty string; nothing is written, success reported.
            a[1] = ""
            payload = b""
        if d.writer is None:
            raise IrodsError(-130000, "descriptor not open for writing")
        d.writer.write(payload)
        d.written = True
        a[2] = len(payload)
        return a

    def _msi_msiDataObjRead(self, a: List[Any]) -> List[Any]:  # noqa: N802
        d = self._fds.get(int(a[0]))
        if d is None:
            raise IrodsError(-345000, "bad descriptor")  # BAD_INPUT_DESC_INDEX: closed or unknown (round 10)
        if d.reader is None:
            raise IrodsError(-130000, "descriptor not open for reading")
        data = d.reader.read(int(a[1])) if int(a[1]) > 0 else b""
        if not data:
            # At end of file, past it, for n=0 and on an empty object the buffer comes back as None (rounds 9, 10).
            self._server.eof_reads += 1
            a[2] = None
            return a
        buf = a[2] if isinstance(a[2], prep_types.BytesBuf) else prep_types.BytesBuf()
        buf.set_buffer(data)
        a[2] = buf  # the count read is buf.len; input 2 keeps the length asked for (as on the server)
        return a

    def _msi_msiDataObjClose(self, a: List[Any]) -> List[Any]:  # noqa: N802
        d = self._fds.pop(int(a[0]), None)
        if d is None:
            raise IrodsError(-130000, "bad descriptor")
        if d.reader is not None:
            d.reader.close()
        if d.writer is not None:
            d.writer.close()
            size = self._cat.stat(self._user, d.path).size
            # Inside a rule the close fires these two (round 1: between 'write' and 'close' records).
            outcome = PepOutcome()
            ctx = self._server._resource_modified_ctx(d.path, self._user, size)
            self._server._fire("pep_resource_modified_post", [PYTHON_INSTANCE, ctx, ""], self._user, d.path,
                               outcome)
            self._server._fire("acPostProcForPut", [], self._user, d.path, outcome)
        a[1] = 0
        return a

    def _msi_msiDataObjRename(self, a: List[Any]) -> List[Any]:  # noqa: N802
        kind = "collection" if str(a[2]) == "1" else "data_object"
        src, dst = str(a[0]), str(a[1])
        if src == dst:
            raise IrodsError(-339000, src)  # SAME_SRC_DEST_PATHS_ERR
        if self._kind(src) != kind:
            # A missing source, a source hidden from a rodsuser, or the wrong type flag: returned, not raised.
            raise ReturnedCode(CAT_NO_ROWS_FOUND)
        self._cat.rename(self._user, src, dst, kind)
        return a

    def _msi_msiCollCreate(self, a: List[Any]) -> List[Any]:  # noqa: N802
        self._cat.create_collection(self._user, self._no_trailing_slash(a[0]), recursive=str(a[1]) == "1")
        return a

    def _msi_msiDataObjCopy(self, a: List[Any]) -> List[Any]:  # noqa: N802
        if "forceFlag" in self._kv(a[2]):
            raise IrodsError(-130000, "this project never uses forceFlag; the simulation does not implement it")
        self._cat.copy(self._user, a[0], a[1])
        return a

    def _msi_msiObjStat(self, a: List[Any]) -> List[Any]:  # noqa: N802
        path = self._no_trailing_slash(a[0])
        kind = self._kind(path) if path.startswith("/") else None
        if kind == "data_object" and path != str(a[0]):
            kind = None  # 'x/' of a data object: not observed; the fake says missing
        if kind is None:
            # A real server also prints 'msiObjStat: rsObjStat failed' to the client and logs an error line:
            # a policy that stats a path that may be missing fills the admin's log with errors (issue 10).
            self._server.log_error("msiObjStat: rsObjStat failed for [{}], status = -310000".format(a[0]))
            raise IrodsError(-310000, str(a[0]))
        st = self._cat.stat(self._user, path)
        oid, ctime = self._cat.id_and_ctime(path)
        out = a[1] if isinstance(a[1], prep_types.RodsObjStat) else prep_types.RodsObjStat()

        def chars(v: Any) -> Any:
            return prep_types.char_array(str(v).encode("utf-8"))

        out.objType = prep_types.objType.DATA_OBJ if st.kind == "data_object" else prep_types.objType.COLL_OBJ
        out.objSize = st.size if st.kind == "data_object" else 0
        out.modifyTime = chars("{:011d}".format(st.modify_time))
        out.createTime = chars("{:011d}".format(ctime))
        out.dataId = chars(oid)
        # '' on objects without a checksum (round 10), the stored checksum otherwise (round 11).
        out.chksum = chars(st.checksum or "")
        out.rescHier = chars("")  # observed '' (rescHier is not filled by msiObjStat)
        out.ownerName = chars(st.owner or "")
        out.ownerZone = chars(self._cat.zone_name)
        out.dataMode = 0
        out.specColl = None
        a[1] = out
        return a

    def _msi_msiDataObjChksum(self, a: List[Any]) -> List[Any]:  # noqa: N802
        if self._kind(a[0]) != "data_object":
            # missing, a collection, or hidden from a rodsuser: returned with arguments[2] left '' (round 10)
            raise ReturnedCode(CAT_NO_ROWS_FOUND)
        if "verifyChksum" in str(a[1]):  # recompute and compare, register nothing; raises -407000 (round 12)
            self._cat.verify_checksum(self._user, a[0])
            a[2] = ""
            return a
        if "forceChksum" in str(a[1]):  # recompute and register: the replica is opened first (round 12: -510002
            self._cat.replica_readable(self._user, a[0])  # for a reader whose replica file is gone)
            self._cat.checksum(self._user, a[0], force=True)
            return a
        a[2] = self._cat.checksum(self._user, a[0])
        return a

    def _msi_msiSetACL(self, a: List[Any]) -> List[Any]:  # noqa: N802
        level = str(a[1])
        bare = level[len("admin:"):] if level.startswith("admin:") else level
        if bare not in ("inherit", "noinherit", "null", "read", "write") and bare not in LEVELS:
            raise IrodsError(-816000, "unknown access level " + level)  # CAT_INVALID_ARGUMENT (round 10)
        if self._cat.kind_of(str(a[3])) is None:
            raise IrodsError(-816000, "no such path " + str(a[3]))  # also CAT_INVALID_ARGUMENT (round 10)
        if bare in ("inherit", "noinherit") and self._cat.kind_of(str(a[3])) == "data_object":
            raise IrodsError(-818000, "inheritance on a data object")  # observed -818000
        self._cat.set_acl(self._user, a[3], a[2], a[1], recursive=(a[0] == "recursive"))
        return a

    def _msi_msi_atomic_apply_metadata_operations(self, a: List[Any]) -> List[Any]:
        try:
            req = json.loads(str(a[0]))
        except ValueError:
            raise IrodsError(-1084000, "not JSON") from None  # INPUT_ARG_NOT_WELL_FORMED_ERR (round 10)
        if isinstance(req, dict) and self._hidden(str(req.get("entity_name", ""))):
            raise IrodsError(-130000, "no such entity")  # an unreadable object looks missing to a rodsuser
        self._cat.apply_metadata(self._user, a[0])
        a[1] = "{}"
        return a

    def _msi_msiDataObjUnlink(self, a: List[Any]) -> List[Any]:  # noqa: N802
        path = self._kv(a[0]).get("objPath", a[0])
        if self._kind(path) != "data_object":
            raise ReturnedCode(CAT_NO_ROWS_FOUND)  # missing, a collection, or hidden: returned (round 10)
        self._cat.unlink(self._user, path)
        a[1] = 0
        return a

    def _msi_msiRmColl(self, a: List[Any]) -> List[Any]:  # noqa: N802
        # msiRmColl always adds the recursive keyword (reDataObjOpr.cpp; round 10: a non-empty collection
        # vanishes with its members); forceFlag skips the trash, which the simulation does not model.
        if self._cat.kind_of(str(a[0])) == "data_object":
            raise IrodsError(-834000, str(a[0]))  # CAT_NAME_EXISTS_AS_DATAOBJ (round 10)
        self._cat.remove_collection(self._user, a[0], recursive=True)
        a[2] = 0
        return a

    def _msi_delayExec(self, a: List[Any]) -> List[Any]:  # noqa: N802
        cond, body = str(a[0]), str(a[1])
        if len(body.encode("utf-8")) >= MAX_ACTION_SIZE:
            raise IrodsError(-806000, "rule text does not fit the {}-byte buffer".format(MAX_ACTION_SIZE))
        self._cat.enqueue_delay(self._user, cond, body)
        # the due time (and RULE_EXEC_TIME) is fixed at submission, as the server computes it from PLUSET then
        self._server.clock.pending()
        return a

    def _msi_msiTarFileExtract(self, a: List[Any]) -> List[Any]:  # noqa: N802
        from simzone.native_extract import tar_file_extract

        if self._kind(str(a[0])) != "data_object":
            raise IrodsError(-1821000, str(a[0]))  # REPLICA_NOT_IN_RESC: missing, or hidden from a rodsuser
        tar_file_extract(self._cat, self._user, a[0], a[1], a[2])
        a[3] = 0
        return a


def checksum_of_bytes(data: bytes) -> str:
    import hashlib

    return sha2(hashlib.sha256(data))


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
