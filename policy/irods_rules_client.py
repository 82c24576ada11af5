"""Call the policy's rules on a real iRODS server through python-irodsclient.

The admin rules (``omero_snapshots_enrol``, ``_list``, ``_status``, ...) are
called exactly the way docs/install.md calls them with ``irule``: through the
NATIVE rule language instance, which hands the string arguments to the Python
rule and reads back the OUT parameter the rule filled with its JSON result::

    irule -r irods_rule_engine_plugin-irods_rule_language-instance \\
        'omero_snapshots_status(*a0, *out)' '*a0=<drop id>%*out=' '*out'

Arguments are UNQUOTED input parameters: a real server hands input
parameters to a Python rule verbatim, quotes included (round 9 of
reference/prep-observed; policy.rule_args says why and which values are
refused before anything is sent).

With python-irodsclient (3.x) that is ``irods.rule.Rule(session, body=...,
params=..., output='*out', instance_name=...).execute()``; ``execute()``
returns the server's ``MsParamArray`` (irods/rule.py), whose ``MsParam_PI``
list holds one ``MsParam`` per label named in ``output`` (the server trims the
rule's parameters to ``outParamDesc``, server/api/src/rsExecMyRule.cpp). Each
``MsParam`` has ``label``, ``type`` and ``inOutStruct``; a string comes back as
type ``STR_PI`` whose ``inOutStruct.myStr`` is the value (irods/message/__init__.py:
``MsParam.unpack`` picks the struct class named by ``type``).

python-irodsclient is imported lazily (a server may have only the save path).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from policy.errors import IrodsError
from policy.rule_args import MAX_ARG_CHARS, RuleArgumentError, sendable  # noqa: F401 - re-exported

NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"
OUT_LABEL = "*out"
_RULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class RuleCallError(IrodsError):
    """The server could not run the rule, or its answer had no usable OUT value."""


# ---------------------------------------------------------------------- building the call
def rule_literal(value: str) -> str:
    """The rule-language string literal for `value` written INTO rule text (for microservice calls in
    native rule text, e.g. the benchmark's), or RuleArgumentError. Our rules' arguments do not travel this
    way: they are unquoted input parameters (build_call)."""
    return '"' + sendable(value) + '"'


def build_call(rule: str, args: Sequence[str], out_label: Optional[str] = OUT_LABEL) -> Tuple[str, Dict[str, str]]:
    """Rule body and input parameters: ``rule(*a0, ..., *out)`` with ``*aN`` = args[N] unquoted.

    With out_label None the call has only the input arguments (the rule may write back into them).
    """
    if not _RULE_NAME.fullmatch(rule or ""):
        raise RuleArgumentError("not a rule name: {!r}".format((rule or "")[:80]))
    params = {"*a{}".format(i): sendable(a) for i, a in enumerate(args)}
    labels = list(params)
    if out_label is not None:
        params[out_label] = ""
        labels.append(out_label)
    return "{}({})".format(rule, ", ".join(labels)), params


# ---------------------------------------------------------------------- reading the answer
def out_values(result: Any) -> Dict[str, str]:
    """label -> string value of every STR_PI parameter of an MsParamArray returned by Rule.execute()."""
    values: Dict[str, str] = {}
    try:
        params = list(result.MsParam_PI or [])
    except (AttributeError, KeyError):  # Rule.execute() returns a bare MsParamArray() when the answer had none
        params = []
    for p in params:
        label = getattr(p, "label", None)
        struct = getattr(p, "inOutStruct", None)
        if label and getattr(p, "type", None) == "STR_PI" and struct is not None:
            value = getattr(struct, "myStr", None)
            values[str(label)] = "" if value is None else str(value)
    return values


def parse_json_out(text: Optional[str], rule: str) -> Dict[str, Any]:
    """The JSON object an admin rule wrote into its OUT parameter."""
    if text is None or not text.strip():
        raise RuleCallError(-1828000, "{} returned no value in {} (is the policy installed and the Python rule "
                                      "engine plugin configured? run omero_snapshots_doctor)".format(rule, OUT_LABEL))
    try:
        doc = json.loads(text)
    except ValueError:
        raise RuleCallError(-1828000, "{} returned {!r}, not JSON".format(rule, text[:200])) from None
    if not isinstance(doc, dict):
        raise RuleCallError(-1828000, "{} returned {!r}, not a JSON object".format(rule, text[:200]))
    return doc


# ---------------------------------------------------------------------- executing
def execute(session: Any, body: str, params: Dict[str, str], outputs: Sequence[str],
            instance_name: str = NATIVE_INSTANCE, rule_class: Any = None) -> Dict[str, str]:
    """Run `body` on the server and return the string values of the `outputs` labels it sent back."""
    if rule_class is None:
        from irods.rule import Rule

        rule_class = Rule
    output = "%".join(outputs)  # irule's outParamDesc: labels joined by '%'
    rule = rule_class(session, body=body, params=params, output=output, instance_name=instance_name)
    try:
        # session_cleanup=False: execute() would otherwise drop every connection of the session (irods/rule.py).
        result = rule.execute(session_cleanup=False)
    except Exception as e:  # noqa: BLE001 - python-irodsclient's errors become ours, with the iRODS code
        if not type(e).__module__.startswith("irods"):
            raise
        code = getattr(e, "code", None)
        code = code if isinstance(code, int) and code < 0 else -1828000
        raise RuleCallError(code, "{}: {}: {}".format(body.split("(", 1)[0], type(e).__name__, str(e)[:300])) from None
    return out_values(result)


def call_admin_rule(session: Any, rule: str, *args: str, rule_class: Any = None) -> Dict[str, Any]:
    """Call an admin rule as the session's user (a rodsadmin) and return its JSON result."""
    body, params = build_call(rule, list(args))
    values = execute(session, body, params, [OUT_LABEL], rule_class=rule_class)
    return parse_json_out(values.get(OUT_LABEL), rule)


def call_rule(session: Any, rule: str, args: Sequence[str], rule_class: Any = None) -> List[str]:
    """Call a rule with string arguments only; return the arguments' values after the call.

    A Python rule that writes ``rule_args[i]`` changes the caller's ``*a<i>``; where the server did
    not send a value back, the argument as passed is returned.
    """
    body, params = build_call(rule, list(args), out_label=None)
    labels = list(params)
    values = execute(session, body, params, labels, rule_class=rule_class)
    return [values.get(label, a) for label, a in zip(labels, args)]



# ---------------------------------------------------------------------- an admin's client of a real zone
DEFAULT_ENV_FILE = "~/.irods/irods_environment.json"


def environment_file(explicit: Optional[str] = None) -> str:
    """The irods_environment.json to use: explicit, else $IRODS_ENVIRONMENT_FILE, else ~/.irods/...."""
    import os

    return os.path.expanduser(explicit or os.environ.get("IRODS_ENVIRONMENT_FILE") or DEFAULT_ENV_FILE)


class AdminClient:
    """What the CLI needs of a real zone, through one python-irodsclient session (connected lazily).

    Admin rules run as the environment's user, who must be a rodsadmin (the rules check it).
    """

    def __init__(self, env_file: str, session: Any = None, rule_class: Any = None) -> None:
        self.env_file = env_file
        self._session = session
        self._zone: Any = None
        self._rule_class = rule_class

    @property
    def session(self) -> Any:
        if self._session is None:
            from irods.session import iRODSSession

            self._session = iRODSSession(irods_env_file=self.env_file)
        return self._session

    def admin(self) -> Any:
        """The zone (policy.prc_zone.PrcZone) acting as the environment's user."""
        if self._zone is None:
            from policy.prc_zone import PrcZone

            self._zone = PrcZone(self.session)
        return self._zone

    @property
    def user(self) -> str:
        return str(self.session.username)

    def admin_rule(self, rule: str, *args: str) -> Dict[str, Any]:
        return call_admin_rule(self.session, rule, *args, rule_class=self._rule_class)

    def exists(self, path: str) -> bool:
        return bool(self.admin().exists(path))

    def walk(self, path: str) -> List[Tuple[str, str]]:
        return list(self.admin().walk(path))

    def user_type(self, name: str) -> Optional[str]:
        return self.admin().user_type(name)

    def add_user(self, name: str, utype: str = "rodsuser") -> None:
        """iadmin mkuser NAME rodsuser (no password: the user gets one from the admin separately)."""
        self.session.users.create(name, utype)

    def close(self) -> None:
        if self._session is not None:
            self._session.cleanup()


__all__ = ["AdminClient", "DEFAULT_ENV_FILE", "NATIVE_INSTANCE", "OUT_LABEL", "RuleArgumentError", "RuleCallError",
           "build_call", "call_admin_rule", "call_rule", "environment_file", "execute", "out_values", "parse_json_out",
           "rule_literal"]
