"""One run at a time per drop: a lock collection, taken with a non-recursive create, held as a lease.

Creating a collection that exists fails (CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME),
so `landing/.locks/<drop_id>` is an atomic test-and-set in the catalog itself,
needing no rights beyond the service account's own landing collection. The
delay server may start a retry while the first run is still going; the retry
then stops at once and says so, and comes back when the lease would end.

The lock is a lease: its holder marks it with a random token and an expiry
(`limits.lock_seconds`, default 2 minutes) and keeps pushing the expiry forward
(every `limits.lock_refresh_seconds`, default 30 s) while it works. A lock whose
expiry has passed belongs to a run that died (a killed agent, a stopped server):
another run takes it over. The refresh comes from a HEARTBEAT thread with its own
connection (`zone.heartbeat_zone()`: a python-irodsclient session in the server,
the data plane's), so it does not depend on the step in progress: a step longer
than the lease (a member write, a large verification) does not lose the lock.

What a real server allows (round 12, tests/data/prep-observed/round12-heal-heartbeat.jsonl):
- a python-irodsclient session on a second thread of a rule works beside the rule's
  own microservice calls and its data-plane transfers;
- NO Python thread of the agent runs while the rule's main thread is inside a
  microservice call (PREP holds the interpreter): a step that is one long
  microservice call (the archive's checksum, the native extraction, a large
  member's checksum, the recursive hand-over) is therefore announced with
  `covering()`, which writes an expiry long enough for that step first;
- a second thread must never call the rule's `callback`: that hangs the agent.
Without a heartbeat connection (python-irodsclient not installed, e.g. unpacking
off) the main thread refreshes the lease between steps (`beat()`), and the long
microservice steps are covered the same way.

A run checks its token before every step that writes, and stops if the lock was
taken from it; a holder whose lease lapsed (its heartbeat could not write) renews
it before writing, or stops if it is no longer its own. The lock also names its
holder (`omero.snapshot.lock_holder`: agent pid and host), for admins. A lock whose
expiry was never written (the run died between the two calls) counts from its
creation time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import AlreadyExists, NotFound
from policy.zone import Avu, MetaOp, Zone, owns

LOCKS = ".locks"
EXPIRES = V.NS + "lock_expires"
OWNER = V.NS + "lock_owner"
HOLDER = V.NS + "lock_holder"  # "pid <pid> on <host>": the agent that holds the lock (admins; the live tests)
HEARTBEAT_WAKE_SECONDS = 1.0  # how often (wall time) the heartbeat looks at the lease's clock
MIB = 1 << 20

log = logging.getLogger("omero_snapshots.drop_lock")


class LockLost(Exception):
    """Another run took this drop's lock over: stop without writing anything more."""


class LockUnavailable(Exception):
    """The lock cannot be taken at all (a misconfigured landing collection); the message says why."""


def lock_path(config: PolicyConfig, drop_id: str) -> str:
    return config.landing_collection + "/" + LOCKS + "/" + drop_id


def expiry_of(avus: List[Avu]) -> Optional[int]:
    """The lease's end: the latest expiry recorded (two writers racing may leave two values)."""
    values = [int(a.value) for a in avus if a.attribute == EXPIRES and a.value.isdigit()]
    return max(values) if values else None


def holder_text() -> str:
    return "pid {} on {}".format(os.getpid(), socket.gethostname())


class DropLock:
    """A held lock (a lease): check() before writing, beat() between items, covering() around a step that is
    one long microservice call, release() at the end. start_heartbeat() keeps it alive from its own thread."""

    def __init__(self, zone: Zone, path: str, token: str, ttl: int, clock: Callable[[], float] = time.time,
                 refresh: Optional[float] = None, cover_mib_per_second: float = 20.0) -> None:
        self.zone = zone
        self.path = path
        self.token = token
        self.ttl = ttl
        self.clock = clock
        self.refresh = float(refresh) if refresh else max(1.0, min(60.0, ttl / 4.0))
        self.interval = self.refresh
        self.cover_rate = max(0.1, float(cover_mib_per_second)) * MIB
        now = clock()
        self.last_beat = now
        self.expires = int(now) + ttl  # the lease's end as this holder last wrote it
        self.objects_hint = 0  # objects the hand-over will change (set by the unpack step): sizes its cover
        self._cover_until = 0
        self._write_lock = threading.Lock()
        self._lost: Optional[str] = None
        self._heartbeat: Optional[_Heartbeat] = None

    # ------------------------------------------------------------------ state
    def held(self) -> bool:
        try:
            return V.first(self.zone.metadata(self.path), OWNER) == self.token
        except NotFound:
            return False

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise LockLost(self._lost)

    def check(self) -> None:
        """Before a writing step: the lock is still ours (one catalog read); a lapsed lease is renewed first."""
        self._raise_if_lost()
        if not self.held():
            raise LockLost("the lock {} was taken over by another run".format(self.path))
        if self.clock() >= self.expires:
            self._write(self.zone)  # our lease lapsed (the heartbeat could not write): renew before writing

    def beat(self) -> None:
        """Between items of a step (members, batches). With a working heartbeat: no catalog call, only stop if
        the heartbeat found the lock taken. Without one: refresh the expiry at most once per refresh interval."""
        self._raise_if_lost()
        hb = self._heartbeat
        now = self.clock()
        if hb is not None and hb.healthy() and now < self.expires:
            return
        if now - self.last_beat < self.refresh and now < self.expires:
            return
        self._write(self.zone)

    def _write(self, zone: Zone) -> None:
        """Push the expiry forward through `zone` (the main zone or the heartbeat's own), if the lock is ours."""
        with self._write_lock:
            now = self.clock()
            try:
                avus = zone.metadata(self.path)
            except NotFound:
                raise LockLost("the lock {} is gone: another run took it over".format(self.path)) from None
            if V.first(avus, OWNER) != self.token:
                raise LockLost("the lock {} was taken over by another run".format(self.path))
            until = max(int(now) + self.ttl, self._cover_until)
            ops = [MetaOp("remove", a.attribute, a.value, a.units) for a in avus if a.attribute == EXPIRES]
            ops.append(MetaOp("add", EXPIRES, str(until)))
            zone.apply_metadata(self.path, ops)
            self.expires = until
            self.last_beat = now

    # ------------------------------------------------------------------ long microservice steps
    def cover_seconds_for_bytes(self, nbytes: int) -> float:
        return float(nbytes) / self.cover_rate

    @contextlib.contextmanager
    def covering(self, seconds: float) -> Iterator[None]:
        """Around a step the heartbeat cannot run through (one microservice call holds the agent's Python: round
        12): the lease first covers the step (`seconds` more than the usual lease), then shrinks back with the
        next refresh. A step shorter than half a refresh interval needs no cover (no catalog call then)."""
        self._raise_if_lost()
        if seconds < self.refresh / 2:
            yield
            return
        self._cover_until = int(self.clock() + seconds) + self.ttl
        try:
            self._write(self.zone)
            yield
        finally:
            self._cover_until = 0

    def covering_bytes(self, nbytes: int) -> Any:
        """covering() for a microservice step over `nbytes` (checksum, native extraction), at the slowest rate
        the configuration expects (`limits.lock_cover_mib_per_second`)."""
        return self.covering(self.cover_seconds_for_bytes(nbytes))

    def covering_objects(self, count: int) -> Any:
        """covering() for a recursive ACL change over `count` objects (the hand-over): 5 ms an object."""
        return self.covering(count * 0.005)

    # ------------------------------------------------------------------ heartbeat
    def start_heartbeat(self, open_zone: Optional[Callable[[], Any]]) -> bool:
        """Refresh the lease from a thread with its own connection (`open_zone()` makes it, lazily, on that
        thread's first beat). False (the main thread's beat() refreshes instead) when there is none."""
        if open_zone is None or self._heartbeat is not None:
            return False
        self._heartbeat = _Heartbeat(self, open_zone)
        self._heartbeat.start()
        return True

    def stop_heartbeat(self) -> None:
        hb, self._heartbeat = self._heartbeat, None
        if hb is not None:
            hb.stop(self.refresh + 30.0)

    def release(self) -> None:
        """Stop the heartbeat, then remove the lock only if it is still ours (a run whose lock was taken over
        leaves the new one)."""
        self.stop_heartbeat()
        if self._lost is None and self.held():
            _discard(self.zone, self.path)


class _Heartbeat(threading.Thread):
    """Refreshes one lease every `refresh` seconds (of the lease's clock) over its own connection."""

    def __init__(self, lock: DropLock, open_zone: Callable[[], Any]) -> None:
        super().__init__(name="omero-snapshots-lease " + lock.path.rsplit("/", 1)[-1], daemon=True)
        self.lock = lock
        self.open_zone = open_zone
        self.zone: Any = None
        self.failures = 0
        self.beats = 0
        self._stop_event = threading.Event()

    def healthy(self) -> bool:
        return self.is_alive() and self.failures == 0

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self.join(timeout)

    def _close(self) -> None:
        zone, self.zone = self.zone, None
        close = getattr(zone, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001,S110 - a connection we are dropping anyway
                pass

    def run(self) -> None:
        lock = self.lock
        try:
            while not self._stop_event.wait(HEARTBEAT_WAKE_SECONDS):
                if lock.clock() - lock.last_beat < lock.refresh:
                    continue
                try:
                    if self.zone is None:
                        self.zone = self.open_zone()
                    lock._write(self.zone)
                    self.failures = 0
                    self.beats += 1
                except LockLost as e:
                    lock._lost = str(e)
                    return
                except Exception as e:  # noqa: BLE001 - try again with a new connection; beat() covers meanwhile
                    self.failures += 1
                    log.warning("lease %s: the heartbeat could not refresh it (%s: %s); retrying",
                                lock.path, type(e).__name__, str(e)[:200])
                    self._close()
        finally:
            self._close()


class NoLock:
    """For callers that run a use case without a lock (tests of the use case alone)."""

    objects_hint = 0

    def beat(self) -> None:
        pass

    def check(self) -> None:
        pass

    def covering(self, seconds: float) -> Any:
        return contextlib.nullcontext()

    def covering_bytes(self, nbytes: int) -> Any:
        return contextlib.nullcontext()

    def covering_objects(self, count: int) -> Any:
        return contextlib.nullcontext()


def _take(zone: Zone, path: str, ttl: int, now: float) -> Optional[str]:
    try:
        zone.create_collection(path, recursive=False)
    except AlreadyExists:
        return None
    token = secrets.token_hex(8)
    try:
        zone.apply_metadata(path, [MetaOp("add", OWNER, token), MetaOp("add", EXPIRES, str(int(now) + ttl)),
                                   MetaOp("add", HOLDER, holder_text())])
    except Exception:
        # Not ours yet: leave no lock behind that only its expiry could clear (best effort; then it expires).
        try:
            _discard(zone, path)
        except Exception:  # noqa: BLE001,S110
            pass
        raise
    return token


def _is_stale(zone: Zone, path: str, ttl: int, now: float) -> Optional[bool]:
    """True if the holder is dead, False if alive, None if the lock vanished meanwhile."""
    try:
        expires = expiry_of(zone.metadata(path))
        if expires is not None:
            return expires < int(now)
        created = zone.stat(path).modify_time
    except NotFound:
        return None
    return bool(created) and created + ttl < int(now)


def acquire(zone: Zone, config: PolicyConfig, drop_id: str, break_lock: bool = False,
            now: Optional[float] = None, clock: Callable[[], float] = time.time) -> Optional[DropLock]:
    """The held lock; None when another live run holds it (or, with break_lock, only after taking it over).

    clock is the time the lock's expiry is counted in (the server's; a simulated zone passes its own, so
    that a dead run's lock expires in simulated time too); now, if given, wins over it.
    """
    locks = config.landing_collection + "/" + LOCKS
    # After this succeeds, `locks` is a collection (a data object of that name fails it with -834000).
    # Ownership is read from the ACL alone: a collection the service account may not read shows it no ACL
    # rows through PREP (round 10), so a squatted one is refused here, while an error of the catalog on
    # the way propagates with its own code instead of passing for a squatter.
    zone.create_collection(locks, recursive=True)
    if not owns(zone, locks, zone.user):
        raise LockUnavailable("{} is not owned by the service account '{}': someone else can write into the "
                              "landing collection; the admin must remove it and restrict the landing collection "
                              "to the service account".format(locks, zone.user))
    path = lock_path(config, drop_id)
    ttl = config.limits.lock_seconds
    t = clock() if now is None else now

    def held(token: Optional[str]) -> Optional[DropLock]:
        if token is None:
            return None
        return DropLock(zone, path, token, ttl, clock, refresh=config.limits.lock_refresh_seconds,
                        cover_mib_per_second=config.limits.lock_cover_mib_per_second)

    token = _take(zone, path, ttl, t)
    if token is not None:
        return held(token)
    stale = _is_stale(zone, path, ttl, t)
    if stale is None:
        return held(_take(zone, path, ttl, t))
    if not (break_lock or stale):
        return None
    # Take over: move the old lock aside (atomic: of two takers only one succeeds), then lock anew.
    aside = "{}.broken-{}".format(path, int(time.time() * 1000))
    try:
        zone.rename(path, aside)
    except (AlreadyExists, NotFound):
        return None
    _discard(zone, aside)
    return held(_take(zone, path, ttl, t))


def _discard(zone: Zone, path: str) -> None:
    try:
        zone.remove_collection(path)
    except NotFound:
        pass


def live_lock_expiry(zone: Zone, config: PolicyConfig, drop_id: str, now: float) -> Optional[int]:
    """When the drop's lock may be taken over, if a run that still looks alive holds it; None if nobody does.

    A retry that finds the lock held waits at least this long: the holder may be dead, and only then
    can its lock be taken over.
    """
    path = lock_path(config, drop_id)
    ttl = config.limits.lock_seconds
    try:
        avus = zone.metadata(path)
    except NotFound:
        return None
    stale = _is_stale(zone, path, ttl, now)
    if stale is None or stale:
        return None
    expires = expiry_of(avus)
    if expires is not None:
        return expires
    try:
        return zone.stat(path).modify_time + ttl
    except NotFound:
        return None


def expires_at(zone: Zone, config: PolicyConfig, drop_id: str) -> Optional[str]:
    try:
        expires = expiry_of(zone.metadata(lock_path(config, drop_id)))
    except NotFound:
        return None
    return None if expires is None else str(expires)


def holder_of(zone: Zone, config: PolicyConfig, drop_id: str) -> Optional[str]:
    """Who holds the drop's lock ("pid <pid> on <host>"), if anyone: what an admin looks for before a forced
    reprocess, and what the live fault tests kill."""
    try:
        return V.first(zone.metadata(lock_path(config, drop_id)), HOLDER)
    except NotFound:
        return None
