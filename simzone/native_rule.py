"""A small subset of the native iRODS rule language, enough for the probe rules a rodsuser ran (round 10).

A rodsuser may not run Python rule text (SYS_NO_API_PRIV), so the no-permission codes of round 10 were
taken through `irule -r irods_rule_engine_plugin-irods_rule_language-instance -F svc.r`; the rule text is in
the golden record. This runs that text on the fake server, statement by statement, with the same
microservices and genquery the Python instance uses. Only the forms that rule uses are understood:

    *v = "string";                                   (\\" escapes, *x interpolated)
    *e = errorcode(msi(arg, ...)); writeLine("stdout", "text *e");
    *n = 0; foreach(*r in SELECT COL[, COL] where COND) { *n = *n + 1; [writeLine(...);] } writeLine(...);

Anything else raises ValueError: the interpreter never guesses what a statement means.
`errorcode()` gives the code whether the microservice raised or returned a non-zero code (so a record
made this way cannot tell the two apart, as the golden record's note says).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from simzone import prep_types

_VAR = re.compile(r"\*[A-Za-z_][A-Za-z0-9_]*")
_STR = r'"((?:[^"\\]|\\.)*)"'


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _interp(text: str, env: Dict[str, Any]) -> str:
    return _VAR.sub(lambda m: str(env[m.group(0)]) if m.group(0) in env else m.group(0), text)


def split_args(text: str) -> List[str]:
    """The comma-separated arguments of a call, commas and escaped quotes inside string literals kept."""
    out, cur, in_str, esc = [], "", False, False
    for ch in text:
        if in_str:
            cur += ch
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _statements(body: str) -> List[str]:
    """Split at top-level ';' and at the '}' closing a foreach (strings and braces respected)."""
    out, cur, in_str, esc, depth = [], "", False, False, 0
    for ch in body:
        cur += ch
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(cur.strip())
                cur = ""
        elif ch == ";" and depth == 0:
            out.append(cur.strip()[:-1].strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return [s for s in out if s]


class NativeRule:
    """Runs one `main { ... }` rule as `user` on a FakeServer; stdout lines are collected."""

    def __init__(self, server: Any, user: str) -> None:
        self.callback = server.callback(user)
        self.env: Dict[str, Any] = {}
        self.stdout: List[str] = []

    def _value(self, expr: str) -> Any:
        expr = expr.strip()
        m = re.fullmatch(_STR, expr)
        if m:
            return _interp(_unescape(m.group(1)), self.env)
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        if _VAR.fullmatch(expr):
            return self.env.get(expr, "")
        raise ValueError("native rule subset: cannot evaluate {!r}".format(expr))

    def _errorcode(self, call: str) -> int:
        m = re.fullmatch(r"(\w+)\((.*)\)", call.strip(), re.S)
        if not m:
            raise ValueError("native rule subset: not a call: {!r}".format(call))
        name, raw = m.group(1), split_args(m.group(2))
        args: List[Any] = []
        outs: Dict[int, str] = {}  # every variable argument: the microservice may write it
        for i, a in enumerate(raw):
            if _VAR.fullmatch(a):
                outs[i] = a
                if a not in self.env:
                    args.append(prep_types.RodsObjStat() if name == "msiObjStat" else "")
                    continue
            args.append(self._value(a))
        try:
            result = getattr(self.callback, name)(*args)
        except RuntimeError as e:
            m2 = re.search(r"\[iRods__Error__Code:(-?\d+)\]", str(e))
            return int(m2.group(1)) if m2 else -1
        for i, var in outs.items():
            self.env[var] = result["arguments"][i]
        return int(result["code"])

    def _write(self, stmt: str) -> None:
        m = re.fullmatch(r'writeLine\("stdout",\s*' + _STR + r"\)", stmt)
        if not m:
            raise ValueError("native rule subset: cannot run {!r}".format(stmt))
        self.stdout.append(_interp(_unescape(m.group(1)), self.env))

    def _foreach(self, stmt: str) -> None:
        from genquery import Query

        m = re.fullmatch(r"foreach\((\*\w+) in SELECT (.+?) where (.+?)\)\s*\{(.*)\}", stmt, re.S)
        if not m:
            raise ValueError("native rule subset: cannot run {!r}".format(stmt))
        var, cols, cond, body = m.group(1), [c.strip() for c in m.group(2).split(",")], m.group(3), m.group(4)
        for row in Query(self.callback, cols, _interp(cond, self.env)):
            vals = [row] if isinstance(row, str) else list(row)
            # a row prints as COL=value pairs joined by '++++' (round 11: how the native language prints a row)
            self.env[var] = "++++".join("{}={}".format(c, v) for c, v in zip(cols, vals))
            for s in _statements(body):
                self._run(s)

    def _run(self, stmt: str) -> None:
        m = re.fullmatch(r"(\*\w+)\s*=\s*errorcode\((.*)\)", stmt, re.S)
        if m:
            self.env[m.group(1)] = self._errorcode(m.group(2))
            return
        m = re.fullmatch(r"(\*\w+)\s*=\s*(\*\w+)\s*\+\s*(\d+)", stmt)
        if m:
            self.env[m.group(1)] = int(self.env[m.group(2)]) + int(m.group(3))
            return
        m = re.fullmatch(r"(\*\w+)\s*=\s*(.+)", stmt, re.S)
        if m:
            self.env[m.group(1)] = self._value(m.group(2))
            return
        if stmt.startswith("writeLine("):
            self._write(stmt)
            return
        if stmt.startswith("foreach("):
            self._foreach(stmt)
            return
        raise ValueError("native rule subset: cannot run {!r}".format(stmt))

    def run(self, text: str) -> List[str]:
        m = re.search(r"^\s*main\s*\{(.*)\}\s*INPUT\b", text, re.S | re.M)
        if not m:
            raise ValueError("native rule subset: expected 'main { ... }' followed by INPUT/OUTPUT lines")
        for sel in re.findall(r"\bSELECT\b[^{]*", m.group(1)):
            if "''" in sel:
                # The rule language parses SELECT itself and has no doubled-quote escape (round 12): the whole
                # rule is refused before anything runs.
                from policy.errors import IrodsError

                raise IrodsError(-1201000, "RE_PARSER_ERROR: parseRuleSet: error parsing rule: {}".format(sel[:120]))
        for stmt in _statements(m.group(1)):
            self._run(stmt)
        return self.stdout
