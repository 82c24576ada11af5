# Round 12 probes: what a lease heartbeat on a second thread of a delayed rule can rely on (policy/drop_lock.py).
# Python rule text, no install needed (irule -F wants a .r name; run as rods, the server's rodsadmin):
#   cp probe_round12_heartbeat.py r12.r
#   irule -r irods_rule_engine_plugin-python-instance -F r12.r          # as rods
# One JSON line per probe -> <tempdir>/probe12.jsonl (the agent's tempfile.gettempdir()).
# H1: does a Python thread of the rule run while the rule's main thread is inside a microservice call
#     (msiSleep, msiDataObjChksum)? (PREP's callback wrapper would have to release the GIL.)
# H2: can a second thread call `callback` (writeLine, msiCollCreate, msi_atomic_apply_metadata_operations)
#     while the main thread is in Python (time.sleep) or in a microservice call?
# H3: a python-irodsclient session opened on a second thread (server's own environment, proxying as
#     omero-svc when that user exists) doing AVU and collection operations while the main thread runs its
#     own microservice calls, a PRC transfer, and a long microservice call. Skipped when python-irodsclient
#     does not import in the server's python3.
import json
import os
import tempfile
import threading
import time

OUT = os.path.join(tempfile.gettempdir(), "probe12.jsonl")
RUN_H2 = False  # hangs the agent (see main)


def _rec(name, **kw):
    rec = {"probe": name}
    rec.update(kw)
    with open(OUT, "a") as f:
        f.write(json.dumps(rec, default=repr) + "\n")


def _gaps(ticks, t0, t1):
    """Largest gap between consecutive ticks inside [t0, t1], and how many ticks fell inside."""
    inside = [t for t in ticks if t0 <= t <= t1]
    pts = [t0] + inside + [t1]
    return round(max(b - a for a, b in zip(pts, pts[1:])), 3), len(inside)


class Ticker(threading.Thread):
    def __init__(self, period=0.05):
        super().__init__(daemon=True)
        self.period = period
        self.ticks = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.ticks.append(time.time())
            time.sleep(self.period)


def _code(text):
    import re
    m = re.search(r"\[iRods__Error__Code:(-?\d+)\]", text)
    return int(m.group(1)) if m else None


def _try(fn):
    t = time.time()
    try:
        r = fn()
        out = {"ok": True, "code": r.get("code") if isinstance(r, dict) else None}
    except Exception as e:  # noqa: BLE001
        out = {"ok": False, "exc_type": type(e).__name__, "exc": str(e)[:160], "error_code": _code(str(e))}
    out["start"] = t
    out["end"] = time.time()
    return out


def main(rule_args, callback, rei):
    open(OUT, "w").close()
    base = "/tempZone/home/rods/probe12-" + str(int(time.time()))
    callback.msiCollCreate(base, "0", 0)
    _rec("caller", user=str(rei.uoic.userName), pid=os.getpid(), base=base,
         how="irule -r irods_rule_engine_plugin-python-instance -F r12.r (copy of probe_round12_heartbeat.py) as rods")

    # H1: a ticking thread; the main thread in time.sleep, then in msiSleep, then in msiDataObjChksum
    tk = Ticker()
    tk.start()
    t0 = time.time()
    time.sleep(1.0)
    t1 = time.time()
    r = _try(lambda: callback.msiSleep("3", "0"))
    t2 = time.time()
    gap_sleep, n_sleep = _gaps(tk.ticks, t0, t1)
    gap_msi, n_msi = _gaps(tk.ticks, t1, t2)
    _rec("h1_thread_ticks_during_time_sleep", seconds=round(t1 - t0, 3), ticks=n_sleep, max_gap=gap_sleep)
    _rec("h1_thread_ticks_during_msiSleep", call=r, seconds=round(t2 - t1, 3), ticks=n_msi, max_gap=gap_msi)
    # a big object to checksum: 256 MiB of zeros through msiDataObjCreate/Write would be slow through PREP
    # buffers; instead repeat a 4 MiB BytesBuf write 64 times
    try:
        import irods_types
        p = base + "/big.bin"
        fd = callback.msiDataObjCreate(p, "forceFlag=", 0)["arguments"][2]
        buf = irods_types.BytesBuf()
        buf.set_buffer(b"\0" * (4 << 20))
        for _ in range(32):
            callback.msiDataObjWrite(fd, buf, 0)
        callback.msiDataObjClose(fd, 0)
        t3 = time.time()
        r = _try(lambda: callback.msiDataObjChksum(p, "", ""))
        t4 = time.time()
        g, n = _gaps(tk.ticks, t3, t4)
        _rec("h1_thread_ticks_during_msiDataObjChksum_128MiB", call=r, seconds=round(t4 - t3, 3), ticks=n, max_gap=g)
    except Exception as e:  # noqa: BLE001
        _rec("h1_thread_ticks_during_msiDataObjChksum_128MiB", error=repr(e)[:300])
    tk.stop.set()
    tk.join()

    # H2: a second thread calls callback while the main thread sleeps in Python. OBSERVED: the agent hangs for
    # good (no record after this point; the irule client waited 10 minutes; the agent had to be killed with
    # SIGKILL, and it blocked the server's shutdown meanwhile). Off by default: set RUN_H2 to run it again.
    if RUN_H2:
        _h2(callback, base)
    _h3(callback, base)
    _try(lambda: callback.msiRmColl(base, "forceFlag=", 0))
    _rec("done")
    callback.writeLine("stdout", "probe12 done: " + base)


def _h2(callback, base):
    res = {}

    def cb_calls():
        res["writeLine"] = _try(lambda: callback.writeLine("serverLog", "probe12 h2 from a second thread"))
        res["msiCollCreate"] = _try(lambda: callback.msiCollCreate(base + "/h2", "0", 0))
        op = json.dumps({"entity_name": base + "/h2", "entity_type": "collection", "operations": [
            {"operation": "add", "attribute": "probe12.k", "value": "v"}]})
        res["atomic_metadata"] = _try(lambda: callback.msi_atomic_apply_metadata_operations(op, ""))

    th = threading.Thread(target=cb_calls)
    a = time.time()
    th.start()
    time.sleep(2.0)
    th.join(10)
    _rec("h2_callback_from_second_thread_main_in_time_sleep", main_sleep_start=a, results=res, alive=th.is_alive())
    # ... and while the main thread is inside msiSleep
    res2 = {}

    def cb_calls2():
        time.sleep(0.2)
        res2["writeLine"] = _try(lambda: callback.writeLine("serverLog", "probe12 h2b from a second thread"))
        op = json.dumps({"entity_name": base + "/h2", "entity_type": "collection", "operations": [
            {"operation": "add", "attribute": "probe12.k2", "value": "v"}]})
        res2["atomic_metadata"] = _try(lambda: callback.msi_atomic_apply_metadata_operations(op, ""))

    th = threading.Thread(target=cb_calls2)
    th.start()
    a = time.time()
    r = _try(lambda: callback.msiSleep("2", "0"))
    b = time.time()
    th.join(10)
    _rec("h2_callback_from_second_thread_main_in_msiSleep", main_msi=r, main_msi_start=a, main_msi_end=b,
         results=res2, alive=th.is_alive())



def _h3(callback, base):
    # H3: python-irodsclient on a second thread
    try:
        from irods.session import iRODSSession
        import irods
        prc = irods.__version__
    except Exception as e:  # noqa: BLE001
        _rec("h3_skipped", reason="python-irodsclient does not import: {!r}".format(e)[:200])
        prc = None
    if prc is not None:
        env = os.path.expanduser("~/.irods/irods_environment.json")
        ops = []
        stop = threading.Event()
        errs = []
        target = base + "/h3"
        callback.msiCollCreate(target, "0", 0)

        def heartbeat():
            try:
                with iRODSSession(irods_env_file=env) as s:
                    coll = s.collections.get(target)
                    i = 0
                    while not stop.is_set():
                        t = time.time()
                        from irods.meta import AVUOperation, iRODSMeta
                        coll.metadata.apply_atomic_operations(
                            AVUOperation(operation="add", avu=iRODSMeta("probe12.beat", str(i))),
                            *([AVUOperation(operation="remove", avu=iRODSMeta("probe12.beat", str(i - 1)))] if i else []))
                        s.collections.create(target + "/b{}".format(i))
                        ops.append((t, time.time()))
                        i += 1
                        time.sleep(0.1)
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e)[:300])

        hb = threading.Thread(target=heartbeat, daemon=True)
        hb.start()
        time.sleep(1.0)
        # (a) the main thread's own microservice calls, back to back
        a = time.time()
        mres = []
        for i in range(40):
            op = json.dumps({"entity_name": target, "entity_type": "collection", "operations": [
                {"operation": "add", "attribute": "probe12.main", "value": str(i)}]})
            mres.append(_try(lambda: callback.msi_atomic_apply_metadata_operations(op, ""))["ok"])
            mres.append(_try(lambda: callback.msiCollCreate(target + "/m{}".format(i), "0", 0))["ok"])
        b = time.time()
        during = [o for o in ops if a <= o[0] <= b]
        _rec("h3_prc_thread_while_main_calls_microservices", prc_version=prc, main_ok=all(mres), main_calls=len(mres),
             seconds=round(b - a, 3), thread_ops_during=len(during), errors=list(errs))
        # (b) the main thread inside one long microservice call
        a = time.time()
        r = _try(lambda: callback.msiSleep("3", "0"))
        b = time.time()
        during = [o for o in ops if a <= o[0] <= b]
        g, n = _gaps([o[1] for o in ops], a, b)
        _rec("h3_prc_thread_while_main_in_msiSleep", main=r, seconds=round(b - a, 3), thread_ops_during=len(during),
             max_gap=g, errors=list(errs))
        # (c) the main thread transferring with its own PRC session
        a = time.time()
        try:
            with iRODSSession(irods_env_file=env) as s2:
                with s2.data_objects.open(target + "/data.bin", "w") as f:
                    for _ in range(32):
                        f.write(b"\1" * (4 << 20))
                with s2.data_objects.open(target + "/data.bin", "r") as f:
                    while f.read(4 << 20):
                        pass
            xfer = "ok"
        except Exception as e:  # noqa: BLE001
            xfer = repr(e)[:200]
        b = time.time()
        during = [o for o in ops if a <= o[0] <= b]
        g, n = _gaps([o[1] for o in ops], a, b)
        _rec("h3_prc_thread_while_main_transfers_256MiB_with_prc", transfer=xfer, seconds=round(b - a, 3),
             thread_ops_during=len(during), max_gap=g, errors=list(errs))
        stop.set()
        hb.join(10)
        _rec("h3_done", thread_ops=len(ops), errors=list(errs))


INPUT null
OUTPUT ruleExecOut
