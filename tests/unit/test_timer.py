"""The timer (issue 25, item 5): which moments a change leaves, what a release decides, and
the agent's timer releasing a date for many learners in bounded chunks, once each, never
before the moment. Pure: a real Batch over an in-memory store (a fake of the RocksDB
store that keeps keys ordered as RocksDB does; its applier writes the staged keys back,
as the real one does once the unit landed)."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from course_management.domain.timers import Due, learner_dues, lock_changes, release
from course_management.streams.batch import Batch
from course_management.streams.timer import CHUNK, Timer, stage_due
from course_management.tables.units import decode_value, encode_key, encode_value
from tests.unit.test_path_decisions import course, enrolled, item, module

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
DATE = "2026-12-06T10:00:00.000Z"


def test_a_course_change_leaves_a_moment_only_for_modules_whose_locks_changed() -> None:
    before = course(module("m1", [item("i1")]), module("m2", [item("i2")]))
    after = course(
        module("m1", [item("i1")]),
        module("m2", [item("i2")], unlock_at=DATE),
        module("m3", [item("i3")], unlock_after_days=3),
        module("m4", [item("i4")]),
    )
    assert lock_changes(before, after, T0) == [
        Due(DATE, "c-1", "m2", quiet=True),  # open for everyone before: nobody is told
        Due("2026-12-06T09:00:00.000Z", "c-1", "m3"),  # new, locked: its opening is news
    ]
    assert lock_changes(after, after, T0) == []
    assert lock_changes(None, after, T0) == []  # a new course: nobody enrolled yet
    opened = course(module("m1", [item("i1")]), module("m2", [item("i2")]))
    assert lock_changes(after, opened, T0) == [Due("2026-12-06T09:00:00.000Z", "c-1", "m2")]


def test_a_learner_gets_a_moment_for_each_time_lock_still_ahead() -> None:
    c = course(
        module("m1", [item("i1")]),
        module("m2", [item("i2")], unlock_at=DATE),
        module("m3", [item("i3")], unlock_after_days=2),
    )
    record = enrolled(c)
    assert learner_dues(c, record, T0) == [
        Due(DATE, "c-1", "m2", "s"),
        Due("2026-12-08T09:00:00.000Z", "c-1", "m3", "s"),
    ]
    assert learner_dues(c, record, T0 + timedelta(hours=2)) == [
        Due("2026-12-08T09:00:00.000Z", "c-1", "m3", "s")
    ]


def test_a_release_sends_once_and_not_before_the_moment() -> None:
    c = course(module("m1", [item("i1")]), module("m2", [item("i2")], unlock_at=DATE))
    record = enrolled(c)
    early = release(c, record, "m2", T0 + timedelta(minutes=59))
    assert early.milestone is None and early.record is None
    on_time = release(c, record, "m2", T0 + timedelta(minutes=60))
    assert on_time.milestone is not None and on_time.milestone["module_id"] == "m2"
    assert on_time.record is not None and on_time.record["opened"] == ["m1", "m2"]
    again = release(c, on_time.record, "m2", T0 + timedelta(minutes=61))
    assert again.milestone is None and again.record is None
    cancelled = {**record, "status": "cancelled"}
    assert release(c, cancelled, "m2", T0 + timedelta(hours=2)).milestone is None


class OrderedStore:
    """A fake of the RocksDB store: raw keys kept in order, prefix scans, units written."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.order: list[bytes] = []

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, partition: int, start: bytes, prefix: bytes, limit: int) -> list[bytes]:
        at = bisect.bisect_left(self.order, start)
        found = [k for k in self.order[at : at + limit] if k.startswith(prefix)]
        return found[: next((i for i, k in enumerate(found) if not k.startswith(prefix)), None)]

    def put(self, key: str, value: Any) -> None:
        raw = encode_key(key)
        if value is None:
            if raw in self.data:
                del self.data[raw]
                self.order.remove(raw)
            return
        if raw not in self.data:
            bisect.insort(self.order, raw)
        encoded = encode_value(value)
        assert encoded is not None
        self.data[raw] = encoded


class WritesBack:
    """The applier's part the timer needs: the unit's writes reach the store."""

    def __init__(self, store: OrderedStore) -> None:
        self.store = store
        self.units: list[dict[str, Any]] = []
        self.milestones: list[dict[str, Any]] = []

    async def apply(self, batch: Batch) -> None:
        for work in batch.partitions.values():
            self.units.append(dict(work.writes))
            for key, value in work.writes.items():
                self.store.put(key, value)
            self.milestones += [orjson.loads(v)["value"] for _, _, v, _ in work.records]


async def test_the_timer_releases_a_date_for_many_learners_in_chunks_once_each() -> None:
    store = OrderedStore()
    batch = Batch(
        store, lambda s, v: orjson.dumps({"subject": s, "value": v}, default=str), decode_value
    )
    c = course(module("m1", [item("i1")]), module("m2", [item("i2")], unlock_at=DATE))
    store.put("c-1", {"course": c})
    learners = [f"u{n:04d}" for n in range(2 * CHUNK + 10)]
    for user in learners:
        record = {**enrolled(c), "user_id": user}
        store.put(f"c-1:{user}", record)
    store.put("c-2", {"course": c})  # another course's learner: not this date's
    store.put("c-2:x", {**enrolled(c), "user_id": "x", "course_id": "c-2"})
    batch.begin()
    with batch.on_partition(0):
        stage_due(batch, Due(DATE, "c-1", "m2"))
    for key, value in batch.partitions[0].writes.items():
        store.put(key, value)
    applier = WritesBack(store)
    timer = Timer(batch, applier)

    await timer.run([0], now=T0 + timedelta(minutes=59))  # before its moment: nothing
    assert applier.units == [] and not timer.pending
    moment = T0 + timedelta(minutes=60)
    runs = 0
    while True:
        timer._next_run = 0.0  # the pause between runs is the agent's pacing, not tested here
        await timer.run([0], now=moment)
        runs += 1
        if not timer.pending:
            break
    assert runs == 3  # 510 learners, 250 at most per unit
    assert all(
        len([k for k in u if ":" in k and not k.startswith("#")]) <= CHUNK for u in applier.units
    )
    users = [m["user_id"] for m in applier.milestones]
    assert sorted(users) == learners and len(set(users)) == len(users)
    assert all(m["module_id"] == "m2" and m["course_id"] == "c-1" for m in applier.milestones)
    assert not any(k.startswith(b'"#due:') for k in store.order)  # the entry is gone
    timer._next_run = 0.0
    await timer.run([0], now=moment + timedelta(minutes=1))
    assert len(applier.milestones) == len(learners)  # nothing twice


def test_removing_a_prerequisites_item_looks_again_at_what_requires_it() -> None:
    """Review of issue 25: m1 completed once its last unmet item is removed opens m2."""
    before = course(
        module("m1", [item("i1"), item("i2")]),
        module("m2", [item("i3")], prerequisite_module_ids=["m1"]),
    )
    after = course(
        module("m1", [item("i1")]), module("m2", [item("i3")], prerequisite_module_ids=["m1"])
    )
    assert lock_changes(before, after, T0) == [Due("2026-12-06T09:00:00.000Z", "c-1", "m2")]


def test_an_input_is_taken_no_later_than_its_receipt() -> None:
    """Review of issue 25: a report dated a month ahead opened a date a month early."""
    from course_management.streams.inputs import Input

    received = T0 + timedelta(seconds=3)
    item_ = Input("item_progress", "course-progress", None, None, None, None, None)
    assert item_.moment(T0 + timedelta(days=30)) == T0 + timedelta(days=30)  # no receipt
    stamped = Input("item_progress", "course-progress", None, None, None, None, None,
                    received_at=received)  # fmt: skip
    assert stamped.moment(T0 + timedelta(days=30)) == received
    assert stamped.moment(T0) == T0


def test_a_module_open_for_everyone_before_a_change_sends_no_milestone() -> None:
    """Review of issue 25: a module added after a learner enrolled, never locked for
    them, then given a date already passed, sent them a module_unlocked."""
    before = course(module("m1", [item("i1")]))
    record = enrolled(before)
    grown = course(module("m1", [item("i1")]), module("m3", [item("i3")]))
    assert lock_changes(before, grown, T0) == []  # a new module open from the start
    dated = course(
        module("m1", [item("i1")]), module("m3", [item("i3")], unlock_at="2026-12-01T00:00:00Z")
    )
    [due] = lock_changes(grown, dated, T0)
    assert due.quiet
    quiet = release(dated, record, "m3", T0, due.quiet)
    assert quiet.milestone is None and quiet.record is not None
    assert "m3" in quiet.record["opened"]


async def test_the_timer_hurries_when_a_dates_learners_would_miss_the_bound() -> None:
    """One date for many learners (the course's seats): at the unhurried pace they would
    not all be told within the bound, so the timer hurries from its first run; a date for
    a few learners keeps the pace (and the API its latency)."""
    for seats, hurried in ((100_000, True), (60, False)):
        store = OrderedStore()
        encode = lambda s, v: orjson.dumps({"subject": s, "value": v}, default=str)  # noqa: E731
        batch = Batch(store, encode, decode_value)
        c = course(module("m1", [item("i1")]), module("m2", [item("i2")], unlock_at=DATE))
        store.put("c-1", {"course": c})
        store.put("c-1#seats", {"count": seats, "seq": 1})
        batch.begin()
        with batch.on_partition(0):
            for n in range(60):
                user = f"u{n:03d}"
                store.put(f"c-1:{user}", {**enrolled(c), "user_id": user})
                stage_due(batch, Due(DATE, "c-1", "m2", user))
        for key, value in batch.partitions[0].writes.items():
            store.put(key, value)
        timer = Timer(batch, WritesBack(store))
        await timer.run([0], now=T0 + timedelta(minutes=60))
        assert timer.pending and timer._hurry is hurried
