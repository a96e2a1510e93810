"""Where each source partition's records have been applied up to: replays change nothing.

The router forwards `user-enrolled` and `course-progress` records with the partition and
offset they had on their source topic. For each agent partition, the `enrollments` table
keeps the highest source offset applied per source partition (a tracking record, as an
event-sourced projection keeps its tracking records with its state, written under the
same input, last). An input at or below that offset was applied (or refused) already and
is skipped whole: no table write, event, dead letter or reply. That is exact however far
back a source topic is replayed (say, after the router's group lost its offsets), unlike
a window of recent event ids.

Why one number is enough: the router forwards a source partition in order and commits
only after the broker acked the forwards, so within an agent partition a source
partition's offsets arrive in order, apart from repeats of a batch after a crash or a
rebalance, which are at or below what was applied.
"""

from __future__ import annotations

from course_management.streams.batch import Batch
from course_management.streams.inputs import Input


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
    """The input's position, staged after its other table writes (a crash between them
    leaves the input to be decided again, which is safe; never the other way round)."""
    if item.source is None:
        return
    agent_partition, source_partition, offset = item.source
    batch.enrollments[tracking_key(agent_partition, item.topic, source_partition)] = offset
