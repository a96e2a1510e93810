"""Redis cache of course reads: written by the agent before it answers, never backwards.

Each entry holds the course's visible state and its version; `put` replaces an entry only
with a newer version (a Lua script, atomic in Redis), so a slow reader filling the cache
from an older source can never overwrite what a write just put there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from course_management.infra.metrics import CACHE_BYPASSED
from course_management.infra.retrying import REDIS_UNAVAILABLE
from course_management.tables.records import CourseRecord, EnrollmentRecord

log = logging.getLogger(__name__)

TTL_SECONDS = 3600
T = TypeVar("T")

_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


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
    return f"cms:course:{course_id}"


def _enrollment_key(course_id: str, user_id: str) -> str:
    return f"cms:enrollment:{course_id}:{user_id}"


class CourseCache:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._put = client.register_script(_PUT_IF_NEWER)

    async def get(self, course_id: str) -> CourseRecord | None:
        """The cached state `{"course": ..., "deleted": bool}`, or None on a miss."""
        raw = await self._client.hget(_key(course_id), "state")
        state: CourseRecord | None = json.loads(raw) if raw else None
        return state

    async def set_enrollment_count(self, course_id: str, count: int) -> None:
        """Seats taken change without a new course version; kept beside the cached state."""
        await self._client.set(f"cms:enrollment-count:{course_id}", count, ex=TTL_SECONDS)

    async def fill_enrollment_count(self, course_id: str, count: int) -> None:
        """A reader's fill after a miss: never overwrites the agent's newer count."""
        await self._client.set(f"cms:enrollment-count:{course_id}", count, ex=TTL_SECONDS, nx=True)

    async def enrollment_count(self, course_id: str) -> int | None:
        raw = await self._client.get(f"cms:enrollment-count:{course_id}")
        return int(raw) if raw is not None else None

    async def put_enrollments(self, records: list[EnrollmentRecord]) -> None:
        """Enrollment records as the agent wrote them (version-guarded), in one round trip."""
        if not records:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for record in records:
                await self._put(
                    keys=[_enrollment_key(record["course_id"], record["user_id"])],
                    args=[record["version"], json.dumps(record), TTL_SECONDS],
                    client=pipe,
                )
            await pipe.execute()

    async def get_enrollment(self, course_id: str, user_id: str) -> EnrollmentRecord | None:
        raw = await self._client.hget(_enrollment_key(course_id, user_id), "state")
        record: EnrollmentRecord | None = json.loads(raw) if raw else None
        return record

    async def put(self, course: dict[str, Any], *, deleted: bool = False) -> bool:
        state = json.dumps({"course": None if deleted else course, "deleted": deleted})
        stored = await self._put(
            keys=[_key(course["id"])], args=[course["version"], state, TTL_SECONDS]
        )
        return bool(stored)


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
        return page_key, (json.loads(raw) if raw else None)

    async def put(self, page_key: str, body: dict[str, Any]) -> None:
        await self._client.set(page_key, json.dumps(body), ex=self.TTL_SECONDS)

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
