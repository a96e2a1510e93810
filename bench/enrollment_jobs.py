"""Issue 26's two targets for enrolment management, against peers measured in the same run.

    .venv/bin/python -m bench.enrollment_jobs [--rows 10000] [--rounds 2] [--cancels 200]

1. **A bulk job against the same enrolments from another service.** For each round, two
   fresh published courses: into one, `--rows` `user_enrolled` records produced on
   `user-enrolled` (as another service would: one record per learner); into the other,
   one `POST .../enrollments/batch` of the same number of learners. Each is timed from
   the first byte sent until its course's last `enrollment_created` is out. Target: the
   job's rate at least 0.8x the feed's.
2. **Promotion's cost to a cancellation.** Two courses of 1,000 seats, both full; one also
   has 2,000 learners waiting. `--cancels` cancellations (DELETE, by an admin) in each,
   one after another and interleaved between the two courses; each cancellation in the
   course with a queue promotes its head in the same decision. p50 and p99 of both, side
   by side.

No threshold is asserted. Starts the local stack (no Elasticsearch) and one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp

from bench.enrollment_throughput import count_until, produce
from bench.learning_paths import enrolments
from bench.local import local_worker
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import ONE_MODULE, auth, eventually_async

OWNER = auth("bench", "instructor")
ADMIN = auth("bench-admin", "admin")
SEATS, WAITING = 1000, 2000  # cancellations: at most SEATS


async def course(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    body = {"title": "Bench", "status": "published", "modules": [ONE_MODULE], **fields}
    answer = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    found: dict[str, Any] = await answer.json()
    assert answer.status == 201, found
    return found


async def feed_rate(
    http: aiohttp.ClientSession, bootstrap: str, codec: AvroCodec, rows: int, tag: str
) -> float:
    cid = (await course(http))["id"]
    records = enrolments(codec, cid, [f"{tag}-feed-{n}" for n in range(rows)])
    started = time.perf_counter()
    await produce(bootstrap, "user-enrolled", records)
    await count_until(bootstrap, "enrollment-events", rows, cid.encode())
    return rows / (time.perf_counter() - started)


async def job_rate(http: aiohttp.ClientSession, bootstrap: str, rows: int, tag: str) -> float:
    return await job_rate_into(http, bootstrap, (await course(http))["id"], rows, tag)


async def job_rate_into(
    http: aiohttp.ClientSession, bootstrap: str, cid: str, rows: int, tag: str
) -> float:
    """One job of `rows` learners into the course; its rate until the last enrolment."""
    body = {"user_ids": [f"{tag}-job-{n}" for n in range(rows)]}
    started = time.perf_counter()
    answer = await http.post(
        f"/api/v1/courses/{cid}/enrollments/batch", json=body, headers=OWNER, timeout=None
    )
    assert answer.status == 202, await answer.text()
    await count_until(bootstrap, "enrollment-events", rows, cid.encode())
    return rows / (time.perf_counter() - started)


async def full_course(http: aiohttp.ClientSession, bootstrap: str, waiting: int, tag: str) -> str:
    fields: dict[str, Any] = {"capacity": SEATS}
    if waiting:
        fields["waitlist_capacity"] = waiting
    cid = (await course(http, **fields))["id"]
    users = [f"{tag}-{n}" for n in range(SEATS + waiting)]
    answer = await http.post(
        f"/api/v1/courses/{cid}/enrollments/batch", json={"user_ids": users}, headers=OWNER
    )
    assert answer.status == 202, await answer.text()
    await count_until(bootstrap, "enrollment-events", SEATS, cid.encode())

    await eventually_async(
        lambda: _done(http, answer.headers["Location"]), deadline_s=300, what="the job done"
    )
    return cid


async def _done(http: aiohttp.ClientSession, location: str) -> bool:
    job = await (await http.get(location, headers=OWNER)).json()
    return bool(job["status"] == "done")


async def cancel_latencies(
    http: aiohttp.ClientSession, bootstrap: str, cancels: int
) -> dict[str, list[float]]:
    queued = await full_course(http, bootstrap, WAITING, "queued")
    plain = await full_course(http, bootstrap, 0, "plain")
    found: dict[str, list[float]] = {"with a waitlist": [], "without": []}
    for n in range(cancels):
        for name, cid, prefix in (
            ("with a waitlist", queued, "queued"),
            ("without", plain, "plain"),
        ):
            started = time.perf_counter()
            answer = await http.delete(
                f"/api/v1/courses/{cid}/enrollments/{prefix}-{n}", headers=ADMIN
            )
            found[name].append((time.perf_counter() - started) * 1000)
            assert answer.status == 204, await answer.text()
    shown = await (await http.get(f"/api/v1/courses/{queued}", headers=OWNER)).json()
    assert shown["enrollment_count"] == SEATS, shown  # every seat freed was taken again
    assert shown["waitlist_count"] == WAITING - cancels, shown
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(base: str, bootstrap: str, registry: str, args: argparse.Namespace) -> dict:
    codec = AvroCodec(registry)
    await register_schemas(codec)
    async with aiohttp.ClientSession(base_url=base) as http:
        feeds, jobs = [], []
        for r in range(args.rounds):  # alternating, so neither runs only on a warm worker
            feeds.append(await feed_rate(http, bootstrap, codec, args.rows, f"r{r}"))
            jobs.append(await job_rate(http, bootstrap, args.rows, f"r{r}"))
        latencies = await cancel_latencies(http, bootstrap, args.cancels)
    return {"feeds": feeds, "jobs": jobs, "latencies": latencies}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cancels", type=int, default=200)
    args = parser.parse_args()
    with local_worker() as (worker, settings):
        found = asyncio.run(
            run(worker.base_url, settings.kafka_bootstrap_servers,
                settings.schema_registry_url, args)
        )  # fmt: skip
    feed, job = statistics.mean(found["feeds"]), statistics.mean(found["jobs"])
    print(f"{args.rows} enrolments, {args.rounds} rounds each:")
    print(f"  user_enrolled feed  {feed:>8.0f}/s   rounds {[round(x) for x in found['feeds']]}")
    print(f"  bulk job            {job:>8.0f}/s   rounds {[round(x) for x in found['jobs']]}")
    print(f"  job ÷ feed: {job / feed:.2f} (target at least 0.8)")
    print(f"{args.cancels} cancellations of a full course of {SEATS} seats (ms):")
    for name, values in found["latencies"].items():
        print(f"  {name:<16} p50 {p(values, 0.5):>7.1f}   p99 {p(values, 0.99):>7.1f}")


if __name__ == "__main__":
    main()
