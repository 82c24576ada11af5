"""policy.config: defaults, template rules, zone rules, loading, the PEP fast path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from policy import schemas as S
from policy.config import (
    ConfigError,
    Limits,
    PolicyConfig,
    UnpackSettings,
    default_config_dict,
    load_config,
    minimal_read,
    parse_config,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _minimal() -> dict:
    return {
        "config_version": 1,
        "zone": "tempZone",
        "service_account": "omero-svc",
        "landing_collection": "/tempZone/home/omero-svc/landing",
        "snapshot_root_template": "/{zone}/home/{irods_user}/omero-snapshots",
    }


def _errors(d: dict) -> list:
    with pytest.raises(ConfigError) as exc:
        parse_config(d, None)
    return exc.value.errors


def test_defaults_applied():
    c = parse_config(_minimal(), "/etc/irods/omero")
    assert c == PolicyConfig(
        zone="tempZone",
        service_account="omero-svc",
        landing_collection="/tempZone/home/omero-svc/landing",
        snapshot_root_template="/{zone}/home/{irods_user}/omero-snapshots",
        naming_template="{utc}_{omero_user}_{label}_{drop_short}",
        python_instance="irods_rule_engine_plugin-python-instance",
        delay_seconds=1,
        mapping_file="/etc/irods/omero/mapping.json",
        limits=Limits(65536, 1099511627776, 48, 100000, 1099511627776, 200.0, 1024, 255),
        unpack=UnpackSettings(True, False, "auto", ""),
        source_dir="/etc/irods/omero",
    )
    assert c.quarantine_collection == "/tempZone/home/omero-svc/landing/quarantine"
    assert c.snapshot_root_for("alice") == "/tempZone/home/alice/omero-snapshots"


def test_default_config_dict_is_complete_and_matches_defaults():
    d = default_config_dict()
    assert S.validate(d, "config", "config") == []
    assert parse_config(d, "/x") == parse_config(_minimal(), "/x")
    assert d == S.load_schema("config")["examples"][1]
    d2 = default_config_dict(zone="z1", service_account="svc")
    assert d2["landing_collection"] == "/z1/home/svc/landing"
    assert parse_config(d2, None).mapping_file is None  # relative, no source dir


def test_partial_sections_and_absolute_mapping_file():
    d = _minimal()
    d["limits"] = {"max_members": 5, "max_expansion_ratio": 10}
    d["unpack"] = {"fast_path": "never"}
    d["mapping_file"] = "/etc/omero-map/../mapping.json"
    c = parse_config(d, "/somewhere")
    assert c.limits.max_members == 5 and c.limits.label_max_chars == 48
    assert c.limits.max_expansion_ratio == 10.0 and isinstance(c.limits.max_expansion_ratio, float)
    assert c.unpack == UnpackSettings(fast_path="never")
    assert c.mapping_file == "/etc/mapping.json"


def test_bad_naming_placeholder_named():
    d = _minimal()
    d["naming_template"] = "{utc}_{user}_{drop_short}"
    assert _errors(d) == [
        "config.naming_template: unknown placeholder {user} "
        "(allowed: {utc}, {omero_user}, {label}, {drop_short})"
    ]


def test_bad_root_placeholder_named():
    d = _minimal()
    d["snapshot_root_template"] = "/{zone}/home/{omero_user}/snaps"
    assert _errors(d) == [
        "config.snapshot_root_template: unknown placeholder {omero_user} (allowed: {zone}, {irods_user})"
    ]


@pytest.mark.parametrize("template", ["{utc}_{label}", "{utc}_{omero_user}_{label}"])
def test_drop_short_required(template):
    d = _minimal()
    d["naming_template"] = template
    assert _errors(d) == [
        "config.naming_template: must contain {drop_short} so that snapshot names stay unique"
    ]


@pytest.mark.parametrize(
    "template, fragment",
    [
        ("{drop_short!r}", "must be a bare name"),
        ("{drop_short:>20}", "must be a bare name"),
        ("{drop_short}}", "unbalanced brace"),
        ("{{x}}{drop_short}", "literal braces"),
        ("{drop_short.__class__}", "unknown placeholder {drop_short.__class__}"),
        ("{}{drop_short}", "unknown placeholder {}"),
    ],
)
def test_other_template_abuse(template, fragment):
    d = _minimal()
    d["naming_template"] = template
    errs = _errors(d)
    assert any(fragment in e for e in errs), errs


def test_naming_template_may_not_contain_slash():
    d = _minimal()
    d["naming_template"] = "{utc}/{drop_short}"
    (err,) = _errors(d)
    assert err.startswith("config.naming_template: '{utc}/{drop_short}' does not match ")


def test_landing_outside_zone_refused():
    d = _minimal()
    d["landing_collection"] = "/otherZone/home/omero-svc/landing"
    assert _errors(d) == [
        "config.landing_collection: '/otherZone/home/omero-svc/landing' is not inside the zone: "
        "it must start with '/tempZone/'"
    ]


@pytest.mark.parametrize(
    "landing",
    ["/tempZone/home//landing", "/tempZone/home/../landing", "/tempZone/./landing", "/tempZone/home/x/.."],
)
def test_landing_with_bad_components_refused(landing):
    d = _minimal()
    d["landing_collection"] = landing
    assert _errors(d) == [
        f"config.landing_collection: {landing!r} must not contain empty, '.' or '..' path components"
    ]


def test_landing_trailing_slash_refused_by_schema():
    d = _minimal()
    d["landing_collection"] = "/tempZone/home/omero-svc/landing/"
    (err,) = _errors(d)
    assert (
        err == "config.landing_collection: '/tempZone/home/omero-svc/landing/' does not match '^/[^/].*[^/]$'"
    )


@pytest.mark.parametrize("tpl", ["/home/{irods_user}", "/otherZone/home/{irods_user}", "{zone}/x"])
def test_root_template_must_start_in_zone(tpl):
    d = _minimal()
    d["snapshot_root_template"] = tpl
    errs = _errors(d)
    assert any("must start with '/{zone}/' or '/tempZone/'" in e or "does not match" in e for e in errs), errs


def test_root_template_with_literal_zone_accepted():
    d = _minimal()
    d["snapshot_root_template"] = "/tempZone/projects/{irods_user}"
    assert parse_config(d, None).snapshot_root_for("bob") == "/tempZone/projects/bob"


def test_root_inside_landing_refused():
    d = _minimal()
    d["snapshot_root_template"] = "/{zone}/home/omero-svc/landing/{irods_user}"
    (err,) = _errors(d)
    assert err.startswith("config.snapshot_root_template: snapshot roots (")


def test_schema_errors_reported_with_config_root():
    d = _minimal()
    d["delay_seconds"] = 99999
    d["surprise"] = 1
    d["unpack"] = {"fast_path": "always"}
    assert _errors(d) == [
        "config: Additional properties are not allowed ('surprise' was unexpected)",
        "config.delay_seconds: 99999 is greater than the maximum of 3600",
        "config.unpack.fast_path: 'always' is not one of ['auto', 'never']",
    ]


def test_python_instance_cannot_inject():
    d = _minimal()
    d["python_instance"] = "x</INST_NAME><EF>1s"
    (err,) = _errors(d)
    assert err.startswith("config.python_instance: ")


def test_non_object_refused():
    with pytest.raises(ConfigError, match="config must be a JSON object, not list"):
        parse_config([], None)


# ------------------------------------------------------------------ files


def _write(tmp_path, doc, name="config.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(p)


def test_load_config_resolves_mapping_next_to_file(tmp_path):
    path = _write(tmp_path, _minimal())
    c = load_config(path)
    assert c.mapping_file == str(tmp_path / "mapping.json")
    assert c.source_dir == str(tmp_path)


def test_load_config_errors_name_the_file(tmp_path):
    d = _minimal()
    d["naming_template"] = "{bad}"
    path = _write(tmp_path, d)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(path + ": config.naming_template: unknown placeholder {bad}")
    assert all(e.startswith(path + ": ") for e in exc.value.errors)

    bad = _write(tmp_path, '{"zone": "a", "zone": "b"}', "dup.json")
    with pytest.raises(ConfigError, match="dup.json: the configuration has a duplicate key 'zone'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.json: cannot read the configuration"):
        load_config(str(tmp_path / "missing.json"))


def test_minimal_read(tmp_path):
    path = _write(tmp_path, _minimal())
    assert minimal_read(path) == ("/tempZone/home/omero-svc/landing", "omero-svc")
    # the cache notices a changed file
    d = _minimal()
    d["landing_collection"] = "/tempZone/home/omero-svc/landing-two"
    _write(tmp_path, d)
    assert minimal_read(path) == ("/tempZone/home/omero-svc/landing-two", "omero-svc")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{}", "landing_collection is missing"),
        ('{"landing_collection": "/z/l"}', "service_account is missing"),
        ('{"landing_collection": "relative", "service_account": "s"}', "landing_collection is missing"),
        ('{"landing_collection": "/z/l/", "service_account": "s"}', "landing_collection is missing"),
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
    ],
)
def test_minimal_read_refuses_incomplete(tmp_path, content, fragment):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError, match=fragment):
        minimal_read(path)


def test_minimal_read_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        minimal_read(str(tmp_path / "nope.json"))


def test_minimal_read_does_not_import_jsonschema(tmp_path):
    path = _write(tmp_path, _minimal())
    code = (
        "import sys\n"
        "import policy.config\n"
        f"assert policy.config.minimal_read({path!r}) == ('/tempZone/home/omero-svc/landing', 'omero-svc')\n"
        "assert 'jsonschema' not in sys.modules, 'jsonschema was imported'\n"
        "print('ok')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
