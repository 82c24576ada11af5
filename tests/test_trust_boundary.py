"""What crosses the trust boundary: archives from OMERO, drops from other users, names that look like syntax,
enrolments an admin must not make. Everything refused is refused with a reason and changes nothing.

- untrusted archives: the whole corpus (tests/archive_corpus.py: HOSTILE, VALID, CONFIGURED) through the
  pipeline on both unpack paths, with the zone checked for loss, overwrites and escapes;
- drops written by a user other than the service account, rules run by the wrong user;
- manifests trying to reach another user's snapshot root through the only free-form values;
- labels, groups and OMERO user names carrying AVU, JSON, shell or path syntax;
- enrolments of a rodsadmin, of the service account, of a group, of a user that does not exist, and by a
  non-admin: refused with a reason, and the whole zone (paths, sizes, checksums, owners, ACLs, inheritance,
  AVUs), the user table and the mapping file are exactly as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import unicodedata
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import archive_corpus as corpus
import pytest
from helpers import FIXTURES, OMERO_SERVER, config_with, drop, enrolled_deployment, manifest_doc

from policy import vocabulary as V
from policy.errors import IrodsError, NoPermission
from policy.ingest import drop_status
from policy.manifest import manifest_to_json
from policy.member_safety import normalise_member_path
from simzone.prep import NATIVE_INSTANCE, PYTHON_INSTANCE

SVC = "omero-svc"
ROOT = "/tempZone/home/alice/omero-snapshots"
BOB_ROOT = "/tempZone/home/bob/omero-snapshots"
PATHS = ["auto", "never"]


# ---------------------------------------------------------------------- zone state, for "nothing changed"
def zone_state(d: Any) -> Dict[str, Any]:
    """Everything an admin could look at: every path with size, checksum, owner, ACL, inheritance and AVUs;
    the user table; the mapping and configuration files."""
    cat = d.catalog
    entries = []
    for path, kind in cat.walk("/"):
        st = cat.stat("rods", path)
        entries.append((path, kind, st.size, st.checksum, st.owner,
                        sorted((a.user, a.level) for a in cat.acl(path)),
                        sorted((a.attribute, a.value, a.units) for a in cat.metadata(path)),
                        cat.inheritance(path) if kind == "collection" else None))
    files = {}
    for name in ("mapping.json", "config.json"):
        p = os.path.join(d.config_dir, name)
        files[name] = open(p, "rb").read() if os.path.exists(p) else None
    return {"entries": entries, "users": cat.query_rows("SELECT name, type FROM users ORDER BY name", []),
            "groups": cat.query_rows("SELECT * FROM group_members ORDER BY 1, 2", []),
            "delay": [r[:4] for r in cat.delay_rows()], "files": files}


def diff(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    out = []
    ea = {e[0]: e for e in a["entries"]}
    eb = {e[0]: e for e in b["entries"]}
    out += ["gone: " + p for p in sorted(set(ea) - set(eb))]
    out += ["new: " + p for p in sorted(set(eb) - set(ea))]
    out += ["changed: {} {} -> {}".format(p, ea[p][1:], eb[p][1:]) for p in sorted(set(ea) & set(eb)) if ea[p] != eb[p]]
    out += ["{} changed".format(k) for k in ("users", "groups", "delay", "files") if a[k] != b[k]]
    return out


def vault_bytes(d: Any, path: str) -> Optional[bytes]:
    row = d.catalog._obj_row(path)
    if row is None:
        return None
    with open(row[8], "rb") as f:
        return f.read()


# ---------------------------------------------------------------------- untrusted archives, whole pipeline
def archive_file(tmp_path: Any, data: bytes, tag: str) -> str:
    ext = "tar.gz" if data[:2] == b"\x1f\x8b" else "zip" if data[:2] == b"PK" else "tar"
    path = str(tmp_path / "{}.{}".format(tag, ext))
    with open(path, "wb") as f:
        f.write(data)
    return path


def reference_members(data: bytes) -> Dict[str, str]:
    """NFC relpath -> sha256, read with the standard library (regular files only)."""
    out: Dict[str, str] = {}
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    out[unicodedata.normalize("NFC", normalise_member_path(info.filename))] = \
                        hashlib.sha256(zf.read(info)).hexdigest()
        return out
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                out[unicodedata.normalize("NFC", normalise_member_path(m.name))] = \
                    hashlib.sha256(f.read() if f else b"").hexdigest()
    return out


def content_of(d: Any, snapshot: str) -> Dict[str, str]:
    content = snapshot + "/content"
    out = {}
    for path, kind in d.catalog.walk(content):
        if kind == "data_object":
            out[unicodedata.normalize("NFC", path[len(content) + 1:])] = hashlib.sha256(vault_bytes(d, path) or b"") \
                .hexdigest()
    return out


def run_archive(d: Any, tmp_path: Any, data: bytes, tag: str) -> Tuple[Any, Dict[str, Any]]:
    """Drop the archive, let the pipeline run, measure loss / overwrite / escape. Returns (status, measures)."""
    archive = archive_file(tmp_path, data, tag)
    objects_before = {oid: (coll + "/" + name, hashlib.sha256(open(v, "rb").read()).hexdigest())
                      for oid, coll, name, v in d.catalog.query_rows("SELECT id, coll, name, vault FROM objs", [])}
    paths_before = {p for p, _ in d.catalog.walk("/tempZone")}
    doc = manifest_doc(archive)
    drop_id, up = drop(d, archive, doc)
    st = drop_status(d.admin(), d.config, drop_id)
    now = {int(oid): (coll + "/" + name, v) for oid, coll, name, v in
           d.catalog.query_rows("SELECT id, coll, name, vault FROM objs", [])}
    lost = sum(1 for oid in objects_before if oid not in now)
    overwritten = sum(1 for oid, (_, sha) in objects_before.items()
                      if oid in now and hashlib.sha256(open(now[oid][1], "rb").read()).hexdigest() != sha)
    new = {p for p, _ in d.catalog.walk("/tempZone")} - paths_before
    home = st.snapshot if st.status in ("complete", "failed") else st.location
    landing = d.config.landing_collection + "/" + drop_id
    allowed = [x for x in (home, landing, d.config.landing_collection + "/.locks") if x]
    escaped = sorted(p for p in new if not any(p == a or p.startswith(a + "/") for a in allowed))
    if home is None or vault_bytes(d, home + "/" + doc["archive"]["name"]) != data:
        lost += 1
    if home is None or vault_bytes(d, home + "/manifest.json") != manifest_to_json(doc):
        lost += 1
    measures = {"lost": lost, "overwritten": overwritten, "escaped": len(escaped), "escaped_paths": escaped,
                "pep_ok": up.manifest_pep.client_error is None and up.archive_pep.client_error is None,
                "rule_ok": all(r[4] == "done" for r in d.catalog.delay_rows())}
    return st, measures


@pytest.fixture(scope="module")
def corpus_zones(tmp_path_factory: Any) -> Any:
    """One zone per unpack path for the whole corpus: earlier snapshots are what later drops must not touch."""
    zones: Dict[str, Any] = {}

    def get(fast_path: str) -> Any:
        if fast_path not in zones:
            zones[fast_path] = enrolled_deployment(str(tmp_path_factory.mktemp("corpus-" + fast_path) / "zone"),
                                                   config_with(fast_path=fast_path))
        return zones[fast_path]
    return get


KNOWN_BUGS: Dict[Tuple[str, str], str] = {}  # (archive, path) -> bug; fixed bugs are removed from here


def corpus_params(names: List[str]) -> List[Any]:
    def marks(n: str, p: str) -> List[Any]:
        return [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(n, p)])] if (n, p) in KNOWN_BUGS else []

    return [pytest.param(n, p, id="{}-{}".format(p, n), marks=marks(n, p)) for p in PATHS for n in names]


def _assert_clean(st: Any, m: Dict[str, Any]) -> None:
    assert m["pep_ok"] and m["rule_ok"], m
    assert (m["lost"], m["overwritten"], m["escaped"]) == (0, 0, 0), m


@pytest.mark.parametrize("name,fast_path", corpus_params(sorted(corpus.HOSTILE)))
def test_hostile_archive_through_the_pipeline(corpus_zones: Any, tmp_path: Any, robustness: Any, name: str,
                                              fast_path: str) -> None:
    corpus_zone = corpus_zones(fast_path)
    data, rule = corpus.HOSTILE[name]()
    st, m = run_archive(corpus_zone, tmp_path, data, name)
    robustness.record("archive corpus: hostile (fast_path={})".format(fast_path),
                      name, st.status, m["lost"], m["overwritten"], m["escaped"])
    _assert_clean(st, m)
    assert st.status == "failed" and rule in (st.reason or ""), (name, st)
    assert not corpus_zone.catalog.exists(st.snapshot + "/content")


@pytest.mark.parametrize("name,fast_path", corpus_params(sorted(corpus.VALID)))
def test_valid_archive_through_the_pipeline(corpus_zones: Any, tmp_path: Any, robustness: Any, name: str,
                                            fast_path: str) -> None:
    corpus_zone = corpus_zones(fast_path)
    data, _ = corpus.VALID[name]()
    st, m = run_archive(corpus_zone, tmp_path, data, name)
    robustness.record("archive corpus: valid and edge cases (fast_path={})".format(fast_path), name, st.status,
                      m["lost"], m["overwritten"], m["escaped"])
    _assert_clean(st, m)
    assert st.status == "complete", (name, st)
    assert content_of(corpus_zone, st.snapshot) == reference_members(data)
    meta = V.as_dict(corpus_zone.catalog.metadata(st.snapshot))
    assert meta[V.MEMBER_COUNT] == [str(len(reference_members(data)))]


@pytest.mark.parametrize("fast_path", PATHS)
def test_transfer_xml_naming_absent_files_completes_and_reports(corpus_zones: Any, tmp_path: Any,
                                                                fast_path: str) -> None:
    """incomplete_project-like: the packet's transfer.xml describes images that are not in the archive."""
    corpus_zone = corpus_zones(fast_path)
    data, _ = corpus.transfer_xml_absent_files_tar()
    st, m = run_archive(corpus_zone, tmp_path, data, "absent")
    _assert_clean(st, m)
    assert st.status == "complete"
    meta = V.as_dict(corpus_zone.catalog.metadata(st.snapshot))
    assert meta[V.MEMBER_COUNT] == ["1"] and meta[V.NS + "packet.image"] == ["Image:1678", "Image:1679"]


@pytest.mark.parametrize("fast_path", PATHS)
@pytest.mark.parametrize("name", sorted(corpus.CONFIGURED))
def test_configured_archive_through_the_pipeline(tmp_path: Any, robustness: Any, name: str, fast_path: str) -> None:
    case = corpus.CONFIGURED[name]
    data, _ = case["gen"]()  # type: ignore[operator]
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path=fast_path, **case.get("unpack", {})))
    st, m = run_archive(d, tmp_path, data, name)
    robustness.record("archive corpus: configuration-dependent / reader-dependent", "{}-{}".format(name, fast_path),
                      st.status, m["lost"], m["overwritten"], m["escaped"])
    _assert_clean(st, m)
    is_fast = fast_path == "auto" and data[:2] not in (b"PK", b"\x1f\x8b")
    if case.get("rule"):
        assert st.status == "failed" and case["rule"] in (st.reason or ""), st
        assert not d.catalog.exists(st.snapshot + "/content")
    elif case.get("fast_disagrees") and is_fast:
        assert st.status == "failed" and "does not match the archive's member list" in (st.reason or ""), st
        assert not d.catalog.exists(st.snapshot + "/content")
    else:
        assert st.status == "complete", st
        assert sorted(content_of(d, st.snapshot)) == sorted(case["members"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- who may drop and who may run the rule
@pytest.fixture
def dep(tmp_path: Any) -> Any:
    d = enrolled_deployment(str(tmp_path / "zone"), config_with(fast_path="auto"))
    d.add_user("mallory")
    d.add_user("bob")
    assert d.enrol("bob", "jbob", OMERO_SERVER)["ok"]
    # what the test needs, not what an install does: another user with write access to the landing collection
    d.catalog.set_acl(SVC, d.config.landing_collection, "mallory", "modify_object")
    return d


def test_drop_by_another_user_is_left_untouched(dep: Any, robustness: Any) -> None:
    archive = FIXTURES["image_tar"]
    before = zone_state(dep)
    drop_id, up = drop(dep, archive, manifest_doc(archive), as_user="mallory")
    after_upload = zone_state(dep)
    landing = dep.config.landing_collection + "/" + drop_id
    # only mallory's own upload is new: no status, no delayed rule, nothing in anyone's snapshot root
    new = [line for line in diff(before, after_upload) if not line.startswith("new: " + landing)]
    assert up.manifest_pep.client_error is None and new == [], new
    # the delayed rule run for it anyway (by the service account, as an admin's reprocess would): refused
    out = dep.server.irule(SVC, "omero_snapshots_process_drop", [drop_id], instance=NATIVE_INSTANCE)
    res = json.loads(out[0])
    # the service account's own lock collection may appear on first use (empty again: the lock is released)
    changed = [c for c in diff(after_upload, zone_state(dep)) if c != "new: " + dep.config.landing_collection
               + "/.locks"]
    assert dep.catalog.walk(dep.config.landing_collection + "/.locks")[1:] == []
    robustness.record("trust: drop or rule by someone else", "mallory's drop", res["status"] if not changed else
                      "changed", escaped=len(changed))
    # Through PREP the service account does not see a collection it may not read (round 10: genquery hides it,
    # as for a missing one), so mallory's drop is either refused as foreign or, as here, not found at all.
    assert (res["status"] == "refused" and "not written by the service account" in res["reason"]) or \
        (res["status"] == "unknown" and res["snapshot"] is None), res
    assert changed == [], changed
    assert vault_bytes(dep, landing + "/transfer.tar") == open(archive, "rb").read()


def test_another_user_cannot_add_to_a_service_account_drop(dep: Any, robustness: Any) -> None:
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, run=False)
    landing = dep.config.landing_collection + "/" + drop_id
    before = zone_state(dep)
    for path in (landing + "/extra.bin", landing + "/manifest2.json"):
        with pytest.raises(NoPermission):
            dep.server.client_put("mallory", path, b"injected")
    with pytest.raises(IrodsError):
        dep.catalog.rename("mallory", landing + "/transfer.tar", "/tempZone/home/mallory/stolen.tar")
    changed = diff(before, zone_state(dep))
    dep.run_delay_server()
    st = drop_status(dep.admin(), dep.config, drop_id)
    robustness.record("trust: drop or rule by someone else", "mallory writes into a service-account drop",
                      "refused" if not changed else "changed", escaped=len(changed))
    assert changed == [] and st.status == "complete"


@pytest.mark.parametrize("user", ["mallory", "alice", "rods"])
def test_the_delayed_rule_refuses_any_other_caller(dep: Any, robustness: Any, user: str) -> None:
    archive = FIXTURES["image_tar"]
    drop_id, _ = drop(dep, archive, run=False)
    before = zone_state(dep)
    out = dep.server.irule(user, "omero_snapshots_process_drop", [drop_id, "break-lock"], instance=NATIVE_INSTANCE)
    res = json.loads(out[0])
    changed = diff(before, zone_state(dep))
    robustness.record("trust: drop or rule by someone else", "process_drop run by " + user, res["status"],
                      escaped=len(changed))
    assert res["status"] == "refused" and "only as the service account" in res["reason"], res
    assert changed == [], changed


@pytest.mark.parametrize("rule,args", [
    ("omero_snapshots_enrol", ["mallory", "jdoe2", OMERO_SERVER]),
    ("omero_snapshots_unenrol", ["jdoe", OMERO_SERVER]),
    ("omero_snapshots_reprocess", ["20261125T100000Z-aaaaaaaa1111"]),
    ("omero_snapshots_release", ["20261125T100000Z-aaaaaaaa1111"]),
    ("omero_snapshots_purge", ["20261125T100000Z-aaaaaaaa1111", "purge:20261125T100000Z-aaaaaaaa1111"]),
    ("omero_snapshots_status", ["20261125T100000Z-aaaaaaaa1111"]),
])
@pytest.mark.parametrize("user", ["mallory", SVC])
def test_admin_rules_refuse_non_admins(dep: Any, robustness: Any, rule: str, args: List[str], user: str) -> None:
    before = zone_state(dep)
    out = dep.server.irule(user, rule, list(args) + [""], instance=NATIVE_INSTANCE)
    res = json.loads(out[len(args)])
    changed = diff(before, zone_state(dep))
    robustness.record("trust: admin rules called by a non-admin", "{} by {}".format(rule, user),
                      "refused" if not res.get("ok") else "accepted", escaped=len(changed))
    assert res == {"ok": False, "error": "admin rules need a rodsadmin"}
    assert changed == [], changed
    with pytest.raises(IrodsError):  # python rule text needs a rodsadmin at all
        dep.server.irule(user, rule, list(args) + [""], instance=PYTHON_INSTANCE)


@pytest.mark.parametrize("rule", ["omero_snapshots_svc_release", "omero_snapshots_svc_purge"])
@pytest.mark.parametrize("user", ["mallory", "alice"])
def test_service_account_rules_refuse_everyone_else(dep: Any, robustness: Any, rule: str, user: str) -> None:
    doc = manifest_doc(FIXTURES["image_tar"], archive_sha256="0" * 64)
    drop(dep, FIXTURES["image_tar"], doc)  # a quarantined drop to aim at
    before = zone_state(dep)
    out = dep.server.irule(user, rule, [doc["drop_id"], "purge:" + doc["drop_id"]], instance=NATIVE_INSTANCE)
    res = json.loads(out[0])
    changed = diff(before, zone_state(dep))
    robustness.record("trust: admin rules called by a non-admin", "{} by {}".format(rule, user),
                      "refused" if not res.get("ok") else "accepted", escaped=len(changed))
    assert res == {"ok": False, "error": "only the service account runs this rule"}
    assert changed == [], changed


# ---------------------------------------------------------------------- another user's root, injected syntax
SMUGGLED = [
    ("label", "../../bob/omero-snapshots/x"), ("label", "/tempZone/home/bob/omero-snapshots"),
    ("label", "..\\..\\bob"), ("label", "%2e%2e%2fbob"), ("label", "\u2215tempZone\u2215home\u2215bob"),
    ("label", "{irods_user}"), ("label", "bob"), ("omero_group", "../../bob"),
]
INJECTIONS = ["a;b", "%", "%s%n", "'", "''; drop table", '"', "$(x)", "`id`", "\\", "a\\nb", "x\", \"attribute\": \"y",
              "omero.snapshot.status", "status=complete", "::", "a b", "*", "${HOME}", "{drop_short}"]


def _snapshot_after(d: Any, doc: Dict[str, Any]) -> Tuple[Any, Dict[str, List[str]]]:
    drop(d, FIXTURES["image_tar"], doc)
    st = drop_status(d.admin(), d.config, doc["drop_id"])
    return st, V.as_dict(d.catalog.metadata(st.snapshot)) if st.snapshot else {}


@pytest.mark.parametrize("field,value", SMUGGLED + [("label", v) for v in INJECTIONS] +
                         [("omero_group", v) for v in INJECTIONS])
def test_free_text_never_becomes_path_or_avu_syntax(dep: Any, robustness: Any, field: str, value: str) -> None:
    archive = FIXTURES["image_tar"]
    bob_before = [e for e in zone_state(dep)["entries"] if e[0].startswith("/tempZone/home/bob")]
    doc = manifest_doc(archive, **{field: value})
    st, meta = _snapshot_after(dep, doc)
    bob_after = [e for e in zone_state(dep)["entries"] if e[0].startswith("/tempZone/home/bob")]
    snap = st.snapshot or ""
    escaped = int(not (snap.startswith(ROOT + "/") and "/" not in snap[len(ROOT) + 1:])) + \
        int(bob_before != bob_after)
    robustness.record("trust: path / AVU syntax in free text (label, group)", "{}={!r}".format(field, value),
                      st.status, escaped=escaped)
    assert st.status == "complete", st
    assert escaped == 0, (snap, bob_before != bob_after)
    # recorded exactly once, as typed; no other attribute appeared or changed value
    attr = V.LABEL if field == "label" else V.OMERO_GROUP
    assert meta[attr] == [value]
    reference = dict(meta)
    assert reference[V.STATUS] == ["complete"] and reference[V.DROP_ID] == [doc["drop_id"]]
    assert all(len(v) == 1 for k, v in meta.items() if k not in (V.OBJECT, V.NS + "packet.image",
                                                                 V.NS + "packet.image_name"))


@pytest.mark.parametrize("value", ["jdoe'", 'jd"oe', "jdoe;x", "jdoe%", "$(x)", "jdoe\\", "../alice", "jdoe/../jbob",
                                   "jdoe\n", "jbob\u0000", "*", "jdoe jbob"])
def test_crafted_omero_user_is_quarantined_and_touches_no_root(dep: Any, robustness: Any, value: str) -> None:
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive)
    doc["who"]["omero_user"] = value
    before = zone_state(dep)
    drop_id, _ = drop(dep, archive, doc, raw=json.dumps(doc).encode(), drop_id=doc["drop_id"])
    st = drop_status(dep.admin(), dep.config, drop_id)
    after = zone_state(dep)
    elsewhere = [line for line in diff(before, after) if dep.config.landing_collection not in line
                 and line != "delay changed"]
    robustness.record("trust: crafted OMERO user name", repr(value), st.status, escaped=len(elsewhere))
    assert st.status == "quarantined" and "manifest.who.omero_user" in (st.reason or ""), st
    assert elsewhere == [], elsewhere


# ---------------------------------------------------------------------- enrolment refusals
@pytest.mark.parametrize("irods_user,expect", [
    ("rods", "rodsadmin"), (SVC, "service account"), ("public", "group"), ("ghost", "does not exist"),
    ("../rods", "does not exist"), ("alice/../rods", "does not exist"), ("rods\n", "does not exist"),
    ("otheradmin", "rodsadmin"),
])
def test_enrolment_refusals_change_nothing(dep: Any, robustness: Any, irods_user: str, expect: str) -> None:
    dep.add_user("otheradmin", "rodsadmin")
    before = zone_state(dep)
    res = dep.admin_rule_unchecked("omero_snapshots_enrol", irods_user, "x", OMERO_SERVER)
    changed = diff(before, zone_state(dep))
    robustness.record("trust: enrolment of an account that must not receive snapshots", repr(irods_user),
                      "refused" if not res.get("ok") else "accepted", escaped=len(changed))
    assert res["ok"] is False and expect in res["error"], res
    assert changed == [], changed


def test_enrolment_does_not_silently_remap_a_user(dep: Any, robustness: Any) -> None:
    before = zone_state(dep)
    res = dep.admin_rule("omero_snapshots_enrol", "bob", "jdoe", OMERO_SERVER)
    changed = diff(before, zone_state(dep))
    robustness.record("trust: enrolment of an account that must not receive snapshots", "remap without replace",
                      "refused" if not res.get("ok") else "accepted", escaped=len(changed))
    assert res["ok"] is False and "already mapped to 'alice'" in res["error"]
    assert changed == [], changed


def test_a_user_promoted_to_rodsadmin_after_enrolment_gets_nothing(dep: Any, robustness: Any) -> None:
    dep.catalog.db.execute("UPDATE users SET type='rodsadmin' WHERE name='bob'")
    archive = FIXTURES["image_tar"]
    before = [e for e in zone_state(dep)["entries"] if e[0].startswith(BOB_ROOT)]
    drop_id, _ = drop(dep, archive, manifest_doc(archive, omero_user="jbob"))
    st = drop_status(dep.admin(), dep.config, drop_id)
    after = [e for e in zone_state(dep)["entries"] if e[0].startswith(BOB_ROOT)]
    robustness.record("trust: enrolment of an account that must not receive snapshots", "promoted after enrolment",
                      st.status, escaped=int(before != after))
    assert st.status == "quarantined" and "rodsadmin" in (st.reason or "")
    assert before == after


def test_enrol_replace_through_the_admin_rule(dep: Any) -> None:
    """The refusal above tells the admin to 'pass --replace'; through the rule that must then work."""
    out = dep.server.irule("rods", "omero_snapshots_enrol", ["bob", "jdoe", OMERO_SERVER, "replace", ""],
                           PYTHON_INSTANCE)
    assert out[3] == "replace", "the rule wrote its result over the 'replace' argument: {}".format(out[3])
    res = json.loads(out[4])
    assert res["ok"] is True and res["irods_user"] == "bob", res


@pytest.mark.parametrize("squat,expect", [
    pytest.param("quarantine", "quarantined"),
    pytest.param(".locks", "complete"),
])
def test_squatted_service_collection(dep: Any, robustness: Any, squat: str, expect: str) -> None:
    """Another user with write on the landing collection creates landing/<squat> before the first drop."""
    dep.zone_as("mallory").create_collection(dep.config.landing_collection + "/" + squat)
    archive = FIXTURES["image_tar"]
    doc = manifest_doc(archive, archive_sha256="0" * 64) if squat == "quarantine" else manifest_doc(archive)
    drop_id, _ = drop(dep, archive, doc)
    st = drop_status(dep.admin(), dep.config, drop_id)
    landing = dep.config.landing_collection + "/" + drop_id
    home = st.snapshot if st.snapshot else st.location
    kept = vault_bytes(dep, landing + "/transfer.tar") or vault_bytes(dep, (home or "") + "/transfer.tar")
    robustness.record("trust: squatted service collections (misconfiguration)",
                      "landing/{} owned by another user".format(squat), st.status,
                      lost=int(kept != open(archive, "rb").read()))
    assert kept == open(archive, "rb").read()
    assert st.status == expect or (st.status in ("quarantined", "refused", "failed") and st.reason), st
    # the reason tells the admin what is wrong: the service account does not own that collection
    assert squat in (st.reason or "") and "service account" in (st.reason or ""), st.reason


@pytest.mark.parametrize("name", ["-rf-00000000", "a b c d e f", "x'y00000000", "%2e%2e%2f0000", "caf\u00e9-0001drop",
                                  "quarantine", "a" * 65, "drop\nid0001", "$(reboot)000", "20261125T100000Z-abc;ls"])
def test_drop_collection_with_a_hostile_name_is_left_alone(dep: Any, robustness: Any, name: str) -> None:
    """OMERO names the drop collection; a name that is not a drop id is never processed, whatever it holds."""
    archive = FIXTURES["image_tar"]
    before = zone_state(dep)
    doc = manifest_doc(archive)
    doc["drop_id"] = name  # the manifest agrees with the collection: only the name itself is wrong
    up = dep.upload_drop(archive, json.dumps(doc).encode(), name, archive_name="transfer.tar")
    dep.run_delay_server()
    landing = dep.config.landing_collection + "/" + name
    changed = [line for line in diff(before, zone_state(dep)) if not line.startswith("new: " + landing)]
    out = dep.server.irule(SVC, "omero_snapshots_process_drop", [name], instance=NATIVE_INSTANCE)
    res = json.loads(out[0])
    robustness.record("trust: drop collection not named like a drop id", repr(name),
                      "ignored" if res["status"] == "refused" and not changed else res["status"], escaped=len(changed))
    assert up.manifest_pep.client_error is None
    assert changed == [], changed  # no status, no delayed rule, nothing anywhere else
    assert res["status"] == "refused" and "not a valid drop id" in res["reason"], res
