"""docs/install.md's shell blocks, as the real-zone runner (tests/live/real_zone.sh) extracts and runs them."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "live"))

import guide_blocks  # noqa: E402


def _guide() -> str:
    with open(guide_blocks.GUIDE, encoding="utf-8") as f:
        return f.read()


def test_every_sh_block_of_the_guide_is_marked_and_the_install_covers_its_steps() -> None:
    blocks = guide_blocks.parse(_guide())
    run_sections = {b.section.split(".")[0] for b in blocks if b.kind in ("run", "restart")}
    # steps 0-7, 9 and 10 run on Debian 12; step 8 is the OMERO host, 11-12 upgrade and uninstall
    assert {"0", "1", "2", "3", "4", "5", "6", "7", "9", "10"} <= run_sections
    assert not {"8", "11", "12"} & run_sections
    assert [b.kind for b in blocks].count("restart") == 1
    assert any(b.kind == "upgrade" for b in blocks)
    assert all(b.reason for b in blocks if b.kind == "skip")


def test_install_script_sets_repo_and_replaces_the_restart() -> None:
    blocks = guide_blocks.parse(_guide())
    text = guide_blocks.script(blocks, "install", "/src/my repo", "RESTART-HERE")
    assert "REPO='/src/my repo'" in text
    assert "RESTART-HERE" in text
    assert "kill -TERM" not in text  # the guide's own restart is replaced
    assert "<drop id>" not in text  # placeholder examples are never run
    assert "omero_snapshots_unenrol" not in text  # nor the destructive example
    assert text.startswith("set -eE")
    upgrade = guide_blocks.script(blocks, "upgrade", "/r", "RESTART-HERE")
    assert "--upgrade" in upgrade and "iadmin mkuser omero-svc" not in upgrade
    assert upgrade.index("--upgrade") < upgrade.index("RESTART-HERE")  # new code, then the restart


def test_guide_restart_waits_for_the_process_not_the_pid_file() -> None:
    restart = [b for b in guide_blocks.parse(_guide()) if b.kind == "restart"][0].code
    assert "kill -0" in restart
    assert "test -e /var/run/irods/irods-server.pid" not in restart


@pytest.mark.parametrize("text, message", [
    ("```sh\necho hi\n```\n", "without a marker"),
    ("<!-- real-zone: run -->\n\nsome words\n```sh\necho\n```\n", "not directly before"),
    ("<!-- real-zone: skip -->\n```sh\necho\n```\n", "needs a reason"),
    ("<!-- real-zone: run -->\n```json\n{}\n```\n", "only sh blocks"),
    ("<!-- real-zone: run -->\n", "end of the file"),
])
def test_marker_convention_is_enforced(text: str, message: str) -> None:
    with pytest.raises(guide_blocks.GuideError, match=message):
        guide_blocks.parse(text)


def test_script_refuses_a_guide_without_the_repo_variable() -> None:
    blocks = guide_blocks.parse("<!-- real-zone: run -->\n```sh\necho hi\n```\n")
    with pytest.raises(guide_blocks.GuideError, match="REPO="):
        guide_blocks.script(blocks, "install", "/r", "x")
