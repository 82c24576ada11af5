"""Shared fixtures."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import enrolled_deployment

from simzone.deploy import SimulatedDeployment


@pytest.fixture
def dep(tmp_path: Any) -> SimulatedDeployment:
    """A simulated deployment with one enrolled researcher (jdoe -> alice)."""
    return enrolled_deployment(str(tmp_path / "zone"))
pytest_plugins = ["robustness_report"]
