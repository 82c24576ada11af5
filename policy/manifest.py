"""The drop manifest: parse and validate what OMERO wrote, or build one.

``parse_manifest`` is the only way untrusted manifest bytes become a
``Manifest``. It checks, in this order: size, UTF-8, JSON syntax (with line and
column), duplicate keys, NaN/Infinity, nesting depth, top-level object, the
JSON Schema (schemas/manifest-v1.schema.json) and the rules a schema cannot
express (a real calendar date, archive name vs format, drop id vs collection).
Every failure is a ``ManifestError`` whose message a person can act on.
"""

from __future__ import annotations

import datetime
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from policy.schemas import JsonError, SchemaError, check_strings, loads_strict, summarize, validate

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
DEFAULT_MAX_BYTES = 65536
MAX_DEPTH = 16  # a valid manifest nests 5 levels
OBJECT_TYPES: Tuple[str, ...] = ("Project", "Dataset", "Image", "Screen", "Plate")
ARCHIVE_FORMATS: Tuple[str, ...] = ("tar", "tar.gz", "zip")
# File name endings accepted for each archive format (lower-case comparison).
ARCHIVE_SUFFIXES: Dict[str, Tuple[str, ...]] = {
    "tar": (".tar",),
    "tar.gz": (".tar.gz", ".tgz"),
    "zip": (".zip",),
}


class ManifestError(ValueError):
    """The manifest is unusable; ``errors`` lists the individual problems."""

    def __init__(self, message: str, errors: Optional[Sequence[str]] = None) -> None:
        self.errors: List[str] = list(errors) if errors else [message]
        super().__init__(message)


@dataclass(frozen=True)
class Who:
    omero_user: str
    omero_user_id: int
    omero_group: str
    omero_server: str
    omero_group_id: Optional[int] = None
    email: Optional[str] = None


@dataclass(frozen=True)
class ObjectRef:
    type: str
    ids: Tuple[int, ...]


@dataclass(frozen=True)
class ArchiveInfo:
    name: str
    size: int
    sha256: str
    format: str
    packer_name: str
    packer_version: str


@dataclass(frozen=True)
class Manifest:
    drop_id: str
    created: str
    who: Who
    objects: Tuple[ObjectRef, ...]
    archive: ArchiveInfo
    label: Optional[str]
    raw: Dict[str, Any] = field(compare=False, hash=False, repr=False)


# ------------------------------------------------------------------- parsing


def parse_manifest(
    data: Union[bytes, bytearray, memoryview, str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    expected_drop_id: Optional[str] = None,
) -> Manifest:
    """Parse and fully validate manifest bytes; raise ``ManifestError``.

    ``expected_drop_id``: the name of the drop collection the manifest was
    found in; when given, ``drop_id`` must equal it.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    size = len(data)
    if size > max_bytes:
        raise ManifestError(f"manifest is {size} bytes, the limit is {max_bytes}")
    try:
        doc = loads_strict(data, max_depth=MAX_DEPTH)
    except JsonError as e:
        raise ManifestError(f"manifest {e}") from None
    return manifest_from_dict(doc, expected_drop_id=expected_drop_id)


def manifest_from_dict(doc: Any, expected_drop_id: Optional[str] = None) -> Manifest:
    """Validate an already decoded manifest document; raise ``ManifestError``."""
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest must be a JSON object, not {_json_type(doc)}")
    try:
        check_strings(doc)
    except JsonError as e:
        raise ManifestError(f"manifest {e}") from None
    version = doc.get("manifest_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        # docs/schemas.md "Versioning": a newer OMERO side may write a version this policy predates
        raise ManifestError(f"manifest.manifest_version: {version} is newer than this policy reads (at most "
                            f"{MANIFEST_VERSION}); upgrade the policy on the iRODS server (docs/install.md, step 11), "
                            "then release the drop")
    errors = validate(doc, "manifest", "manifest")
    if errors:
        raise ManifestError(str(SchemaError(errors)), errors)
    errors = _rule_errors(doc, expected_drop_id)
    if errors:
        raise ManifestError(summarize(errors), errors)

    who = doc["who"]
    archive = doc["archive"]
    return Manifest(
        drop_id=doc["drop_id"],
        created=doc["created"],
        who=Who(
            omero_user=who["omero_user"],
            omero_user_id=int(who["omero_user_id"]),
            omero_group=who["omero_group"],
            omero_server=who["omero_server"],
            omero_group_id=int(who["omero_group_id"]) if "omero_group_id" in who else None,
            email=who.get("email"),
        ),
        objects=tuple(
            ObjectRef(type=o["type"], ids=tuple(int(i) for i in o["ids"])) for o in doc["what"]["objects"]
        ),
        archive=ArchiveInfo(
            name=archive["name"],
            size=int(archive["size"]),
            sha256=archive["sha256"],
            format=archive["format"],
            packer_name=archive["packer"]["name"],
            packer_version=archive["packer"]["version"],
        ),
        label=doc.get("label"),
        raw=doc,
    )


def _rule_errors(doc: Dict[str, Any], expected_drop_id: Optional[str]) -> List[str]:
    errors: List[str] = []
    if expected_drop_id is not None and doc["drop_id"] != expected_drop_id:
        errors.append(
            "manifest.drop_id: {!r} is not the name of the drop collection {!r}".format(
                doc["drop_id"], expected_drop_id
            )
        )
    if parse_utc(doc["created"]) is None:
        errors.append("manifest.created: {!r} is not a valid date and time".format(doc["created"]))
    archive = doc["archive"]
    name, fmt = archive["name"], archive["format"]
    if name == MANIFEST_NAME:
        errors.append(f"manifest.archive.name: the archive may not be called {MANIFEST_NAME!r}")
    suffixes = ARCHIVE_SUFFIXES[fmt]
    if not name.lower().endswith(suffixes):
        errors.append(
            "manifest.archive.name: {!r} does not end with {} as format {!r} requires".format(
                name, " or ".join(repr(s) for s in suffixes), fmt
            )
        )
    return errors


def parse_utc(text: str) -> Optional[datetime.datetime]:
    """``2025-01-14T10:15:00[.ffffff]Z`` -> aware datetime, or None if not a real date."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    body = text[:-1]
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in body else "%Y-%m-%dT%H:%M:%S"
    try:
        return datetime.datetime.strptime(body, fmt).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


# ------------------------------------------------------------------ building


def utc_now() -> str:
    """Current UTC time in the manifest's form, e.g. ``2025-01-14T10:15:00Z``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_drop_id() -> str:
    """A fresh, valid, practically unique drop id, e.g. ``20250114T101500Z-3f9a1c2b7d4e``."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(6)}"


ObjectsArg = Union[Mapping[str, Iterable[int]], Iterable[Tuple[str, Iterable[int]]]]


def build_manifest(
    *,
    drop_id: str,
    omero_user: str,
    omero_user_id: int,
    omero_group: str,
    omero_server: str,
    objects: ObjectsArg,
    archive_name: str,
    archive_size: int,
    archive_sha256: str,
    archive_format: str,
    packer_version: str,
    packer_name: str = "omero-cli-transfer",
    created: Optional[str] = None,
    label: Optional[str] = None,
    omero_group_id: Optional[int] = None,
    email: Optional[str] = None,
) -> Dict[str, Any]:
    """Build a manifest dict and validate it exactly as the server will.

    ``objects``: ``{"Image": [1, 2]}`` or ``[("Image", [1, 2]), ...]``.
    ``created`` defaults to now. Optional fields left as None are omitted.
    Raises ``ManifestError`` if the result would be refused by the server.
    """
    pairs = objects.items() if isinstance(objects, Mapping) else objects
    who: Dict[str, Any] = {
        "omero_user": omero_user,
        "omero_user_id": omero_user_id,
        "omero_group": omero_group,
    }
    if omero_group_id is not None:
        who["omero_group_id"] = omero_group_id
    if email is not None:
        who["email"] = email
    who["omero_server"] = omero_server
    doc: Dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "drop_id": drop_id,
        "created": created if created is not None else utc_now(),
        "who": who,
        "what": {"objects": [{"type": t, "ids": list(ids)} for t, ids in pairs]},
        "archive": {
            "name": archive_name,
            "size": archive_size,
            "sha256": archive_sha256,
            "format": archive_format,
            "packer": {"name": packer_name, "version": packer_version},
        },
    }
    if label is not None:
        doc["label"] = label
    manifest_from_dict(doc)
    return doc


def manifest_to_json(m: Union[Manifest, Mapping[str, Any]]) -> bytes:
    """Serialise a ``Manifest`` (its ``raw`` document) or a manifest dict as UTF-8 JSON."""
    doc = m.raw if isinstance(m, Manifest) else dict(m)
    return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
