"""The plain consumer group without a broker (infra/consumer_group.py): its loop driven over
a fake aiokafka consumer that plays scripted polls and records, in one log with the
handlers, every call the group makes on it (commit, seek, ...).

What it shows: each topic's handler gets its batch (all partitions, each in order); the
offsets are committed only once every handler returned; a failed batch is not committed
and is read again from the committed offsets; a batch that keeps failing is applied record
by record and its poison record dead-lettered; the lag is measured from what the group
committed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
)
from prometheus_client import REGISTRY

from course_management.infra import consumer_group, retrying
from course_management.infra.consumer_group import (
    ATTEMPTS_BEFORE_ISOLATING,
    GroupConsumer,
    Membership,
)
from course_management.infra.dead_letters import UNPROCESSABLE

A, B = "topic-a", "topic-b"
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
Log = list[tuple[Any, ...]]


def rec(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=f"k{offset}".encode(),
        value=f"v{offset}".encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def batch_of(*records: ConsumerRecord[bytes, bytes]) -> Batch:
    batch: Batch = {}
    for r in records:
        batch.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
    return batch


def places(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


class FakeConsumer:
    """Plays `polls` in turn; once they are played, stops the group (its loop then ends)."""

    def __init__(
        self,
        log: Log,
        polls: list[Batch],
        *,
        assignment: Iterable[TopicPartition] = (),
        committed: dict[TopicPartition, int | None] | None = None,
        ends: dict[TopicPartition, int] | None = None,
        starts: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.log = log
        self.polls = list(polls)
        self._assignment = set(assignment)
        self._committed = dict(committed or {})
        self.ends = ends or {}
        self.starts = starts or {}
        self.group: GroupConsumer | None = None
        self.commit_failures: list[BaseException] = []
        self.revoked: set[TopicPartition] = set()  # revoked while the group asks about them

    async def getmany(self, timeout_ms: int, max_records: int) -> Batch:
        if not self.polls:
            assert self.group is not None
            self.group._stopped.set()  # mode's stop flag: `should_stop` ends the loop
            return {}
        self.log.append(("poll",))
        return self.polls.pop(0)

    async def commit(self) -> None:
        if self.commit_failures:
            self.log.append(("commit failed",))
            raise self.commit_failures.pop(0)
        self.log.append(("commit",))

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    async def committed(self, tp: TopicPartition) -> int | None:
        self.log.append(("committed?", tp))
        return self._committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.revoked:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.log.append(("seek", tp, offset))

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.log.append(("seek_to_beginning", *tps))

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.log.append(("end_offsets",))
        return {tp: self.ends[tp] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.log.append(("beginning_offsets", frozenset(tps)))
        return {tp: self.starts[tp] for tp in tps}


@dataclass
class DeadLetters:
    log: Log
    failures: list[BaseException] = field(default_factory=list)

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        if self.failures:
            self.log.append(("dead letter failed",))
            raise self.failures.pop(0)
        self.log.append(("dead letter", topic, key, value, reason, code))


def handler(
    log: Log,
    topic: str,
    fails: Callable[[list[ConsumerRecord[bytes, bytes]]], bool] | None = None,
) -> Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]:
    """Logs each batch it is given once it returns; `fails(records)` makes it raise."""

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        if fails is not None and fails(records):
            log.append(("failed", topic, places(records)))
            raise ValueError(f"poison in {places(records)}")
        log.append(("handled", topic, places(records)))

    return handle


class _NoWaitAsyncio:
    """The module's `asyncio`, but its pause after a failed batch is only recorded."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.pauses.append(delay)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    no_wait = _NoWaitAsyncio()
    monkeypatch.setattr(consumer_group, "asyncio", no_wait)
    return no_wait.pauses


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "wait_exponential", lambda **_: lambda _state: 0)


def group_over(
    consumer: FakeConsumer,
    handlers: dict[str, Any],
    dead_letter: Any = None,
    group_id: str = "g",
) -> GroupConsumer:
    group = GroupConsumer(
        "broker.invalid:9092", group_id, handlers, dead_letter or DeadLetters(consumer.log)
    )
    group._consumer = consumer
    consumer.group = group
    return group


async def test_each_topic_gets_its_batch_and_the_offsets_are_committed_after() -> None:
    log: Log = []
    a0, a1, b0 = TopicPartition(A, 0), TopicPartition(A, 1), TopicPartition(B, 0)
    poll = batch_of(rec(A, 0, 5), rec(B, 0, 9), rec(A, 1, 2), rec(A, 0, 6))
    consumer = FakeConsumer(log, [poll])
    group = group_over(consumer, {A: handler(log, A), B: handler(log, B)})

    await group._run()

    assert log == [
        ("poll",),
        ("handled", A, [(0, 5), (0, 6), (1, 2)]),  # all of A's partitions in one call
        ("handled", B, [(0, 9)]),
        ("commit",),  # only once both handlers returned
    ]
    assert group._committed == {a0: 7, a1: 3, b0: 10}


async def test_an_empty_poll_handles_and_commits_nothing() -> None:
    log: Log = []
    consumer = FakeConsumer(log, [{}, {}])
    group = group_over(consumer, {A: handler(log, A)})

    await group._run()

    assert log == [("poll",), ("poll",)]
    assert group._committed == {}


async def test_a_failed_batch_is_not_committed_but_read_again_from_the_committed_offsets(
    pauses: list[float],
) -> None:
    log: Log = []
    a0, a1 = TopicPartition(A, 0), TopicPartition(A, 1)
    poll = batch_of(rec(A, 0, 5), rec(A, 1, 0))
    attempts: list[int] = []

    def fails_once(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        attempts.append(len(records))
        return len(attempts) == 1

    consumer = FakeConsumer(log, [poll, poll], assignment={a0, a1}, committed={a0: 5, a1: None})
    group = group_over(consumer, {A: handler(log, A, fails_once)})

    await group._run()

    failed_at = log.index(("failed", A, [(0, 5), (1, 0)]))
    replayed_at = log.index(("handled", A, [(0, 5), (1, 0)]))
    assert ("commit",) not in log[:replayed_at]
    # Between the failure and the replay: each assigned partition back to its committed
    # offset, or to its beginning when the group has committed none there.
    rewinds = log[failed_at + 1 : replayed_at]
    assert ("seek", a0, 5) in rewinds
    assert ("seek_to_beginning", a1) in rewinds
    assert not any(step[0] == "seek" and step[1] == a1 for step in rewinds)
    assert log[replayed_at + 1 :] == [("commit",)]
    assert group._failures == 0  # reset by the batch that succeeded
    assert len(pauses) == 1


async def test_one_topics_failure_leaves_the_whole_poll_uncommitted(
    pauses: list[float],
) -> None:
    """Topic A's handler succeeded, B's failed: nothing is committed (A's records come
    again, which its handler is idempotent for)."""
    log: Log = []
    poll = batch_of(rec(A, 0, 1), rec(B, 0, 1))
    consumer = FakeConsumer(log, [poll], assignment={TopicPartition(A, 0)})
    group = group_over(consumer, {A: handler(log, A), B: handler(log, B, lambda _: True)})

    await group._run()

    assert ("handled", A, [(0, 1)]) in log
    assert ("failed", B, [(0, 1)]) in log
    assert ("commit",) not in log
    assert group._committed == {}
    assert group._failures == 1


async def test_a_batch_that_keeps_failing_is_applied_one_by_one_and_its_poison_dead_lettered(
    pauses: list[float],
) -> None:
    log: Log = []
    poll = batch_of(rec(A, 0, 5), rec(A, 0, 6), rec(A, 0, 7))
    later = batch_of(rec(A, 0, 8), rec(A, 0, 9))

    def poisoned(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return any(r.offset == 6 for r in records)

    polls = [poll] * (ATTEMPTS_BEFORE_ISOLATING + 1) + [later]
    consumer = FakeConsumer(log, polls, assignment={TopicPartition(A, 0)}, committed={})
    group = group_over(consumer, {A: handler(log, A, poisoned)})

    await group._run()

    handled = [step for step in log if step[0] in ("handled", "failed", "dead letter", "commit")]
    whole = ("failed", A, [(0, 5), (0, 6), (0, 7)])
    assert handled == [
        *[whole] * ATTEMPTS_BEFORE_ISOLATING,
        ("handled", A, [(0, 5)]),
        ("failed", A, [(0, 6)]),
        ("dead letter", A, b"k6", b"v6", "ValueError: poison in [(0, 6)]", UNPROCESSABLE),
        ("handled", A, [(0, 7)]),
        ("commit",),
        ("handled", A, [(0, 8), (0, 9)]),  # whole batches again once one succeeded
        ("commit",),
    ]
    assert len(pauses) == ATTEMPTS_BEFORE_ISOLATING
    assert group._failures == 0


async def test_a_dead_letter_is_sent_through_a_broker_outage(pauses: list[float]) -> None:
    log: Log = []
    poll = batch_of(rec(A, 0, 1))
    dead = DeadLetters(log, failures=[KafkaTimeoutError()])
    consumer = FakeConsumer(log, [poll] * (ATTEMPTS_BEFORE_ISOLATING + 1))
    group = group_over(consumer, {A: handler(log, A, lambda _: True)}, dead)

    await group._run()

    dead_letters = [step for step in log if step[0].startswith("dead letter")]
    assert dead_letters == [
        ("dead letter failed",),
        ("dead letter", A, b"k1", b"v1", "ValueError: poison in [(0, 1)]", UNPROCESSABLE),
    ]
    assert log[-1] == ("commit",)


async def test_a_failing_dead_letter_leaves_the_batch_uncommitted(pauses: list[float]) -> None:
    """A dead letter that cannot be sent (not an outage) must not let the group commit past
    the record it was for."""
    log: Log = []
    poll = batch_of(rec(A, 0, 1))
    dead = DeadLetters(log, failures=[RuntimeError("refused")])
    consumer = FakeConsumer(log, [poll] * (ATTEMPTS_BEFORE_ISOLATING + 1))
    group = group_over(consumer, {A: handler(log, A, lambda _: True)}, dead)

    await group._run()

    assert ("dead letter failed",) in log
    assert ("commit",) not in log
    assert group._failures == ATTEMPTS_BEFORE_ISOLATING + 1


async def test_cancellation_is_raised_not_counted_as_a_failure(pauses: list[float]) -> None:
    log: Log = []

    async def cancelled(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise asyncio.CancelledError

    consumer = FakeConsumer(log, [batch_of(rec(A, 0, 1))], assignment={TopicPartition(A, 0)})
    group = group_over(consumer, {A: cancelled})

    with pytest.raises(asyncio.CancelledError):
        await group._run()

    assert log == [("poll",)]  # no commit, no rewind
    assert group._failures == 0
    assert pauses == []


def lag(group_id: str, tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value(
        "cms_consumer_lag",
        {"consumer": group_id, "topic": tp.topic, "partition": str(tp.partition)},
    )


async def report_lag(group: GroupConsumer) -> None:
    """One tick of the group's lag timer (the method under mode's timer)."""
    await GroupConsumer._report_lag.fun.__wrapped__(group)


async def test_the_lag_is_measured_from_the_committed_offsets() -> None:
    log: Log = []
    a0, a1 = TopicPartition(A, 0), TopicPartition(A, 1)
    consumer = FakeConsumer(
        log,
        [batch_of(rec(A, 0, 7), rec(A, 0, 8))],
        assignment={a0, a1},
        committed={a0: 7, a1: None},
        ends={a0: 10, a1: 4},
        starts={a0: 0, a1: 2},
    )
    group = group_over(consumer, {A: handler(log, A)}, group_id="lag-test-1")

    await report_lag(group)
    assert (lag("lag-test-1", a0), lag("lag-test-1", a1)) == (3, 2)  # a1: from its start

    await group._run()  # commits a0 up to 9
    log.clear()
    await report_lag(group)
    assert (lag("lag-test-1", a0), lag("lag-test-1", a1)) == (1, 2)
    # what the group committed itself is not asked of the broker again
    assert not any(step[0] in ("committed?", "beginning_offsets") for step in log)


async def test_after_a_rebalance_the_lag_asks_again() -> None:
    log: Log = []
    a0, a1, a2 = TopicPartition(A, 0), TopicPartition(A, 1), TopicPartition(A, 2)
    consumer = FakeConsumer(
        log,
        [],
        assignment={a0, a1},
        committed={a0: 3, a1: 3, a2: 3},
        ends={a0: 5, a1: 5, a2: 5},
        starts={a0: 0, a1: 0, a2: 0},
    )
    group = group_over(consumer, {A: handler(log, A)}, group_id="lag-test-2")
    group._committed = {a0: 5, a2: 5}  # a2 went to another member, which moved a0 on

    await report_lag(group)

    assert (lag("lag-test-2", a0), lag("lag-test-2", a1)) == (2, 2)
    assert ("beginning_offsets", frozenset({a0, a1})) in log


async def test_the_lag_is_not_measured_while_the_broker_is_away() -> None:
    class Away(FakeConsumer):
        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KafkaConnectionError("away")

    a0 = TopicPartition(A, 0)
    consumer = Away([], [], assignment={a0})
    group = group_over(consumer, {A: handler([], A)}, group_id="lag-test-3")

    await report_lag(group)  # does not raise: the next tick tries again

    assert lag("lag-test-3", a0) is None


class _Joining:
    """Stands in for AIOKafkaConsumer in `connect`; `start` fails while `failures` last."""

    made: list[_Joining] = []
    failures: list[BaseException] = []

    def __init__(self, *topics: str, **options: Any) -> None:
        self.topics = topics
        self.options = options
        self.stopped = False
        _Joining.made.append(self)

    async def start(self) -> None:
        if _Joining.failures:
            raise _Joining.failures.pop(0)

    async def stop(self) -> None:
        self.stopped = True


async def test_connect_joins_once_with_manual_commits_and_retries_a_failed_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_group, "AIOKafkaConsumer", _Joining)
    monkeypatch.setattr(_Joining, "made", [])
    monkeypatch.setattr(_Joining, "failures", [KafkaConnectionError("no broker")])
    group = GroupConsumer(
        "broker.invalid:9092",
        "g-connect",
        {A: handler([], A), B: handler([], B)},
        DeadLetters([]),
        Membership(instance_id="worker-1", session_timeout_s=30),
    )

    with pytest.raises(KafkaConnectionError):
        await group.connect()
    assert group._consumer is None  # not joined: the worker calls connect again
    assert _Joining.made[0].stopped  # the half-started consumer is closed

    await group.connect()
    await group.connect()  # joined already: no second consumer

    assert len(_Joining.made) == 2
    joined = _Joining.made[1]
    assert group._consumer is joined
    assert not joined.stopped
    assert joined.topics == (A, B)
    assert joined.options["group_id"] == "g-connect"
    assert joined.options["enable_auto_commit"] is False
    assert joined.options["group_instance_id"] == "worker-1"
    assert joined.options["session_timeout_ms"] == 30_000


def test_a_dynamic_member_sets_no_static_membership_options() -> None:
    assert Membership().consumer_options() == {}
    assert Membership("w-2", 12.5).consumer_options() == {
        "group_instance_id": "w-2",
        "session_timeout_ms": 12_500,
    }


async def test_a_partition_revoked_during_the_rewind_is_skipped_not_fatal(
    pauses: list[float],
) -> None:
    """CI, 2026-12-06: a rebalance revoked a partition between `committed` and `seek`;
    the IllegalStateError ended the group's loop for good (the router and the mirror
    stopped). Now that partition is skipped (its next owner starts from the committed
    offset) and the others are rewound."""
    log: Log = []
    a0, a1 = TopicPartition(A, 0), TopicPartition(A, 1)
    poll = batch_of(rec(A, 0, 5), rec(A, 1, 3))
    attempts: list[int] = []

    def fails_once(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        attempts.append(len(records))
        return len(attempts) == 1

    consumer = FakeConsumer(log, [poll, poll], assignment={a0, a1}, committed={a0: 5, a1: 3})
    consumer.revoked = {a1}
    group = group_over(consumer, {A: handler(log, A, fails_once)})

    await group._run()  # returns when the polls are played: the loop did not die

    assert ("seek", a0, 5) in log
    assert log[-2:] == [("handled", A, [(0, 5), (1, 3)]), ("commit",)]


async def test_a_failed_commit_replays_the_batch_without_counting_a_failure(
    pauses: list[float],
) -> None:
    log: Log = []
    a0 = TopicPartition(A, 0)
    poll = batch_of(rec(A, 0, 5))
    consumer = FakeConsumer(log, [poll, poll], assignment={a0}, committed={a0: 5})
    consumer.commit_failures = [CommitFailedError("rebalanced")]
    group = group_over(consumer, {A: handler(log, A)})

    await group._run()

    assert log == [
        ("poll",),
        ("handled", A, [(0, 5)]),
        ("commit failed",),
        ("committed?", a0),
        ("seek", a0, 5),
        ("poll",),
        ("handled", A, [(0, 5)]),
        ("commit",),
    ]
    assert group._failures == 0 and group._committed == {a0: 6}
