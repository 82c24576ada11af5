"""The delayed rule's use case: ingest a drop, then (when enabled) unpack it, then hand it over.

The unpack step plugs in as ingest's process hook, between `placed` and the
hand-over, because only the service account can write the content and it
loses write access at the hand-over.
"""

from __future__ import annotations

from typing import Optional

from policy.config import PolicyConfig
from policy.ingest import Outcome, ProcessHook, ingest_drop
from policy.mapping import UserMapping
from policy.zone import Zone


def unpack_hook(config: PolicyConfig) -> Optional[ProcessHook]:
    """The unpack step, or None when the configuration turns it off.

    NOT YET IMPLEMENTED (issue 3): until policy.unpack exists, snapshots stop at `placed`.
    """
    if not config.unpack.enabled:
        return None
    try:
        from policy.unpack import unpack_step  # noqa: F401  (arrives with issue 3)
    except ImportError:
        return None
    return unpack_step


def process_drop(zone: Zone, config: PolicyConfig, mapping: UserMapping, drop_id: str) -> Outcome:
    return ingest_drop(zone, config, mapping, drop_id, process_hook=unpack_hook(config))
