"""Watches the course agent's partitions: lag gauges and stuck partitions. Its one seek
goes through the agent's rewinder (streams/agent.PartitionRewinder).

Lag is the log end minus the committed offset (records not yet processed); a partition
with lag whose committed offset has not moved for STALL_AFTER_S is logged once with the
consumer's view of it, so a stuck partition is visible instead of silent. When later
records of it were processed (acked) but the one at the committed offset never was,
Faust skipped that record (it resumes partitions before seeking them after a restart,
faust #216): the watch rewinds the partition to its committed offset. Every input is
taken once and in order by the table's tracking (streams/tracking.py), so the replay
skips what was applied and decides the skipped record; without it, when the records
after the hole were applied already, the agent skips and acks them and the group's
commit stays behind the hole for good (the short chaos run with seed 227 found the group
234 records behind, 0 anomalies). For a few hours on 2026-12-06 the seek was left out:
the paused-worker crash test had found learners "both enrolled and refused", with the
seek and without it; that was the test repeating its own cancellations and enrolments
after a fenced restart (tests/integration/test_crash_points.py says how), not the
service. The consumer's private bookkeeping is read through faust_compat.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import TP
from mode import Service

from course_management.infra.metrics import CONSUMER_LAG
from course_management.streams.faust_compat import (
    acked_offsets,
    committed_offset,
    partition_state,
    pass_over_deleted,
)

log = logging.getLogger(__name__)

STALL_AFTER_S = 3.0


class PartitionWatch(Service):
    def __init__(self, app: Any, rewinder: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._rewinder = rewinder  # streams/agent.PartitionRewinder
        self._positions: dict[TP, tuple[int, float]] = {}
        self._stalled: set[TP] = set()

    @Service.timer(1.0)
    async def _watch(self) -> None:
        app = self._app
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        consumer = app.consumer
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            if tp.topic.endswith("-changelog"):
                continue  # written by this worker, read only while recovering
            end = consumer.highwater(tp)
            committed = committed_offset(consumer, tp)
            if end is None:
                continue
            done = committed if committed is not None else 0
            CONSUMER_LAG.labels("course-agent", tp.topic, str(tp.partition)).set(max(0, end - done))
            seen = self._positions.get(tp)
            if seen is None or seen[0] != done or end <= done:
                self._positions[tp] = (done, now)
                self._stalled.discard(tp)
                continue
            if now - seen[1] < STALL_AFTER_S:
                continue
            acked = acked_offsets(consumer, tp)
            # Later records processed (acked) but not the one at the committed offset.
            hole = bool(acked) and committed is not None and min(acked) > committed
            if tp in self._stalled and not hole:
                continue  # already reported; still waiting on its head record
            self._stalled.add(tp)
            state = {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": committed,
                "end": end,
                "position": await consumer.position(tp),
                "acked": len(acked),
                "first_acked": min(acked) if acked else None,
                **partition_state(consumer, tp),
            }
            log.warning(
                "partition not advancing" + (": a record skipped by Faust" if hole else ""),
                extra=state,
            )
            if hole and committed is not None:
                log_start = await self._rewinder.earliest(tp)
                if log_start is not None and committed < log_start:
                    # Deleted by retention (a group away longer than the topic keeps
                    # records): nothing to take there, the agent passed over them.
                    pass_over_deleted(consumer, tp, log_start)
                    committed = log_start
                # Every input is skipped once applied, so replaying from the committed
                # offset is safe, and it is the only way to take the skipped record.
                await self._rewinder.rewind(tp, committed, again=True)
                self._positions.pop(tp, None)
                self._stalled.discard(tp)
