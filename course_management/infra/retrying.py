"""Writers that must not skip a write wait for an unreachable store instead.

A sink that skipped a write would lose it; the course agent that skipped a Redis write
would leave an older course or seat count readable for the cache's lifetime. Both retry
the write with backoff (logged) until the store answers; whatever else goes wrong is
raised.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
from aiokafka.errors import KafkaError, KafkaTimeoutError
from confluent_kafka.schema_registry.error import SchemaRegistryError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from course_management.infra.kafka import probe_broker

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)


def kafka_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaTimeoutError) or (
        isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
    )


async def until_published(write: Callable[[], Awaitable[T]]) -> T:
    """A publish that must not be skipped: waits out Kafka's retriable errors (a repeat
    after a timeout may duplicate records, which carry the same event ids)."""
    return await _until(retry_if_exception(kafka_unavailable), write)


def registry_unavailable(exc: BaseException) -> bool:
    """The schema registry did not answer, or answered that it cannot now (5xx, 408, 429)."""
    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code >= 500 or exc.http_status_code in (408, 429)
    return isinstance(exc, httpx2.TransportError | OSError)


async def until_registry_answers(call: Callable[[], Awaitable[T]]) -> T:
    """A registry lookup a record depends on: waits out the registry's outages (a record
    must not be dead-lettered because the registry was down)."""
    return await _until(retry_if_exception(registry_unavailable), call)


async def until_written(
    unavailable: tuple[type[BaseException], ...], write: Callable[[], Awaitable[T]]
) -> T:
    """`await write()`, again and again while it raises one of `unavailable`."""
    return await _until(retry_if_exception_type(unavailable), write)


async def _until(
    retry: retry_base, write: Callable[[], Awaitable[T]], stop: stop_base = stop_never
) -> T:
    async for attempt in AsyncRetrying(
        retry=retry,
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop,
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            return await write()
    raise AssertionError("unreachable")


async def until_broker_answers(bootstrap: str, deadline_s: float) -> None:
    """A process starting during a broker outage waits it out, for `deadline_s` at most
    (then the last error is raised)."""
    await _until(
        retry_if_exception(kafka_unavailable),
        lambda: probe_broker(bootstrap),
        stop=stop_after_delay(deadline_s),
    )


def start_unavailable(exc: BaseException) -> bool:
    """A server a starting worker needs did not answer: the broker (aiokafka says "Unable
    to bootstrap" with a KafkaConnectionError, "Unable to get cluster metadata" with a
    plain KafkaError), the registry, Redis, or any connection refused."""
    return (
        kafka_unavailable(exc)
        or isinstance(exc, KafkaError)
        or registry_unavailable(exc)
        or isinstance(exc, REDIS_UNAVAILABLE)
    )


async def until_started(step: Callable[[], Awaitable[T]], deadline_s: float) -> T:
    """A step of a worker's start-up that talks to a server: waits out the server's
    outage for `deadline_s` at most (STARTUP_WAIT_SECONDS), then raises its last error
    (a restart during a broker restart exited at its producer's start: issue 22)."""
    return await _until(
        retry_if_exception(start_unavailable), step, stop=stop_after_delay(deadline_s)
    )


async def until_cached(write: Callable[[], Awaitable[Any]]) -> None:
    """A cache write the reads depend on: waits for Redis."""
    await until_written(REDIS_UNAVAILABLE, write)
