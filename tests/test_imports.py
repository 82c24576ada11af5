"""policy/ and core.py.d/ import inside a bare server python: no third-party module at import time.

PREP imports `core` for every rule lookup on every upload; a heavy or missing
import there would slow or break every rule on the server.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import policy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ["jsonschema", "libarchive", "irods", "yaml", "hypothesis"]


def _run(code: str) -> subprocess.CompletedProcess:
    prelude = "import sys\nfor m in {!r}:\n    sys.modules[m] = None\nsys.path.insert(0, {!r})\n".format(BLOCKED, ROOT)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)


def test_every_policy_module_imports_without_third_party_packages() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(policy.__path__))
    assert "rules" in names and "ingest" in names
    code = "import importlib\nfor n in {!r}:\n    importlib.import_module('policy.' + n)\nprint('ok')".format(names)
    proc = _run(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_core_module_exports_only_entry_points_and_pep_needs_nothing_heavy(tmp_path) -> None:
    code = """
import importlib.util
spec = importlib.util.spec_from_file_location("core_d", {path!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
assert m.IMPORT_ERROR is None, m.IMPORT_ERROR
assert all(n.startswith(("pep_", "omero_snapshots_")) for n in m.__all__), m.__all__
from simzone import prep_types
prep_types.install()
ctx = prep_types.PluginContext({{"logical_path": "/tempZone/home/bob/x.tif", "user_user_name": "bob"}})
assert m.pep_resource_modified_post(["i", ctx, ""], None, None) == 5000000
heavy = [n for n in ("jsonschema", "libarchive", "irods") if sys.modules.get(n) is not None]
assert not heavy, heavy
print("ok")
""".format(path=os.path.join(ROOT, "core.py.d", "omero_snapshots.py"))
    proc = _run(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_core_module_without_the_package_exports_nothing_and_does_not_raise(tmp_path) -> None:
    code = """
sys.modules["policy"] = None
import importlib.util
spec = importlib.util.spec_from_file_location("core_d", {path!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
assert m.__all__ == [] and m.IMPORT_ERROR
print("ok")
""".format(path=os.path.join(ROOT, "core.py.d", "omero_snapshots.py"))
    proc = _run(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_loader_survives_a_broken_module_and_keeps_a_sites_own_rule(tmp_path) -> None:
    import shutil

    etc = tmp_path / "etc"
    (etc / "core.py.d").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "core.py.d", "omero_snapshots.py"), etc / "core.py.d" / "omero_snapshots.py")
    (etc / "core.py.d" / "aaa_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    loader = open(os.path.join(ROOT, "core.py.d", "core_py_loader.py.txt")).read()
    (etc / "core.py").write_text("def pep_resource_modified_post(rule_args, callback, rei):\n    return 'site'\n\n"
                                 + loader)
    code = """
import importlib.util
spec = importlib.util.spec_from_file_location("core", {path!r})
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)
assert core.pep_resource_modified_post(None, None, None) == "site"
assert hasattr(core, "omero_snapshots_process_drop")
assert not [n for n in vars(core) if n.startswith("_omero_snapshots")]
print("ok")
""".format(path=str(etc / "core.py"))
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, {!r})\n".format(ROOT) + code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert "aaa_broken.py not loaded" in proc.stderr and "pep_resource_modified_post not exported" in proc.stderr
