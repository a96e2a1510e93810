"""Target 3 of issue 13: command to mirror, at a fixed rate, against a hand-written loop.

    .venv/bin/python -m bench.command_to_mirror [--rate 20] [--seconds 15] [--png FILE]

Starts the local stack and one worker. At a fixed rate (default 20 per second), sends
`POST /api/v1/courses/create` with a unique title and times until the PostgreSQL mirror
has the course: HTTP, the command on Kafka, the agent (table, event, reply), the event
on Kafka, the mirror's sink, PostgreSQL. The peer, in the same run, at the same rate:
an aiokafka producer (idempotent, acks=all) sends the same course as JSON to a topic; a
consumer loop reads it and upserts it into a PostgreSQL table with asyncpg, then commits.
Both are observed the same way: one poller asks PostgreSQL every 2 ms which of the
pending titles are there; the first 2 s of each are a warm-up, not counted. It prints
p50, p95 and p99 for both and their ratios, and the agent's own phase times.
No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.api_latency import percentile
from bench.local import local_worker
from bench.read_path import realistic_course
from course_management.infra.kafka import ensure_topics, new_producer
from course_management.topology import TopicSpec
from tests.support import auth

INSTRUCTOR = auth("bench-instructor", "instructor", name="Bench Instructor")
POLL_S = 0.002
QS = (0.5, 0.95, 0.99)
ANSWERED: dict[str, float] = {}  # title -> the service's answer (the part before the mirror)
WARMUP_S = 2.0


async def paced(
    rate: float, seconds: float, pool: asyncpg.Pool, table: str,
    send: Callable[[str], Awaitable[None]],
) -> list[float]:  # fmt: skip
    """Send one title every 1/rate s; latency from each send until `table` has it. The
    first WARMUP_S of sends warm the path up (connections, metadata, the first batch on
    each partition) and are not counted, for either side."""
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    warmup = int(rate * WARMUP_S)
    n = int(rate * seconds) + warmup

    async def poll() -> None:
        while len(done) < n:
            pending = [t for t in sent if t not in done]
            if pending:
                rows = await pool.fetch(f"SELECT title FROM {table} WHERE title = ANY($1)", pending)
                now = time.perf_counter()
                for row in rows:
                    done.setdefault(row["title"], now)
            await asyncio.sleep(POLL_S)

    poller = asyncio.create_task(poll())
    tasks = []
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        title = f"bench-{uuid.uuid4().hex}"
        sent[title] = time.perf_counter()
        tasks.append(asyncio.create_task(send(title)))
    await asyncio.gather(*tasks)
    await asyncio.wait_for(poller, timeout=60)
    for title in list(sent)[:warmup]:
        ANSWERED.pop(title, None)
    return [done[t] - sent[t] for t in list(sent)[warmup:]]


async def service(base: str, pool: asyncpg.Pool, rate: float, seconds: float) -> list[float]:
    body = realistic_course() | {"status": "draft"}
    async with aiohttp.ClientSession(base_url=base) as http:

        async def create(title: str) -> None:
            started = time.perf_counter()
            r = await http.post("/api/v1/courses/create", json=body | {"title": title},
                                headers=INSTRUCTOR)  # fmt: skip
            assert r.status == 201, await r.text()
            ANSWERED[title] = time.perf_counter() - started

        return await paced(rate, seconds, pool, "courses", create)


async def peer(bootstrap: str, pool: asyncpg.Pool, rate: float, seconds: float) -> list[float]:
    topic = f"bench-commands-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, None)], 6)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bench_peer_courses "
        "(id text PRIMARY KEY, title text NOT NULL, version int NOT NULL, snapshot jsonb)"
    )
    producer = new_producer(bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"peer-{topic}",
        enable_auto_commit=False, auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    body = realistic_course()

    async def mirror() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            rows = [json.loads(r.value) for rs in batch.values() for r in rs]
            if rows:
                await pool.executemany(
                    "INSERT INTO bench_peer_courses AS c (id, title, version, snapshot) "
                    "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (id) DO UPDATE SET "
                    "title = EXCLUDED.title, version = EXCLUDED.version, "
                    "snapshot = EXCLUDED.snapshot WHERE c.version < EXCLUDED.version",
                    [(r["id"], r["title"], 1, json.dumps(r)) for r in rows],
                )
                await consumer.commit()

    loop = asyncio.create_task(mirror())

    async def send(title: str) -> None:
        course = body | {"id": str(uuid.uuid4()), "title": title}
        await producer.send_and_wait(topic, json.dumps(course).encode(), key=course["id"].encode())

    try:
        return await paced(rate, seconds, pool, "bench_peer_courses", send)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


PHASES: dict[str, float] = {}


async def phase_means(base: str) -> dict[str, float]:
    """The worker's own timing of its batches (cms_agent_batch_seconds) and of its event
    loop (cms_event_loop_lag_seconds): mean milliseconds of each."""
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{base}/metrics")).text()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for family in ("cms_agent_batch_seconds", "cms_event_loop_lag_seconds"):
            if line.startswith((f"{family}_sum", f"{family}_count")):
                name = (
                    line.split('phase="', 1)[1].split('"', 1)[0] if "phase=" in line else "loop lag"
                )
                target = sums if "_sum" in line.split("{")[0].split(" ")[0] else counts
                target[name] = float(line.rsplit(" ", 1)[1])
    return {name: 1000 * sums[name] / counts[name] for name in sums if counts.get(name)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--png", type=Path)
    parser.add_argument(
        "--split-sinks",
        action="store_true",
        help="the sinks in their own process (RUN_SINKS=false; decision 42)",
    )
    args = parser.parse_args()

    async def both(base: str, bootstrap: str, database_url: str) -> dict[str, list[float]]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            ours = await service(base, pool, args.rate, args.seconds)
            PHASES.update(await phase_means(base))
            theirs = await peer(bootstrap, pool, args.rate, args.seconds)
            return {
                "service: create -> mirror": ours,
                "peer: aiokafka -> asyncpg": theirs,
                "(service: create answered)": list(ANSWERED.values()),
            }
        finally:
            await pool.close()

    extra = {"RUN_SINKS": "false"} if args.split_sinks else None
    with local_worker(extra, sinks_apart=args.split_sinks) as (worker, settings):
        results = asyncio.run(
            both(worker.base_url, settings.kafka_bootstrap_servers, settings.database_url)
        )
    ours, theirs, _ = results.values()
    shape = "sinks in their own process" if args.split_sinks else "sinks in the worker"
    print(f"{args.rate:g} per second for {args.seconds:g} s, one worker ({shape}), local stack")
    print(f"{'path':<30}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, samples in results.items():
        print(
            f"{name:<30}"
            + "".join(f"{percentile(samples, q) * 1000:>9.1f}" for q in (0.5, 0.95, 0.99))
        )
    ratios = [f"p{int(q * 100)} {percentile(ours, q) / percentile(theirs, q):.2f}" for q in QS]
    print("service ÷ peer: " + ", ".join(ratios))
    print("the agent's batch, mean ms per phase: " + ", ".join(
        f"{phase} {ms:.2f}" for phase, ms in PHASES.items()
    ))  # fmt: skip
    if args.png:
        from bench.plots import distributions

        distributions(results, args.png, f"Command to mirror at {args.rate:g}/s")
        print(f"drawn: {args.png}")


if __name__ == "__main__":
    main()
