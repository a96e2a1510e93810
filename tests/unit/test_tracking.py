"""The course agent's positions: each enrollment-inputs record once and in order, each
source record once however often it is forwarded (streams/tracking.py). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from course_management.streams.batch import Batch
from course_management.streams.inputs import Input
from course_management.streams.tracking import (
    Order,
    already_applied,
    input_order,
    next_offset,
    stage_applied,
    stage_next,
)
from course_management.topology import ENROLLMENT_INPUTS
from tests.unit.test_batch import _World


@dataclass
class _Message:
    partition: int
    offset: int
    topic: str = "course-management-enrollment-inputs"


@dataclass
class _Event:
    message: _Message
    key: bytes = b"c"
    headers: Any = None


def _batch() -> tuple[Batch]:
    """A batch deciding on agent partition 3."""
    batch = _World().batch
    batch.begin()
    batch.deciding(_Event(_Message(3, 0))).__enter__()
    return (batch,)


def _input(source: tuple[int, int, int] | None) -> Input:
    return Input(
        "user_enrolled", "user-enrolled", None, None, {}, None, None, source_position=source
    )


def _apply(batch: Any, offset: int, earliest: int | None = None) -> Order:
    event = _Event(_Message(3, offset))
    order = input_order(batch, event, earliest)
    if order is Order.NEXT:
        stage_next(batch, event)
    return order


def test_a_partition_is_taken_in_order_and_once() -> None:
    batch, *_ = _batch()
    assert _apply(batch, 10, earliest=10) is Order.NEXT  # the first the log keeps
    assert [_apply(batch, o) for o in (11, 12)] == [Order.NEXT] * 2
    assert _apply(batch, 11) is Order.REPEAT  # after a crash or a rewind
    # The consumer skipped 13 and 14 (faust #216): 15 waits for the rewind.
    assert _apply(batch, 15) is Order.AHEAD
    assert (
        next_offset(batch, ENROLLMENT_INPUTS, 3) == 13
    )  # where the agent rewinds the partition to
    assert [_apply(batch, o) for o in (13, 14, 15)] == [Order.NEXT] * 3


def test_the_tables_position_is_followed_whatever_the_consumer_committed() -> None:
    """Faust committed past records it never delivered; following its committed offset
    skipped them for good (the chaos run, issue 15): an input past the tables' position
    is ahead, however far, unless the records before it are gone (retention)."""
    batch, *_ = _batch()
    _apply(batch, 10, earliest=10)
    assert _apply(batch, 500) is Order.AHEAD
    assert _apply(batch, 500, earliest=11) is Order.AHEAD  # 11.. are still kept
    assert _apply(batch, 500, earliest=400) is Order.NEXT  # 11..399 deleted by retention
    assert next_offset(batch, ENROLLMENT_INPUTS, 3) == 501


def test_a_partition_s_first_input_is_the_first_the_log_keeps() -> None:
    """Faust delivered a partition's third record first and committed past the two before
    it; taking whatever came first as the start lost them (the chaos run, issue 22)."""
    batch, *_ = _batch()
    assert _apply(batch, 2) is Order.AHEAD  # the log's start not known yet: not taken
    assert _apply(batch, 2, earliest=0) is Order.AHEAD  # records 0 and 1 come first
    assert [_apply(batch, o, earliest=0) for o in (0, 1, 2)] == [Order.NEXT] * 3
    fresh, *_ = _batch()
    assert _apply(fresh, 0) is Order.NEXT  # offset 0 is the start of any log
    other, *_ = _batch()
    assert _apply(other, 7, earliest=7) is Order.NEXT  # 0-6 deleted by retention


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


class _Positions:
    def __init__(self, earliest: int | None) -> None:
        self.first = earliest
        self.rewinds: list[tuple[Any, int]] = []

    async def earliest(self, tp: Any) -> int | None:
        return self.first

    async def rewind(self, tp: Any, offset: int) -> None:
        self.rewinds.append((tp, offset))


async def test_an_input_ahead_of_the_tables_rewinds_its_partition_and_is_not_decided() -> None:
    from types import SimpleNamespace

    from course_management.streams import agent

    batch, *_ = _batch()
    _apply(batch, 10, earliest=10)
    positions = _Positions(earliest=0)

    class _FaustEvent:  # the batch keeps a weak reference to the current event
        message = SimpleNamespace(topic=ENROLLMENT_INPUTS, partition=3, offset=20, tp="tp-3")
        key, value, headers = b"c", b"v", {}

    event: Any = _FaustEvent()
    with batch.deciding(event):
        await agent.handle(None, batch, event, positions)  # type: ignore[arg-type]
    assert positions.rewinds == [("tp-3", 11)]
    # nothing decided
    assert batch.partitions[3].records == [] and next_offset(batch, ENROLLMENT_INPUTS, 3) == 11


async def test_a_first_input_past_the_log_s_start_rewinds_to_it() -> None:
    from types import SimpleNamespace

    from course_management.streams import agent

    batch, *_ = _batch()
    positions = _Positions(earliest=4)

    class _FaustEvent:
        message = SimpleNamespace(topic=ENROLLMENT_INPUTS, partition=3, offset=6, tp="tp-3")
        key, value, headers = b"c", b"v", {}

    event: Any = _FaustEvent()
    with batch.deciding(event):
        await agent.handle(None, batch, event, positions)  # type: ignore[arg-type]
    assert positions.rewinds == [("tp-3", 4)]
    assert next_offset(batch, ENROLLMENT_INPUTS, 3) is None  # nothing decided
