# Round 11 probes (run: tests/data/prep-observed/round11-self-healing.jsonl): the delay-server behaviour the
# self-healing design (docs/self-healing.md) relies on or takes care not to rely on. Style of
# prep-observed/probe_rules.py.
# Install as (or append to) /etc/irods/core.py on a test server, then as the rodsuser omero-svc:
#   irule -r irods_rule_engine_plugin-irods_rule_language-instance 'probe11_start("RUN")' null ruleExecOut
#   irule -r ... 'probe11_start("RUN-raise")' null ruleExecOut     (a delayed rule that raises)
# wait 3 minutes, then: iqstat -a ; cat /tmp/probe11.jsonl
# Expectations of the simulation (simzone/prep.py SimClock, policy/retry.py), all as observed in round 11
# (the probe's own LIKE pattern, holding quotes, was refused: the variant of round11-README.md fixed it):
#   E1 delayExec called INSIDE a running delayed rule (as the rodsuser) is accepted and runs later as that
#      user (retries and the sweep schedule their successor that way);
#   E2 a PLUSET of 30 s is honoured: the rule does not run before 30 s (only 1 s was observed);
#   E3 RULE_EXEC_TIME of a queued rule is its due time (submit + PLUSET), not its submit time (the doctor's
#      "delay server" check and the simulated genquery read it; the fake maps it to the submit time);
#   E4 (informational) whether a running delayed rule still lists in r_rule_exec (the sweep's chain token
#      logic works either way), and whether a rule that RAISES is removed or kept (nothing relies on it).
import json
import os
import tempfile
import time

OUT = os.path.join(tempfile.gettempdir(), "probe11.jsonl")
PY = "irods_rule_engine_plugin-python-instance"


def _rec(name, **kw):
    rec = {"probe": name, "t": time.time()}
    rec.update(kw)
    with open(OUT, "a") as f:
        f.write(json.dumps(rec, default=repr) + "\n")


def _queued(callback, part):
    from genquery import Query

    try:
        return [list(r) for r in Query(callback, ["RULE_EXEC_NAME", "RULE_EXEC_TIME", "RULE_EXEC_USER_NAME"],
                                       "RULE_EXEC_NAME like '%{}%'".format(part))]
    except Exception as e:  # noqa: BLE001
        return "error {!r}".format(e)


def probe11_start(rule_args, callback, rei):
    run = str(rule_args[0]).strip('"')
    cond = "<INST_NAME>{}</INST_NAME><PLUSET>30s</PLUSET>".format(PY)
    body = "callback.probe11_delayed('{}')".format(run)
    try:
        callback.delayExec(cond, body, "")
        _rec("start_scheduled", run=run, user=str(rei.uoic.userName), pluset=30)
    except Exception as e:  # noqa: BLE001
        _rec("start_scheduled", run=run, error=repr(e))
    _rec("start_queued_rows", run=run, rows=_queued(callback, "probe11_delayed('{}')".format(run)))  # E3


def probe11_delayed(rule_args, callback, rei):
    run = str(rule_args[0])
    _rec("delayed_ran", run=run, user=str(rei.uoic.userName))  # E2: compare t with start_scheduled's t
    _rec("delayed_sees_itself", run=run, rows=_queued(callback, "probe11_delayed('{}')".format(run)))  # E4
    cond = "<INST_NAME>{}</INST_NAME><PLUSET>5s</PLUSET>".format(PY)
    try:
        callback.delayExec(cond, "callback.probe11_chained('{}')".format(run), "")  # E1
        _rec("delayed_scheduled_successor", run=run, ok=True)
    except Exception as e:  # noqa: BLE001
        _rec("delayed_scheduled_successor", run=run, ok=False, error=repr(e))
    if run.endswith("-raise"):
        raise RuntimeError("probe11: a delayed rule that raises")  # E4: kept or removed? (iqstat -a)


def probe11_chained(rule_args, callback, rei):
    _rec("chained_ran", run=str(rule_args[0]), user=str(rei.uoic.userName))  # E1
