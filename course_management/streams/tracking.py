"""What the course agent has applied, exactly: each enrollment-inputs record once, in
order, and each source record once, however often it is forwarded.

Two positions, kept in the `course-state` table beside the state they describe (as an
event-sourced projection keeps its tracking records with its state). A batch writes each
once per partition, in the same unit as the effects they account for (decision 49), so
the table never claims more or less than it holds:

1. **The next offset of each agent partition**, of the enrollment inputs
   (`#next:<partition>`) and of `course-commands` (`#next-commands:<partition>`, since
   issue 22: a refused command decided again after a crash, against a later state, could
   be accepted; the model test found a refused cancel that cancelled a later enrolment).
   An input below it was applied already (a repeat after a crash or a rewind): skipped.
   An input above it means the consumer skipped records: it is not decided now, and the
   agent rewinds the partition to this offset (`Order.AHEAD`). The tables' position is
   the truth, never the consumer's committed offset: Faust may commit past records it
   never delivered (it resumes partitions before seeking them after a restart, faust
   #216, and it counts a gap in the offsets it reads as acked). Following the committed
   offset past this one, as this module did, skipped those records for good: refused
   `user_enrolled` records neither applied nor dead-lettered (found by the chaos run,
   issue 15). Only records already deleted by the topic's retention are passed over.
   So every partition is applied strictly in order.
2. **The highest source offset applied, per agent partition and source partition**
   (`#applied:<partition>:<topic>:<source partition>`). The router forwards each record
   with where it read it. A source partition's records reach an agent partition in order
   (the router forwards in order and commits after the broker's acks), so a record at or
   below that offset is a second forward of one applied (or refused) already: a replay
   of a source topic, say after the router's group lost its offsets. It is skipped whole:
   no table write, event, dead letter or reply.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from course_management.streams.batch import Batch
from course_management.streams.inputs import Input
from course_management.topology import COURSE_COMMANDS

log = logging.getLogger(__name__)


class Order(StrEnum):
    NEXT = "next"  # the partition's next input: decide it
    REPEAT = "repeat"  # applied already (a repeat after a crash or a rewind)
    AHEAD = "ahead"  # the consumer skipped records before it: rewind to them


def _next_key(topic: str, partition: int) -> str:
    if topic == COURSE_COMMANDS:
        return f"#next-commands:{partition}"
    return f"#next:{partition}"  # the enrollment inputs (the first tracked, decision 37)


def input_order(batch: Batch, event: Any, earliest: int | None = None) -> Order:
    """Where an input stands against what its topic's partition applied. `earliest` is
    the partition's first offset still kept (None: not known): when the next offset is
    below it, those records are gone and the record is taken as next."""
    message = event.message
    partition, offset = message.partition, message.offset
    expected = next_offset(batch, message.topic, partition)
    if expected is None:
        # Nothing applied on this partition yet: its first input is the first one the log
        # keeps, not whichever the consumer happens to deliver first (Faust delivered a
        # partition's third record first and committed past the two before it: the
        # chaos run's short profile, issue 22).
        if offset == 0 or (earliest is not None and offset <= earliest):
            return Order.NEXT
        return Order.AHEAD
    if offset == expected:
        return Order.NEXT
    if offset < expected:
        return Order.REPEAT
    if earliest is not None and expected < earliest:
        log.warning(
            "enrollment inputs deleted by retention before they were applied",
            extra={"partition": partition, "from": expected, "to": earliest},
        )
        return Order.NEXT
    return Order.AHEAD


def next_offset(batch: Batch, topic: str, partition: int) -> int | None:
    """The next offset of the topic's partition the table has not applied (None: none
    yet)."""
    expected = batch.get(_next_key(topic, partition))
    return None if expected is None else int(expected)


def stage_next(batch: Batch, event: Any) -> None:
    """The partition's next offset after this input (in the batch's unit)."""
    batch.put(_next_key(event.message.topic, event.message.partition), event.message.offset + 1)


def tracking_key(agent_partition: int, topic: str, source_partition: int) -> str:
    """The key carries the agent partition, so every partition keeps its own record."""
    return f"#applied:{agent_partition}:{topic}:{source_partition}"


def already_applied(batch: Batch, item: Input) -> bool:
    if item.source_position is None:
        return False  # forwarded by a router without source positions (before 2026-12-01)
    agent_partition, source_partition, offset = item.source_position
    applied = batch.get(tracking_key(agent_partition, item.source_topic, source_partition))
    return applied is not None and offset <= int(applied)


def stage_applied(batch: Batch, item: Input) -> None:
    """The input's source position (in the batch's unit, with the input's effects)."""
    if item.source_position is None:
        return
    agent_partition, source_partition, offset = item.source_position
    batch.put(tracking_key(agent_partition, item.source_topic, source_partition), offset)
