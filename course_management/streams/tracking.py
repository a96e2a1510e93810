"""What the course agent has applied, exactly: each enrollment-inputs record once, in
order, and each source record once, however often it is forwarded.

Two positions, kept in the `enrollments` table beside the state they describe (as an
event-sourced projection keeps its tracking records with its state), each written under
its input, after the input's other writes, so after a crash the table never claims more
than it holds:

1. **The next enrollment-inputs offset of each agent partition** (`#next:<partition>`).
   An input below it was applied already (a repeat after a crash or a rewind): skipped.
   An input above it means Faust skipped records (it resumes partitions before seeking
   them after a restart, faust #216): it is not decided now; the partition watch
   rewinds the partition to its committed offset, which is never past the hole, and the
   records come again in order. So every partition is applied strictly in order.
2. **The highest source offset applied, per agent partition and source partition**
   (`#applied:<partition>:<topic>:<source partition>`). The router forwards each record
   with where it read it. A source partition's records reach an agent partition in order
   (the router forwards in order and commits after the broker's acks), so a record at or
   below that offset is a second forward of one applied (or refused) already: a replay
   of a source topic, say after the router's group lost its offsets. It is skipped whole:
   no table write, event, dead letter or reply.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from course_management.streams.batch import Batch
from course_management.streams.inputs import Input


class Order(StrEnum):
    NEXT = "next"  # the partition's next input: decide it
    REPEAT = "repeat"  # applied already (a repeat after a crash or a rewind)
    AHEAD = "ahead"  # records before it were skipped by the consumer: wait for them


def _next_key(partition: int) -> str:
    return f"#next:{partition}"


def input_order(batch: Batch, event: Any, committed: int | None) -> Order:
    """Where an enrollment-inputs record stands against what its partition applied.
    `committed` is the consumer's committed offset of the partition: a record above the
    next offset but at or below a committed offset past it (the group was moved forward
    on purpose) is taken as the next."""
    partition, offset = event.message.partition, event.message.offset
    expected = batch.enrollments.get(_next_key(partition))
    if expected is None or offset == expected:
        return Order.NEXT
    if offset < expected:
        return Order.REPEAT
    if committed is not None and committed > expected and offset >= committed:
        return Order.NEXT
    return Order.AHEAD


def stage_next(batch: Batch, event: Any) -> None:
    """The partition's next offset after this input (staged after its other writes)."""
    batch.enrollments[_next_key(event.message.partition)] = event.message.offset + 1


def tracking_key(agent_partition: int, topic: str, source_partition: int) -> str:
    """The key carries the agent partition, so every partition keeps its own record."""
    return f"#applied:{agent_partition}:{topic}:{source_partition}"


def already_applied(batch: Batch, item: Input) -> bool:
    if item.source is None:
        return False  # forwarded by a router without source positions (before 2026-12-01)
    agent_partition, source_partition, offset = item.source
    applied = batch.enrollments.get(tracking_key(agent_partition, item.topic, source_partition))
    return applied is not None and offset <= int(applied)


def stage_applied(batch: Batch, item: Input) -> None:
    """The input's source position (staged after its other writes: a crash between them
    leaves the input to be decided again, which is safe; never the other way round)."""
    if item.source is None:
        return
    agent_partition, source_partition, offset = item.source
    batch.enrollments[tracking_key(agent_partition, item.topic, source_partition)] = offset
