"""policy.placement: snapshot root, sanitised names, candidates; no manifest field can inject path syntax."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.placement import (
    PlacementError,
    candidate,
    check_logical_path,
    drop_short,
    is_safe_drop_id,
    sanitise,
    snapshot_name,
    snapshot_root,
    utc_compact,
)

ROOT_T = "/{zone}/home/{irods_user}/omero-snapshots"
NAME_T = "{utc}_{omero_user}_{label}_{drop_short}"
CREATED = "2025-01-14T10:15:00Z"
DROP_A = "20250114T101500Z-3f9a1c2b7d4e"
DROP_B = "20250114T101500Z-9b8a7c6d5e4f"


def _has_control(s: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) <= 159 for c in s)


# ---------------------------------------------------------------------- snapshot_root
def test_root_substitutes_zone_and_user():
    assert snapshot_root(ROOT_T, "tempZone", "alice") == "/tempZone/home/alice/omero-snapshots"
    assert snapshot_root("/{zone}/projects/snap/{irods_user}", "z1", "bob.smith@lab") == \
        "/z1/projects/snap/bob.smith@lab"


@pytest.mark.parametrize("user", ["../x", "..", ".", "a/b", "", "alice\n", "al\tice", "al\x00ice", "-alice",
                                  "al ice", "a" * 65, "alice/../../rods", "ali{zone}ce"])
def test_root_refuses_unsafe_user(user):
    with pytest.raises(PlacementError, match="unsafe iRODS user"):
        snapshot_root(ROOT_T, "tempZone", user)


@pytest.mark.parametrize("zone", ["", "../x", "a/b", "temp.Zone", "tempZone\n", "temp Zone", "z\x7f"])
def test_root_refuses_unsafe_zone(zone):
    with pytest.raises(PlacementError, match="unsafe zone"):
        snapshot_root(ROOT_T, zone, "alice")


@pytest.mark.parametrize("template", [
    "/otherZone/home/{irods_user}",    # another zone
    "/{zone}",                         # the zone itself is not "under" the zone
    "{zone}/home/{irods_user}",        # relative
    "/tmp/{zone}/{irods_user}",        # outside /<zone>/
])
def test_root_refuses_results_outside_zone(template):
    with pytest.raises(PlacementError):
        snapshot_root(template, "tempZone", "alice")


@pytest.mark.parametrize("template", [
    "/{zone}/home/../{irods_user}",
    "/{zone}/home/./{irods_user}",
    "/{zone}/home//{irods_user}",
    "/{zone}/home/{irods_user}/",
    "/{zone}/home/{irods_user}/..",
])
def test_root_refuses_unnormalised_templates(template):
    with pytest.raises(PlacementError):
        snapshot_root(template, "tempZone", "alice")


@pytest.mark.parametrize("template", ["/{zone}/home/{user}/snap", "/{zone}/home/{irods_user}/{label}",
                                      "/{zone}/home/{irods_user}/x}"])
def test_root_refuses_leftover_placeholders(template):
    with pytest.raises(PlacementError, match="placeholder"):
        snapshot_root(template, "tempZone", "alice")


# ---------------------------------------------------------------------- sanitise
def test_sanitise_folds_accents_and_collapses_runs():
    assert sanitise("Café Müller", 48) == "Cafe-Muller"
    assert sanitise("  Ångström   data  ", 48) == "Angstrom-data"
    assert sanitise("ﬁsh", 48) == "fish"  # compatibility decomposition


@pytest.mark.parametrize("text", ["../../x", "/etc", "/etc/passwd", "a\nb", "a/b", "..", ".", "...", "a/../b",
                                  "'quoted'\"x\"", "100%", "%2e%2e%2f", "日本語", "🐟🐠", "a\\b", "／etc",
                                  "a\x00b", "-rf", ".hidden", "x" * 500, "\u202eevil"])
def test_sanitise_never_yields_path_syntax(text):
    out = sanitise(text, 48)
    assert "/" not in out and "\\" not in out
    assert out not in (".", "..")
    assert ".." not in out
    assert not _has_control(out)
    assert len(out) <= 48
    assert out == "" or (out[0] not in ".-" and out[-1] not in ".-")
    assert all(c.isascii() and (c.isalnum() or c in ".-") for c in out)


def test_sanitise_specific_results():
    assert sanitise("../../x", 48) == "x"
    assert sanitise("/etc", 48) == "etc"
    assert sanitise("a\nb", 48) == "a-b"
    assert sanitise("a/b", 48) == "a-b"
    assert sanitise("it's \"fine\"", 48) == "it-s-fine"
    assert sanitise("100% done", 48) == "100-done"
    assert sanitise("a..b", 48) == "a.b"
    assert sanitise("a.-.b", 48) == "a-b"


def test_sanitise_empty_fallback():
    assert sanitise("日本語", 48, "snapshot") == "snapshot"
    assert sanitise("🐟", 48, "snapshot") == "snapshot"
    assert sanitise("", 48, "snapshot") == "snapshot"
    assert sanitise("../..", 48, "snapshot") == "snapshot"
    assert sanitise("...", 48) == ""


def test_sanitise_max_length_and_no_trailing_separator_after_cut():
    assert len(sanitise("a" * 100, 10)) == 10
    # a cut landing on a separator must not leave it dangling
    assert sanitise("abcd-efgh", 5) == "abcd"
    assert sanitise("abcd.efgh", 5) == "abcd"


# ---------------------------------------------------------------------- snapshot_name
def test_name_is_readable_and_deterministic():
    n1 = snapshot_name(NAME_T, CREATED, "jdoe", "My label", DROP_A)
    n2 = snapshot_name(NAME_T, CREATED, "jdoe", "My label", DROP_A)
    assert n1 == n2 == "20250114T101500Z_jdoe_My-label_1c2b7d4e"


def test_name_uses_manifest_time_not_clock():
    assert snapshot_name(NAME_T, "2030-12-31T23:59:59.123456Z", "u", "l", DROP_A).startswith("20301231T235959Z_")


def test_same_label_same_second_different_drops_differ():
    a = snapshot_name(NAME_T, CREATED, "jdoe", "run 1", DROP_A)
    b = snapshot_name(NAME_T, CREATED, "jdoe", "run 1", DROP_B)
    assert a != b


@pytest.mark.parametrize("label", ["../../etc", "/", "a/b/../../c", "..", "x\n/y", "%2F..%2F"])
def test_label_cannot_inject_path(label):
    n = snapshot_name(NAME_T, CREATED, "../root", label, DROP_A)
    assert "/" not in n and ".." not in n and not _has_control(n)
    assert candidate("/tempZone/home/alice/omero-snapshots", n, 1).count("/") == 5


def test_empty_label_and_user_get_fallbacks():
    n = snapshot_name(NAME_T, CREATED, "", "", DROP_A)
    assert n == "20250114T101500Z_user_snapshot_{}".format(drop_short(DROP_A))


def test_label_is_capped():
    n = snapshot_name(NAME_T, CREATED, "jdoe", "L" * 500, DROP_A, label_max_chars=10)
    assert "_" + "L" * 10 + "_" in n and "L" * 11 not in n


def test_naming_template_must_contain_drop_short():
    with pytest.raises(PlacementError, match="drop_short"):
        snapshot_name("{utc}_{omero_user}_{label}", CREATED, "jdoe", "x", DROP_A)


@pytest.mark.parametrize("template", ["{utc}/{drop_short}", "{drop_short}_{unknown}", "../{drop_short}"])
def test_naming_template_cannot_produce_unsafe_names(template):
    try:
        n = snapshot_name(template, CREATED, "jdoe", "x", DROP_A)
    except PlacementError:
        return
    assert "/" not in n and n not in (".", "..") and not n.startswith(".")


def test_bad_created_time_refused():
    with pytest.raises(PlacementError, match="ISO 8601"):
        snapshot_name(NAME_T, "yesterday", "jdoe", "x", DROP_A)
    assert utc_compact("2025-01-14T10:15:00.5Z") == "20250114T101500Z"


# ---------------------------------------------------------------------- candidate
def test_candidate_attempts():
    root = "/tempZone/home/alice/omero-snapshots"
    assert candidate(root, "snap", 1) == root + "/snap"
    assert candidate(root, "snap", 2) == root + "/snap-2"
    assert candidate(root, "snap", 3) == root + "/snap-3"
    assert len({candidate(root, "snap", i) for i in range(1, 20)}) == 19


@pytest.mark.parametrize("name", ["a/b", "..", ".", "", "../x", "x\n", "x\x85"])
def test_candidate_refuses_names_escaping_root(name):
    with pytest.raises(PlacementError):
        candidate("/tempZone/home/alice/omero-snapshots", name, 1)


# ---------------------------------------------------------------------- drop ids and paths
@pytest.mark.parametrize("drop_id", [DROP_A, "drop-0001-bob", "abcdefgh", "A1234567.tar_x", "a" * 64])
def test_safe_drop_ids(drop_id):
    assert is_safe_drop_id(drop_id)


@pytest.mark.parametrize("drop_id", ["", "short", "quarantine", "..abcdefgh", "abc..defgh", "abcdefgh\n",
                                     "abcdefgh/x", "../abcdefgh", ".abcdefgh", "-abcdefgh", "a" * 65,
                                     "abcd efgh", "abcdéfgh", None])
def test_unsafe_drop_ids(drop_id):
    assert not is_safe_drop_id(drop_id)


@pytest.mark.parametrize("path", ["/tempZone", "/tempZone/home/a b/c", "/z/x.y/..z"])
def test_check_logical_path_accepts(path):
    assert check_logical_path(path) == path


@pytest.mark.parametrize("path", ["", "/", "relative/x", "/z/", "/z//x", "/z/./x", "/z/../x", "/z/x/..",
                                  "/z/a\nb", "/z/a\x7fb", "/z/a\x9bb", "/z/\x00"])
def test_check_logical_path_refuses(path):
    with pytest.raises(PlacementError):
        check_logical_path(path)


# ---------------------------------------------------------------------- property
_drop_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{7,63}\Z").filter(is_safe_drop_id)
_users = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,20}\Z").filter(lambda u: u not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(label=st.text(max_size=80), omero_user=st.text(max_size=40), irods_user=_users, drop_id=_drop_ids,
       attempt=st.integers(min_value=1, max_value=50))
def test_candidate_is_always_a_direct_child_of_root(label, omero_user, irods_user, drop_id, attempt):
    root = snapshot_root(ROOT_T, "tempZone", irods_user)
    name = snapshot_name(NAME_T, CREATED, omero_user, label, drop_id)
    path = candidate(root, name, attempt)
    assert path.startswith(root + "/")
    leaf = path[len(root) + 1:]
    assert leaf and "/" not in leaf
    parts = path.split("/")[1:]
    assert "." not in parts and ".." not in parts and "" not in parts
    assert not _has_control(path)
    # deterministic: the same drop always gets the same name
    assert snapshot_name(NAME_T, CREATED, omero_user, label, drop_id) == name


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), limit=st.integers(min_value=1, max_value=64))
def test_sanitise_property(text, limit):
    out = sanitise(text, limit)
    assert len(out) <= limit and "/" not in out and ".." not in out and out not in (".",)
    assert not _has_control(out)
