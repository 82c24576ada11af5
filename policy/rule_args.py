"""How a string argument reaches one of our rules on a real server, and which values can make the trip.

Observed on iRODS 5.0.2 + PREP 5.0.1 (reference/prep-observed/round9-eof-and-rule-arguments.jsonl):
irule and python-irodsclient hand INPUT PARAMETERS to a Python rule verbatim. `*a="alice"` arrives as
the seven characters `"alice"`, quotes included, and so does everything `irule -s` sends; `*a=alice`
arrives as `alice`; a literal written in the rule text, `rule("alice", *out)`, arrives as `alice`.

This project therefore passes every argument one way, the same in the docs, the CLI and the
run-as-service-account calls: as an UNQUOTED input parameter (`*a0=alice`, no `-s`). Values that this
form cannot carry unambiguously are refused before anything is sent (`sendable`), never escaped:
irule splits its parameter string on `%` and each parameter on its first `=`, and a quote would be
indistinguishable from the quotes of the old documented form. On arrival, a value that still carries
surrounding quotes is refused with the fix (`received`): stripping them would be a guess about what the
caller meant, and the project never guesses.
"""

from __future__ import annotations

from typing import List, Sequence

MAX_ARG_CHARS = 2048
_FORBIDDEN = {
    '"': "a double quote",
    "'": "a single quote",
    "%": "'%' (irule separates its parameters with it)",
    "\\": "a backslash",
    "*": "'*' (a rule-language variable)",
    "$": "'$' (a rule-language session variable)",
}
_QUOTES = ('"', "'")


class RuleArgumentError(ValueError):
    """A value that cannot be passed to a rule safely; nothing was sent (or nothing was done)."""


def sendable(value: str) -> str:
    """`value` unchanged if it can travel as an unquoted input parameter, else RuleArgumentError."""
    if not isinstance(value, str):
        raise RuleArgumentError("rule arguments are strings, not {}".format(type(value).__name__))
    if len(value) > MAX_ARG_CHARS:
        raise RuleArgumentError("argument of {} characters is over the limit of {}".format(len(value), MAX_ARG_CHARS))
    for ch, what in _FORBIDDEN.items():
        if ch in value:
            raise RuleArgumentError("refusing to pass {!r} to a rule: it contains {}".format(value[:80], what))
    for ch in value:
        if ord(ch) < 32 or 127 <= ord(ch) <= 159:
            raise RuleArgumentError("refusing to pass {!r} to a rule: it contains a control character "
                                    "(U+{:04X})".format(value[:80], ord(ch)))
    if value != value.strip():
        raise RuleArgumentError("refusing to pass {!r} to a rule: it starts or ends with white space "
                                "(whether irule keeps it is not observed)".format(value[:80]))
    return value


def received(values: Sequence[object], rule: str) -> List[str]:
    """The arguments a rule received, as strings; RuleArgumentError if one still wears its quotes."""
    out = [str(v) for v in values]
    for i, v in enumerate(out):
        if len(v) >= 2 and v[0] in _QUOTES and v[-1] == v[0]:
            raise RuleArgumentError(
                "argument {} of {} arrived as {!r}, quotes included: iRODS passes irule input parameters "
                "verbatim. Write *name={} (no quotes, and no irule -s), see docs/install.md step 9".format(
                    i + 1, rule, v[:80], v[1:-1][:80]))
    return out


__all__ = ["MAX_ARG_CHARS", "RuleArgumentError", "received", "sendable"]
