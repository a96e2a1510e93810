"""The course agent's core as a model, without servers (issue 22): random enrolments,
cancellations, progress reports, exact repeats and replays of source records against a
capacity, decided by the real handlers in batches of random sizes and applied by the
real applier over an in-memory changelog. A run is cut at a batch boundary or inside a
batch (before its unit, after its unit, after its outbox), its local store thrown away
and restored from the changelog's placed records, and continued from the last acked
input, as a restarted worker would. The table and the set of event ids it ends with
are those of the run that was never cut."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from course_management.streams import agent
from course_management.streams.apply import BatchApplier
from course_management.streams.batch import Batch
from course_management.streams.crash_points import CrashPoints
from course_management.tables.units import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    is_placed,
)
from course_management.topology import (
    COURSE_COMMANDS,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
)
from tests.unit.test_batch import TOPIC, _Cache, _Changelog, _Publisher, _Store

COURSE = "course-m"
CAPACITY = 3
USERS = ["u0", "u1", "u2", "u3", "u4"]
START = datetime(2026, 12, 5, tzinfo=UTC)


class _Codec:
    """Values are pickled dicts here (the model is about decisions, not Avro)."""

    async def decode(self, subject: str, raw: bytes | None) -> dict[str, Any]:
        value: dict[str, Any] = pickle.loads(raw or b"")
        return value


def _encode(subject: str, value: dict[str, Any]) -> bytes:
    return pickle.dumps((subject, value))


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    tp: str = "tp"


@dataclass
class _Event:
    message: _Message
    key: bytes
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


class _Positions:
    async def earliest(self, tp: Any) -> int | None:
        return None

    async def rewind(self, tp: Any, offset: int) -> None:
        raise AssertionError("the model delivers every partition in order")


class _Cut(Exception):
    pass


class _CutAt(CrashPoints):
    """Raises at `phase` while armed (the batch the run is cut in)."""

    def __init__(self, phase: str | None) -> None:
        super().__init__(None)
        self.phase = phase
        self.armed = False

    def reached(self, phase: str) -> None:
        if self.armed and phase == self.phase:
            raise _Cut(phase)


def _course() -> dict[str, Any]:
    return {
        "id": COURSE,
        "version": 1,
        "status": "published",
        "title": "Model",
        "description": "",
        "instructor": {"id": "i", "name": "I"},
        "capacity": CAPACITY,
        "modules": [
            {
                "id": "m1",
                "title": "M",
                "position": 0,
                "items": [
                    {"id": "i1", "type": "lesson", "title": "a", "position": 0},
                    {"id": "i2", "type": "lesson", "title": "b", "position": 1},
                ],
            },
        ],
        "category": "c",
        "level": "beginner",
        "language": "en",
        "tags": [],
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
    }


# An input of the model: ("enrol", user), ("cancel", user), ("progress", user, item,
# status), ("repeat", k): the k-th earlier source record sent again by its producer (a new
# source offset), ("replay", k): the k-th earlier forward forwarded again (same source).
Step = tuple[Any, ...]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.sampled_from(USERS)),
        st.tuples(st.just("cancel"), st.sampled_from(USERS)),
        st.tuples(
            st.just("progress"),
            st.sampled_from(USERS),
            st.sampled_from(["i1", "i2"]),
            st.sampled_from(["started", "completed"]),
        ),
        st.tuples(st.just("repeat"), st.integers(0, 40)),
        st.tuples(st.just("replay"), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=40,
)


def _events(model: list[Step]) -> list[_Event]:
    """The agent's inputs, in partition order: enrollment inputs and course commands."""
    events: list[_Event] = []
    sources: list[_Event] = []  # forwarded source records, for repeats and replays
    offsets = {ENROLLMENT_INPUTS: 0, COURSE_COMMANDS: 0}
    source_offset = 0

    def add(topic: str, value: dict[str, Any], headers: dict[str, bytes]) -> _Event:
        event = _Event(
            _Message(topic, 0, offsets[topic]), COURSE.encode(), pickle.dumps(value), headers
        )
        offsets[topic] += 1
        events.append(event)
        return event

    def forward(kind: bytes, value: dict[str, Any]) -> None:
        nonlocal source_offset
        headers = {
            KIND_HEADER: kind,
            SOURCE_PARTITION_HEADER: b"0",
            SOURCE_OFFSET_HEADER: str(source_offset).encode(),
        }
        source_offset += 1
        sources.append(add(ENROLLMENT_INPUTS, value, headers))

    for n, step in enumerate(model):
        at = START + timedelta(minutes=n)
        if step[0] == "enrol":
            forward(
                b"user_enrolled",
                {"event_id": f"e{n}", "occurred_at": at, "user_id": step[1],
                 "course_id": COURSE, "source": "model"},
            )  # fmt: skip
        elif step[0] == "progress":
            forward(
                b"item_progress",
                {"event_id": f"p{n}", "occurred_at": at, "user_id": step[1], "course_id": COURSE,
                 "item_id": step[2], "status": step[3], "score": None},
            )  # fmt: skip
        elif step[0] == "cancel":
            add(
                COURSE_COMMANDS,
                {"command_id": f"c{n}", "command_type": "cancel_enrollment", "course_id": COURSE,
                 "occurred_at": at, "actor": {"id": step[1], "name": step[1], "roles": ["student"]},
                 "payload_json": f'{{"user_id": "{step[1]}"}}', "payload_hash": "",
                 "expected_version": None, "reply_to": None},
                {},
            )  # fmt: skip
        elif sources:
            earlier = sources[step[1] % len(sources)]
            if step[0] == "repeat":  # the same record, sent again by its producer
                forward(earlier.headers[KIND_HEADER], pickle.loads(earlier.value))
            else:  # the same forward again (same source offset): a replay
                add(ENROLLMENT_INPUTS, pickle.loads(earlier.value), dict(earlier.headers))
    return events


def _batches(count: int, sizes: list[int]) -> int:
    taken, k = 0, 0
    while taken < count:
        taken += sizes[k % len(sizes)]
        k += 1
    return k


async def _run(
    events: list[_Event], sizes: list[int], cut: tuple[int, str] | None
) -> tuple[dict[str, Any], set[str], bool]:
    log: list[Any] = []
    changelog = _Changelog(log)
    store = _Store(log)
    seed = (encode_key(COURSE), encode_value({"course": _course(), "deleted": False}), [])
    store.write_unit(0, [seed], changelog._append(0, [seed]))  # the course, created before
    published: list[Any] = []

    class _Collect(_Publisher):
        async def send_outgoing(self, records: list[Any]) -> None:
            published.extend(records)

    def worker() -> tuple[Batch, BatchApplier]:
        applier = BatchApplier(
            TOPIC, changelog, store, _Collect(log), _Cache(log), lambda: 1, crash
        )
        return Batch(store, _encode, decode_value), applier

    crash = _CutAt(cut[1] if cut else None)
    batch, applier = worker()
    acked, k, was_cut = 0, 0, False
    while acked < len(events):
        taken = events[acked : acked + sizes[k % len(sizes)]]
        await applier.open([0])
        batch.begin()
        for event in taken:
            with batch.deciding(event):
                await agent.handle(_Codec(), batch, event, _Positions())  # type: ignore[arg-type]
        crash.armed = cut is not None and cut[0] == k
        try:
            await applier.apply(batch)
        except _Cut:
            # The worker dies: its store is thrown away and restored from the changelog's
            # placed records; the inputs since the last ack come again.
            store.data.clear()
            store.offsets.clear()
            for record in changelog.partitions.get(0, []):
                if is_placed(record.offset, record.headers):
                    if record.value is None:
                        store.data.pop((0, record.key), None)
                    else:
                        store.data[(0, record.key)] = record.value
            store.offsets[0] = len(changelog.partitions.get(0, [])) - 1
            batch, applier = worker()
            cut, was_cut = None, True
            k += 1
            continue
        acked += len(taken)
        k += 1
    table = {
        decode_key(key): decode_value(value)
        for (_, key), value in store.data.items()
        if not decode_key(key).startswith("#outbox")
    }
    ids = {
        pickle.loads(value)[1]["event_id"]
        for topic, _, value, _ in published
        if topic == "enrollment-events"
    }
    return table, ids, was_cut


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=steps,
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    other_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    cut_batch=st.integers(0, 12),
    phase=st.sampled_from(["decided", "unit-acked", "local-written", "outbox-acked", "replied"]),
)
async def test_a_cut_run_ends_as_the_uncut_one(
    model: list[Step], sizes: list[int], other_sizes: list[int], cut_batch: int, phase: str
) -> None:
    events = _events(model)
    assume(events)
    note(f"model={model} sizes={sizes} other_sizes={other_sizes} phase={phase}")
    table, ids, _ = await _run(events, sizes, None)
    cut_at = cut_batch % _batches(len(events), other_sizes)
    cut_table, cut_ids, was_cut = await _run(events, other_sizes, (cut_at, phase))
    assert was_cut
    assert cut_table == table
    assert cut_ids == ids
    # The seats are the active enrollments, never above the capacity.
    seated = [
        v
        for k, v in table.items()
        if k.startswith(f"{COURSE}:") and v["status"] in ("active", "completed")
    ]
    assert len(seated) == table.get(f"{COURSE}#seats", {"count": 0})["count"] <= CAPACITY
