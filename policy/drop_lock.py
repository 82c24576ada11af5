"""One run at a time per drop: a lock collection, taken with a non-recursive create.

Creating a collection that exists fails (CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME),
so `landing/.locks/<drop_id>` is an atomic test-and-set in the catalog itself,
needing no rights beyond the service account's own landing collection. The
delay server may start a retry while the first run is still going (issue 6);
the retry then stops at once and says so. A lock left by a killed run expires
after `limits.lock_seconds`; an admin's reprocess breaks it at once.
"""

from __future__ import annotations

import time
from typing import Optional

from policy import vocabulary as V
from policy.config import PolicyConfig
from policy.errors import AlreadyExists, NotFound
from policy.zone import Avu, MetaOp, Zone

LOCKS = ".locks"
EXPIRES = V.NS + "lock_expires"


def lock_path(config: PolicyConfig, drop_id: str) -> str:
    return config.landing_collection + "/" + LOCKS + "/" + drop_id


def _take(zone: Zone, path: str, ttl: int) -> bool:
    try:
        zone.create_collection(path, recursive=False)
    except AlreadyExists:
        return False
    zone.apply_metadata(path, [MetaOp("add", EXPIRES, str(int(time.time()) + ttl))])
    return True


def acquire(zone: Zone, config: PolicyConfig, drop_id: str, break_lock: bool = False,
            now: Optional[float] = None) -> Optional[str]:
    """The lock's path when taken; None when another live run holds it."""
    path = lock_path(config, drop_id)
    zone.create_collection(config.landing_collection + "/" + LOCKS, recursive=True)
    ttl = config.limits.lock_seconds
    if _take(zone, path, ttl):
        return path
    try:
        expires = V.first(zone.metadata(path), EXPIRES)
    except NotFound:
        return path if _take(zone, path, ttl) else None
    stale = expires is not None and expires.isdigit() and int(expires) < int(now if now is not None else time.time())
    if not (break_lock or stale):
        return None
    # Take over: move the old lock aside (atomic: of two takers only one succeeds), then lock anew.
    aside = "{}.broken-{}".format(path, int(time.time() * 1000))
    try:
        zone.rename(path, aside)
    except (AlreadyExists, NotFound):
        return None
    _discard(zone, aside)
    return path if _take(zone, path, ttl) else None


def release(zone: Zone, path: str) -> None:
    _discard(zone, path)


def _discard(zone: Zone, path: str) -> None:
    try:
        zone.remove_collection(path)
    except NotFound:
        pass


def describe(zone: Zone, config: PolicyConfig, drop_id: str) -> Optional[Avu]:
    try:
        avus = zone.metadata(lock_path(config, drop_id))
    except NotFound:
        return None
    value = V.first(avus, EXPIRES)
    return Avu(EXPIRES, value or "?")
