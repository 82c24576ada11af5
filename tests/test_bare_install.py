"""A bare `pip install .` (no extras) runs the README's first command: `omero-snapshots simulate` of a packet.

Issue 16: after a plain install the simulated save ended `failed` ("python-irodsclient is not importable"),
because the prerequisite check the delayed rule makes (policy/prerequisites.py) needs a package only the
extras brought. A fresh venv per run is too slow for the default suite; instead the CLI runs in a
subprocess whose imports of every distribution that only an extra of pyproject.toml brings (pytest,
hypothesis, ruff, mypy, pyyaml, ... and whatever else is not a base dependency) fail, as in a bare install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import List, Set

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover - 3.9/3.10
    tomllib = None  # type: ignore[assignment]

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def extras_only_modules() -> List[str]:
    """Top-level modules of the distributions that only an extra brings (not a base dependency)."""
    from importlib.metadata import packages_distributions

    project = _pyproject()["project"]
    base: Set[str] = {_name(r) for r in project["dependencies"]}
    extra: Set[str] = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs} - base
    mods = [m for m, dists in packages_distributions().items()
            if any(_name(d) in extra for d in dists) and m.isidentifier()]
    return sorted(set(mods) | ({"irods"} if "python-irodsclient" in extra else set()))


def test_the_blocked_modules_are_what_a_bare_install_lacks() -> None:
    blocked = extras_only_modules()
    assert "pytest" in blocked and "hypothesis" in blocked and "yaml" in blocked
    assert "jsonschema" not in blocked and "libarchive" not in blocked


def test_simulate_works_without_the_extras(tmp_path) -> None:
    """The README's first command, on the dataset zip of the issue, with every extras-only module missing."""
    blocked = extras_only_modules()
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError('No module named ' + repr(name) + ' (a bare install)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "for m in list(sys.modules):\n"
        "    if m.split('.')[0] in {blocked!r}:\n"
        "        del sys.modules[m]\n"
        "sys.path.insert(0, {root!r})\n"
        "from policy.cli import main\n"
        "sys.exit(main(['simulate', {archive!r}, '--omero-user', 'jdoe', '--zone-dir', {zone!r}, '--json']))\n"
    ).format(blocked=blocked, root=ROOT, archive=os.path.join(DATA, "valid_single_dataset.zip"),
             zone=str(tmp_path / "zone"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path))
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[0])
    assert (result["status"], result.get("reason")) == ("complete", None)
    assert proc.returncode == 0, proc.stderr[-2000:]
