"""p50/p99 of each kind of write (and the reads that follow them), this checkout against
another one (say, main before a change), each on a fresh local stack, in one run.

    .venv/bin/python -m bench.write_cost [--n 200] [--against /path/to/other/checkout]

    git worktree add /tmp/before <commit>      # the checkout to compare with
    .venv/bin/python -m bench.write_cost --against /tmp/before

For each checkout: a fresh local stack (no Elasticsearch), one worker running that
checkout's code (PYTHONPATH), then, one request at a time over a kept-alive connection:
create, update (If-Match), enrol, progress, cancel, and the point reads of the course and
of the enrollment, with `GET /healthz` as the peer doing no work. Reports each path's
p50/p99 and, with `--against`, this checkout's over the other's. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import aiohttp

from bench.api_latency import percentile
from bench.local import local_worker
from tests.support import (
    ONE_MODULE,
    auth,
)

PATHS = ("create", "update", "enrol", "progress", "cancel", "get course", "get enrollment")
OWNER = auth("bench-instructor", "instructor", name="Bench")


async def measure(base: str, n: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {p: [] for p in (*PATHS, "healthz (peer)")}

    async def timed(name: str, call: Awaitable[aiohttp.ClientResponse]) -> aiohttp.ClientResponse:
        started = time.perf_counter()
        response = await call
        await response.read()
        timings[name].append(time.perf_counter() - started)
        return response

    async with aiohttp.ClientSession(base_url=base) as http:
        for _ in range(20):  # warm-up
            await (await http.get("/healthz")).read()
        for i in range(n):
            student = auth(f"bench-student-{i}", "student")
            created = await timed(
                "create",
                http.post(
                    "/api/v1/courses/create",
                    json={"title": f"Bench {i}", "status": "published", "modules": [ONE_MODULE]},
                    headers=OWNER,
                ),
            )
            assert created.status == 201, await created.text()
            course = await created.json()
            cid = course["id"]
            updated = await timed(
                "update",
                http.put(
                    f"/api/v1/courses/{cid}/update",
                    json={"title": f"Bench {i} renamed"},
                    headers={**OWNER, "If-Match": f'"{course["version"]}"'},
                ),
            )
            assert updated.status == 200, await updated.text()
            enrolled = await timed(
                "enrol", http.post(f"/api/v1/courses/{cid}/enroll", headers=student)
            )
            assert enrolled.status == 201, await enrolled.text()
            item = course["modules"][0]["items"][0]["id"]
            progressed = await timed(
                "progress",
                http.post(
                    f"/api/v1/courses/{cid}/progress",
                    json={"item_id": item, "status": "completed"},
                    headers=student,
                ),
            )
            assert progressed.status == 200, await progressed.text()
            read = await timed("get course", http.get(f"/api/v1/courses/{cid}"))
            assert read.status == 200
            path = f"/api/v1/courses/{cid}/enrollments/bench-student-{i}"
            one = await timed("get enrollment", http.get(path, headers=student))
            assert one.status == 200
            cancelled = await timed("cancel", http.delete(path, headers=student))
            assert cancelled.status == 204
            await timed("healthz (peer)", http.get("/healthz"))
    return timings


def run_checkout(checkout: Path | None, n: int) -> dict[str, list[float]]:
    extra = {"PYTHONPATH": str(checkout)} if checkout else None
    with local_worker(extra) as (worker, _):
        return asyncio.run(measure(worker.base_url, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="rounds of every write")
    parser.add_argument("--against", type=Path, help="another checkout to measure too")
    parser.add_argument(
        "--other-first",
        action="store_true",
        help="measure the other checkout first (the machine drifts between the two halves)",
    )
    args = parser.parse_args()
    other = None
    if args.against and args.other_first:
        other = run_checkout(args.against.resolve(), args.n)
    this = run_checkout(None, args.n)
    if args.against and not args.other_first:
        other = run_checkout(args.against.resolve(), args.n)
    print(f"\n{args.n} rounds, one request at a time, milliseconds")
    header = f"{'path':16} {'p50':>7} {'p99':>7}"
    if other is not None:
        header += f" {'other p50':>10} {'other p99':>10} {'p50 ratio':>10} {'p99 ratio':>10}"
    print(header)
    for name in (*PATHS, "healthz (peer)"):
        p50, p99 = percentile(this[name], 0.5) * 1e3, percentile(this[name], 0.99) * 1e3
        line = f"{name:16} {p50:7.2f} {p99:7.2f}"
        if other is not None:
            o50, o99 = percentile(other[name], 0.5) * 1e3, percentile(other[name], 0.99) * 1e3
            line += f" {o50:10.2f} {o99:10.2f} {p50 / o50:10.2f} {p99 / o99:10.2f}"
        print(line)


if __name__ == "__main__":
    main()
