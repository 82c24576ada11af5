#!/usr/bin/env python3
"""Small configuration steps for the iRODS container (stdlib only, plus python-irodsclient
for writing .irodsA files).

    configure_server.py render TEMPLATE OUT
        Fill ${NAME} / ${NAME:int} placeholders of a JSON template from the environment
        (inside JSON strings, so values are JSON-escaped properly) and write OUT (mode 0600).
        A missing variable is an error.

    configure_server.py add-python-rep SERVER_CONFIG
        Put the Python rule engine plugin instance into plugin_configuration.rule_engines,
        BEFORE the native rule language instance (moving it there if it is already listed
        after it). Idempotent; keeps the file's owner and mode.

    configure_server.py write-client-env --dir DIR --host H --port P --zone Z --user U
            --password-env VAR --uid N [--gid N] [--consumer-dir PATH]
        Write DIR/irods_environment.json and DIR/.irodsA (native password, scrambled for
        uid N, as iinit would) readable only by uid N. --consumer-dir is where DIR will be
        seen by the program that uses it (e.g. a read-only mount in another container).
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
PYTHON_PLUGIN = "irods_rule_engine_plugin-python"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:int)?\}")


class ConfigureError(Exception):
    pass


# ------------------------------------------------------------------ render


def fill(value, env):
    """Replace placeholders in every string of a parsed JSON document."""
    if isinstance(value, dict):
        return {k: fill(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match):
        name = match.group(1)
        if name not in env:
            raise ConfigureError("environment variable {} is not set".format(name))
        return env[name]

    whole = _PLACEHOLDER.fullmatch(value)
    if whole and whole.group(2) == ":int":
        text = lookup(whole)
        try:
            return int(text)
        except ValueError:
            raise ConfigureError("{} must be an integer, not {!r}".format(whole.group(1), text)) from None
    if _PLACEHOLDER.search(value):
        if any(m.group(2) for m in _PLACEHOLDER.finditer(value)):
            raise ConfigureError("${NAME:int} must be the whole string, in " + repr(value))
        return _PLACEHOLDER.sub(lookup, value)
    return value


def render(template_path, out_path, env):
    with open(template_path, encoding="utf-8") as f:
        doc = json.load(f)
    _write_json(out_path, fill(doc, env), mode=0o600)


# ------------------------------------------------------------ python REP


def python_rep_stanza():
    # Default PEP regexes are what the policy needs (pep_resource_modified_post).
    return {
        "instance_name": PYTHON_INSTANCE,
        "plugin_name": PYTHON_PLUGIN,
        "plugin_specific_configuration": {},
    }


def insert_python_rep(server_config):
    """Return (changed, config) with the Python REP placed before the native one."""
    try:
        engines = server_config["plugin_configuration"]["rule_engines"]
    except (KeyError, TypeError):
        raise ConfigureError("server_config has no plugin_configuration.rule_engines") from None
    if not isinstance(engines, list):
        raise ConfigureError("plugin_configuration.rule_engines is not a list")
    names = [e.get("instance_name") if isinstance(e, dict) else None for e in engines]
    if NATIVE_INSTANCE not in names:
        raise ConfigureError("no {} in rule_engines: refusing to guess where to put the Python REP".format(
            NATIVE_INSTANCE))
    existing = [e for e in engines if isinstance(e, dict) and e.get("instance_name") == PYTHON_INSTANCE]
    if len(existing) > 1:
        raise ConfigureError("{} is listed more than once".format(PYTHON_INSTANCE))
    if existing and names.index(PYTHON_INSTANCE) < names.index(NATIVE_INSTANCE):
        return False, server_config
    stanza = existing[0] if existing else python_rep_stanza()
    rest = [e for e in engines if not (isinstance(e, dict) and e.get("instance_name") == PYTHON_INSTANCE)]
    native_at = [e.get("instance_name") if isinstance(e, dict) else None for e in rest].index(NATIVE_INSTANCE)
    server_config["plugin_configuration"]["rule_engines"] = rest[:native_at] + [stanza] + rest[native_at:]
    return True, server_config


def add_python_rep(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    changed, doc = insert_python_rep(doc)
    if changed:
        st = os.stat(path)
        _write_json(path, doc, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)
    return changed


# --------------------------------------------------------- client env


def client_environment(host, port, zone, user, auth_file):
    return {
        "irods_host": host,
        "irods_port": port,
        "irods_zone_name": zone,
        "irods_user_name": user,
        "irods_home": "/{}/home/{}".format(zone, user),
        "irods_cwd": "/{}/home/{}".format(zone, user),
        "irods_authentication_scheme": "native",
        "irods_authentication_file": auth_file,
        "irods_client_server_policy": "CS_NEG_REFUSE",
        "irods_default_hash_scheme": "SHA256",
        "irods_match_hash_policy": "compatible",
        "irods_encryption_algorithm": "AES-256-CBC",
        "irods_encryption_key_size": 32,
        "irods_encryption_num_hash_rounds": 16,
        "irods_encryption_salt_size": 8,
    }


def scrambled_password(password, uid, mtime):
    # The same scrambling iinit writes to .irodsA; it is keyed on the reader's uid and on the file's
    # modification time (the reader wants them within seconds of each other: the file gets mtime too).
    from irods.password_obfuscation import encode

    return encode(password, uid=uid, mtime=mtime)


def write_client_env(directory, host, port, zone, user, password, uid, gid=0, consumer_dir=None,
                     omero_server_name=None):
    consumer_dir = consumer_dir or directory
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o700)
    env = client_environment(host, port, zone, user, os.path.join(consumer_dir, ".irodsA"))
    _write_json(os.path.join(directory, "irods_environment.json"), env, mode=0o400, uid=uid, gid=gid)
    if omero_server_name:
        # The OMERO side's settings file (schemas/omero-settings-v1.schema.json), beside the environment:
        # OMERO's script processor passes scripts no custom variables, so the server name the users are
        # enrolled under must come from this file (docs/omero.md).
        _write_json(os.path.join(directory, "omero_snapshots.json"),
                    {"settings_version": 1, "server_name": omero_server_name}, mode=0o400, uid=uid, gid=gid)
    when = int(time.time())
    auth = os.path.join(directory, ".irodsA")
    _write_text(auth, scrambled_password(password, uid, when), mode=0o400, uid=uid, gid=gid)
    os.utime(auth, (when, when))
    # Last: only uid may enter the directory, and nobody may change what is in it.
    os.chown(directory, uid, gid)
    os.chmod(directory, 0o500)


# ------------------------------------------------------------------ files


def _write_text(path, text, mode, uid=None, gid=None):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if uid is not None:
            os.chown(tmp, uid, gid if gid is not None else -1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_json(path, doc, mode, uid=None, gid=None):
    _write_text(path, json.dumps(doc, indent=4, sort_keys=False) + "\n", mode, uid, gid)


# -------------------------------------------------------------------- CLI


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render")
    p.add_argument("template")
    p.add_argument("out")

    p = sub.add_parser("add-python-rep")
    p.add_argument("server_config")

    p = sub.add_parser("write-client-env")
    p.add_argument("--dir", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--zone", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-env", required=True, help="name of the variable holding the password")
    p.add_argument("--uid", required=True, type=int)
    p.add_argument("--gid", type=int, default=0)
    p.add_argument("--consumer-dir")
    p.add_argument("--omero-server-name", help="also write omero_snapshots.json naming this OMERO server")

    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            render(args.template, args.out, os.environ)
        elif args.command == "add-python-rep":
            changed = add_python_rep(args.server_config)
            print("{}: {} {} the native rule language instance".format(
                args.server_config, PYTHON_INSTANCE, "placed before" if changed else "already before"))
        elif args.command == "write-client-env":
            password = os.environ.get(args.password_env)
            if not password:
                raise ConfigureError("environment variable {} is empty or not set".format(args.password_env))
            write_client_env(args.dir, args.host, args.port, args.zone, args.user, password,
                             args.uid, args.gid, args.consumer_dir, args.omero_server_name)
    except (ConfigureError, OSError, ValueError) as e:
        print("configure_server.py {}: {}".format(args.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
