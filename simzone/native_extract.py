"""msiTarFileExtract (what `ibun -x` does) on the simulated catalog, with the semantics observed on a real server.

Observed (reference/prep-observed.md, round 7): a `../` member is silently
dropped, an absolute member is made relative, a symlink anywhere fails the
call with SYS_INTERNAL_NULL_INPUT_ERR (-24000) before anything is written,
and of two members with the same name ONE object survives, holding the
second member's bytes. It never overwrites an object that existed before the
call (SYS_COPY_ALREADY_IN_RESC, -46000). Only uncompressed tar is handled.
"""

from __future__ import annotations

import posixpath
import tarfile

from policy.errors import error_for
from simzone.catalog import SimCatalog


def _target_name(raw: str) -> str:
    """'' when the native extractor would drop the member."""
    name = posixpath.normpath(raw.lstrip("/")) if raw.lstrip("/") else ""
    if name in ("", ".") or name == ".." or name.startswith("../"):
        return ""
    return name


def tar_file_extract(cat: SimCatalog, user: str, tar_path: str, target: str, resource: str) -> int:
    cat._op("tar_file_extract", tar_path, target)
    if not cat.query_rows("SELECT 1 FROM resources WHERE name=?", (resource,)):
        raise error_for(-78000, resource)  # SYS_RESC_DOES_NOT_EXIST (round 10)
    _, vault = cat.object_vault(user, tar_path, "read_object")
    try:
        tf = tarfile.open(vault, mode="r:")
    except tarfile.TarError:
        raise error_for(-1, "not a tar file") from None  # round 10: -1, a code without a name
    with tf:
        members = tf.getmembers()
        if any(m.issym() or m.islnk() for m in members):
            raise error_for(-24000, "link member")
        files = {}
        dirs = set()
        for m in members:
            name = _target_name(m.name)
            if not name:
                continue
            if m.isdir():
                dirs.add(name)
            elif m.isfile():
                files[name] = m  # a later member of the same name wins, as observed
        for name in files:
            if cat.exists(target + "/" + name):
                raise error_for(-46000, target + "/" + name)
        made = set()

        def mkdir(path: str) -> None:
            if path not in made:
                cat.create_collection(user, path, recursive=True)
                made.add(path)

        mkdir(target)
        for d in sorted(dirs):
            mkdir(target + "/" + d)
        for name, m in sorted(files.items()):
            path = target + "/" + name
            mkdir(posixpath.dirname(path))
            w = cat.open_new(user, path)
            src = tf.extractfile(m)
            with w:
                if src is not None:
                    for block in iter(lambda: src.read(4 << 20), b""):  # noqa: B023 - consumed at once
                        w.write(block)
    return len(files)
