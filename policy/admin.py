"""Admin operations on drops: release a quarantined drop, purge one, and the self-check (doctor).

Release and purge act on what the service account owns (its landing and
quarantine collections), so they run AS the service account: the admin rule
starts them through a session proxying as that account, and no admin-mode
ACL is ever needed. Purge is the only deletion in the whole policy: it needs
an explicit confirmation argument and only ever touches a quarantined drop.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import IrodsError, NotFound
from policy.ingest import NS_RULE
from policy.placement import is_safe_drop_id
from policy.zone import COLLECTION, MetaOp, Zone


class AdminError(ValueError):
    """Refused admin request; the message says why and what to do."""


def quarantined_path(zone: Zone, config: PolicyConfig, drop_id: str) -> str:
    if not is_safe_drop_id(drop_id):
        raise AdminError("not a valid drop id: {!r}".format(drop_id[:80]))
    prefix = config.quarantine_collection + "/"
    for path in zone.find_by_metadata(V.DROP_ID, drop_id, COLLECTION):
        if path.startswith(prefix) and "/" not in path[len(prefix):]:
            return path
    direct = prefix + drop_id
    try:
        zone.stat(direct)
        return direct
    except NotFound:
        raise AdminError("drop {} is not in quarantine ({})".format(drop_id, config.quarantine_collection)) from None


def release(zone: Zone, config: PolicyConfig, drop_id: str) -> str:
    """Move a quarantined drop back to the landing collection, its refusal cleared, ready to reprocess."""
    src = quarantined_path(zone, config, drop_id)
    dst = config.landing_collection + "/" + drop_id
    try:
        zone.stat(dst)
        raise AdminError("{} already exists; a drop with this id is in the landing collection".format(dst))
    except NotFound:
        pass
    zone.rename(src, dst)
    current = zone.metadata(dst)
    ops = [MetaOp("remove", a.attribute, a.value, a.units) for a in current
           if a.attribute in (V.STATUS, V.REASON, NS_RULE, V.UPDATED)]
    ops.append(MetaOp("add", V.STATUS, "released"))
    ops.append(MetaOp("add", V.UPDATED, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    zone.apply_metadata(dst, ops)
    return dst


def purge(zone: Zone, config: PolicyConfig, drop_id: str, confirm: str) -> Dict[str, Any]:
    """Delete a quarantined drop for good. confirm must read 'purge:<drop_id>'."""
    if confirm != "purge:" + drop_id:
        raise AdminError("purge deletes the quarantined drop for good; confirm with the argument 'purge:{}'"
                         .format(drop_id))
    path = quarantined_path(zone, config, drop_id)
    from policy.unpack import remove_tree

    removed = remove_tree(zone, path)
    return {"purged": path, "objects_removed": removed}


# ---------------------------------------------------------------------- doctor
def doctor(zone: Zone, config_path: str, load: Callable[[], PolicyConfig], mapping_loader: Callable[[Any], Any],
           core_exports: Optional[List[str]] = None,
           data_plane: Optional[Callable[[PolicyConfig], str]] = None) -> Dict[str, Any]:
    """Self-check for the admin: every line says ok or what is wrong."""
    checks: List[Dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    try:
        config = load()
        check("configuration", True, "{} is valid".format(config_path))
    except Exception as e:  # noqa: BLE001 - reported, not raised
        check("configuration", False, "{}: {}".format(config_path, e))
        return {"ok": False, "checks": checks}
    try:
        mapping = mapping_loader(config)
        check("mapping", True, "{} users mapped ({})".format(len(list(mapping.entries)), config.mapping_file))
    except Exception as e:  # noqa: BLE001
        check("mapping", False, "{}: {}".format(config.mapping_file, e))
    svc_type = zone.user_type(config.service_account)
    check("service account", svc_type == "rodsuser",
          "'{}' is {}".format(config.service_account, svc_type or "missing") +
          ("" if svc_type == "rodsuser" else "; it must be a plain rodsuser (iadmin mkuser {} rodsuser)"
           .format(config.service_account)))
    try:
        st = zone.stat(config.landing_collection)
        owners = [a.user for a in zone.acl(config.landing_collection) if a.level == "own"]
        ok = st.kind == COLLECTION and config.service_account in owners
        check("landing collection", ok, "{} owned by {}".format(config.landing_collection, ", ".join(owners) or "-")
              + ("" if ok else "; it must be owned by the service account"))
    except NotFound:
        check("landing collection", False, "{} does not exist; create it as {} (imkdir -p)".format(
            config.landing_collection, config.service_account))
    if core_exports is not None:
        expected = {"pep_resource_modified_post", "omero_snapshots_process_drop"}
        missing = sorted(expected - set(core_exports))
        check("rules loaded", not missing, "core exports our PEP and the delayed rule" if not missing else
              "not ours or missing in core: {} (check the loader lines in /etc/irods/core.py; a rule core.py "
              "defines itself is kept: call ours from it)".format(", ".join(missing)))
    if data_plane is not None:
        try:
            check("data plane", True, data_plane(config))
        except Exception as e:  # noqa: BLE001 - reported, not raised
            check("data plane", False, "the in-server python-irodsclient session as {} failed ({}: {}); unpacking "
                  "needs it: check ~irods/.irods/irods_environment.json and its .irodsA (docs/install.md)".format(
                      config.service_account, type(e).__name__, str(e)[:200]))
    pending = _stale_delayed_rules(zone)
    if pending is not None:
        check("delay server", pending == 0, "no delayed rule of ours waits more than 10 minutes" if pending == 0 else
              "{} delayed rule(s) of ours wait more than 10 minutes: is the delay server running?".format(pending))
    recent = _recent_drops(zone, config)
    check("recent drops", True, recent)
    stuck = stuck_drops(zone, config)
    check("stuck drops", not stuck, "none" if not stuck else "{} drop(s) nothing works on for 15 minutes, "
          "reprocess each (omero-snapshots reprocess DROP_ID): {}".format(len(stuck), ", ".join(stuck[:10])))
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def _stale_delayed_rules(zone: Zone) -> Optional[int]:
    query = getattr(zone, "delayed_rules", None)
    if query is None:
        return None
    try:
        rows = query("omero_snapshots_process_drop")
    except IrodsError:
        return None
    now = time.time()
    return sum(1 for _name, when in rows if when and now - float(when) > 600)


def _recent_drops(zone: Zone, config: PolicyConfig) -> str:
    try:
        listing = zone.list_collection(config.landing_collection)
    except NotFound:
        return "no landing collection"
    names = [os.path.basename(c) for c in listing.collections if is_safe_drop_id(os.path.basename(c))]
    try:
        quarantined = len(zone.list_collection(config.quarantine_collection).collections)
    except NotFound:
        quarantined = 0
    if not names and not quarantined:
        return "no drop has arrived yet: save one from OMERO and check that its status becomes 'queued'"
    return "{} drop record(s) in the landing collection, {} in quarantine".format(len(names), quarantined)


STUCK_STATES = ("queued", "accepted", "processing", "unpacking", "released")


def stuck_drops(zone: Zone, config: PolicyConfig, older_than: int = 900, limit: int = 500,
                now: Optional[float] = None) -> List[str]:
    """Drops that nothing is working on: no status at all (the upload PEP did not queue them), or an
    unfinished status, not updated for `older_than` seconds, and no lock held. Each needs a reprocess."""
    import calendar

    from policy.drop_lock import lock_path

    t = time.time() if now is None else now
    try:
        listing = zone.list_collection(config.landing_collection)
    except NotFound:
        return []
    out = []
    for coll in sorted(listing.collections, reverse=True)[:limit]:  # drop ids start with their time: newest
        drop_id = os.path.basename(coll)
        if not is_safe_drop_id(drop_id):
            continue
        avus = zone.metadata(coll)
        status = V.first(avus, V.STATUS)
        if status is not None and status not in STUCK_STATES:
            continue
        updated = V.first(avus, V.UPDATED)
        try:
            when = calendar.timegm(time.strptime(updated, "%Y-%m-%dT%H:%M:%SZ")) if updated else \
                zone.stat(coll).modify_time
        except ValueError:
            when = 0
        if when and t - when < older_than:
            continue
        try:
            zone.stat(lock_path(config, drop_id))
            continue  # a run holds it (or its lock will expire and the next run takes over)
        except NotFound:
            pass
        from policy.retry import PROCESS_RULE
        from policy.sweep import delayed_rules_naming, recent

        if any(PROCESS_RULE in text and recent(when, t, older_than)
               for text, when in delayed_rules_naming(zone, drop_id)):
            continue  # a run (a retry waiting out its backoff, say) is due for it: something works on it
        out.append("{} ({})".format(drop_id, status or "no status"))
    return out
