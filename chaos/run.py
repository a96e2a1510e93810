"""One chaos run, start to finish, in one folder:

<folder>/schedule.json    the faults drawn from the seed
<folder>/history.jsonl    every attempt and its answer, every fault as it happened
<folder>/workers/*.log    each worker's log (restarts append to it)
<folder>/servers/*.out    the servers' logs
<folder>/observed.json    what the topics and the stores held at the end
<folder>/report.json      counts and anomalies (also printed)
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from chaos.faults import Injector
from chaos.history import History, read_history
from chaos.load import (
    SHAPES,
    Api,
    Feed,
    Shared,
    Target,
    create_course,
    instructor,
    require_first_module,
    student,
    tracing,
)
from chaos.observe import observe, wait_quiet
from chaos.push import Receiver, StreamClient, check_push, topic_orders, until_complete
from chaos.schedule import Profile, counts, make_schedule, worker_names
from chaos.verify import Anomaly, verify
from course_management.config import Settings, load_settings
from course_management.domain.times import rfc3339
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import provision_all, register_schemas
from devstack.stack import LocalStack
from tests.support import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, WorkerProcess, token

INSTRUCTORS = ("instructor-1", "instructor-2")
STUDENT_CLIENTS = 5
USERS_PER_CLIENT = 8
PUSH_DEADLINE_S = 240  # for the webhook receiver and the stream to get every event
CAPACITIES = (3, 4, 5, 6, 3, 8)  # the enrolment courses: few seats, many learners
WORKER_ENV = {
    "TOPIC_PARTITIONS": "6",
    "COMMAND_TIMEOUT_SECONDS": "20",
    "BROKER_SESSION_TIMEOUT_SECONDS": "8",
    "WEBHOOK_RETRY_SCALE": "0.1",  # retries after 0.5 s, 2.5 s, 12 s, 1 min, ...
    **{
        f"RATE_LIMIT_{kind}_PER_MINUTE": "10000000"
        for kind in ("READS", "WRITES", "SERVICE_READS", "SERVICE_WRITES")
    },
}


@dataclass
class Report:
    seed: int
    profile: str
    duration_s: float
    folder: str
    requests: dict[str, dict[str, int]]  # kind -> outcome -> count
    faults: dict[str, int]  # carried out, by kind
    faults_skipped: int
    quiet: bool
    quiet_seen: dict[str, Any]
    events: dict[str, int]
    anomalies: dict[str, int]  # by kind
    anomaly_list: list[dict[str, Any]]
    took_s: float

    @property
    def passed(self) -> bool:
        return self.quiet and not self.anomaly_list


def run(seed: int, profile_name: str, profile: Profile, duration_s: float, folder: Path) -> Report:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workers").mkdir(exist_ok=True)
    schedule = make_schedule(seed, profile, duration_s)
    (folder / "schedule.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "profile": profile_name,
                "duration_s": duration_s,
                "counts": counts(schedule),
                "faults": [f.shown() for f in schedule],
            },
            indent=2,
        )
    )
    began = time.monotonic()
    stack = LocalStack()
    workers: dict[str, WorkerProcess] = {}
    try:
        env = stack.start()
        env.update(
            {"JWT_SECRET": JWT_SECRET, "JWT_ISSUER": JWT_ISSUER, "JWT_AUDIENCE": JWT_AUDIENCE}
        )
        env.update(WORKER_ENV)
        settings = load_settings(**{k.lower(): v for k, v in env.items()})
        provision_all(settings)
        names = worker_names(profile.workers + 1)
        for name in names:
            workers[name] = WorkerProcess(env, folder / "workers", worker_id=name)
        for name in names[: profile.workers]:
            workers[name].start()
        for name in names[: profile.workers]:
            workers[name].wait_ready(180)
        report = asyncio.run(
            _load_and_check(
                seed, profile_name, duration_s, folder, schedule, settings, workers, stack
            )
        )
        report.took_s = round(time.monotonic() - began, 1)
        return report
    finally:
        for worker in workers.values():
            worker.stop()
        servers = folder / "servers"
        servers.mkdir(exist_ok=True)
        for log in stack.workdir.glob("*.out"):
            shutil.copy(log, servers / log.name)
        stack.stop()


async def _load_and_check(
    seed: int,
    profile_name: str,
    duration_s: float,
    folder: Path,
    schedule: list[Any],
    settings: Settings,
    workers: dict[str, WorkerProcess],
    stack: LocalStack,
) -> Report:
    history = History(folder / "history.jsonl")
    targets = [Target(name, w.base_url, _runs(w)) for name, w in workers.items()]
    shared = Shared(history, targets, lambda sub, role: token(sub, role))
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    # A new connection per request, traced: aiohttp resends a PUT or DELETE once when its
    # connection broke, so only an attempt whose headers never left is "not sent".
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), trace_configs=[tracing()]
    ) as http:
        history.note("setup")
        began_at = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
        receiver = Receiver(seed)  # subscribed before the first event (issue 28)
        await receiver.start()
        await receiver.subscribe(targets[0].url, token("chaos-service", "service"))
        setup = Api(shared, http, "setup", random.Random(f"chaos:{seed}:setup"))
        # a third of the load in: the dated courses' second module opens
        unlock_at = rfc3339(datetime.now(UTC) + timedelta(seconds=20 + duration_s / 3))
        for n, capacity in enumerate(CAPACITIES):
            shape = SHAPES[n % len(SHAPES)]
            course = await create_course(
                setup, INSTRUCTORS[n % 2], capacity, give_up=False, shape=shape,
                unlock_at=unlock_at, waitlist=3 if n % 2 == 0 else None,
            )  # fmt: skip
            assert course is not None, "the enrolment courses could not be created"
            if shape == "path":
                await require_first_module(setup, course)
            shared.courses.append(course)
        stream = StreamClient(
            shared.courses[0].id, token("chaos-admin", "admin"), targets, since=began_at
        )
        following = asyncio.ensure_future(stream.run())
        history.note("load", duration_s=duration_s)
        injector = Injector(history, workers, stack.server, {})
        feed = Feed(shared, settings.kafka_bootstrap_servers, codec, seed)
        clients = [
            *(instructor(shared, http, name, seed) for name in INSTRUCTORS),
            *(
                student(shared, http, f"s{n}", seed, USERS_PER_CLIENT)
                for n in range(STUDENT_CLIENTS)
            ),
            feed.run(),
        ]
        tasks = [asyncio.ensure_future(c) for c in clients]
        faults = asyncio.ensure_future(injector.run(schedule, time.monotonic()))
        await asyncio.sleep(duration_s)
        shared.stop.set()
        history.note("load stopping")
        _, pending = await asyncio.wait(tasks, timeout=120)
        for task in pending:
            task.cancel()
        await faults
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
        history.note("faults over; waiting until quiet")
        # Every fault restarts what it stops: a worker that is not running exited by itself.
        exited = [
            Anomaly(
                "worker exited on its own",
                f["target"],
                f"found down at {f['at']} s{_last_words(workers.get(f['target']))}",
            )
            for f in injector.skipped
        ]
        for name, worker in workers.items():
            if worker.proc is None or worker.proc.poll() is not None:
                code = worker.proc.returncode if worker.proc else None
                why = f"exit code {code}{_last_words(worker)}"
                exited.append(Anomaly("worker exited on its own", name, why))
                history.note("worker was down at the end: started", worker=name)
                worker.start()
        quiet, quiet_seen = await wait_quiet(
            settings.kafka_bootstrap_servers, [w.base_url for w in workers.values()], 300
        )
        history.note("quiet" if quiet else "not quiet at the deadline", **quiet_seen)
        history.close()
    attempts, _ = read_history(folder / "history.jsonl")
    course_ids = {a.course_id for a in attempts if a.course_id and a.kind != "feed_malformed"}
    learners = {
        f"{a.course_id}:{a.user_id}"
        for a in attempts
        if a.course_id and a.user_id and a.kind in ("enroll", "cancel", "progress", "feed_enroll")
    }
    jobs = {a.answer["id"] for a in attempts if a.kind == "job" and a.answer.get("id")}
    observed = await observe(
        settings,
        workers["worker-1"].base_url,
        token("chaos-admin", "admin"),
        course_ids,
        learners,
        jobs,
    )
    (folder / "observed.json").write_text(json.dumps(asdict(observed), default=str, indent=1))
    pushed = await _push_checked(receiver, stream, following, observed)
    anomalies = exited + verify(attempts, observed) + pushed
    requests: dict[str, Counter[str]] = {}
    for attempt in attempts:
        requests.setdefault(attempt.kind, Counter())[attempt.outcome] += 1
    return Report(
        seed=seed,
        profile=profile_name,
        duration_s=duration_s,
        folder=str(folder),
        requests={k: dict(v) for k, v in sorted(requests.items())},
        faults=dict(Counter(f["kind"] for f in injector.done)),
        faults_skipped=len(injector.skipped),
        quiet=quiet,
        quiet_seen=quiet_seen,
        events={
            "course-events": len(observed.course_events),
            "enrollment-events": len(observed.enrollment_events),
            "dead letters": len(observed.dead_letters),
            "learner milestones": len(observed.milestones),
            "webhook deliveries": len(receiver.received),
            "webhook attempts refused (503)": receiver.refused,
            "stream events": len(stream.received),
            "stream reconnections": stream.reconnections,
        },
        anomalies=dict(Counter(a.kind for a in anomalies)),
        anomaly_list=[a.shown() for a in anomalies],
        took_s=0.0,
    )


async def _push_checked(
    receiver: Receiver, stream: StreamClient, following: asyncio.Future[None], observed: Any
) -> list[Anomaly]:
    """Once every published event has reached the receiver and the stream (or after
    PUSH_DEADLINE_S), what they got against what the topics hold."""
    placed = topic_orders(observed.course_events, observed.enrollment_events, observed.milestones)
    hooks = set(placed)
    streamed = {i for i, (course, _) in placed.items() if course == stream.course_id}
    await until_complete(receiver, stream, lambda: (hooks, streamed), PUSH_DEADLINE_S)
    stream.stop.set()
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    await receiver.stop()
    found = check_push(
        receiver, stream, observed.course_events, observed.enrollment_events, observed.milestones
    )
    return [Anomaly(kind, key, detail) for kind, key, detail in found]


def _last_words(worker: WorkerProcess | None) -> str:
    """The worker's last critical log line and the exception it names, if any (CI keeps
    only the printed report, not the run's folder)."""
    if worker is None:
        return ""
    for line in reversed(worker.log_text().splitlines()):
        if '"CRITICAL"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            return f": {line[:300]}"
        cause = (entry.get("exc_info") or "").strip().splitlines()[-1:]
        return f": {entry.get('message')}" + (f" ({cause[0][:300]})" if cause else "")
    return ""


def _runs(worker: WorkerProcess) -> Callable[[], bool]:
    return lambda: worker.proc is not None and worker.proc.poll() is None


def write_report(report: Report, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=2))


def summary(report: Report) -> str:
    lines = [
        f"chaos run: seed {report.seed}, profile {report.profile}, "
        f"{report.duration_s:.0f} s of load, {report.took_s:.0f} s in all",
        "requests (kind: outcome counts):",
        *(f"  {kind:<15} {dict(outcomes)}" for kind, outcomes in report.requests.items()),
        f"faults carried out: {report.faults} (skipped: {report.faults_skipped})",
        f"events: {report.events}",
        f"quiet after the faults: {report.quiet}"
        + ("" if report.quiet else f" (last seen: {report.quiet_seen})"),
        f"anomalies: {sum(report.anomalies.values())} {report.anomalies}",
        *(f"  {a['kind']}: {a['id']} {a['detail'][:600]}" for a in report.anomaly_list[:40]),
        f"folder: {report.folder}",
        "PASSED" if report.passed else "FAILED",
    ]
    return "\n".join(lines)
