"""Robustness report: the robustness tests record every case they try; the session writes docs/robustness.md.

A pytest plugin (registered in conftest.py with `pytest_plugins = ["robustness_report"]`). Tests take the
`robustness` fixture and call `.record(category, case, outcome, lost=0, overwritten=0, escaped=0)` once per
case, after measuring and before asserting, so a case that exposes a bug is counted with what it found. At
the end of the session the table is written to docs/robustness.md, but only when ROBUSTNESS_REPORT=1 (so a
plain test run never changes the working tree):

    ROBUSTNESS_REPORT=1 python -m pytest

Categories whose name starts with "real server: " (the live suite's, `pytest -m live` against a real iRODS) go
into a second table, "On the real server", after the simulated one; a run writes only the table(s) it has cases
for and keeps the other as the file has it, so the offline suite and the live stage each refresh their own.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(os.path.dirname(HERE), "docs", "robustness.md")
LIVE_PREFIX = "real server: "
LIVE_MARKER = "<!-- REAL SERVER TABLE: written by a live run (ROBUSTNESS_REPORT=1 python -m pytest -m live) -->"
STATUS_ORDER = ["complete", "placed", "failed", "quarantined", "refused", "ignored", "unchanged", "unknown"]


@dataclass
class CategoryTally:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    lost: int = 0
    overwritten: int = 0
    escaped: int = 0
    in_xfail: int = 0  # cases recorded by a test marked xfail (a known, reported bug)
    sources: set = field(default_factory=set)
    judged_final: int = 0  # cases whose final state without admin was measured
    final: int = 0  # ... and of those, how many were final (complete/placed/quarantined/failed)
    worst_seconds: Optional[float] = None  # live: the longest time to final of a case (fault: from the fault)


class Collector:
    """Session-wide tallies, by category."""

    def __init__(self) -> None:
        self.categories: Dict[str, CategoryTally] = {}
        self.notes: Dict[str, CategoryTally] = {}  # intermediate states: shown apart, not counted as cases

    def record(self, category: str, case: str, outcome: str, lost: int = 0, overwritten: int = 0,
               escaped: int = 0, xfail: bool = False, source: str = "", final: Optional[bool] = None,
               seconds: Optional[float] = None) -> None:
        t = self.categories.setdefault(category, CategoryTally())
        if seconds is not None:
            t.worst_seconds = max(seconds, t.worst_seconds or 0.0)
        if final is not None:
            t.judged_final += 1
            t.final += 1 if final else 0
        t.cases += 1
        t.outcomes[outcome] += 1
        t.lost += int(lost)
        t.overwritten += int(overwritten)
        t.escaped += int(escaped)
        t.in_xfail += 1 if xfail else 0
        if source:
            t.sources.add(source)

    def note(self, category: str, case: str, outcome: str, source: str = "") -> None:
        t = self.notes.setdefault(category, CategoryTally())
        t.cases += 1
        t.outcomes[outcome] += 1
        if source:
            t.sources.add(source)

    def has(self, live: bool) -> bool:
        return any(name.startswith(LIVE_PREFIX) == live for name in self.categories)

    def live_markdown(self) -> str:
        """The real server's table: the live suite's families, with the worst time to final per family."""
        lines = [
            LIVE_MARKER,
            "",
            "## On the real server",
            "",
            "The same families, run by the live suite (`tests/test_live*.py`) on a real iRODS 5.0.2 + PREP 5.0.1 "
            "(../shared/irods/, installed by docs/install.md's own blocks: tests/live/real_zone.sh), in the delay "
            "server's test setting of a 2 s scan. To regenerate: `tests/live/real_zone.sh --fresh && . "
            "/var/tmp/omero-snapshots-live/live.env && ROBUSTNESS_REPORT=1 python -m pytest -m live`.",
            "",
            "Generated on {} with Python {}. Columns as above; **worst s** = the longest time a case took from its "
            "manifest (fault families: from the fault) to its final state.".format(
                datetime.date.today().isoformat(), platform.python_version()),
            "",
            "| family | cases | outcomes | lost | overwritten | escaped | final without admin | worst s | tests |",
            "|---|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        total = CategoryTally()
        for name in sorted(n for n in self.categories if n.startswith(LIVE_PREFIX)):
            t = self.categories[name]
            final = "{} of {}".format(t.final, t.judged_final) if t.judged_final else "-"
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                name[len(LIVE_PREFIX):].replace("|", "\\|"), t.cases, self._outcomes(t), t.lost, t.overwritten,
                t.escaped, final, "-" if t.worst_seconds is None else "{:.0f}".format(t.worst_seconds),
                ", ".join("`{}`".format(s) for s in sorted(t.sources))))
            total.cases += t.cases
            total.lost += t.lost
            total.overwritten += t.overwritten
            total.escaped += t.escaped
            total.final += t.final
            total.judged_final += t.judged_final
        lines.append("| **total** | **{}** | | **{}** | **{}** | **{}** | **{} of {}** | | |".format(
            total.cases, total.lost, total.overwritten, total.escaped, total.final, total.judged_final))
        lines.append("")
        return "\n".join(lines)

    @staticmethod
    def _outcomes(t: CategoryTally) -> str:
        def order(name: str) -> Any:
            return (STATUS_ORDER.index(name) if name in STATUS_ORDER else len(STATUS_ORDER), name)

        return ", ".join("{} {}".format(k, v) for k, v in sorted(t.outcomes.items(), key=lambda kv: order(
            kv[0]))).replace("|", "\\|")

    def markdown(self) -> str:
        def order(name: str) -> Any:
            return (STATUS_ORDER.index(name) if name in STATUS_ORDER else len(STATUS_ORDER), name)

        lines = [
            "# Robustness: hostile input, faults and concurrency",
            "",
            "<!-- GENERATED FILE: written by tests/robustness_report.py at the end of a test session. "
            "Do not edit by hand. -->",
            "",
            "Generated by the test suite, not written by hand: every robustness test records each case it tries "
            "(what it measured, before asserting) and the session writes this table. To regenerate:",
            "",
            "    ROBUSTNESS_REPORT=1 FUZZ_EXAMPLES={} FAULT_FULL={} python -m pytest".format(
                os.environ.get("FUZZ_EXAMPLES", "60"), os.environ.get("FAULT_FULL", "0")),
            "",
            "`FUZZ_EXAMPLES` sets the hypothesis examples per fuzz test (60 in CI; 2000 for a long run); "
            "`FAULT_FULL=1` kills the process at every fault point (the default kills at the 1st occurrence of "
            "each catalog operation, and at every point of every 3rd operation and of the refused drop).",
            "",
            "Generated on {} with Python {}.".format(datetime.date.today().isoformat(), platform.python_version()),
            "",
            "Columns: **cases** tried; **outcomes** = final status of the drop (or the refusal) per case; "
            "**lost** = an object (or the archive/manifest) that existed and is gone or not byte-identical where "
            "the status says it is; **overwritten** = an existing object whose bytes changed; **escaped** = "
            "anything created outside the drop's own snapshot, landing record and quarantine; **final without "
            "admin** = cases whose drop reached a final state (`complete`, `placed` with unpacking off, "
            "`quarantined`, `failed`) with nothing left for the delay server to run and no admin action (fault "
            "families: the fake delay server ran until it had nothing left, in simulated time, retries and the "
            "sweep included; see docs/self-healing.md; `-` = not measured by that test); **known bugs** = cases "
            "run by a test marked xfail (a reported bug, see the test's reason). For the fault families, "
            "**outcomes** is the state reached without admin.",
            "",
            "| category | cases | outcomes | lost | overwritten | escaped | final without admin | known bugs | tests |",
            "|---|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        total = CategoryTally()
        for name in sorted(n for n in self.categories if not n.startswith(LIVE_PREFIX)):
            t = self.categories[name]
            final = "{} of {}".format(t.final, t.judged_final) if t.judged_final else "-"
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                name.replace("|", "\\|"), t.cases, self._outcomes(t), t.lost, t.overwritten, t.escaped,
                final, t.in_xfail, ", ".join("`{}`".format(s) for s in sorted(t.sources))))
            total.cases += t.cases
            total.lost += t.lost
            total.overwritten += t.overwritten
            total.escaped += t.escaped
            total.in_xfail += t.in_xfail
            total.final += t.final
            total.judged_final += t.judged_final
        lines.append("| **total** | **{}** | | **{}** | **{}** | **{}** | **{} of {}** | **{}** | |".format(
            total.cases, total.lost, total.overwritten, total.escaped, total.final, total.judged_final,
            total.in_xfail))
        lines.append("")
        if self.notes:
            lines += [
                "## After an admin's reprocess",
                "",
                "The fault families above also run the drop once more the way an admin does "
                "(`omero_snapshots_process_drop <drop> break-lock`) and check the zone again: where the drop "
                "stood then (a `failed` drop comes back `complete` or `quarantined`: the fault happened once). "
                "The same cases as above, not counted again.",
                "",
                "| category | cases | state |",
                "|---|---:|---|",
            ]
            for name in sorted(self.notes):
                t = self.notes[name]
                lines.append("| {} | {} | {} |".format(name, t.cases, ", ".join(
                    "{} {}".format(k, v) for k, v in sorted(t.outcomes.items(), key=lambda kv: order(kv[0])))))
            lines.append("")
        return "\n".join(lines)


COLLECTOR = Collector()


class Recorder:
    """What a test sees: record() tags the case with the test's file and whether the test is a known bug."""

    def __init__(self, collector: Collector, source: str, xfail: bool) -> None:
        self._collector = collector
        self._source = source
        self._xfail = xfail

    def record(self, category: str, case: str, outcome: str, lost: int = 0, overwritten: int = 0,
               escaped: int = 0, final: Optional[bool] = None, seconds: Optional[float] = None) -> None:
        """final: whether the drop reached a final state without any admin action (None: not measured);
        seconds: how long the case took to reach it (the live table shows the worst per family)."""
        self._collector.record(category, case, outcome, lost, overwritten, escaped, self._xfail, self._source,
                               final, seconds)

    def note(self, category: str, case: str, outcome: str) -> None:
        """An intermediate state worth showing (e.g. right after a fault): listed apart, not a case."""
        self._collector.note(category, case, outcome, self._source)


@pytest.fixture
def robustness(request: Any) -> Recorder:
    marker: Optional[Any] = request.node.get_closest_marker("xfail")
    source = os.path.basename(str(request.node.fspath))
    return Recorder(COLLECTOR, source, marker is not None)


def write_report(path: str = REPORT, collector: Optional[Collector] = None) -> Optional[str]:
    """Write the table(s) this session has cases for; keep the other one as the file has it."""
    collector = collector or COLLECTOR
    if not collector.categories:
        return None
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    old_top, sep, old_live = old.partition(LIVE_MARKER)
    top = collector.markdown() if collector.has(live=False) else old_top.rstrip("\n") + "\n"
    live = collector.live_markdown() if collector.has(live=True) else (sep + old_live if sep else "")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(top.rstrip("\n") + "\n" + ("\n" + live.rstrip("\n") + "\n" if live else ""))
    return path


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if os.environ.get("ROBUSTNESS_REPORT") != "1":
        return
    written = write_report()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if written and reporter is not None:
        reporter.write_line("robustness report written to {}".format(os.path.relpath(written)))


__all__: List[str] = ["COLLECTOR", "Collector", "Recorder", "robustness", "write_report"]
