"""Manifest fuzzing through the real pipeline: upload, the upload PEP, the delayed rule, the unpack step.

Each example is a new drop (fresh drop id) in ONE simulated deployment per test function. Whatever the
manifest holds (arbitrary JSON, arbitrary bytes, a valid manifest with one field made hostile), after the
delay server ran:

- neither the PEP (the client saw no error) nor the delayed rule (its delay row ends 'done') crashed;
- nothing was created outside /tempZone/home/alice/omero-snapshots/<one direct child>, the drop's landing
  record and its quarantine collection; nothing that existed before changed or vanished;
- the drop has a final status with a reason: `quarantined` (reason + refusal rule, the drop intact) or
  `complete` (the snapshot a direct child of the user's root, the label and other values recorded exactly).

Bounded in CI: FUZZ_EXAMPLES examples per test (default 60). A long run: FUZZ_EXAMPLES=2000 python -m pytest
tests/test_fuzz_manifest.py
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any, Dict, List, Optional, Set, Tuple

import archive_corpus as corpus
import pytest
from helpers import config_with, enrolled_deployment, manifest_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import vocabulary as V
from policy.ingest import drop_status
from policy.manifest import new_drop_id
from simzone.deploy import SimulatedDeployment

SVC = "omero-svc"
ROOT = "/tempZone/home/alice/omero-snapshots"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
PACKET = [("./transfer.xml", b'<OME><Image ID="Image:1" Name="a.tif"/></OME>'), ("./img/a.tif", b"A" * 2000)]
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Zone:
    """One deployment shared by all examples of a test, and what we know of every object in it."""

    def __init__(self, tmp_path: Any) -> None:
        self.dep: SimulatedDeployment = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="auto"))
        self.archive = str(tmp_path / "packet.tar")
        with open(self.archive, "wb") as f:
            f.write(corpus.build_tar(PACKET))
        with open(self.archive, "rb") as f:
            self.archive_bytes = f.read()
        self.known: Dict[int, Tuple[str, Tuple[int, int], bytes]] = {}  # oid -> (path, vault stat, bytes)

    def paths(self) -> Set[str]:
        return {p for p, _ in self.dep.catalog.walk("/tempZone")}

    def objects(self) -> Dict[int, Tuple[str, str]]:
        rows = self.dep.catalog.query_rows("SELECT id, coll, name, vault FROM objs", [])
        return {int(oid): (coll + "/" + name, vault) for oid, coll, name, vault in rows}

    def remember(self) -> None:
        """Note the bytes of objects not seen before (cheap: only new ones are read)."""
        for oid, (path, vault) in self.objects().items():
            if oid not in self.known:
                st_ = os.stat(vault)
                with open(vault, "rb") as f:
                    self.known[oid] = (path, (st_.st_size, st_.st_mtime_ns), f.read())

    def changed(self) -> Tuple[List[str], List[str]]:
        """(objects gone, objects whose bytes changed) among the remembered ones."""
        now = self.objects()
        gone, changed = [], []
        for oid, (path, sig, data) in self.known.items():
            if oid not in now:
                gone.append(path)
                continue
            vault = now[oid][1]
            st_ = os.stat(vault)
            if (st_.st_size, st_.st_mtime_ns) != sig:
                with open(vault, "rb") as f:
                    if f.read() != data:
                        changed.append(now[oid][0])
        return gone, changed


@pytest.fixture
def zone(tmp_path: Any) -> Zone:
    return Zone(tmp_path)


def run_drop(z: Zone, raw: bytes, drop_id: Optional[str] = None) -> Dict[str, Any]:
    """Upload the packet and `raw` as manifest.json, run the delay server, and judge what happened."""
    d = z.dep
    drop_id = drop_id or new_drop_id()
    z.remember()
    before = z.paths()
    rows_before = len(d.catalog.delay_rows())
    up = d.upload_drop(z.archive, raw, drop_id, archive_name="transfer.tar")
    d.run_delay_server()
    st_ = drop_status(d.admin(), d.config, drop_id)
    problems: List[str] = []
    if up.archive_pep.client_error is not None or up.manifest_pep.client_error is not None:
        problems.append("the upload PEP failed the client's upload")
    rows = d.catalog.delay_rows()[rows_before:]
    crashed = [r for r in rows if r[4] != "done"]
    if crashed:
        problems.append("delayed rule ended {}".format([r[4] for r in crashed]))
    # where things appeared
    landing = d.config.landing_collection
    quarantine = d.config.quarantine_collection + "/" + drop_id
    new = z.paths() - before
    children = {p[len(ROOT) + 1:].split("/")[0] for p in new if p.startswith(ROOT + "/")}
    escaped = []
    for p in new:
        if p.startswith(ROOT + "/") and len(children) == 1:
            continue
        if p == landing + "/" + drop_id or p.startswith(landing + "/" + drop_id + "/"):
            continue
        if p == quarantine or p.startswith(quarantine + "/") or p.startswith(quarantine + "-"):
            continue
        if p in (d.config.quarantine_collection, landing + "/.locks"):
            continue
        escaped.append(p)
    gone_paths = sorted(before - z.paths())
    gone, changed = z.changed()
    lost = len(gone) + len(gone_paths)
    # the status and where the drop is
    manifest_home = None
    if st_.status == "quarantined":
        if not st_.reason:
            problems.append("quarantined without a reason")
        q = st_.location or ""
        if not V.first(d.catalog.metadata(q), V.NS + "refusal_rule"):
            problems.append("quarantined without a refusal rule")
        manifest_home = q
    elif st_.status == "complete":
        snap = st_.snapshot or ""
        name = snap[len(ROOT) + 1:]
        if not snap.startswith(ROOT + "/") or "/" in name or not SAFE_NAME.fullmatch(name):
            problems.append("snapshot at an unexpected path {!r}".format(snap))
            escaped.append(snap)
        manifest_home = snap
    else:
        problems.append("no final status: {} ({})".format(st_.status, st_.reason))
    if manifest_home:
        for name, want in (("transfer.tar", z.archive_bytes), ("manifest.json", raw)):
            row = d.catalog._obj_row(manifest_home + "/" + name)
            got = open(row[8], "rb").read() if row else None
            if got != want:
                lost += 1
                problems.append("{} not byte-identical at {}".format(name, manifest_home))
    if escaped:
        problems.append("created outside the drop's places: {}".format(sorted(escaped)[:5]))
    if gone or gone_paths or changed:
        problems.append("gone {} / changed {}".format((gone + gone_paths)[:5], changed[:5]))
    return {"drop_id": drop_id, "status": st_, "problems": problems, "lost": lost, "overwritten": len(changed),
            "escaped": len(escaped)}


def judge(robustness: Any, category: str, out: Dict[str, Any]) -> None:
    robustness.record(category, out["drop_id"], out["status"].status, lost=out["lost"],
                      overwritten=out["overwritten"], escaped=out["escaped"])
    assert out["problems"] == [], out["problems"]


# ---------------------------------------------------------------------- strategies
def _nested(depth: int, kind: str) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                              max_size=4),
                           max_leaves=20)

HOSTILE_STRINGS = [
    "../../x", "/etc", "/etc/passwd", "a\nb", "a\rb", "%2e%2e", "%2e%2e%2fetc", "..", ".", "/", "x/../../y",
    "C:\\Windows\\evil", "~root", "$(x)", "`id`", "a;b", "'", '"', "\\", "%", "%s%n", "*", "?", "[a]", "{zone}",
    "{irods_user}", "\u202eexe.tif", "\x00", "a\x00b", "\u2028", "\ufeff", "CON", "NUL", "\x7f", "\x1b[31m",
    "/tempZone/home/bob/omero-snapshots", "../../../tempZone/home/bob", "\ud800", "a\udfffb", "\U0001f600",
    "\u0645\u0631\u062d\u0628\u0627", "e\u0301", "\uff0e\uff0e\uff0f", "\u2215etc", " ", "",
    "omero.snapshot.status", "quarantine", ".locks", ".incoming-x",
]
huge_strings = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "\u00e9", "\u202e", "\x00", "/", "../", "%2e",
                                                                  "\U0001f600", "'", "\\"]),
                         st.integers(min_value=0, max_value=100_000))
deep = st.builds(_nested, st.integers(min_value=1, max_value=300), st.sampled_from(["list", "dict"]))
hostile_text = st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=60) | huge_strings | st.builds(
    lambda a, b: a + b, st.sampled_from(HOSTILE_STRINGS), st.text(max_size=10))
wrong_types = json_scalars | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                   st.integers(), max_size=3)
hostile_values = hostile_text | wrong_types | deep


def _paths(doc: Any, prefix: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def encode(doc: Any, mode: str) -> bytes:
    """Serialise as OMERO would (UTF-8) or with every non-ASCII escaped; lone surrogates survive either way."""
    if mode == "ascii":
        return json.dumps(doc, ensure_ascii=True).encode("ascii")
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def base_doc(z: Zone, drop_id: str) -> Dict[str, Any]:
    return manifest_doc(z.archive, drop_id, created="2026-11-25T10:00:00Z", objects={"Image": [51, 52]},
                        omero_group_id=3, email="jdoe@example.org")


# ---------------------------------------------------------------------- the tests
@FUZZ
@given(value=json_values | st.binary(max_size=300) | huge_strings, mode=st.sampled_from(["ascii", "utf8", "raw"]))
def test_arbitrary_json_or_bytes(zone: Zone, robustness: Any, value: Any, mode: str) -> None:
    raw = value if isinstance(value, bytes) else (value.encode("utf-8", "surrogatepass") if mode == "raw" and
                                                  isinstance(value, str) else encode(value, mode))
    out = run_drop(zone, raw)
    judge(robustness, "manifest fuzz: arbitrary JSON / bytes", out)
    assert out["status"].status == "quarantined"


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["ascii", "utf8"]))
def test_one_field_made_hostile(zone: Zone, robustness: Any, data: Any, mode: str) -> None:
    drop_id = new_drop_id()
    doc = base_doc(zone, drop_id)
    target = data.draw(st.sampled_from(_paths(doc)), label="field")
    action = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra"]), label="action")
    doc = copy.deepcopy(doc)
    parent: Any = doc
    for key in target[:-1]:
        parent = parent[key]
    last = target[-1]
    if action == "delete":
        del parent[last]
    elif action == "extra" and isinstance(parent, dict):
        parent[data.draw(hostile_text, label="extra key")] = data.draw(hostile_values, label="extra value")
    else:
        parent[last] = data.draw(hostile_values, label="value")
    out = run_drop(zone, encode(doc, mode), drop_id)
    judge(robustness, "manifest fuzz: one field of a valid manifest made hostile", out)


FREE_TEXT_FIELDS = [("label",), ("who", "omero_group"), ("archive", "packer", "name"), ("archive", "packer", "version")]


@FUZZ
@given(data=st.data())
def test_schema_valid_hostile_text_is_recorded_not_obeyed(zone: Zone, robustness: Any, data: Any) -> None:
    """Free-text fields that pass the schema: the snapshot stays a plain child of the root, the value is kept as is."""
    drop_id = new_drop_id()
    doc = base_doc(zone, drop_id)
    field = data.draw(st.sampled_from(FREE_TEXT_FIELDS), label="field")
    text = data.draw(st.sampled_from([s for s in HOSTILE_STRINGS if s.strip() and "\ud800" not in s
                                      and "\udfff" not in s and not re.search(r"[\x00-\x1f\x7f]", s)])
                     | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60),
                     label="text")
    parent: Any = doc
    for key in field[:-1]:
        parent = parent[key]
    parent[field[-1]] = text[:32] if field[0] == "archive" else text[:128]
    out = run_drop(zone, encode(doc, "utf8"), drop_id)
    judge(robustness, "manifest fuzz: schema-valid hostile text (label, group, packer)", out)
    st_ = out["status"]
    assert st_.status == "complete", st_
    meta = V.as_dict(zone.dep.catalog.metadata(st_.snapshot))
    attr = {("label",): V.LABEL, ("who", "omero_group"): V.OMERO_GROUP}.get(field)
    if attr:
        assert meta[attr] == [parent[field[-1]]]
    else:
        assert meta[V.PACKER] == ["{} {}".format(doc["archive"]["packer"]["name"], doc["archive"]["packer"]["version"])]


@pytest.mark.parametrize("field,value", [
    (("drop_id",), "{drop}/x"), (("drop_id",), "../{drop}"), (("drop_id",), "{drop}\n"), (("drop_id",), "quarantine"),
    (("drop_id",), ".locks"), (("drop_id",), "../../alice/omero-snapshots"), (("drop_id",), "{drop}-other"),
    (("who", "omero_user"), "jdoe'"), (("who", "omero_user"), 'jd"oe'), (("who", "omero_user"), "jdoe\n"),
    (("who", "omero_user"), "../alice"), (("who", "omero_user"), "jdoe/../rods"), (("who", "omero_user"), "rods"),
    (("who", "omero_server"), "omero.example.org/../x"), (("who", "omero_server"), "omero.example.org\n"),
    (("archive", "name"), "../transfer.tar"), (("archive", "name"), "manifest.json"),
    (("archive", "name"), "/etc/passwd"), (("archive", "name"), "transfer.tar\n"),
    (("created",), "2026-13-45T99:99:99Z"),
    (("label",), "a\nb"), (("label",), "x" * 201),
])
def test_named_hostile_values_are_quarantined(zone: Zone, robustness: Any, field: Tuple[str, ...], value: str) -> None:
    drop_id = new_drop_id()
    doc = base_doc(zone, drop_id)
    parent: Any = doc
    for key in field[:-1]:
        parent = parent[key]
    parent[field[-1]] = value.format(drop=drop_id)
    out = run_drop(zone, encode(doc, "utf8"), drop_id)
    judge(robustness, "manifest: named path/quote/newline values", out)
    st_ = out["status"]
    assert st_.status == "quarantined", st_
    assert st_.reason and (field[-1] in st_.reason or "drop_id" in st_.reason or "not enrolled" in st_.reason), st_
