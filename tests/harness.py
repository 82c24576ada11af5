"""One interface to a zone with the policy installed, for the scenarios of tests/scenarios.py.

- SimHarness: a simulated deployment (simzone.deploy.SimulatedDeployment); the delay server runs when
  a scenario waits.
- LiveHarness: a real iRODS zone through python-irodsclient, the service account from
  $IRODS_ENVIRONMENT_FILE and a rodsadmin from $IRODS_ADMIN_ENVIRONMENT_FILE (what
  docker/make_client_envs.py prints for the docker/ stack). It creates uniquely named users and
  OMERO identities, enrols them through the admin rule, and removes everything it made in close().

Everything a scenario asserts goes through the same door on both: statuses through the
`omero_snapshots_status` admin rule, enrolment through `omero_snapshots_enrol`, bytes read as the
service account (or as the uploader), ACLs and AVUs as the admin sees them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Set, Tuple, Union

from policy import vocabulary as V
from policy.manifest import manifest_to_json

FINAL_STATES = ("placed", "complete", "failed", "quarantined")
ManifestArg = Union[Dict[str, Any], bytes]


class Harness:
    """What a scenario may do. Subclasses fill in the zone-specific parts."""

    kind = "abstract"
    zone_name: str
    service_account: str
    landing: str
    quarantine: str
    omero_server: str

    def __init__(self, workdir: Optional[str] = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="omero-snapshots-scenario-")
        self._roots: Dict[str, str] = {}
        self.enrolments: List[Tuple[str, str]] = []  # (omero_user, omero_server)
        self.drops: List[str] = []

    # ------------------------------------------------------------------ names and files
    @staticmethod
    def unique(prefix: str = "t") -> str:
        """A fresh name, valid as an iRODS user, an OMERO user and a path component (e.g. 't3f9a1c2b7d')."""
        return prefix + secrets.token_hex(5)

    def file(self, name: str, data: bytes) -> str:
        """Write `data` to a local file for upload; returns its path."""
        path = os.path.join(self.workdir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # ------------------------------------------------------------------ users
    def create_user(self, name: Optional[str] = None) -> str:
        raise NotImplementedError

    def enrol(self, irods_user: str, omero_user: str, omero_server: Optional[str] = None) -> Dict[str, Any]:
        server = omero_server or self.omero_server
        res = self.admin_rule("omero_snapshots_enrol", irods_user, omero_user, server)
        if res.get("ok"):
            self.enrolments.append((omero_user, server))
            if res.get("root"):
                self._roots[irods_user] = str(res["root"])
        return res

    def researcher(self) -> Tuple[str, str]:
        """A new iRODS user and a new OMERO user, enrolled: (irods_user, omero_user)."""
        user, omero_user = self.create_user(), self.unique("o")
        res = self.enrol(user, omero_user)
        assert res.get("ok"), res
        return user, omero_user

    def snapshot_root(self, user: str) -> str:
        return self._roots.get(user) or "/{}/home/{}/omero-snapshots".format(self.zone_name, user)

    # ------------------------------------------------------------------ drops
    def upload_drop(self, archive_path: str, manifest: ManifestArg, drop_id: str, as_user: Optional[str] = None,
                    archive_name: Optional[str] = None) -> None:
        """What OMERO does: create landing/<drop_id>, stream the archive in, then write manifest.json LAST."""
        raise NotImplementedError

    def wait(self, drop_id: str, timeout: float = 120.0) -> Dict[str, Any]:
        """Let the server process the drop; its status once final (placed/complete/failed/quarantined)."""
        raise NotImplementedError

    def settle(self) -> None:
        """Give the server the time it would take to act on anything it was going to act on."""
        raise NotImplementedError

    def status(self, drop_id: str) -> Dict[str, Any]:
        return self.admin_rule("omero_snapshots_status", drop_id)

    # ------------------------------------------------------------------ inspection
    def read_bytes(self, path: str, as_user: Optional[str] = None) -> bytes:
        raise NotImplementedError

    def acl(self, path: str) -> Set[Tuple[str, str]]:
        raise NotImplementedError

    def metadata(self, path: str) -> Dict[str, List[str]]:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def walk(self, path: str) -> List[Tuple[str, str]]:
        """(path, kind) of `path` and everything below it, sorted."""
        raise NotImplementedError

    def service_zone(self) -> Any:
        """A policy Zone acting as the service account (to show what it can no longer do)."""
        raise NotImplementedError

    def admin_rule(self, name: str, *args: str) -> Dict[str, Any]:
        raise NotImplementedError

    def allow_landing_writer(self, user: str) -> None:
        """Misconfigure the landing collection so that `user` may write there (undone in close())."""
        raise NotImplementedError

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _manifest_bytes(self, manifest: ManifestArg) -> bytes:
        return manifest if isinstance(manifest, bytes) else manifest_to_json(manifest)


# ====================================================================== simulated
class SimHarness(Harness):
    kind = "sim"

    def __init__(self, workdir: Optional[str] = None, config_dict: Optional[Dict[str, Any]] = None) -> None:
        from simzone.deploy import SimulatedDeployment

        super().__init__(workdir)
        self.dep = SimulatedDeployment(os.path.join(self.workdir, "zone"), config_dict=config_dict)
        self.zone_name = self.dep.catalog.zone_name
        self.service_account = self.dep.config.service_account
        self.landing = self.dep.config.landing_collection
        self.quarantine = self.dep.config.quarantine_collection
        self.omero_server = "omero.example.org"

    def create_user(self, name: Optional[str] = None) -> str:
        name = name or self.unique()
        self.dep.add_user(name)
        return name

    def upload_drop(self, archive_path: str, manifest: ManifestArg, drop_id: str, as_user: Optional[str] = None,
                    archive_name: Optional[str] = None) -> None:
        self.drops.append(drop_id)
        self.dep.upload_drop(archive_path, self._manifest_bytes(manifest), drop_id, as_user=as_user,
                             archive_name=archive_name or os.path.basename(archive_path))

    def wait(self, drop_id: str, timeout: float = 120.0) -> Dict[str, Any]:
        self.dep.run_delay_server()
        st = self.status(drop_id)
        assert st.get("status") in FINAL_STATES, st
        return st

    def settle(self) -> None:
        self.dep.run_delay_server()

    def read_bytes(self, path: str, as_user: Optional[str] = None) -> bytes:
        with self.dep.zone_as(as_user or self.service_account).open_read(path) as f:
            return bytes(f.read())

    def acl(self, path: str) -> Set[Tuple[str, str]]:
        return {(a.user, a.level) for a in self.dep.catalog.acl(path)}

    def metadata(self, path: str) -> Dict[str, List[str]]:
        return V.as_dict(self.dep.catalog.metadata(path))

    def exists(self, path: str) -> bool:
        return bool(self.dep.catalog.exists(path))

    def walk(self, path: str) -> List[Tuple[str, str]]:
        return list(self.dep.catalog.walk(path))

    def service_zone(self) -> Any:
        return self.dep.zone_as(self.service_account)

    def admin_rule(self, name: str, *args: str) -> Dict[str, Any]:
        return self.dep.admin_rule(name, *args)

    def allow_landing_writer(self, user: str) -> None:
        self.dep.catalog.set_acl(self.service_account, self.landing, user, "modify_object")

    def close(self) -> None:
        self.dep.catalog.close()
        super().close()


# ====================================================================== live
SVC_ENV = "IRODS_ENVIRONMENT_FILE"
ADMIN_ENV = "IRODS_ADMIN_ENVIRONMENT_FILE"


class LiveUnavailable(Exception):
    """The live zone is not configured or cannot be reached; the message says which and how to fix it."""


def live_configuration() -> Tuple[str, str]:
    """The two environment files, or LiveUnavailable saying what is missing."""
    missing = [v for v in (SVC_ENV, ADMIN_ENV) if not os.environ.get(v)]
    if missing:
        raise LiveUnavailable("live iRODS not configured: set {} (service account) and {} (a rodsadmin), e.g. "
                              "eval \"$(python docker/make_client_envs.py)\" with the docker/ stack up; "
                              "missing: {}".format(SVC_ENV, ADMIN_ENV, ", ".join(missing)))
    paths = [os.path.expanduser(os.environ[v]) for v in (SVC_ENV, ADMIN_ENV)]
    for var, path in zip((SVC_ENV, ADMIN_ENV), paths):
        if not os.path.isfile(path):
            raise LiveUnavailable("live iRODS not configured: {}={} does not exist".format(var, path))
    return paths[0], paths[1]


def _is_unreachable(exc: BaseException) -> bool:
    from irods.exception import NetworkException

    return isinstance(exc, (NetworkException, ConnectionError, TimeoutError, OSError)) and \
        not isinstance(exc, FileNotFoundError)


def probe(svc_env: str, admin_env: str, timeout: float = 10.0) -> None:
    """Connect once as each account; LiveUnavailable when the server cannot be reached at all.

    Anything else (wrong password, wrong user type) is a broken configuration and is raised as is,
    so a configured live run fails loudly instead of skipping.
    """
    from irods.session import iRODSSession

    for env in (svc_env, admin_env):
        session = iRODSSession(irods_env_file=env, connection_timeout=timeout)
        try:
            session.server_version  # noqa: B018 - connects and authenticates
        except Exception as e:  # noqa: BLE001
            if _is_unreachable(e):
                raise LiveUnavailable("live iRODS unreachable ({}:{} from {}): {}: {}".format(
                    getattr(session, "host", "?"), getattr(session, "port", "?"), env, type(e).__name__, e)) from None
            raise
        finally:
            session.cleanup()


class LiveHarness(Harness):
    kind = "live"

    def __init__(self, svc_env: str, admin_env: str, workdir: Optional[str] = None,
                 settle_seconds: Optional[float] = None) -> None:
        from irods.session import iRODSSession

        from policy.irods_rules_client import AdminClient
        from policy.prc_zone import PrcZone

        super().__init__(workdir)
        self.svc_env, self.admin_env = svc_env, admin_env
        self.svc = PrcZone(iRODSSession(irods_env_file=svc_env))
        self.admin_client = AdminClient(admin_env)
        self.admin = self.admin_client.admin()
        self.zone_name = self.svc.zone_name
        self.service_account = self.svc.user
        if self.admin.user_type(self.admin.user) != "rodsadmin":
            raise AssertionError("{} must be a rodsadmin's environment; '{}' is {}".format(
                admin_env, self.admin.user, self.admin.user_type(self.admin.user)))
        self.landing = os.environ.get("OMERO_SNAPSHOTS_LANDING") or "/{}/home/{}/landing".format(
            self.zone_name, self.service_account)
        self.quarantine = self.landing + "/quarantine"
        self.omero_server = "live-{}.omero.invalid".format(secrets.token_hex(4))
        self.settle_seconds = float(settle_seconds if settle_seconds is not None else
                                    os.environ.get("OMERO_SNAPSHOTS_LIVE_SETTLE", "5"))
        self.timeout = float(os.environ.get("OMERO_SNAPSHOTS_LIVE_TIMEOUT", "120"))
        self.users: List[str] = []
        self.landing_grants: List[str] = []
        self._as: Dict[str, Any] = {}

    # ------------------------------------------------------------------ users
    def create_user(self, name: Optional[str] = None) -> str:
        name = name or self.unique()
        self.admin_client.add_user(name, "rodsuser")  # iadmin mkuser NAME rodsuser: home collection included
        self.users.append(name)
        return name

    def _zone_as(self, user: Optional[str]) -> Any:
        """The service account's own session, or a rodsadmin session proxying as `user`."""
        if user is None or user == self.service_account:
            return self.svc
        if user not in self._as:
            from irods.session import iRODSSession

            from policy.prc_zone import PrcZone

            self._as[user] = PrcZone(iRODSSession(irods_env_file=self.admin_env, client_user=user))
        return self._as[user]

    # ------------------------------------------------------------------ drops
    def upload_drop(self, archive_path: str, manifest: ManifestArg, drop_id: str, as_user: Optional[str] = None,
                    archive_name: Optional[str] = None) -> None:
        zone = self._zone_as(as_user)
        drop = self.landing + "/" + drop_id
        self.drops.append(drop_id)
        zone.create_collection(drop)
        writer = zone.open_new(drop + "/" + (archive_name or os.path.basename(archive_path)))
        try:
            with open(archive_path, "rb") as f:
                shutil.copyfileobj(f, writer, 4 << 20)
        finally:
            writer.close()
        writer = zone.open_new(drop + "/manifest.json")
        try:
            writer.write(self._manifest_bytes(manifest))
        finally:
            writer.close()

    def wait(self, drop_id: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Poll the status rule until the drop is final and no run holds its lock (the delay server sleeps
        up to 30 s between scans, so this takes a while)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lock = self.landing + "/.locks/" + drop_id
        st: Dict[str, Any] = {}
        while True:
            st = self.status(drop_id)
            if st.get("status") in FINAL_STATES and not self.exists(lock):
                return st
            if time.monotonic() > deadline:
                raise AssertionError("drop {} did not reach a final state within {:.0f}s (is the delay server "
                                     "running?); last status: {}".format(drop_id, timeout or self.timeout, st))
            time.sleep(1.0)

    def settle(self) -> None:
        time.sleep(self.settle_seconds)

    # ------------------------------------------------------------------ inspection
    def read_bytes(self, path: str, as_user: Optional[str] = None) -> bytes:
        with self._zone_as(as_user).open_read(path) as f:
            return bytes(f.read())

    def acl(self, path: str) -> Set[Tuple[str, str]]:
        return {(a.user, a.level) for a in self.admin.acl(path)}

    def metadata(self, path: str) -> Dict[str, List[str]]:
        return V.as_dict(self.admin.metadata(path))

    def exists(self, path: str) -> bool:
        return bool(self.admin.exists(path))

    def walk(self, path: str) -> List[Tuple[str, str]]:
        return list(self.admin.walk(path))

    def service_zone(self) -> Any:
        return self.svc

    def admin_rule(self, name: str, *args: str) -> Dict[str, Any]:
        return self.admin_client.admin_rule(name, *args)

    def allow_landing_writer(self, user: str) -> None:
        self.svc.set_acl(self.landing, user, "modify_object")
        self.landing_grants.append(user)

    # ------------------------------------------------------------------ teardown
    def _remove_tree(self, path: str, errors: List[str]) -> None:
        """Remove a collection (or object) for good: as the service account if it may, else as the admin,
        who first gives itself `own` in admin mode (the only admin-mode ACLs this harness sets)."""
        if not self.exists(path):
            return
        sess = self.svc.session
        try:
            if self.svc.stat(path).kind == "collection":
                sess.collections.remove(path, recurse=True, force=True)
            else:
                sess.data_objects.unlink(path, force=True)
            return
        except Exception:  # noqa: BLE001 - not the service account's: its owner, else the admin, removes it
            pass
        # A drop made by another user of this test (scenario_drop_by_another_user_not_processed): that user
        # owns it and, while its landing grant lasts, may delete it: remove it as that user first.
        for user in self.users:
            try:
                zone = self._zone_as(user)
                if not zone.exists(path):
                    continue
                if zone.stat(path).kind == "collection":
                    zone.session.collections.remove(path, recurse=True, force=True)
                else:
                    zone.session.data_objects.unlink(path, force=True)
                if not self.exists(path):
                    return
            except Exception:  # noqa: BLE001 - not this user's either
                continue
        try:
            self.admin.set_acl(path, self.admin.user, "admin:own", recursive=self.admin.stat(path).kind == "collection")
            if self.admin.stat(path).kind == "collection":
                self.admin.session.collections.remove(path, recurse=True, force=True)
            else:
                self.admin.session.data_objects.unlink(path, force=True)
        except Exception as e:  # noqa: BLE001
            errors.append("remove {}: {}".format(path, e))

    def close(self) -> None:
        errors: List[str] = []
        for omero_user, server in self.enrolments:
            try:
                self.admin_rule("omero_snapshots_unenrol", omero_user, server)
            except Exception as e:  # noqa: BLE001
                errors.append("unenrol {}@{}: {}".format(omero_user, server, e))
        for parent in (self.landing + "/.locks", self.quarantine, self.landing):
            try:
                names = [p for p, _ in self._children(parent)]
            except Exception as e:  # noqa: BLE001
                errors.append("list {}: {}".format(parent, e))
                continue
            for path in names:
                base = path.rsplit("/", 1)[-1]
                if any(base == d or base.startswith(d + "-") or base.startswith(d + ".") for d in self.drops):
                    self._remove_tree(path, errors)
        # Only now: other users' drops were removed by those users, under their landing grant.
        for user in self.landing_grants:
            try:
                self.svc.set_acl(self.landing, user, "null")
            except Exception as e:  # noqa: BLE001
                errors.append("revoke {} on {}: {}".format(user, self.landing, e))
        for user in self.users:
            home = "/{}/home/{}".format(self.zone_name, user)
            try:
                if self.exists(home):
                    self.admin.set_acl(home, self.admin.user, "admin:own", recursive=True)
                    for path, _kind in self._children(home):
                        self._remove_tree(path, errors)
                self.admin.session.users.remove(user)
            except Exception as e:  # noqa: BLE001
                errors.append("remove user {}: {}".format(user, e))
        for zone in list(self._as.values()) + [self.svc]:
            try:
                zone.close()
            except Exception:  # noqa: BLE001
                pass
        self.admin_client.close()
        super().close()
        if errors:
            raise AssertionError("live teardown left things behind:\n  " + "\n  ".join(errors))

    def _children(self, path: str) -> List[Tuple[str, str]]:
        if not self.exists(path):
            return []
        listing = self.admin.list_collection(path)
        return [(c, "collection") for c in listing.collections] + [(s.path, "data_object")
                                                                  for s in listing.data_objects]


_probed: Optional[Tuple[Tuple[str, str], Optional[str]]] = None


def live_available() -> Tuple[str, str]:
    """The two environment files of a reachable server, or skip the calling test saying why (once probed, the
    answer is remembered for the session)."""
    import pytest

    global _probed
    try:
        pytest.importorskip("irods", reason="python-irodsclient is not installed (pip install -e '.[test]')")
        envs = live_configuration()
    except LiveUnavailable as e:
        pytest.skip(str(e))
    if _probed is None or _probed[0] != envs:
        try:
            probe(*envs)
            _probed = (envs, None)
        except LiveUnavailable as e:
            _probed = (envs, str(e))
    if _probed[1] is not None:
        pytest.skip(_probed[1])
    return envs
