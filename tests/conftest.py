"""Shared fixtures."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from harness import LiveHarness, live_available
from helpers import enrolled_deployment

from simzone.deploy import SimulatedDeployment


@pytest.fixture
def dep(tmp_path: Any) -> SimulatedDeployment:
    """A simulated deployment with one enrolled researcher (jdoe -> alice)."""
    return enrolled_deployment(str(tmp_path / "zone"))
pytest_plugins = ["robustness_report"]


@pytest.fixture
def h(tmp_path: Any) -> Iterator[LiveHarness]:
    """The live harness of the tests/test_live*.py modules (skips with the reason when no real zone is configured
    or reachable); tests/test_scenarios.py has its own `h`, the simulated one."""
    svc_env, admin_env = live_available()
    harness = LiveHarness(svc_env, admin_env, workdir=str(tmp_path))
    try:
        yield harness
    finally:
        harness.close()
