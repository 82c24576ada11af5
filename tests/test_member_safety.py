"""Pure member-safety rules: no archive, no libarchive, just names and kinds."""

from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.member_safety import (
    RATIO_FLOOR_BYTES,
    MemberInfo,
    Refusal,
    SafetyLimits,
    SafetyScanner,
    check_member,
    normalise_member_path,
)

LIMITS = SafetyLimits()


def f(path: str, size: int = 0, kind: str = "file", raw: Optional[bytes] = None) -> MemberInfo:
    return MemberInfo(path=path, kind=kind, size=size, raw_path=path.encode("utf-8") if raw is None else raw)


def d(path: str) -> MemberInfo:
    return f(path, kind="dir")


def rule(info: MemberInfo, limits: SafetyLimits = LIMITS) -> Optional[str]:
    refusal = check_member(info, limits)
    return refusal.rule if refusal else None


# --------------------------------------------------------------------------- normalise


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("./transfer.xml", "transfer.xml"),
        ("././a/b", "a/b"),
        (".//a", "a"),
        ("a//b///c", "a/b/c"),
        ("root_0/", "root_0"),
        ("./root_0/2023-12/", "root_0/2023-12"),
        ("./", ""),
        (".", ""),
        ("plain", "plain"),
        ("a/./b", "a/./b"),  # inner "." is refused by check_member, not silently dropped
        ("/x", "/x"),  # absolute paths are refused, never made relative
    ],
)
def test_normalise_member_path(raw: str, expected: str) -> None:
    assert normalise_member_path(raw) == expected


@given(st.text(alphabet="ab./", max_size=20))
def test_normalise_is_idempotent(raw: str) -> None:
    once = normalise_member_path(raw)
    assert normalise_member_path(once) == once


# --------------------------------------------------------------------------- check_member


@pytest.mark.parametrize(
    "info, expected",
    [
        (f("./transfer.xml"), None),
        (d("./"), None),
        (d("root_0/"), None),
        (f("/etc/passwd"), "absolute_path"),
        (f("\\windows\\system32"), "absolute_path"),
        (f("C:\\evil.dll"), "absolute_path"),
        (f("c:/evil.dll"), "absolute_path"),
        (f("../x"), "parent_reference"),
        (f("./a/../../x"), "parent_reference"),
        (f("a/.."), "parent_reference"),
        (f("a\\..\\b"), "parent_reference"),
        (f("link", kind="symlink"), "symlink"),
        (f("hard", kind="hardlink"), "hardlink"),
        (f("null", kind="device"), "special_file"),
        (f("pipe", kind="fifo"), "special_file"),
        (f("sock", kind="socket"), "special_file"),
        (f("what", kind="other"), "special_file"),
        (f("./"), "empty_name"),
        (f(""), "empty_name"),
        (f("bad\nname"), "unstorable_name"),
        (f("bad\x00name"), "unstorable_name"),
        (f("bad\x7fname"), "unstorable_name"),
        (f("dir\\file"), "unstorable_name"),
        (f("a/./b"), "unstorable_name"),
        (f("n" * 255), None),
        (f("n" * 256), "name_too_long"),
        (f("\u00e9" * 128), "name_too_long"),  # 256 UTF-8 bytes, 128 characters
        (f("/".join(["d" * 200] * 6) + "/f"), "path_too_long"),
        (f("\ufffd.txt", raw=b"\xff.txt"), "not_utf8"),
        (f("\udcff.txt", raw=b""), "not_utf8"),
        (f("caf\u00e9 (1).tiff"), None),
        (f("simple-plate&plates=1&fields=1.fake"), None),
    ],
)
def test_check_member(info: MemberInfo, expected: Optional[str]) -> None:
    assert rule(info) == expected


def test_limits_come_from_config() -> None:
    assert rule(f("abcd"), SafetyLimits(max_member_name_bytes=3)) == "name_too_long"
    assert rule(f("ab/cd"), SafetyLimits(max_member_path_bytes=4)) == "path_too_long"


def test_refusal_reason_names_member_and_rule() -> None:
    refusal = check_member(f("../etc/passwd"), LIMITS)
    assert refusal is not None
    assert refusal.reason().startswith("member '../etc/passwd' refused (parent_reference): ")
    assert "'../etc/passwd'" in refusal.detail


def test_default_limits() -> None:
    limits = SafetyLimits()
    assert limits.max_members == 100000
    assert limits.max_total_bytes == 1 << 40
    assert limits.max_expansion_ratio == 200.0
    assert limits.case_insensitive_duplicates is False


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "c d", "\u00e9"]), min_size=1, max_size=6))
def test_accepted_paths_stay_inside(parts: list) -> None:
    raw = "/".join(parts)
    if check_member(f(raw), LIMITS) is None:
        path = normalise_member_path(raw)
        assert not path.startswith("/")
        assert ".." not in path.split("/") and "." not in path.split("/")


# --------------------------------------------------------------------------- scanner


def scan(*infos: MemberInfo, limits: SafetyLimits = LIMITS) -> Optional[Refusal]:
    scanner = SafetyScanner(limits)
    for info in infos:
        refusal = scanner.add(info)
        if refusal is not None:
            return refusal
    return None


def test_scanner_accepts_cli_transfer_layout() -> None:
    scanner = SafetyScanner(LIMITS)
    assert scanner.add(d("./")) is None
    assert scanner.new_dirs() == []
    assert scanner.add(d("./root_0/")) is None
    assert scanner.new_dirs() == ["root_0"]
    assert scanner.add(f("./root_0/2023-12/18/img.tiff", 10)) is None
    assert scanner.new_dirs() == ["root_0/2023-12", "root_0/2023-12/18"]  # implicit parents, parents first
    assert scanner.add(f("./transfer.xml", 5)) is None
    assert scanner.new_dirs() == []
    summary = scanner.finish()
    assert (summary.members, summary.files, summary.dirs, summary.total_bytes) == (4, 2, 3, 15)


def test_duplicate_file() -> None:
    refusal = scan(f("./a.txt"), f("a.txt"))
    assert refusal is not None and refusal.rule == "duplicate_name" and refusal.member == "a.txt"


def test_nfc_twins() -> None:
    refusal = scan(f("caf\u00e9.txt"), f("cafe\u0301.txt"))
    assert refusal is not None and refusal.rule == "duplicate_name"
    assert "NFC" in refusal.detail


def test_nfc_twin_parent_collections() -> None:
    refusal = scan(f("caf\u00e9/a"), f("cafe\u0301/b"))
    assert refusal is not None and refusal.rule == "duplicate_name"


def test_case_twins_only_when_configured() -> None:
    assert scan(f("Image.TIF"), f("image.tif")) is None
    refusal = scan(f("Image.TIF"), f("image.tif"), limits=SafetyLimits(case_insensitive_duplicates=True))
    assert refusal is not None and refusal.rule == "duplicate_name"
    assert scan(f("Dir/a"), f("dir/b"), limits=SafetyLimits(case_insensitive_duplicates=True)) is not None


def test_file_used_as_parent() -> None:
    refusal = scan(f("a"), f("a/b"))
    assert refusal is not None and refusal.rule == "duplicate_name"
    assert "parent" in refusal.detail


def test_file_named_like_earlier_dir_and_back() -> None:
    assert scan(d("a/"), f("a")) is not None
    assert scan(f("a/b"), f("a")) is not None  # "a" was an implicit directory
    assert scan(f("a"), d("a/")) is not None


def test_repeated_directory_is_harmless() -> None:
    assert scan(d("d/"), f("d/x"), d("./d/"), d("d")) is None


def test_too_many_members() -> None:
    limits = SafetyLimits(max_members=3)
    assert scan(f("a"), f("b"), f("c"), limits=limits) is None
    refusal = scan(f("a"), f("b"), f("c"), f("d"), limits=limits)
    assert refusal is not None and refusal.rule == "too_many_members" and refusal.member == "d"


def test_too_many_declared_bytes() -> None:
    limits = SafetyLimits(max_total_bytes=100)
    assert scan(f("a", 60), f("b", 40), limits=limits) is None
    refusal = scan(f("a", 60), f("b", 41), limits=limits)
    assert refusal is not None and refusal.rule == "too_many_bytes" and refusal.member == "b"


def test_too_many_actual_bytes_for_undeclared_sizes() -> None:
    scanner = SafetyScanner(SafetyLimits(max_total_bytes=100))
    assert scanner.add(f("a", -1)) is None  # zip with data descriptor: size unknown up front
    assert scanner.note_bytes(100) is None
    refusal = scanner.note_bytes(1)
    assert refusal is not None and refusal.rule == "too_many_bytes" and refusal.member == "a"


def test_expansion_ratio_needs_a_floor() -> None:
    scanner = SafetyScanner(SafetyLimits(max_expansion_ratio=10))
    scanner.add(f("bomb", 1 << 30))
    assert scanner.check_ratio(1, RATIO_FLOOR_BYTES) is None  # tiny archive, huge ratio: ignored
    assert scanner.check_ratio(1 << 20, 10 << 20) is None  # exactly 10x
    refusal = scanner.check_ratio(1 << 20, (10 << 20) + 1)
    assert refusal is not None and refusal.rule == "expansion_ratio" and refusal.member == "bomb"


def test_expansion_ratio_uses_counted_bytes() -> None:
    scanner = SafetyScanner(SafetyLimits(max_expansion_ratio=2))
    scanner.add(f("x", 3 << 20))
    scanner.note_bytes(3 << 20)
    assert scanner.check_ratio(2 << 20) is None
    refusal = scanner.check_ratio(1 << 20)
    assert refusal is not None and refusal.rule == "expansion_ratio"


def test_first_refusal_wins() -> None:
    scanner = SafetyScanner(LIMITS)
    first = scanner.add(f("../a"))
    assert first is not None and first.rule == "parent_reference"
    assert scanner.add(f("/b")) is first
    assert scanner.note_bytes(1) is first
    assert scanner.check_ratio(1, 1 << 30) is first
    assert scanner.refusal is first
