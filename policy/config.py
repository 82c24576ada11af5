"""The iRODS administrator's policy configuration (schemas/config-v1.schema.json).

``load_config``/``parse_config`` validate the whole file and apply defaults;
``minimal_read`` is the cheap path for the upload PEP, which runs on every
upload on the server: it uses only ``json`` (never jsonschema) and caches the
result until the file changes.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from policy.schemas import JsonError, loads_strict, summarize, validate

CONFIG_VERSION = 1
CONFIG_MAX_BYTES = 1024 * 1024

ROOT_PLACEHOLDERS: Tuple[str, ...] = ("zone", "irods_user")
NAMING_PLACEHOLDERS: Tuple[str, ...] = ("utc", "omero_user", "label", "drop_short")
REQUIRED_NAMING_PLACEHOLDERS: Tuple[str, ...] = ("drop_short",)

DEFAULT_NAMING_TEMPLATE = "{utc}_{omero_user}_{label}_{drop_short}"
DEFAULT_ROOT_TEMPLATE = "/{zone}/home/{irods_user}/omero-snapshots"
DEFAULT_PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
DEFAULT_DELAY_SECONDS = 1
DEFAULT_MAPPING_FILE = "mapping.json"
QUARANTINE_NAME = "quarantine"


class ConfigError(ValueError):
    """The configuration is unusable; ``errors`` lists the individual problems."""

    def __init__(self, message: str, errors: Optional[Sequence[str]] = None) -> None:
        self.errors: List[str] = list(errors) if errors else [message]
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    manifest_max_bytes: int = 65536
    archive_max_bytes: int = 1099511627776
    label_max_chars: int = 48
    max_members: int = 100000
    max_total_bytes: int = 1099511627776
    max_expansion_ratio: float = 200.0
    max_member_path_bytes: int = 1024
    max_member_name_bytes: int = 255
    lock_seconds: int = 120  # a drop's lease: a run not heard of for this long is dead (policy/drop_lock.py)
    lock_refresh_seconds: int = 30  # how often the running drop's heartbeat pushes its lease forward
    lock_cover_mib_per_second: float = 20.0  # slowest checksum/extraction rate: sizes a microservice step's lease


@dataclass(frozen=True)
class UnpackSettings:
    enabled: bool = True
    case_insensitive_duplicates: bool = False
    fast_path: str = "auto"  # "auto" or "never"
    resource: str = ""  # "" = the server's default resource
    parallel_writers: int = 4  # connections the streaming unpack writes (and checksums) over at once


@dataclass(frozen=True)
class RetrySettings:
    """How the delay server heals a drop by itself (docs/self-healing.md).

    backoff_seconds[i] is the wait before attempt i+2, so a drop gets len(backoff_seconds)+1 attempts
    before a transient failure ends it `failed`; the sweep finds drops nothing is scheduled for.
    """

    backoff_seconds: Tuple[int, ...] = (30, 120, 600, 3600)
    sweep_seconds: int = 3600
    sweep_grace_seconds: int = 900
    # Attempts for a failure that is neither transient nor a refusal (an iRODS answer a rerun usually meets
    # again, a bug): one more attempt after the first backoff heals what happened once (docs/self-healing.md).
    error_attempts: int = 2

    @property
    def max_attempts(self) -> int:
        return len(self.backoff_seconds) + 1


@dataclass(frozen=True)
class FixitySettings:
    """The periodic fixity audit (policy/fixity.py): how often it runs and how much it may read per run,
    so re-verifying years of snapshots never saturates the zone's disks."""

    enabled: bool = True
    interval_seconds: int = 86400
    bytes_per_run: int = 10 * 1024 ** 3


@dataclass(frozen=True)
class PolicyConfig:
    zone: str
    service_account: str
    landing_collection: str
    snapshot_root_template: str
    naming_template: str
    python_instance: str
    delay_seconds: int
    mapping_file: Optional[str]  # absolute path; None if relative and no source_dir
    limits: Limits
    unpack: UnpackSettings
    source_dir: Optional[str]
    retry: RetrySettings = RetrySettings()
    fixity: FixitySettings = FixitySettings()

    @property
    def quarantine_collection(self) -> str:
        return self.landing_collection + "/" + QUARANTINE_NAME

    def snapshot_root_for(self, irods_user: str) -> str:
        """The snapshot root of ``irods_user`` (plain substitution, no str.format)."""
        return self.snapshot_root_template.replace("{zone}", self.zone).replace("{irods_user}", irods_user)


# ------------------------------------------------------------------ defaults


def default_config_dict(zone: str = "tempZone", service_account: str = "omero-svc") -> Dict[str, Any]:
    """A complete, valid configuration with every optional field at its default."""
    limits, unpack, retry = Limits(), UnpackSettings(), RetrySettings()
    return {
        "config_version": CONFIG_VERSION,
        "zone": zone,
        "service_account": service_account,
        "landing_collection": f"/{zone}/home/{service_account}/landing",
        "snapshot_root_template": DEFAULT_ROOT_TEMPLATE,
        "naming_template": DEFAULT_NAMING_TEMPLATE,
        "python_instance": DEFAULT_PYTHON_INSTANCE,
        "delay_seconds": DEFAULT_DELAY_SECONDS,
        "mapping_file": DEFAULT_MAPPING_FILE,
        "limits": {
            "manifest_max_bytes": limits.manifest_max_bytes,
            "archive_max_bytes": limits.archive_max_bytes,
            "label_max_chars": limits.label_max_chars,
            "max_members": limits.max_members,
            "max_total_bytes": limits.max_total_bytes,
            "max_expansion_ratio": limits.max_expansion_ratio,
            "max_member_path_bytes": limits.max_member_path_bytes,
            "max_member_name_bytes": limits.max_member_name_bytes,
            "lock_seconds": limits.lock_seconds,
            "lock_refresh_seconds": limits.lock_refresh_seconds,
            "lock_cover_mib_per_second": limits.lock_cover_mib_per_second,
        },
        "unpack": {
            "enabled": unpack.enabled,
            "case_insensitive_duplicates": unpack.case_insensitive_duplicates,
            "fast_path": unpack.fast_path,
            "resource": unpack.resource,
            "parallel_writers": unpack.parallel_writers,
        },
        "retry": {
            "backoff_seconds": list(retry.backoff_seconds),
            "sweep_seconds": retry.sweep_seconds,
            "sweep_grace_seconds": retry.sweep_grace_seconds,
            "error_attempts": retry.error_attempts,
        },
        "fixity": {
            "enabled": FixitySettings.enabled,
            "interval_seconds": FixitySettings.interval_seconds,
            "bytes_per_run": FixitySettings.bytes_per_run,
        },
    }


# ------------------------------------------------------------------- checks


def template_errors(
    template: str,
    field_name: str,
    allowed: Sequence[str],
    required: Sequence[str] = (),
) -> List[str]:
    """Problems with the placeholders of ``template`` (empty list = fine)."""
    where = "config." + field_name
    allowed_text = ", ".join("{" + a + "}" for a in allowed)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        return [f"{where}: unbalanced brace in {template!r}: {e}"]
    errors: List[str] = []
    seen = set()
    for literal, name, spec, conversion in parsed:
        if "{" in literal or "}" in literal:
            errors.append(f"{where}: literal braces ('{{{{', '}}}}') are not allowed in {template!r}")
        if name is None:
            continue
        shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if name not in allowed:
            errors.append(f"{where}: unknown placeholder {shown} (allowed: {allowed_text})")
        elif spec or conversion:
            errors.append(
                f"{where}: placeholder {shown} must be a bare name, without conversion or format spec"
            )
        seen.add(name)
    for name in required:
        if name not in seen:
            errors.append(f"{where}: must contain {{{name}}} so that snapshot names stay unique")
    return errors


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _bad_components(path: str) -> bool:
    parts = path.split("/")[1:]
    return any(p in ("", ".", "..") for p in parts)


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


def _semantic_errors(zone: str, landing: str, root_template: str) -> List[str]:
    errors: List[str] = []
    if not landing.startswith(f"/{zone}/"):
        errors.append(
            f"config.landing_collection: {landing!r} is not inside the zone: it must start with '/{zone}/'"
        )
    if _bad_components(landing):
        errors.append(
            f"config.landing_collection: {landing!r} must not contain empty, '.' or '..' path components"
        )
    if _has_control(landing):
        errors.append(f"config.landing_collection: {landing!r} must not contain control characters")

    if not (root_template.startswith("/{zone}/") or root_template.startswith(f"/{zone}/")):
        errors.append(
            f"config.snapshot_root_template: {root_template!r} must start with '/{{zone}}/' or '/{zone}/'"
        )
    if _bad_components(root_template):
        errors.append(
            f"config.snapshot_root_template: {root_template!r} must not contain empty, '.' or '..' "
            "path components (nor end with '/')"
        )
    if not errors:
        # A snapshot root inside the landing collection would feed snapshots back to the policy.
        sample = root_template.replace("{zone}", zone).replace("{irods_user}", "some-user")
        if _inside(sample, landing) or ("{irods_user}" not in root_template and _inside(landing, sample)):
            errors.append(
                f"config.snapshot_root_template: snapshot roots ({sample!r}) and the landing "
                f"collection ({landing!r}) must not contain one another"
            )
    return errors


# ------------------------------------------------------------------ parsing


def parse_config(data: Any, source_dir: Optional[str]) -> PolicyConfig:
    """Validate a configuration document, apply defaults; raise ``ConfigError``.

    ``source_dir`` is the directory of the configuration file; a relative
    ``mapping_file`` is resolved against it (None leaves such a path unresolved).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a JSON object, not {type(data).__name__}")

    # Placeholder checks first: their messages name the offending placeholder,
    # and they replace the schema's generic pattern error for the same field.
    code_errors: Dict[str, List[str]] = {}
    for field_name, allowed, required in (
        ("snapshot_root_template", ROOT_PLACEHOLDERS, ()),
        ("naming_template", NAMING_PLACEHOLDERS, REQUIRED_NAMING_PLACEHOLDERS),
    ):
        value = data.get(field_name)
        if isinstance(value, str):
            errs = template_errors(value, field_name, allowed, required)
            if errs:
                code_errors[field_name] = errs
    schema_errors = [
        e
        for e in validate(data, "config", "config")
        if not any(e.startswith(f"config.{f}: ") and "does not match" in e for f in code_errors)
    ]
    errors = [e for errs in code_errors.values() for e in errs] + schema_errors
    if errors:
        raise ConfigError(summarize(errors), errors)

    zone = data["zone"]
    landing = data["landing_collection"]
    root_template = data["snapshot_root_template"]
    errors = _semantic_errors(zone, landing, root_template)
    if errors:
        raise ConfigError(summarize(errors), errors)

    d_limits, d_unpack = Limits(), UnpackSettings()
    lim = data.get("limits", {})
    unp = data.get("unpack", {})
    limits = Limits(
        manifest_max_bytes=int(lim.get("manifest_max_bytes", d_limits.manifest_max_bytes)),
        archive_max_bytes=int(lim.get("archive_max_bytes", d_limits.archive_max_bytes)),
        label_max_chars=int(lim.get("label_max_chars", d_limits.label_max_chars)),
        max_members=int(lim.get("max_members", d_limits.max_members)),
        max_total_bytes=int(lim.get("max_total_bytes", d_limits.max_total_bytes)),
        max_expansion_ratio=float(lim.get("max_expansion_ratio", d_limits.max_expansion_ratio)),
        max_member_path_bytes=int(lim.get("max_member_path_bytes", d_limits.max_member_path_bytes)),
        max_member_name_bytes=int(lim.get("max_member_name_bytes", d_limits.max_member_name_bytes)),
        lock_seconds=int(lim.get("lock_seconds", d_limits.lock_seconds)),
        lock_refresh_seconds=int(lim.get("lock_refresh_seconds", d_limits.lock_refresh_seconds)),
        lock_cover_mib_per_second=float(lim.get("lock_cover_mib_per_second", d_limits.lock_cover_mib_per_second)),
    )
    if limits.lock_refresh_seconds * 2 > limits.lock_seconds:
        msg = ("config.limits.lock_refresh_seconds: {} is more than half of limits.lock_seconds ({}): a lease must "
               "be refreshed at least twice before it ends, or a live run's lock could be taken over; lower "
               "lock_refresh_seconds or raise lock_seconds".format(limits.lock_refresh_seconds, limits.lock_seconds))
        raise ConfigError(msg, [msg])
    unpack = UnpackSettings(
        enabled=bool(unp.get("enabled", d_unpack.enabled)),
        case_insensitive_duplicates=bool(
            unp.get("case_insensitive_duplicates", d_unpack.case_insensitive_duplicates)
        ),
        fast_path=str(unp.get("fast_path", d_unpack.fast_path)),
        resource=str(unp.get("resource", d_unpack.resource)),
        parallel_writers=int(unp.get("parallel_writers", d_unpack.parallel_writers)),
    )

    d_retry = RetrySettings()
    ret = data.get("retry", {})
    retry = RetrySettings(
        backoff_seconds=tuple(int(x) for x in ret.get("backoff_seconds", d_retry.backoff_seconds)),
        sweep_seconds=int(ret.get("sweep_seconds", d_retry.sweep_seconds)),
        sweep_grace_seconds=int(ret.get("sweep_grace_seconds", d_retry.sweep_grace_seconds)),
        error_attempts=int(ret.get("error_attempts", d_retry.error_attempts)),
    )

    mapping_name = data.get("mapping_file", DEFAULT_MAPPING_FILE)
    abs_source = os.path.abspath(source_dir) if source_dir is not None else None
    mapping_file: Optional[str]
    if os.path.isabs(mapping_name):
        mapping_file = os.path.normpath(mapping_name)
    elif abs_source is not None:
        mapping_file = os.path.normpath(os.path.join(abs_source, mapping_name))
    else:
        mapping_file = None

    return PolicyConfig(
        zone=zone,
        service_account=data["service_account"],
        landing_collection=landing,
        snapshot_root_template=root_template,
        naming_template=data.get("naming_template", DEFAULT_NAMING_TEMPLATE),
        python_instance=data.get("python_instance", DEFAULT_PYTHON_INSTANCE),
        delay_seconds=int(data.get("delay_seconds", DEFAULT_DELAY_SECONDS)),
        mapping_file=mapping_file,
        limits=limits,
        unpack=unpack,
        source_dir=abs_source,
        retry=retry,
        fixity=FixitySettings(
            enabled=bool(data.get("fixity", {}).get("enabled", FixitySettings.enabled)),
            interval_seconds=int(data.get("fixity", {}).get("interval_seconds", FixitySettings.interval_seconds)),
            bytes_per_run=int(data.get("fixity", {}).get("bytes_per_run", FixitySettings.bytes_per_run)),
        ),
    )


def _read_bounded(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror or e}") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: the configuration is larger than {limit} bytes")
    return data


_loaded_cache: Dict[str, Tuple[Tuple[int, int, int], PolicyConfig]] = {}


def load_config(path: str) -> PolicyConfig:
    """Read, validate and complete the configuration file at ``path``; errors name the file.

    Every delayed run (retries, the sweep) loads it, and full validation costs a few milliseconds: a
    valid result is kept (PolicyConfig is immutable) until the file's inode, size or mtime changes.
    """
    try:
        st = os.stat(path)
        stamp: Optional[Tuple[int, int, int]] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    hit = _loaded_cache.get(path)
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1]
    config = _load_config(path)
    if stamp is not None:
        _loaded_cache[path] = (stamp, config)
    return config


def _load_config(path: str) -> PolicyConfig:
    data = _read_bounded(path, CONFIG_MAX_BYTES)
    try:
        doc = loads_strict(data)
    except JsonError as e:
        raise ConfigError(f"{path}: the configuration {e}") from None
    try:
        return parse_config(doc, os.path.dirname(os.path.abspath(path)))
    except ConfigError as e:
        errors = [f"{path}: {x}" for x in e.errors]
        raise ConfigError(f"{path}: {e}", errors) from None


# --------------------------------------------------------- the PEP's fast path

_minimal_cache: Dict[str, Tuple[Tuple[int, int, int], Tuple[str, str]]] = {}


def minimal_read(path: str) -> Tuple[str, str]:
    """``(landing_collection, service_account)`` from the configuration file, cheaply.

    Uses only ``json`` (no jsonschema, no full validation) and caches the
    answer until the file's inode, size or modification time changes. Raises
    ``ConfigError`` when the file is unreadable, not JSON, or either value is
    missing or obviously malformed.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration: {e.strerror or e}") from None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _minimal_cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    data = _read_bounded(path, CONFIG_MAX_BYTES)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: the configuration is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the configuration must be a JSON object")
    landing = doc.get("landing_collection")
    account = doc.get("service_account")
    if (
        not isinstance(landing, str)
        or len(landing) < 2
        or not landing.startswith("/")
        or landing.endswith("/")
    ):
        raise ConfigError(f"{path}: landing_collection is missing or not an absolute collection path")
    if not isinstance(account, str) or not account:
        raise ConfigError(f"{path}: service_account is missing or empty")
    result = (landing, account)
    _minimal_cache[path] = (stamp, result)
    return result
