"""OMERO snapshots: PREP entry points. Copy to /etc/irods/core.py.d/ (see docs/install.md).

Thin by design: every decision lives in the `policy` package installed for the
server's python3. Only the names in __all__ become rules of `core`.

PREP imports `core` for every rule lookup, so this module must never raise on
import: if the package is missing, it exports nothing (uploads go on as if the
policy were not installed) and remembers why, for the doctor and the log.
"""

try:
    from policy import rules as _rules
except Exception as _e:  # noqa: BLE001 - a broken install must not break every rule on the server
    IMPORT_ERROR = repr(_e)
    __all__ = []
else:
    IMPORT_ERROR = None
    _entry = _rules.bind(_rules.default_config_dir(__file__))

    # The upload PEP: python-irodsclient and iput uploads both fire it (prep-observed.md).
    pep_resource_modified_post = _entry.pep_resource_modified_post
    # The delayed rule scheduled by the PEP, run by the delay server as the service account.
    omero_snapshots_process_drop = _entry.process_drop
    # Admin rules (rodsadmin, through irule); their JSON result is written to the last argument.
    omero_snapshots_enrol = _entry.enrol
    omero_snapshots_unenrol = _entry.unenrol
    omero_snapshots_list = _entry.list_snapshots
    omero_snapshots_status = _entry.status
    omero_snapshots_reprocess = _entry.reprocess
    omero_snapshots_release = _entry.release
    omero_snapshots_purge = _entry.purge
    omero_snapshots_doctor = _entry.doctor
    # Started by the admin rules above AS the service account (they act on what it owns).
    omero_snapshots_svc_release = _entry.svc_release
    omero_snapshots_svc_purge = _entry.svc_purge
    # Self-healing (policy/sweep.py): the periodic sweep (a delayed rule of the service account), the
    # admin rule that arms it (the doctor arms it too), and the service-account rule that rule starts.
    omero_snapshots_sweep = _entry.sweep
    omero_snapshots_sweep_start = _entry.sweep_start
    omero_snapshots_svc_sweep_start = _entry.svc_sweep_start
    # The fixity audit (policy/fixity.py): the periodic rule of the service account, the admin rules that
    # arm it and audit one snapshot now, and the service-account rules they start.
    omero_snapshots_fixity = _entry.fixity
    omero_snapshots_fixity_start = _entry.fixity_start
    omero_snapshots_fixity_audit = _entry.fixity_audit
    omero_snapshots_svc_fixity_start = _entry.svc_fixity_start
    omero_snapshots_svc_fixity_audit = _entry.svc_fixity_audit
    # Self-description for snapshots made before it (policy/describe.py): the admin rule, and the rule it
    # starts AS the snapshot's owner (who alone may write there after the hand-over).
    omero_snapshots_describe = _entry.describe
    omero_snapshots_owner_describe = _entry.owner_describe

    __all__ = [
        "pep_resource_modified_post",
        "omero_snapshots_process_drop",
        "omero_snapshots_enrol",
        "omero_snapshots_unenrol",
        "omero_snapshots_list",
        "omero_snapshots_status",
        "omero_snapshots_reprocess",
        "omero_snapshots_release",
        "omero_snapshots_purge",
        "omero_snapshots_doctor",
        "omero_snapshots_svc_release",
        "omero_snapshots_svc_purge",
        "omero_snapshots_sweep",
        "omero_snapshots_sweep_start",
        "omero_snapshots_svc_sweep_start",
        "omero_snapshots_fixity",
        "omero_snapshots_fixity_start",
        "omero_snapshots_fixity_audit",
        "omero_snapshots_svc_fixity_start",
        "omero_snapshots_svc_fixity_audit",
        "omero_snapshots_describe",
        "omero_snapshots_owner_describe",
    ]
