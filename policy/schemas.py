"""Loading the JSON Schemas and turning validation errors into readable strings.

jsonschema is imported lazily, inside the functions that need it: this module
is importable from the upload PEP path without paying for jsonschema.

Two details differ from a plain ``jsonschema.validate`` call, both on purpose:

- ``pattern`` has ECMA-262 semantics, as JSON Schema specifies: ``$`` matches
  only at the very end of the string. Python's ``re`` also lets ``$`` match
  before a final newline, so ``"abcdefgh\\n"`` would pass ``^[a-z]{8}$``.
- Messages are bounded: a 1 MB string in the input gives a short message.

The module also holds ``loads_strict``, the JSON reader every untrusted or
admin-written document goes through (duplicate keys, NaN/Infinity, huge
numbers, lone surrogates and deep nesting are refused).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema.exceptions import ValidationError

SCHEMA_NAMES: Tuple[str, ...] = ("manifest", "config", "mapping", "omero-zones", "omero-settings")
MAX_MESSAGE_CHARS = 300
SUMMARY_ERRORS = 5
DEFAULT_MAX_DEPTH = 32
_MAX_INT_DIGITS = 20  # 2**63-1 has 19 digits; one more for a sign

_schema_cache: Dict[str, dict] = {}
_validator_cache: Dict[Tuple[str, Optional[str]], Any] = {}


# --------------------------------------------------------------------- errors


class SchemaError(ValueError):
    """A document does not conform to its schema; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: List[str] = list(errors)
        super().__init__(summarize(self.errors))


class JsonError(ValueError):
    """A byte string is not acceptable JSON (see ``loads_strict``).

    The message is a predicate ("is not valid JSON: ...", "has a duplicate key
    'x'; ..."), so callers prefix what was read: ``"manifest " + str(e)``.
    """


def summarize(errors: Sequence[str], limit: int = SUMMARY_ERRORS) -> str:
    """``"e1; e2; ...; e5; and N more"``."""
    shown = list(errors[:limit])
    if len(errors) > limit:
        shown.append(f"and {len(errors) - limit} more")
    return "; ".join(shown)


# -------------------------------------------------------------------- loading


def schema_dir() -> str:
    import schemas  # the installed package holding the JSON files

    return os.path.dirname(os.path.abspath(schemas.__file__))


def schema_path(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise ValueError("unknown schema {!r} (known: {})".format(name, ", ".join(SCHEMA_NAMES)))
    return os.path.join(schema_dir(), f"{name}-v1.schema.json")


def _load_cached(name: str) -> dict:
    schema = _schema_cache.get(name)
    if schema is None:
        with open(schema_path(name), encoding="utf-8") as f:
            schema = json.load(f)
        _schema_cache[name] = schema
    return schema


def load_schema(name: str) -> dict:
    """The schema called ``name`` ("manifest", "config" or "mapping"), as a fresh dict."""
    return copy.deepcopy(_load_cached(name))


# ----------------------------------------------------------------- validation


def ecma_regex(pattern: str) -> str:
    """Rewrite a JSON Schema (ECMA-262) pattern for Python's ``re``.

    Every ``$`` that is an anchor (not escaped, not inside a character class)
    becomes ``\\Z``, which matches only at the very end, as ECMA's ``$`` does.
    """
    out: List[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            # a ']' right after '[' or '[^' is a literal in Python's re
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("]")
                i += 1
            continue
        elif c == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_regex(pattern))


def _ecma_pattern_keyword(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterable[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _compiled(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _validator(name: str, definition: Optional[str]) -> Any:
    key = (name, definition)
    v = _validator_cache.get(key)
    if v is None:
        from jsonschema import Draft202012Validator
        from jsonschema.validators import extend

        schema = _load_cached(name)
        Draft202012Validator.check_schema(schema)
        if definition is not None:
            if definition not in schema.get("$defs", {}):
                raise ValueError(f"schema {name!r} has no definition {definition!r}")
            schema = {
                "$schema": schema["$schema"],
                "$id": schema["$id"],
                "$defs": schema["$defs"],
                "$ref": "#/$defs/" + definition,
            }
        cls = extend(Draft202012Validator, validators={"pattern": _ecma_pattern_keyword})
        v = cls(schema)  # no format checker: formats are enforced with patterns
        _validator_cache[key] = v
    return v


def format_path(root: str, path: Iterable[Any]) -> str:
    """``manifest`` + ("what", "objects", 0, "type") -> ``manifest.what.objects[0].type``."""
    parts = [root]
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(f".{p}")
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)] + "..."


def _message(error: ValidationError) -> str:
    msg = str(error.message)
    if len(msg) > MAX_MESSAGE_CHARS:
        # Replace a long repr of the offending value by a short one, keeping the rule.
        try:
            r = repr(error.instance)
        except Exception:  # pragma: no cover - repr of JSON data does not fail
            r = ""
        if len(r) > 80 and r in msg:
            size = len(error.instance) if hasattr(error.instance, "__len__") else None
            short = r[:60] + "..." + ("" if size is None else f" ({size} {_unit(error.instance)})")
            msg = msg.replace(r, short, 1)
    return _shorten(msg, MAX_MESSAGE_CHARS)


def _unit(value: Any) -> str:
    if isinstance(value, str):
        return "chars"
    if isinstance(value, list):
        return "items"
    if isinstance(value, dict):
        return "properties"
    return "long"


def _sort_key(path: Sequence[Any]) -> Tuple[Tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def validate(
    instance: Any, name: str, root: str, *, definition: Optional[str] = None, limit: int = 200
) -> List[str]:
    """Validate ``instance`` against schema ``name``; return readable errors (empty = valid).

    Each error is ``"<root>.<dotted.path>: <message>"`` (array indices as ``[i]``,
    root-level errors as ``"<root>: <message>"``), sorted by path. At most
    ``limit`` errors are reported. ``definition`` validates against
    ``$defs/<definition>`` of the schema instead of the whole document.
    """
    from jsonschema.exceptions import best_match

    v = _validator(name, definition)
    found: List[Tuple[Tuple[Tuple[int, Any], ...], str]] = []
    for error in v.iter_errors(instance):
        if error.context:  # anyOf / oneOf: report the most relevant sub-error
            error = best_match(error.context) or error
        path = list(error.absolute_path)
        text = f"{format_path(root, path)}: {_message(error)}"
        found.append((_sort_key(path), text))
        if len(found) >= limit:
            break
    found.sort()
    return [text for _, text in found]


def check(instance: Any, name: str, root: str, *, definition: Optional[str] = None) -> None:
    """Like ``validate`` but raise ``SchemaError`` when there is any error."""
    errors = validate(instance, name, root, definition=definition)
    if errors:
        raise SchemaError(errors)


# ------------------------------------------------------------- strict reading

_STRUCTURAL = re.compile(r'[\[\]{}"\\]')


def nesting_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when arrays/objects nest deeper than ``max_depth`` (strings are skipped).

    Linear, non-recursive; meant to run before ``json.loads`` so that hostile
    input cannot make the parser recurse.
    """
    depth = 0
    in_string = False
    skip_until = -1
    for m in _STRUCTURAL.finditer(text):
        i = m.start()
        if i < skip_until:
            continue
        c = text[i]
        if in_string:
            if c == "\\":
                skip_until = i + 2
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise JsonError(f"contains {name}, which JSON does not allow")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"contains the number {_shorten(text, 40)}, which is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise JsonError(f"contains the integer {_shorten(text, 40)}, which is too long")
    return int(text)


def _pairs_to_dict(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(
                f"has a duplicate key {_shorten(key, 80)!r}; every key may appear once per object"
            )
        out[key] = value
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_strings(value: Any) -> None:
    """Raise ``JsonError`` if any string or key holds an unpaired surrogate (not encodable as UTF-8)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise JsonError(f"contains the string {_shorten(v, 40)!r} with an unpaired surrogate")
        elif isinstance(v, dict):
            for k, item in v.items():
                if _SURROGATE.search(k):
                    raise JsonError(f"contains the key {_shorten(k, 40)!r} with an unpaired surrogate")
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)


def loads_strict(data: Union[bytes, bytearray, memoryview, str], max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse JSON, refusing anything ambiguous or hostile; raise ``JsonError``.

    Refused: bytes that are not UTF-8 (a BOM included), syntax errors (message
    gives line and column), duplicate object keys, NaN/Infinity and numbers
    that overflow a float, integers longer than 20 characters, strings with
    unpaired surrogates (``"\\ud800"``), nesting deeper than ``max_depth``.
    """
    if isinstance(data, str):
        text = data
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonError(f"is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    if not text.strip():
        # e.g. an upload that created the object and never wrote it: say so rather than "Expecting value"
        raise JsonError("is empty ({} bytes{}): its upload did not finish; write it again".format(
            len(text), "" if not text else ", white space only"))
    if text.startswith("\ufeff"):
        raise JsonError("starts with a byte order mark; write UTF-8 without BOM")
    if nesting_depth_exceeds(text, max_depth):
        raise JsonError(f"nests arrays/objects deeper than {max_depth} levels")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_to_dict,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except JsonError:
        raise
    except json.JSONDecodeError as e:
        raise JsonError(f"is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise JsonError("nests arrays/objects too deeply") from None
    except ValueError as e:  # e.g. int digit limits
        raise JsonError(f"is not valid JSON: {_shorten(str(e), 200)}") from None
    check_strings(value)
    return value
