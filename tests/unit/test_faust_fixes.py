"""The correction to Faust's commit offset: a hole at the head holds the commit back."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from intervaltree import IntervalTree

from course_management.streams import faust_fixes

TP = ("enrollment-inputs", 0)


def consumer(acked: list[int], committed: int | None) -> Any:
    return SimpleNamespace(
        _acked=defaultdict(list, {TP: list(acked)}),
        _acked_index=defaultdict(set, {TP: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TP: committed}),
        _gap=defaultdict(IntervalTree),
    )


def test_consecutive_acks_from_the_committed_offset_commit() -> None:
    assert faust_fixes._new_offset(consumer([171, 172, 173], 171), TP) == 174


def test_a_one_record_hole_at_the_head_is_not_committed_over() -> None:
    # Faust as shipped returns 175 here: record 171 would be lost.
    assert faust_fixes._new_offset(consumer([172, 173, 174], 171), TP) is None


def test_a_hole_after_committed_zero_is_not_committed_over() -> None:
    assert faust_fixes._new_offset(consumer([3, 4], 0), TP) is None


def test_a_hole_further_on_commits_up_to_it() -> None:
    assert faust_fixes._new_offset(consumer([171, 172, 174], 171), TP) == 173


def test_apply_installs_it_on_faust_s_consumer() -> None:
    from faust.transport.consumer import Consumer

    faust_fixes.apply()
    assert Consumer._new_offset is faust_fixes._new_offset
