"""The three JSON Schemas and policy.schemas (validation, error strings, strict JSON)."""

from __future__ import annotations

import copy
import json
import os

import pytest
from jsonschema import Draft202012Validator

import schemas as schemas_pkg
from policy import schemas as S
from policy.schemas import JsonError, SchemaError, ecma_regex, loads_strict, validate


def _example(name: str, i: int = 0) -> dict:
    return copy.deepcopy(S.load_schema(name)["examples"][i])


@pytest.mark.parametrize("name", S.SCHEMA_NAMES)
def test_schema_files_are_package_data_and_well_formed(name):
    path = os.path.join(os.path.dirname(schemas_pkg.__file__), f"{name}-v1.schema.json")
    assert S.schema_path(name) == os.path.abspath(path)
    schema = S.load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://omero-irods-snapshots.example.org/schemas/{name}-v1.schema.json"
    assert schema["title"] and schema["description"]
    assert schema["examples"], "every schema carries at least one complete example"


def _objects(node):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for k, v in node.items():
            if k != "examples":
                yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


@pytest.mark.parametrize("name", S.SCHEMA_NAMES)
def test_every_object_level_forbids_additional_properties(name):
    objs = list(_objects(S.load_schema(name)))
    assert objs
    for o in objs:
        assert o.get("additionalProperties") is False, o.get("required")


@pytest.mark.parametrize("name", S.SCHEMA_NAMES)
def test_every_example_validates(name):
    schema = S.load_schema(name)
    for i, ex in enumerate(schema["examples"]):
        assert validate(ex, name, name) == [], (name, i)
        # and plain jsonschema agrees
        assert list(Draft202012Validator(schema).iter_errors(ex)) == []


def test_load_schema_returns_a_copy():
    a = S.load_schema("manifest")
    a["title"] = "changed"
    assert S.load_schema("manifest")["title"] != "changed"


def test_unknown_schema_name():
    with pytest.raises(ValueError, match="unknown schema"):
        S.load_schema("nope")


def test_shared_patterns_are_identical_across_files():
    m = S.load_schema("manifest")
    mp = S.load_schema("mapping")
    c = S.load_schema("config")
    user = mp["$defs"]["user"]["properties"]
    assert user["omero_server"]["pattern"] == m["$defs"]["omero_server"]["pattern"]
    assert user["omero_user"]["pattern"] == m["$defs"]["omero_user"]["pattern"]
    assert mp["$defs"]["irods_user"]["pattern"] == c["$defs"]["irods_user"]["pattern"]
    assert user["enrolled"]["pattern"] == m["$defs"]["utc_timestamp"]["pattern"]


# ------------------------------------------------------------ error strings

SHA_PATTERN = "'^[0-9a-f]{64}$'"
DROP_PATTERN = "'^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$'"


def _errors(mutate) -> list:
    doc = _example("manifest")
    mutate(doc)
    return validate(doc, "manifest", "manifest")


def test_wrong_sha256():
    def m(d):
        d["archive"]["sha256"] = "xyz"

    assert _errors(m) == ["manifest.archive.sha256: 'xyz' does not match " + SHA_PATTERN]


def test_upper_case_sha256_refused():
    def m(d):
        d["archive"]["sha256"] = d["archive"]["sha256"].upper()

    errs = _errors(m)
    assert len(errs) == 1 and errs[0].startswith("manifest.archive.sha256: '")


def test_missing_who_omero_user():
    def m(d):
        del d["who"]["omero_user"]

    assert _errors(m) == ["manifest.who: 'omero_user' is a required property"]


def test_missing_root_property():
    def m(d):
        del d["drop_id"]

    assert _errors(m) == ["manifest: 'drop_id' is a required property"]


def test_wrong_type_in_ids():
    def m(d):
        d["what"]["objects"][0]["ids"] = [51, "52"]

    assert _errors(m) == ["manifest.what.objects[0].ids[1]: '52' is not of type 'integer'"]


def test_bool_is_not_an_id():
    def m(d):
        d["what"]["objects"][0]["ids"] = [True]

    assert _errors(m) == ["manifest.what.objects[0].ids[0]: True is not of type 'integer'"]


def test_unknown_extra_property():
    def m(d):
        d["who"]["is_admin"] = True

    assert _errors(m) == ["manifest.who: Additional properties are not allowed ('is_admin' was unexpected)"]


def test_bad_format_enum():
    def m(d):
        d["archive"]["format"] = "rar"

    assert _errors(m) == ["manifest.archive.format: 'rar' is not one of ['tar', 'tar.gz', 'zip']"]


def test_bad_object_type_enum():
    def m(d):
        d["what"]["objects"][0]["type"] = "Foo"

    assert _errors(m) == [
        "manifest.what.objects[0].type: 'Foo' is not one of "
        "['Project', 'Dataset', 'Image', 'Screen', 'Plate']"
    ]


@pytest.mark.parametrize("label", ["two\nlines", "trailing newline\n", "tab\there", "nul\x00", "del\x7f"])
def test_label_with_control_characters(label):
    def m(d):
        d["label"] = label

    assert _errors(m) == [f"manifest.label: {label!r} does not match '^[^\\\\u0000-\\\\u001f\\\\u007f]*$'"]


@pytest.mark.parametrize(
    "drop_id",
    [
        "abc/defghijk",
        "../../etc",
        "..",
        "../../../../tmp/x",
        "/etc/passwd",
        ".hiddenfile",
        "abcdefgh\n",
        "short",
    ],
)
def test_path_like_or_malformed_drop_ids(drop_id):
    def m(d):
        d["drop_id"] = drop_id

    assert _errors(m) == [f"manifest.drop_id: {drop_id!r} does not match {DROP_PATTERN}"]


def test_trailing_newline_never_matches_dollar():
    # Python's re.search('^x$', 'x\n') matches; JSON Schema (ECMA) patterns must not.
    def m(d):
        d["archive"]["sha256"] = "a" * 64 + "\n"

    assert len(_errors(m)) == 1


def test_errors_are_sorted_by_path_with_numeric_indices():
    def m(d):
        d["what"]["objects"] = [{"type": "Image", "ids": [i]} for i in range(1, 13)]
        d["what"]["objects"][2]["ids"] = [0]
        d["what"]["objects"][10]["ids"] = [0]
        d["archive"]["size"] = -1
        del d["created"]

    assert _errors(m) == [
        "manifest: 'created' is a required property",
        "manifest.archive.size: -1 is less than the minimum of 0",
        "manifest.what.objects[2].ids[0]: 0 is less than the minimum of 1",
        "manifest.what.objects[10].ids[0]: 0 is less than the minimum of 1",
    ]


def test_huge_values_give_short_messages():
    def m(d):
        d["label"] = "x" * 1_000_000

    errs = _errors(m)
    assert errs == [
        "manifest.label: '" + "x" * 59 + "... (1000000 chars) is too long",
    ]
    assert all(len(e) <= 320 for e in errs)


def test_huge_unexpected_key_message_is_capped():
    def m(d):
        d["k" * 100_000] = 1

    (err,) = _errors(m)
    assert len(err) <= 320 and err.endswith("...")


def test_schema_error_summary():
    err = SchemaError([f"e{i}" for i in range(8)])
    assert str(err) == "e0; e1; e2; e3; e4; and 3 more"
    assert err.errors[-1] == "e7"
    assert isinstance(err, ValueError)
    assert str(SchemaError(["only"])) == "only"


def test_definition_validation():
    assert (
        validate(
            {"omero_server": "a", "omero_user": "b", "irods_user": "c"}, "mapping", "e", definition="user"
        )
        == []
    )
    assert validate({"omero_server": "a", "omero_user": "b"}, "mapping", "e", definition="user") == [
        "e: 'irods_user' is a required property"
    ]


# ------------------------------------------------------------- ecma regex


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("^a$", "^a\\Z"),
        ("^[$]$", "^[$]\\Z"),
        ("^\\$$", "^\\$\\Z"),
        ("^[]$]x$", "^[]$]x\\Z"),
        ("^[^]$]x$", "^[^]$]x\\Z"),
        ("(a$|b$)", "(a\\Z|b\\Z)"),
    ],
)
def test_ecma_regex(pattern, expected):
    assert ecma_regex(pattern) == expected


# ------------------------------------------------------------ strict JSON


def test_loads_strict_accepts_normal_json():
    assert loads_strict(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert loads_strict('{"s": "[[[[{{{{\\"]]]"}', max_depth=2) == {"s": '[[[[{{{{"]]]'}


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"o": {"b": 1, "b": 1}}', "duplicate key 'b'"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "-Infinity"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": 123456789012345678901234567890}', "too long"),
        (b'{"a": "\\ud800"}', "unpaired surrogate"),
        (b'{"\\udfff": 1}', "unpaired surrogate"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": 1,}', "line 1, column 9"),
        (b"[" * 50 + b"]" * 50, "deeper than 32"),
    ],
)
def test_loads_strict_refusals(data, fragment):
    with pytest.raises(JsonError) as exc:
        loads_strict(data)
    assert fragment in str(exc.value)


def test_nesting_prescan_counts_escaped_quotes_correctly():
    text = json.dumps({"a": 'x\\"[[[[' * 10})
    assert not S.nesting_depth_exceeds(text, 2)
    assert S.nesting_depth_exceeds("[[[", 2)
