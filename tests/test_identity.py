"""policy.identity: OMERO user@server -> iRODS user, with explicit, actionable refusals."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest

from policy.identity import IdentityDecision, resolve_identity
from policy.mapping import MappingEntry, UserMapping

SERVER = "omero.example.org:4064"
SVC = "omero-svc"

USERS: Dict[str, str] = {"alice": "rodsuser", "bob": "rodsuser", "rods": "rodsadmin", "lab": "rodsgroup",
                         SVC: "rodsuser", "gadm": "groupadmin"}

MAPPING = UserMapping([
    MappingEntry(SERVER, "jdoe", "alice"),
    MappingEntry(SERVER, "svcmapped", SVC),
    MappingEntry(SERVER, "ghost", "nobody"),
    MappingEntry(SERVER, "root", "rods"),
    MappingEntry(SERVER, "team", "lab"),
    MappingEntry(SERVER, "gadmin", "gadm"),
    MappingEntry("other.example.org", "jdoe", "bob", "2025-01-14T10:00:00Z", "rods"),
])


class FakeUserType:
    def __init__(self) -> None:
        self.calls: List[str] = []

    def __call__(self, name: str) -> Optional[str]:
        self.calls.append(name)
        return USERS.get(name)


def _resolve(omero_user: str, server: str = SERVER) -> IdentityDecision:
    return resolve_identity(MAPPING, server, omero_user, SVC, FakeUserType())


def test_mapped_rodsuser_is_ok():
    d = _resolve("jdoe")
    assert d.ok and d.irods_user == "alice" and d.refusal is None and d.rule is None


def test_server_is_part_of_the_key():
    assert _resolve("jdoe", "other.example.org").irods_user == "bob"
    assert not _resolve("jdoe", "OMERO.example.org:4064").ok  # exact, case-sensitive


def test_groupadmin_is_an_ordinary_user():
    assert _resolve("gadmin").irods_user == "gadm"


@pytest.mark.parametrize("omero_user, rule, hint", [
    ("stranger", "unmapped", "omero-snapshots enrol <irods_user> --omero-user stranger --omero-server " + SERVER),
    ("svcmapped", "mapped_to_service_account", "must map it to the researcher's own"),
    ("ghost", "mapped_user_missing", "must create it or fix the mapping"),
    ("root", "mapped_to_rodsadmin", "must map it to the researcher's own"),
    ("team", "mapped_to_group", "must map it to the researcher's own"),
])
def test_refusals_name_user_and_say_what_to_do(omero_user, rule, hint):
    d = _resolve(omero_user)
    assert not d.ok
    assert d.irods_user is None
    assert d.rule == rule
    assert "OMERO user '{}' on server '{}'".format(omero_user, SERVER) in d.refusal
    assert hint in d.refusal


def test_refusals_name_the_offending_irods_account():
    assert "'nobody'" in _resolve("ghost").refusal
    assert "'rods'" in _resolve("root").refusal and "rodsadmin" in _resolve("root").refusal
    assert "'lab'" in _resolve("team").refusal and "group" in _resolve("team").refusal
    assert "'{}'".format(SVC) in _resolve("svcmapped").refusal


def test_unmapped_user_never_asks_the_catalog():
    ut = FakeUserType()
    resolve_identity(MAPPING, SERVER, "stranger", SVC, ut)
    assert ut.calls == []


def test_service_account_refused_before_type_lookup():
    # the service account is a rodsuser, so only the explicit check refuses it
    ut = FakeUserType()
    d = resolve_identity(MAPPING, SERVER, "svcmapped", SVC, ut)
    assert d.rule == "mapped_to_service_account" and ut.calls == []


def test_service_account_name_comes_from_config():
    d = resolve_identity(MAPPING, SERVER, "jdoe", "alice", FakeUserType())
    assert d.rule == "mapped_to_service_account"


def test_decision_ok_requires_user_and_no_refusal():
    assert IdentityDecision("alice").ok
    assert not IdentityDecision(None).ok
    assert not IdentityDecision("alice", "refused", "x").ok
