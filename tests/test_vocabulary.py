"""policy.vocabulary: the AVU namespace, single-valued replacement, add-only completion, value clipping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import vocabulary as V
from policy.zone import Avu, MetaOp


def test_all_attributes_share_the_namespace():
    names = [v for k, v in vars(V).items() if k.isupper() and isinstance(v, str) and v.startswith("omero")]
    assert names and all(n.startswith("omero.snapshot.") for n in names)
    assert len(set(names)) == len(names)


# ---------------------------------------------------------------------- replace_ops
def test_replace_adds_missing_attribute():
    assert V.replace_ops([], {V.STATUS: "queued"}) == [MetaOp("add", V.STATUS, "queued", "")]


def test_replace_is_noop_when_already_equal():
    current = [Avu(V.STATUS, "placed"), Avu(V.REASON, "-")]
    assert V.replace_ops(current, {V.STATUS: "placed", V.REASON: "-"}) == []


def test_replace_changes_value_removing_old_first():
    current = [Avu(V.STATUS, "queued", "u"), Avu(V.DROP_ID, "d")]
    ops = V.replace_ops(current, {V.STATUS: "placed"})
    assert ops == [MetaOp("remove", V.STATUS, "queued", "u"), MetaOp("add", V.STATUS, "placed", "")]


def test_replace_removes_duplicates_even_if_one_matches():
    current = [Avu(V.STATUS, "placed"), Avu(V.STATUS, "queued"), Avu(V.OBJECT, "Image:1")]
    ops = V.replace_ops(current, {V.STATUS: "placed"})
    assert MetaOp("remove", V.STATUS, "placed", "") in ops
    assert MetaOp("remove", V.STATUS, "queued", "") in ops
    assert ops[-1] == MetaOp("add", V.STATUS, "placed", "")
    assert all(op.attribute == V.STATUS for op in ops)  # other attributes untouched


def test_replace_applied_gives_single_valued_result():
    current = [Avu(V.STATUS, "a"), Avu(V.STATUS, "b"), Avu(V.REASON, "old")]
    after = _apply(current, V.replace_ops(current, {V.STATUS: "c", V.REASON: "new", V.UPDATED: "t"}))
    assert V.as_dict(after) == {V.STATUS: ["c"], V.REASON: ["new"], V.UPDATED: ["t"]}


def test_replace_clips_and_fills_empty_values():
    long_reason = "é" * 5000
    ops = V.replace_ops([], {V.REASON: long_reason, V.LABEL: ""})
    reason = [o for o in ops if o.attribute == V.REASON][0].value
    assert len(reason.encode("utf-8")) <= V.MAX_VALUE_CHARS
    assert [o.value for o in ops if o.attribute == V.LABEL] == ["-"]
    # and a clipped value already present is recognised as equal (no churn on retry)
    assert V.replace_ops([Avu(V.REASON, reason)], {V.REASON: long_reason}) == []


# ---------------------------------------------------------------------- add_missing_ops
def test_add_missing_only_adds_absent_pairs():
    current = [Avu(V.OBJECT, "Image:1"), Avu(V.DROP_ID, "d")]
    wanted = [Avu(V.OBJECT, "Image:1"), Avu(V.OBJECT, "Image:2"), Avu(V.DROP_ID, "d"), Avu(V.ARCHIVE_SIZE, "9", "B")]
    ops = V.add_missing_ops(current, wanted)
    assert ops == [MetaOp("add", V.OBJECT, "Image:2", ""), MetaOp("add", V.ARCHIVE_SIZE, "9", "B")]
    assert all(o.operation == "add" for o in ops)


def test_add_missing_dedupes_wanted_and_finishes_half_written_set():
    wanted = [Avu(V.OBJECT, "Image:1"), Avu(V.OBJECT, "Image:1"), Avu(V.OBJECT, "Image:2")]
    assert len(V.add_missing_ops([], wanted)) == 2
    half = _apply([], V.add_missing_ops([], wanted[:1]))
    rest = V.add_missing_ops(half, wanted)
    assert rest == [MetaOp("add", V.OBJECT, "Image:2", "")]
    assert V.add_missing_ops(_apply(half, rest), wanted) == []


def test_add_missing_keeps_existing_values_of_same_attribute():
    ops = V.add_missing_ops([Avu(V.STATUS, "placed")], [Avu(V.STATUS, "queued")])
    assert ops == [MetaOp("add", V.STATUS, "queued", "")]  # add-only: never removes


def test_add_missing_compares_clipped_values():
    long = "x" * 3000
    ops = V.add_missing_ops([], [Avu(V.REASON, long)])
    assert len(ops) == 1 and len(ops[0].value) <= V.MAX_VALUE_CHARS
    assert V.add_missing_ops([Avu(V.REASON, ops[0].value)], [Avu(V.REASON, long)]) == []


# ---------------------------------------------------------------------- clip
def test_clip_short_values_unchanged():
    assert V.clip("placed") == "placed"
    assert V.clip("x" * V.MAX_VALUE_CHARS) == "x" * V.MAX_VALUE_CHARS


def test_clip_never_empty():
    assert V.clip("") == "-"
    assert V.clip(None) == "-"  # type: ignore[arg-type]


def test_clip_respects_byte_limit_and_marks_cut():
    out = V.clip("x" * 3000)
    assert len(out.encode("utf-8")) == V.MAX_VALUE_CHARS and out.endswith("...")
    assert V.clip("abcdefghij", 8) == "abcde..."


def test_clip_does_not_split_utf8_sequences():
    out = V.clip("€" * 10, 10)  # 3 bytes each: 7 bytes of room -> two whole characters
    assert out == "€€..."
    out.encode("utf-8")


def test_clip_refuses_limits_too_small_for_the_marker():
    with pytest.raises(ValueError):
        V.clip("abcdef", 2)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), limit=st.integers(min_value=4, max_value=200))
def test_clip_property(text, limit):
    out = V.clip(text, limit)
    data = out.encode("utf-8")
    assert out and len(data) <= limit
    if len(text.encode("utf-8")) <= limit and text:
        assert out == text
    elif text:
        assert out.endswith("...") and text.startswith(out[:-3])


# ---------------------------------------------------------------------- readers
def test_first_and_as_dict():
    avus = [Avu(V.OBJECT, "Image:1"), Avu(V.STATUS, "placed"), Avu(V.OBJECT, "Image:2")]
    assert V.first(avus, V.OBJECT) == "Image:1"
    assert V.first(avus, V.LABEL) is None
    assert V.as_dict(avus) == {V.OBJECT: ["Image:1", "Image:2"], V.STATUS: ["placed"]}


def _apply(current, ops):
    out = list(current)
    for op in ops:
        if op.operation == "remove":
            out = [a for a in out if (a.attribute, a.value, a.units) != (op.attribute, op.value, op.units)]
        else:
            out.append(Avu(op.attribute, op.value, op.units))
    return out
