"""omero-snapshots: the admin's command-line tool (and a local trial of the policy on a simulated zone).

Exit codes: 0 every drop reached its expected good state (or the command
succeeded); 1 a drop was rejected, quarantined or failed (or a lookup found
nothing); 2 usage or configuration error.

Without --zone-dir the commands act on the real zone of the iRODS environment
($IRODS_ENVIRONMENT_FILE, else ~/.irods/irods_environment.json) through
python-irodsclient: the admin commands call the policy's admin rules as that
environment's user, who must be a rodsadmin (policy.irods_rules_client).

`simulate` drives the same code path as a server: it uploads the drop as
OMERO would, the fake PREP runtime fires the upload PEP of core.py.d, the
delayed rule runs the ingest. It never calls the use case directly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
DEFAULT_OMERO_SERVER = "omero.local"


class UsageError(Exception):
    pass


# ---------------------------------------------------------------------- helpers
def _emit(args: argparse.Namespace, human: str, machine: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(machine, sort_keys=True))
    else:
        print(human)


def _deployment(args: argparse.Namespace, config_dict: Optional[dict] = None,
                mapping_dict: Optional[dict] = None) -> Any:
    """--zone-dir: that simulated zone. Otherwise the real zone of the iRODS environment
    ($IRODS_ENVIRONMENT_FILE, else ~/.irods/irods_environment.json) through python-irodsclient."""
    if args.zone_dir:
        from simzone.deploy import SimulatedDeployment

        return SimulatedDeployment(args.zone_dir, config_dict=config_dict, mapping_dict=mapping_dict)
    from policy.irods_rules_client import AdminClient, environment_file

    env = environment_file()
    if not os.path.isfile(env):
        raise UsageError("no iRODS environment: {} does not exist. Set IRODS_ENVIRONMENT_FILE to a rodsadmin's "
                         "irods_environment.json (admin commands run the policy's admin rules as that user), "
                         "or pass --zone-dir DIR for a simulated zone".format(env))
    client = AdminClient(env)
    getattr(args, "_open", []).append(client)
    return client


def _is_simulated(dep: Any) -> bool:
    return hasattr(dep, "catalog")


def _where(dep: Any) -> str:
    return "the simulated zone" if _is_simulated(dep) else "the zone of {}".format(dep.env_file)


def _user_type(dep: Any, name: str) -> Optional[str]:
    return dep.catalog.user_type(name) if _is_simulated(dep) else dep.user_type(name)


def _admin_rule(dep: Any, rule: str, *args: str) -> Dict[str, Any]:
    res = dict(dep.admin_rule(rule, *args))
    if not _is_simulated(dep) and res.get("error") == "admin rules need a rodsadmin":
        res["error"] += ("; {} authenticates as '{}': point IRODS_ENVIRONMENT_FILE at a rodsadmin's environment"
                         .format(dep.env_file, dep.user))
    return res


def entry_dict(zone: Any, path: str) -> Dict[str, Any]:
    st = zone.stat(path)
    return {"path": path, "type": st.kind, "size": st.size if st.kind == "data_object" else None,
            "checksum": st.checksum, "owner": st.owner,
            "acl": [{"user": a.user, "level": a.level} for a in zone.acl(path)],
            "avus": [{"attribute": a.attribute, "value": a.value, "units": a.units} for a in zone.metadata(path)]}


def _format_entry(e: Dict[str, Any], indent: str = "") -> str:
    acl = ", ".join("{}:{}".format(a["user"], a["level"]) for a in e["acl"])
    head = "{}{}{}".format(indent, e["path"], "/" if e["type"] == "collection" else "")
    if e["type"] == "data_object":
        head += "  {} bytes  {}".format(e["size"], e["checksum"] or "(no checksum)")
    lines = [head, "{}  ACL: {}".format(indent, acl or "-")]
    for a in e["avus"]:
        lines.append("{}  {} = {}{}".format(indent, a["attribute"], a["value"],
                                            " [{}]".format(a["units"]) if a["units"] else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------- simulate
def _objects_from_archive(path: str) -> List[tuple]:
    """Image ids named in the packet's transfer.xml (so a trial manifest says what the packet holds)."""
    import tarfile
    import zipfile

    xml = b""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.lstrip("./") == "transfer.xml":
                        xml = z.read(name)[: 4 << 20]
        else:
            with tarfile.open(path) as t:
                for m in t:
                    if m.name.lstrip("./") == "transfer.xml" and m.isfile():
                        f = t.extractfile(m)
                        xml = f.read(4 << 20) if f else b""
                        break
    except (OSError, tarfile.TarError, zipfile.BadZipFile):
        return []
    found: Dict[str, List[int]] = {}
    for kind in ("Project", "Dataset", "Screen", "Plate", "Image"):
        ids = sorted({int(n) for n in re.findall(r'<{} ID="{}:(\d+)"'.format(kind, kind).encode(), xml)})
        if ids:
            found[kind] = ids
    top = [k for k in ("Project", "Screen", "Dataset", "Plate", "Image") if k in found][:1]
    return [(k, found[k]) for k in top]


def _parse_objects(values: Sequence[str]) -> List[tuple]:
    out: Dict[str, List[int]] = {}
    for v in values:
        m = re.match(r"^(Project|Dataset|Image|Screen|Plate):(\d+(?:,\d+)*)$", v)
        if not m:
            raise UsageError("--object must look like Image:1 or Dataset:3,4, not {!r}".format(v))
        out.setdefault(m.group(1), []).extend(int(x) for x in m.group(2).split(","))
    return list(out.items())


def _prepare_simulation(args: argparse.Namespace) -> Any:
    from policy.config import parse_config
    from policy.enrol import prepare_root
    from policy.mapping import load_mapping

    config_dict = None
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            config_dict = json.load(f)
        parse_config(config_dict, os.path.dirname(os.path.abspath(args.config)))  # fail early, clearly
    mapping_dict = None
    if args.mapping:
        mapping_dict = load_mapping(args.mapping).to_dict()
    if not args.zone_dir:
        args.zone_dir = tempfile.mkdtemp(prefix="omero-snapshots-zone-")
    dep = _deployment(args, config_dict, mapping_dict)
    if args.mapping:
        for entry in load_mapping(dep.mapping_path).entries:
            if dep.catalog.user_type(entry.irods_user) is None:
                dep.add_user(entry.irods_user)
            if dep.catalog.user_type(entry.irods_user) == "rodsuser" and entry.irods_user != dep.config.service_account:
                prepare_root(dep.admin(), dep.config, entry.irods_user)
    else:
        mapped = load_mapping(dep.mapping_path, missing_ok=True).lookup(args.omero_server, args.omero_user)
        if mapped is None:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", args.omero_user):
                raise UsageError("--omero-user {!r} cannot be an iRODS user name; pass --mapping".format(
                    args.omero_user))
            res = dep.enrol(args.omero_user, args.omero_user, args.omero_server)
            if not res.get("ok"):
                raise UsageError("enrolment of {!r} failed: {}".format(args.omero_user, res.get("error")))
    if args.as_user and dep.catalog.user_type(args.as_user) is None:
        # A misconfigured landing zone that someone else can write to: what the policy must refuse.
        dep.add_user(args.as_user)
        dep.catalog.set_acl(dep.config.service_account, dep.config.landing_collection, args.as_user, "modify_object")
    return dep


def _manifest_for(args: argparse.Namespace, archive: str) -> tuple:
    from policy.manifest import build_manifest, manifest_to_json, new_drop_id
    from policy.placement import is_safe_drop_id
    from simzone.deploy import archive_format, file_sha256

    if args.manifest:
        with open(args.manifest, "rb") as f:
            raw = f.read()
        drop_id, name = None, None
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict):
                drop_id = doc.get("drop_id") if isinstance(doc.get("drop_id"), str) else None
                arch = doc.get("archive")
                name = arch.get("name") if isinstance(arch, dict) and isinstance(arch.get("name"), str) else None
        except ValueError:
            pass
        if not drop_id or not is_safe_drop_id(drop_id):
            drop_id = new_drop_id()
        if not name or "/" in name or not name.strip():
            name = os.path.basename(archive)
        return drop_id, raw, args.archive_name or name
    objects = _parse_objects(args.object) if args.object else _objects_from_archive(archive)
    if not objects:
        raise UsageError("no transfer.xml objects found in {}; pass --object Image:ID".format(archive))
    drop_id = new_drop_id()
    fmt = archive_format(archive)
    name = args.archive_name or ("transfer." + fmt)
    doc = build_manifest(drop_id=drop_id, omero_user=args.omero_user, omero_user_id=args.omero_user_id,
                         omero_group=args.omero_group, omero_server=args.omero_server, objects=objects,
                         archive_name=name, archive_size=os.path.getsize(archive),
                         archive_sha256=file_sha256(archive), archive_format=fmt,
                         packer_version=args.packer_version, label=args.label)
    return drop_id, manifest_to_json(doc), name


def _count_diff(after: Dict[str, int], before: Dict[str, int]) -> Dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


def _unpack_prerequisites(config: Any) -> None:
    """Refuse to start a simulation whose unpack step could not run, naming what is missing.

    Without this, a bare install left each drop at `unpacking` with the ImportError only in the zone's log.
    """
    if not config.unpack.enabled:
        return
    try:
        import libarchive  # noqa: F401 - the unpack step's reader
    except (ImportError, OSError) as e:
        raise UsageError("unpacking needs the Python package libarchive-c and the system library libarchive "
                         "(Debian: libarchive13), which cannot be loaded here ({}: {}). Install them "
                         "(pip install libarchive-c), or pass --config with \"unpack\": {{\"enabled\": false}}"
                         .format(type(e).__name__, str(e)[:200])) from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from policy.listing import status_of

    if args.manifest and len(args.archives) != 1:
        raise UsageError("--manifest goes with exactly one ARCHIVE")
    for a in args.archives:
        if not os.path.isfile(a):
            raise UsageError("archive not found: {}".format(a))
    dep = _prepare_simulation(args)
    _unpack_prerequisites(dep.config)
    # Benchmarks (bench/unpack.py) run this in a subprocess and want the simulated catalog's call
    # counts: the file named here gets, per drop, the calls made by the upload and by the processing.
    calls_out = os.environ.get("OMERO_SNAPSHOTS_SIM_CALLS_OUT", "")
    call_records: List[Dict[str, Any]] = []
    worst = EXIT_OK
    for archive in args.archives:
        drop_id, manifest, name = _manifest_for(args, archive)
        c0 = dict(dep.catalog.calls)
        t0 = time.perf_counter()
        up = dep.upload_drop(archive, manifest, drop_id, as_user=args.as_user, archive_name=name)
        t1 = time.perf_counter()
        c1 = dict(dep.catalog.calls)
        dep.run_delay_server()
        t2 = time.perf_counter()
        if calls_out:
            c2 = dict(dep.catalog.calls)
            call_records.append({"drop": drop_id, "upload": _count_diff(c1, c0), "process": _count_diff(c2, c1)})
            with open(calls_out, "w", encoding="utf-8") as f:
                json.dump(call_records, f, sort_keys=True)
        status = status_of(dep.admin(), dep.config, drop_id)
        if status.get("status") == "unknown" or up.uploaded_by != dep.config.service_account:
            if up.uploaded_by != dep.config.service_account:
                status = {"drop": drop_id, "status": "not_processed", "snapshot": None,
                          "reason": "uploaded by '{}', not by the service account '{}': left untouched in {}"
                          .format(up.uploaded_by, dep.config.service_account,
                                  dep.config.landing_collection + "/" + drop_id)}
        snapshot = status.get("snapshot") if status.get("status") in ("placed", "complete", "unpacking",
                                                                       "failed") else None
        result: Dict[str, Any] = {
            "drop": drop_id, "status": status.get("status"), "reason": status.get("reason"),
            "snapshot": snapshot, "location": status.get("location"),
            "client_error": up.manifest_pep.client_error or up.archive_pep.client_error,
            "timings": {"upload": round(t1 - t0, 4), "process": round(t2 - t1, 4)}, "zone_dir": dep.zone_dir}
        admin = dep.admin()
        where = snapshot or status.get("location")
        if where and dep.catalog.exists(where):
            result["entry"] = entry_dict(admin, where)
        good = result["status"] in ("placed", "complete")
        worst = max(worst, EXIT_OK if good else EXIT_REJECTED)
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print("drop {}: {}".format(drop_id, result["status"]))
            if result["reason"]:
                print("  reason:   {}".format(result["reason"]))
            if snapshot:
                print("  snapshot: {}".format(snapshot))
            if "entry" in result:
                owners = [a["user"] for a in result["entry"]["acl"] if a["level"] == "own"]
                print("  owner:    {}".format(", ".join(owners) or "-"))
                print(_format_entry(result["entry"], "  "))
                if snapshot:
                    objs = [(p, dep.catalog.stat("rods", p).size) for p, k in dep.catalog.walk(snapshot)
                            if k == "data_object"]
                    print("  objects:")
                    for p, size in objs[:20]:
                        print("    {:>12}  {}".format(size, p[len(snapshot) + 1:]))
                    if len(objs) > 20:
                        print("    ... and {} more".format(len(objs) - 20))
            print("  timings:  upload {upload}s, process {process}s".format(**result["timings"]))
    if not args.json:
        print("zone: {}  (inspect with: omero-snapshots zone ls --zone-dir {} -r /{})".format(
            dep.zone_dir, dep.zone_dir, dep.catalog.zone_name))
    return worst


# ---------------------------------------------------------------------- other commands
def cmd_zone_ls(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    admin = dep.admin()
    exists = dep.catalog.exists if _is_simulated(dep) else dep.exists
    walk = dep.catalog.walk if _is_simulated(dep) else dep.walk
    if not exists(args.path):
        print("no such path in {}: {}".format(_where(dep), args.path), file=sys.stderr)
        return EXIT_REJECTED
    paths = [p for p, _ in walk(args.path)] if args.recursive else [args.path]
    if not args.recursive and admin.stat(args.path).kind == "collection":
        listing = admin.list_collection(args.path)
        paths += listing.collections + [s.path for s in listing.data_objects]
    entries = [entry_dict(admin, p) for p in paths]
    if args.json:
        print(json.dumps(entries, sort_keys=True, indent=1))
    else:
        print("\n".join(_format_entry(e) for e in entries))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    res = _admin_rule(dep, "omero_snapshots_list", args.user)
    if not res.get("ok"):
        print(res.get("error"), file=sys.stderr)
        return EXIT_REJECTED
    snaps = res["snapshots"]
    human = "\n".join("{created}  {status:<11} {archive_size:>12}  {path}{lbl}{fix}".format(
        lbl="  [{}]".format(s["label"]) if s.get("label") else "",
        fix="  FIXITY {}: {}".format(s["fixity"], s.get("fixity_detail", "")) if s.get("fixity") in FIXITY_BAD else "",
        **s) for s in snaps) or "no snapshots"
    _emit(args, human, snaps)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    res = _admin_rule(dep, "omero_snapshots_status", args.ident)
    human = "\n".join("{}: {}".format(k, v) for k, v in sorted(res.items()) if v not in (None, []))
    _emit(args, human, res)
    return EXIT_OK if res.get("status") not in ("unknown", None) else EXIT_REJECTED


def cmd_enrol(args: argparse.Namespace) -> int:
    dep = _deployment(args)
    if _user_type(dep, args.irods_user) is None:
        if not args.create_user:
            raise UsageError("iRODS user {!r} does not exist in {}; add --create-user (or: iadmin mkuser {} "
                             "rodsuser)".format(args.irods_user, _where(dep), args.irods_user))
        dep.add_user(args.irods_user)
    res = _admin_rule(dep, "omero_snapshots_enrol", args.irods_user, args.omero_user, args.omero_server,
                      args.mode)
    human = ("enrolled {omero_user}@{omero_server} -> {irods_user}; snapshot root {root}".format(**res)
             if res.get("ok") else "refused: {}".format(res.get("error")))
    _emit(args, human, res)
    return EXIT_OK if res.get("ok") else EXIT_REJECTED


FIXITY_BAD = ("mismatch", "missing", "unrecorded")  # policy.fixity.BAD (not imported at module import)


def cmd_fixity(args: argparse.Namespace) -> int:
    """Audit one snapshot now (the admin rule omero_snapshots_fixity_audit); exit 1 when it is damaged."""
    dep = _deployment(args)
    res = _admin_rule(dep, "omero_snapshots_fixity_audit", args.ident)
    if not res.get("ok"):
        _emit(args, "refused: {}".format(res.get("error")), res)
        return EXIT_REJECTED
    human = "{}: {} ({} objects, {} bytes verified by the server){}".format(
        res.get("snapshot"), res.get("result"), res.get("checked"), res.get("bytes"),
        "".join("\n  {outcome} {path}: {detail}".format(**f) for f in res.get("findings", [])))
    _emit(args, human, res)
    return EXIT_REJECTED if res.get("result") in FIXITY_BAD else EXIT_OK


def _admin_command(rule: str, *fields: str, acts: bool = False) -> Any:
    """acts: the command runs a drop (reprocess, release): a drop that ends refused exits 1, as the README's
    exit codes say, so a script sees that its release put the drop back into quarantine."""
    rejected = ("unknown", "quarantined", "failed") if acts else ("unknown",)

    def run(args: argparse.Namespace) -> int:
        dep = _deployment(args)
        res = _admin_rule(dep, rule, *[getattr(args, f) for f in fields])
        if args.json:
            print(json.dumps(res, sort_keys=True))
        elif "checks" in res:
            for c in res["checks"]:
                print("{:<4} {:<20} {}".format("ok" if c["ok"] else "FAIL", c["check"], c["detail"]))
        else:
            print("\n".join("{}: {}".format(k, v) for k, v in sorted(res.items()) if v not in (None, [])))
        return EXIT_OK if res.get("ok", True) and res.get("status") not in rejected else EXIT_REJECTED
    return run


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omero-snapshots", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--zone-dir", help="directory of a simulated zone (created if new); without it: the real "
                                           "zone of $IRODS_ENVIRONMENT_FILE (or ~/.irods/irods_environment.json)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("simulate", help="drop archives into a simulated zone and run the server policy on them")
    s.add_argument("archives", nargs="+", metavar="ARCHIVE")
    s.add_argument("--omero-user", required=True)
    s.add_argument("--omero-user-id", type=int, default=1)
    s.add_argument("--omero-group", default="default")
    s.add_argument("--omero-server", default=DEFAULT_OMERO_SERVER)
    s.add_argument("--label")
    s.add_argument("--object", action="append", help="Image:1 (repeatable); default: read from transfer.xml")
    s.add_argument("--packer-version", default="1.3.2")
    s.add_argument("--config", help="policy configuration JSON (default: built-in)")
    s.add_argument("--mapping", help="user mapping JSON; unmapped users are then refused")
    s.add_argument("--manifest", help="use this manifest file as is (to try bad ones)")
    s.add_argument("--archive-name", help="name to upload the archive under (default: from the manifest)")
    s.add_argument("--as-user", help="upload as this iRODS user instead of the service account")
    common(s)
    s.set_defaults(func=cmd_simulate)

    z = sub.add_parser("zone", help="inspect a zone (simulated with --zone-dir, else the real one)")
    zsub = z.add_subparsers(dest="zone_command", required=True)
    ls = zsub.add_parser("ls", help="like ils -lA plus imeta ls")
    ls.add_argument("path")
    ls.add_argument("-r", "--recursive", action="store_true")
    common(ls)
    ls.set_defaults(func=cmd_zone_ls)

    li = sub.add_parser("list", help="a user's snapshots, newest first")
    li.add_argument("--user", required=True, help="iRODS user")
    common(li)
    li.set_defaults(func=cmd_list)

    st = sub.add_parser("status", help="status of a drop id or snapshot path")
    st.add_argument("ident", metavar="DROP_OR_SNAPSHOT")
    common(st)
    st.set_defaults(func=cmd_status)

    en = sub.add_parser("enrol", help="map an OMERO user to an iRODS user and create the snapshot root")
    en.add_argument("irods_user")
    en.add_argument("--omero-user", required=True)
    en.add_argument("--omero-server", default=DEFAULT_OMERO_SERVER)
    en.add_argument("--create-user", action="store_true", help="create the iRODS user (rodsuser) if missing")
    en.add_argument("--replace", dest="mode", action="store_const", const="replace", default="new",
                    help="change the iRODS user an already enrolled OMERO user maps to")
    common(en)
    en.set_defaults(func=cmd_enrol)

    un = sub.add_parser("unenrol", help="remove an OMERO user's mapping and the service account's write access")
    un.add_argument("--omero-user", required=True)
    un.add_argument("--omero-server", default=DEFAULT_OMERO_SERVER)
    common(un)
    un.set_defaults(func=_admin_command("omero_snapshots_unenrol", "omero_user", "omero_server"))

    rp = sub.add_parser("reprocess", help="run a drop again as the service account")
    rp.add_argument("drop_id")
    rp.add_argument("--force", dest="mode", action="store_const", const="force", default="normal",
                    help="take the drop's lock over even if its run still looks alive (only when it is dead)")
    common(rp)
    rp.set_defaults(func=_admin_command("omero_snapshots_reprocess", "drop_id", "mode", acts=True))

    rl = sub.add_parser("release", help="move a quarantined drop back and process it again")
    rl.add_argument("drop_id")
    common(rl)
    rl.set_defaults(func=_admin_command("omero_snapshots_release", "drop_id", acts=True))

    pg = sub.add_parser("purge", help="delete a quarantined drop for good (needs --confirm purge:DROP_ID)")
    pg.add_argument("drop_id")
    pg.add_argument("--confirm", default="", help="must be exactly purge:DROP_ID")
    common(pg)
    pg.set_defaults(func=_admin_command("omero_snapshots_purge", "drop_id", "confirm"))

    fx = sub.add_parser("fixity", help="audit one snapshot now: the server recomputes every recorded checksum")
    fx.add_argument("ident", metavar="DROP_OR_SNAPSHOT")
    common(fx)
    fx.set_defaults(func=cmd_fixity)

    de = sub.add_parser("describe", help="give an older snapshot its description files (never overwrites)")
    de.add_argument("ident", metavar="DROP_OR_SNAPSHOT")
    common(de)
    de.set_defaults(func=_admin_command("omero_snapshots_describe", "ident"))

    dr = sub.add_parser("doctor", help="self-check: configuration, mapping, service account, landing, rules")
    common(dr)
    dr.set_defaults(func=_admin_command("omero_snapshots_doctor"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK
    args._open = []
    try:
        return int(args.func(args))
    except UsageError as e:
        print("omero-snapshots: {}".format(e), file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as e:
        print("omero-snapshots: {}: {}".format(type(e).__name__, e), file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - a real zone that cannot be reached or refuses us is a configuration error
        from policy.errors import IrodsError

        if not (isinstance(e, IrodsError) or type(e).__module__.split(".")[0] == "irods"):
            raise
        print("omero-snapshots: iRODS: {}: {}".format(type(e).__name__, str(e) or repr(e)), file=sys.stderr)
        return EXIT_USAGE
    finally:
        for opened in args._open:
            try:
                opened.close()
            except Exception:  # noqa: BLE001 - closing a session must not hide the result
                pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
