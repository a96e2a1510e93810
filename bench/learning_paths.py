"""Issue 25's two targets for learning paths, against peers measured in the same run.

    .venv/bin/python -m bench.learning_paths [--learners 300] [--burst 20000] [--png FILE]

1. **Progress on a path**: two published courses of the same shape (4 modules of 5
   items: lessons and quizzes), one flat, one with a path (each module requires the one
   before and is sequential, every quiz needs `min_score`). The same learners enrol in
   both, then every learner reports every item in course order (quizzes with a passing
   score), on `course-progress` keyed by learner, as another service would. Timed from
   the first report sent until every `progress_updated` of the course is out. The peer
   is the flat course: target path ÷ flat at least 0.9.
2. **One date for many learners**: a course whose second module opens at one moment,
   `--burst` learners enrolled before it. From the moment until every `module_unlocked`
   milestone is out (target: within 60 s); meanwhile clients read enrolments and the
   course, and their p99 is compared with the p99 of the same reads just before the
   moment (target: at most 2x).

No threshold is asserted. Starts the local stack (no Elasticsearch) and one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.enrollment_throughput import produce
from bench.local import local_worker, profiler
from course_management.domain.times import rfc3339
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import auth

OWNER = auth("bench", "instructor")
REST_S = 20  # the reads at rest, just before the moment (the burst lasts about as long)
SERVICE = auth("bench-reader", "service")


def shape(path: bool) -> list[dict[str, Any]]:
    modules = []
    for m in range(4):
        items = []
        for i in range(5):
            quiz = i % 2 == 1
            item: dict[str, Any] = {"type": "quiz" if quiz else "lesson", "title": f"{m}.{i}"}
            item["position"] = i
            if quiz:
                item["max_score"] = 10
                if path:
                    item["completion"] = {"type": "min_score", "min_score": 6}
            items.append(item)
        modules.append({"title": f"M{m}", "position": m, "items": items, "sequential": path})
    return modules


async def create(http: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    course: dict[str, Any] = await answer.json()
    assert answer.status == 201, course
    return course


async def with_prerequisites(http: aiohttp.ClientSession, course: dict[str, Any]) -> None:
    modules = []
    for n, module in enumerate(course["modules"]):
        given = {k: module[k] for k in ("id", "title", "position", "sequential")}
        given["prerequisite_module_ids"] = [course["modules"][n - 1]["id"]] if n else []
        given["items"] = [
            {k: item[k] for k in ("id", "type", "title", "position", "max_score", "completion")}
            for item in module["items"]
        ]
        for item in given["items"]:
            if item["type"] == "lesson":
                del item["max_score"]
        modules.append(given)
    answer = await http.put(
        f"/api/v1/courses/{course['id']}/update", json={"modules": modules}, headers=OWNER
    )
    assert answer.status == 200, await answer.text()


def enrolments(codec: AvroCodec, course_id: str, users: list[str]) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    return [
        (
            user.encode(),
            codec.encode(
                "user-enrolled-value",
                {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": now,
                    "user_id": user,
                    "course_id": course_id,
                    "source": "bench",
                },
            ),
        )
        for user in users
    ]


def reports(
    codec: AvroCodec, course: dict[str, Any], users: list[str]
) -> list[tuple[bytes, bytes]]:
    """Every learner's reports in course order; learners interleaved at random."""
    per_user = []
    for user in users:
        mine = []
        for module in course["modules"]:
            for item in module["items"]:
                score = 8.0 if item["type"] == "quiz" else None
                value = {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": datetime.now(UTC),
                    "user_id": user,
                    "course_id": course["id"],
                    "item_id": item["id"],
                    "status": "completed",
                    "score": score,
                }
                mine.append((user.encode(), codec.encode("course-progress-value", value)))
        per_user.append(mine)
    out: list[tuple[bytes, bytes]] = []
    rng = random.Random(7)
    while per_user:
        queue = rng.choice(per_user)
        out.append(queue.pop(0))
        if not queue:
            per_user.remove(queue)
    return out


async def count(bootstrap: str, topic: str, key: bytes, n: int) -> float:
    """Waits until `n` records of `key` are on `topic`; the time of the last one (s)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen, last = 0, 0.0
    try:
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.key == key:
                        seen += 1
                        last = r.timestamp / 1000
    finally:
        await consumer.stop()
    return last


async def progress_rates(
    base: str, bootstrap: str, codec: AvroCodec, learners: int, profile: Any = None
) -> dict:
    async with aiohttp.ClientSession(base_url=base) as http:
        flat = await create(http, {"title": "Flat", "status": "published", "modules": shape(False)})
        path = await create(http, {"title": "Path", "status": "published", "modules": shape(True)})
        await with_prerequisites(http, path)
        path = await (await http.get(f"/api/v1/courses/{path['id']}", headers=OWNER)).json()
    # ABBA: each course runs twice, so that neither pays alone for what the other left
    # running (the mirror's sink of the last run's events, in the same worker)
    rounds = [("flat course", flat), ("path course", path), ("path course", path)]
    rounds.append(("flat course", flat))
    plans = []
    for n, (name, course) in enumerate(rounds):
        users = [f"{name[:4]}-{n}-{k:05d}" for k in range(learners)]
        await produce(bootstrap, "user-enrolled", enrolments(codec, course["id"], users))
        plans.append((name, course, users))
    for course in (flat, path):
        await count(bootstrap, "enrollment-events", course["id"].encode(), 2 * learners)
    seconds = {"flat course": 0.0, "path course": 0.0}
    done = {flat["id"]: 2 * learners, path["id"]: 2 * learners}  # their enrolments
    sent = {"flat course": 0, "path course": 0}
    for name, course, users in plans:
        records = reports(codec, course, users)
        stop = profile(name) if profile else None
        started = time.perf_counter()
        await produce(bootstrap, "course-progress", records)
        # each report's event and each learner's completion
        done[course["id"]] += len(records) + learners
        await count(bootstrap, "enrollment-events", course["id"].encode(), done[course["id"]])
        seconds[name] += time.perf_counter() - started
        sent[name] += len(records)
        if stop:
            stop()
    return {name: sent[name] / seconds[name] for name in seconds}


async def read_p99(base: str, course_id: str, users: list[str], stop: asyncio.Event) -> float:
    """p99 (ms) of enrolment and course reads by 8 clients until `stop`."""
    latencies: list[float] = []

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        async with aiohttp.ClientSession(base_url=base) as http:
            while not stop.is_set():
                url = (
                    f"/api/v1/courses/{course_id}/enrollments/{rng.choice(users)}"
                    if rng.random() < 0.7
                    else f"/api/v1/courses/{course_id}"
                )
                began = time.perf_counter()
                async with http.get(url, headers=SERVICE) as answer:
                    await answer.read()
                    assert answer.status == 200, answer.status
                latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(client(n) for n in range(8)))
    latencies.sort()
    return latencies[int(len(latencies) * 0.99)] if latencies else float("nan")


async def burst(
    base: str, bootstrap: str, codec: AvroCodec, n: int, profile: Any = None
) -> dict[str, float]:
    users = [f"burst-{k:06d}" for k in range(n)]
    enrol_s = n / 1500 + REST_S + 25  # time to enrol them all, generously, then rest
    moment = (datetime.now(UTC) + timedelta(seconds=enrol_s)).replace(microsecond=0)
    modules = shape(False)[:2]
    modules[1]["unlock_at"] = rfc3339(moment)
    async with aiohttp.ClientSession(base_url=base) as http:
        course = await create(http, {"title": "Burst", "status": "published", "modules": modules})
    await produce(bootstrap, "user-enrolled", enrolments(codec, course["id"], users))
    await count(bootstrap, "enrollment-events", course["id"].encode(), n)
    left = (moment - datetime.now(UTC)).total_seconds()
    assert left > REST_S, f"enrolling {n} took too long for the moment ({left:.1f}s left)"
    await asyncio.sleep(left - REST_S)  # a benchmark's pacing, not a test's synchronisation
    stop = asyncio.Event()
    resting = asyncio.create_task(read_p99(base, course["id"], users, stop))
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
    stop.set()
    at_rest = await resting
    stop = asyncio.Event()
    stop_profile = profile("burst") if profile else None
    during = asyncio.create_task(read_p99(base, course["id"], users, stop))
    last = await count(bootstrap, "learner-milestones", course["id"].encode(), n)
    stop.set()
    if stop_profile:
        stop_profile()
    return {
        "milestones out after the moment (s)": last - moment.timestamp(),
        "read p99 at rest (ms)": at_rest,
        "read p99 during the burst (ms)": await during,
    }


async def run(
    base: str, bootstrap: str, registry: str, learners: int, n: int, profile: Any = None
) -> dict:
    codec = AvroCodec(registry)
    await register_schemas(codec)
    rates = await progress_rates(base, bootstrap, codec, learners, profile) if learners else {}
    return {"rates": rates, "burst": await burst(base, bootstrap, codec, n, profile) if n else {}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=300)
    parser.add_argument("--burst", type=int, default=20000)
    parser.add_argument("--png", type=str)
    parser.add_argument("--profile", type=str, help="py-spy raw stacks: <prefix>-<course>.txt")
    args = parser.parse_args()
    with local_worker() as (worker, settings):

        def profile(name: str) -> Any:
            assert worker.proc is not None
            spy = profiler(worker.proc.pid, f"{args.profile}-{name.split()[0]}.txt")

            def stop() -> None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)

            return stop

        found = asyncio.run(
            run(worker.base_url, settings.kafka_bootstrap_servers,
                settings.schema_registry_url, args.learners, args.burst,
                profile if args.profile else None)
        )  # fmt: skip
    rates, burst_figures = found["rates"], found["burst"]
    reports_n = args.learners * 20
    print(f"2 x {reports_n} progress reports per course ({args.learners} learners x 20 items)")
    for name, rate in rates.items():
        print(f"{name:<14}{rate:>10.0f} reports/s")
    if rates:
        ratio = rates["path course"] / rates["flat course"]
        print(f"path ÷ flat: {ratio:.2f} (target at least 0.9)")
    print(f"one date for {args.burst} learners:")
    if not burst_figures:
        return
    for name, value in burst_figures.items():
        print(f"  {name:<40}{value:>10.1f}")
    ratio = burst_figures["read p99 during the burst (ms)"] / burst_figures["read p99 at rest (ms)"]
    print(f"  read p99 during ÷ at rest: {ratio:.2f} (target at most 2)")
    if args.png:
        from bench.plots import bars

        bars(rates, args.png, "Progress reports per second", "reports per second")
        print(f"drawn: {args.png}")


if __name__ == "__main__":
    main()
