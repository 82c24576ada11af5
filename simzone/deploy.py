"""A whole simulated deployment in one directory: zone, server config dir, core.py, service account.

Laid out like a real server so the very same files are exercised:

    <zone_dir>/catalog.sqlite, vault/        the simulated zone
    <zone_dir>/etc/irods/core.py             the loader lines of docs/install.md
    <zone_dir>/etc/irods/core.py.d/*.py      copied from this project's core.py.d/
    <zone_dir>/etc/irods/omero_snapshots/    config.json, mapping.json
    <zone_dir>/rodsLog                       what rules wrote with writeLine
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional

from policy.config import PolicyConfig, default_config_dict, load_config
from simzone.catalog import SimCatalog
from simzone.prep import NATIVE_INSTANCE, PYTHON_INSTANCE, FakeServer, PepOutcome
from simzone.zone import SimZone

ADMIN = "rods"


def core_d_source() -> str:
    """Where this installation keeps core.py.d/ (source tree, or the installed share/ copy)."""
    candidates = [os.environ.get("OMERO_SNAPSHOTS_CORE_D", ""),
                  os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core.py.d"),
                  os.path.join(sys.prefix, "share", "omero-irods-snapshots", "core.py.d")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "omero_snapshots.py")):
            return c
    raise FileNotFoundError("cannot find core.py.d/ (set OMERO_SNAPSHOTS_CORE_D to the project's core.py.d)")


@dataclass
class DropResult:
    drop_id: str
    archive_pep: PepOutcome
    manifest_pep: PepOutcome
    uploaded_by: str
    archive_path: str
    timings: Dict[str, float] = field(default_factory=dict)


class SimulatedDeployment:
    def __init__(self, zone_dir: str, zone_name: str = "tempZone", service_account: str = "omero-svc",
                 config_dict: Optional[Dict[str, Any]] = None, mapping_dict: Optional[Dict[str, Any]] = None) -> None:
        self.zone_dir = os.path.abspath(zone_dir)
        os.makedirs(self.zone_dir, exist_ok=True)
        self.catalog = SimCatalog(self.zone_dir, zone_name)
        self.etc = os.path.join(self.zone_dir, "etc", "irods")
        self.config_dir = os.path.join(self.etc, "omero_snapshots")
        fresh = not os.path.exists(os.path.join(self.config_dir, "config.json"))
        os.makedirs(self.config_dir, exist_ok=True)
        if fresh or config_dict is not None:
            cfg = config_dict or default_config_dict(self.catalog.zone_name, service_account)
            with open(os.path.join(self.config_dir, "config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f, indent=2)
        if mapping_dict is not None:
            with open(self.mapping_path, "w", encoding="utf-8") as f:
                json.dump(mapping_dict, f, indent=2)
        self._install_core()
        self.config: PolicyConfig = load_config(os.path.join(self.config_dir, "config.json"))
        self.server = FakeServer(self.catalog, FakeServer.load_core(os.path.join(self.etc, "core.py")),
                                 os.path.join(self.zone_dir, "rodsLog"))
        self._bootstrap_service_account()

    @property
    def mapping_path(self) -> str:
        return os.path.join(self.config_dir, "mapping.json")

    def _install_core(self) -> None:
        """Copy core.py.d/ and write core.py = the loader lines, exactly as an admin installs them."""
        src = core_d_source()
        dst = os.path.join(self.etc, "core.py.d")
        os.makedirs(dst, exist_ok=True)
        for path in glob.glob(os.path.join(src, "*.py")):
            shutil.copyfile(path, os.path.join(dst, os.path.basename(path)))
        with open(os.path.join(src, "core_py_loader.py.txt"), encoding="utf-8") as f:
            loader = f.read()
        with open(os.path.join(self.etc, "core.py"), "w", encoding="utf-8") as f:
            f.write(loader)

    def _bootstrap_service_account(self) -> None:
        svc = self.config.service_account
        if self.catalog.user_type(svc) is None:
            self.catalog.add_user(svc, "rodsuser")
        if not self.catalog.exists(self.config.landing_collection):
            self.catalog.create_collection(svc, self.config.landing_collection, recursive=True)

    # ------------------------------------------------------------------ zones as users
    def zone_as(self, user: str) -> SimZone:
        return SimZone(self.catalog, user)

    def admin(self) -> SimZone:
        return self.zone_as(ADMIN)

    def add_user(self, name: str, utype: str = "rodsuser") -> None:
        self.catalog.add_user(name, utype)

    # ------------------------------------------------------------------ admin rules through irule
    def admin_rule(self, rule: str, *args: str) -> Dict[str, Any]:
        """An admin rule called as rods the way the CLI calls a real zone (policy.irods_rules_client, native rule
        language instance, unquoted input parameters); the rule writes its JSON into the OUT argument."""
        from policy.irods_rules_client import call_admin_rule
        from simzone.rule_exec import FakeRule, RuleSession

        return call_admin_rule(RuleSession(self.server, ADMIN), rule, *args, rule_class=FakeRule)

    def admin_rule_unchecked(self, rule: str, *args: str) -> Dict[str, Any]:
        """The same call with the values sent as given, past the client's own refusals: what another client,
        or a hostile one, may send. For tests of the rules' own checks."""
        from simzone.rule_exec import exec_my_rule

        labels = ["*a{}".format(i) for i in range(len(args))] + ["*out"]
        params = dict(zip(labels, list(args) + [""]))
        out = exec_my_rule(self.server, ADMIN, "{}({})".format(rule, ", ".join(labels)), params, ["*out"])
        return dict(json.loads(out["*out"]))

    def irule(self, command: str, user: str = ADMIN) -> Dict[str, str]:
        """An irule command line as docs/install.md writes it, run as `user` (default: rods)."""
        from simzone.rule_exec import irule

        return irule(self.server, user, command)

    def enrol(self, irods_user: str, omero_user: str, omero_server: str, create_user: bool = True) -> Dict[str, Any]:
        if create_user and self.catalog.user_type(irods_user) is None:
            self.add_user(irods_user)
        return self.admin_rule("omero_snapshots_enrol", irods_user, omero_user, omero_server)

    # ------------------------------------------------------------------ what OMERO does
    def upload_drop(self, archive_path: str, manifest: bytes, drop_id: str, as_user: Optional[str] = None,
                    archive_name: Optional[str] = None, api: str = "prc_create") -> DropResult:
        """Create landing/<drop_id>, stream the archive in, then write the manifest LAST (commit marker)."""
        user = as_user or self.config.service_account
        drop = self.config.landing_collection + "/" + drop_id
        self.catalog.create_collection(user, drop)
        name = archive_name or os.path.basename(archive_path)
        a = self.server.client_put_stream(user, drop + "/" + name, _chunks(archive_path), api=api)
        m = self.server.client_put(user, drop + "/manifest.json", manifest, api=api)
        return DropResult(drop_id, a, m, user, drop + "/" + name)

    def run_delay_server(self) -> int:
        return self.server.run_delay_queue()


def _chunks(path: str, size: int = 4 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            block = f.read(size)
            if not block:
                return
            yield block


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def archive_format(path: str) -> str:
    low = path.lower()
    if low.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if low.endswith(".zip"):
        return "zip"
    return "tar"


__all__ = ["SimulatedDeployment", "DropResult", "file_sha256", "archive_format", "NATIVE_INSTANCE",
           "PYTHON_INSTANCE"]
