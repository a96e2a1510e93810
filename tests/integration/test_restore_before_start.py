"""The tables are restored from their changelogs before Faust starts (tables/restore.py,
decision 44): against real Kafka and real RocksDB files opened with Faust's own options."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions
from rocksdict import Options, Rdict

from course_management.config import Settings
from course_management.infra.kafka import ensure_topics, new_producer
from course_management.tables.restore import restore_from_changelogs
from course_management.topology import TopicSpec
from devstack.processes import free_port

OFFSET_KEY = b"__faust\0offset__"


class _Store:
    """The three names of a Faust RocksDB store the restore uses, on a temporary folder
    (a real Faust store needs a running app)."""

    offset_key = OFFSET_KEY

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rocksdb_options = RocksDBOptions()

    def partition_path(self, partition: int) -> Path:
        return self.folder / f"table-{partition}.db"


def _contents(path: Path) -> dict[bytes, bytes]:
    db = Rdict(str(path), options=Options(raw_mode=True))
    try:
        return {bytes(k): bytes(v) for k, v in db.items()}
    finally:
        db.close()


async def _changelog(settings: Settings, records: list[tuple[bytes, bytes | None]]) -> str:
    topic = f"test-restore-{uuid.uuid4().hex[:8]}-changelog"
    await ensure_topics(
        settings.kafka_bootstrap_servers, [TopicSpec(topic, None, {}, partitions=1)], 1
    )
    producer = new_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value in records:  # a None value is a tombstone
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()
    return topic


async def test_a_restore_writes_the_last_value_of_each_key_and_faust_s_offset(
    settings: Settings, tmp_path: Path
) -> None:
    records: list[tuple[bytes, bytes | None]] = [
        (b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", None),
    ]  # fmt: skip
    topic = await _changelog(settings, records)
    store: Any = _Store(tmp_path)
    restored = await restore_from_changelogs(
        settings.kafka_bootstrap_servers, {topic: store}, {topic: [0], "not-a-table": [0]},
        max_records=2,  # several write batches
    )  # fmt: skip
    assert restored.complete and restored.records == 5 and restored.partitions == 1
    # `b` was deleted by its tombstone; Faust's offset is the last record's, as it keeps it.
    assert _contents(store.partition_path(0)) == {b"a": b"2", b"c": b"1", OFFSET_KEY: b"4"}


async def test_a_restore_past_its_deadline_stops_and_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    topic = await _changelog(settings, [(b"a", b"1")])
    store: Any = _Store(tmp_path)
    restored = await restore_from_changelogs(
        settings.kafka_bootstrap_servers, {topic: store}, {topic: [0]}, deadline_s=0
    )
    assert not restored.complete and restored.records == 0
    # Nothing written, not even an offset: Faust restores the partition from the start.
    assert OFFSET_KEY not in _contents(store.partition_path(0))


async def test_nothing_remembered_restores_nothing(settings: Settings, tmp_path: Path) -> None:
    restored = await restore_from_changelogs(settings.kafka_bootstrap_servers, {}, {})
    assert restored.complete and restored.records == 0 and restored.partitions == 0


async def test_a_broker_that_does_not_answer_leaves_the_restore_to_faust(
    settings: Settings, tmp_path: Path
) -> None:
    """A worker restarted while the broker is down used to exit here (found by the chaos
    run): the restore is only faster, so it gives up and Faust restores once it can."""
    store: Any = _Store(tmp_path)
    nobody = f"127.0.0.1:{free_port()}"
    restored = await restore_from_changelogs(nobody, {"t-changelog": store}, {"t-changelog": [0]})
    assert not restored.complete and restored.records == 0
