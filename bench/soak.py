"""The worker's memory under a steady mixed load, for half an hour (issue 22).

    .venv/bin/python -m bench.soak [--minutes 30] [--rate 100] [--every 60]

Starts the local stack and one worker, creates a few published courses, then sends
about `rate` requests a second for `minutes`: enrolments of new learners (40 %),
progress reports of enrolled ones (30 %), reads of courses and enrollments (30 %). Every
`every` seconds it prints the worker's RSS beside RocksDB's own memory (memtables, block
cache, table readers: `cms_rocksdb_memory_bytes`), so growth can be told apart; at the
end, the growth after the warm-up (the first fifth) per ten minutes, and after the
block cache filled to its bound. The peer is the
worker's own first sample after the warm-up: a memory that is flat stays at it. No
threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from typing import Any

import aiohttp

from bench.local import local_worker
from course_management.tables.store import BLOCK_CACHE_BYTES
from tests.support import ONE_MODULE, auth

INSTRUCTOR = auth("soak-instructor", "instructor", name="Soak Instructor")
ADMIN = auth("soak-admin", "admin")


async def courses(http: aiohttp.ClientSession, n: int) -> list[dict[str, Any]]:
    made = []
    for k in range(n):
        body = {"title": f"Soak {k}", "status": "published", "modules": [ONE_MODULE]}
        response = await http.post("/api/v1/courses/create", json=body, headers=INSTRUCTOR)
        assert response.status == 201, await response.text()
        made.append(await response.json())
    return made


async def memory(http: aiohttp.ClientSession) -> dict[str, float]:
    """MiB: the worker's RSS and RocksDB's own, as the worker reports them."""
    text = await (await http.get("/metrics")).text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cms_process_resident_bytes "):
            found["rss"] = float(line.split()[-1]) / 2**20
        elif line.startswith("cms_rocksdb_memory_bytes{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            found[kind] = float(line.split()[-1]) / 2**20
    return found


async def soak(base: str, minutes: float, rate: float, every: float) -> list[tuple[float, dict]]:
    samples: list[tuple[float, dict[str, float]]] = []
    rng = random.Random(22)
    async with aiohttp.ClientSession(base_url=base) as http:
        made = await courses(http, 5)
        enrolled: list[tuple[str, str, str]] = []  # course, item, user
        counter = itertools.count()

        async def one() -> None:
            course = rng.choice(made)
            draw = rng.random()
            if draw < 0.4 or not enrolled:
                user = f"soak-{next(counter)}"
                r = await http.post(
                    f"/api/v1/courses/{course['id']}/enroll", headers=auth(user, "student")
                )
                if r.status == 201:
                    item = course["modules"][0]["items"][0]["id"]
                    enrolled.append((course["id"], item, user))
            elif draw < 0.7:
                course_id, item, user = rng.choice(enrolled)
                await http.post(
                    f"/api/v1/courses/{course_id}/progress",
                    json={"item_id": item, "status": rng.choice(["started", "completed"])},
                    headers=auth(user, "student"),
                )
            elif draw < 0.85:
                await http.get(f"/api/v1/courses/{course['id']}")
            else:
                course_id, _, user = rng.choice(enrolled)
                await http.get(f"/api/v1/courses/{course_id}/enrollments/{user}", headers=ADMIN)

        started = time.perf_counter()
        next_sample = 0.0
        pending: set[asyncio.Task[None]] = set()
        for n in itertools.count():
            elapsed = time.perf_counter() - started
            if elapsed > minutes * 60:
                break
            if elapsed >= next_sample:
                sample = await memory(http)
                samples.append((elapsed, sample))
                shown = ", ".join(f"{k} {v:.0f}" for k, v in sample.items())
                print(f"{elapsed / 60:6.1f} min  MiB: {shown}", flush=True)
                next_sample += every
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
        await asyncio.gather(*pending, return_exceptions=True)
        samples.append((time.perf_counter() - started, await memory(http)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--every", type=float, default=60)
    args = parser.parse_args()
    with local_worker() as (worker, _):
        samples = asyncio.run(soak(worker.base_url, args.minutes, args.rate, args.every))
    warm = [s for s in samples if s[0] >= args.minutes * 60 / 5]
    if len(warm) >= 2:
        (t0, first), (t1, last) = warm[0], warm[-1]
        per_10 = (last["rss"] - first["rss"]) / ((t1 - t0) / 600)
        print(
            f"after the warm-up: RSS {first['rss']:.0f} -> {last['rss']:.0f} MiB in "
            f"{(t1 - t0) / 60:.0f} min ({per_10:+.1f} MiB per 10 min); "
            f"RocksDB memtables {first.get('memtables', 0):.0f} -> {last.get('memtables', 0):.0f}"
            f", block cache {first.get('block_cache', 0):.0f} -> "
            f"{last.get('block_cache', 0):.0f} MiB"
        )
    # The block cache fills up to its bound (tables/store.BLOCK_CACHE_BYTES) with the
    # data read: the RSS it takes is bounded, not a leak. What grows after it is full is.
    bound = BLOCK_CACHE_BYTES / 2**20
    full = [s for s in samples if s[1].get("block_cache", 0) >= bound - 0.5]
    if len(full) >= 2:
        (t0, first), (t1, last) = full[0], full[-1]
        per_10 = (last["rss"] - first["rss"]) / ((t1 - t0) / 600)
        print(
            f"after the block cache filled ({t0 / 60:.0f} min): RSS {first['rss']:.0f} -> "
            f"{last['rss']:.0f} MiB in {(t1 - t0) / 60:.0f} min ({per_10:+.1f} MiB per 10 min)"
        )


if __name__ == "__main__":
    main()
