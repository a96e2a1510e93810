"""faust_compat: the correction to Faust's commit offset (a hole at the head holds the
commit back), the upstream bug it corrects (still there: when that test fails, upstream
fixed it and the correction can go), and the start-up check of the private names."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from course_management.streams import faust_compat

TP = ("enrollment-inputs", 0)


def consumer(acked: list[int], committed: int | None) -> Any:
    return SimpleNamespace(
        _acked=defaultdict(list, {TP: list(acked)}),
        _acked_index=defaultdict(set, {TP: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TP: committed}),
        _gap=defaultdict(IntervalTree),
    )


def test_consecutive_acks_from_the_committed_offset_commit() -> None:
    assert faust_compat._new_offset(consumer([171, 172, 173], 171), TP) == 174


def test_a_one_record_hole_at_the_head_is_not_committed_over() -> None:
    assert faust_compat._new_offset(consumer([172, 173, 174], 171), TP) is None


def test_a_hole_after_committed_zero_is_not_committed_over() -> None:
    assert faust_compat._new_offset(consumer([3, 4], 0), TP) is None


def test_a_hole_further_on_commits_up_to_it() -> None:
    assert faust_compat._new_offset(consumer([171, 172, 174], 171), TP) == 173


def test_upstream_still_commits_over_a_one_record_hole() -> None:
    """The bug the correction is for, in the pinned faust-streaming. If this fails,
    upstream fixed it: drop the correction (faust_compat, part 1)."""
    assert faust_compat.upstream_new_offset(consumer([172, 173, 174], 171), TP) == 175
    assert faust_compat.upstream_new_offset(consumer([3, 4], 0), TP) == 5


def test_apply_fixes_installs_it_on_faust_s_consumer() -> None:
    faust_compat.apply_fixes()
    assert Consumer._new_offset is faust_compat._new_offset


def test_every_private_name_is_there_in_the_pinned_version() -> None:
    faust_compat.check()


def test_the_check_names_a_missing_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        faust_compat, "CONSUMER_ATTRIBUTES", (*faust_compat.CONSUMER_ATTRIBUTES, "_gone")
    )
    with pytest.raises(faust_compat.FaustChanged, match=r"self\._gone"):
        faust_compat.check()


def test_the_check_names_a_missing_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Consumer, "_new_offset")
    with pytest.raises(faust_compat.FaustChanged, match="_new_offset is gone"):
        faust_compat.check()


async def test_upstream_gap_filling_commits_over_records_fetched_again() -> None:
    """The CI chaos loss (seed 305): the agent rewound the partition to 381 while the
    fetcher still held a batch fetched before; its next record, 404, made Faust note a
    gap 382..403, the refetched 381..403 were dropped as read, and the gap was committed
    as acked. If this fails, upstream changed gap filling: look again at part 1."""
    stale = consumer([404], 381)
    await faust_compat.upstream_add_gap(stale, TP, 382, 403)
    assert faust_compat.upstream_new_offset(stale, TP) == 405


async def test_without_gap_filling_the_rewound_records_hold_the_commit_back() -> None:
    stale = consumer([404], 381)
    await faust_compat._add_gap(stale, SimpleNamespace(topic=TP[0], partition=TP[1]), 382, 403)
    assert not stale._gap[TP]
    assert faust_compat._new_offset(stale, TP) is None


def test_apply_fixes_turns_gap_filling_off() -> None:
    faust_compat.apply_fixes()
    assert Consumer._add_gap is faust_compat._add_gap


def test_records_deleted_by_retention_are_passed_over() -> None:
    """Without gap filling, a committed offset below the log's start would hold the
    commit for ever; the watch counts it from the log's start instead."""
    gone = consumer([500, 501], 120)
    assert faust_compat._new_offset(gone, TP) is None
    faust_compat.pass_over_deleted(gone, TP, 500)
    assert faust_compat._new_offset(gone, TP) == 502
