"""The Zone port implemented directly on the simulated catalog, acting as one user.

Used for the data plane of the fake PREP runtime (production uses a
python-irodsclient session there), by the CLI's `zone ls`, and by tests that
exercise the use cases without going through the callback.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

from policy.errors import error_for
from policy.zone import COLLECTION, DATA_OBJECT, Ace, Avu, Listing, MetaOp, Stat
from simzone.catalog import SimCatalog


class SimZone:
    """Zone port over SimCatalog as `user`."""

    def __init__(self, catalog: SimCatalog, user: str,
                 scheduler: Optional[Callable[[str, str, int], None]] = None) -> None:
        self.catalog = catalog
        self.user = user
        self.zone_name = catalog.zone_name
        self._scheduler = scheduler

    def heartbeat_opener(self) -> Callable[[], "SimZone"]:
        """The drop lease's heartbeat connection: the same zone over a catalog connection of its own."""
        cat, user = self.catalog, self.user
        return lambda: _OwnConnectionZone(SimCatalog(cat.zone_dir, cat.zone_name), user)

    def stat(self, path: str) -> Stat:
        return self.catalog.stat(self.user, path)

    def create_collection(self, path: str, recursive: bool = False) -> None:
        self.catalog.create_collection(self.user, path, recursive)

    def rename(self, src: str, dst: str) -> None:
        self.catalog.rename(self.user, src, dst)

    def set_acl(self, path: str, user: str, level: str, recursive: bool = False) -> None:
        self.catalog.set_acl(self.user, path, user, level, recursive)

    def set_inheritance(self, path: str, inherit: bool, recursive: bool = False) -> None:
        self.catalog.set_inheritance(self.user, path, inherit, recursive)

    def acl(self, path: str) -> List[Ace]:
        return self.catalog.acl(path)

    def apply_metadata(self, path: str, ops: Sequence[MetaOp]) -> None:
        import json

        kind = self.catalog.stat(self.user, path).kind
        self.catalog.apply_metadata(self.user, json.dumps({
            "entity_name": path, "entity_type": kind,
            "operations": [{"operation": o.operation, "attribute": o.attribute, "value": o.value,
                            "units": o.units} for o in ops]}))

    def metadata(self, path: str) -> List[Avu]:
        return self.catalog.metadata(path)

    def checksum(self, path: str) -> str:
        return self.catalog.checksum(self.user, path)

    def list_collection(self, path: str) -> Listing:
        return self.catalog.list_collection(path)

    def find_by_metadata(self, attribute: str, value: str, kind: str = COLLECTION) -> List[str]:
        return self.catalog.find_by_metadata(attribute, value, kind)

    def user_type(self, name: str) -> Optional[str]:
        return self.catalog.user_type(name)

    def schedule(self, rule_call: str, delay_seconds: int = 1) -> None:
        if self._scheduler is None:
            raise error_for(-1828000, "this simulated zone has no delay server attached")
        self._scheduler(self.user, rule_call, delay_seconds)

    def remove_object(self, path: str) -> None:
        self.catalog.unlink(self.user, path)

    def remove_collection(self, path: str) -> None:
        self.catalog.remove_collection(self.user, path)

    def read_small(self, path: str, limit: int) -> bytes:
        st = self.catalog.stat(self.user, path)
        if st.kind != DATA_OBJECT:
            raise error_for(-130000, path + " is a collection")
        if st.size > limit:
            raise error_for(-130000, "{} is {} bytes, over the limit of {}".format(path, st.size, limit))
        with self.catalog.open_read(self.user, path) as f:
            return f.read(limit + 1)

    def open_read(self, path: str) -> BinaryIO:
        return self.catalog.open_read(self.user, path)

    def open_new(self, path: str) -> BinaryIO:
        return self.catalog.open_new(self.user, path)  # type: ignore[return-value]

    def put_new(self, path: str, data: Any, sha256_hex: Optional[str] = None) -> None:
        """PrcZone.put_new (one DATA_OBJ_PUT with the bytes): SimCatalog.put_new, as round 12 observed it."""
        verify = None
        if sha256_hex:
            import base64

            verify = "sha2:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")
        self.catalog.put_new(self.user, path, bytes(data), verify)


    def objects_under(self, top: str) -> "Dict[str, Tuple[int, str]]":
        """path -> (size, catalog checksum or '') of every data object at or below `top`: one query."""
        return self.catalog.objects_under(top)

class ClientZone(SimZone):
    """What a remote python-irodsclient client sees: like SimZone, but a finished upload fires the
    server's post-PEPs (pep_resource_modified_post, acPostProcForPut, pep_api_data_obj_close_post),
    exactly as FakeServer.client_put does. The OMERO side uses this in tests in place of a PRC session.
    """

    def __init__(self, server: Any, user: str) -> None:
        super().__init__(server.catalog, user)
        self.server = server
        self.pep_outcomes: List[Any] = []

    def open_new(self, path: str) -> BinaryIO:
        from simzone.prep import PepOutcome

        writer = self.catalog.open_new(self.user, path)
        # PrcZone.open_new is create() then open('w'): the create's close fires the upload PEP first (round 9).
        created = PepOutcome()
        self.server.fire_create_peps(path, self.user, created)
        self.pep_outcomes.append(created)
        size = [0]
        inner_write = writer.write

        def counting_write(data: bytes) -> int:
            size[0] += len(data)
            return inner_write(data)

        def fire() -> None:
            outcome = PepOutcome()
            api = "prc_parallel" if size[0] > 32 * 1024 * 1024 else "prc"
            self.server.fire_write_peps(path, self.user, size[0], api, outcome, reopened=True)
            self.pep_outcomes.append(outcome)

        writer.write = counting_write  # type: ignore[method-assign]
        writer.on_close = fire
        return writer  # type: ignore[return-value]


class _OwnConnectionZone(SimZone):
    """A SimZone over a catalog connection it owns (the lease heartbeat's): closing it closes that connection."""

    def close(self) -> None:
        self.catalog.close()
