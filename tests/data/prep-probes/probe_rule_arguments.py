"""Probes for what the project relies on about rule arguments and the double upload PEP, beyond round 9
(which showed `alice`, `with space`, quoted values and literals only). Run in round 11: the answers are
../prep-observed/round11-arguments.jsonl (A1, A2 and P1 as expected below; P2: both fire).

Install as (part of) /etc/irods/core.py on a private test server (like prep-observed/probe_rules.py),
restart, then run, as rods, each command of COMMANDS below and, as the service account (a rodsuser),
the python-irodsclient driver at the end of this file. Every probe appends one JSON record to
$PREP_PROBE_OUT (default /tmp/prep-probe.jsonl); bring that file back to
../shared/reference/prep-observed/ as round11-arguments-and-create-peps.jsonl.

Expectations the fake (simzone/rule_exec.py, simzone/prep.py) holds, asked of the server:
- A1: unquoted values holding '/', ':', '.', '-', '_', '=', ';', non-ASCII and the empty string reach the
  Python rule verbatim through irule (`*a=<value>`) and through python-irodsclient params.
- A2: the OUT parameter given as `*out=` (empty) comes back as what the rule wrote (round 9 shows it for
  '*a=alice%*out=' only).
- P1: python-irodsclient create() + open('w') + write + close of N bytes fires pep_resource_modified_post
  twice, the first with file_size '0' and the second with file_size 'N' (round 9 recorded the count and
  that the first was the empty replica, not the second's size).
- P2: for that first (create) close, whether acPostProcForPut and pep_api_data_obj_close_post fire too.
"""
import json
import os
import tempfile

PROBE_OUT = os.environ.get("PREP_PROBE_OUT", os.path.join(tempfile.gettempdir(), "prep-probe.jsonl"))
NATIVE = "irods_rule_engine_plugin-irods_rule_language-instance"
VALUES = ["purge:20261125T100000Z-ab12cd34", "/tempZone/home/alice/omero-snapshots/x_y-z",
          "omero.example.org:4064", "a=b", "a;b", "\u00e9", ""]
COMMANDS = ["irule -r {} 'probe_args2(*a, *out)' '*a={}%*out=' '*out'".format(NATIVE, v) for v in VALUES]


def _rec(name, **kw):
    kw["probe"] = name
    with open(PROBE_OUT, "a") as f:
        f.write(json.dumps(kw, default=repr) + "\n")


def probe_args2(rule_args, callback, rei):
    """A1/A2: what each argument arrived as; the OUT parameter is written back."""
    _rec("probe_args2", received=[str(a) for a in rule_args], types=[type(a).__name__ for a in rule_args])
    rule_args[-1] = "written-by-python"


def pep_resource_modified_post(rule_args, callback, rei):
    """P1: file_size of every arrival under a probe collection."""
    try:
        m = rule_args[1].map()
        path = str(m.get("logical_path", ""))
        if "/probe-args-" in path:
            _rec("resource_modified", path=path, file_size=str(m.get("file_size", "")),
                 api_index=str(m.get("api_index", "")), openType=str(m.get("openType", "")))
    except Exception as e:  # noqa: BLE001
        _rec("resource_modified_error", err=str(e)[:300])
    return 5000000


def acPostProcForPut(rule_args, callback, rei):  # noqa: N802 - iRODS name
    """P2."""
    path = str(getattr(rei.doi, "objPath", ""))
    if "/probe-args-" in path:
        _rec("acPostProcForPut", path=path)
    return 5000000


def pep_api_data_obj_close_post(rule_args, callback, rei):
    """P2 (no path in this PEP: the record's order next to resource_modified tells which close it was)."""
    _rec("data_obj_close_post", l1descInx=getattr(rule_args[2], "l1descInx", None))
    return 5000000


# ---------------------------------------------------------------------- driver (not a rule; run by hand)
DRIVER = '''
# python3 driver, as the service account (environment file of docs/install.md step 7):
import os, sys
from irods.rule import Rule
from irods.session import iRODSSession
s = iRODSSession(irods_env_file=os.environ["IRODS_ENVIRONMENT_FILE"])
home = "/{}/home/{}".format(s.zone, s.username)
coll = home + "/probe-args-1"
s.collections.create(coll)
s.data_objects.create(coll + "/manifest.json", force=False)          # P1/P2: what OMERO's save does
with s.data_objects.open(coll + "/manifest.json", "w") as f:
    f.write(b'{"x": 1}')
for v in VALUES:                                                      # A1 through python-irodsclient
    Rule(s, body="probe_args2(*a, *out)", params={"*a": v, "*out": ""}, output="*out",
         instance_name=NATIVE).execute(session_cleanup=False)
'''
