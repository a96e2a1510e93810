"""Target 2 of issue 13: enrolments per second through the pipeline, against hand-written
aiokafka peers doing the same work on the same broker with the same input.

    .venv/bin/python -m bench.enrollment_throughput [--n 12000] [--png FILE]

Starts the local stack (no Elasticsearch) and one worker, creates a published course
(no capacity), and produces N `user_enrolled` records keyed by user (as another service
would) with one producer. Timed from the first record sent until N `enrollment_created`
events of the course are on `enrollment-events`: re-keying by course (the router), the
course agent (decision, event, tables, Redis) and the event.

The peers get the same N records (encoded the same way, produced the same way) on their
own topics of the same partition count, and are timed the same way:
- two hops (the service's shape): consume a batch, forward each record re-keyed by course
  to a repartition topic, await, commit; then consume that, decode, decide in a dict
  (dedupe by event id, seats), send one Avro event per input with an idempotent acks=all
  producer, await the batch, commit;
- one hop: the second hop alone, reading the input directly.
No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from bench.local import local_worker, profiler
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import ensure_topics, new_producer, topic_partitions
from course_management.ops.provisioning import register_schemas
from course_management.topology import STATE_TABLE, TopicSpec, changelog
from tests.support import ONE_MODULE, auth

INPUT_SUBJECT = "user-enrolled-value"
EVENT_SUBJECT = "enrollment-events-value"
PARTITIONS = 6  # as the service's topics on the local stack (TOPIC_PARTITIONS)


def inputs(codec: AvroCodec, course_id: str, n: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            f"bench-{i}".encode(),
            codec.encode(
                INPUT_SUBJECT,
                {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": datetime.now(UTC),
                    "user_id": f"bench-{i}",
                    "course_id": course_id,
                    "source": "bench",
                },
            ),
        )
        for i in range(n)
    ]


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def count_until(bootstrap: str, topic: str, n: int, key: bytes | None) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen = 0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=200)
            seen += sum(1 for rs in batch.values() for r in rs if key is None or r.key == key)
    finally:
        await consumer.stop()


async def _loop(
    bootstrap: str, topic: str, group: str, work: Callable[[list[ConsumerRecord]], Awaitable[None]]
) -> None:
    """Consume `topic` in batches: `work(batch)` (which awaits its sends), then commit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            records = [r for rs in batch.values() for r in rs]
            if records:
                await work(records)
                await consumer.commit()
    finally:
        await consumer.stop()


def _event(codec: AvroCodec, fields: dict[str, Any]) -> bytes:
    now = datetime.now(UTC)
    return codec.encode(
        EVENT_SUBJECT,
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, fields["event_id"])),
            "event_type": "enrollment_created",
            "occurred_at": now,
            "course_id": fields["course_id"],
            "user_id": fields["user_id"],
            "version": 1,
            "enrollment": {
                "course_id": fields["course_id"],
                "user_id": fields["user_id"],
                "status": "active",
                "enrolled_at": now.isoformat(),
                "progress": {
                    "completed_items": 0,
                    "total_items": 1,
                    "percent": 0.0,
                    "completed_at": None,
                    "last_activity_at": None,
                    "next_item_id": None,
                    "items": [],
                },
                "completed_item_ids": [],
            },
        },
    )


async def peer(
    bootstrap: str, codec: AvroCodec, records: list[tuple[bytes, bytes]], course_id: str, hops: int
) -> float:
    """Seconds for the hand-written pipeline to turn the records into N events."""
    tag = uuid.uuid4().hex[:8]
    source, rekeyed, out = f"bench-in-{tag}", f"bench-rekeyed-{tag}", f"bench-out-{tag}"
    await ensure_topics(bootstrap, [TopicSpec(t, None) for t in (source, rekeyed, out)], PARTITIONS)
    producer = new_producer(bootstrap)
    await producer.start()
    seen: set[str] = set()
    seats: dict[str, int] = {}

    async def rekey(batch: list[ConsumerRecord]) -> None:
        sent = []
        for record in batch:
            fields = await codec.decode(INPUT_SUBJECT, record.value)
            key = fields["course_id"].encode()
            sent.append(await producer.send(rekeyed, value=record.value, key=key))
        await asyncio.gather(*sent)

    async def decide(batch: list[ConsumerRecord]) -> None:
        sent = []
        for record in batch:
            fields = await codec.decode(INPUT_SUBJECT, record.value)
            if fields["event_id"] in seen:
                continue
            seen.add(fields["event_id"])
            seats[fields["course_id"]] = seats.get(fields["course_id"], 0) + 1
            event = _event(codec, fields)
            sent.append(await producer.send(out, value=event, key=record.key))
        await asyncio.gather(*sent)

    loops = [
        asyncio.create_task(
            _loop(bootstrap, rekeyed if hops == 2 else source, f"decide-{tag}", decide)
        )
    ]
    if hops == 2:
        loops.append(asyncio.create_task(_loop(bootstrap, source, f"rekey-{tag}", rekey)))
    try:
        started = time.perf_counter()
        await produce(bootstrap, source, records)
        await count_until(bootstrap, out, len(records), None)
        return time.perf_counter() - started
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await producer.stop()


async def run(
    base: str, bootstrap: str, registry: str, n: int, profile: Callable[[], Callable[[], None]]
) -> dict[str, float]:
    async with aiohttp.ClientSession(base_url=base) as http:
        response = await http.post(
            "/api/v1/courses/create",
            json={"title": "Bench", "status": "published", "modules": [ONE_MODULE]},
            headers=auth("bench", "instructor"),
        )
        course = await response.json()
        assert response.status == 201, course
    codec = AvroCodec(registry)
    await register_schemas(codec)
    records = inputs(codec, course["id"], n)
    changelog_before = await _end_offsets(bootstrap, changelog(STATE_TABLE))
    batches_before = await _batch_sizes(base)
    started = time.perf_counter()
    stop_profile = profile()
    await produce(bootstrap, "user-enrolled", records)
    await count_until(bootstrap, "enrollment-events", n, course["id"].encode())
    service = time.perf_counter() - started
    stop_profile()
    written = await _end_offsets(bootstrap, changelog(STATE_TABLE)) - changelog_before
    print(f"changelog records per enrolment: {written / n:.3f} ({written} for {n})")
    print(
        "batch sizes (inputs per batch: batches):",
        _histogram(batches_before, await _batch_sizes(base)),
    )
    fake_course = str(uuid.uuid4())  # the peers' own copy of the same input
    copy = inputs(codec, fake_course, n)
    two = await peer(bootstrap, codec, copy, fake_course, hops=2)
    one = await peer(bootstrap, codec, inputs(codec, fake_course, n), fake_course, hops=1)
    return {"service": n / service, "peer: two hops": n / two, "peer: one hop": n / one}


async def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = await topic_partitions(bootstrap, topic)
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def _batch_sizes(base: str) -> dict[str, float]:
    """The agent's `cms_agent_batch_inputs` histogram: cumulative count per bucket."""
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{base}/metrics")).text()
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cms_agent_batch_inputs_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    return buckets


def _histogram(before: dict[str, float], after: dict[str, float]) -> str:
    """Batches per size range during the run (from the cumulative buckets)."""
    shown, below, low = [], 0.0, "1"
    for le, count in after.items():
        inside = count - before.get(le, 0.0) - below
        below += inside
        if inside:
            shown.append(f"{low}-{le}: {inside:.0f}")
        low = le
    return ", ".join(shown) or "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--png", type=str)
    parser.add_argument("--profile", type=str, help="py-spy's raw stacks of the service part")
    parser.add_argument(
        "--split-sinks",
        action="store_true",
        help="the sinks in their own process (RUN_SINKS=false; decision 42)",
    )
    args = parser.parse_args()
    extra = {"RUN_SINKS": "false"} if args.split_sinks else None
    with local_worker(extra, sinks_apart=args.split_sinks) as (worker, settings):

        def profile() -> Callable[[], None]:
            if not args.profile or worker.proc is None:
                return lambda: None
            spy = profiler(worker.proc.pid, args.profile)

            def stop() -> None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)

            return stop

        rates = asyncio.run(
            run(worker.base_url, settings.kafka_bootstrap_servers,
                settings.schema_registry_url, args.n, profile)
        )  # fmt: skip
    service = rates["service"]
    shape = "sinks in their own process" if args.split_sinks else "sinks in the worker"
    print(f"n={args.n} user_enrolled records, one worker ({shape}), local stack on this machine")
    for name, rate in rates.items():
        print(f"{name:<16}{rate:>10.0f} enrolments/s   service ÷ this: {service / rate:.2f}")
    if args.png:
        from bench.plots import bars

        bars(rates, args.png, f"Enrolments per second ({args.n} user_enrolled records)",
             "enrolments per second")  # fmt: skip
        print(f"drawn: {args.png}")


if __name__ == "__main__":
    main()
