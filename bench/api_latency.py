"""p50/p95 of course create and get through the whole pipeline, against the local stack.

    .venv/bin/python -m bench.api_latency [--n 300]    (or: make bench)

Starts the local stack (no Elasticsearch) and one worker, then times, one request at a
time over a kept-alive connection:
  - POST /api/v1/courses/create (HTTP -> Kafka command -> agent -> table + event -> reply)
  - GET  /api/v1/courses/{id}    (Redis cache hit)
  - GET  /healthz                (the peer: the same HTTP stack doing no work)
and reports each against the peer measured in the same run; then restarts the worker
without rate limits and times get and healthz again (the limiter's cost on the read
path). No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from bench.local import local_worker
from tests.support import auth


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, n: int) -> dict[str, list[float]]:
    headers = auth("bench-instructor", "instructor", name="Bench")
    timings: dict[str, list[float]] = {"create": [], "get": [], "healthz (peer)": []}
    ids = []
    async with aiohttp.ClientSession(base_url=base) as http:
        for _ in range(20):  # warm-up
            await (await http.get("/healthz")).read()
        for i in range(n):
            started = time.perf_counter()
            response = await http.post(
                "/api/v1/courses/create", json={"title": f"Bench {i}"}, headers=headers
            )
            body = await response.json()
            timings["create"].append(time.perf_counter() - started)
            assert response.status == 201, body
            ids.append(body["id"])
        for course_id in ids:
            started = time.perf_counter()
            response = await http.get(f"/api/v1/courses/{course_id}", headers=headers)
            await response.read()
            timings["get"].append(time.perf_counter() - started)
            assert response.status == 200
        for _ in range(n):
            started = time.perf_counter()
            await (await http.get("/healthz")).read()
            timings["healthz (peer)"].append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    with local_worker() as (worker, _):
        timings = asyncio.run(measure(worker.base_url, args.n))
        # The rate limiter's cost on the read path: the same worker without it.
        worker.stop()
        worker.start({"RATE_LIMITS": "false"}).wait_ready()
        unlimited = asyncio.run(measure(worker.base_url, args.n))
        timings["get (no limiter)"] = unlimited["get"]
        timings["healthz (no limiter)"] = unlimited["healthz (peer)"]
    peer = statistics.median(timings["healthz (peer)"])
    print(f"n={args.n} sequential requests, one worker, local stack on this machine")
    print(f"{'request':<16}{'p50 ms':>10}{'p95 ms':>10}{'p50 / peer':>12}")
    for name, samples in timings.items():
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        print(f"{name:<16}{p50 * 1000:>10.2f}{p95 * 1000:>10.2f}{p50 / peer:>12.1f}")


if __name__ == "__main__":
    main()
