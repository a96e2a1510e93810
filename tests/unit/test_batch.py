"""The course agent's batches (streams/batch.py) without servers: what a batch's decisions
see, and the order its staged effects are applied in."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RecordTooLargeError
from faust.streams import current_event

from course_management.domain.outcomes import Outcome, Reply
from course_management.infra.cache import CourseEntry, EnrollmentEntry
from course_management.infra.retrying import kafka_unavailable
from course_management.streams import agent
from course_management.streams.batch import Batch, latest_catalog_entries
from course_management.streams.inputs import Input


class _Input:
    """Stands in for a Faust event (the batch only keeps it and makes it current)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Table(dict[str, Any]):
    """A table that records, for each write, which input was current."""

    def __init__(self, log: list[Any], name: str) -> None:
        super().__init__()
        self.log = log
        self.name = name

    def __setitem__(self, key: str, value: Any) -> None:
        event = current_event()
        self.log.append(("write", self.name, key, value, getattr(event, "name", None)))
        super().__setitem__(key, value)


class _Cache:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def put_entries(
        self, courses: Sequence[CourseEntry], enrollments: Sequence[EnrollmentEntry]
    ) -> None:
        """One round trip for the batch: (course, version, seats) and the enrollments."""
        self.log.append(
            (
                "cache",
                [(c.course_id, c.version, c.count) for c in courses],
                [(e.record["course_id"], e.record["user_id"]) for e in enrollments],
            )
        )


class _Publisher:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def send_all(self, records: list[Any], headers: list[Any]) -> None:
        assert len(headers) == len(records)
        self.log.append(("publish", [r[0] for r in records]))

    async def send_replies(self, replies: list[Any]) -> None:
        live = [r for r in replies if r[0] == "course-management-replies-w1"]  # others: gone
        await self.send_all(live, [[] for _ in live])

    async def send_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        self.log.append(("dead letter", topic, reason))


def _course(course_id: str, version: int) -> dict[str, Any]:
    return {"id": course_id, "version": version, "status": "published", "instructor": {"id": "i"}}


def _batch() -> tuple[Batch, list[Any], _Table, _Table]:
    log: list[Any] = []
    courses, enrollments = _Table(log, "courses"), _Table(log, "enrollments")
    return Batch(courses, enrollments, _Publisher(log), _Cache(log)), log, courses, enrollments


def test_decisions_see_the_batch_s_earlier_writes_and_the_tables_only_after_flush() -> None:
    batch, _, courses, _ = _batch()
    courses["c1"] = {"course": {"id": "c1", "version": 1}}
    batch.begin()
    with batch.deciding(_Input("a")):
        assert batch.courses.get("c1") == {"course": {"id": "c1", "version": 1}}
        batch.courses["c1"] = {"course": {"id": "c1", "version": 2}}
    with batch.deciding(_Input("b")):
        assert batch.courses.get("c1") == {"course": {"id": "c1", "version": 2}}
    assert courses["c1"]["course"]["version"] == 1  # nothing written yet


async def test_effects_apply_in_order_each_write_under_its_own_input() -> None:
    batch, log, _, _ = _batch()
    batch.begin()
    log.clear()
    ok = Reply(Outcome.APPLIED, {"ok": True})
    with batch.deciding(_Input("a")):
        batch.stage_records([("course-events", "c1", "s", {})])
        batch.courses["c1"] = {"course": _course("c1", 2)}
        batch.stage_course_state("c1")
        batch.stage_reply("course-management-replies-w1", "cmd-a", ok)
        batch.stage_reply("course-management-replies-gone", "cmd-a2", ok)
        batch.stage_reply("course-events", "cmd-a3", ok)  # not a reply topic
    with batch.deciding(_Input("b")):
        batch.stage_records([("enrollment-events", "c1", "s", {})])
        batch.enrollments["c1#seats"] = {"count": 3, "seq": 3, "pending": None}
        batch.courses["c1"] = {"course": _course("c1", 3)}
        batch.stage_course_state("c1")
        batch.stage_seat_count("c1")
    with batch.deciding(_Input("c")):
        await batch.stage_dead_letter(
            "user-enrolled", b"k", b"v", "course-full: no seat", "course-full"
        )
    await batch.apply()
    assert log == [
        ("publish", ["course-events", "enrollment-events"]),  # one round trip, first
        # Dead letters are effects too: out before the writes that mark their inputs
        # applied (a crash in between lost them: the chaos run, issue 15).
        ("dead letter", "user-enrolled", "course-full: no seat"),
        ("write", "courses", "c1", {"course": _course("c1", 2)}, "a"),
        ("write", "enrollments", "c1#seats", {"count": 3, "seq": 3, "pending": None}, "b"),
        ("write", "courses", "c1", {"course": _course("c1", 3)}, "b"),
        ("cache", [("c1", 3, 3)], []),  # the batch's final view, once per course, one trip
        ("publish", ["course-management-replies-w1"]),  # replies last, to live workers only
    ]


def test_a_batch_is_empty_after_begin() -> None:
    batch, *_ = _batch()
    with batch.deciding(_Input("a")):
        batch.courses["c1"] = {"course": {"id": "c1", "version": 1}}
        batch.stage_records([("course-events", "c1", "s", {})])
    batch.begin()
    assert batch.courses.get("c1") is None and not batch.records and not batch.writes


def test_kafka_errors_worth_waiting_out() -> None:
    assert kafka_unavailable(KafkaTimeoutError())
    assert kafka_unavailable(KafkaConnectionError())
    assert not kafka_unavailable(RecordTooLargeError())
    assert not kafka_unavailable(ValueError("a bug"))


def test_a_batch_that_cannot_be_applied_stops_the_worker_without_acking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(agent.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        agent.stop_unapplied(RuntimeError("broken"))
    assert codes == [agent.UNAPPLIED_EXIT_CODE]


async def test_a_handler_that_raises_is_dead_lettered_and_its_caller_answered_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch, *_ = _batch()
    batch.begin()
    item = Input(
        kind="user_enrolled",
        topic="user-enrolled",
        key=b"k",
        raw=b"v",
        value={},
        reply_to="course-management-replies-w1",
        correlation_id="e-1",
    )

    async def read(*_: Any) -> Input:
        return item

    async def broken(*_: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(agent, "read_input", read)
    monkeypatch.setitem(agent.HANDLERS, "user_enrolled", broken)
    with batch.deciding(_Input("a")):
        event = SimpleNamespace(message=SimpleNamespace(topic="course-commands"))
        await agent.handle(None, batch, event, lambda tp: None)  # type: ignore[arg-type]
    [(topic, key, value, reason, code)] = batch.dead_letters
    assert (topic, key, value, code) == ("user-enrolled", b"k", b"v", "error")
    assert "ZeroDivisionError" in reason
    [(reply_to, correlation, _, record)] = batch.replies
    assert (reply_to, correlation, record["outcome"]) == (
        "course-management-replies-w1",
        "e-1",
        "internal",
    )


def test_only_the_last_catalog_entry_of_a_course_is_published_and_every_event() -> None:
    records = [
        ("enrollment-events", "c1", "s", {"n": 1}),
        ("course-management-catalog", "c1", "s", {"v": 1}),
        ("enrollment-events", "c2", "s", {"n": 2}),
        ("course-management-catalog", "c2", "s", {"v": 1}),
        ("enrollment-events", "c1", "s", {"n": 3}),
        ("course-management-catalog", "c1", "s", {"v": 2}),
    ]
    assert latest_catalog_entries(records) == [0, 2, 3, 4, 5]
