"""The call-level conformance layer: every call policy/prep_zone.py makes is in tests/prepzone_calls.py's
table, each shape backed by a golden record (checked to be a record of that very call) or by a probe of ours
that a real server has NOT YET run (listed in the warnings summary of every run, and by
`python -m tests.prepzone_calls`)."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any, Dict, List

import pytest

try:
    import prepzone_calls as pc
except ImportError:  # tests/ imported as a package
    from tests import prepzone_calls as pc

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


def _expected() -> Dict[str, Dict[str, Any]]:
    with open(pc.EXPECTED, encoding="utf-8") as f:
        return {r["probe"]: r for r in (json.loads(line) for line in f if line.strip())}


def test_not_yet_observed_shapes_have_a_probe_and_an_expectation() -> None:
    names = pc.probe_names()
    expected = _expected()
    pending: List[str] = []
    for call, method, shape, who, evidence in pc.CALLS:
        if pc.observed(evidence):
            continue
        probe = evidence[len("probe:"):]
        assert probe in names, "no probe {} in tests/data/prep-probes/".format(probe)
        assert probe in expected, "no expected record for probe " + probe
        pending.append("{} {} ({}, as {}): probe {}".format(call, shape, method, who, probe))
    assert pending, "nothing pending: drop this warning"
    warnings.warn(UserWarning("{}. NOT YET OBSERVED on a real server (run tests/data/prep-probes/ there):\n  {}"
                              .format(pc.summary(), "\n  ".join(pending))), stacklevel=1)


def test_the_probes_run_on_the_fake_as_they_would_on_a_server(tmp_path: Any) -> None:
    """Both probe files run whole on the fake, and give the expected records (the fake's model of the
    not-yet-observed shapes: a change in the fake's behaviour shows here)."""
    got = {r["probe"]: r for r in pc.run_probes_on_fake(str(tmp_path))}
    expected = _expected()
    assert sorted(got) == sorted(expected)
    diffs = [name for name in expected if got[name] != expected[name]]
    assert not diffs, [(n, expected[n], got[n]) for n in diffs]


def test_the_table_is_in_the_docs() -> None:
    import os

    with open(os.path.join(pc.ROOT, "docs", "simulated-zone.md"), encoding="utf-8") as f:
        doc = f.read()
    assert pc.table_markdown() in doc, "docs/simulated-zone.md: paste `python -m tests.prepzone_calls` output"
