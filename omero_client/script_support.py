"""The glue between an OMERO script's client/connection and the library, kept out of the scripts.

The three scripts in omero_client/scripts/ only declare their parameters
(OMERO parses that part on upload) and call ``run_script`` with one of the
``*_task`` functions below. Everything here takes the script's ``client`` and
``conn`` (BlitzGateway) duck-typed and imports no omero module, so the whole
path from inputs to the researcher's message runs in the tests with fakes.

Nothing here takes a credential, host or iRODS path from the researcher: the
service account, the landing collection and the server name come from
omero_client.settings alone, per zone when the facility configured several
(omero_client.zones: Save writes to the one zone the routing picks, List and
Load look in every zone the user is routed to).
"""

from __future__ import annotations

import logging
import sys
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO

from omero_client.load import LoadRefused, load
from omero_client.pack import CliTransferPacker, CliTransferUnpacker, ObjectList, Packer, PackError, Unpacker
from omero_client.progress import ProgressLog
from omero_client.save import Poll, SaveError, save
from omero_client.settings import Settings, SettingsError, load_settings
from omero_client.snapshots import counts_by_status, format_listing
from omero_client.zones import (
    ZoneEntry,
    ZoneSet,
    ZoneUnavailable,
    describe,
    is_zone_failure,
    list_across,
    open_zone_set,
    resolve_snapshot_zone,
)
from policy.errors import IrodsError
from policy.manifest import ManifestError, Who

log = logging.getLogger("omero_snapshots.omero_client")

MESSAGE_LIST_LIMIT = 20
# Failures whose message is written for the researcher: shown as is, no traceback.
EXPECTED_ERRORS = (SettingsError, SaveError, LoadRefused, PackError, ManifestError, ValueError, ZoneUnavailable)


def identity(conn: Any, server_name: str) -> Who:
    """Who is running the script, as OMERO's session says (never from a parameter)."""
    ec = conn.getEventContext()
    return Who(omero_user=str(ec.userName), omero_user_id=int(ec.userId), omero_group=str(ec.groupName),
               omero_group_id=int(ec.groupId), omero_server=server_name)


def selection(inputs: Dict[str, Any]) -> ObjectList:
    """Data_Type + IDs (OMERO.web pre-fills them from the tree selection) -> [(type, id), ...]."""
    dtype = inputs.get("Data_Type")
    ids = inputs.get("IDs") or []
    if not dtype:
        raise ValueError("choose what to save: Data_Type is missing")
    return [(str(dtype), int(i)) for i in ids]


def member_groups(conn: Any) -> List[str]:
    """The current group first, then every other group the user is a member of (BlitzGateway's list).

    List and Load look in every zone any of these groups routes the user to; if
    OMERO cannot say (an old gateway, a failure), the current group alone.
    """
    names = [str(conn.getEventContext().groupName)]
    getter = getattr(conn, "getGroupsMemberOf", None)
    if getter is not None:
        try:
            for group in getter():
                name = str(group.getName())
                if name not in names:
                    names.append(name)
        except Exception as e:  # the current group still gives an answer
            log.warning("could not read the user's OMERO groups (%s); using the current group only", e)
    return names


def _zone_set(settings: Optional[Settings], zone: Any, zones: Optional[ZoneSet]) -> ZoneSet:
    """What the task works with: given zones, the given single zone/settings (tests), or the files on the server."""
    if zones is not None:
        return zones
    if settings is not None or zone is not None:
        return ZoneSet.single(settings or load_settings(), zone)
    return open_zone_set()


@contextmanager
def _naming(zones: ZoneSet, entry: ZoneEntry) -> Iterator[None]:
    """Whatever goes wrong in one zone says which zone it was (a researcher can only report what they see)."""
    try:
        yield
    except ZoneUnavailable:
        raise
    except LoadRefused as e:  # (save's own messages already name the zone)
        if not zones.multi:
            raise
        raise LoadRefused("iRODS zone '{}': {}".format(entry.name, e)) from None
    except Exception as e:
        if isinstance(e, OSError) or not is_zone_failure(e):
            raise  # a local problem (scratch disk, packer), not the zone's
        raise ZoneUnavailable(entry.name, "the work was cut short ({})".format(describe(e))) from None


def make_packer(client: Any, save_mode: str) -> Any:
    """The facility's choice (settings ``save_mode``): zero-copy streaming by default, the folder as fallback."""
    if save_mode == "folder":
        return CliTransferPacker(client)
    from omero_client.stream_pack import CliTransferStreamPacker

    return CliTransferStreamPacker(client)


def save_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              packer: Optional[Packer] = None, out: Optional[TextIO] = None, poll: Optional[Poll] = None,
              zones: Optional[ZoneSet] = None) -> str:
    """Save to the ONE zone the routing picks for this user and group (the only zone written to)."""
    inputs = client.getInputs(unwrap=True)
    zs = _zone_set(settings, zone, zones)
    try:
        objects = selection(inputs)
        ec = conn.getEventContext()
        entry, why = zs.config.route_with_reason(str(ec.userName), str(ec.groupName))
        zone_settings = zs.settings(entry)
        who = identity(conn, zone_settings.server_name)
        label = inputs.get("Label") or None
        target = zs.open(entry)  # probes the zone before anything is packed for it
        with _naming(zs, entry):
            result = save(target, zone_settings.landing, who, objects,
                          packer or make_packer(client, zone_settings.save_mode),
                          label=label, workdir=zone_settings.workdir, progress=ProgressLog(out or sys.stdout),
                          poll=poll or Poll(timeout=zone_settings.poll_seconds),
                          zone_label=entry.name if zs.multi else None)
    finally:
        zs.close()
    message = result.message
    if zs.multi:
        message += "\n(iRODS zone '{}' was chosen as {}.)".format(entry.name, why)
    print(message, file=out or sys.stdout)
    return message


def list_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              out: Optional[TextIO] = None, zones: Optional[ZoneSet] = None) -> str:
    """The user's snapshots in every zone they are routed to; a zone that cannot be read is named, not fatal."""
    zs = _zone_set(settings, zone, zones)
    try:
        ec = conn.getEventContext()
        user = str(ec.userName)
        entries = zs.config.zones_for(user, member_groups(conn) if zs.multi else [str(ec.groupName)])
        found, down = list_across(zs, entries, user)
        if not zs.multi:
            if down:
                raise down[0]
            server_name = zs.settings(entries[0]).server_name
    finally:
        zs.close()
    snaps = [z.snapshot for z in found]
    labels = [z.zone for z in found] if zs.multi else None
    print(format_listing(snaps, zones=labels), file=out or sys.stdout)
    if not zs.multi:
        if not snaps:
            return "No snapshots saved from OMERO yet by {} on {}.".format(user, server_name)
        counts = ", ".join("{} {}".format(n, s) for s, n in sorted(counts_by_status(snaps).items()))
        head = "{} snapshot{} saved by {} on {} ({}), newest first; load one with 'Load from iRODS' by its number " \
               "or path:".format(len(snaps), "" if len(snaps) == 1 else "s", user, server_name, counts)
        return head + "\n" + format_listing(snaps, limit=MESSAGE_LIST_LIMIT)
    names = ", ".join(e.name for e in entries)
    notes = "".join("\nNot listed: {}".format(e) for e in down)
    if not snaps:
        return "No snapshots saved from OMERO yet by {} in iRODS zone{} {}.{}".format(
            user, "" if len(entries) == 1 else "s", names, notes)
    counts = ", ".join("{} {}".format(n, s) for s, n in sorted(counts_by_status(snaps).items()))
    head = "{} snapshot{} saved by {} in iRODS zone{} {} ({}), newest first; load one with 'Load from iRODS' by its " \
           "number or as shown (zone: path):".format(len(snaps), "" if len(snaps) == 1 else "s", user,
                                                     "" if len(entries) == 1 else "s", names, counts)
    return head + "\n" + format_listing(snaps, limit=MESSAGE_LIST_LIMIT, zones=labels) + notes


def load_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              unpacker: Optional[Unpacker] = None, out: Optional[TextIO] = None,
              zones: Optional[ZoneSet] = None) -> str:
    """Load (zone, snapshot): the zone from the reference or List's number, then the checks of omero_client.load."""
    inputs = client.getInputs(unwrap=True)
    zs = _zone_set(settings, zone, zones)
    try:
        ec = conn.getEventContext()
        user = str(ec.userName)
        entries = zs.config.zones_for(user, member_groups(conn) if zs.multi else [str(ec.groupName)])
        ref = (inputs.get("Snapshot") or "").strip()
        index = inputs.get("Snapshot_Index")
        if ref:
            entry, path = resolve_snapshot_zone(zs, entries, ref)
        else:
            if not index:
                raise ValueError("give the Snapshot path or its Snapshot_Index (the number 'List iRODS Snapshots' "
                                 "shows)")
            found, down = list_across(zs, entries, user)
            if down and not zs.multi:
                raise down[0]
            if down:
                raise LoadRefused("snapshot numbers cannot be trusted while {} cannot be listed ({}); give the "
                                  "Snapshot as 'List iRODS Snapshots' shows it (zone: path) instead".format(
                                      ", ".join("iRODS zone '{}'".format(e.zone) for e in down),
                                      "; ".join(e.detail for e in down)))
            if not 1 <= int(index) <= len(found):
                raise ValueError("there is no snapshot number {}: you have {} (run 'List iRODS Snapshots')".format(
                    index, len(found)))
            chosen = found[int(index) - 1]
            entry, path = zs.config.entry(chosen.zone), chosen.snapshot.path
        zone_settings = zs.settings(entry)
        target = zs.open(entry)
        with _naming(zs, entry):
            result = load(target, path, user, zone_settings.server_name, unpacker or CliTransferUnpacker(client),
                          zone_settings.workdir, landing=zone_settings.landing,
                          progress=ProgressLog(out or sys.stdout, what="downloaded"),
                          zone_label=entry.name if zs.multi else None)
    finally:
        zs.close()
    print(result.message, file=out or sys.stdout)
    return result.message


def run_script(client: Any, title: str, task: Callable[[], str], rstring: Callable[[str], Any],
               err: Optional[TextIO] = None) -> str:
    """Run a task and ALWAYS leave a Message for OMERO.web: the result, or why it failed.

    Expected failures (written for researchers) go to the Message and stderr
    as they are; anything else also leaves its traceback on stderr (the job's
    Error output) for the facility. Closing the session is the script's
    ``finally``.
    """
    err = err or sys.stderr
    try:
        message = task()
    except EXPECTED_ERRORS as e:
        message = "{} failed: {}".format(title, e)
        print(message, file=err)
    except ImportError as e:
        message = missing_module_message(title, e)
        print(message, file=err)
        traceback.print_exc(file=err)
    except Exception as e:
        if isinstance(e, IrodsError) or type(e).__module__.split(".")[0] == "irods":
            # python-irodsclient's texts name the host or the iRODS error, never a password
            message = "{} failed: OMERO could not work with iRODS ({}: {}). Tell the OMERO/iRODS facility; " \
                      "details are in the job's error output.".format(title, type(e).__name__, str(e)[:300])
        else:
            message = "{} failed unexpectedly ({}). Tell the OMERO/iRODS facility; details are in the job's " \
                      "error output.".format(title, type(e).__name__)
        traceback.print_exc(file=err)
    client.setOutput("Message", rstring(message))
    return message


def missing_module_message(title: str, e: ImportError) -> str:
    """A Python package the OMERO server's environment lacks (omero-cli-transfer, jsonschema, ...), named."""
    missing = getattr(e, "name", None) or str(e)
    return ("{} failed: the OMERO server's Python environment cannot import '{}' ({}). Tell the OMERO/iRODS "
            "facility: it must be installed into the OMERO server's virtualenv (docs/omero.md section 1).".format(
                title, missing, str(e)[:200]))


def run_job(client: Any, title: str, task: Callable[[Any, Any], str]) -> str:
    """What every script does inside its try: keep the job's session alive (a long transfer makes no OMERO
    calls), open the gateway on the script's client, and run the task through run_script. The script
    itself keeps the ``finally: client.closeSession()``, so even a failing import here closes it."""
    from omero.gateway import BlitzGateway
    from omero.rtypes import rstring

    client.enableKeepAlive(60)
    conn = BlitzGateway(client_obj=client)
    return run_script(client, title, lambda: task(client, conn), rstring)
