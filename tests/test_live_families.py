"""The simulated suite's families on a REAL iRODS zone (`pytest -m live`), beyond tests/test_live.py's scenarios.

Configured like tests/test_live.py (IRODS_ENVIRONMENT_FILE, IRODS_ADMIN_ENVIRONMENT_FILE; without them, or with no
server, every test skips and says why). The tests that act on the server's host (the policy configuration file,
the vault on disk, the guide's `sudo -iu irods` commands) also need OMERO_SNAPSHOTS_REAL_ZONE=1 and root: what
tests/live/real_zone.sh's live.env sets on the test zone it installed; elsewhere they skip with the reason.

Families: valid packets on both unpack paths; the whole hostile corpus of tests/archive_corpus.py on both paths
(with a canary directory and the vault checked on disk for the fast path); every quarantine reason; eight saves
racing for one snapshot name; every admin rule through `irule` exactly as docs/install.md writes it, and through
the CLI; List and Load (the iRODS half) and another user refused; the trust boundary with a second rodsuser;
enrol/unenrol. Each family records its cases in the live robustness table (docs/robustness.md, "On the real
server"; tests/robustness_report.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
import time
import zipfile
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import archive_corpus as corpus
import pytest
from harness import LiveHarness
from helpers import members_of
from robustness_report import LIVE_PREFIX
from scenarios import FIXTURES, drop, file_bytes, handed_over, manifest

from policy import vocabulary as V
from simzone.deploy import archive_format

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "live"))
import guide_blocks  # noqa: E402

pytestmark = pytest.mark.live

CONFIG_DIR = os.environ.get("OMERO_SNAPSHOTS_CONFIG_DIR", "/etc/irods/omero_snapshots")
CONFIG_FILE = os.path.join(CONFIG_DIR, "config.json")
MAPPING_FILE = os.path.join(CONFIG_DIR, "mapping.json")
VAULT = "/var/lib/irods/Vault"
FINAL = ("complete", "placed", "failed", "quarantined")


class Family:
    """One family's cases for the live robustness table (tests/robustness_report.py, "On the real server")."""

    def __init__(self, robustness: Any, name: str) -> None:
        self.rb, self.name, self.t0 = robustness, LIVE_PREFIX + name, time.monotonic()

    def case(self, case: str, status: str, lost: int = 0, overwritten: int = 0, escaped: int = 0,
             since: Optional[float] = None) -> None:
        final = None if status in ("refused", "ignored") else status in FINAL  # a refusal has no drop to finish
        self.rb.record(self.name, case, status, lost, overwritten, escaped, final=final,
                       seconds=time.monotonic() - (since if since is not None else self.t0))


def on_server_host() -> None:
    """Skip unless this process may act on the test zone's host (config files, vault, sudo -iu irods)."""
    if os.environ.get("OMERO_SNAPSHOTS_REAL_ZONE") != "1":
        pytest.skip("acts on the server's host: needs OMERO_SNAPSHOTS_REAL_ZONE=1 (tests/live/real_zone.sh's live.env)")
    if os.geteuid() != 0 or not os.access(CONFIG_FILE, os.W_OK):
        pytest.skip("acts on the server's host: needs root and {}".format(CONFIG_FILE))


def _replace_file(path: str, data: bytes) -> None:
    """Same owner and mode, a new inode: the policy's per-agent cache keys on the file's stat."""
    st = os.stat(path)
    tmp = path + ".live-test.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


@contextmanager
def server_file(path: str, change: Callable[[Dict[str, Any]], None]) -> Iterator[None]:
    """Change a JSON file of the policy for the block's duration, then put the original bytes back."""
    with open(path, "rb") as f:
        original = f.read()
    doc = json.loads(original)
    change(doc)
    _replace_file(path, json.dumps(doc, indent=4).encode() + b"\n")
    try:
        yield
    finally:
        _replace_file(path, original)


def fast_path(mode: str) -> Callable[[Dict[str, Any]], None]:
    def change(doc: Dict[str, Any]) -> None:
        doc.setdefault("unpack", {})["fast_path"] = mode
    return change


def drop_all(h: LiveHarness, archives: Dict[str, str], omero_user: str) -> Dict[str, str]:
    """Upload every archive as its own drop (all queued at once); case -> drop id."""
    return {case: drop(h, path, manifest(h, path, omero_user)) for case, path in archives.items()}


def vault_files(h: LiveHarness, user: str) -> List[str]:
    """Every file on disk under the user's snapshot root in the vault, relative to it."""
    root = h.snapshot_root(user)
    base = VAULT + root[len("/" + h.zone_name):]
    out = []
    for dirpath, _dirs, files in os.walk(base):
        out += [os.path.relpath(os.path.join(dirpath, f), base) for f in files]
    return sorted(out)


# ====================================================================== valid packets, both paths
VALID: Dict[str, Callable[[], Tuple[bytes, Any]]] = {
    "ok_tar": corpus.ok_tar, "ok_tar_gz": corpus.ok_tar_gz, "ok_zip": corpus.ok_zip,
    "ok_zip_data_descriptor": corpus.ok_zip_data_descriptor,
}


@pytest.mark.parametrize("mode", ["auto", "never"], ids=["fast-path", "streaming"])
def test_valid_packets_complete_byte_for_byte(h: LiveHarness, mode: str, robustness: Any) -> None:
    """Real omero-cli-transfer packets (tar, zip) and the corpus's valid tar, tar.gz and zips: complete, every
    member byte-exact, handed over; a tar takes the fast path when allowed, everything else streams."""
    on_server_host()
    fam = Family(robustness, "valid packets ({})".format("fast path" if mode == "auto" else "streaming path"))
    archives = dict(FIXTURES)
    for case, build in VALID.items():
        data, _ = build()
        ext = "zip" if data[:2] == b"PK" else "tar.gz" if data[:2] == b"\x1f\x8b" else "tar"
        archives[case] = h.file("{}.{}".format(case, ext), data)
    with server_file(CONFIG_FILE, fast_path(mode)):
        user, omero_user = h.researcher()
        drops = drop_all(h, archives, omero_user)
        finals = {case: h.wait(d) for case, d in drops.items()}
    lost = 0
    for case, st in finals.items():
        archive = archives[case]
        snap = st.get("snapshot")
        tree = h.walk(snap) if snap else []
        content = "{}/content".format(snap)
        got = {p[len(content) + 1:]: p for p, k in tree if k == "data_object" and p.startswith(content + "/")}
        expected = members_of(archive)
        case_lost = sum(1 for rel, data in expected.items() if rel not in got or h.read_bytes(got[rel]) != data)
        case_lost += int(not snap or h.read_bytes(snap + "/transfer." + archive_format(archive)) != file_bytes(archive))
        fam.case(case, st["status"], lost=case_lost)
        lost += case_lost
        assert st["status"] == "complete", (case, st)
        meta = h.metadata(snap)
        is_tar = archive.endswith(".tar")
        assert meta[V.NS + "unpack_path"] == ["fast" if (is_tar and mode == "auto") else "streaming"], (case, meta)
        for path, _kind in tree:
            assert h.acl(path) == handed_over(h, user), (case, path, h.acl(path))
        assert set(got) == set(expected), (case, sorted(set(got) ^ set(expected))[:10])
    assert lost == 0


# ====================================================================== hostile corpus, both paths
def _member_targets(data: bytes) -> List[str]:
    """Names (and link targets) the archive would write, as far as the standard library can read them."""
    names: List[str] = []
    import io

    try:
        if data[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = [i.filename for i in z.infolist()]
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                for m in t:
                    names.append(m.name)
                    if m.linkname:
                        names.append(m.linkname)
    except Exception:  # noqa: BLE001 - truncated or garbage on purpose
        pass
    return names


def _escape_paths(content_dir: str, names: List[str]) -> List[str]:
    """Where each name would land on disk if extracted under content_dir without checks, when outside it."""
    out = []
    for n in names:
        n = n.replace("\\", "/")
        target = os.path.normpath(n if n.startswith("/") else os.path.join(content_dir, n))
        if not (target + "/").startswith(content_dir + "/"):
            out.append(target)
    return out


def _disk_state(paths: List[str]) -> Dict[str, Optional[Tuple[int, int]]]:
    state: Dict[str, Optional[Tuple[int, int]]] = {}
    for p in paths:
        try:
            st = os.lstat(p)
            state[p] = (st.st_size, st.st_mtime_ns)
        except OSError:
            state[p] = None
    return state


@pytest.mark.parametrize("mode", ["auto", "never"], ids=["fast-path", "streaming"])
def test_hostile_corpus_refused_nothing_escapes(h: LiveHarness, mode: str, robustness: Any) -> None:
    """Every hostile archive of tests/archive_corpus.py: failed with its rule, nothing under content/, the
    archive intact and handed over; on disk, nothing outside the snapshot's own two files in the vault, nothing
    at any path a member names outside content/, and the canary directory unchanged."""
    on_server_host()
    label = "fast path" if mode == "auto" else "streaming path"
    fam = Family(robustness, "hostile corpus ({})".format(label))
    cases = {case: build() for case, build in sorted(corpus.HOSTILE.items())}
    archives = {}
    for case, (data, _rule) in cases.items():
        ext = "zip" if data[:2] == b"PK" else "tar.gz" if data[:2] == b"\x1f\x8b" else "tar"
        archives[case] = h.file("{}.{}".format(case, ext), data)
    canary = "/var/lib/irods/omero-snapshots-canary-" + secrets.token_hex(4)
    os.makedirs(canary)
    with open(os.path.join(canary, "canary.txt"), "w") as f:
        f.write("untouched\n")
    try:
        with server_file(CONFIG_FILE, fast_path(mode)):
            user, omero_user = h.researcher()
            root_vault = VAULT + h.snapshot_root(user)[len("/" + h.zone_name):]
            # Where a member would land on disk if a name escaped content/: inside the user's root in the vault
            # (checked below against the exact list of files there), or anywhere else (watched before/after).
            targets = {p for data, _ in cases.values()
                       for p in _escape_paths(root_vault + "/SNAP/content", _member_targets(data))}
            watch = sorted(p for p in targets if not (p + "/").startswith(root_vault + "/"))
            canary_before = _disk_state([os.path.join(canary, "canary.txt")])
            fixed_before = _disk_state(watch)
            drops = drop_all(h, archives, omero_user)
            finals = {case: h.wait(d) for case, d in drops.items()}
    finally:
        canary_after = _disk_state([os.path.join(canary, "canary.txt")])
        listing = sorted(os.listdir(canary))
        import shutil

        shutil.rmtree(canary, ignore_errors=True)
    on_disk = vault_files(h, user)
    expected_files = sorted("{}/{}".format(finals[case]["snapshot"].rsplit("/", 1)[-1], name) for case in finals
                            for name in ("manifest.json", "transfer." + archive_format(archives[case])))
    fixed_after = _disk_state(list(fixed_before))
    changed = [p for p in fixed_before if fixed_before[p] != fixed_after[p]]
    stray = sorted(set(on_disk) - set(expected_files))
    for case, st in finals.items():
        snap_name = (st.get("snapshot") or "").rsplit("/", 1)[-1]
        mine = [f for f in stray if f.startswith(snap_name + "/")]
        kept = bool(st.get("snapshot")) and h.read_bytes(
            st["snapshot"] + "/transfer." + archive_format(archives[case])) == cases[case][0]
        fam.case(case, st["status"], lost=int(not kept), escaped=len(mine) + (len(changed) if case == "traversal"
                                                                                else 0))
    escaped = len(stray) + len(changed)
    for case, st in finals.items():
        rule = cases[case][1]
        assert st["status"] == "failed", (case, st)
        assert rule in (st.get("reason") or ""), (case, rule, st)
        is_tar = archives[case].endswith(".tar")
        expect_path = "fast path" if (is_tar and mode == "auto") else "streaming path"
        assert "({})".format(expect_path) in st["reason"], (case, st["reason"])
        snap = st["snapshot"]
        assert not h.exists(snap + "/content"), case
        assert h.read_bytes(snap + "/transfer." + archive_format(archives[case])) == cases[case][0], case
        assert h.acl(snap) == handed_over(h, user), case
    assert on_disk == expected_files, sorted(set(on_disk) ^ set(expected_files))[:10]
    assert canary_after == canary_before and listing == ["canary.txt"], (canary_before, canary_after, listing)
    assert escaped == 0, (stray, changed)


# ====================================================================== every quarantine reason
def _raw_drop(h: LiveHarness, drop_id: str, files: Dict[str, bytes]) -> None:
    """A drop with exactly these objects, the manifest (if any) written last, as the service account."""
    zone = h.svc
    path = h.landing + "/" + drop_id
    h.drops.append(drop_id)
    zone.create_collection(path)
    for name in sorted(files, key=lambda n: n == "manifest.json"):
        w = zone.open_new(path + "/" + name)
        try:
            w.write(files[name])
        finally:
            w.close()


def test_every_quarantine_reason(h: LiveHarness, robustness: Any) -> None:
    """Each refusal of the input moves the whole drop, intact, to quarantine/<drop> with its rule and a reason
    that says what to do; the snapshot root stays empty."""
    on_server_host()
    fam = Family(robustness, "quarantine reasons")
    user, omero_user = h.researcher()
    archive = FIXTURES["image_tar"]
    data = file_bytes(archive)
    group = h.unique("g")
    h.admin.session.groups.create(group)
    admin_user = h.unique("a")
    h.admin_client.add_user(admin_user, "rodsadmin")
    h.users.append(admin_user)  # removed with the harness's other users
    mapped: Dict[str, str] = {}  # omero user -> irods user the mapping names (written straight into mapping.json)
    for target in ("svc", "missing", "admin", "group"):
        mapped[h.unique("o")] = {"svc": h.service_account, "missing": h.unique("nobody"), "admin": admin_user,
                                 "group": group}[target]
    not_enrolled_user = h.create_user()
    not_enrolled_omero = h.unique("o")
    mapped[not_enrolled_omero] = not_enrolled_user

    def valid(**over: Any) -> Dict[str, Any]:
        return manifest(h, archive, omero_user, **over)

    cases: Dict[str, Tuple[str, Dict[str, bytes], str]] = {}  # case -> (drop id, files, expected rule)

    def add(rule: str, files: Dict[str, bytes], drop_id: Optional[str] = None, case: Optional[str] = None) -> None:
        drop_id = drop_id or valid()["drop_id"]
        cases[case or rule] = (drop_id, files, rule)

    def mbytes(doc: Dict[str, Any]) -> bytes:
        return json.dumps(doc).encode()

    d = valid()
    add("checksum_mismatch", {"transfer.tar": data, "manifest.json": mbytes(valid(drop_id=d["drop_id"],
                                                                                    archive_sha256="0" * 64))},
        d["drop_id"])
    d = valid()
    add("size_mismatch", {"transfer.tar": data, "manifest.json": mbytes(valid(drop_id=d["drop_id"],
                                                                                archive_size=len(data) + 1))},
        d["drop_id"])
    d = valid()
    add("archive_missing", {"manifest.json": mbytes(d)}, d["drop_id"])
    d = valid()
    add("unexpected_object", {"transfer.tar": data, "extra.txt": b"x", "manifest.json": mbytes(d)}, d["drop_id"])
    d = valid()
    add("drop_id_mismatch", {"transfer.tar": data, "manifest.json": mbytes(valid())}, d["drop_id"])
    d = valid()
    add("manifest_invalid", {"transfer.tar": data, "manifest.json": b"{not json"}, d["drop_id"])
    d = valid()
    bad = dict(d)
    bad.pop("archive")
    add("manifest_invalid", {"transfer.tar": data, "manifest.json": mbytes(bad)}, d["drop_id"],
        case="manifest_invalid (schema)")
    d = valid()
    add("manifest_unreadable", {"transfer.tar": data, "manifest.json": mbytes(d) + b" " * (300 << 10)},
        d["drop_id"])
    d = manifest(h, archive, h.unique("o"))
    add("unmapped", {"transfer.tar": data, "manifest.json": mbytes(d)}, d["drop_id"])
    expected_rule = {"svc": "mapped_to_service_account", "missing": "mapped_user_missing",
                     "admin": "mapped_to_rodsadmin", "group": "mapped_to_group"}
    for (o_user, _target), kind in zip(list(mapped.items())[:4], ("svc", "missing", "admin", "group")):
        d = manifest(h, archive, o_user)
        add(expected_rule[kind], {"transfer.tar": data, "manifest.json": mbytes(d)}, d["drop_id"])
    d = manifest(h, archive, not_enrolled_omero)
    add("not_enrolled", {"transfer.tar": data, "manifest.json": mbytes(d)}, d["drop_id"])

    def add_mappings(doc: Dict[str, Any]) -> None:
        for o_user, i_user in mapped.items():
            doc["users"].append({"omero_server": h.omero_server, "omero_user": o_user, "irods_user": i_user})

    try:
        with server_file(MAPPING_FILE, add_mappings):
            for _case, (drop_id, files, _rule) in cases.items():
                _raw_drop(h, drop_id, files)
            finals = {case: h.wait(cases[case][0]) for case in cases}
    finally:
        try:
            h.admin.session.groups.remove(group)
        except Exception:  # noqa: BLE001 - reported by the assertion below if it matters
            pass
    lost = 0
    for case, st in finals.items():
        drop_id, files, rule = cases[case]
        q = h.quarantine + "/" + drop_id
        case_lost = sum(1 for name, content in files.items()
                        if not h.exists(q + "/" + name) or h.read_bytes(q + "/" + name) != content)
        fam.case(case, st["status"], lost=case_lost)
        lost += case_lost
    for case, st in finals.items():
        drop_id, files, rule = cases[case]
        assert st["status"] == "quarantined", (case, st)
        q = h.quarantine + "/" + drop_id
        assert st.get("location") == q, (case, st)
        assert h.metadata(q)[V.NS + "refusal_rule"] == [rule], (case, h.metadata(q))
        assert len(st.get("reason") or "") > 20, (case, st)
        assert not h.exists(h.landing + "/" + drop_id), case
    root = h.snapshot_root(user)
    assert h.walk(root) == [(root, "collection")]
    assert lost == 0


# ====================================================================== eight saves race for one name
def test_eight_saves_race_for_one_snapshot_name(h: LiveHarness, robustness: Any) -> None:
    """Eight drops of one user, one label, one second, uploaded together: eight snapshots, eight names, each
    archive byte-exact (a clash takes the next name; nothing is overwritten)."""
    fam = Family(robustness, "8 saves racing for one snapshot name")
    user, omero_user = h.researcher()
    archive = FIXTURES["dataset_zip"]
    created, stamp = "2026-11-25T10:00:00Z", "20261125T100000Z"
    ids = ["{}-{}".format(stamp, secrets.token_hex(6)) for _ in range(8)]
    docs = [manifest(h, archive, omero_user, drop_id, created=created) for drop_id in ids]
    for doc in docs:
        drop(h, archive, doc)
    finals = [h.wait(drop_id) for drop_id in ids]
    snaps = [st["snapshot"] for st in finals]
    for drop_id, st in zip(ids, finals):
        fam.case(drop_id, st["status"], overwritten=int(h.read_bytes(st["snapshot"] + "/transfer.zip")
                                                        != file_bytes(archive)) if st.get("snapshot") else 0,
                 lost=int(not st.get("snapshot")))
    assert all(st["status"] == "complete" for st in finals), finals
    assert len(set(snaps)) == 8, snaps
    overwritten = 0
    for drop_id, snap in zip(ids, snaps):
        assert snap.startswith(h.snapshot_root(user) + "/{}_{}_my-label_".format(stamp, omero_user)), snap
        assert h.metadata(snap)[V.DROP_ID] == [drop_id]
        if h.read_bytes(snap + "/transfer.zip") != file_bytes(archive):
            overwritten += 1
    assert overwritten == 0


# ====================================================================== admin rules as the guide writes them
def _guide_commands(section_prefix: str) -> List[str]:
    with open(guide_blocks.GUIDE, encoding="utf-8") as f:
        blocks = guide_blocks.parse(f.read())
    return [b.code for b in blocks if b.section.startswith(section_prefix)]


def _sh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", "set -e\nZONE={}\n{}".format(os.environ.get("IRODS_ZONE", "tempZone"),
                                                                          code)],
                          capture_output=True, text=True, timeout=300)


def _out(p: subprocess.CompletedProcess) -> Dict[str, Any]:
    """The JSON after '*out = ' of an irule command's output."""
    m = re.search(r"^\*out = (.*)$", p.stdout, re.M)
    assert p.returncode == 0 and m, (p.returncode, p.stdout, p.stderr)
    return json.loads(m.group(1))


def _guide_block(blocks: List[str], needle: str) -> str:
    found = [b for b in blocks if needle in b]
    assert len(found) == 1, (needle, len(found))
    return found[0]


def test_admin_rules_through_irule_and_the_cli_as_the_guide_writes_them(h: LiveHarness, robustness: Any) -> None:
    """Every irule and CLI command of docs/install.md's step 9 and 10, run as written (`sudo -iu irods ...`) with
    only the example values replaced (alice, omero.example.org, <drop id>, <drop id or snapshot path>)."""
    on_server_host()
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs sudo (tests/live/real_zone.sh installs it)")
    fam = Family(robustness, "admin rules through irule and the CLI, as the guide writes them")
    blocks = _guide_commands("9.") + _guide_commands("10.")

    def fill(code: str, user: str, **values: str) -> str:
        code = code.replace("omero.example.org", h.omero_server)
        code = re.sub(r"\balice\b", user, code)
        for placeholder, value in values.items():
            code = code.replace(placeholder, value)
        return code

    user = h.create_user()
    # enrol (irule), list (irule): the guide's own blocks
    p = _sh(fill(_guide_block(blocks, "iadmin mkuser alice"), user))
    assert p.returncode == 0, p.stderr
    res = _out(_sh(fill(_guide_block(blocks, "omero_snapshots_enrol("), user)))
    h.enrolments.append((user, h.omero_server))
    assert res["ok"] and res["irods_user"] == user and res["root"] == h.snapshot_root(user), res
    assert _out(_sh(fill(_guide_block(blocks, "omero_snapshots_list("), user))) == {"ok": True, "snapshots": []}
    # a snapshot to act on; status by drop id and by path (irule), and the CLI's status
    archive = FIXTURES["image_tar"]
    good = drop(h, archive, manifest(h, archive, user))
    snap = h.wait(good)["snapshot"]
    for target in (good, snap):
        st = _out(_sh(fill(_guide_block(blocks, "omero_snapshots_status("), user,
                           **{"<drop id or snapshot path>": target})))
        assert st["status"] == "complete" and snap in (st.get("snapshot"), st.get("path")), st
    p = _sh(fill(_guide_block(blocks, 'omero-snapshots status "<drop id or snapshot path>"'), user,
                 **{"<drop id or snapshot path>": good}))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "complete", (p.stdout, p.stderr)
    listed = _out(_sh(fill(_guide_block(blocks, "omero_snapshots_list("), user)))
    assert [s["path"] for s in listed["snapshots"]] == [snap], listed
    # reprocess (force) of a complete drop: reports it, changes nothing
    before = {p_: h.metadata(p_) for p_, _ in h.walk(snap)}
    rules = _guide_block(blocks, "omero_snapshots_reprocess(")
    reprocess, release, purge = [c for c in re.split(r"\n(?=sudo )", rules.strip()) if c]
    res = _out(_sh(fill(reprocess, user, **{"<drop id>": good})))
    assert res["ok"] and res["status"] == "complete" and res["snapshot"] == snap, res
    assert {p_: h.metadata(p_) for p_, _ in h.walk(snap)} == before
    # release: a drop quarantined for want of a mapping, then the CLI enrols its user (the guide's CLI block)
    newcomer = h.create_user()
    waiting = drop(h, archive, manifest(h, archive, newcomer))
    assert h.wait(waiting)["status"] == "quarantined"
    p = _sh(fill(_guide_block(blocks, "omero-snapshots enrol alice"), newcomer))
    assert p.returncode == 0 and "enrolled" in p.stdout, (p.stdout, p.stderr)
    h.enrolments.append((newcomer, h.omero_server))
    res = _out(_sh(fill(release, newcomer, **{"<drop id>": waiting})))
    assert res["ok"] and res["status"] == "complete", res
    assert h.read_bytes(res["snapshot"] + "/transfer.tar") == file_bytes(archive)
    # purge: a quarantined drop, deleted for good with the confirmation the guide shows
    doomed = drop(h, archive, manifest(h, archive, user, archive_sha256="0" * 64))
    assert h.wait(doomed)["status"] == "quarantined"
    res = _out(_sh(fill(purge, user, **{"<drop id>": doomed})))
    assert res["ok"], res
    assert not h.exists(h.quarantine + "/" + doomed)
    # doctor and sweep_start (step 10)
    for needle in ("omero_snapshots_doctor(", "omero_snapshots_sweep_start("):
        res = _out(_sh(_guide_block(blocks, needle)))
        assert res["ok"], (needle, res)
    # unenrol (irule, the guide's separate block): the mapping goes, the snapshots stay
    res = _out(_sh(fill(_guide_block(blocks, "omero_snapshots_unenrol("), user)))
    h.enrolments.remove((user, h.omero_server))
    assert res["ok"], res
    later = drop(h, archive, manifest(h, archive, user))
    assert h.wait(later)["status"] == "quarantined"
    assert h.exists(snap) and h.read_bytes(snap + "/transfer.tar") == file_bytes(archive)
    for rule in ("enrol", "list", "status", "reprocess", "release", "purge", "doctor", "sweep_start", "unenrol",
                 "cli enrol", "cli list", "cli status"):
        fam.case(rule, "complete")


# ====================================================================== List and Load, the iRODS half
def test_list_and_load_by_the_saver_only(h: LiveHarness, tmp_path: Any, robustness: Any) -> None:
    """OMERO's List shows a user's snapshots (and not another's); Load downloads the archive, checks it and
    hands it to the unpacker; another OMERO user is refused, and so is a snapshot whose archive was changed."""
    from omero_client.load import LoadRefused, load
    from omero_client.snapshots import snapshots_of

    fam = Family(robustness, "List and Load (the iRODS half)")
    user, omero_user = h.researcher()
    other_user, other_omero = h.researcher()
    archive = FIXTURES["image_tar"]
    mine = h.wait(drop(h, archive, manifest(h, archive, omero_user)))["snapshot"]
    theirs = h.wait(drop(h, archive, manifest(h, archive, other_omero)))["snapshot"]
    listed = snapshots_of(h.svc, h.landing, omero_user, h.omero_server)
    assert [s.path for s in listed] == [mine], listed
    assert listed[0].status == "complete" and listed[0].irods_user == user

    class Unpacker:
        def __init__(self) -> None:
            self.seen: List[bytes] = []

        def unpack(self, path: str) -> List[Tuple[str, int]]:
            with open(path, "rb") as f:
                self.seen.append(f.read())
            return [("Image", 1)]

    un = Unpacker()
    res = load(h.svc, mine, omero_user, h.omero_server, un, str(tmp_path), landing=h.landing)
    assert un.seen == [file_bytes(archive)] and res.archive_size == len(file_bytes(archive))
    with pytest.raises(LoadRefused, match="not saved by you"):
        load(h.svc, theirs, omero_user, h.omero_server, un, str(tmp_path), landing=h.landing)
    assert len(un.seen) == 1
    # the owner (not the service account) changes the archive: Load refuses it
    owner = h._zone_as(other_user)
    w = owner.session.data_objects.open(theirs + "/transfer.tar", "r+")
    try:
        w.seek(600)
        w.write(b"tampered")
    finally:
        w.close()
    with pytest.raises(LoadRefused):
        load(h.svc, theirs, other_omero, h.omero_server, un, str(tmp_path), landing=h.landing)
    assert len(un.seen) == 1
    for case, outcome in (("list", "complete"), ("load own", "complete"), ("load another's", "refused"),
                          ("load a changed archive", "refused")):
        fam.case(case, outcome)


# ====================================================================== trust boundary, a second rodsuser
def test_a_second_rodsuser_cannot_cross_the_boundary(h: LiveHarness, robustness: Any) -> None:
    """Another ordinary user sees no snapshot but its own, cannot read, change or list another's snapshot, cannot
    write into the landing collection, and a drop it makes there (once granted) is never processed."""
    fam = Family(robustness, "trust boundary (a second rodsuser)")
    user, omero_user = h.researcher()
    archive = FIXTURES["dataset_zip"]
    snap = h.wait(drop(h, archive, manifest(h, archive, omero_user)))["snapshot"]
    mallory = h.create_user()
    mz = h._zone_as(mallory)
    refused = 0
    attempts: List[Callable[[], Any]] = [
        lambda: mz.open_read(snap + "/transfer.zip").read(),
        lambda: mz.list_collection(snap),
        lambda: mz.rename(snap + "/transfer.zip", snap + "/x.zip"),
        lambda: mz.set_acl(snap, mallory, "own"),
        lambda: mz.create_collection(h.landing + "/" + h.unique("d")),
        lambda: mz.list_collection(h.landing),
        lambda: mz.remove_object(snap + "/manifest.json"),
    ]
    for attempt in attempts:
        try:
            got = attempt()
        except Exception:  # noqa: BLE001 - IrodsError, or python-irodsclient's own exception on some calls
            refused += 1
            continue
        # a listing of something it may not read may come back empty rather than refused
        assert not getattr(got, "data_objects", None) and not getattr(got, "collections", None), got
        refused += 1
    assert h.read_bytes(snap + "/transfer.zip") == file_bytes(archive)
    assert h.acl(snap) == handed_over(h, user)
    before = [(p_, h.acl(p_), h.metadata(p_)) for p_, _ in h.walk(h.snapshot_root(user))]
    # with a write grant on the landing collection, its drop is left exactly as it is
    h.allow_landing_writer(mallory)
    foreign = drop(h, archive, manifest(h, archive, omero_user), as_user=mallory)
    h.settle()
    assert h.metadata(h.landing + "/" + foreign) == {}
    assert h.status(foreign)["status"] == "received"
    after = [(p_, h.acl(p_), h.metadata(p_)) for p_, _ in h.walk(h.snapshot_root(user))]
    for i in range(len(attempts)):
        fam.case("attempt {}".format(i + 1), "refused", overwritten=int(after != before))
    fam.case("foreign drop", "ignored", escaped=int(after != before))
    assert after == before


# ====================================================================== enrol / unenrol
def test_enrol_unenrol_and_enrol_again(h: LiveHarness, robustness: Any) -> None:
    """Enrolment creates the root with the right ACLs; enrolling twice changes nothing; unenrol removes the
    mapping (a new drop is quarantined as unmapped) and keeps the snapshots; enrolling again lets drops in."""
    fam = Family(robustness, "enrol / unenrol")
    user = h.create_user()
    omero_user = h.unique("o")
    res = h.enrol(user, omero_user)
    assert res["ok"] and res["created_root"], res
    root = h.snapshot_root(user)
    assert h.acl(root) == {(user, "own"), (h.service_account, "modify_object")}
    again = h.enrol(user, omero_user)
    assert again["ok"] and not again.get("mapping_changed") and not again.get("created_root"), again
    archive = FIXTURES["image_tar"]
    snap = h.wait(drop(h, archive, manifest(h, archive, omero_user)))["snapshot"]
    res = h.admin_rule("omero_snapshots_unenrol", omero_user, h.omero_server)
    assert res["ok"], res
    h.enrolments.remove((omero_user, h.omero_server))
    st = h.wait(drop(h, archive, manifest(h, archive, omero_user)))
    assert st["status"] == "quarantined" and "not enrolled" in st["reason"], st
    assert h.exists(snap) and h.acl(snap) == handed_over(h, user)
    res = h.enrol(user, omero_user)
    assert res["ok"] and not res.get("created_root"), res
    st = h.wait(drop(h, archive, manifest(h, archive, omero_user)))
    assert st["status"] == "complete", st
    for case in ("enrol", "enrol again", "drop", "unenrol", "drop after unenrol", "enrol again, drop"):
        fam.case(case, "complete")


def test_every_cli_command_on_the_real_zone(h: LiveHarness, robustness: Any) -> None:
    """The CLI of step 1, as the irods OS user with the rodsadmin's environment (`sudo -iu irods omero-snapshots
    ...`, as the guide's step 9 runs it): enrol, list, status, reprocess, release, purge, doctor, unenrol."""
    on_server_host()
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs sudo (tests/live/real_zone.sh installs it)")
    fam = Family(robustness, "CLI commands (as the irods OS user)")

    def cli(*args: str, code: int = 0) -> Any:
        p = subprocess.run(["sudo", "-iu", "irods", "omero-snapshots"] + list(args) + ["--json"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
        doc = json.loads(p.stdout)
        fam.case(args[0], "complete" if code == 0 else "refused")
        return doc

    user = h.create_user()
    res = cli("enrol", user, "--omero-user", user, "--omero-server", h.omero_server)
    h.enrolments.append((user, h.omero_server))
    assert res["ok"] and res["root"] == h.snapshot_root(user), res
    archive = FIXTURES["image_tar"]
    good = drop(h, archive, manifest(h, archive, user))
    snap = h.wait(good)["snapshot"]
    listed = cli("list", "--user", user)  # the CLI prints the snapshots themselves
    assert [s["path"] for s in listed] == [snap], listed
    assert cli("status", good)["status"] == "complete"
    res = cli("reprocess", good, "--force")
    assert res["ok"] and res["snapshot"] == snap, res
    stranger = h.create_user()
    waiting = drop(h, archive, manifest(h, archive, stranger))
    assert h.wait(waiting)["status"] == "quarantined"
    assert cli("release", waiting, code=1)["status"] == "quarantined"  # still unmapped: back to quarantine
    assert h.exists(h.quarantine + "/" + waiting)
    refused = subprocess.run(["sudo", "-iu", "irods", "omero-snapshots", "purge", waiting, "--confirm", "purge:x"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and h.exists(h.quarantine + "/" + waiting), refused.stdout
    res = cli("purge", waiting, "--confirm", "purge:" + waiting)
    assert res["ok"] and not h.exists(h.quarantine + "/" + waiting), res
    assert cli("doctor")["ok"]
    res = cli("unenrol", "--omero-user", user, "--omero-server", h.omero_server)
    h.enrolments.remove((user, h.omero_server))
    assert res["ok"], res
    assert h.exists(snap) and h.acl(snap) == handed_over(h, user)
