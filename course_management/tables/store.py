"""The `course-state` table's local store: Faust's RocksDB store, which reads only placed
changelog records and takes whole units from the course agent.

- **Recovery** (Faust reading the changelog into the store, `apply_changelog_batch`)
  skips the records that did not land where their writer expected (tables/units.py):
  a fenced writer's unit never reaches a store.
- **Units** (`write_unit`): the agent writes a unit's values into the partition's
  RocksDB database in one write batch, with Faust's offset key set to the unit's last
  offset, after the broker acked the unit. So the local store is never ahead of the
  changelog, and Faust's next recovery starts after the unit.
- **Reads** (`read`): the raw value of a key on one partition, for the agent's batch
  (which decodes each key once per batch).

Faust finds this store by the URL scheme `cmsrocksdb:`, registered by
streams/faust_compat.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, EventT
from rocksdict import WriteBatch

from course_management.tables.units import UnitRecord, is_placed

STORE_SCHEME = "cmsrocksdb"

# Each partition's RocksDB: Faust's defaults are 64 MiB write buffers (three of them) and
# a 2 GiB block cache, per partition. The worker's memory grew with every write until a
# memtable filled (issue 22: RSS from 154 to 204 MiB in 10 minutes of mixed load, then
# on). These bound it: at most 2 x 4 MiB of memtables per partition, and one block cache
# of BLOCK_CACHE_BYTES for every partition the worker holds (with a cache per partition,
# a 30-minute soak still grew with each partition's cache filling: docs/benchmarks.md).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
}
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
_shared_cache: list[rocksdict.Cache] = []


def _block_cache() -> rocksdict.Cache:
    """The one block cache every partition's database reads through (made on first use)."""
    if not _shared_cache:
        _shared_cache.append(rocksdict.Cache(BLOCK_CACHE_BYTES))
    return _shared_cache[0]


class SharedCacheOptions(RocksDBOptions):
    """Faust's RocksDB options (rocksdict), with the block cache shared by the partitions."""

    def as_options(self) -> rocksdict.Options:
        options = super().as_options()
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(_block_cache())
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


ROCKSDB_MEMORY = {
    "memtables": "rocksdb.cur-size-all-mem-tables",
    "block_cache": "rocksdb.block-cache-usage",
    "readers": "rocksdb.estimate-table-readers-mem",
}


def store_url(table: str) -> str:
    """The URL Faust finds this store by. Its path names the files (`<table>-<n>.db`, as
    Faust's own RocksDB store names them); an empty one would read as no URL at all."""
    return f"{STORE_SCHEME}:{table}"


class UnitStore(RocksDBStore):
    """Faust's RocksDB store with placement checked on recovery, and units written whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("the course-state store needs rocksdict (Faust's default)")
        self.rocksdb_options = SharedCacheOptions(**self.options, use_rocksdict=True)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        writes: dict[int, WriteBatch] = defaultdict(lambda: WriteBatch(raw_mode=True))
        offsets: dict[TP, int] = {}
        for event in batch:
            message = event.message
            tp, offset = message.tp, message.offset
            offsets[tp] = max(offset, offsets.get(tp, offset))
            if not is_placed(offset, message.headers):
                continue  # written by a fenced worker: never part of the table
            if message.value is None:
                writes[message.partition].delete(message.key)
            else:
                writes[message.partition].put(message.key, message.value)
        for partition, write in writes.items():
            self._db_for_partition(partition).write(write)
        for tp, offset in offsets.items():
            self.set_persisted_offset(tp, offset)

    def read(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db_for_partition(partition).get(key)
        return value

    def scan(self, partition: int, start: bytes, prefix: bytes, limit: int) -> list[bytes]:
        """Up to `limit` keys of the partition from `start` on (inclusive) that begin with
        `prefix`, in key order."""
        found: list[bytes] = []
        it = self._db_for_partition(partition).iter()
        it.seek(start)
        while it.valid() and len(found) < limit:
            key = bytes(it.key())
            if not key.startswith(prefix):
                break
            found.append(key)
            it.next()
        return found

    def write_unit(self, partition: int, records: Sequence[UnitRecord], last_offset: int) -> None:
        """One atomic RocksDB write: the unit's values and the offset Faust resumes after."""
        write = WriteBatch(raw_mode=True)
        for key, value, _ in records:
            if value is None:
                write.delete(key)
            else:
                write.put(key, value)
        write.put(self.offset_key, str(last_offset).encode())
        self._db_for_partition(partition).write(write)

    def memory(self) -> dict[str, int]:
        """RocksDB's own memory over the open partitions: memtables and the readers' index
        and filter blocks summed, and the block cache they share (bytes)."""
        totals = dict.fromkeys(ROCKSDB_MEMORY, 0)
        for db in list(self._dbs.values()):
            for kind, prop in ROCKSDB_MEMORY.items():
                value = int(db.property_int_value(prop) or 0)
                if kind == "block_cache":  # one cache: each database reports all of it
                    totals[kind] = max(totals[kind], value)
                else:
                    totals[kind] += value
        return totals

    def persisted(self, partition: int) -> int | None:
        """The last changelog offset the partition's store holds (None: none)."""
        raw = self._db_for_partition(partition).get(self.offset_key)
        return None if raw is None else int(raw)
