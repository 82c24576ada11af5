import json, hashlib, os
from irods.session import iRODSSession
s = iRODSSession(host="localhost", port=1247, user="fix_reader", password="fixreaderpw", zone="tempZone")
for n in ("ok", "corrupt", "missing", "nochk"):
    p = "/tempZone/home/rods/fix_probe/%s.bin" % n
    rec = {"probe": "data_plane_read_as_reader", "name": n}
    try:
        o = s.data_objects.get(p)
        rec["catalog_checksum"] = o.checksum
        rec["replicas"] = [(r.number, r.status, r.checksum) for r in o.replicas]
        with o.open("r") as f:
            h = hashlib.sha256(f.read()).digest()
        import base64
        rec["recomputed"] = "sha2:" + base64.b64encode(h).decode()
    except Exception as e:
        rec["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
        rec["code"] = getattr(e, "code", None)
    print(json.dumps(rec))
