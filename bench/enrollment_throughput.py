"""Enrollments per second through the whole pipeline, against raw aiokafka as the peer.

    .venv/bin/python -m bench.enrollment_throughput [--n 2000]

Starts the local stack (no Elasticsearch) and one worker, creates a published course,
produces N `user_enrolled` records keyed by user (as another service would), and times
until N `enrollment_created` events are on `enrollment-events`: re-keying, the course
agent (decision, event, tables, cache) and back. Two peers, measured in the same run:

- read: a plain aiokafka consumer reading the same N records from `user-enrolled`;
- round trip: the same N records read, and for each one record produced and its ack
  awaited (acks=all, idempotent, as the course agent does once per input) - the floor of
  a pipeline that answers each input durably before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from bench.local import local_worker
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import ensure_topics, new_producer
from course_management.ops.provisioning import register_schemas
from course_management.topology import TopicSpec
from tests.support import auth


async def _read_until(
    bootstrap: str, topic: str, done: Callable[[list[ConsumerRecord]], Awaitable[bool]]
) -> float:
    """Seconds to read `topic` from the beginning until `done(batch)` says so."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    started = time.perf_counter()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if await done([r for records in batch.values() for r in records]):
                return time.perf_counter() - started
    finally:
        await consumer.stop()


async def count_until(bootstrap: str, topic: str, n: int, key: bytes | None) -> float:
    seen = 0

    async def counted(records: list[ConsumerRecord]) -> bool:
        nonlocal seen
        seen += sum(1 for r in records if key is None or r.key == key)
        return seen >= n

    return await _read_until(bootstrap, topic, counted)


async def round_trip_per_record(bootstrap: str, topic: str, n: int) -> float:
    """Read n records of `topic`; for each, produce one and await its ack."""
    scratch = f"bench-round-trip-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(scratch, None, partitions=1)], 1)
    producer = new_producer(bootstrap)
    await producer.start()
    seen = 0

    async def answered(records: list[ConsumerRecord]) -> bool:
        nonlocal seen
        for record in records[: n - seen]:
            await producer.send_and_wait(scratch, value=record.value, key=record.key)
            seen += 1
        return seen >= n

    try:
        return await _read_until(bootstrap, topic, answered)
    finally:
        await producer.stop()


async def mirrored(database_url: str, course_id: str, n: int, started: float) -> float:
    """Seconds from `started` until the PostgreSQL mirror holds the n enrollments."""
    conn = await asyncpg.connect(database_url)
    try:
        query = "SELECT count(*) FROM enrollments WHERE course_id = $1"
        while await conn.fetchval(query, course_id) < n:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def run(base: str, bootstrap: str, registry: str, database_url: str, n: int) -> None:
    async with aiohttp.ClientSession(base_url=base) as http:
        response = await http.post(
            "/api/v1/courses/create",
            json={
                "title": "Bench",
                "status": "published",
                "modules": [
                    {
                        "title": "M",
                        "position": 0,
                        "items": [{"type": "lesson", "title": "L", "position": 0}],
                    }
                ],
            },
            headers=auth("bench", "instructor"),
        )
        course = await response.json()
    codec = AvroCodec(registry)
    await register_schemas(codec)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    for i in range(n):
        value = codec.encode(
            "user-enrolled-value",
            {
                "event_id": str(uuid.uuid4()),
                "occurred_at": datetime.now(UTC),
                "user_id": f"bench-{i}",
                "course_id": course["id"],
                "source": "bench",
            },
        )
        await producer.send("user-enrolled", value=value, key=f"bench-{i}".encode())
    await producer.flush()
    await producer.stop()
    await count_until(bootstrap, "enrollment-events", n, course["id"].encode())
    pipeline = time.perf_counter() - started
    mirror = await mirrored(database_url, course["id"], n, started)
    peer = await count_until(bootstrap, "user-enrolled", n, None)
    floor = await round_trip_per_record(bootstrap, "user-enrolled", n)
    print(f"n={n} enrollments, one worker, local stack on this machine")
    print(
        f"pipeline (produce -> enrollment_created): {n / pipeline:8.0f} enrollments/s"
        f" ({pipeline:.2f} s)"
    )
    print(
        f"mirror (produce -> {n} rows in PostgreSQL): {n / mirror:8.0f} enrollments/s"
        f" ({mirror:.2f} s)"
    )
    print(f"peer read (raw aiokafka read of the input): {n / peer:8.0f} records/s ({peer:.2f} s)")
    print(
        f"peer round trip (read + one acked produce each): {n / floor:8.0f} records/s"
        f" ({floor:.2f} s)"
    )
    print(f"pipeline / read: {peer / pipeline:.3f}; pipeline / round trip: {floor / pipeline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with local_worker() as (worker, settings):
        asyncio.run(
            run(
                worker.base_url,
                settings.kafka_bootstrap_servers,
                settings.schema_registry_url,
                settings.database_url,
                args.n,
            )
        )


if __name__ == "__main__":
    main()
