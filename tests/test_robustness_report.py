"""docs/robustness.md holds two tables, each refreshed by its own kind of run without losing the other."""

from __future__ import annotations

from typing import Any

from robustness_report import LIVE_MARKER, LIVE_PREFIX, Collector, write_report


def _collector(live: bool, n: int) -> Collector:
    c = Collector()
    prefix = LIVE_PREFIX if live else ""
    for i in range(n):
        c.record(prefix + "family", "case{}".format(i), "complete", final=True, seconds=float(i + 1),
                 source="test_x.py")
    return c


def test_each_run_rewrites_only_its_own_table(tmp_path: Any) -> None:
    path = str(tmp_path / "robustness.md")
    write_report(path, _collector(live=False, n=3))
    write_report(path, _collector(live=True, n=2))
    text = open(path, encoding="utf-8").read()
    assert text.count(LIVE_MARKER) == 1
    sim, live = text.split(LIVE_MARKER)
    assert "| family | 3 | complete 3 |" in sim and "On the real server" not in sim
    assert "| family | 2 | complete 2 | 0 | 0 | 0 | 2 of 2 | 2 |" in live  # worst time: 2 s
    write_report(path, _collector(live=False, n=5))  # an offline run: the live table stays
    sim, live2 = open(path, encoding="utf-8").read().split(LIVE_MARKER)
    assert "| family | 5 | complete 5 |" in sim and live2 == live
    write_report(path, _collector(live=True, n=4))  # a live run: the simulated table stays
    sim2, live3 = open(path, encoding="utf-8").read().split(LIVE_MARKER)
    assert sim2 == sim and "| family | 4 | complete 4 |" in live3
