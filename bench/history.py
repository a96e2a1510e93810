"""Issue 27's two targets for history and time travel, against peers measured in the same
run, and the spike that chose where versions are served from.

    .venv/bin/python -m bench.history [--versions 1000] [--reads 2000]

Starts the local stack (no Elasticsearch) and one worker, creates a published course of
about 3 KB and changes it `--versions` - 1 times (a title, a description, an item's
duration in turn), then waits until the mirror holds every version. Then, one after
another, `--reads` sequential requests each (keep-alive, after a warm-up):

1. **A past version against the current one.** `GET /api/v1/courses/{id}` (the cached hot
   read) and `GET ...?version=N` for N drawn at random from 1..versions, interleaved.
   Target: p99 of the second within 2x of the first.
2. **The first page of history against a plain indexed query.** The service's
   `GET .../history` (the owner's token) against (a) the same query (`course_versions`
   by its primary key, 21 rows) made directly with asyncpg from this process, and (b) a
   bare aiohttp endpoint making that query and answering the rows as JSON
   (`bench.peers history`, its own process). Target: p99 within 2x of the query.
3. **The spike (decision 61): an index from version to offset, or a table of snapshots.**
   For the same random versions: a snapshot read from `course-events` by its offset (one
   long-lived consumer assigned to the course's partition: seek, then fetch one record,
   then decode), against the primary-key read of `course_versions`. Both from this
   process, no HTTP.

No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.local import local_worker, profiler
from bench.peers import HISTORY_QUERY
from bench.read_path import realistic_course, wait_http
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.ops.provisioning import register_schemas
from devstack.processes import free_port
from tests.support import auth

OWNER = auth("bench-instructor", "instructor", name="Bench Instructor")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
    }


async def timed(call: Awaitable[Any]) -> float:
    """How long awaiting `call` takes (a coroutine does nothing until it is awaited)."""
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def make_versions(http: aiohttp.ClientSession, versions: int) -> tuple[str, dict[str, Any]]:
    body = {**realistic_course(), "status": "published"}
    answer = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    course = await answer.json()
    assert answer.status == 201, course
    cid = course["id"]
    for n in range(2, versions + 1):
        if n % 3 == 0:
            change: dict[str, Any] = {"title": f"Bench history v{n}"}
        elif n % 3 == 1:
            change = {"description": f"Changed {n} times"}
        else:
            modules = course["modules"]
            modules[0]["items"][0]["duration_seconds"] = 60 + n
            change = {"modules": modules}
        answer = await http.put(f"/api/v1/courses/{cid}/update", json=change, headers=OWNER)
        assert answer.status == 200, await answer.text()
        course = await answer.json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the mirror has them all
        page = await (
            await http.get(f"/api/v1/courses/{cid}/history?limit=1", headers=OWNER)
        ).json()
        if page["items"] and page["items"][0]["version"] == versions:
            return cid, course
        await asyncio.sleep(0.2)
    raise AssertionError("the mirror did not reach every version within 120 s")


async def service_reads(
    http: aiohttp.ClientSession, cid: str, versions: int, reads: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"current": [], "version": [], "history": []}

    async def get(path: str, headers: Any = None) -> None:
        answer = await http.get(path, headers=headers)
        await answer.read()
        assert answer.status == 200, (path, answer.status)

    for _ in range(100):  # warm-up
        await get(f"/api/v1/courses/{cid}")
        await get(f"/api/v1/courses/{cid}?version={random.randint(1, versions)}")
        await get(f"/api/v1/courses/{cid}/history", OWNER)
    for _ in range(reads):
        n = random.randint(1, versions)
        out["current"].append(await timed(get(f"/api/v1/courses/{cid}")))
        out["version"].append(await timed(get(f"/api/v1/courses/{cid}?version={n}")))
        out["history"].append(await timed(get(f"/api/v1/courses/{cid}/history", OWNER)))
    return out


async def peer_reads(database_url: str, cid: str, reads: int) -> dict[str, list[float]]:
    port = free_port()
    peer = subprocess.Popen(  # noqa: ASYNC220 (once, before anything is timed)
        [sys.executable, "-m", "bench.peers", "history", "--port", str(port),
         "--database-url", database_url, "--uvloop"],
    )  # fmt: skip
    out: dict[str, list[float]] = {"query": [], "bare endpoint": []}
    try:
        wait_http(f"http://127.0.0.1:{port}/history/{cid}")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        assert pool is not None
        async with aiohttp.ClientSession() as http:

            async def bare() -> None:
                await (await http.get(f"http://127.0.0.1:{port}/history/{cid}")).read()

            for _ in range(100):
                await pool.fetch(HISTORY_QUERY, cid, 21)
                await bare()
            for _ in range(reads):
                out["query"].append(await timed(pool.fetch(HISTORY_QUERY, cid, 21)))
                out["bare endpoint"].append(await timed(bare()))
        await pool.close()
    finally:
        peer.terminate()
        peer.wait()
    return out


async def spike(
    bootstrap: str, registry: str, database_url: str, cid: str, versions: int, reads: int
) -> dict[str, list[float]]:
    """Version -> offset, read from the topic, against the snapshot table."""
    codec = AvroCodec(registry)
    await register_schemas(codec)
    tps = await topic_partitions(bootstrap, "course-events")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    index: dict[int, tuple[TopicPartition, int]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key == cid.encode():
                        value = await codec.decode("course-events-value", r.value)
                        index[value["version"]] = (TopicPartition(r.topic, r.partition), r.offset)
        assert len(index) == versions, (len(index), versions)
        tp = index[1][0]
        consumer.assign([tp])

        async def from_topic(version: int) -> None:
            where, offset = index[version]
            consumer.seek(where, offset)
            record = await consumer.getone(where)
            await codec.decode("course-events-value", record.value)

        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        assert pool is not None
        query = "SELECT snapshot FROM course_versions WHERE course_id = $1 AND version = $2"
        out: dict[str, list[float]] = {"offset index (Kafka)": [], "snapshot table": []}
        for _ in range(50):
            await from_topic(random.randint(1, versions))
            await pool.fetchval(query, cid, random.randint(1, versions))
        for _ in range(reads):
            n = random.randint(1, versions)
            out["offset index (Kafka)"].append(await timed(from_topic(n)))
            out["snapshot table"].append(await timed(pool.fetchval(query, cid, n)))
        await pool.close()
        return out
    finally:
        await consumer.stop()


async def run(
    worker: Any, settings: Any, versions: int, reads: int, profile: str | None = None
) -> None:
    base = f"http://127.0.0.1:{worker.port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        started = time.perf_counter()
        cid, _ = await make_versions(http, versions)
        print(f"{versions} versions made and mirrored in {time.perf_counter() - started:.1f} s")
        spy = profiler(worker.proc.pid, profile) if profile else None
        service = await service_reads(http, cid, versions, reads)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
    peers = await peer_reads(settings.database_url, cid, reads)
    chosen = await spike(
        settings.kafka_bootstrap_servers,
        settings.schema_registry_url,
        settings.database_url,
        cid,
        versions,
        reads,
    )
    results = {**service, **peers, **chosen}
    for name, samples in results.items():
        print(f"{name:>24}: {summary(samples)}")
    p99 = {name: percentile(samples, 0.99) for name, samples in results.items()}
    print(f"?version=N p99 / current GET p99: {p99['version'] / p99['current']:.2f} (target <= 2)")
    print(f"history p99 / plain query p99: {p99['history'] / p99['query']:.2f} (target <= 2)")
    print(f"history p99 / bare endpoint p99: {p99['history'] / p99['bare endpoint']:.2f}")
    ratio = p99["offset index (Kafka)"] / p99["snapshot table"]
    print(f"spike: offset index p99 / snapshot table p99: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--profile", help="py-spy the worker during the service's reads")
    args = parser.parse_args()
    with local_worker() as (worker, settings):
        asyncio.run(run(worker, settings, args.versions, args.reads, args.profile))


if __name__ == "__main__":
    main()
