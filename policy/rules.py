"""PREP entry points (PEP and rules), bound to one configuration directory.

core.py.d/omero_snapshots.py calls `bind()` and re-exports the entry points
it returns; nothing else of this package becomes an attribute of `core`
(PREP treats every attribute of `core` as a rule). Entry points are thin:
parse rule_args, call one use case, turn the result into a return code or a
JSON OUT parameter.

The upload PEP fires for every upload by every user of the server, so for
any path outside the landing collection it returns RULE_ENGINE_CONTINUE
after a string prefix test: no catalog call, no heavy import. It never
raises and never returns an error for a drop it accepted (observed: the
client would report a failure although the data was stored).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from policy.rule_args import RuleArgumentError, received

RULE_ENGINE_CONTINUE = 5000000
MANIFEST_SUFFIX = "/manifest.json"
PROCESS_RULE = "omero_snapshots_process_drop"


def default_config_dir(core_d_file: str) -> str:
    """OMERO_SNAPSHOTS_CONFIG_DIR, else <server config dir>/omero_snapshots (beside core.py)."""
    env = os.environ.get("OMERO_SNAPSHOTS_CONFIG_DIR")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(core_d_file))), "omero_snapshots")


class Entry:
    """The entry points of one server configuration (config dir), with a per-agent cache."""

    def __init__(self, config_dir: str) -> None:
        self.config_dir = config_dir
        self.config_path = os.path.join(config_dir, "config.json")
        self._cheap: Optional[Tuple[float, str, str]] = None  # (mtime, landing prefix, service account)

    # ------------------------------------------------------------------ helpers
    def _cheap_config(self) -> Optional[Tuple[str, str]]:
        """Landing prefix and service account, re-read only when config.json changes (one stat per call)."""
        try:
            mtime = os.stat(self.config_path).st_mtime
        except OSError:
            return None
        if self._cheap is None or self._cheap[0] != mtime:
            from policy.config import minimal_read

            try:
                landing, svc = minimal_read(self.config_path)
            except Exception:  # noqa: BLE001 - a broken config must not break uploads; doctor reports it
                return None
            self._cheap = (mtime, landing.rstrip("/") + "/", svc)
        return self._cheap[1], self._cheap[2]

    def load(self) -> Any:
        from policy.config import load_config

        return load_config(self.config_path)

    def load_mapping(self, config: Any) -> Any:
        from policy.mapping import UserMapping, load_mapping

        path = config.mapping_file
        if path is None or not os.path.exists(path):
            return UserMapping([])
        return load_mapping(path)

    def save_mapping(self, config: Any, mapping: Any) -> None:
        from policy.mapping import save_mapping

        save_mapping(config.mapping_file, mapping)

    def zone(self, callback: Any, rei: Any, config: Any) -> Any:
        from policy.prep_zone import PrepZone

        return PrepZone(callback, rei, config.zone, python_instance=config.python_instance)

    @staticmethod
    def _log(callback: Any, message: str) -> None:
        try:
            callback.writeLine("serverLog", "[omero-snapshots] " + message)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ PEP
    def pep_resource_modified_post(self, rule_args: List[Any], callback: Any, rei: Any) -> int:
        try:
            path = str(rule_args[1].map().get("logical_path", ""))
            if not path.endswith(MANIFEST_SUFFIX):
                return RULE_ENGINE_CONTINUE
            cheap = self._cheap_config()
            if cheap is None or not path.startswith(cheap[0]):
                return RULE_ENGINE_CONTINUE
            drop_id = path[len(cheap[0]):-len(MANIFEST_SUFFIX)]
            if "/" in drop_id:
                return RULE_ENGINE_CONTINUE
            values = rule_args[1].map()
            # python-irodsclient's create() closes an empty replica before the bytes are written, and that
            # close fires this PEP too (round 9); the trigger acts on the arrival with the bytes.
            empty = str(values.get("file_size", "")) == "0"
            user = str(values.get("user_user_name", ""))
            from policy.trigger import on_manifest_arrival

            config = self.load()
            result = on_manifest_arrival(self.zone(callback, rei, config), config, drop_id, user, empty=empty,
                                         load_mapping=lambda: self.load_mapping(config))
            self._log(callback, "manifest {}: {}".format(path, result))
        except Exception:  # noqa: BLE001 - a post-PEP must never fail an upload that stored data
            self._log(callback, "upload PEP error (upload itself is fine):\n" + traceback.format_exc()[-1500:])
        return RULE_ENGINE_CONTINUE

    # ------------------------------------------------------------------ delayed rule
    def process_drop(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """The delayed rule (runs as the submitting user, the service account).

        rule_args: [drop_id] (the upload PEP's run, an admin's reprocess), [drop_id, "break-lock"] (a
        forced reprocess), [drop_id, "retry"] (a retry it scheduled itself, or the sweep's restart).
        Self-healing (policy/retry.py): it schedules its own retry before working, and a failure it
        cannot retry ends the drop `failed` with a reason; so it raises only when even that failed.
        """
        drop_id = str(rule_args[0]) if rule_args else ""
        mode = str(rule_args[1]) if len(rule_args) > 1 else ""
        try:
            from policy.retry import run_delayed

            outcome = run_delayed(self._delayed_runtime(callback, rei), drop_id, mode)
            self._log(callback, "drop {} -> {}".format(drop_id, json.dumps(outcome.to_dict())))
            if rule_args:
                rule_args[0] = json.dumps(outcome.to_dict())
        except Exception:  # noqa: BLE001 - logged; the retry or the sweep takes the drop up again
            self._log(callback, "processing drop {!r} failed:\n{}".format(drop_id, traceback.format_exc()[-2000:]))
            raise

    def _delayed_runtime(self, callback: Any, rei: Any) -> Any:
        """What policy.retry needs from this server: configuration, zones, the clock, the log."""
        from policy.prerequisites import missing_package
        from policy.retry import Runtime

        def open_zone(config: Any) -> Any:
            if config is not None:
                return self.zone(callback, rei, config)
            from policy.prep_zone import PrepZone

            return PrepZone(callback, rei, str(getattr(rei.uoic, "rodsZone", "") or ""))

        def minimal() -> Tuple[str, str]:
            from policy.config import minimal_read

            return minimal_read(self.config_path)

        return Runtime(load_config=self.load, load_mapping=self.load_mapping, open_zone=open_zone,
                       minimal_config=minimal, clock=_clock(callback), check_prerequisites=missing_package,
                       log=lambda m: self._log(callback, m))

    # ------------------------------------------------------------------ the sweep (policy/sweep.py)
    def sweep(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """The periodic sweep, a delayed rule run as the service account: restarts stranded drops."""
        token = str(rule_args[0]) if rule_args else ""
        try:
            from policy.sweep import run_sweep

            config = self.load()
            zone = self.zone(callback, rei, config)
            try:
                res = run_sweep(zone, config, token, now=_clock(callback)())
            finally:
                zone.close()
            self._log(callback, "sweep {}: {}".format(token, json.dumps(res.to_dict())))
        except Exception:  # noqa: BLE001 - logged; the next sweep (scheduled first) tries again
            self._log(callback, "sweep {!r} failed:\n{}".format(token, traceback.format_exc()[-2000:]))
            raise

    def sweep_start(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Admin rule: arm the sweep (as the service account; a no-op when one is queued)."""
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            return {"sweep": self._arm_sweep(callback, config)}
        self._admin(rule_args, callback, rei, run, 0)

    def svc_sweep_start(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.sweep import arm

            return {"sweep": arm(zone, config)}
        self._as_service_account(rule_args, callback, rei, run)

    def _arm_sweep(self, callback: Any, config: Any) -> str:
        """Arm the sweep from an admin rule: delayed rules run as their submitter, so the service
        account must submit it. Never raises (the doctor calls it)."""
        try:
            out = self._run_as(callback, config.service_account, "omero_snapshots_svc_sweep_start", [""])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            return str(res.get("sweep") or res.get("error") or "unknown")
        except Exception as e:  # noqa: BLE001
            return "not armed: {}: {}".format(type(e).__name__, str(e)[:300])

    # ------------------------------------------------------------------ the fixity audit (policy/fixity.py)
    def fixity(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """The periodic fixity audit, a delayed rule run as the service account (bounded per run)."""
        token = str(rule_args[0]) if rule_args else ""
        try:
            from policy.fixity import run_fixity

            config = self.load()
            zone = self.zone(callback, rei, config)
            try:
                res = run_fixity(zone, config, token, now=_clock(callback)())
            finally:
                zone.close()
            self._log(callback, "fixity {}: {}".format(token, json.dumps(res.to_dict())[:2000]))
            if rule_args:  # a caller (a test, an admin through the service account) sees what the run did
                rule_args[0] = json.dumps(res.to_dict())
        except Exception:  # noqa: BLE001 - logged; the next run (scheduled first) tries again
            self._log(callback, "fixity {!r} failed:\n{}".format(token, traceback.format_exc()[-2000:]))
            raise

    def fixity_start(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Admin rule: arm the periodic audit (as the service account; a no-op when one is queued)."""
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            return {"fixity": self._arm_fixity(callback, config)}
        self._admin(rule_args, callback, rei, run, 0)

    def svc_fixity_start(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.fixity import arm

            return {"fixity": arm(zone, config)}
        self._as_service_account(rule_args, callback, rei, run)

    def _arm_fixity(self, callback: Any, config: Any) -> str:
        """Arm the audit from an admin rule (the service account submits it). Never raises."""
        try:
            out = self._run_as(callback, config.service_account, "omero_snapshots_svc_fixity_start", [""])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            return str(res.get("fixity") or res.get("error") or "unknown")
        except Exception as e:  # noqa: BLE001
            return "not armed: {}: {}".format(type(e).__name__, str(e)[:300])

    def fixity_audit(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Admin rule: audit one snapshot (drop id or snapshot path) whole, now, as the service account."""
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.errors import IrodsError
            from policy.fixity import drop_of

            try:
                drop_id = drop_of(zone, config, a[0])
            except (ValueError, IrodsError) as e:
                return {"ok": False, "error": str(e)}
            out = self._run_as(callback, config.service_account, "omero_snapshots_svc_fixity_audit", [drop_id])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            return res or {"ok": False, "error": "the service account's audit rule gave no result"}
        self._admin(rule_args, callback, rei, run, 1)

    def svc_fixity_audit(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.fixity import audit_now

            return audit_now(zone, config, a[0], now=_clock(callback)())
        self._as_service_account(rule_args, callback, rei, run)

    # ------------------------------------------------------------------ self-description (policy/describe.py)
    def describe(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Admin rule: give a snapshot made before self-description its description files (idempotent, never
        overwriting). After the hand-over only the owner may write there: the rule acts AS the owner."""
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy import vocabulary as V
            from policy.errors import IrodsError
            from policy.fixity import drop_of, landing_record

            try:
                drop_id = drop_of(zone, config, a[0])
                record = zone.metadata(landing_record(config, drop_id))
            except (ValueError, IrodsError) as e:
                return {"ok": False, "error": str(e)}
            owner, snap = V.first(record, V.IRODS_USER), V.first(record, V.SNAPSHOT_PATH)
            if V.first(record, V.STATUS) not in V.FINAL_GOOD or not owner or not snap:
                return {"ok": False, "error": "drop {} has no placed or complete snapshot: nothing to describe"
                        .format(drop_id)}
            out = self._run_as(callback, owner, "omero_snapshots_owner_describe", [snap])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            return res or {"ok": False, "error": "the owner's describe rule gave no result"}
        self._admin(rule_args, callback, rei, run, 1)

    def owner_describe(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Run as a snapshot's owner (started by omero_snapshots_describe): writes the missing description
        files of the caller's own snapshot, and gives the service account `read` on them."""
        result: Dict[str, Any]
        try:
            from policy import vocabulary as V
            from policy.describe import write_description
            from policy.zone import owns

            config = self.load()
            zone = self.zone(callback, rei, config)
            snap = str(rule_args[0]) if rule_args else ""
            # the owner cannot read the landing record; the snapshot's own path AVU and the ACL must agree
            if not snap.startswith("/") or V.first(zone.metadata(snap), V.SNAPSHOT_PATH) != snap or \
                    not owns(zone, snap, zone.user):
                result = {"ok": False, "error": "only the owner of snapshot {!r} runs this rule".format(snap[:200])}
            else:
                result = dict(write_description(zone, snap, reader=config.service_account,
                                                manifest_max_bytes=config.limits.manifest_max_bytes), ok=True)
        except Exception as e:  # noqa: BLE001 - the admin gets the reason, the log the trace
            self._log(callback, traceback.format_exc()[-1500:])
            result = {"ok": False, "error": "{}: {}".format(type(e).__name__, e)}
        if rule_args:
            rule_args[0] = json.dumps(result, sort_keys=True)

    # ------------------------------------------------------------------ admin rules (JSON in the last arg)
    def _admin(self, rule_args: List[Any], callback: Any, rei: Any,
               fn: Callable[[Any, Any, List[str]], Dict[str, Any]], nargs: int) -> None:
        """Run an admin rule; its JSON result goes in the OUT parameter, the LAST argument.

        nargs is the number of required inputs; optional inputs (e.g. 'replace', 'force') may follow
        them, and the OUT parameter is always the last argument given.
        """
        if len(rule_args) > nargs:
            nargs = len(rule_args) - 1
        try:
            config = self.load()
            zone = self.zone(callback, rei, config)
            if zone.user_type(zone.user) != "rodsadmin":
                result: Dict[str, Any] = {"ok": False, "error": "admin rules need a rodsadmin"}
            else:
                result = fn(zone, config, received(rule_args[:nargs], _rule_name(fn)))
                result.setdefault("ok", True)
        except RuleArgumentError as e:  # the caller's mistake: the fix is in the message, no trace needed
            result = {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - the admin gets the reason, the log gets the trace
            self._log(callback, traceback.format_exc()[-1500:])
            result = {"ok": False, "error": str(e)}
        out = json.dumps(result, sort_keys=True)
        if len(rule_args) > nargs:
            rule_args[nargs] = out
        else:
            rule_args.append(out)
        self._log(callback, "admin rule result: " + out[:500])

    def enrol(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.enrol import enrol
            from policy.ingest import utc_now

            res = enrol(zone, config, lambda: self.load_mapping(config), lambda m: self.save_mapping(config, m),
                        a[0], a[1], a[2], utc_now(), replace=(len(a) > 3 and a[3] == "replace"))
            return res.to_dict()
        self._admin(rule_args, callback, rei, run, 3)

    def unenrol(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.enrol import unenrol

            user = unenrol(zone, config, lambda: self.load_mapping(config), lambda m: self.save_mapping(config, m),
                           a[0], a[1])
            return {"irods_user": user}
        self._admin(rule_args, callback, rei, run, 2)

    def list_snapshots(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.listing import list_snapshots
            from policy.placement import snapshot_root

            root = snapshot_root(config.snapshot_root_template, config.zone, a[0])
            return {"snapshots": [s.to_dict() for s in list_snapshots(zone, a[0], root, config.landing_collection)]}
        self._admin(rule_args, callback, rei, run, 1)

    def status(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.listing import status_of

            return status_of(zone, config, a[0])
        self._admin(rule_args, callback, rei, run, 1)


    # ------------------------------------------------------------------ admin rules that act as the service account
    def _run_as(self, callback: Any, user: str, rule: str, args: List[str]) -> List[Any]:
        """Run a core rule as `user` (the service account) and return its rule_args.

        Production: an in-server python-irodsclient session proxying as that user calls the rule
        through the native rule language instance (what a rodsuser may do). The fake runtime
        carries its own way to do the same.
        """
        sim = getattr(type(callback), "sim_run_rule_as", None)
        if sim is not None:
            return list(sim(callback, user, rule, args))
        from policy.prc_zone import run_rule_as

        return run_rule_as(user, rule, args)

    def reprocess(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.listing import status_of
            from policy.placement import is_safe_drop_id

            if not is_safe_drop_id(a[0]):
                return {"ok": False, "error": "not a valid drop id: {!r}".format(a[0][:80])}
            now = status_of(zone, config, a[0])
            if now.get("status") == "quarantined":
                return {"ok": False, "error": "drop {} is quarantined: release it (omero_snapshots_release) to "
                                              "process it again".format(a[0]), "status": now}
            force = len(a) > 1 and a[1] == "force"
            out = self._run_as(callback, config.service_account, PROCESS_RULE,
                               [a[0], "break-lock"] if force else [a[0]])
            result = status_of(zone, config, a[0])
            ran = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            if "another run is processing" in str(ran.get("reason")):
                result.update(ok=False, error=ran["reason"] + "; if that run is dead, reprocess with 'force'")
            return result
        self._admin(rule_args, callback, rei, run, 1)

    def release(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.listing import status_of

            out = self._run_as(callback, config.service_account, "omero_snapshots_svc_release", [a[0]])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            if res and not res.get("ok", True):
                return res
            self._run_as(callback, config.service_account, PROCESS_RULE, [a[0], "break-lock"])
            return status_of(zone, config, a[0])
        self._admin(rule_args, callback, rei, run, 1)

    def purge(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            if a[1] != "purge:" + a[0]:
                return {"ok": False, "error": "purge deletes the quarantined drop for good; confirm with the "
                                              "second argument 'purge:{}'".format(a[0])}
            out = self._run_as(callback, config.service_account, "omero_snapshots_svc_purge", [a[0], a[1]])
            res = json.loads(out[0]) if out and str(out[0]).startswith("{") else {}
            return res or {"ok": True, "purged": a[0]}
        self._admin(rule_args, callback, rei, run, 2)

    def doctor(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        """Self-check. Unlike the other admin rules it runs even when the configuration is broken."""
        from policy.admin import doctor
        from policy.prep_zone import PrepZone

        try:
            zone = PrepZone(callback, rei, str(getattr(rei.uoic, "rodsZone", "") or ""))
            if zone.user_type(zone.user) != "rodsadmin":
                result: Dict[str, Any] = {"ok": False, "error": "admin rules need a rodsadmin"}
            else:
                core = sys.modules.get("core")
                # ours = bound to an Entry of this package (not a site's own function of the same name)
                exports = [n for n in ("pep_resource_modified_post", PROCESS_RULE)
                           if isinstance(getattr(getattr(core, n, None), "__self__", None), Entry)]
                result = doctor(zone, self.config_path, self.load, self.load_mapping,
                                exports if core is not None else None,
                                data_plane=lambda config: _check_data_plane(callback, config))
                _doctor_arms_sweep(result, lambda: self._arm_sweep(callback, self.load()))
                _doctor_fixity(result, zone, self.load, lambda: self._arm_fixity(callback, self.load()))
        except Exception as e:  # noqa: BLE001
            self._log(callback, traceback.format_exc()[-1500:])
            result = {"ok": False, "error": str(e)}
        out = json.dumps(result, sort_keys=True)
        if rule_args:
            rule_args[0] = out
        else:
            rule_args.append(out)

    def _as_service_account(self, rule_args: List[Any], callback: Any, rei: Any,
                            fn: Callable[[Any, Any, List[str]], Dict[str, Any]]) -> None:
        """Rules the admin starts as the service account; refused for anyone else."""
        try:
            config = self.load()
            zone = self.zone(callback, rei, config)
            if zone.user != config.service_account:
                result: Dict[str, Any] = {"ok": False, "error": "only the service account runs this rule"}
            else:
                result = fn(zone, config, received(rule_args, _rule_name(fn)))
                result.setdefault("ok", True)
        except RuleArgumentError as e:
            result = {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001
            self._log(callback, traceback.format_exc()[-1500:])
            result = {"ok": False, "error": str(e)}
        if rule_args:
            rule_args[0] = json.dumps(result, sort_keys=True)

    def svc_release(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.admin import release

            return {"released_to": release(zone, config, a[0])}
        self._as_service_account(rule_args, callback, rei, run)

    def svc_purge(self, rule_args: List[Any], callback: Any, rei: Any) -> None:
        def run(zone: Any, config: Any, a: List[str]) -> Dict[str, Any]:
            from policy.admin import purge

            return purge(zone, config, a[0], a[1] if len(a) > 1 else "")
        self._as_service_account(rule_args, callback, rei, run)


def _clock(callback: Any) -> Callable[[], float]:
    """The server's time; a simulated server brings its own clock (its delay queue skips the waits)."""
    import time

    sim = getattr(type(callback), "sim_now", None)
    if sim is not None:
        return lambda: float(sim(callback))
    return time.time


def _doctor_arms_sweep(result: Dict[str, Any], arm: Callable[[], str]) -> None:
    """The doctor (re)arms the sweep (policy/sweep.py) and reports it as one more check."""
    if not result.get("checks") or not result["checks"][0].get("ok"):
        return  # no usable configuration: nothing to arm with
    state = arm()
    ok = state.startswith("armed")
    result["checks"].append({"check": "sweep", "ok": ok, "detail": state})
    result["ok"] = bool(result.get("ok")) and ok


def _doctor_fixity(result: Dict[str, Any], zone: Any, load: Callable[[], Any], arm: Callable[[], str]) -> None:
    """The doctor (re)arms the fixity audit and lists the snapshots it found damaged (policy/fixity.py)."""
    if not result.get("checks") or not result["checks"][0].get("ok"):
        return
    from policy.fixity import bad_snapshots

    state = arm()
    ok = state.startswith("armed") or state.startswith("disabled")
    result["checks"].append({"check": "fixity audit", "ok": ok, "detail": state})
    bad = bad_snapshots(zone, load())
    result["checks"].append({"check": "fixity", "ok": not bad, "detail": "no audited snapshot is damaged" if not bad
                             else "{} snapshot(s) failed their fixity audit (nothing was repaired): {}".format(
                                 len(bad), "; ".join("{} {}: {}".format(b["snapshot"], b["fixity"],
                                                                      b["fixity_detail"][:300]) for b in bad[:10]))})
    result["ok"] = all(c["ok"] for c in result["checks"])


def _check_data_plane(callback: Any, config: Any) -> str:
    """Open the data-plane session the delayed rule would use, as the service account, and stat the landing."""
    sim = getattr(type(callback), "sim_data_plane", None)
    if sim is not None:
        return "simulated data plane"
    from policy.prc_zone import in_server_session_zone

    zone = in_server_session_zone(config.service_account, config.zone)
    try:
        zone.stat(config.landing_collection)
    finally:
        zone.close()
    return "python-irodsclient session as {} reaches {}".format(config.service_account, config.landing_collection)


def _rule_name(fn: Callable[..., Any]) -> str:
    """The public rule an inner `run` belongs to, for messages (omero_snapshots_<method>)."""
    outer = getattr(fn, "__qualname__", "").split(".")
    name = outer[-3] if len(outer) >= 3 else "rule"
    return "omero_snapshots_" + {"list_snapshots": "list"}.get(name, name)


def bind(config_dir: str) -> Entry:
    return Entry(config_dir)
