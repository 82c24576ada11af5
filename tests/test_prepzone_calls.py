"""The call-level conformance layer: every call policy/prep_zone.py makes is in tests/prepzone_calls.py's
table, each shape backed by a golden record of a real server (checked to be a record of that very call); the
project's probes (tests/data/prep-probes/) give on the fake exactly the records a real server gave (rounds 11
and 12); a shape no real server has answered yet is listed as NOT YET OBSERVED in the warnings summary."""

from __future__ import annotations

import re
import warnings
from typing import Any, List

import pytest

try:
    import conformance_support as cs
    import prepzone_calls as pc
    import probe_runs as pr
except ImportError:  # tests/ imported as a package
    from tests import conformance_support as cs  # type: ignore[no-redef]
    from tests import prepzone_calls as pc
    from tests import probe_runs as pr  # type: ignore[no-redef]

GOLDEN = pc._golden_dir()


def test_every_call_of_prep_zone_is_in_the_table() -> None:
    """Adding a microservice or genquery call to PrepZone without a table row (and so a probe) fails here."""
    made = pc.module_calls()
    listed = {c[0] for c in pc.CALLS}
    assert made - listed == set(), "calls of policy/prep_zone.py without a row in tests/prepzone_calls.py CALLS " \
                                   "(add the shapes it uses, each with a golden record or a probe)"
    assert listed - made == set(), "rows for calls policy/prep_zone.py no longer makes"


def test_the_parser_sees_a_new_call(tmp_path: Any) -> None:
    src = 'class Z:\n    def f(self, p):\n        self._msi("msiNewThing", p)\n' \
          '        cond = "A_COL = " + p\n        cond += " and B_COL like " + p\n' \
          '        return self._query(["X_COL", "Y_COL"], cond)\n'
    path = tmp_path / "m.py"
    path.write_text(src)
    assert pc.module_calls(str(path)) == {"msiNewThing", "genquery [X_COL, Y_COL] where A_COL, B_COL"}


@pytest.mark.skipif(GOLDEN is None, reason="golden PREP records not found")
@pytest.mark.parametrize("row", [c for c in pc.CALLS if pc.observed(c[4])], ids=lambda c: c[4])
def test_observed_shapes_name_a_golden_record_of_that_call(row: Any) -> None:
    call, _method, _shape, who, evidence = row
    assert GOLDEN is not None
    rec = pc.golden_evidence(evidence, GOLDEN)
    assert rec is not None, "no golden record " + evidence
    if "#" in evidence:  # a check of round 10's rodsuser native rule: the rule line that printed it
        assert who == "rodsuser"
        check = evidence.split("#", 1)[1]
        line = [ln for ln in rec["rule"].splitlines() if '"{} '.format(check) in ln][0]
        if call.startswith("genquery"):
            cols = re.search(r"\[(.*)\]", call).group(1)  # type: ignore[union-attr]
            assert "SELECT " in line and line.split("SELECT ", 1)[1].startswith(cols.split(",")[0]), line
        else:
            assert "errorcode({}(".format(call) in line, line
    elif "call" not in rec and "how" not in rec and pc.svc_rule_line(evidence.split(":", 1)[1]) is not None:
        # a check of our rodsuser probe files (rounds 11 and 12): the rule line that printed it
        assert who == "rodsuser"
        line = pc.svc_rule_line(evidence.split(":", 1)[1]) or ""
        if call.startswith("genquery"):
            cols = re.search(r"\[(.*)\]", call).group(1)  # type: ignore[union-attr]
            assert "SELECT " + cols + " where" in line, line
        else:
            assert "errorcode({}(".format(call) in line, line
    elif call.startswith("genquery"):
        cols = re.search(r"\[(.*)\]", call).group(1).split(", ")  # type: ignore[union-attr]
        assert rec.get("call") == "genquery.Query" and rec.get("columns") == cols, rec
    elif rec.get("call") == "genquery.Query":  # an after-effect check of the call (e.g. nothing in the trash)
        assert evidence.split(":", 1)[1].startswith("gq_"), rec
    elif "call" in rec:
        assert rec["call"] == call, rec
    elif "how" in rec:  # round 9: the recorder wrote what was called
        assert call in rec["how"], rec
    else:  # rounds 1-8 records do not name the call: the probe rule line that wrote the record does
        import os

        assert GOLDEN is not None
        with open(os.path.join(GOLDEN, "probe_rules.py"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = evidence.split(":", 1)[1]
        at = [i for i, ln in enumerate(lines) if '"{}"'.format(name) in ln]
        assert at and any('"{}"'.format(call) in "\n".join(lines[max(0, i - 3):i + 1]) for i in at), name


def test_not_yet_observed_shapes_have_a_probe() -> None:
    """A shape no real server has answered names a probe of ours (run it on the real zone: tests/data/prep-
    probes/README.md); it is listed in the warnings summary until a golden record replaces it."""
    names = pc.probe_names()
    pending: List[str] = []
    for call, method, shape, who, evidence in pc.CALLS:
        if pc.observed(evidence):
            continue
        probe = evidence[len("probe:"):]
        assert probe in names, "no probe {} in tests/data/prep-probes/".format(probe)
        pending.append("{} {} ({}, as {}): probe {}".format(call, shape, method, who, probe))
    if pending:
        warnings.warn(UserWarning("{}. NOT YET OBSERVED on a real server (run tests/data/prep-probes/ there):\n  {}"
                                  .format(pc.summary(), "\n  ".join(pending))), stacklevel=1)


def test_every_probe_record_is_a_row_or_a_fixture_step() -> None:
    """Each record our probes write is evidence of a table row, or a step that sets up the next calls."""
    used = {ev.split(":", 1)[1] for *_, ev in pc.CALLS if ev.startswith(("round11:", "round12:"))}
    setup = {n for n in pc.probe_names() if re.search(r"_(fixture|create_quoted|close_quoted|collcreate_quoted|"
                                                     r"setacl_read_for_svc)$", n)}
    unused = sorted(pc.probe_names() - used - setup - set(pc.OTHER_EVIDENCE))
    assert not unused, "probe records no table row names (add the row, or drop the probe): {}".format(unused)


@pytest.mark.parametrize("name", sorted(pr.PAIRED))
def test_the_probes_give_on_the_fake_what_the_real_server_gave(tmp_path: Any, name: str) -> None:
    """Both parts of each probe run whole on a fresh fake, as on a server, and give exactly the golden records
    of the real server (round 11: probe_prepzone_calls*, round 12: probe_prepzone_quotes*), after the elisions
    of tests/probe_runs.normalise_run."""
    probe = pr.PAIRED[name]
    golden = pr.golden_records(probe)
    fake = pr.run_on_fake(probe, str(tmp_path))
    assert len(golden) == len(fake)
    diffs = cs.compare_records(name, golden, fake)
    assert not diffs, cs.report(diffs)


def test_every_probe_file_is_compared_live_or_skipped_with_a_reason() -> None:
    """tests/test_live_probes.py runs each probe file on the real zone and on the fake, or lists it as skipped
    with the reason (probe_runs.NEEDS_INSTALL): a new probe file must go to one or the other."""
    import os

    run_live = {os.path.basename(p.python_file) for p in pr.PAIRED.values()} | {
        os.path.basename(p.svc_file) for p in pr.PAIRED.values() if p.svc_file} | {
        os.path.basename(pr.ROUND10_PROBE), os.path.basename(pr.ROUND10_FIXTURE_RULE)}
    skipped = " ".join(pr.NEEDS_INSTALL)
    loose = []
    for d in ("tests/data/prep-probes", "docs/probes", "bench/probes", "tests/data/prep-observed",
              "tests/data/prep-observed/drivers"):
        for n in sorted(os.listdir(os.path.join(pc.ROOT, d))):
            if n.endswith((".py", ".r")) and n not in run_live and n not in skipped and not d.endswith("drivers"):
                loose.append(os.path.join(d, n))
    assert not loose, "probe files neither compared live nor skipped with a reason: {}".format(loose)


def test_the_table_is_in_the_docs() -> None:
    import os

    with open(os.path.join(pc.ROOT, "docs", "simulated-zone.md"), encoding="utf-8") as f:
        doc = f.read()
    assert pc.table_markdown() in doc, "docs/simulated-zone.md: paste `python -m tests.prepzone_calls` output"
