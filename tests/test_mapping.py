"""policy.mapping: lookups, edits, duplicate refusal, atomic save."""

from __future__ import annotations

import json
import os
import stat

import pytest

from policy import schemas as S
from policy.mapping import MappingEntry, MappingError, UserMapping, load_mapping, parse_mapping, save_mapping

SERVER = "omero.example.org:4064"


def _doc() -> dict:
    return json.loads(json.dumps(S.load_schema("mapping")["examples"][0]))


def test_parse_and_lookup():
    m = parse_mapping(_doc())
    assert len(m) == 2
    assert m.lookup(SERVER, "alice") == "alice"
    assert m.lookup(SERVER, "bob.smith") == "bsmith"
    assert m.get(SERVER, "alice") == MappingEntry(SERVER, "alice", "alice", "2025-01-14T10:00:00Z", "rods")


def test_lookup_is_exact_and_case_sensitive():
    m = parse_mapping(_doc())
    assert m.lookup(SERVER, "Alice") is None
    assert m.lookup("OMERO.example.org:4064", "alice") is None
    assert m.lookup("omero.example.org", "alice") is None  # port is part of the key
    assert m.lookup(SERVER, "alice ") is None


def test_duplicate_pair_refused_naming_it():
    d = _doc()
    d["users"].append({"omero_server": SERVER, "omero_user": "alice", "irods_user": "mallory"})
    with pytest.raises(MappingError) as exc:
        parse_mapping(d)
    assert exc.value.errors == [
        "mapping.users[2]: duplicate entry for omero_server 'omero.example.org:4064' and omero_user 'alice' "
        "(already at mapping.users[0])"
    ]


def test_same_user_on_other_server_is_not_a_duplicate():
    d = _doc()
    d["users"].append({"omero_server": "other.example.org", "omero_user": "alice", "irods_user": "alice2"})
    m = parse_mapping(d)
    assert m.lookup("other.example.org", "alice") == "alice2"


def test_schema_errors():
    d = _doc()
    d["users"][1]["irods_user"] = "bad user"
    d["mapping_version"] = 2
    with pytest.raises(MappingError) as exc:
        parse_mapping(d)
    assert exc.value.errors == [
        "mapping.mapping_version: 1 was expected",
        "mapping.users[1].irods_user: 'bad user' does not match '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'",
    ]
    with pytest.raises(MappingError, match="mapping must be a JSON object"):
        parse_mapping([])


def test_with_entry_and_replace():
    m = parse_mapping(_doc())
    e = MappingEntry(SERVER, "carol", "carol")
    m2 = m.with_entry(e)
    assert m2.lookup(SERVER, "carol") == "carol" and m.lookup(SERVER, "carol") is None
    with pytest.raises(MappingError) as exc:
        m2.with_entry(MappingEntry(SERVER, "alice", "mallory"))
    assert str(exc.value) == (
        "omero_server 'omero.example.org:4064' and omero_user 'alice' is already mapped "
        "to iRODS user 'alice'; pass replace=True to change it"
    )
    m3 = m2.with_entry(MappingEntry(SERVER, "alice", "alice-new"), replace=True)
    assert m3.lookup(SERVER, "alice") == "alice-new"
    assert [x.omero_user for x in m3.entries] == ["alice", "bob.smith", "carol"]  # replaced in place


def test_with_entry_validates():
    with pytest.raises(MappingError) as exc:
        UserMapping().with_entry(MappingEntry(SERVER, "../x", "alice"))
    assert exc.value.errors == [
        "entry.omero_user: '../x' does not match '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$'"
    ]


def test_without():
    m = parse_mapping(_doc())
    m2 = m.without(SERVER, "alice")
    assert m2.lookup(SERVER, "alice") is None and len(m2) == 1 and len(m) == 2
    with pytest.raises(MappingError, match="no entry for"):
        m2.without(SERVER, "alice")
    assert m2.without(SERVER, "alice", missing_ok=True) is m2


def test_constructor_refuses_duplicates():
    with pytest.raises(MappingError, match="duplicate entry"):
        UserMapping([MappingEntry(SERVER, "a", "x"), MappingEntry(SERVER, "a", "y")])


def test_to_dict_round_trip():
    assert parse_mapping(_doc()).to_dict() == _doc()


def test_save_load_round_trip_and_mode(tmp_path):
    path = str(tmp_path / "mapping.json")
    m = parse_mapping(_doc()).with_entry(
        MappingEntry(SERVER, "carol", "carol", "2025-03-01T00:00:00Z", "rods")
    )
    save_mapping(path, m)
    assert load_mapping(path) == m
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(str(tmp_path)) == ["mapping.json"]  # no temp file left behind
    # overwrite atomically: a new inode replaces the old file
    ino = os.stat(path).st_ino
    save_mapping(path, m.without(SERVER, "carol"))
    assert os.stat(path).st_ino != ino
    assert load_mapping(path).lookup(SERVER, "carol") is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_save_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = str(tmp_path / "mapping.json")
    save_mapping(path, parse_mapping(_doc()))
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_mapping(path, UserMapping())
    assert open(path, "rb").read() == before
    assert os.listdir(str(tmp_path)) == ["mapping.json"]


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "mapping.json"
    missing = str(tmp_path / "absent.json")
    with pytest.raises(MappingError, match="absent.json: the mapping file does not exist"):
        load_mapping(missing)
    assert len(load_mapping(missing, missing_ok=True)) == 0
    path.write_text('{"mapping_version": 1, "users": [], "users": []}')
    with pytest.raises(MappingError, match="mapping.json: the mapping has a duplicate key 'users'"):
        load_mapping(str(path))
    d = _doc()
    d["users"].append(dict(d["users"][0]))
    path.write_text(json.dumps(d))
    with pytest.raises(MappingError) as exc:
        load_mapping(str(path))
    assert exc.value.errors == [
        str(path) + ": mapping.users[2]: duplicate entry for omero_server 'omero.example.org:4064' "
        "and omero_user 'alice' (already at mapping.users[0])"
    ]
