"""What the API needs from the worker it runs in (implemented by `runtime.Runtime`)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from course_management.domain.catalog import CatalogQuery
from course_management.domain.commands import CourseCommand, Reply
from course_management.domain.uploads import UploadPlan


class Backend(Protocol):
    async def execute(self, command: CourseCommand) -> Reply:
        """Send a command through Kafka and wait for the agent's reply (with a timeout)."""
        ...

    async def read_course_state(self, course_id: str) -> dict[str, Any] | None:
        """`{"course", "deleted"}` of a course, wherever its partition lives; None if unknown."""
        ...

    async def enroll(self, course_id: str, user_id: str, source: str) -> Reply:
        """Publish `user_enrolled` and wait for the agent's answer."""
        ...

    async def report_progress(
        self, course_id: str, user_id: str, item_id: str, status: str, score: float | None
    ) -> Reply:
        """Publish an item's progress and wait for the agent's answer."""
        ...

    async def read_enrollment(self, course_id: str, user_id: str) -> dict[str, Any] | None:
        """The Enrollment with progress, or None when the user was never enrolled."""
        ...

    async def list_course_enrollments(
        self, course_id: str, after_user: str | None, limit: int, only_user: str | None
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a course's enrollments, from the mirror."""
        ...

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """A page (limit + 1 rows) of a user's enrollments, from the mirror."""
        ...

    async def search_catalog(self, query: CatalogQuery) -> dict[str, Any]:
        """A catalog page body `{"items", "next_cursor", "facets"}` (cached in Redis)."""
        ...

    async def readiness(self) -> dict[str, bool]:
        """Each dependency and the table recovery: True when it is fine."""
        ...


class ContentStorage(Protocol):
    async def exists(self, key: str) -> bool: ...
    async def presign(self, plan: UploadPlan) -> dict[str, Any]: ...


BACKEND = web.AppKey("backend", Backend)
CONTENT = web.AppKey("content", ContentStorage)
UPLOAD_LIMITS = web.AppKey("upload_limits", dict)
