"""One run at a time per drop: a lock collection, taken with a non-recursive create.

Creating a collection that exists fails (CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME),
so `landing/.locks/<drop_id>` is an atomic test-and-set in the catalog itself,
needing no rights beyond the service account's own landing collection. The
delay server may start a retry while the first run is still going; the retry
then stops at once and says so.

The holder marks the lock with a random token and keeps refreshing its expiry
while it works (heartbeat), so a lock whose expiry has passed belongs to a run
that died: another run may take it over. A run checks its token before every
step that writes, and stops if the lock was taken from it (only an admin's
forced reprocess does that). A lock whose expiry was never written (the run
died between the two calls) counts from its creation time.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import AlreadyExists, NotFound
from policy.zone import MetaOp, Zone, owns

LOCKS = ".locks"
EXPIRES = V.NS + "lock_expires"
OWNER = V.NS + "lock_owner"


class LockLost(Exception):
    """Another run took this drop's lock over: stop without writing anything more."""


class LockUnavailable(Exception):
    """The lock cannot be taken at all (a misconfigured landing collection); the message says why."""


def lock_path(config: PolicyConfig, drop_id: str) -> str:
    return config.landing_collection + "/" + LOCKS + "/" + drop_id


class DropLock:
    """A held lock: beat() while working, check() before writing, release() at the end."""

    def __init__(self, zone: Zone, path: str, token: str, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self.zone = zone
        self.path = path
        self.token = token
        self.ttl = ttl
        self.clock = clock
        self.interval = max(1.0, min(60.0, ttl / 4.0))
        self.last_beat = clock()

    def held(self) -> bool:
        try:
            return V.first(self.zone.metadata(self.path), OWNER) == self.token
        except NotFound:
            return False

    def check(self) -> None:
        if not self.held():
            raise LockLost("the lock {} was taken over by another run".format(self.path))

    def beat(self) -> None:
        """Push the expiry forward, at most once per interval (a catalog call each time)."""
        now = self.clock()
        if now - self.last_beat < self.interval:
            return
        avus = self.zone.metadata(self.path)
        if V.first(avus, OWNER) != self.token:
            raise LockLost("the lock {} was taken over by another run".format(self.path))
        ops = [MetaOp("remove", a.attribute, a.value, a.units) for a in avus if a.attribute == EXPIRES]
        ops.append(MetaOp("add", EXPIRES, str(int(now) + self.ttl)))
        self.zone.apply_metadata(self.path, ops)
        self.last_beat = now

    def release(self) -> None:
        """Remove the lock only if it is still ours (a run whose lock was taken over leaves the new one)."""
        if self.held():
            _discard(self.zone, self.path)


class NoLock:
    """For callers that run a use case without a lock (tests of the use case alone)."""

    def beat(self) -> None:
        pass

    def check(self) -> None:
        pass


def _take(zone: Zone, path: str, ttl: int, now: float) -> Optional[str]:
    try:
        zone.create_collection(path, recursive=False)
    except AlreadyExists:
        return None
    token = secrets.token_hex(8)
    try:
        zone.apply_metadata(path, [MetaOp("add", OWNER, token), MetaOp("add", EXPIRES, str(int(now) + ttl))])
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
        avus = zone.metadata(path)
        expires = V.first(avus, EXPIRES)
        if expires is not None and expires.isdigit():
            return int(expires) < int(now)
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
    token = _take(zone, path, ttl, t)
    if token is not None:
        return DropLock(zone, path, token, ttl, clock)
    stale = _is_stale(zone, path, ttl, t)
    if stale is None:
        token = _take(zone, path, ttl, t)
        return DropLock(zone, path, token, ttl, clock) if token else None
    if not (break_lock or stale):
        return None
    # Take over: move the old lock aside (atomic: of two takers only one succeeds), then lock anew.
    aside = "{}.broken-{}".format(path, int(time.time() * 1000))
    try:
        zone.rename(path, aside)
    except (AlreadyExists, NotFound):
        return None
    _discard(zone, aside)
    token = _take(zone, path, ttl, t)
    return DropLock(zone, path, token, ttl, clock) if token else None


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
    expires = V.first(avus, EXPIRES)
    if expires is not None and expires.isdigit():
        return int(expires)
    try:
        return zone.stat(path).modify_time + ttl
    except NotFound:
        return None


def expires_at(zone: Zone, config: PolicyConfig, drop_id: str) -> Optional[str]:
    try:
        return V.first(zone.metadata(lock_path(config, drop_id)), EXPIRES)
    except NotFound:
        return None
