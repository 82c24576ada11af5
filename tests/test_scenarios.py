"""Every scenario of tests/scenarios.py on the simulated zone (tests/test_live.py runs them on a real one)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from harness import SimHarness
from scenarios import SCENARIOS


@pytest.fixture
def h(tmp_path: Any) -> Iterator[SimHarness]:
    harness = SimHarness(str(tmp_path))
    try:
        yield harness
    finally:
        harness.close()


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario(h: SimHarness, scenario: Callable[[Any], None]) -> None:
    scenario(h)


def test_the_scenarios_cover_the_brief() -> None:
    assert {"fixture_packets_complete", "checksum_mismatch_quarantined", "unmapped_user_quarantined",
            "drop_by_another_user_not_processed", "hostile_traversal", "hostile_symlink", "hostile_duplicate",
            "release_after_enrolment_completes", "two_drops_same_label_same_second"} <= set(SCENARIOS)
