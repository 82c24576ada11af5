"""policy.manifest: parsing untrusted manifest bytes and building manifests."""

from __future__ import annotations

import copy
import json
import re

import pytest

from policy import schemas as S
from policy.manifest import (
    ArchiveInfo,
    Manifest,
    ManifestError,
    ObjectRef,
    Who,
    build_manifest,
    manifest_to_json,
    new_drop_id,
    parse_manifest,
    parse_utc,
    utc_now,
)

SHA = "b597d0200a75f9b38b252a39b3df0cd7a088ad43f1e77fba9e79ee93c93a2bfc"


def _doc(i: int = 0) -> dict:
    return copy.deepcopy(S.load_schema("manifest")["examples"][i])


def _bytes(doc) -> bytes:
    return json.dumps(doc).encode("utf-8")


def test_parse_example():
    m = parse_manifest(_bytes(_doc()))
    assert m == Manifest(
        drop_id="20250114T101500Z-3f9a1c2b7d4e",
        created="2025-01-14T10:15:00Z",
        who=Who(
            omero_user="alice",
            omero_user_id=52,
            omero_group="Imaging Lab",
            omero_server="omero.example.org:4064",
            omero_group_id=3,
            email="alice@example.org",
        ),
        objects=(ObjectRef("Image", (51,)),),
        archive=ArchiveInfo("transfer.tar", 2119680, SHA, "tar", "omero-cli-transfer", "1.3.2"),
        label="Confocal stack, day 3",
        raw=_doc(),
    )
    assert m.raw == _doc()
    hash(m)  # frozen and hashable despite the raw dict


def test_parse_minimal_example_without_optionals():
    m = parse_manifest(_bytes(_doc(1)))
    assert m.label is None and m.who.email is None and m.who.omero_group_id is None
    assert m.objects == (ObjectRef("Dataset", (1, 2)), ObjectRef("Plate", (3,)))


def test_integral_floats_become_ints():
    d = _doc()
    d["what"]["objects"][0]["ids"] = [51.0]
    d["archive"]["size"] = 2119680.0
    m = parse_manifest(_bytes(d))
    assert m.objects[0].ids == (51,) and type(m.objects[0].ids[0]) is int
    assert type(m.archive.size) is int


def test_too_large_is_refused_without_parsing():
    data = b"{" + b" " * 70000  # not even JSON: size is checked first
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data)
    assert str(exc.value) == "manifest is 70001 bytes, the limit is 65536"
    with pytest.raises(ManifestError, match="manifest is 70001 bytes, the limit is 100"):
        parse_manifest(data, max_bytes=100)


def test_invalid_json_gives_line_and_column():
    data = b'{\n  "manifest_version": 1,\n  "drop_id": oops\n}'
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data)
    assert str(exc.value) == "manifest is not valid JSON: Expecting value at line 3, column 14"


def test_duplicate_keys_refused():
    text = _bytes(_doc()).decode()
    text = text.replace('"omero_user": "alice"', '"omero_user": "alice", "omero_user": "mallory"')
    with pytest.raises(ManifestError) as exc:
        parse_manifest(text.encode())
    assert str(exc.value) == "manifest has a duplicate key 'omero_user'; every key may appear once per object"


def test_nan_refused():
    text = _bytes(_doc()).decode().replace('"size": 2119680', '"size": NaN')
    with pytest.raises(ManifestError, match="NaN"):
        parse_manifest(text.encode())


def test_deep_nesting_is_a_manifest_error_not_recursion_error():
    with pytest.raises(ManifestError) as exc:
        parse_manifest(b"[" * 100000, max_bytes=1_000_000)
    assert "deeper than" in str(exc.value)
    with pytest.raises(ManifestError):
        parse_manifest(b'{"label": ' + b"{" * 60000 + b"}" * 60000 + b"}", max_bytes=1_000_000)


def test_non_utf8_refused():
    data = _bytes(_doc()).replace(b"Imaging Lab", b"Imaging \xe9Lab")
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data)
    assert str(exc.value).startswith("manifest is not UTF-8 (byte 0xe9 at offset ")


@pytest.mark.parametrize("doc, kind", [([], "an array"), ("x", "a string"), (3, "a number"), (None, "null")])
def test_top_level_must_be_object(doc, kind):
    with pytest.raises(ManifestError) as exc:
        parse_manifest(json.dumps(doc).encode())
    assert str(exc.value) == "manifest must be a JSON object, not " + kind


def test_schema_violations_listed():
    d = _doc()
    d["archive"]["sha256"] = "xyz"
    del d["who"]["omero_user"]
    with pytest.raises(ManifestError) as exc:
        parse_manifest(_bytes(d))
    assert exc.value.errors == [
        "manifest.archive.sha256: 'xyz' does not match '^[0-9a-f]{64}$'",
        "manifest.who: 'omero_user' is a required property",
    ]
    assert str(exc.value) == "; ".join(exc.value.errors)


def test_impossible_date_refused():
    d = _doc()
    d["created"] = "2025-02-30T10:00:00Z"
    with pytest.raises(ManifestError) as exc:
        parse_manifest(_bytes(d))
    assert str(exc.value) == "manifest.created: '2025-02-30T10:00:00Z' is not a valid date and time"


def test_archive_name_must_match_format():
    d = _doc()
    d["archive"]["format"] = "zip"  # name is transfer.tar
    with pytest.raises(ManifestError) as exc:
        parse_manifest(_bytes(d))
    assert (
        str(exc.value)
        == "manifest.archive.name: 'transfer.tar' does not end with '.zip' as format 'zip' requires"
    )
    d["archive"]["format"] = "tar.gz"
    d["archive"]["name"] = "transfer.tgz"
    assert parse_manifest(_bytes(d)).archive.format == "tar.gz"


def test_archive_may_not_shadow_manifest():
    d = _doc()
    d["archive"]["name"] = "manifest.json"
    with pytest.raises(ManifestError) as exc:
        parse_manifest(_bytes(d))
    assert "manifest.archive.name: the archive may not be called 'manifest.json'" in exc.value.errors


def test_expected_drop_id():
    data = _bytes(_doc())
    assert parse_manifest(data, expected_drop_id="20250114T101500Z-3f9a1c2b7d4e").drop_id
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data, expected_drop_id="other-drop-0001")
    assert str(exc.value) == (
        "manifest.drop_id: '20250114T101500Z-3f9a1c2b7d4e' is not the name of the drop collection "
        "'other-drop-0001'"
    )


def test_parse_utc():
    assert parse_utc("2025-01-14T10:15:00Z").year == 2025
    assert parse_utc("2025-01-14T10:15:00.5Z").microsecond == 500000
    assert parse_utc("2025-13-14T10:15:00Z") is None
    assert parse_utc("2025-01-14T10:15:00") is None


def _build(**kw):
    args = dict(
        drop_id="drop-0001-alice",
        omero_user="alice",
        omero_user_id=52,
        omero_group="Imaging Lab",
        omero_server="omero.example.org",
        objects={"Image": [1, 2]},
        archive_name="transfer.tar",
        archive_size=10,
        archive_sha256=SHA,
        archive_format="tar",
        packer_version="1.3.2",
    )
    args.update(kw)
    return build_manifest(**args)


def test_build_round_trip():
    doc = _build(label="day 3", email="a@b.c", omero_group_id=3, created="2025-01-01T00:00:00Z")
    m = parse_manifest(manifest_to_json(doc))
    assert m.label == "day 3" and m.who.email == "a@b.c" and m.objects == (ObjectRef("Image", (1, 2)),)
    assert manifest_to_json(m) == manifest_to_json(doc)
    assert "label" not in _build()
    assert re.fullmatch(r"[0-9T:-]+Z", _build()["created"])


def test_build_accepts_pairs_and_refuses_invalid():
    doc = _build(objects=[("Dataset", (5,)), ("Image", [6])])
    assert doc["what"]["objects"] == [{"type": "Dataset", "ids": [5]}, {"type": "Image", "ids": [6]}]
    with pytest.raises(ManifestError, match="manifest.drop_id"):
        _build(drop_id="../x")
    with pytest.raises(ManifestError, match="unpaired surrogate"):
        _build(label="\ud800")


def test_helpers_produce_valid_values():
    did = new_drop_id()
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{7,63}", did)
    assert new_drop_id() != did
    assert parse_utc(utc_now()) is not None
