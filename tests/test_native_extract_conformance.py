"""The simulated msiTarFileExtract against what a real server did on hostile archives (round 7)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any, List, Tuple

import pytest
from helpers import enrolled_deployment

SVC = "omero-svc"
ROUND7 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prep-observed",
                      "round7-native-extract-hostile.jsonl")


def _tar(entries: List[Tuple[str, Any]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, bytes):
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
            else:  # a symlink target
                info.type, info.linkname = tarfile.SYMTYPE, content
                t.addfile(info)
    return buf.getvalue()


CASES = {
    "traversal": (_tar([("ok.txt", b"ok"), ("../../../../../../../../tmp/canary.txt", b"x")]), "ok", ["ok.txt"]),
    "symlink": (_tar([("link", "/etc"), ("ok.txt", b"ok")]), -24000, []),
    "absolute": (_tar([("/tmp/canary.txt", b"x")]), "ok", ["tmp/canary.txt"]),
    "duplicate": (_tar([("a.txt", b"one"), ("a.txt", b"two")]), "ok", ["a.txt"]),
}


def test_the_golden_record_says_what_these_cases_expect() -> None:
    records = [json.loads(line) for line in open(ROUND7)]
    text = " ".join(r["archive"] + " => " + r["result"] for r in records)
    assert "silently dropped" in text and "SYS_INTERNAL_NULL_INPUT_ERR (-24000)" in text
    assert "registered as content/tmp/<canary>.txt" in text and "one object a.txt holding 'two'" in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_native_extract_behaves_as_observed(tmp_path: Any, name: str) -> None:
    data, outcome, objects = CASES[name]
    d = enrolled_deployment(str(tmp_path / "zone"))
    svc = d.zone_as(SVC)
    base = "/tempZone/home/omero-svc/probe7"
    svc.create_collection(base)
    with svc.open_new(base + "/a.tar") as f:
        f.write(data)
    cb = d.server.callback(SVC)
    if outcome == "ok":
        cb.msiTarFileExtract(base + "/a.tar", base + "/content", "demoResc", 0)
    else:
        with pytest.raises(RuntimeError, match=r"\[iRods__Error__Code:{}\]".format(outcome)):
            cb.msiTarFileExtract(base + "/a.tar", base + "/content", "demoResc", 0)
    got = sorted(p[len(base) + len("/content/"):] for p, k in d.catalog.walk(base + "/content") if k == "data_object")
    assert got == objects
    if name == "duplicate":
        row = d.catalog._obj_row(base + "/content/a.txt")
        assert open(row[8], "rb").read() == b"two"  # the first member silently lost, as observed
    # nothing was ever written outside the vault
    assert not os.path.exists("/tmp/canary.txt")
