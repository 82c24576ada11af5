"""The glue between an OMERO script's client/connection and the library, kept out of the scripts.

The three scripts in omero_client/scripts/ only declare their parameters
(OMERO parses that part on upload) and call ``run_script`` with one of the
``*_task`` functions below. Everything here takes the script's ``client`` and
``conn`` (BlitzGateway) duck-typed and imports no omero module, so the whole
path from inputs to the researcher's message runs in the tests with fakes.

Nothing here takes a credential, host or iRODS path from the researcher: the
service account, the landing collection and the server name come from
omero_client.settings alone.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Callable, Dict, Optional, TextIO

from omero_client.load import LoadRefused, load
from omero_client.pack import CliTransferPacker, CliTransferUnpacker, ObjectList, Packer, PackError, Unpacker
from omero_client.progress import ProgressLog
from omero_client.save import Poll, SaveError, save
from omero_client.settings import Settings, SettingsError, load_settings
from omero_client.snapshots import counts_by_status, format_listing, snapshots_of
from policy.errors import IrodsError
from policy.manifest import ManifestError, Who

log = logging.getLogger("omero_snapshots.omero_client")

MESSAGE_LIST_LIMIT = 20
# Failures whose message is written for the researcher: shown as is, no traceback.
EXPECTED_ERRORS = (SettingsError, SaveError, LoadRefused, PackError, ManifestError, ValueError)


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


def _zone(settings: Settings, zone: Any) -> Any:
    return zone if zone is not None else settings.open_zone()


def _close(zone: Any, owned: bool) -> None:
    if owned and hasattr(zone, "close"):
        zone.close()


def save_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              packer: Optional[Packer] = None, out: Optional[TextIO] = None, poll: Optional[Poll] = None) -> str:
    inputs = client.getInputs(unwrap=True)
    settings = settings or load_settings()
    objects = selection(inputs)
    who = identity(conn, settings.server_name)
    label = inputs.get("Label") or None
    owned = zone is None
    zone = _zone(settings, zone)
    try:
        result = save(zone, settings.landing, who, objects, packer or CliTransferPacker(client), label=label,
                      workdir=settings.workdir, progress=ProgressLog(out or sys.stdout),
                      poll=poll or Poll(timeout=settings.poll_seconds))
    finally:
        _close(zone, owned)
    print(result.message, file=out or sys.stdout)
    return result.message


def list_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              out: Optional[TextIO] = None) -> str:
    settings = settings or load_settings()
    who = identity(conn, settings.server_name)
    owned = zone is None
    zone = _zone(settings, zone)
    try:
        snaps = snapshots_of(zone, settings.landing, who.omero_user, who.omero_server)
    finally:
        _close(zone, owned)
    print(format_listing(snaps), file=out or sys.stdout)
    if not snaps:
        return "No snapshots saved from OMERO yet by {} on {}.".format(who.omero_user, who.omero_server)
    counts = ", ".join("{} {}".format(n, s) for s, n in sorted(counts_by_status(snaps).items()))
    head = "{} snapshot{} saved by {} on {} ({}), newest first; load one with 'Load from iRODS' by its number or " \
           "path:".format(len(snaps), "" if len(snaps) == 1 else "s", who.omero_user, who.omero_server, counts)
    return head + "\n" + format_listing(snaps, limit=MESSAGE_LIST_LIMIT)


def load_task(client: Any, conn: Any, settings: Optional[Settings] = None, zone: Any = None,
              unpacker: Optional[Unpacker] = None, out: Optional[TextIO] = None) -> str:
    inputs = client.getInputs(unwrap=True)
    settings = settings or load_settings()
    who = identity(conn, settings.server_name)
    owned = zone is None
    zone = _zone(settings, zone)
    try:
        path = (inputs.get("Snapshot") or "").strip()
        index = inputs.get("Snapshot_Index")
        if not path:
            if not index:
                raise ValueError("give the Snapshot path or its Snapshot_Index (the number 'List iRODS Snapshots' "
                                 "shows)")
            snaps = snapshots_of(zone, settings.landing, who.omero_user, who.omero_server)
            if not 1 <= int(index) <= len(snaps):
                raise ValueError("there is no snapshot number {}: you have {} (run 'List iRODS Snapshots')".format(
                    index, len(snaps)))
            path = snaps[int(index) - 1].path
        result = load(zone, path, who.omero_user, who.omero_server, unpacker or CliTransferUnpacker(client),
                      settings.workdir, landing=settings.landing, progress=ProgressLog(out or sys.stdout,
                                                                                      what="downloaded"))
    finally:
        _close(zone, owned)
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
