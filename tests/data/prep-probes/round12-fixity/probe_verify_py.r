def main(rule_args, callback, rei):
    import json
    for n in ("ok", "corrupt", "missing", "nochk"):
        for o in ("", "verifyChksum=", "ChksumAll=++++verifyChksum="):
            p = "/tempZone/home/rods/fix_probe/%s.bin" % n
            rec = {"probe": "prep_msiDataObjChksum", "name": n, "opts": o, "user": str(rei.uoic.userName)}
            try:
                r = callback.msiDataObjChksum(p, o, "")
                rec["returned"] = {"code": r.get("code"), "status": r.get("status"), "out": str(r["arguments"][2])}
            except RuntimeError as e:
                rec["raised"] = str(e).split("\n")[0][:160]
            callback.writeLine("stdout", json.dumps(rec))
INPUT null
OUTPUT ruleExecOut
