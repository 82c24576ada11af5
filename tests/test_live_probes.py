"""The fake held to the real zone on every live run: the project's probes run on both, their records compared.

`pytest -m live` (with $IRODS_ENVIRONMENT_FILE, the service account, and $IRODS_ADMIN_ENVIRONMENT_FILE, a
rodsadmin, as for tests/test_live.py; `. /var/tmp/omero-snapshots-live/live.env` after tests/live/real_zone.sh)
runs every probe that needs nothing installed in the server (irule -F: Python rule text as the admin, native
rule text as the service account) on the real zone AND on a fresh fake zone, with the same substitutions,
and compares the two record lists field by field after the elisions of the golden records
(tests/probe_runs.normalise_run: run ids, this run's fixture names, the service account's name; then
conformance_support.normalise: timestamps of RodsObjStat, data ids, error text after the code, ...). A
divergence fails and names the probe, the record and the field: then either the fake or the project's
belief about the server is wrong (tests/data/prep-probes/README.md says how to record a new round).

Probes that need their rules installed in the server's core (a replaced core.py, or a core.py.d module and
a restart) are listed as skipped, each with its reason and the golden records that stand for it.

Needs icommands (irule, ils, irm, ichmod) on PATH and the server on this machine (part 1 of a probe writes
its records to the server's temp dir, read here). Everything made is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from typing import Any, Iterator, List

import pytest

try:
    import conformance_support as cs
    import probe_runs as pr
    from harness import LiveUnavailable, live_configuration, probe
except ImportError:  # tests/ imported as a package
    from tests import conformance_support as cs  # type: ignore[no-redef]
    from tests import probe_runs as pr  # type: ignore[no-redef]
    from tests.harness import LiveUnavailable, live_configuration, probe  # type: ignore[no-redef]

pytestmark = pytest.mark.live

NEEDS_INSTALL = pr.NEEDS_INSTALL


def _irule_python(admin_env: str, text: str, workdir: str) -> str:
    path = os.path.join(workdir, "tmpdir.r")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    p = subprocess.run(["irule", "-r", pr.PYTHON_INSTANCE, "-F", path], env=pr.RealProbeServer._env(admin_env),
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise LiveUnavailable("python rule text through irule -F failed as the admin ({}): {}".format(
            p.returncode, (p.stdout + p.stderr)[-500:]))
    return p.stdout.strip()


@pytest.fixture(scope="module")
def real(tmp_path_factory: Any) -> Iterator[pr.RealProbeServer]:
    """The real zone, or a skip saying what is missing."""
    try:
        pytest.importorskip("irods", reason="python-irodsclient is not installed (pip install -e '.[test]')")
        svc_env, admin_env = live_configuration()
        probe(svc_env, admin_env)
        missing = [c for c in ("irule", "ils", "irm", "ichmod", "iuserinfo") if shutil.which(c) is None]
        if missing:
            raise LiveUnavailable("icommands not on PATH: {}".format(", ".join(missing)))
        with open(svc_env, encoding="utf-8") as f:
            host = str(json.load(f).get("irods_host", ""))
        if host not in ("localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()):
            raise LiveUnavailable("the probes read the server's temp dir: the server ({}) is not on this "
                                  "machine".format(host))
        work = str(tmp_path_factory.mktemp("live-probes"))
        tmpdir = _irule_python(admin_env, "def main(rule_args, callback, rei):\n    import tempfile\n"
                               "    callback.writeLine('stdout', tempfile.gettempdir())\n"
                               "INPUT null\nOUTPUT ruleExecOut\n", work)
        if not os.path.isdir(tmpdir):
            raise LiveUnavailable("the server's temp dir {} is not on this machine".format(tmpdir))
    except LiveUnavailable as e:
        pytest.skip(str(e))
    yield pr.RealProbeServer(admin_env, svc_env, work, server_tmpdir=tmpdir)


def _admin_name(server: pr.RealProbeServer) -> str:
    with open(server.admin_env, encoding="utf-8") as f:
        return str(json.load(f)["irods_user_name"])


def _compare(label: str, real_records: List[Any], fake_records: List[Any]) -> None:
    diffs = [d.replace("golden", "real") for d in cs.compare_records(label, real_records, fake_records)]
    assert not diffs, "the fake answers the probe differently from the real zone:" + cs.report(diffs)


def _cleanup(server: pr.RealProbeServer, run: pr.ProbeRun) -> None:
    errors = server.cleanup(run.made) + server.cleanup_rules(run.tag)
    assert not errors, "probe left things behind: {}".format(errors)


@pytest.mark.parametrize("name", sorted(pr.PAIRED))
def test_probe_on_the_real_zone_matches_the_fake(real: pr.RealProbeServer, tmp_path: Any, name: str) -> None:
    """tests/data/prep-probes/<probe>.py as the admin, then <probe>_svc.r as the service account."""
    probe_ = pr.PAIRED[name]
    run = pr.run_paired(probe_, real)
    try:
        got = pr.normalise_run(probe_, run, real.svc_user, real.zone)
    finally:
        _cleanup(real, run)
    fake = pr.FakeProbeServer(str(tmp_path), svc_user=real.svc_user)
    try:
        frun = pr.run_paired(probe_, fake)
    finally:
        fake.close()
    _compare(name, got, pr.normalise_run(probe_, frun, real.svc_user))


def test_round10_probe_on_the_real_zone_matches_the_fake(real: pr.RealProbeServer, tmp_path: Any) -> None:
    """probe_rules_round10.py (every PrepZone call and its edge cases) as the admin, after the service
    account's fixture, then the service account's native rule of the golden round 10."""
    admin = _admin_name(real)
    run = pr.run_round10(real, admin=admin)
    try:
        got = pr.normalise_round10(run, real.svc_user, real.zone)
    finally:
        _cleanup(real, run)
    fake = pr.FakeProbeServer(str(tmp_path), svc_user=real.svc_user)
    try:
        frun = pr.run_round10(fake)
    finally:
        fake.close()
    assert len(got) == 156, [r.get("probe") for r in got][-5:]
    _compare("round10", got, pr.normalise_round10(frun, real.svc_user))


def test_python_rule_text_from_the_service_account_is_refused(real: pr.RealProbeServer, tmp_path: Any) -> None:
    """round 10 rodsuser_python_rule_text: SYS_NO_API_PRIV, on the real zone and on the fake."""
    text = "def main(rule_args, callback, rei):\n    pass\nINPUT null\nOUTPUT ruleExecOut\n"
    with pytest.raises(RuntimeError) as real_err:
        real._irule(real.svc_env, text, pr.PYTHON_INSTANCE)
    fake = pr.FakeProbeServer(str(tmp_path), svc_user=real.svc_user)
    try:
        with pytest.raises(Exception) as fake_err:
            fake.server.irule_file(real.svc_user, fake._file(text), pr.PYTHON_INSTANCE)
    finally:
        fake.close()
    assert "-13000" in str(real_err.value) and "SYS_NO_API_PRIV" in str(real_err.value), str(real_err.value)[-400:]
    assert getattr(fake_err.value, "code", None) == -13000, fake_err.value


@pytest.mark.parametrize("probe_name", sorted(NEEDS_INSTALL))
def test_probes_needing_an_install_are_not_run_here(probe_name: str) -> None:
    pytest.skip("not run on the live zone: {}".format(NEEDS_INSTALL[probe_name]))
