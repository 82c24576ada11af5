"""Round 12: a python-irodsclient query of more than one page, after writes from several threads of the same
session (what policy.prc_zone.PrcZone saw after the unpack's writers). Run as root on the server's machine,
under the shared lock, with the admin environment the live harness writes:

    flock -s /run/lock/omero-snapshots-real-zone.lock python tests/data/prep-observed/drivers/round12_paging.py \
        /var/tmp/omero-snapshots-live/admin/irods_environment.json wt-perf_probe 520

python-irodsclient takes a connection from the session's pool for every page of a query (irods/query.py,
get_batches -> execute -> pool.get_connection). One JSON record per case on stdout; the server log's agent
stack traces ("stacktrace_agent_pid") are counted before and after each query.
"""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from irods.api_number import api_number
from irods.column import Like
from irods.message import FileOpenRequest, StringStringMap, iRODSMessage
from irods.models import Collection, DataObject
from irods.session import iRODSSession

LOG = "/var/log/irods/irods.log"


def crashes():
    with open(LOG, "rb") as f:
        return f.read().count(b'"stacktrace_agent_pid"')


def put(s, path, data):
    body = FileOpenRequest(objPath=path, createMode=0o644, openFlags=0, offset=0, dataSize=len(data), numThreads=0,
                           oprType=1, KeyValPair_PI=StringStringMap({"dataIncluded": "", "regChksum": ""}))
    with s.pool.get_connection() as conn:
        conn.send(iRODSMessage("RODS_API_REQ", msg=body, bs=data, int_info=api_number["DATA_OBJ_PUT_AN"]))
        conn.recv()


def query(s, base):
    q = s.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum)
    return len(list(q.filter(Like(Collection.name, base + "/%"))))


def main():
    env, user, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = iRODSSession(irods_env_file=env, client_user=user)
    base = "/{}/home/{}/round12-paging-{}".format(s.zone, user, int(time.time()))
    s.collections.create(base)
    for k in range(10):
        s.collections.create("{}/d{}".format(base, k))
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda i: put(s, "{}/d{}/m{:04d}".format(base, i % 10, i), b"x" * 65536), range(n)))
    for label, session in (("same_session_after_4_threads", s),
                           ("fresh_session", iRODSSession(irods_env_file=env, client_user=user))):
        rec = {"probe": "round12_paging", "case": label, "objects": n,
               "idle_connections_before": len(session.pool.idle)}
        before = crashes()
        try:
            rec["rows"] = query(session, base)
        except Exception as e:  # noqa: BLE001 - the outcome is the record
            rec["error"] = type(e).__name__
        time.sleep(12)  # the server logs an agent's stack trace about 10 s after the crash
        rec["agent_stack_traces_logged"] = crashes() - before
        print(json.dumps(rec, sort_keys=True), flush=True)
    cleanup = iRODSSession(irods_env_file=env, client_user=user)
    cleanup.collections.remove(base, recurse=True, force=True)


if __name__ == "__main__":
    main()
