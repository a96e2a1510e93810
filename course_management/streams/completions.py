"""The completions index: every learner's completed courses, on every worker (decision 57).

A course's prerequisites were completed in other courses, decided on other partitions,
maybe by other workers. The agent that completes a course publishes a `CompletionEntry`
on the compacted course-management-completions in the same unit's outbox, and answers
that request only once the entry is acked (streams/apply.py). Every worker reads the
whole topic (all partitions, no consumer group) into memory. An enrolment in a course
with prerequisites asks `completed(user, courses)`: the index first reads the topic's
end offsets (one request), then waits until it has read that far, so every completion
answered before the enrolment was decided is seen, whichever worker answered it.

Cost: one ListOffsets round trip per enrolment in a course with prerequisites (others
ask nothing), and the index's memory: a set entry per completion.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from typing import Any

from course_management.infra.avro import AvroCodec
from course_management.infra.compacted import CompactedReader
from course_management.messages import completion_entry

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 200


class CompletionIndex:
    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._codec = codec
        self._done: dict[str, set[str]] = defaultdict(set)  # user id -> completed courses
        self._topic = CompactedReader(
            bootstrap, [completion_entry.TOPIC], self._take, "completions-index", FETCH_WAIT_MS
        )

    async def start(self) -> None:
        await self._topic.start()

    async def stop(self) -> None:
        await self._topic.stop()

    async def _take(self, record: Any) -> None:
        try:
            entry = completion_entry.decode(
                await self._codec.decode(completion_entry.SUBJECT, record.value)
            )
        except Exception as exc:  # written by this service only: a bug, not an input
            log.error("an unreadable completion entry", extra={"error": repr(exc)})
            return
        self._done[entry.user_id].add(entry.course_id)

    async def completed(self, user_id: str, course_ids: Collection[str]) -> frozenset[str]:
        """Those of `course_ids` the learner completed, as of every completion acked
        before this call (waits until the index has read that far)."""
        if not course_ids:
            return frozenset()
        await self._topic.caught_up()
        return frozenset(c for c in course_ids if c in self._done.get(user_id, ()))
