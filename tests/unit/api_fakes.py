"""Fakes of the API's ports (api/ports.py), for in-process tests of the HTTP edge.

They are fakes, named so: no Kafka, no agent, no store. A fake write answers the reply it
was given for that kind of write and keeps what it was asked; a fake read serves what a
test put in it. What they cannot show (that a command is applied, that a read is fresh
on every worker) is tested against the real stack in tests/integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from course_management.api.ports import EnrollmentView, Unavailable
from course_management.catalog.query import CatalogQuery
from course_management.domain.commands import CourseCommand
from course_management.domain.consistency import NONE, Marks
from course_management.domain.outcomes import Reply
from course_management.domain.records import CourseRecord
from course_management.domain.uploads import UploadPlan
from course_management.domain.webhooks import check_addresses, new_secret, parse_target
from course_management.infra.cache import CourseEntry
from course_management.infra.rate_limit import Charge
from course_management.messages.webhook_subscription import WebhookSubscription


@dataclass
class FakeWrites:
    """`replies` by command type (or "enroll", "progress"); an `Unavailable` is raised."""

    replies: dict[str, Reply | Unavailable] = field(default_factory=dict)
    commands: list[CourseCommand] = field(default_factory=list)
    inputs: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def _answer(self, kind: str) -> Reply:
        reply = self.replies[kind]
        if isinstance(reply, Unavailable):
            raise reply
        return reply

    async def execute(self, command: CourseCommand) -> Reply:
        self.commands.append(command)
        return self._answer(command.command_type)

    async def enroll(self, course_id: str, user_id: str, source: str) -> Reply:
        self.inputs.append(("enroll", (course_id, user_id, source)))
        return self._answer("enroll")

    async def report_progress(
        self, course_id: str, user_id: str, item_id: str, status: str, score: float | None
    ) -> Reply:
        self.inputs.append(("progress", (course_id, user_id, item_id, status, score)))
        return self._answer("progress")

    async def start_job(self, chunks: list[CourseCommand]) -> Reply:
        self.commands.extend(chunks)
        return self._answer("enrollment_job")


@dataclass
class FakeReads:
    courses: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> course
    enrollments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    catalog_page: dict[str, Any] = field(
        default_factory=lambda: {"items": [], "next_cursor": None, "facets": {}}
    )
    failure: BaseException | None = None  # raised by every read when set
    queries: list[CatalogQuery] = field(default_factory=list)
    ratings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # newest first
    seen_marks: list[Marks] = field(default_factory=list)  # the `since` of every read
    # As the cache's script answers gcra(): a point read given a charge settles it so.
    settle_with: list[int] | None = None

    def _fail(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def read_course(
        self,
        course_id: str,
        since: Marks = NONE,
        charge: Charge | None = None,
        view: str = "body",
    ) -> CourseEntry | None:
        self._fail()
        self.seen_marks.append(since)
        spent = charge.settle(self.settle_with) if charge and self.settle_with else None
        if spent is not None and not spent.allowed:
            return None
        course = self.courses.get(course_id)
        if course is None:
            return None
        count = int(course.get("enrollment_count", 0))
        return CourseEntry.of({**course, "enrollment_count": count}, deleted=False, seq=0)

    async def read_course_state(self, course_id: str, since: Marks = NONE) -> CourseRecord | None:
        entry = await self.read_course(course_id, since)
        return entry.state() if entry else None

    async def read_enrollment(
        self, course_id: str, user_id: str, since: Marks = NONE, charge: Charge | None = None
    ) -> tuple[CourseEntry | None, EnrollmentView | None]:
        course = await self.read_course(course_id, since, charge)
        found = self.enrollments.get((course_id, user_id))
        view = EnrollmentView(found["status"], orjson.dumps(found)) if found else None
        return course, view

    async def list_course_enrollments(
        self,
        course_id: str,
        after_user: str | None,
        limit: int,
        only_user: str | None,
        since: Marks = NONE,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        self._fail()
        self.seen_marks.append(since)
        rows = sorted(
            (e for (c, u), e in self.enrollments.items() if c == course_id),
            key=lambda e: e["user_id"],
        )
        rows = [e for e in rows if (only_user is None or e["user_id"] == only_user)]
        rows = [e for e in rows if after_user is None or e["user_id"] > after_user]
        rows = [
            e
            for e in rows
            if (status is None and e["status"] != "cancelled") or e["status"] == status
        ]
        return rows[: limit + 1]

    async def read_job(self, job_id: str) -> dict[str, Any] | None:
        self._fail()
        return None

    async def list_job_rows(
        self, job_id: str, outcome: str | None, after_row: int, limit: int
    ) -> list[dict[str, Any]]:
        self._fail()
        return []

    async def list_waitlist(
        self, course_id: str, after_seq: int | None, limit: int, only_user: str | None
    ) -> list[tuple[int, dict[str, Any]]]:
        self._fail()
        return []

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        self._fail()
        self.seen_marks.append(since)
        rows = sorted(
            (e for (c, u), e in self.enrollments.items() if u == user_id),
            key=lambda e: e["course_id"],
        )
        rows = [e for e in rows if after_course is None or e["course_id"] > after_course]
        return rows[: limit + 1]

    async def list_ratings(
        self, course_id: str, after: tuple[datetime, str] | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        self._fail()
        self.seen_marks.append(since)
        rows = self.ratings.get(course_id, [])
        if after is not None:
            rows = [r for r in rows if (r["rated_at"], r["user_id"]) < after]
        return rows[: limit + 1]

    async def search_catalog(self, query: CatalogQuery, since: Marks = NONE) -> dict[str, Any]:
        self._fail()
        self.seen_marks.append(since)
        self.queries.append(query)
        return self.catalog_page


@dataclass
class FakeHistory:
    """A fake of api.ports.History: the versions, course histories and learner histories
    a test put in it (the real one reads the mirror: tests/integration/test_history.py)."""

    versions: dict[tuple[str, int], str | None] = field(default_factory=dict)
    courses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    learners: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    async def course_version(self, course_id: str, version: int) -> str | None:
        return self.versions[(course_id, version)]

    async def course_history(
        self,
        course_id: str,
        before: int | None,
        limit: int,
        since: Marks = NONE,
        reached: int = 0,
    ) -> list[dict[str, Any]]:
        rows = [
            r for r in self.courses.get(course_id, []) if before is None or r["version"] < before
        ]
        return sorted(rows, key=lambda r: -r["version"])[: limit + 1]

    async def learner_history(
        self,
        course_id: str,
        user_id: str,
        after: tuple[int, int, int] | None,
        limit: int,
        since: Marks = NONE,
        exists: bool = False,
    ) -> list[dict[str, Any]]:
        rows = self.learners.get((course_id, user_id), [])
        key = lambda r: (r["version"], r["rank"], r["source_offset"])  # noqa: E731
        return [r for r in sorted(rows, key=key) if after is None or key(r) > after][: limit + 1]


@dataclass
class FakeLive:
    """A fake of api.ports.Live: streams that end at once after the events a test gave
    (the real tail reads Kafka: tests/integration/test_live_streams.py)."""

    given: list[tuple[Any, Any]] = field(default_factory=list)
    opened: list[tuple[Any, ...]] = field(default_factory=list)
    full: bool = False

    async def open(
        self,
        course_id: str,
        user_id: str | None,
        position: Any,
        scope: str,
        since: datetime | None = None,
    ) -> Any:
        if self.full:
            raise Unavailable("too-many-streams", "full")
        self.opened.append((course_id, user_id, position, scope, since))
        return len(self.opened)

    async def events(self, stream: Any) -> AsyncIterator[tuple[Any, Any]]:
        for event, position in self.given:
            yield event, position

    def close(self, stream: Any) -> None:
        pass


@dataclass
class FakeWebhooks:
    """A fake of api.ports.Webhooks: subscriptions in a dict, targets checked by the real
    rules on the address written in the URL (the real gateway resolves names and writes
    a compacted topic: tests/integration/test_webhooks.py)."""

    allow_loopback: bool = True
    made: dict[str, WebhookSubscription] = field(default_factory=dict)
    replays: list[tuple[str, datetime]] = field(default_factory=list)

    async def check_target(self, url: str) -> None:
        target = parse_target(url, self.allow_loopback)
        check_addresses([target.host.strip("[]")], self.allow_loopback, target.scheme)

    async def subscribe(
        self, url: str, event_types: list[str], course_id: str | None, creator_id: str
    ) -> dict[str, Any]:
        sid = f"wh_{len(self.made) + 1}"
        self.made[sid] = WebhookSubscription(
            sid,
            url,
            tuple(event_types),
            course_id,
            creator_id,
            "2026-12-06T00:00:00.000Z",
            "sealed",
            "active",
            "0:0.0.0",
            "2026-12-06T00:00:00.000Z",
        )
        return {
            "id": sid,
            "url": url,
            "event_types": event_types,
            "course_id": course_id,
            "created_at": "2026-12-06T00:00:00.000Z",
            "secret": new_secret(),
        }

    async def find(self, subscription_id: str) -> WebhookSubscription | None:
        found = self.made.get(subscription_id)
        return None if found is None or found.state == "deleted" else found

    async def status(self, subscription: WebhookSubscription) -> dict[str, Any]:
        return {"id": subscription.id, "status": subscription.state, "pending": 0}

    async def delete(self, subscription: WebhookSubscription) -> None:
        self.made[subscription.id] = subscription.changed("now", state="deleted")

    async def replay(self, subscription: WebhookSubscription, moment: datetime) -> None:
        self.replays.append((subscription.id, moment))


@dataclass
class FakeReadiness:
    checks: dict[str, bool] = field(default_factory=lambda: {"kafka": True, "postgres": True})

    async def readiness(self) -> dict[str, bool]:
        return dict(self.checks)


@dataclass
class FakeContent:
    keys: set[str] = field(default_factory=set)

    async def exists(self, key: str) -> bool:
        return key in self.keys

    async def presign(self, plan: UploadPlan) -> dict[str, Any]:
        return {
            "key": plan.key,
            "content_type": plan.content_type,
            "size_bytes": plan.size_bytes,
            "max_size_bytes": plan.max_size_bytes,
            "expires_in_seconds": 3600,
            "single": {"method": "PUT", "url": f"https://s3.invalid/{plan.key}", "headers": {}},
        }


@dataclass
class FakeLimiter:
    """Stands in for infra.rate_limit.RateLimiter: a quota per (budget, caller), never
    refilled; `down` makes every call fail as an unreachable Redis does."""

    spent: dict[tuple[str, str], int] = field(default_factory=dict)
    down: bool = False

    async def take(self, budget: Any, caller: str) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError

        from course_management.infra.rate_limit import RateDecision

        if self.down:
            raise RedisConnectionError("Redis is down (fake)")
        used = self.spent.get((budget.name, caller), 0) + 1
        self.spent[(budget.name, caller)] = used
        allowed = used <= budget.quota
        return RateDecision(allowed, max(0, budget.quota - used), 0 if allowed else 7, 60)
