"""Restoring the local tables straight from their changelogs, before Faust starts.

After an unclean stop the local RocksDB stores are discarded (streams/local_state.py).
Faust would then restore them itself, passing every changelog record through its
consumer thread, its conductor and a queue, one event at a time: about 6,000 records a
second on the 2-core machine (issue 13). This module reads the same records with a plain
aiokafka consumer and writes them into the same RocksDB files, opened with the store's
own options and paths, in write batches; each batch carries the store's offset key
(Faust's `persisted_offset`) for the records it holds, in the same atomic write. Faust
then finds each store at its changelog's end and reads only what was written since
(decision 44).

A restore that stops early (its deadline, a crash) leaves stores that Faust simply
continues: Faust reads the rest before the agent decides anything on the partition.
Records that did not land where their writer expected are skipped, as Faust's own
recovery skips them (tables/store.py).

Which partitions: those this worker was assigned last, remembered at every assignment
in `assignment.json` beside the tables (`remember_assignment`). A partition that is
assigned elsewhere at the next start keeps its restored store on disk, as Faust keeps a
revoked partition's store; a partition newly assigned is restored by Faust as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from rocksdict import WriteBatch

from course_management.tables.units import is_placed

log = logging.getLogger(__name__)

ASSIGNMENT = "assignment.json"


@dataclass(frozen=True)
class Restored:
    records: int
    partitions: int
    seconds: float
    complete: bool


def remember_assignment(datadir: Path, assigned: Iterable[Any], changelogs: set[str]) -> None:
    """Note the changelog partitions of this assignment (atomically: a crash mid-write
    leaves the previous note)."""
    partitions: dict[str, list[int]] = {}
    for tp in assigned:
        if tp.topic in changelogs:
            partitions.setdefault(tp.topic, []).append(tp.partition)
    note = {topic: sorted(numbers) for topic, numbers in sorted(partitions.items())}
    pending = datadir / f"{ASSIGNMENT}.tmp"
    pending.write_text(json.dumps(note))
    os.replace(pending, datadir / ASSIGNMENT)


def remembered_assignment(datadir: Path) -> dict[str, list[int]]:
    """The changelog partitions of the last assignment; empty when none was noted."""
    try:
        note = json.loads((datadir / ASSIGNMENT).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(note, dict):
        return {}
    return {
        str(topic): [int(p) for p in numbers]
        for topic, numbers in note.items()
        if isinstance(numbers, list)
    }


async def restore_from_changelogs(
    bootstrap: str,
    stores: Mapping[str, Any],
    partitions: Mapping[str, list[int]],
    *,
    deadline_s: float = 120.0,
    max_records: int = 20_000,
    after_write: Callable[[], None] = lambda: None,
) -> Restored:
    """Read each changelog partition from its start into a fresh RocksDB store.

    `stores` maps a changelog topic to its table's Faust RocksDB store, whose
    `partition_path`, `rocksdb_options` and `offset_key` say where and how Faust keeps it.
    """
    started = time.monotonic()
    tps = [
        TopicPartition(topic, partition)
        for topic, numbers in partitions.items()
        if topic in stores
        for partition in numbers
    ]
    if not tps:
        return Restored(0, 0, 0.0, True)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    dbs: dict[TopicPartition, Any] = {}
    records = 0
    complete = False
    try:
        await consumer.start()
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        if pending:
            await consumer.seek_to_beginning(*pending)
        for tp in pending:
            store = stores[tp.topic]
            dbs[tp] = store.rocksdb_options.open(store.partition_path(tp.partition))
        while pending and time.monotonic() - started < deadline_s:
            fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=max_records)
            for tp, batch in fetched.items():
                records += _write(dbs[tp], stores[tp.topic].offset_key, batch)
                after_write()
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        complete = not pending
    except KafkaError as exc:
        # The broker is down (a restart during an outage): Faust restores what is left
        # once it answers, from the offsets written so far (found by the chaos run).
        log.warning(
            "the broker did not answer: the tables' restore is left to Faust",
            extra={"error": repr(exc), "records": records},
        )
    finally:
        for db in dbs.values():
            db.close()
        with contextlib.suppress(Exception):
            await consumer.stop()
    restored = Restored(records, len(dbs), time.monotonic() - started, complete)
    log.info(
        "local tables restored from their changelogs before start",
        extra={
            "records": restored.records,
            "partitions": restored.partitions,
            "seconds": round(restored.seconds, 3),
            "complete": restored.complete,
        },
    )
    return restored


def _write(db: Any, offset_key: bytes, batch: list[Any]) -> int:
    """One atomic write: the placed records (tables/units.py), and the offset of the last
    one read as Faust keeps it."""
    if not batch:
        return 0
    writes = WriteBatch(raw_mode=True)
    for record in batch:
        if not is_placed(record.offset, record.headers):
            continue  # a fenced writer's: never part of the table
        if record.value is None:
            writes.delete(record.key)
        else:
            writes.put(record.key, record.value)
    writes.put(offset_key, str(batch[-1].offset).encode())
    db.write(writes)
    return len(batch)
