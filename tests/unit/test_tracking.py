"""The course agent's positions: each enrollment-inputs record once and in order, each
source record once however often it is forwarded (streams/tracking.py). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from course_management.streams.inputs import Input
from course_management.streams.tracking import (
    Order,
    already_applied,
    input_order,
    stage_applied,
    stage_next,
)
from tests.unit.test_batch import _batch


@dataclass
class _Message:
    partition: int
    offset: int


@dataclass
class _Event:
    message: _Message


def _input(source: tuple[int, int, int] | None) -> Input:
    return Input("user_enrolled", "user-enrolled", None, None, {}, None, None, source=source)


def _apply(batch: Any, offset: int) -> Order:
    event = _Event(_Message(3, offset))
    order = input_order(batch, event, committed=None)
    if order is Order.NEXT:
        stage_next(batch, event)
    return order


def test_a_partition_is_taken_in_order_and_once() -> None:
    batch, *_ = _batch()
    assert [_apply(batch, o) for o in (10, 11, 12)] == [Order.NEXT] * 3
    assert _apply(batch, 11) is Order.REPEAT  # after a crash or a rewind
    # The consumer skipped 13 and 14 (faust #216): 15 waits for the rewind.
    assert _apply(batch, 15) is Order.AHEAD
    assert [_apply(batch, o) for o in (13, 14, 15)] == [Order.NEXT] * 3


def test_a_committed_offset_moved_past_the_next_one_is_followed() -> None:
    batch, *_ = _batch()
    _apply(batch, 10)
    event = _Event(_Message(3, 500))
    assert input_order(batch, event, committed=400) is Order.NEXT  # the group was moved on
    assert input_order(batch, event, committed=11) is Order.AHEAD


def test_a_second_forward_of_a_source_record_is_applied_already() -> None:
    batch, *_ = _batch()
    first = _input((3, 0, 41))
    assert not already_applied(batch, first)
    stage_applied(batch, first)
    assert already_applied(batch, _input((3, 0, 41)))  # a replay of the source topic
    assert already_applied(batch, _input((3, 0, 7)))
    assert not already_applied(batch, _input((3, 0, 42)))
    assert not already_applied(batch, _input((3, 1, 7)))  # another source partition
    assert not already_applied(batch, _input((2, 0, 7)))  # another agent partition
    assert not already_applied(batch, _input(None))  # a forward without its position
