"""omero-cli-transfer behind two small interfaces, so the library is testable without OMERO.

``Packer`` turns OMERO objects into a packet FOLDER (never an archive: the tar
is streamed into iRODS by omero_client.upload); it is the fallback
(``save_mode: folder``), the default being the zero-copy packer of
omero_client.stream_pack, which uses the same CLI plumbing. ``Unpacker`` turns a
downloaded archive back into NEW OMERO objects. The production classes drive
``omero transfer`` through ``omero.cli.CLI`` on the script's own session (there
is no public library API, ../shared/reference/omero-facts.md §1); omero is
imported inside their methods only, so this module imports anywhere.

Session handling: the CLI joins the script's session with ``-k <session>``.
omero-cli-transfer starts further CLI instances of its own (``omero download``,
``omero export``) that find the session through the CLI's session store, so
the store is pointed (``OMERO_SESSIONDIR``) at a private temporary directory
that is removed afterwards: the session key is never left on disk, and never
printed or logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, TextIO, Tuple

from policy.manifest import OBJECT_TYPES

log = logging.getLogger("omero_snapshots.omero_client")

ObjectList = List[Tuple[str, int]]
TRANSFER_NS = "openmicroscopy.org/cli/transfer"
PACKER_NAME = "omero-cli-transfer"


class PackError(RuntimeError):
    """omero-cli-transfer could not pack or unpack; the message is meant for the researcher."""


class Packer(Protocol):
    """Makes the packet folder for some OMERO objects of ONE type."""

    name: str  # recorded in the manifest (archive.packer.name)
    version: str  # recorded in the manifest (archive.packer.version)

    def pack(self, objects: ObjectList, folder: str) -> None:
        """Create ``folder`` (which must not exist yet) holding transfer.xml and the binaries."""
        ...


class Unpacker(Protocol):
    """Imports an archive as NEW OMERO objects and says which."""

    def unpack(self, path: str) -> Any:
        """``path``: a .tar or .zip made by omero-cli-transfer. Returns an UnpackReport (or, from simple
        doubles, just the new objects, e.g. [("Image", 301)])."""
        ...


def object_spec(objects: Sequence[Tuple[str, int]]) -> str:
    """``[("Image", 1), ("Image", 2)]`` -> ``"Image:1,2"``: omero transfer pack takes one type per call."""
    if not objects:
        raise ValueError("nothing selected: choose at least one Project, Dataset, Image, Screen or Plate")
    types = sorted({t for t, _ in objects})
    if len(types) != 1:
        raise ValueError("one snapshot holds objects of one type; the selection mixes {}".format(", ".join(types)))
    otype = types[0]
    if otype not in OBJECT_TYPES:
        raise ValueError("cannot save {!r}: only {} can be saved".format(otype, ", ".join(OBJECT_TYPES)))
    ids: List[int] = []
    for _, oid in objects:
        if isinstance(oid, bool) or not isinstance(oid, int) or oid < 1:
            raise ValueError("{!r} is not a valid OMERO id".format(oid))
        if oid not in ids:
            ids.append(oid)
    return "{}:{}".format(otype, ",".join(str(i) for i in ids))


def parameters() -> Any:
    """A fresh omero.sys.ParametersI (omero.clients defines it; ``import omero`` alone does not)."""
    import omero.clients  # noqa: F401
    from omero.sys import ParametersI

    return ParametersI()


def packer_version(default: str = "unknown") -> str:
    try:
        from importlib.metadata import version

        return version(PACKER_NAME)
    except Exception:  # not installed (tests): the manifest still needs a non-empty version
        return default


def router_endpoint(router: str) -> Optional[Tuple[str, str, str]]:
    """``OMERO.Glacier2/router:ssl -p 4064 -h omero.example.org`` -> ("ssl", "omero.example.org", "4064").

    The script processor hands a script only ``Ice.Default.Router`` (with
    omero.job/user/pass); ``omero.port`` then reads 4064 whatever the server
    listens on, and omero.scripts.client copies only the host. The first
    endpoint is taken, as omero.scripts.client does for the host. None when the
    string holds no endpoint with a host.
    """
    if not router or ":" not in router:
        return None
    for endpoint in router.split(":")[1:]:
        try:
            tokens = shlex.split(endpoint)
        except ValueError:
            continue
        if not tokens:
            continue
        proto, opts = tokens[0].lower(), {}
        for flag, value in zip(tokens[1:], tokens[2:]):
            if flag in ("-h", "-p") and flag not in opts:
                opts[flag] = value
        if "-h" in opts:
            return proto, opts["-h"], opts.get("-p", DEFAULT_PORTS.get(proto, "4064"))
    return None


DEFAULT_PORTS = {"ssl": "4064", "tcp": "4063", "ws": "80", "wss": "443"}


def server_address(client: Any) -> Tuple[str, str]:
    """(server, port) for ``omero -s SERVER -p PORT``: from the router endpoint, else omero.host/omero.port.

    The CLI's default protocol is ssl; another one goes in front of the host
    (``tcp://127.0.0.1``), the URL form omero.client understands.
    """
    endpoint = router_endpoint(str(client.getProperty("Ice.Default.Router") or ""))
    if endpoint is not None:
        proto, host, port = endpoint
        return (host if proto == "ssl" else "{}://{}".format(proto, host)), port
    return str(client.getProperty("omero.host") or "localhost"), str(client.getProperty("omero.port") or "4064")


def _session_args(client: Any) -> List[str]:
    """Global CLI arguments that join the script's session, at the host AND port the router names."""
    server, port = server_address(client)
    return ["-q", "-s", server, "-p", port, "-k", str(client.getSessionId())]


@contextlib.contextmanager
def _private_session_dir(parent: Optional[str], client: Any = None) -> Iterator[str]:
    """A 0700 OMERO_SESSIONDIR for the duration of one CLI call, removed afterwards.

    omero-cli-transfer starts CLI commands of its own (download, export, import) with no login
    arguments: they use the session store's CURRENT session. Joining with -k does not make a key
    current, so the store is seeded with the script's session and marked current.
    """
    path = tempfile.mkdtemp(prefix="omero-cli-sessions-", dir=parent)
    old = os.environ.get("OMERO_SESSIONDIR")
    os.environ["OMERO_SESSIONDIR"] = path
    try:
        if client is not None:
            _seed_session_store(path, client)
        yield path
    finally:
        if old is None:
            os.environ.pop("OMERO_SESSIONDIR", None)
        else:
            os.environ["OMERO_SESSIONDIR"] = old
        shutil.rmtree(path, ignore_errors=True)


def _seed_session_store(path: str, client: Any) -> None:
    try:
        from omero.util.sessions import SessionsStore
    except ImportError:  # no omero-py (tests with a fake CLI): nothing to seed
        return
    host, port = server_address(client)
    user = client.getSession().getAdminService().getEventContext().userName
    store = SessionsStore(path)
    props = {"omero.port": port}
    store.add(host, user, client.getSessionId(), props)
    store.set_current(host, user, client.getSessionId(), props)


def default_cli() -> Any:
    from omero.cli import CLI

    cli = CLI()
    cli.loadplugins()
    return cli


_default_cli = default_cli


def require_cli_transfer() -> None:
    """Fail with what to install when omero-cli-transfer is missing (the CLI would only say 'unknown command')."""
    import importlib.util

    if importlib.util.find_spec("omero_cli_transfer") is None:
        raise PackError("omero-cli-transfer is not installed in the OMERO server's Python environment; the facility "
                        "must install it (pip install 'omero-cli-transfer>=1.3.0', see docs/omero.md)")


MAX_CAPTURED = 20000  # characters of the nested CLIs' output kept for the job's Info output


@contextlib.contextmanager
def captured_output(parent: Optional[str], sink: Optional[TextIO] = None, secret: str = "") -> Iterator[List[str]]:
    """Send everything the CLI and its children print (fd 1 and 2, and sys.stdout/err) to a private file.

    omero-cli-transfer's nested CLIs print "Using session for ..." and the
    import's output on stderr, which OMERO.web shows as the job's Error output
    on every successful job. Captured here and copied (its last MAX_CAPTURED
    characters) to ``sink``, the job's Info output, so stderr keeps only real
    errors. The yielded list receives the captured text, for failure messages.
    """
    sink = sink if sink is not None else sys.stdout
    out: List[str] = []
    fd, path = tempfile.mkstemp(prefix="omero-cli-output-", dir=parent)
    saved: List[Tuple[int, int]] = []
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed stream has nothing to flush
                pass
        for target in (1, 2):
            try:
                saved.append((target, os.dup(target)))
                os.dup2(fd, target)
            except OSError:  # no such descriptor (a daemon without stdio): Python-level capture only
                pass
        with os.fdopen(os.dup(fd), "w", encoding="utf-8", errors="replace") as text:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                try:
                    yield out
                finally:
                    text.flush()
    finally:
        for target, copy in saved:
            os.dup2(copy, target)
            os.close(copy)
        os.close(fd)
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4 * MAX_CAPTURED))
                captured = f.read().decode("utf-8", "replace")[-MAX_CAPTURED:]
        finally:
            os.remove(path)
        if secret:
            captured = captured.replace(secret, "<session>")
        out.append(captured)
        if captured.strip():
            try:
                sink.write("--- omero CLI output ---\n" + captured.rstrip("\n") + "\n--- end of omero CLI output ---\n")
                sink.flush()
            except Exception:  # the job's output is informative only
                pass


def _run_cli(cli_factory: Callable[[], Any], args: List[str], what: str, scratch: Optional[str],
             client: Any = None, output: Optional[TextIO] = None) -> None:
    """Run one omero CLI command; turn a non-zero exit into PackError without echoing the arguments.

    Its output (and its nested CLIs') goes to ``output`` (the job's Info
    output), not stderr; a failure quotes the last lines of it.
    """
    secret = str(client.getSessionId()) if client is not None else ""
    cli = cli_factory()
    failure: Optional[str] = None
    with _private_session_dir(scratch, client):
        with captured_output(scratch, output, secret) as captured:
            try:
                cli.invoke(args, strict=True)
            except SystemExit as e:  # the CLI exits on argument errors
                failure = "{} failed (exit {})".format(what, e.code)
            except Exception as e:
                rv = getattr(e, "rv", None)
                detail = str(e)[:300]
                if secret:
                    detail = detail.replace(secret, "<session>")  # never show the session key
                failure = "{} failed{}: {}{}".format(what, "" if rv is None else " (exit {})".format(rv),
                                                     type(e).__name__, ": " + detail if detail else "")
            finally:
                close = getattr(cli, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # a CLI that cannot close its own client must not hide the real outcome
                        log.debug("closing the omero CLI failed", exc_info=True)
    if failure is not None:
        tail = [line for line in "".join(captured).splitlines() if line.strip()][-5:]
        raise PackError(failure + ("; its last output: " + " | ".join(tail) if tail else ""))


class CliTransferPacker:
    """``omero transfer pack --binaries all Type:ids <folder>`` on the script's session.

    omero-cli-transfer >= 1.3.0 moves its staging folder (``<folder>_folder``)
    to ``<folder>`` when the target has no .tar/.zip extension: no archive is
    written locally. ``client`` is the script's ``omero.client``.
    """

    name = PACKER_NAME
    mode = "folder"

    def __init__(self, client: Any, cli_factory: Optional[Callable[[], Any]] = None) -> None:
        self.client = client
        self.cli_factory = cli_factory or default_cli
        self.version = packer_version()

    def pack(self, objects: ObjectList, folder: str) -> None:
        spec = object_spec(objects)
        if os.path.splitext(folder)[1] in (".tar", ".zip"):
            raise ValueError("pack to a folder, not to {!r}: the tar is streamed into iRODS".format(folder))
        if os.path.exists(folder):
            raise ValueError("the packet folder {} already exists".format(folder))
        if self.cli_factory is default_cli:
            require_cli_transfer()
        args = _session_args(self.client) + ["transfer", "pack", "--binaries", "all", spec, folder]
        log.info("packing %s into %s", spec, folder)
        _run_cli(self.cli_factory, args, "omero transfer pack " + spec, os.path.dirname(folder), self.client)
        if not os.path.isdir(folder):
            raise PackError("omero transfer pack {} wrote no packet folder (omero-cli-transfer older than 1.3.0 "
                            "writes an archive instead; install 1.3.0 or later)".format(spec))


@dataclass
class UnpackReport:
    """What one ``omero transfer unpack`` did, as far as OMERO's catalogue shows it afterwards."""

    created: ObjectList  # every object the unpack created and linked, containers included
    expected_images: Optional[int] = None  # images in the snapshot's transfer.xml
    imported_images: int = 0  # of those, how many were imported and linked
    failed: List[str] = field(default_factory=list)  # the snapshot's images that were not, e.g. "Image:53 'a.tif'"
    orphans: List[int] = field(default_factory=list)  # images imported but left unlinked (omero-cli-transfer #109)


CONTAINER_TYPES = ("Project", "Dataset", "Screen", "Plate")


class CliTransferUnpacker:
    """``omero transfer unpack <archive>``: always NEW objects, never merged into or overwriting existing ones.

    omero transfer unpack prints no id map (omero-cli-transfer issue #71) and
    runs ``omero import`` without ``strict``, so a failed import is silent.
    What it did is read back from the catalogue, bounded by the highest ids
    seen just before it ran and by the current user as owner:

    - images and plates: the provenance MapAnnotation (namespace
      openmicroscopy.org/cli/transfer) unpack links to each, whose ``md5`` is
      the archive's MD5 and whose ``origin_image_id``/``origin_plate_id`` is
      the source id in transfer.xml: this names the snapshot's images that
      were NOT imported;
    - containers: ``populate_omero`` creates every Project, Dataset, Screen and
      Plate of transfer.xml, linked or empty: the new ones of this owner whose
      name is in transfer.xml;
    - orphans: new images of this owner, named like one of the snapshot's
      files or images, that carry no provenance (imported, then not matched).
    """

    def __init__(self, client: Any, cli_factory: Optional[Callable[[], Any]] = None,
                 output: Optional[TextIO] = None) -> None:
        self.client = client
        self.cli_factory = cli_factory or default_cli
        self.output = output

    def unpack(self, path: str) -> UnpackReport:
        from omero_client.transfer_xml import TransferXmlError, index_of_archive

        if os.path.splitext(path)[1] not in (".tar", ".zip"):
            raise ValueError("omero transfer unpack reads only .tar and .zip files, not {}".format(path))
        try:
            index = index_of_archive(path)
        except (TransferXmlError, OSError) as e:
            raise PackError("the snapshot's archive cannot be loaded: {}".format(e)) from None
        md5 = _md5_file(path)
        session = self.client.getSession()
        query = session.getQueryService()
        owner = int(session.getAdminService().getEventContext().userId)
        before = self._max_ids(query)
        if self.cli_factory is default_cli:
            require_cli_transfer()
        args = _session_args(self.client) + ["transfer", "unpack", path]
        _run_cli(self.cli_factory, args, "omero transfer unpack", os.path.dirname(path), self.client, self.output)
        return self._report(query, md5, before, owner, index)

    @staticmethod
    def _max_ids(query: Any) -> Dict[str, int]:
        out = {}
        for otype in ("Annotation", "Image") + CONTAINER_TYPES:
            rows = query.projection("select max(o.id) from {} o".format(otype), parameters())
            value = rows[0][0].val if rows and rows[0] and rows[0][0] is not None else None
            out[otype] = int(value or 0)
        return out

    @staticmethod
    def _report(query: Any, md5: str, before: Dict[str, int], owner: int, index: Any) -> UnpackReport:
        def rows(hql: str, params: Any) -> List[List[Any]]:
            return [[None if c is None else c.val for c in r] for r in query.projection(hql, params) if r]

        # images and plates that carry this archive's provenance, with their source ids
        linked: Dict[str, Dict[int, Optional[str]]] = {}
        for otype, origin in (("Image", "origin_image_id"), ("Plate", "origin_plate_id")):
            p = parameters()  # Hibernate refuses a bound name the query does not use: one set per query
            p.addString("ns", TRANSFER_NS)
            p.addString("md5", md5)
            p.addLong("since", before["Annotation"])
            po = parameters()
            po.addString("ns", TRANSFER_NS)
            po.addString("md5", md5)
            po.addString("origin", origin)
            po.addLong("since", before["Annotation"])
            found: Dict[int, Optional[str]] = {}
            for r in rows("select distinct l.parent.id from {}AnnotationLink l, MapAnnotation a join a.mapValue mv "
                          "where l.child.id = a.id and a.ns = :ns and mv.name = 'md5' and mv.value = :md5 "
                          "and a.id > :since".format(otype), p):
                found[int(r[0])] = None
            for r in rows("select distinct l.parent.id, ov.value from {}AnnotationLink l, MapAnnotation a "
                          "join a.mapValue mv join a.mapValue ov where l.child.id = a.id and a.ns = :ns "
                          "and mv.name = 'md5' and mv.value = :md5 and ov.name = :origin and a.id > :since"
                          .format(otype), po):
                if int(r[0]) in found:
                    found[int(r[0])] = None if r[1] is None else str(r[1])
            linked[otype] = found
        # containers: every new one of this owner named as in transfer.xml (populate_omero creates them all)
        created: ObjectList = []
        for otype in CONTAINER_TYPES:
            names = set(index.containers.get(otype, []))
            ids = set(linked.get(otype, {}))
            if names:
                q = parameters()
                q.addLong("since", before[otype])
                q.addLong("owner", owner)
                for r in rows("select o.id, o.name from {} o where o.id > :since and o.details.owner.id = :owner "
                              "order by o.id".format(otype), q):
                    if r[1] in names:
                        ids.add(int(r[0]))
            created.extend((otype, i) for i in sorted(ids))
        images = linked["Image"]
        created.extend(("Image", i) for i in sorted(images))
        # the snapshot's images that did not come back
        got_sources = {v for v in images.values() if v is not None}
        failed: List[str] = []
        if index.images:
            if got_sources or not images:
                for img in index.images:
                    if str(img.source_id) not in got_sources:
                        failed.append("{} '{}'{}".format(img.key, img.name, " ({})".format(img.path)
                                                         if img.path else ""))
            elif len(images) < len(index.images):  # no origin ids recorded (metadata none): a count only
                failed.append("{} of the snapshot's images".format(len(index.images) - len(images)))
        # imported but never linked: new images of this owner, named like the snapshot's images or files
        known = {img.name for img in index.images} | {posixpath.basename(img.path or "") for img in index.images}
        q = parameters()
        q.addLong("since", before["Image"])
        q.addLong("owner", owner)
        orphans = [int(r[0]) for r in rows("select i.id, i.name from Image i where i.id > :since and "
                                           "i.details.owner.id = :owner order by i.id", q)
                   if int(r[0]) not in images and r[1] in known]
        return UnpackReport(created=created, expected_images=len(index.images), imported_images=len(images),
                            failed=failed, orphans=orphans)


def _md5_file(path: str) -> str:
    h = hashlib.md5(usedforsecurity=False)  # unpack's own provenance key, not security
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
