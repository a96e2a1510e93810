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
5. The local RocksDB store's `partition_path`, `rocksdb_options` and `offset_key`, used to
   restore the tables before Faust starts (tables/restore.py).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import faust.streams
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from faust.transport.consumer import Consumer

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


# -- 1. the commit offset ---------------------------------------------------------------

_upstream_new_offset = Consumer._new_offset


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    committed = self._committed_offset[tp]
    if acked and committed is not None and min(acked) > committed and not self._gap[tp]:
        return None  # the record at `committed` was never acked: do not commit past it
    result: int | None = _upstream_new_offset(self, tp)
    return result


def apply_fixes() -> None:
    """Install the correction (idempotent)."""
    Consumer._new_offset = _new_offset


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
