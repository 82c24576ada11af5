"""Drop builders shared by the tests (the fixture that uses them is in conftest.py)."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional

from policy.manifest import build_manifest, manifest_to_json, new_drop_id
from simzone.deploy import SimulatedDeployment, archive_format, file_sha256

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURES = {
    "image_tar": os.path.join(DATA, "valid_single_image.tar"),
    "dataset_zip": os.path.join(DATA, "valid_single_dataset.zip"),
    "plate_zip": os.path.join(DATA, "simple_plate.zip"),
}
OMERO_SERVER = "omero.example.org"


def sha256_file(path: str) -> str:
    return file_sha256(path)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_with(**unpack: Any) -> Dict[str, Any]:
    """The default configuration with some `unpack` settings changed."""
    from policy.config import default_config_dict

    cfg = default_config_dict()
    cfg.setdefault("unpack", {}).update(unpack)
    return cfg


def enrolled_deployment(zone_dir: str, config_dict: Optional[Dict[str, Any]] = None) -> SimulatedDeployment:
    """A fresh simulated zone where OMERO user jdoe@omero.example.org is enrolled as iRODS user alice."""
    d = SimulatedDeployment(zone_dir, config_dict=config_dict)
    res = d.enrol("alice", "jdoe", OMERO_SERVER)
    assert res["ok"], res
    return d


def manifest_doc(archive: str, drop_id: Optional[str] = None, **over: Any) -> Dict[str, Any]:
    fmt = archive_format(archive)
    kw: Dict[str, Any] = dict(
        drop_id=drop_id or new_drop_id(), omero_user="jdoe", omero_user_id=52, omero_group="lab",
        omero_server=OMERO_SERVER, objects={"Image": [51]}, archive_name="transfer." + fmt,
        archive_size=os.path.getsize(archive), archive_sha256=file_sha256(archive), archive_format=fmt,
        packer_version="1.3.2", label="my label")
    kw.update(over)
    return build_manifest(**kw)


def drop(d: SimulatedDeployment, archive: str, doc: Optional[Dict[str, Any]] = None, raw: Optional[bytes] = None,
         drop_id: Optional[str] = None, as_user: Optional[str] = None, archive_name: Optional[str] = None,
         run: bool = True) -> Any:
    """Upload a drop as OMERO would and let the delay server run; returns (drop_id, upload result)."""
    doc = doc if doc is not None else manifest_doc(archive, drop_id)
    drop_id = drop_id or doc.get("drop_id") or new_drop_id()
    name = archive_name or (doc.get("archive", {}).get("name") if isinstance(doc.get("archive"), dict) else None)
    up = d.upload_drop(archive, raw if raw is not None else manifest_to_json(doc), drop_id, as_user=as_user,
                       archive_name=name or os.path.basename(archive))
    if run:
        d.run_delay_server()
    return drop_id, up


def members_of(archive: str) -> Dict[str, bytes]:
    """name -> bytes of every regular file, read with the standard library (what unpacking must give)."""
    import tarfile
    import zipfile

    out: Dict[str, bytes] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    out[info.filename] = z.read(info)
    else:
        with tarfile.open(archive) as t:
            for m in t:
                if m.isfile():
                    f = t.extractfile(m)
                    out[m.name[2:] if m.name.startswith("./") else m.name] = f.read() if f else b""
    return out
