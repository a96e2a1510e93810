"""The course agent's timer: releases the time locks that are due (decision 56).

Course changes and enrolments leave `#due:<moment>:<course>:<module>[:<user>]` entries in
the `course-state` table, on the course's partition (streams/course_handlers.py,
streams/enrollment_handlers.py); the table keeps them ordered by moment. Between its
batches the agent asks the timer to run: on each partition it owns, the timer reads the
entries whose moment has passed and releases them (domain.timers.release) in one unit of
at most CHUNK learners, through the same batch and applier as any input, so a release is
exactly as durable as a decision: the records' `opened`, the milestones in the outbox,
and the entry's cursor (or its removal) land together. A crash before the unit lands
decides the same chunk again; the milestone ids derive from course, learner and module.

Cost: one date for 100,000 learners is one entry, read in chunks by its cursor (the
table's enrolment keys are ordered by user id); at most CHUNK learners per PAUSE_S, so
the burst of milestones is produced at a bounded rate between the inputs' batches, which
keep their turn. When the learners of the dates due now could not all be told at that
pace within BOUND_S of the moment (or once HURRY_S behind), it hurries: bigger units,
no pause, yielding to the API all the same, so a date for 100,000 learners is out
within its minute.
`cms_timer_lag_seconds` is how late the earliest due entry is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from course_management.domain.progress import public_view
from course_management.domain.records import course_of
from course_management.domain.timers import Due, release
from course_management.domain.times import parse_rfc3339, rfc3339
from course_management.infra.metrics import MILESTONES, TIMER_LAG, TIMER_RELEASED
from course_management.messages import learner_milestone
from course_management.streams.batch import Batch
from course_management.tables.keys import DUE_PREFIX, due_key, enrollment_key, enrollment_prefix

CHUNK = 25  # learners released in one unit at most
PAUSE_S = 0.025  # between two runs: at most CHUNK / PAUSE_S learners a second
YIELD_EVERY = 4  # learners decided between two turns of the event loop (the API's)
HURRY_S = 30.0  # later than this behind its earliest due moment, the timer hurries:
HURRY_CHUNK = 8 * CHUNK  # bigger units, no pause (the API still gets its turns)
# ... and so does it when the learners of the dates due now (their courses' seats) could
# not all be told at the unhurried pace within BOUND_S of the moment (CONTRACT §5.1: 60 s)
BOUND_S = 45.0
_MOMENT = len("2026-12-06T10:00:00.000Z")


class Applies(Protocol):
    async def apply(self, batch: Batch) -> None: ...


def stage_due(batch: Batch, due: Due) -> None:
    """Leave a time lock for the timer on the current partition (the same key twice is
    one entry)."""
    batch.put(
        due_key(due.moment, due.course_id, due.module_id, due.user_id),
        {
            "moment": due.moment,
            "course_id": due.course_id,
            "module_id": due.module_id,
            "user_id": due.user_id,
            "after": None,
            "quiet": due.quiet,
        },
    )


class Timer:
    def __init__(self, batch: Batch, applier: Applies) -> None:
        self._batch = batch
        self._applier = applier
        self._next_run = 0.0
        self.pending = False  # due work was left over at the last run
        self._hurry = False
        # learners released so far of each (course, moment) still due (this process's)
        self._released: dict[tuple[str, str], int] = {}

    async def run(self, partitions: Iterable[int], now: datetime | None = None) -> None:
        """Release what is due on `partitions` (those this worker owns and opened), at
        most CHUNK learners, at most once per PAUSE_S."""
        clock = time.monotonic()
        if clock < self._next_run:
            return
        self._next_run = clock + PAUSE_S
        now = now or datetime.now(UTC)
        moment = rfc3339(now)
        batch = self._batch
        batch.begin()
        size = HURRY_CHUNK if self._hurry else CHUNK
        budget, earliest, pending = size, None, False
        dates: dict[tuple[str, str], int] = {}  # (course, moment) due now -> its learners
        with batch.routed(frozenset({learner_milestone.TOPIC}), ""):
            for partition in sorted(partitions):
                with batch.on_partition(partition):
                    for key in batch.keys(DUE_PREFIX, None, size):
                        due_at = key[len(DUE_PREFIX) : len(DUE_PREFIX) + _MOMENT]
                        if due_at > moment:
                            break
                        earliest = min(earliest or due_at, due_at)
                        due = batch.get(key)
                        if due is not None:  # its course's learners: the work ahead at most
                            place = (due["course_id"], due_at)
                            if place not in dates:
                                dates[place] = batch.seats(due["course_id"])["count"]
                        if budget <= 0:
                            pending = True
                            break
                        budget -= await self._release(key, due, budget, now)
        self.pending = pending or budget <= 0
        batch.forget_untouched()
        await self._applier.apply(batch)
        lag = (now - parse_rfc3339(earliest)).total_seconds() if earliest else 0.0
        TIMER_LAG.set(lag if self.pending else 0.0)
        # 100,000 learners on one date: at the unhurried pace they would not all be told
        # within the bound, so hurry from the start (or once far behind anyway)
        self._released = {p: n for p, n in self._released.items() if p in dates}
        left = sum(max(0, n - self._released.get(p, 0)) for p, n in dates.items())
        behind = left / (CHUNK / PAUSE_S) > BOUND_S - lag
        self._hurry = self.pending and (lag > HURRY_S or behind)
        if self._hurry:
            self._next_run = 0.0

    async def _release(
        self, key: str, due: dict[str, Any] | None, budget: int, now: datetime
    ) -> int:
        """Release one entry, or its next `budget` learners; the learners looked at."""
        batch = self._batch
        if due is None:
            return 1
        course_id, module_id = due["course_id"], due["module_id"]
        course = course_of(batch.course_record(course_id))
        if course is None:  # deleted since: nobody to tell
            batch.put(key, None)
            return 1
        quiet = bool(due.get("quiet"))
        place = (course_id, due["moment"])
        if due["user_id"] is not None:
            self._learner(course, due["user_id"], module_id, now, quiet)
            batch.put(key, None)
            self._released[place] = self._released.get(place, 0) + 1
            return 1
        prefix = enrollment_prefix(course_id)
        after = due["after"]
        keys = batch.keys(prefix, enrollment_key(course_id, after) if after else None, budget)
        for n, enrollment in enumerate(keys, 1):
            self._learner(course, enrollment[len(prefix) :], module_id, now, quiet)
            if n % YIELD_EVERY == 0:  # the API's requests, served between learners
                await asyncio.sleep(0)
        self._released[place] = self._released.get(place, 0) + len(keys)
        if len(keys) < budget:
            batch.put(key, None)  # every learner looked at
        else:
            batch.put(key, {**due, "after": keys[-1][len(prefix) :]})
        return max(1, len(keys))

    def _learner(
        self, course: dict[str, Any], user_id: str, module_id: str, now: datetime, quiet: bool
    ) -> None:
        batch = self._batch
        record = batch.enrollment(course["id"], user_id)
        TIMER_RELEASED.inc()
        if record is None:
            return
        released = release(course, record, module_id, now, quiet)
        if released.record is not None:  # its view drawn here, between the yields
            view = public_view(released.record, course, now)
            drawn = (int(course["version"]), view)
            batch.stage_enrollment(course["id"], user_id, released.record, drawn)
        if released.milestone is not None:
            value = learner_milestone.encode(released.milestone)
            batch.stage_records(
                [(learner_milestone.TOPIC, course["id"], learner_milestone.SUBJECT, value)]
            )
            MILESTONES.labels("module_unlocked").inc()
        if released.later is not None:
            stage_due(batch, released.later)
