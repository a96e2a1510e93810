"""Every use of a private faust-streaming name, in one place, checked at start-up.

faust-streaming is pinned to the exact version these uses were read in (pyproject.toml).
`check()` runs before the worker starts: if a name below is gone, the worker refuses to
start with one line naming it, instead of failing later in a rebalance or a commit.

1. A correction to the commit offset (`Consumer._new_offset`). As shipped (0.15.3) it
   refuses to commit past a hole at the head of the acked offsets only when the hole is
   two records or more (`min(acked) - committed_offset > 1`, and not at all when the
   committed offset is 0), so a single record that was never processed is committed over
   and lost for good. Faust can skip a record after a restart (it resumes partitions
   before seeking them, faust #216), and the SIGKILL test saw exactly that: one enrollment
   missing of 1,000. With the correction a head hole of any size holds the commit back;
   the partition watch (streams/partition_watch.py) then sees the stuck partition and
   rewinds it. This service's stream topics have no legitimate offset gaps (no
   transactions; the only compacted topics are changelogs and the catalog feed, which
   Faust does not commit for this service's agents). `tests/unit/test_faust_compat.py`
   shows the upstream bug is still there: when it fails, drop the correction.
   With it, Faust's gap filling is turned off (`Consumer._add_gap`): when its fetcher
   reads an offset more than one past the last one it read, Faust takes the offsets in
   between for absent (transaction markers, compaction) and counts them as acked. Here
   they are never absent: they are records the fetcher has not delivered yet. The agent's
   rewind (a seek) while the fetcher is still handing out a batch fetched before it made
   exactly that: the batch's next record, far past the seek, opened a "gap" over the
   rewound records, the records fetched again were then dropped as already read, and the
   gap was committed as acked: 11 `user_enrolled` inputs lost in a CI chaos run
   (2026-12-06, seed 305). Without gap filling the hole holds the commit back and the
   partition watch rewinds it.
2. Making an input the current event (`faust.streams._current_event`): Faust tables read
   and write the partition of the current event, and the course agent applies a batch's
   table writes after the batch, each under its own input.
3. The consumer's offset bookkeeping, read by the partition watch (`_committed_offset`,
   `_acked`, `_read_offset`, `_active_partitions`, `_paused_partitions`).
4. A table manager that starts at once (`PromptTableManager`, through Faust's own
   `TableManager` setting). Faust's waits one second before it registers the tables'
   changelog channels, so that tables declared while the app starts are still taken; this
   service declares both tables when it builds the app (streams/app.py), so the second
   was only start-up time, one quarter of a restart after a SIGKILL (decision 44). It
   calls `TableManager._update_channels`, the rest of Faust's `on_start`.
5. The local RocksDB store's `partition_path`, `rocksdb_options`, `offset_key` and
   `_db_for_partition`, used to restore the tables before Faust starts
   (tables/restore.py) and to read and write the `course-state` store by partition
   (tables/store.py); the store is found by its URL scheme through the public
   `faust.stores.STORES.aliases`.
6. Taking the backlog (`take_backlog`): Faust's `take_events` with another rule for when
   a batch is ready. It uses the stream's `_processors`, `_enable_passive`,
   `current_event`, `enable_acks` and `channel.queue` exactly as `take_events` does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import faust.streams
from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import Stream
from faust.tables.manager import TableManager
from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

# The consumer's instance attributes used here (set in its methods, so checked by name).
CONSUMER_ATTRIBUTES = (
    "_acked",
    "_committed_offset",
    "_gap",
    "_read_offset",
    "_active_partitions",
    "_paused_partitions",
)


class FaustChanged(RuntimeError):
    """A private faust-streaming name this service relies on is gone."""


def check() -> None:
    """Raise `FaustChanged`, naming the first private name that is gone."""
    if not callable(getattr(Consumer, "_new_offset", None)):
        raise FaustChanged("faust.transport.consumer.Consumer._new_offset is gone")
    if not callable(getattr(Consumer, "_add_gap", None)):
        raise FaustChanged("faust.transport.consumer.Consumer._add_gap is gone")
    if not isinstance(getattr(faust.streams, "_current_event", None), ContextVar):
        raise FaustChanged("faust.streams._current_event is no longer a ContextVar")
    used = {
        name
        for member in vars(Consumer).values()
        if inspect.isfunction(member)
        for name in member.__code__.co_names
    }
    for attribute in CONSUMER_ATTRIBUTES:
        if attribute not in used:
            raise FaustChanged(f"faust's Consumer no longer uses self.{attribute}")
    if not callable(getattr(TableManager, "_update_channels", None)):
        raise FaustChanged("faust.tables.manager.TableManager._update_channels is gone")
    if not isinstance(getattr(RocksDBStore, "offset_key", None), bytes):
        raise FaustChanged("faust.stores.rocksdb.Store.offset_key is gone")
    if not callable(getattr(RocksDBStore, "partition_path", None)):
        raise FaustChanged("faust.stores.rocksdb.Store.partition_path is gone")
    if "rocksdb_options" not in RocksDBStore.__init__.__code__.co_names:
        raise FaustChanged("faust's RocksDB Store no longer sets self.rocksdb_options")
    if not callable(getattr(RocksDBStore, "_db_for_partition", None)):
        raise FaustChanged("faust.stores.rocksdb.Store._db_for_partition is gone")
    for name in ("_enable_passive", "add_processor", "ack"):
        if not callable(getattr(Stream, name, None)):
            raise FaustChanged(f"faust.streams.Stream.{name} is gone")
    if "_processors" not in Stream.add_processor.__code__.co_names:
        raise FaustChanged("faust's Stream no longer keeps self._processors")


# -- 1. the commit offset ---------------------------------------------------------------

_upstream_new_offset = Consumer._new_offset
upstream_add_gap = Consumer._add_gap


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    committed = self._committed_offset[tp]
    if acked and committed is not None and min(acked) > committed:
        return None  # the record at `committed` was never acked: do not commit past it
    result: int | None = _upstream_new_offset(self, tp)
    return result


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Offsets the fetcher skipped are records still to deliver, never acked ones."""
    log.warning(
        "offsets skipped by the fetcher are left unacknowledged",
        extra={"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to},
    )


def apply_fixes() -> None:
    """Install the corrections and register the course-state store (idempotent)."""
    Consumer._new_offset = _new_offset
    Consumer._add_gap = _add_gap
    from course_management.tables.store import STORE_SCHEME

    STORES.aliases[STORE_SCHEME] = "course_management.tables.store:UnitStore"


def upstream_new_offset(consumer: Any, tp: Any) -> int | None:
    """Faust's own `_new_offset`, for the test that shows its bug."""
    result: int | None = _upstream_new_offset(consumer, tp)
    return result


# -- 2. the current event ---------------------------------------------------------------


@contextmanager
def as_current_event(event: Any) -> Iterator[None]:
    """Faust tables read and write the partition of the current event: make it `event`."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


# -- 3. the consumer's bookkeeping ------------------------------------------------------


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset the consumer last committed for `tp` (None: none yet)."""
    committed: int | None = consumer._committed_offset.get(tp)
    return committed


def pass_over_deleted(consumer: Any, tp: Any, log_start: int) -> None:
    """The records before `log_start` were deleted by retention: with gap filling off the
    commit would wait for them for ever, so count the committed offset from there."""
    consumer._committed_offset[tp] = log_start


def acked_offsets(consumer: Any, tp: Any) -> list[int]:
    """Offsets processed (acked) but not committed yet."""
    return list(consumer._acked.get(tp) or ())


def partition_state(consumer: Any, tp: Any) -> dict[str, Any]:
    """How the consumer sees `tp`, for a log line."""
    return {
        "read_offset": consumer._read_offset.get(tp),
        "active": tp in (consumer._active_partitions or set()),
        "paused": tp in consumer._paused_partitions,
        "flow_active": consumer.flow_active,
    }


# -- 4. the table manager's start ---------------------------------------------------------


class PromptTableManager(TableManager):
    """Faust's table manager without the one-second wait before its tables register."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


# -- 6. taking the backlog -------------------------------------------------------------------


async def take_backlog(
    stream: Any, max_: int, idle_s: float | Callable[[], float]
) -> AsyncIterator[list[Any]]:
    """The stream's events in batches as large as what is waiting, up to `max_`.

    Faust's `take_events(max_, within)` waits `within` after the first event of every
    batch, while it holds the stream, so a backlog was taken ~22 events at a time and a
    lone command waited the whole window (issue 22). Here a batch is ready as soon as
    the stream's queue is empty or the batch is full: a lone event goes at once, and
    under a backlog everything that queued while the last batch was applied comes
    together. The events of a batch are acked after the caller asks for the next one,
    that is after it applied them, as `take_events` does. After `idle_s` without a
    ready batch the events in hand are yielded, or an empty batch if there are none (the
    caller's chance to do its own upkeep; `idle_s` may be a function, asked before each
    wait): a rebalance empties the queue itself, and its revoke waits until the events
    in hand are acked (decision 65).
    """
    events: list[Any] = []
    ready = asyncio.Event()  # a batch can be taken
    open_ = asyncio.Event()  # the stream may add to the batch (not while it is applied)
    open_.set()
    queue = stream.channel.queue
    channel_it = aiter(stream.channel)

    async def add_to_batch(value: Any) -> Any:
        while not open_.is_set():
            await open_.wait()
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_backlog found current_event is None")
        events.append(event)
        if len(events) >= max_:
            open_.clear()  # full: hold the stream until the batch is taken
            ready.set()
        elif queue.empty():
            ready.set()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked here, after the batch is applied
    stream.add_processor(add_to_batch)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            try:
                await asyncio.wait_for(ready.wait(), idle_s() if callable(idle_s) else idle_s)
            except TimeoutError:
                if not events:
                    yield []
                    continue
                # Events are waiting though `ready` was not set: the queue they came
                # through was emptied by Faust (a rebalance clears it), not by them.
            open_.clear()
            taken = list(events)
            events.clear()
            ready.clear()
            if not taken:
                open_.set()
                continue
            yield taken
            for event in taken:
                await stream.ack(event)
            open_.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_batch)
