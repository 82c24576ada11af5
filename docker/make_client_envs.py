#!/usr/bin/env python3
"""Write iRODS client environments on the HOST for the docker/ stack, for the live tests.

    python docker/make_client_envs.py [--env-file docker/.env] [--out DIR] [--host localhost]

Creates DIR/omero-svc/ (the service account) and DIR/admin/ (the zone admin), each with
irods_environment.json and .irodsA (the password scrambled for your uid, as iinit does),
readable only by you, and prints the two `export` lines for `pytest -m live`.
Needs python-irodsclient (pip install -e '.[test]'). The passwords are read from the
env file, which is why this is for the private local trial stack only.
"""

import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_env_file(path):
    """KEY=VALUE lines of a compose env file (comments and blank lines ignored)."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ValueError("{}:{}: not KEY=VALUE: {!r}".format(path, number, line))
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def _configure_server():
    spec = importlib.util.spec_from_file_location(
        "omero_snapshots_configure_server", os.path.join(HERE, "irods", "configure_server.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_envs(env, out_dir, host):
    cs = _configure_server()
    port = int(env["IRODS_PORT"])
    zone = env["IRODS_ZONE_NAME"]
    made = {}
    for label, user, password in (
        ("omero-svc", env["IRODS_SERVICE_ACCOUNT"], env["IRODS_SERVICE_ACCOUNT_PASSWORD"]),
        ("admin", env["IRODS_ADMIN_USER"], env["IRODS_ADMIN_PASSWORD"]),
    ):
        directory = os.path.join(out_dir, label)
        cs.write_client_env(directory, host, port, zone, user, password, os.getuid(), os.getgid())
        made[label] = os.path.join(directory, "irods_environment.json")
    return made


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", default=os.path.join(HERE, ".env"))
    parser.add_argument("--out", default=os.path.expanduser("~/.omero-snapshots-trial"))
    parser.add_argument("--host", default="localhost", help="where the host reaches iRODS (default localhost)")
    args = parser.parse_args(argv)
    made = make_envs(read_env_file(args.env_file), os.path.abspath(args.out), args.host)
    print("export IRODS_ENVIRONMENT_FILE={}".format(made["omero-svc"]))
    print("export IRODS_ADMIN_ENVIRONMENT_FILE={}".format(made["admin"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
