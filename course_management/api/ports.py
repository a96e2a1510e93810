"""What the API needs from the worker it runs in: writes, reads, readiness, content storage.

The worker implements them (gateways/writes.py, gateways/reads.py, worker.py,
infra/storage.py); the in-process API tests implement them with fakes
(tests/unit/api_fakes.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from course_management.catalog.query import CatalogQuery
from course_management.domain.commands import CourseCommand
from course_management.domain.consistency import NONE, Marks
from course_management.domain.outcomes import Reply
from course_management.domain.records import CourseRecord
from course_management.domain.stream_ids import StreamPosition
from course_management.domain.uploads import UploadPlan
from course_management.infra.cache import CourseEntry
from course_management.infra.rate_limit import Charge
from course_management.messages.webhook_subscription import WebhookSubscription


class Unavailable(Exception):
    """Kafka or a store cannot take or answer the request now: 503, problem type `kind`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Writes(Protocol):
    """Each write goes through Kafka and waits (with a timeout) for the agent's reply.
    Raises `Unavailable` when Kafka does not take it or the reply does not come in time."""

    async def execute(self, command: CourseCommand) -> Reply:
        """Send a course command and wait for the agent's reply."""
        ...

    async def enroll(self, course_id: str, user_id: str, source: str) -> Reply:
        """Publish `user_enrolled` and wait for the agent's answer."""
        ...

    async def report_progress(
        self, course_id: str, user_id: str, item_id: str, status: str, score: float | None
    ) -> Reply:
        """Publish an item's progress and wait for the agent's answer."""
        ...

    async def start_job(self, chunks: list[CourseCommand]) -> Reply:
        """A bulk enrolment job: send its first chunk and wait for the agent's answer (the
        job, or why not); then send the others, each taken by Kafka, in order, without
        waiting for them to be applied."""
        ...


@dataclass(frozen=True)
class EnrollmentView:
    """An Enrollment (CONTRACT §3) with progress, encoded as JSON, and its status."""

    status: str
    body: bytes


class Reads(Protocol):
    """Every read takes `since`, the marks of a request's Consistency-Token: it answers only
    from a store that has them, or raises Unavailable (`not-yet-consistent`)."""

    async def read_course(
        self,
        course_id: str,
        since: Marks = NONE,
        charge: Charge | None = None,
        view: str = "body",
    ) -> CourseEntry | None:
        """A course as `GET` answers it (its body encoded: "body" with content keys,
        "public" without, or "owner=<caller id>": the body if the course is the caller's),
        wherever its partition lives; None if unknown, or over the budget of `charge`
        (which the read spends)."""
        ...

    async def read_course_state(self, course_id: str, since: Marks = NONE) -> CourseRecord | None:
        """`{"course", "deleted"}` of a course, wherever its partition lives; None if unknown."""
        ...

    async def read_enrollment(
        self, course_id: str, user_id: str, since: Marks = NONE, charge: Charge | None = None
    ) -> tuple[CourseEntry | None, EnrollmentView | None]:
        """The course's entry and the Enrollment with progress, encoded (None when the user
        was never enrolled or the course is deleted); spends `charge` as `read_course`."""
        ...

    async def list_course_enrollments(
        self,
        course_id: str,
        after_user: str | None,
        limit: int,
        only_user: str | None,
        since: Marks = NONE,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a course's enrollments by user id, from the mirror:
        active and completed ones, or those of `status` (active, completed, cancelled)."""
        ...

    async def read_job(self, job_id: str) -> dict[str, Any] | None:
        """A bulk enrolment job (its creator among its fields), from the mirror; a job not
        mirrored yet is waited for a moment."""
        ...

    async def list_job_rows(
        self, job_id: str, outcome: str | None, after_row: int, limit: int
    ) -> list[dict[str, Any]]:
        """A page (limit + 1) of a job's rows in row order, from the mirror."""
        ...

    async def list_waitlist(
        self, course_id: str, after_seq: int | None, limit: int, only_user: str | None
    ) -> list[tuple[int, dict[str, Any]]]:
        """A page (limit + 1) of the learners waiting for a seat, in queue order: (their
        place in the mirror's order, for the cursor; their view with `waitlist_position`)."""
        ...

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a user's enrollments, from the mirror."""
        ...

    async def list_ratings(
        self, course_id: str, after: tuple[datetime, str] | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a course's ratings, newest first, from the mirror."""
        ...

    async def search_catalog(self, query: CatalogQuery, since: Marks = NONE) -> dict[str, Any]:
        """A catalog page body `{"items", "next_cursor", "facets"}`; `Unavailable` when the
        catalog's backend cannot answer."""
        ...


class History(Protocol):
    """History and time travel (CONTRACT §5.3), from the mirror; each read waits for what
    `since` (or the course's own table) says the mirror must hold, or raises Unavailable."""

    async def course_version(self, course_id: str, version: int) -> str | None:
        """The snapshot (JSON) of a version the course has reached, as its event published
        it; None for the version that deleted the course."""
        ...

    async def course_history(
        self,
        course_id: str,
        before: int | None,
        limit: int,
        since: Marks = NONE,
        reached: int = 0,
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of versions below `before`, newest first, each with
        its `changes` as JSON text; `reached`: the version the course's table has, which
        the mirror is waited for."""
        ...

    async def learner_history(
        self,
        course_id: str,
        user_id: str,
        after: tuple[int, int, int] | None,
        limit: int,
        since: Marks = NONE,
        exists: bool = False,
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a learner's history after `after` (enrollment
        version, rank, source offset), in the order the changes were decided; `exists`:
        the learner is in the table, so a first page is waited for until it has a row."""
        ...


class Live(Protocol):
    """Live event streams (CONTRACT §5.4): a stream of a course (`user_id` None) or of
    one learner in it, from a position, a moment, or now."""

    async def open(
        self,
        course_id: str,
        user_id: str | None,
        position: StreamPosition | None,
        scope: str,
        since: datetime | None = None,
    ) -> Any:
        """A stream handle; Unavailable when the worker holds SSE_MAX_STREAMS already."""
        ...

    def events(self, stream: Any) -> AsyncIterator[tuple[Any, StreamPosition]]:
        """Its events (`event_type`, `data` as JSON bytes), each with the position after
        it, until the stream ends (the worker stops, or the client fell too far behind)."""
        ...

    def close(self, stream: Any) -> None: ...


class Webhooks(Protocol):
    """Webhook subscriptions (CONTRACT §5.4): kept on a compacted topic, read back from
    every worker's registry (gateways/webhooks.py)."""

    async def check_target(self, url: str) -> None:
        """domain.webhooks.TargetRefused (saying why) unless deliveries may go there."""
        ...

    async def subscribe(
        self, url: str, event_types: list[str], course_id: str | None, creator_id: str
    ) -> dict[str, Any]:
        """The new subscription as the 201 shows it, its secret in it (the only time)."""
        ...

    async def find(self, subscription_id: str) -> WebhookSubscription | None:
        """As of every change acked before the call; None when unknown or deleted."""
        ...

    async def status(self, subscription: WebhookSubscription) -> dict[str, Any]:
        """The GET body: the subscription, `status`, `last_delivery_at`, `last_error`,
        `pending`."""
        ...

    async def delete(self, subscription: WebhookSubscription) -> None: ...

    async def replay(self, subscription: WebhookSubscription, moment: datetime) -> None:
        """Asks its deliveries to go back to `moment` (never forward)."""
        ...


class Readiness(Protocol):
    async def readiness(self) -> dict[str, bool]:
        """Each dependency and the table recovery: True when it is fine."""
        ...


class ContentStorage(Protocol):
    async def exists(self, key: str) -> bool: ...
    async def presign(self, plan: UploadPlan) -> dict[str, Any]: ...


WRITES = web.AppKey("writes", Writes)
READS = web.AppKey("reads", Reads)
READINESS = web.AppKey("readiness", Readiness)
HISTORY = web.AppKey("history", History)
LIVE = web.AppKey("live", Live)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
CONTENT = web.AppKey("content", ContentStorage)
UPLOAD_LIMITS = web.AppKey("upload_limits", dict)
