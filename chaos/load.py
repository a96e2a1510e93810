"""The load generator: students, instructors and "other services", all at once.

Each client draws its choices from its own `random.Random(seed, name)`, so the same seed
asks the same things in the same order (what the service answers, and so what a client
does next, depends on the faults' timing). Every attempt goes into the history.

- Instructors create courses (`Idempotency-Key`, retried with the same key and body) and
  edit them (`If-Match`; a 412 re-reads the course; an unknown answer is retried).
- Instructors now and then enrol a cohort with a bulk job (issue 26: a few rows, some
  repeated, one empty; retried with the same `Idempotency-Key` and body).
- Students enrol in courses with few seats (half of them with a waitlist), wait, cancel,
  enrol again, report progress to completion and rate; an unknown answer is retried
  (each of these is idempotent).
- "Other services" produce `user_enrolled` and `course-progress` records, some twice (the
  same bytes, the same `event_id`), some for the same learner again, some malformed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from chaos.history import Attempt, History, outcome_of_status
from course_management.infra.avro import AvroCodec
from course_management.topology import COURSE_PROGRESS, REQUEST_ID_HEADER, USER_ENROLLED, spec

RETRIES = 6  # attempts of one operation whose answers are unknown, before giving up
TIMEOUT_S = 30.0  # the client's own bound (the service's commands time out at 20 s)


@dataclass
class Course:
    id: str
    owner: str
    items: list[str]
    version: int
    capacity: int | None
    modules: list[dict[str, Any]] = field(default_factory=list)  # as created (with ids)
    waitlist: int | None = None


# The enrolment courses' learning paths (issue 25): flat; a path (the first module's items
# one after another, the second module requiring the first); a date (the first module
# sequential, the second opening at a moment during the load).
SHAPES = ("flat", "path", "dated")


@dataclass
class Target:
    """A worker a client may ask: its name and URL, and whether its process runs."""

    name: str
    url: str
    running: Callable[[], bool]


@dataclass
class Shared:
    """What every client of a run shares."""

    history: History
    targets: list[Target]
    tokens: Callable[[str, str], str]  # (sub, role) -> a bearer token
    courses: list[Course] = field(default_factory=list)  # the courses students enrol in
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class Api:
    """One client's HTTP attempts, each recorded with its outcome."""

    def __init__(self, shared: Shared, http: aiohttp.ClientSession, name: str, rng: Any) -> None:
        self.shared = shared
        self.http = http
        self.name = name
        self.rng = rng
        self.n = 0

    def new_op(self) -> str:
        self.n += 1
        return f"{self.name}-{self.n}"

    async def call(
        self,
        op: str,
        kind: str,
        method: str,
        path: str,
        *,
        sub: str,
        role: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        course_id: str | None = None,
        user_id: str | None = None,
        args: dict[str, Any] | None = None,
    ) -> tuple[Attempt, Any]:
        """One attempt on a worker that runs (another one if it refuses the connection)."""
        targets = [t for t in self.shared.targets if t.running()] or self.shared.targets
        target = self.rng.choice(targets)
        request_id = f"{op}.{uuid.uuid4().hex[:8]}"
        attempt = Attempt(
            op, request_id, kind, self.name, course_id, user_id, target.name, args=args or {}
        )
        all_headers = {
            "Authorization": f"Bearer {self.shared.tokens(sub, role)}",
            "X-Request-ID": request_id,
            **(headers or {}),
        }
        attempt.sent_at = self.shared.history.now()
        answer: Any = None
        sent = Sent()
        try:
            async with self.http.request(
                method,
                target.url + path,
                json=body,
                headers=all_headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                trace_request_ctx=sent,
            ) as response:
                attempt.status = response.status
                attempt.outcome = outcome_of_status(response.status)
                text = await response.text()
                if text and response.content_type.endswith("json"):
                    answer = await response.json(content_type=None)
                if attempt.outcome != "ok":
                    attempt.detail = text[:300]
        except aiohttp.ClientConnectorError as exc:
            # aiohttp resends a PUT or DELETE once on a new connection when the first one
            # broke: a refused second connection says nothing about the first send.
            attempt.outcome = "unknown" if sent.headers else "not_sent"
            attempt.detail = repr(exc)[:300]
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt.outcome, attempt.detail = "unknown", repr(exc)[:300]
        attempt.answered_at = self.shared.history.now()
        return attempt, answer

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))


@dataclass
class Sent:
    """Whether any request headers of an attempt left this process (aiohttp tracing)."""

    headers: bool = False


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    if isinstance(context.trace_request_ctx, Sent):
        context.trace_request_ctx.headers = True


def tracing() -> aiohttp.TraceConfig:
    """The trace config a load generator's session needs (`Sent`)."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_sent)
    return config


def _modules(title: str, shape: str = "flat", unlock_at: str | None = None) -> list[dict[str, Any]]:
    modules: list[dict[str, Any]] = [
        {
            "title": f"{title} part {m}",
            "position": m,
            "items": [
                {"type": "lesson", "title": f"Lesson {m}.{i}", "position": i} for i in range(2)
            ],
        }
        for m in range(2)
    ]
    if shape != "flat":
        modules[0]["sequential"] = True
    if shape == "dated":
        modules[1]["unlock_at"] = unlock_at
    return modules


async def create_course(
    api: Api,
    owner: str,
    capacity: int | None,
    *,
    give_up: bool = True,
    shape: str = "flat",
    unlock_at: str | None = None,
    waitlist: int | None = None,
) -> Course | None:
    """Create a published course, retrying unknown answers with the same key and body."""
    op = api.new_op()
    body = {
        "title": f"Chaos {op}",
        "description": f"created by {op}",
        "status": "published",
        "capacity": capacity,
        "waitlist_capacity": waitlist,
        "category": "chaos",
        "modules": _modules(op, shape, unlock_at),
    }
    for n in range(RETRIES if give_up else 1000):
        attempt, answer = await api.call(
            op,
            "create",
            "POST",
            "/api/v1/courses/create",
            sub=owner,
            role="instructor",
            body=body,
            headers={"Idempotency-Key": op},
            args={"idempotency_key": op, "capacity": capacity},
        )
        if attempt.outcome == "ok":
            attempt.course_id = answer["id"]
            attempt.answer = {"id": answer["id"], "version": answer["version"]}
        api.shared.history.record(attempt)
        if attempt.outcome == "ok":
            items = [i["id"] for m in answer["modules"] for i in m["items"]]
            course = Course(answer["id"], owner, items, answer["version"], capacity)
            course.modules = answer["modules"]
            course.waitlist = waitlist
            return course
        if attempt.outcome == "refused":
            return None
        await api.pause(0.3, 1.0 + n)
    return None


async def edit_course(api: Api, course: Course) -> None:
    """Set a description no one else sets (`If-Match`); 412: re-read and try again."""
    op = api.new_op()
    mark = f"edited by {op}"
    for n in range(RETRIES):
        attempt, answer = await api.call(
            op,
            "update",
            "PUT",
            f"/api/v1/courses/{course.id}/update",
            sub=course.owner,
            role="instructor",
            body={"description": mark},
            headers={"If-Match": f'"{course.version}"'},
            course_id=course.id,
            args={"mark": mark, "if_match": course.version},
        )
        if attempt.outcome == "ok":
            attempt.answer = {"version": answer["version"]}
            course.version = answer["version"]
        api.shared.history.record(attempt)
        if attempt.outcome == "ok":
            return
        if attempt.status == 412:  # someone (an earlier attempt?) changed it: re-read
            now = await read_course(api, course)
            if now is None:
                return
            course.version = now["version"]
            if now["description"] == mark:  # an earlier attempt of this op applied
                return
        elif attempt.outcome == "refused":
            return
        await api.pause(0.3, 1.0 + n)


async def require_first_module(api: Api, course: Course) -> None:
    """The second module requires the first (prerequisites name module ids: an update
    after the create), retried until it is applied."""
    first, second = course.modules
    fields = ("id", "title", "position", "sequential")
    given = [
        {
            **{k: m[k] for k in fields},
            "items": [{k: i[k] for k in ("id", "type", "title", "position")} for i in m["items"]],
        }
        for m in (first, second)
    ]
    given[1]["prerequisite_module_ids"] = [first["id"]]
    op = api.new_op()
    for _ in range(RETRIES * 10):
        attempt, answer = await api.call(
            op, "update", "PUT", f"/api/v1/courses/{course.id}/update", sub=course.owner,
            role="instructor", body={"modules": given}, course_id=course.id,
            args={"prerequisites": True},
        )  # fmt: skip
        if attempt.outcome == "ok":
            attempt.answer = {"version": answer["version"]}
            course.version = answer["version"]
        api.shared.history.record(attempt)
        if attempt.outcome == "ok":
            return
        now = await read_course(api, course)
        if now is not None and now["modules"][1].get("prerequisite_module_ids"):
            course.version = now["version"]
            return
        await api.pause(0.3, 1.5)
    raise AssertionError(f"the path of {course.id} could not be set")


async def read_course(api: Api, course: Course) -> dict[str, Any] | None:
    """The course as its owner reads it (not an attempt of the history: nothing changes)."""
    for _ in range(RETRIES):
        attempt, answer = await api.call(
            "read", "read", "GET", f"/api/v1/courses/{course.id}", sub=course.owner,
            role="instructor", course_id=course.id,
        )  # fmt: skip
        if attempt.status == 200 and isinstance(answer, dict):
            return answer
        await api.pause(0.3, 1.5)
    return None


async def instructor(shared: Shared, http: aiohttp.ClientSession, name: str, seed: int) -> None:
    """Edits the enrolment courses it owns, and now and then creates a course."""
    api = Api(shared, http, name, random.Random(f"chaos:{seed}:{name}"))
    mine = [c for c in shared.courses if c.owner == name]
    cohorts = [c for c in mine if c.waitlist]
    while not shared.stop.is_set():
        roll = api.rng.random()
        if not mine or roll < 0.2:
            made = await create_course(api, name, None)
            if made is not None:
                mine.append(made)
        elif cohorts and roll < 0.3:
            await enrol_cohort(api, api.rng.choice(cohorts))
        else:
            await edit_course(api, api.rng.choice(mine))
        await api.pause(0.3, 1.2)


async def enrol_cohort(api: Api, course: Course) -> None:
    """A bulk job of a few rows (some users seen before, one twice, one empty), retried
    with the same Idempotency-Key and body until answered."""
    op = api.new_op()
    users = [f"{api.name}-cohort-{api.rng.randrange(12)}" for _ in range(api.rng.randint(2, 6))]
    rows = [*users, users[0], ""]
    body = {"user_ids": rows}
    for n in range(RETRIES):
        attempt, answer = await api.call(
            op, "job", "POST", f"/api/v1/courses/{course.id}/enrollments/batch",
            sub=api.name, role="instructor", body=body, headers={"Idempotency-Key": op},
            course_id=course.id, args={"rows": rows},
        )  # fmt: skip
        if attempt.outcome == "ok" and isinstance(answer, dict):
            attempt.answer = {"id": answer.get("id"), "total": answer.get("total")}
        api.shared.history.record(attempt)
        if attempt.outcome in ("ok", "refused"):
            return
        await api.pause(0.3, 1.0 + n)


@dataclass
class Learner:
    user: str
    course: Course
    state: str = "none"  # none | active | waiting | cancelled, as far as this client knows
    done: set[str] = field(default_factory=set)  # items it reported completed


async def _as_learner(
    api: Api,
    learner: Learner,
    kind: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Attempt | None:
    """One operation of a learner, retried until a definitive answer (each is idempotent)
    or given up; the last attempt."""
    op = api.new_op()
    last = None
    for n in range(RETRIES):
        attempt, answer = await api.call(
            op, kind, method, path, sub=learner.user, role="student", body=body,
            course_id=learner.course.id, user_id=learner.user, args=body,
        )  # fmt: skip
        last = attempt
        if attempt.outcome == "ok" and isinstance(answer, dict):
            attempt.answer = {
                "status": answer.get("status"),
                "completed_items": answer.get("progress", {}).get("completed_items"),
                "stars": answer.get("stars"),
            }
        api.shared.history.record(attempt)
        if attempt.outcome in ("ok", "refused"):
            return attempt
        await api.pause(0.3, 1.0 + n)
    return last


async def student(
    shared: Shared, http: aiohttp.ClientSession, name: str, seed: int, users: int
) -> None:
    """A client for `users` learners, one request at a time."""
    api = Api(shared, http, name, random.Random(f"chaos:{seed}:{name}"))
    learners = [Learner(f"{name}-u{k}", api.rng.choice(shared.courses)) for k in range(users)]
    while not shared.stop.is_set():
        learner = api.rng.choice(learners)
        roll = api.rng.random()
        if learner.state == "waiting":  # ask for their place again, or give up waiting
            await (_cancel(api, learner) if roll < 0.3 else _enroll(api, learner))
        elif learner.state != "active" or roll < 0.08:
            await _enroll(api, learner)
        elif roll < 0.6:
            await _progress(api, learner)
        elif roll < 0.8:
            await _rate(api, learner)
        else:
            await _cancel(api, learner)
        await api.pause(0.05, 0.4)


async def _enroll(api: Api, learner: Learner) -> None:
    path = f"/api/v1/courses/{learner.course.id}/enroll"
    attempt = await _as_learner(api, learner, "enroll", "POST", path)
    if attempt is not None and attempt.outcome == "ok":
        waits = attempt.answer.get("status") == "waitlisted"
        learner.state = "waiting" if waits else "active"


async def _cancel(api: Api, learner: Learner) -> None:
    path = f"/api/v1/courses/{learner.course.id}/enrollments/{learner.user}"
    attempt = await _as_learner(api, learner, "cancel", "DELETE", path)
    if attempt is not None and (attempt.outcome == "ok" or attempt.status == 404):
        learner.state = "cancelled"


async def _progress(api: Api, learner: Learner) -> None:
    todo = [i for i in learner.course.items if i not in learner.done]
    in_order = todo and api.rng.random() < 0.7  # mostly the next item: many finish
    item = todo[0] if in_order else api.rng.choice(learner.course.items)
    status = "completed" if api.rng.random() < 0.75 else "started"
    body = {"item_id": item, "status": status, "score": None}  # lessons take no score
    path = f"/api/v1/courses/{learner.course.id}/progress"
    attempt = await _as_learner(api, learner, "progress", "POST", path, body)
    if attempt is not None and attempt.outcome == "ok" and status == "completed":
        learner.done.add(item)
    if attempt is not None and attempt.status == 403:
        learner.state = "cancelled"  # not enrolled (after an unknown cancel, say)


async def _rate(api: Api, learner: Learner) -> None:
    stars = api.rng.randint(1, 5)
    body = {"stars": stars, "review": f"{stars} stars"}
    await _as_learner(
        api, learner, "rate", "POST", f"/api/v1/courses/{learner.course.id}/ratings", body
    )


class Feed:
    """'Other services': records on user-enrolled and course-progress."""

    def __init__(self, shared: Shared, bootstrap: str, codec: AvroCodec, seed: int) -> None:
        self.shared = shared
        self.bootstrap = bootstrap
        self.codec = codec
        self.rng = random.Random(f"chaos:{seed}:feed")
        self.n = 0
        self.sent: list[tuple[Attempt, str, bytes]] = []  # (attempt, topic, value)
        self.enrolled: dict[str, Course] = {}  # feed users sent for, and their course

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            while not self.shared.stop.is_set():
                topic, value, attempt = self._next()
                await self._send(producer, topic, value, attempt)
                await asyncio.sleep(self.rng.uniform(0.05, 0.35))
        finally:
            await producer.stop()

    def _next(self) -> tuple[str, bytes, Attempt]:
        self.n += 1
        op = f"feed-{self.n}"
        roll = self.rng.random()
        if self.sent and roll < 0.12:  # the same record again: same bytes, same event_id
            first, topic, value = self.rng.choice(self.sent)
            again = Attempt(
                first.op, first.request_id, first.kind, "feed", first.course_id, first.user_id,
                args={**first.args, "duplicate": True},
            )  # fmt: skip
            return topic, value, again
        if roll < 0.17:
            return self._malformed(op)
        if roll < 0.4 and self.enrolled:
            user = self.rng.choice(sorted(self.enrolled))
            course = self.enrolled[user]
            status = "completed" if self.rng.random() < 0.8 else "started"
            fields = {
                "user_id": user,
                "course_id": course.id,
                "item_id": self.rng.choice(course.items),
                "status": status,
                "score": None,
            }
            return self._record(op, "feed_progress", COURSE_PROGRESS, fields)
        if self.enrolled and self.rng.random() < 0.3:  # the same learner, a new event
            user = self.rng.choice(sorted(self.enrolled))
        else:
            user = f"feed-u{len(self.enrolled)}"
        course = self.enrolled.setdefault(user, self.rng.choice(self.shared.courses))
        fields = {"user_id": user, "course_id": course.id, "source": "chaos-feed"}
        return self._record(op, "feed_enroll", USER_ENROLLED, fields)

    def _record(
        self, op: str, kind: str, topic: str, fields: dict[str, Any]
    ) -> tuple[str, bytes, Attempt]:
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        value = self.codec.encode(
            spec(topic).subject, {"event_id": event_id, "occurred_at": datetime.now(UTC), **fields}
        )
        attempt = Attempt(
            op, f"{op}.r", kind, "feed", fields["course_id"], fields["user_id"],
            args={"event_id": event_id, "sha256": hashlib.sha256(value).hexdigest(),
                  **{k: v for k, v in fields.items() if k in ("item_id", "status")}},
        )  # fmt: skip
        return topic, value, attempt

    def _malformed(self, op: str) -> tuple[str, bytes, Attempt]:
        which = self.rng.choice(["garbage", "unknown-course", "no-user"])
        topic = USER_ENROLLED
        if which == "garbage":
            value = b"not avro " + op.encode()
            topic = self.rng.choice([USER_ENROLLED, COURSE_PROGRESS])
        else:
            fields = {
                "event_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
                "occurred_at": datetime.now(UTC),
                "user_id": "" if which == "no-user" else f"feed-x{self.n}",
                "course_id": f"no-such-course-{op}"
                if which == "unknown-course"
                else self.rng.choice(self.shared.courses).id,
                "source": "chaos-feed",
            }
            value = self.codec.encode(spec(USER_ENROLLED).subject, fields)
        attempt = Attempt(
            op, f"{op}.r", "feed_malformed", "feed",
            args={"malformed": which, "sha256": hashlib.sha256(value).hexdigest(),
                  "topic": topic},
        )  # fmt: skip
        return topic, value, attempt

    async def _send(
        self, producer: AIOKafkaProducer, topic: str, value: bytes, attempt: Attempt
    ) -> None:
        attempt.sent_at = self.shared.history.now()
        key = (attempt.course_id or "x").encode()
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    topic,
                    value=value,
                    key=key,
                    headers=[(REQUEST_ID_HEADER, attempt.request_id.encode())],
                ),
                15,
            )
            attempt.outcome = "ok"
        except Exception as exc:
            attempt.outcome, attempt.detail = "unknown", repr(exc)[:300]
        attempt.answered_at = self.shared.history.now()
        self.shared.history.record(attempt)
        if attempt.outcome == "ok" and not attempt.args.get("duplicate"):
            self.sent.append((attempt, topic, value))
