"""Probe for a REAL OMERO server: what zero-copy Save and Load's report assume, but no test has observed.

Not collected by pytest (no test_ prefix): the suite stays offline. Run it in the OMERO server's
virtualenv (omero-py, omero-cli-transfer, this package), as a user who can read the images:

    python tests/omero_live_probe.py -s localhost -p 4064 -u jdoe -w PASSWORD Image:51 Image:52

It writes nothing to OMERO. It prints one JSON line per observation:

- ``router``: the client's Ice.Default.Router and the (server, port) the CLI would be given;
- ``stream_vs_folder``: the tar of the zero-copy path (``--binaries none`` + SessionReads) against
  the tar of the folder that the real ``omero transfer pack --binaries all`` leaves, member by
  member (names, sizes, sha256): the acceptance test of tests/test_stream_pack.py, live;
- ``unpack_hql``: CliTransferUnpacker's read-only queries (max ids, provenance, containers,
  orphans), run with a dummy md5, to show the server parses them and what shapes come back.

Both tars are written to a temporary directory (the probe needs 2x the data there) and removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def emit(kind: str, **data: Any) -> None:
    print(json.dumps(dict(probe=kind, **data), default=str), flush=True)


def members(path: str) -> List[Tuple[str, int, str]]:
    out = []
    with tarfile.open(path) as t:
        for m in t:
            f = t.extractfile(m) if m.isfile() else None
            out.append((m.name, m.size, hashlib.sha256(f.read()).hexdigest() if f is not None else "dir"))
    return out


def main() -> int:
    import omero.clients  # noqa: F401

    from omero_client.pack import CliTransferPacker, CliTransferUnpacker, server_address
    from omero_client.stream_pack import CliTransferStreamPacker
    from omero_client.transfer_xml import PacketIndex
    from omero_client.upload import stream_folder_as_tar, stream_packet_as_tar

    ap = argparse.ArgumentParser()
    ap.add_argument("-s", "--server", required=True)
    ap.add_argument("-p", "--port", type=int, default=4064)
    ap.add_argument("-u", "--user", required=True)
    ap.add_argument("-w", "--password", required=True)
    ap.add_argument("objects", nargs="+", help="Type:id, one type (as a Save selection)")
    a = ap.parse_args()
    objects = [(o.split(":")[0], int(o.split(":")[1])) for o in a.objects]
    c = omero.client(a.server, a.port)
    c.createSession(a.user, a.password)
    tmp = tempfile.mkdtemp(prefix="omero-live-probe-")
    try:
        emit("router", router=c.getProperty("Ice.Default.Router"), cli=server_address(c))
        meta = os.path.join(tmp, "stream", "packet")
        os.makedirs(os.path.dirname(meta))
        planned = CliTransferStreamPacker(c).prepare(objects, meta)
        with open(os.path.join(tmp, "stream.tar"), "wb") as f:
            stream_packet_as_tar(meta, planned, f)
        folder = os.path.join(tmp, "folder", "packet")
        os.makedirs(os.path.dirname(folder))
        CliTransferPacker(c).pack(objects, folder)
        with open(os.path.join(tmp, "folder.tar"), "wb") as f:
            stream_folder_as_tar(folder, f)
        s, fo = members(os.path.join(tmp, "stream.tar")), members(os.path.join(tmp, "folder.tar"))
        diff: Dict[str, Any] = {"only_stream": sorted(set(s) - set(fo))[:20],
                                "only_folder": sorted(set(fo) - set(s))[:20]}
        emit("stream_vs_folder", same=s == fo, members=len(s), same_names=[m[0] for m in s] == [m[0] for m in fo],
             **diff)
        query = c.getSession().getQueryService()
        uid = c.getSession().getAdminService().getEventContext().userId
        before = CliTransferUnpacker._max_ids(query)
        report = CliTransferUnpacker._report(query, "0" * 32, before, int(uid), PacketIndex())
        emit("unpack_hql", max_ids=before, report=report.__dict__)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        c.closeSession()
    return 0


if __name__ == "__main__":
    sys.exit(main())
