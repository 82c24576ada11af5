"""Bring up a real iRODS zone for the live tests, install this checkout into it by docs/install.md's own
shell blocks, and write the client environments the live suite uses (standard library only, run as root).

    tests/live/real_zone.sh [--fresh | --reinstall | --env-only] [--delay-sleep S]

- (no flag)     start the zone when nothing answers on localhost:1247 (the test bundle's start.sh, or
                irods-up.sh when it is not installed yet); install by the guide when the policy is not
                installed; write the environments.
- --fresh       reset the test bundle's zone to a new one (catalog, vault, /etc/irods, the packages the
                guide installs), then install by the guide: what CI does. Refused on any server that is not
                the test bundle of ../shared/irods/.
- --reinstall   swap in this checkout's code by the guide's upgrade blocks (step 11), keeping the zone.
- --env-only    only (re)write the environments.

The zone is the prebuilt iRODS 5.0.2 + PREP 5.0.1 of ../shared/irods/ (see its README). Where that folder is
absent (a user's clone), the script says so and exits 3: the live stage is then skipped with that reason.
The guide runs in one bash, block after block, as a person pasting them would; its two password prompts
(steps 6 and 7) are answered with the service account's test password. The server restart of step 5 is
done with the bundle's stop.sh/start.sh (these machines' PID 1 does not reap: the guide's own restart would
wait for a zombie here). The test zone's delay server looks for due rules every --delay-sleep seconds
(default 2, set in server_config.json before the guide's restart) instead of iRODS' default 30, so the live
suite's drops do not wait half a minute each; REAL_ZONE_DELAY_SLEEP=30 keeps the default.

Writes, for the live suite (owner root, mode 0700), in $OMERO_SNAPSHOTS_LIVE_DIR (default
/var/tmp/omero-snapshots-live): svc/ and admin/ (irods_environment.json + .irodsA of omero-svc and rods),
svc.password, and live.env, to be sourced: it exports IRODS_ENVIRONMENT_FILE, IRODS_ADMIN_ENVIRONMENT_FILE
and OMERO_SNAPSHOTS_REAL_ZONE=1 (the marker the live tests that act on the server's processes and disk need).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import guide_blocks  # noqa: E402

BUNDLE_LIB = "/usr/local/lib/irods-real"
SERVER_CONFIG = "/etc/irods/server_config.json"
IRODS_HOME = "/var/lib/irods"
RODS_ENV = os.path.join(IRODS_HOME, ".irods", "irods_environment.json")
ZONE = "tempZone"
ADMIN, ADMIN_PASSWORD = "rods", "rods"
SVC = "omero-svc"
LIVE_DIR = os.environ.get("OMERO_SNAPSHOTS_LIVE_DIR", "/var/tmp/omero-snapshots-live")
# What the guide puts into the server's system python3 (the --fresh reset takes it out again, so each
# fresh install shows that the guide's own commands bring every requirement).
GUIDE_PACKAGES = ["omero-irods-snapshots", "python-irodsclient", "libarchive-c"]
SYSTEM_PYTHON = "/usr/bin/python3"
EXIT_NO_BUNDLE = 3


class ZoneError(Exception):
    """A step failed; the message says which and where to look."""


def log(msg: str) -> None:
    sys.stderr.write("real_zone: [{}] {}\n".format(time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def run(cmd: List[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise ZoneError("{} exited {}".format(" ".join(cmd), p.returncode))
    return p


def shared_dir() -> Optional[str]:
    """../shared of the project root; for a clone of a local checkout (as CI makes), that checkout's ../shared."""
    candidates = [os.environ.get("OMERO_SNAPSHOTS_SHARED", ""), os.path.join(os.path.dirname(ROOT), "shared")]
    try:
        origin = subprocess.run(["git", "-C", ROOT, "config", "--get", "remote.origin.url"], capture_output=True,
                                text=True).stdout.strip()
        if origin and os.path.isdir(origin):
            candidates.append(os.path.join(os.path.dirname(os.path.abspath(origin.rstrip("/"))), "shared"))
    except OSError:
        pass
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "irods", "irods-up.sh")):
            return os.path.abspath(c)
    return None


def answering(host: str = "127.0.0.1", port: int = 1247, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def bundle_installed() -> bool:
    return os.path.isfile(os.path.join(BUNDLE_LIB, "start.sh"))


def as_irods(args: List[str], **kw) -> subprocess.CompletedProcess:
    return run(["runuser", "-u", "irods", "--", "env", "HOME=" + IRODS_HOME] + args, cwd=IRODS_HOME, **kw)


def ensure_sudo() -> None:
    """The guide is written for a host where root runs `sudo`; these machines ship without it."""
    if shutil.which("sudo"):
        return
    log("installing sudo (the guide's commands use it)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    run(["apt-get", "install", "-y", "-qq", "sudo"], env=env, stdout=subprocess.DEVNULL)


def up(shared: str) -> None:
    if answering():
        return
    if bundle_installed() and os.path.isfile(SERVER_CONFIG):
        log("starting the installed test zone (start.sh)")
        run([os.path.join(BUNDLE_LIB, "start.sh")])
    else:
        log("installing the test zone ({}/irods/irods-up.sh)".format(shared))
        run([os.path.join(shared, "irods", "irods-up.sh")], env=dict(os.environ, IRODS_UP_SKIP_PRC="1"))
    if not answering():
        raise ZoneError("the zone does not answer on localhost:1247 (see /var/log/irods/irods.log)")


def reset(shared: str) -> None:
    """A new zone on the test bundle: only ever on the bundle's own server (a site's zone is never touched)."""
    if not bundle_installed():
        up(shared)
        return
    log("resetting the test zone (stop, new catalog and vault, /etc/irods and the guide's packages removed)")
    run([os.path.join(BUNDLE_LIB, "stop.sh")], check=False)
    pgdata = os.environ.get("IRODS_PGDATA", "/var/lib/postgresql/irods-icat")
    for path in (pgdata, "/etc/irods/core.py.d", "/etc/irods/omero_snapshots", os.path.join(IRODS_HOME, ".irods"),
                 os.path.join(IRODS_HOME, "Vault"), os.path.join(IRODS_HOME, "omero-svc-env"),
                 os.path.join(IRODS_HOME, "omero-snapshots-live"), LIVE_DIR):
        shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir("/etc/irods") if os.path.isdir("/etc/irods") else []:
        if name == "server_config.json" or name.startswith("server_config.json.bak-") or name.startswith("core.py"):
            os.remove(os.path.join("/etc/irods", name))
    run([SYSTEM_PYTHON, "-m", "pip", "uninstall", "-y", "-q", "--break-system-packages"] + GUIDE_PACKAGES,
        check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    up(shared)


def set_delay_sleep(seconds: int) -> bool:
    """The delay server's scan interval of the test zone; True when the file changed (a restart applies it)."""
    with open(SERVER_CONFIG, encoding="utf-8") as f:
        cfg = json.load(f)
    adv = cfg.setdefault("advanced_settings", {})
    if adv.get("delay_server_sleep_time_in_seconds") == seconds:
        return False
    adv["delay_server_sleep_time_in_seconds"] = seconds
    st = os.stat(SERVER_CONFIG)
    tmp = SERVER_CONFIG + ".real-zone.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=4)
        f.write("\n")
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, SERVER_CONFIG)
    log("delay server sleep set to {} s in {}".format(seconds, SERVER_CONFIG))
    return True


def restart() -> None:
    run([os.path.join(BUNDLE_LIB, "stop.sh")])
    run([os.path.join(BUNDLE_LIB, "start.sh")])


def svc_password() -> str:
    path = os.path.join(LIVE_DIR, "svc.password")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    os.makedirs(LIVE_DIR, mode=0o700, exist_ok=True)
    pw = "svc-" + secrets.token_hex(8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pw + "\n")
    return pw


def run_guide(mode: str) -> None:
    """The guide's blocks for `mode`, in one bash, its password prompts answered on standard input."""
    with open(guide_blocks.GUIDE, encoding="utf-8") as f:
        blocks = guide_blocks.parse(f.read())
    restart_cmd = "{0}/stop.sh && {0}/start.sh".format(BUNDLE_LIB)
    text = guide_blocks.script(blocks, mode, ROOT, restart_cmd)
    pw = svc_password()
    log("running docs/install.md ({} blocks) in one bash".format(mode))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    env.pop("IRODS_ENVIRONMENT_FILE", None)
    # One answer per prompt, in the guide's order: step 6's `read -rsp` then step 7's `iinit`.
    answers = (pw + "\n" + pw + "\n") if mode == "install" else ""
    p = subprocess.run(["bash", "-c", text], input=answers, text=True, env=env, cwd="/")
    if p.returncode != 0:
        raise ZoneError("docs/install.md's blocks failed (exit {}): the line 'guide: FAILED in the block at ...' "
                        "above names the block".format(p.returncode))


def policy_installed() -> bool:
    return os.path.isfile("/etc/irods/core.py.d/omero_snapshots.py") and os.path.isfile(
        "/etc/irods/omero_snapshots/config.json")


def write_env(kind: str, user: str, password: str) -> str:
    with open(RODS_ENV, encoding="utf-8") as f:
        env = json.load(f)
    d = os.path.join(LIVE_DIR, kind)
    os.makedirs(d, mode=0o700, exist_ok=True)
    zone = env["irods_zone_name"]
    home = "/{}/home/{}".format(zone, user)
    env.update(irods_user_name=user, irods_home=home, irods_cwd=home,
               irods_authentication_file=os.path.join(d, ".irodsA"))
    path = os.path.join(d, "irods_environment.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(env, f, indent=4)
    # iinit scrambles .irodsA with the uid of its writer: root writes it, root's tests read it.
    run(["iinit"], input=password + "\n", text=True, env=dict(os.environ, IRODS_ENVIRONMENT_FILE=path),
        stdout=subprocess.DEVNULL)
    run(["ils", home], env=dict(os.environ, IRODS_ENVIRONMENT_FILE=path), stdout=subprocess.DEVNULL)
    return path


def write_envs() -> str:
    os.makedirs(LIVE_DIR, mode=0o700, exist_ok=True)
    os.chmod(LIVE_DIR, 0o700)
    svc = write_env("svc", SVC, svc_password())
    admin = write_env("admin", ADMIN, ADMIN_PASSWORD)
    out = os.path.join(LIVE_DIR, "live.env")
    with open(out, "w", encoding="utf-8") as f:
        f.write("# written by tests/live/real_zone.sh: source it before `pytest -m live`\n")
        f.write("export IRODS_ENVIRONMENT_FILE={}\n".format(svc))
        f.write("export IRODS_ADMIN_ENVIRONMENT_FILE={}\n".format(admin))
        f.write("export OMERO_SNAPSHOTS_REAL_ZONE=1\n")
    return out


def doctor() -> None:
    p = as_irods(["irule", "-r", "irods_rule_engine_plugin-irods_rule_language-instance",
                  "omero_snapshots_doctor(*out)", "*out=", "*out"], capture_output=True, text=True, check=False)
    out = p.stdout.strip()
    payload = out.split("=", 1)[1].strip() if "=" in out else out
    try:
        ok = json.loads(payload).get("ok") is True
    except ValueError:
        ok = False
    if p.returncode != 0 or not ok:
        raise ZoneError("the doctor rule is not ok after the install:\n{}\n{}".format(out, p.stderr))
    log("doctor: ok")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fresh", action="store_true")
    g.add_argument("--reinstall", action="store_true")
    g.add_argument("--env-only", action="store_true")
    p.add_argument("--delay-sleep", type=int, default=int(os.environ.get("REAL_ZONE_DELAY_SLEEP", "2")))
    a = p.parse_args(argv)
    shared = shared_dir()
    if shared is None:
        print("real_zone: no ../shared/irods/ beside this checkout (a user's clone): no real zone to bring up; "
              "the live stage is skipped. On your own iRODS, follow docs/install.md and set "
              "IRODS_ENVIRONMENT_FILE / IRODS_ADMIN_ENVIRONMENT_FILE (tests/test_live.py).", file=sys.stderr)
        return EXIT_NO_BUNDLE
    if os.geteuid() != 0:
        print("real_zone: run as root (it installs packages and the server)", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if a.env_only:
            up(shared)
        else:
            ensure_sudo()
            if a.fresh:
                reset(shared)
            else:
                up(shared)
            changed = set_delay_sleep(a.delay_sleep)
            if a.reinstall and policy_installed():
                run_guide("upgrade")  # ends with the restart
            elif not policy_installed():
                run_guide("install")  # step 5 restarts: the delay sleep applies
            elif changed:
                restart()
            doctor()
        env_file = write_envs()
    except (ZoneError, guide_blocks.GuideError, OSError, ValueError) as e:
        print("real_zone: FAILED: {}".format(e), file=sys.stderr)
        return 1
    log("ready in {:.0f} s: . {}".format(time.monotonic() - started, env_file))
    print(env_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
