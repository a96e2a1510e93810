"""The course-state store's RocksDB memory is bounded for the whole worker: every
partition's database reads through one block cache (tables/store.py)."""

from __future__ import annotations

from pathlib import Path

from course_management.tables.store import BLOCK_CACHE_BYTES, ROCKSDB_OPTIONS, SharedCacheOptions


def test_every_partition_reads_through_one_block_cache(tmp_path: Path) -> None:
    options = SharedCacheOptions(**ROCKSDB_OPTIONS, use_rocksdict=True)
    first, second = options.open(tmp_path / "p0.db"), options.open(tmp_path / "p1.db")
    try:
        for db in (first, second):
            capacity = db.property_int_value("rocksdb.block-cache-capacity")
            assert capacity == BLOCK_CACHE_BYTES
        for n in range(2000):
            first.put(f"k{n}".encode(), b"x" * 512)
        first.flush()
        before = second.property_int_value("rocksdb.block-cache-usage")
        assert all(first.get(f"k{n}".encode()) for n in range(0, 2000, 7))
        # the blocks the first database read are in the cache the second one reports
        assert second.property_int_value("rocksdb.block-cache-usage") > before
    finally:
        first.close()
        second.close()
