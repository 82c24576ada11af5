"""The streaming core: one pass over real and hostile archives through libarchive."""

from __future__ import annotations

import hashlib
import io
import math
import os
import subprocess
import sys
import tarfile
import tracemalloc
import unicodedata
import zipfile
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("libarchive")

from policy.archive_stream import (  # noqa: E402
    HashingReader,
    UnpackReport,
    scan_archive,
    stream_unpack,
)
from policy.member_safety import SafetyLimits, normalise_member_path  # noqa: E402
from tests import archive_corpus as corpus  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURES = ["valid_single_image.tar", "simple_plate.zip", "valid_single_dataset.zip"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Rules decided from the header alone: the refused member must never reach the sink.
HEADER_RULES = {
    "absolute_path",
    "parent_reference",
    "symlink",
    "hardlink",
    "special_file",
    "duplicate_name",
    "unstorable_name",
    "name_too_long",
    "path_too_long",
    "too_many_members",
    "not_utf8",
    "empty_name",
    "encrypted",
}


class _Writer:
    def __init__(self, sink: RecordingSink, relpath: str) -> None:
        self.sink = sink
        self.relpath = relpath
        self.buf = bytearray()
        self.writes: List[int] = []
        self.closed = False

    def write(self, data: Any) -> int:
        assert not self.closed
        self.writes.append(len(data))
        self.buf += bytes(data)  # copy: the caller reuses its buffer
        return len(data)

    def close(self) -> None:
        self.closed = True
        self.sink.files[self.relpath] = bytes(self.buf)


class RecordingSink:
    """Keeps every member and every write() size, to check the I/O pattern."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.writers: Dict[str, _Writer] = {}
        self.sizes: Dict[str, int] = {}
        self.collections: List[str] = []

    def open_member(self, relpath: str, size: int) -> Any:
        assert relpath not in self.writers, "member opened twice"
        parent = relpath.rpartition("/")[0]
        assert parent == "" or parent in self.collections, "collection made after its member"
        self.sizes[relpath] = size
        self.writers[relpath] = _Writer(self, relpath)
        return self.writers[relpath]

    def make_collection(self, relpath: str) -> None:
        parent = relpath.rpartition("/")[0]
        assert parent == "" or parent in self.collections, "child collection before its parent"
        self.collections.append(relpath)


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class DiscardSink:
    def open_member(self, relpath: str, size: int) -> Any:
        return _Discard()

    def make_collection(self, relpath: str) -> None:
        pass


def reference_members(data: bytes) -> Dict[str, bytes]:
    """The same archive read by the standard library, keyed like ours (NFC, normalised)."""
    out: Dict[str, bytes] = {}
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    out[unicodedata.normalize("NFC", normalise_member_path(info.filename))] = zf.read(info)
        return out
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[unicodedata.normalize("NFC", normalise_member_path(member.name))] = f.read()
    return out


def assert_report_matches(report: UnpackReport, data: bytes) -> None:
    assert report.refusal is None, report.refusal
    expected = reference_members(data)
    assert [m.path for m in report.members] == list(expected)
    for m in report.members:
        assert m.size == len(expected[m.path])
        assert m.sha256 == hashlib.sha256(expected[m.path]).hexdigest(), m.path
    assert report.total_bytes == sum(len(v) for v in expected.values())
    assert report.archive_sha256 == hashlib.sha256(data).hexdigest()
    assert report.archive_bytes == len(data)
    assert report.partial is None


# --------------------------------------------------------------------------- real fixtures


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_scan_and_unpack(name: str) -> None:
    with open(os.path.join(DATA, name), "rb") as fh:
        data = fh.read()
    scanned = scan_archive(io.BytesIO(data))
    assert_report_matches(scanned, data)
    sink = RecordingSink()
    unpacked = stream_unpack(io.BytesIO(data), sink)
    assert_report_matches(unpacked, data)
    assert sink.files == reference_members(data)
    assert unpacked.members == scanned.members and unpacked.dirs == scanned.dirs
    assert sink.collections == unpacked.dirs
    assert all(w.closed for w in sink.writers.values())


def test_fixture_tar_layout() -> None:
    with open(os.path.join(DATA, "valid_single_image.tar"), "rb") as fh:
        report = scan_archive(fh)
    assert report.dirs == ["root_0", "root_0/2023-12", "root_0/2023-12/18", "root_0/2023-12/18/14-52-03.548"]
    assert [m.path for m in report.members] == [
        "root_0/2023-12/18/14-52-03.548/combined_result.tiff",
        "transfer.xml",
    ]


def test_fixture_from_file_object_reads_once() -> None:
    path = os.path.join(DATA, "valid_single_image.tar")
    with open(path, "rb") as fh:
        data = fh.read()
    src = corpus.CountingStream(data)
    report = stream_unpack(src, DiscardSink())
    assert report.ok and src.consumed == len(data) == report.archive_bytes


# --------------------------------------------------------------------------- valid corpus


@pytest.mark.parametrize("name", sorted(corpus.VALID))
def test_valid_corpus(name: str) -> None:
    data, expected_rule = corpus.VALID[name]()
    assert expected_rule is None
    assert_report_matches(scan_archive(io.BytesIO(data)), data)
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert_report_matches(report, data)
    assert sink.files == reference_members(data)


def test_ok_tar_content_and_collections() -> None:
    data, _ = corpus.ok_tar()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert sink.files == corpus.ok_tar_members()
    assert sink.collections == ["root_0", "root_0/2023-12"] == report.dirs
    assert sink.sizes == {k: len(v) for k, v in corpus.ok_tar_members().items()}


def test_empty_archives_are_not_refused() -> None:
    for gen in (corpus.empty_tar, corpus.empty_zip, lambda: (b"", None)):
        data, _ = gen()
        report = stream_unpack(io.BytesIO(data), RecordingSink())
        assert report.ok and report.members == [] and report.dirs == [] and report.total_bytes == 0
        assert report.archive_sha256 == hashlib.sha256(data).hexdigest()


def test_zip_data_descriptor_sizes_come_from_the_bytes() -> None:
    data, _ = corpus.ok_zip_data_descriptor()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.ok
    assert set(sink.sizes.values()) == {-1}  # not declared before the data
    assert {m.path: m.size for m in report.members} == {k: len(v) for k, v in corpus.ok_tar_members().items()}


def test_pax_nfd_names_come_back_nfc() -> None:
    """Observed libarchive behaviour the fast path must know: pax/zip UTF-8 names are NFC-folded."""
    data, _ = corpus.nfd_pax_tar()
    report = scan_archive(io.BytesIO(data))
    assert [m.path for m in report.members] == ["caf\u00e9/b.txt"]


def test_repeated_directory_made_once() -> None:
    data, _ = corpus.repeated_dir_tar()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.ok and sink.collections == ["d"]


# --------------------------------------------------------------------------- hostile corpus


@pytest.mark.parametrize("name", sorted(corpus.HOSTILE))
def test_hostile_corpus(name: str) -> None:
    data, expected_rule = corpus.HOSTILE[name]()
    scanned = scan_archive(io.BytesIO(data))
    assert scanned.refusal is not None and scanned.refusal.rule == expected_rule, scanned.refusal
    assert scanned.archive_sha256 == ""  # a refused pass never vouches for the archive
    assert scanned.refusal.reason().startswith("member ")

    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.refusal == scanned.refusal
    refused = normalise_member_path(report.refusal.member)
    if expected_rule in HEADER_RULES:
        # (a duplicate's earlier twin was legitimately written; RecordingSink refuses a second open)
        if expected_rule != "duplicate_name":
            assert refused not in sink.writers, "a refused member was opened before it was checked"
        assert report.partial is None
    if report.partial is not None:
        assert report.partial in sink.writers and sink.writers[report.partial].closed
    # members completed before the refusal are real and complete
    for m in report.members:
        assert hashlib.sha256(sink.files[m.path]).hexdigest() == m.sha256


def test_hostile_rules_are_specific() -> None:
    rules = {name: gen()[1] for name, gen in corpus.HOSTILE.items()}
    assert {
        "parent_reference",
        "absolute_path",
        "symlink",
        "hardlink",
        "special_file",
        "duplicate_name",
        "not_utf8",
        "truncated",
        "encrypted",
    } <= set(rules.values())


def test_tar_cut_at_a_member_boundary_needs_the_manifest_hash() -> None:
    """libarchive (like GNU tar) accepts a tar without its end-of-archive blocks.

    A cut exactly between members therefore reads as a shorter, valid archive:
    only the archive's sha256 (compared with the manifest) or the member count
    can catch it, which is why the report carries both.
    """
    full = corpus.build_tar([("a", b"x" * 600), ("b", b"y" * 10)], fmt=tarfile.USTAR_FORMAT)
    cut = full[:1536]  # header + 2 data blocks of "a", nothing after
    report = scan_archive(io.BytesIO(cut))
    assert report.ok and [m.path for m in report.members] == ["a"]
    assert report.archive_sha256 != hashlib.sha256(full).hexdigest()


def test_traversal_keeps_earlier_members_only() -> None:
    data, _ = corpus.traversal_tar()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.refusal is not None and report.refusal.member == "./../../etc/passwd"
    assert list(sink.files) == ["ok.txt"]


def test_duplicate_never_overwrites() -> None:
    data, _ = corpus.duplicate_tar()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.refusal is not None and report.refusal.member == "a.txt"
    assert sink.files == {"a.txt": b"first"}


def test_case_twins_when_configured() -> None:
    data, _ = corpus.case_twin_tar()
    assert scan_archive(io.BytesIO(data)).ok
    report = scan_archive(io.BytesIO(data), SafetyLimits(case_insensitive_duplicates=True))
    assert report.refusal is not None and report.refusal.rule == "duplicate_name"


def test_too_many_members() -> None:
    data, _ = corpus.many_members_tar(1001)
    limits = SafetyLimits(max_members=1000)
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink, limits)
    assert report.refusal is not None and report.refusal.rule == "too_many_members"
    assert len(sink.files) == 1000 and "f0001000" not in sink.writers
    assert scan_archive(io.BytesIO(corpus.many_members_tar(1000)[0]), limits).ok


def test_too_many_bytes_declared() -> None:
    data, _ = corpus.ok_tar()
    report = scan_archive(io.BytesIO(data), SafetyLimits(max_total_bytes=1000))
    assert report.refusal is not None and report.refusal.rule == "too_many_bytes"


def test_too_many_bytes_undeclared() -> None:
    data, _ = corpus.ok_zip_data_descriptor()
    report = scan_archive(io.BytesIO(data), SafetyLimits(max_total_bytes=1000))
    assert report.refusal is not None and report.refusal.rule == "too_many_bytes"
    assert report.refusal.member == "root_0/2023-12/image.tiff"


def test_gzip_bomb_refused_early() -> None:
    data, rule = corpus.gzip_bomb()
    src = corpus.CountingStream(data)
    sink = RecordingSink()
    report = stream_unpack(src, sink, write_chunk=1 << 20, block_size=16 << 10)
    assert report.refusal is not None and report.refusal.rule == rule == "expansion_ratio"
    assert src.consumed < len(data) // 4, (src.consumed, len(data))
    assert len(sink.files["zeros.bin"]) <= 4 << 20  # a few MiB written, not 200
    assert report.partial == "zeros.bin"


def test_gzip_bomb_refused_with_default_blocks() -> None:
    data, _ = corpus.gzip_bomb()
    report = scan_archive(io.BytesIO(data))
    assert report.refusal is not None and report.refusal.rule == "expansion_ratio"


def test_encrypted_zip_is_real() -> None:
    data, _ = corpus.encrypted_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.infolist()[0].flag_bits & 1
        assert zf.read("secret.txt", pwd=corpus.ZIP_PASSWORD) == corpus.ENCRYPTED_PLAIN


def test_zip_symlink_is_read_as_plain_file() -> None:
    """Streaming zip cannot see unix modes (central directory only): the link is a small file."""
    data, _ = corpus.zip_symlink()
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink)
    assert report.ok and sink.files == {"link": b"/etc/passwd"}


# --------------------------------------------------------------------------- I/O pattern


@pytest.mark.parametrize("name", ["tar", "tar_gz", "zip", "zip_data_descriptor"])
def test_writes_are_full_chunks(name: str) -> None:
    data, _ = corpus.VALID[name]()
    chunk = 64 << 10
    sink = RecordingSink()
    report = stream_unpack(io.BytesIO(data), sink, write_chunk=chunk, block_size=4 << 10)
    assert report.ok
    for relpath, writer in sink.writers.items():
        size = len(sink.files[relpath])
        assert len(writer.writes) == math.ceil(size / chunk), (relpath, writer.writes)
        assert all(n == chunk for n in writer.writes[:-1]), (relpath, writer.writes)
        assert sum(writer.writes) == size


def test_default_chunk_is_one_write_per_small_member() -> None:
    with open(os.path.join(DATA, "valid_single_image.tar"), "rb") as fh:
        sink = RecordingSink()
        report = stream_unpack(fh, sink)
    assert report.ok
    assert {k: w.writes for k, w in sink.writers.items()} == {
        "root_0/2023-12/18/14-52-03.548/combined_result.tiff": [2097319],
        "transfer.xml": [3528],
    }


def test_memory_bounded_by_buffer_not_member() -> None:
    peaks = []
    for size in (64 << 20, 128 << 20):
        src = corpus.ZeroTarStream(size)
        tracemalloc.start()
        try:
            report = stream_unpack(src, DiscardSink())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.ok and report.members[0].size == size and report.archive_bytes == src.total
        peaks.append(peak)
    assert all(p < 16 << 20 for p in peaks), peaks
    assert peaks[1] < peaks[0] * 1.5, peaks


# --------------------------------------------------------------------------- errors not the archive's


def test_source_error_is_raised_not_reported_as_truncation() -> None:
    data, _ = corpus.ok_tar()
    src = corpus.CountingStream(data, fail_after=100_000)
    with pytest.raises(ConnectionResetError):
        stream_unpack(src, RecordingSink(), block_size=16 << 10)


def test_sink_error_is_raised() -> None:
    class Broken(RecordingSink):
        def open_member(self, relpath: str, size: int) -> Any:
            raise PermissionError("CAT_NO_ACCESS_PERMISSION")

    data, _ = corpus.ok_tar()
    with pytest.raises(PermissionError):
        stream_unpack(io.BytesIO(data), Broken())


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        stream_unpack(io.BytesIO(b""), RecordingSink(), write_chunk=0)


def test_hashing_reader() -> None:
    data = corpus.payload(10_000)
    reader = HashingReader(io.BytesIO(data))
    assert not reader.seekable()
    buf = bytearray(1000)
    assert reader.readinto(buf) == 1000 and bytes(buf) == data[:1000]
    assert reader.read(500) == data[1000:1500]
    assert reader.drain(chunk=3000) == 8500
    assert reader.bytes_read == len(data)
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hashing_reader_without_readinto() -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._b = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._b.read(n)

    data, _ = corpus.ok_tar()
    report = scan_archive(ReadOnly(data))  # type: ignore[arg-type]
    assert_report_matches(report, data)


# --------------------------------------------------------------------------- process-level properties


def _run_python(code: str, env: Optional[Dict[str, str]] = None) -> str:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_libarchive_is_imported_lazily() -> None:
    out = _run_python(
        "import sys, policy.archive_stream, policy.member_safety; print('libarchive' in sys.modules)"
    )
    assert out.strip() == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uselocale fallback is Linux-only")
def test_utf8_zip_names_in_c_locale() -> None:
    """iRODS agents often run with LC_CTYPE=C, where libarchive drops zip UTF-8 names entirely."""
    code = (
        "import io, zipfile, locale\n"
        "from policy.archive_stream import scan_archive\n"
        "assert locale.nl_langinfo(locale.CODESET) != 'UTF-8', locale.nl_langinfo(locale.CODESET)\n"
        "b = io.BytesIO()\n"
        "with zipfile.ZipFile(b, 'w') as z:\n"
        "    z.writestr('caf\\u00e9/\\u00b5m.txt', b'x')\n"
        "r = scan_archive(io.BytesIO(b.getvalue()))\n"
        "print(r.refusal, ascii([m.path for m in r.members]))\n"
    )
    out = _run_python(code, {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"})
    assert out.strip() == "None ['caf\\xe9/\\xb5m.txt']"


@pytest.mark.parametrize(
    "message, in_data, rule",
    [
        ("Passphrase required for this entry", True, "encrypted"),
        ("Encrypted file is unsupported", True, "encrypted"),
        ("Truncated tar archive", True, "truncated"),
        ("truncated gzip input", False, "truncated"),
        ("Damaged tar archive", False, "unreadable"),
        ("Unrecognized archive format", False, "unreadable"),
    ],
)
def test_libarchive_errors_map_to_rules(message: str, in_data: bool, rule: str) -> None:
    from policy.archive_stream import _archive_refusal

    refusal = _archive_refusal(Exception(message), "m.txt", in_data)
    assert refusal.rule == rule and message in refusal.detail
