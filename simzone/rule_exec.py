"""How a client's rule call reaches a core rule on the fake server: irule's command line and
python-irodsclient's exec-my-rule, with the argument passing a real server showed.

Observed (reference/prep-observed/round9-eof-and-rule-arguments.jsonl), through the native rule
language instance:
- an input parameter reaches the Python rule VERBATIM: `*a="alice"` arrives as `"alice"`, `*a=alice`
  as `alice`, `*a=with space` as `with space`; python-irodsclient's params likewise;
- `irule -s` turns `*a=alice` into `"alice"`;
- a string literal in the rule text, `rule("literal", *out)`, arrives as `literal`;
- whatever the rule writes into an argument comes back to the client under that argument's label.
What no record shows is refused here (NotObserved), not guessed: a literal holding `\\`, `*` or `$`,
`-s` on a value already quoted, rule text other than one call.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from policy.errors import IrodsError
from simzone.native_rule import split_args

PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"
_CALL = re.compile(r"^\s*(?:@external\s+rule\s*\{\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*;?\s*\}?\s*$", re.S)
_LABEL = re.compile(r"^\*[A-Za-z_][A-Za-z0-9_]*$")


class NotObserved(AssertionError):
    """The fake was asked for a behaviour no golden record shows; write a probe before modelling it."""


def parse_call(body: str) -> Tuple[str, List[str]]:
    """('rule', [argument expressions]) of rule text that is one call (irule's or python-irodsclient's form)."""
    m = _CALL.match(body)
    if m is None:
        raise NotObserved("rule text other than one rule call: {!r}".format(body[:120]))
    return m.group(1), split_args(m.group(2))


def exec_my_rule(server: Any, user: str, body: str, params: Dict[str, str], outputs: Sequence[str],
                 instance: str = NATIVE_INSTANCE) -> Dict[str, str]:
    """Run a core rule the way the server runs a client's rule text; return {label: value} of `outputs`."""
    if instance == PYTHON_INSTANCE:
        # Python rule text from a client: a rodsuser is refused (round 2/10: SYS_NO_API_PRIV), and an inline
        # call gets no arguments (prep-facts.md): only the admin's irule -F files use this instance.
        if server.catalog.user_type(user) != "rodsadmin":
            raise IrodsError(-13000, "python rule text needs a rodsadmin; use the native rule language instance")
        raise NotObserved("inline python-instance rule text from a client")
    if instance != NATIVE_INSTANCE:
        raise NotObserved("rule engine instance {!r}".format(instance))
    name, exprs = parse_call(body)
    if not server.has_rule(name):
        raise IrodsError(-1828000, "no rule " + name)  # the real code for an unknown rule is not observed
    rule_args: List[Any] = []
    labels: List[Optional[str]] = []
    for e in exprs:
        if _LABEL.match(e):
            if e not in params:
                raise NotObserved("rule text names {} but no input parameter gives it".format(e))
            rule_args.append(str(params[e]))  # verbatim: quotes and all (round 9)
            labels.append(e)
        elif len(e) >= 2 and e[0] == e[-1] == '"':
            inner = e[1:-1]
            if any(c in inner for c in '\\*$"'):
                raise NotObserved("a string literal holding \\, *, $ or a quote: {!r}".format(e))
            rule_args.append(inner)
            labels.append(None)
        else:
            raise NotObserved("a rule argument that is neither *label nor \"literal\": {!r}".format(e))
    server.call_rule(name, rule_args, user)
    values: Dict[str, str] = {}
    for label, value in zip(labels, rule_args):
        if label is not None and label in outputs:
            values[label] = str(value)
    for label in outputs:
        if label and label not in values and label in params:
            values[label] = str(params[label])
    return values


def parse_irule(argv: Sequence[str]) -> Tuple[bool, str, str, Dict[str, str], List[str]]:
    """(-s given, instance, rule text, input parameters, output labels) of an irule command line."""
    args = list(argv)
    if args and args[0] == "irule":
        args = args[1:]
    string_mode = False
    instance = ""
    rest: List[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-s":
            string_mode = True
        elif a == "-r":
            instance = args[i + 1]
            i += 1
        elif a.startswith("-"):
            raise NotObserved("irule option {}".format(a))
        else:
            rest.append(a)
        i += 1
    if len(rest) != 3:
        raise NotObserved("irule without exactly rule text, input and output: {!r}".format(rest))
    body, inp, out = rest
    params: Dict[str, str] = {}
    for part in inp.split("%"):
        if not part or part == "null":
            continue
        label, _, value = part.partition("=")
        if string_mode:
            if value.startswith('"'):
                raise NotObserved("irule -s with a value that is already quoted: {!r}".format(part))
            value = '"' + value + '"'
        params[label] = value
    outputs = [x for x in out.split("%") if x and x != "ruleExecOut"]
    return string_mode, instance, body, params, outputs


def irule(server: Any, user: str, command: str) -> Dict[str, str]:
    """Run an irule command line (as pasted in a shell, `sudo -iu irods` in front allowed) as `user`."""
    argv = shlex.split(command)
    while argv and argv[0] != "irule":
        argv.pop(0)  # sudo -iu irods ...
    _s, instance, body, params, outputs = parse_irule(argv)
    return exec_my_rule(server, user, body, params, outputs, instance or PYTHON_INSTANCE)


# ---------------------------------------------------------------------- python-irodsclient's side
class _Str:
    def __init__(self, value: str) -> None:
        self.myStr = value


class _Param:
    def __init__(self, label: str, value: str) -> None:
        self.label = label
        self.type = "STR_PI"
        self.inOutStruct = _Str(value)


class _ParamArray:
    def __init__(self, params: List[_Param]) -> None:
        self.MsParam_PI = params


class RuleSession:
    """What policy.irods_rules_client needs of an iRODSSession: who calls, on which fake server."""

    def __init__(self, server: Any, username: str) -> None:
        self.server = server
        self.username = username


class FakeRule:
    """Stands in for irods.rule.Rule over a RuleSession: same constructor, the same @external wrapping."""

    def __init__(self, session: RuleSession, body: str = "", params: Optional[Dict[str, str]] = None,
                 output: str = "", instance_name: Optional[str] = None, **_kw: Any) -> None:
        self.session = session
        self.body = "@external rule { " + body + " }"  # what python-irodsclient sends (irods/rule.py)
        self.params = dict(params or {})
        self.output = output
        self.instance_name = instance_name or NATIVE_INSTANCE

    def execute(self, session_cleanup: bool = True) -> _ParamArray:
        outputs = [x for x in self.output.split("%") if x]
        values = exec_my_rule(self.session.server, self.session.username, self.body, self.params, outputs,
                              self.instance_name)
        return _ParamArray([_Param(k, v) for k, v in values.items()])


__all__ = ["FakeRule", "NATIVE_INSTANCE", "NotObserved", "PYTHON_INSTANCE", "RuleSession", "exec_my_rule",
           "irule", "parse_call", "parse_irule"]
