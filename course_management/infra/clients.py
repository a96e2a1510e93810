"""The clients a process shares, with one lifecycle: the Avro codec (the schema registry),
the publisher, PostgreSQL, Redis, and Elasticsearch when SEARCH_URL is set.

Both composition roots use it: the worker (worker.py; startup.py registers its schemas
before Faust runs) and the sink process (sinks/process.py). In order:

1. `register_schemas`: every subject, once per start (a schema the registry refuses
   raises SchemaRegistrationError at once; an unreachable registry is waited out);
2. `start`: the publisher, the broker's topics, the database pool (it connects on first
   use, so a start during a PostgreSQL outage goes on);
3. `stop_steps`, run by `stop_in_turn`: each step bounded, a failing one logged and passed
   (a stop during an outage ends).

Each step that talks to a server runs through a `Step`: `waiting(deadline_s)` waits out
the server's outage for STARTUP_WAIT_SECONDS (issue 22); the worker's adds its test
pauses. `probes` are the servers' readiness probes (infra/probes.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from elasticsearch import AsyncElasticsearch

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.cache import new_redis
from course_management.infra.consumer_group import Membership
from course_management.infra.database import Database
from course_management.infra.probes import Probe
from course_management.infra.publisher import Publisher
from course_management.infra.retrying import until_started
from course_management.topology import REPLY_SCHEMA_FILE, REPLY_SUBJECT, TOPICS

log = logging.getLogger(__name__)

Call = Callable[[], Awaitable[Any]]
Step = Callable[[str, Call], Awaitable[Any]]  # runs the step named `str` of a start
STOP_STEP_S = 10.0  # the longest one step of a stop may take


async def register_schemas(codec: AvroCodec) -> None:
    """Every subject this service writes or reads, BACKWARD compatible (idempotent)."""
    for spec in TOPICS:
        if spec.schema_file:
            await codec.register(spec.subject, spec.schema_file, compatibility="BACKWARD")
    await codec.register(REPLY_SUBJECT, REPLY_SCHEMA_FILE, compatibility="BACKWARD")


def waiting(deadline_s: float) -> Step:
    """A step that waits out its server's outage for `deadline_s` at most."""

    async def step(name: str, call: Call) -> Any:
        return await until_started(call, deadline_s)

    return step


def membership(settings: Settings) -> Membership:
    """This process's membership of its plain consumer groups (static with
    STATIC_MEMBERSHIP, as the Faust app's: streams/app.py)."""
    instance = settings.worker_id if settings.static_membership else None
    return Membership(instance, settings.broker_session_timeout_seconds)


async def stop_in_turn(steps: Iterable[tuple[str, Call]], step_s: float = STOP_STEP_S) -> None:
    """Each step bounded: one that fails or hangs (an outage) is logged, the rest stop."""
    for name, stop in steps:
        try:
            await asyncio.wait_for(stop(), step_s)
        except Exception as exc:
            log.warning("a step of the stop failed", extra={"step": name, "error": repr(exc)})


class Clients:
    """Built from the settings without talking to any server; started in order."""

    def __init__(self, settings: Settings) -> None:
        self.codec = AvroCodec(settings.schema_registry_url)
        self.publisher = Publisher(settings.kafka_bootstrap_servers, self.codec)
        self.database = Database(settings.database_url)
        self.redis = new_redis(settings.redis_url)
        self.search: AsyncElasticsearch | None = (
            AsyncElasticsearch(settings.search_url, request_timeout=10)
            if settings.search_url
            else None
        )
        self._registered = False

    async def register_schemas(self, step: Step) -> None:
        """Once per start, before `start`."""
        await step("registry", lambda: register_schemas(self.codec))
        self._registered = True

    async def start(self, step: Step) -> None:
        if not self._registered:  # a bug: the codec could encode nothing
            raise RuntimeError("the schemas are registered before the clients start")
        await step("publisher", self.publisher.start)
        await step("topics", self.publisher.refresh_topics)
        await self.database.start()  # its pool connects on first use

    def stop_steps(self) -> list[tuple[str, Call]]:
        return [
            ("publisher", self.publisher.stop),
            ("database", self.database.stop),
            ("redis", self.redis.aclose),
            *([("search", self.search.close)] if self.search is not None else []),
        ]

    def probes(self, *, kafka: Probe | None = None) -> dict[str, Probe]:
        """The servers a process needs, by the names `/readyz` reports. `kafka` by default
        reads the topics as last read in the background (the worker reads them every
        second); a process without that reading asks the broker itself."""
        probes: dict[str, Probe] = {
            "kafka": kafka or self.publisher.probe,
            "postgres": self.database.probe,
            "schema_registry": self.codec.probe,
            "redis": self.redis.ping,
        }
        if self.search is not None:
            probes["search"] = self.search.cluster.health
        return probes
