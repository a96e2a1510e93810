"""Redis cache of course and enrollment reads: written by the agent before it answers,
never backwards, and ready to send.

A course's hash holds what `GET /api/v1/courses/{id}` answers, already encoded (its
`body`, with the seats taken), and what the route checks (version and seats for the
ETag, status and owner for who may see it). An enrollment's hash holds its record and its
public view, encoded against the course version it names. A read spends its rate-limit
request and fetches all of that in one script, one round trip (`spend_and_get_*`).

The agent's `put_entries` replaces an entry only with a newer one (version, then the
seats sequence; one Lua script for the whole batch, atomic in Redis), so a slow writer
can never go backwards.
A reader that filled nothing after a miss fills only an absent entry (`fill_*`), so it
can never overwrite what the agent put there meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from course_management.domain.records import CourseRecord, EnrollmentRecord
from course_management.domain.times import rfc3339
from course_management.domain.uploads import has_content_keys, without_content_keys
from course_management.infra.cache_scripts import PUT as _PUT
from course_management.infra.cache_scripts import SPEND_AND_GET as _SPEND_AND_GET
from course_management.infra.metrics import CACHE_BYPASSED
from course_management.infra.rate_limit import Charge
from course_management.infra.retrying import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)

TTL_SECONDS = 3600
T = TypeVar("T")


def new_redis(url: str) -> aioredis.Redis:
    """A client that checks idle connections before use and retries a dropped one.

    Servers close idle clients (`timeout`); without the health check the first command
    after a quiet spell fails, and an agent writing the cache would crash on it.
    """
    return aioredis.from_url(
        url,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def _key(course_id: str) -> str:
    return f"cms:ready:course:{course_id}"


def _enrollment_key(course_id: str, user_id: str) -> str:
    return f"cms:ready:enrollment:{course_id}:{user_id}"


@dataclass(frozen=True)
class CourseEntry:
    """A course as a read answers it: `body` is the Course JSON, seats taken included
    (empty once deleted); the rest is what the route checks without decoding it."""

    course_id: str
    version: int
    seq: int  # the seats sequence: seats and the rating change without a new version
    count: int  # seats taken
    deleted: bool
    status: str
    owner: str  # the instructor's id
    tag: str  # what the course's ETag says (`course_tag`)
    body: bytes | None  # None when a read did not fetch it
    # The body for whoever may not edit the course (content keys null); b"" when the
    # course has no content key (the body is the same); None when not fetched.
    public: bytes | None = None
    # The course's staff (CONTRACT §5.2), "\n<role>\t<user id>\n" per member ('' none):
    # what the route checks for a draft, and the read script for a co-instructor's body.
    staff: str = ""

    def staff_role(self, user_id: str) -> str | None:
        for line in self.staff.split("\n"):
            role, _, member = line.partition("\t")
            if member == user_id:
                return role
        return None

    def body_for(self, sees_content_keys: bool) -> bytes | None:
        if sees_content_keys or not self.public:
            return self.body
        return self.public

    @classmethod
    def of(cls, shown: dict[str, Any], *, deleted: bool, seq: int) -> CourseEntry:
        """The entry of a course as readers see it (domain.ratings.as_read: its seats taken
        and rating included), at seats seq `seq`."""
        return cls(
            course_id=shown["id"],
            version=int(shown["version"]),
            seq=seq,
            count=int(shown["enrollment_count"]),
            deleted=deleted,
            status=str(shown["status"]),
            owner=str(shown["instructor"]["id"]),
            tag=course_tag(shown),
            staff=staff_field(shown),
            body=b"" if deleted else orjson.dumps(shown),
            public=orjson.dumps(without_content_keys(shown))
            if not deleted and has_content_keys(shown)
            else b"",
        )

    def state(self) -> CourseRecord:
        """The `{"course": ..., "deleted": ...}` state the slow paths work with."""
        course = None if self.deleted or not self.body else orjson.loads(self.body)
        return {"course": course, "deleted": self.deleted}

    def fields(self) -> list[Any]:
        return [
            "version", self.version, "seq", self.seq, "count", self.count,
            "deleted", int(self.deleted), "status", self.status, "owner", self.owner,
            "tag", self.tag, "body", self.body or b"", "public", self.public or b"",
            "staff", self.staff,
        ]  # fmt: skip


def staff_field(shown: dict[str, Any]) -> str:
    members = shown.get("staff") or ()
    return "".join(f"\n{m['role']}\t{m['user_id']}\n" for m in members)


def _course_entry(course_id: str, raw: Sequence[Any]) -> CourseEntry | None:
    version, seq, count, deleted, status, owner, tag, staff = raw[:8]
    if version is None:
        return None
    body = raw[8] if len(raw) > 8 else None
    public = raw[9] if len(raw) > 9 else None
    if tag is None:  # put by a worker of the version before the tag and the public body
        shown = orjson.loads(body) if body else {"version": int(version), "enrollment_count": count}
        tag = course_tag(shown).encode()
        if body and has_content_keys(shown):  # it kept one body: the public one is drawn
            public = orjson.dumps(without_content_keys(shown))
    return CourseEntry(
        course_id=course_id,
        version=int(version),
        seq=int(seq),
        count=int(count),
        deleted=deleted == b"1",
        status=status.decode(),
        owner=owner.decode(),
        tag=tag.decode(),
        body=body,
        public=public,
        staff=staff.decode() if staff else "",
    )


def course_tag(shown: dict[str, Any]) -> str:
    """What a course's ETag says: `<version>.<seats taken>.<ratings>.<average x 100>`,
    every number that can change what a read returns (a course version changes only
    with its authors' changes; seats and the rating change without one: decision 52)."""
    rating = shown.get("rating") or {}
    average = rating.get("average")
    stars = 0 if average is None else round(float(average) * 100)
    waiting = int(shown.get("waitlist_count") or 0)  # since the waitlist: when some wait
    return (
        f"{shown['version']}.{int(shown.get('enrollment_count') or 0)}"
        f".{int(rating.get('count') or 0)}.{stars}" + (f".{waiting}" if waiting else "")
    )


@dataclass(frozen=True)
class EnrollmentEntry:
    """An enrollment as the agent left it: the record, and its public view encoded against
    the course version `course_version` (None: no view, e.g. its course is gone)."""

    record: EnrollmentRecord
    view: bytes | None = None
    course_version: int = 0
    fresh_until: str = ""  # RFC 3339: a time lock opens then, and the view is stale ('' never)

    @property
    def seq(self) -> int:
        """Orders entries of one version: a timer's release opens a module without a new
        version (domain.timers), and the record grows its `opened`; the waitlist changes
        a record without a new version too (domain/seats.py), and counts its changes."""
        return len(self.record.get("opened", ())) + int(self.record.get("wait_changes", 0))

    def fields(self) -> list[Any]:
        return [
            "version", self.record["version"], "seq", self.seq,
            "state", orjson.dumps(self.record), "status", self.record["status"],
            "course_version", self.course_version, "view", self.view or b"",
            "fresh_until", self.fresh_until,
        ]  # fmt: skip


@dataclass(frozen=True)
class EnrollmentHit:
    """What a point read found: the ready view when it matches the course as it is now,
    else the record (to be viewed against the course)."""

    version: int
    status: str
    view: bytes | None
    course_version: int  # the course version `view` was drawn against
    record: EnrollmentRecord | None


class CourseCache:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._put = client.register_script(_PUT)
        self._spend_and_get = client.register_script(_SPEND_AND_GET)

    # -- the agent's writes ------------------------------------------------------------

    async def put_entries(
        self, courses: Sequence[CourseEntry], enrollments: Sequence[EnrollmentEntry]
    ) -> None:
        """Every entry a batch left, each only if newer, in one script call."""
        if not courses and not enrollments:
            return
        keys: list[str] = []
        args: list[Any] = [TTL_SECONDS]
        for course in courses:
            keys.append(_key(course.course_id))
            fields = course.fields()
            args += ["0", course.version, course.seq, len(fields), *fields]
        for entry in enrollments:
            keys.append(_enrollment_key(entry.record["course_id"], entry.record["user_id"]))
            fields = entry.fields()
            args += ["0", entry.record["version"], entry.seq, len(fields), *fields]
        await self._put(keys=keys, args=args)

    # -- a reader's fills after a miss -------------------------------------------------

    async def fill_course(self, entry: CourseEntry) -> bool:
        fields = entry.fields()
        args = [TTL_SECONDS, "1", entry.version, entry.seq, len(fields), *fields]
        return bool(await self._put(keys=[_key(entry.course_id)], args=args))

    # -- reads -------------------------------------------------------------------------

    async def _read(self, keys: list[str], args: Sequence[Any]) -> Any:
        """EVALSHA of the read script (redis-py's Script call checks its client against a
        runtime Protocol on every call: measurable on the hot path)."""
        script = self._spend_and_get
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted Redis: load it again
            script.sha = await self._client.script_load(script.script)
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def spend_and_get_course(
        self, course_id: str, charge: Charge | None = None, view: str = "body"
    ) -> CourseEntry | None:
        """The course's entry (None on a miss), spending `charge` in the same script
        (over budget: None, and the charge says so), with the one body `view` names:
        "body" (content keys shown), "public" (in `public`; in `body` when the course has
        no content key) or "owner=<caller id>" (the body if the course is the caller's,
        else the public one); `CourseEntry.body_for` picks."""
        keys = [charge.key if charge else "", _key(course_id), ""]
        answer = await self._read(keys, [*(charge.args if charge else ["", ""]), view])
        if charge is not None:
            charge.settle(answer[0])
        if len(answer) < 2:
            return None
        return _course_entry(course_id, answer[1])

    async def spend_and_get_enrollment(
        self, course_id: str, user_id: str, charge: Charge | None = None
    ) -> tuple[CourseEntry | None, EnrollmentHit | None]:
        """The course's entry (its body only when the enrollment needs it) and the
        enrollment's, in one script that also spends `charge`."""
        keys = [charge.key if charge else "", _key(course_id), _enrollment_key(course_id, user_id)]
        now = rfc3339(datetime.now(UTC))  # a view drawn before a time lock opened is stale
        answer = await self._read(keys, [*(charge.args if charge else ["", ""]), now])
        if charge is not None:
            charge.settle(answer[0])
        if len(answer) < 3:
            return None, None
        course = _course_entry(course_id, answer[1])
        version, course_version, status, view, state = (*answer[2], None)[:5]
        if version is None:
            return course, None
        record: EnrollmentRecord | None = orjson.loads(state) if state else None
        hit = EnrollmentHit(
            int(version), status.decode(), view or None, int(course_version), record
        )
        return course, hit


class CatalogCache:
    """Hot catalog pages, keyed by the query and the catalog's generation.

    The catalog sinks bump the generation after every batch they apply (and only once the
    change is searchable), so a page cached before a change is never served after it;
    old generations simply expire.
    """

    GENERATION = "cms:catalog:generation"
    TTL_SECONDS = 60

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def get(self, key: str) -> tuple[str, dict[str, Any] | None]:
        """(the page's cache key for this generation, the cached body or None)."""
        generation = await self._client.get(self.GENERATION)
        page_key = f"cms:catalog:page:{int(generation or 0)}:{key}"
        raw = await self._client.get(page_key)
        return page_key, (orjson.loads(raw) if raw else None)

    async def put(self, page_key: str, body: dict[str, Any]) -> None:
        await self._client.set(page_key, orjson.dumps(body), ex=self.TTL_SECONDS)

    async def invalidate(self) -> None:
        await self._client.incr(self.GENERATION)


class ReadBypass:
    """API reads do without the cache while Redis is unreachable.

    The cache only speeds reads up (the tables and the mirror are the truth), so a read
    whose cache call fails goes on as after a miss, and for `cooldown_s` afterwards reads
    skip the cache at once instead of each waiting out the client's retries. The agent's
    cache writes do not use this: they wait for Redis (decision 22).
    """

    def __init__(self, cooldown_s: float = 5.0) -> None:
        self.cooldown_s = cooldown_s
        self._skip_until = 0.0

    async def call(self, op: Callable[[], Awaitable[T]]) -> T | None:
        """`await op()`, or None when Redis is unavailable (skipped, or it failed now)."""
        if time.monotonic() < self._skip_until:
            CACHE_BYPASSED.inc()
            return None
        try:
            return await op()
        except REDIS_UNAVAILABLE as exc:
            self._skip_until = time.monotonic() + self.cooldown_s
            CACHE_BYPASSED.inc()
            log.warning(
                "Redis unavailable: reads skip the cache",
                extra={"for_seconds": self.cooldown_s, "error": str(exc)},
            )
            return None
