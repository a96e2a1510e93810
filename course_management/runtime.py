"""One worker process: the resources it shares between agents and API, and the HTTP server.

`Runtime` is a mode Service handed to the Faust worker before the app itself, so the
clients exist before any agent runs and `/healthz` answers while tables recover.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import logging.config
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import faust
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from elasticsearch import AsyncElasticsearch
from faust.types import TP
from mode import Service

from course_management.api.app import create_app
from course_management.api.auth import TokenVerifier
from course_management.config import Settings
from course_management.domain.catalog import CatalogQuery
from course_management.domain.catalog import encode_cursor as encode_catalog_cursor
from course_management.domain.commands import CourseCommand, Reply
from course_management.domain.enrollment import current_view, public_view
from course_management.domain.problems import Problem
from course_management.infra.avro import AvroCodec
from course_management.infra.cache import CatalogCache, CourseCache, ReadBypass, new_redis
from course_management.infra.catalog_es import UNAVAILABLE as SEARCH_UNAVAILABLE
from course_management.infra.catalog_es import EsCatalog
from course_management.infra.catalog_pg import PgCatalog
from course_management.infra.database import UNAVAILABLE as DATABASE_UNAVAILABLE
from course_management.infra.database import (
    connect_pool,
    count_seats_taken,
    fetch_course_state,
    fetch_enrollment,
    list_course_enrollments,
    list_user_enrollments,
)
from course_management.infra.kafka import (
    Headers,
    ReplyListener,
    delete_topic,
    ensure_topics,
    new_producer,
)
from course_management.infra.metrics import (
    CACHE_READS,
    CATALOG_READS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_PUBLISHED,
    LOCAL_TABLES_DISCARDED,
    PARTITION_REWINDS,
    REPLIES_DROPPED,
)
from course_management.infra.storage import ContentStore
from course_management.streams.app import build_app
from course_management.streams.enrollment_router import enrollment_router
from course_management.streams.local_state import discard_after_unclean_stop, mark_clean_stop
from course_management.streams.sinks import GroupConsumer, postgres_sink, search_sink
from course_management.tables.courses import course_of
from course_management.tables.enrollments import enrollment_key, seats_key
from course_management.topology import (
    CORRELATION_HEADER,
    COURSE_COMMANDS,
    COURSE_PROGRESS,
    REPLY_SCHEMA_FILE,
    REPLY_SUBJECT,
    REPLY_TO_HEADER,
    REPLY_TOPIC_CONFIG,
    TOPICS,
    USER_ENROLLED,
    TopicSpec,
    dlq,
    reply_topic,
)

# The catalog's backend (Elasticsearch, or PostgreSQL without SEARCH_URL) cannot answer.
CATALOG_UNAVAILABLE: tuple[type[BaseException], ...] = (*SEARCH_UNAVAILABLE, *DATABASE_UNAVAILABLE)

log = logging.getLogger(__name__)
T = TypeVar("T")
STALL_AFTER_S = 3.0


async def register_schemas(codec: AvroCodec) -> None:
    for spec in TOPICS:
        if spec.schema_file:
            await codec.register(spec.subject, spec.schema_file, compatibility="BACKWARD")
    await codec.register(REPLY_SUBJECT, REPLY_SCHEMA_FILE, compatibility="BACKWARD")


def _kafka_unavailable() -> Problem:
    return Problem.of(
        503,
        "kafka-unavailable",
        "Kafka did not take the change in time; it may still apply: retry later "
        "(retries are safe: the same request is applied once)",
    )


class Runtime(Service):
    """Shared clients (Kafka producer, registry, PostgreSQL, Redis) and the API server."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = AvroCodec(settings.schema_registry_url)
        self._producer: AIOKafkaProducer | None = None  # made in on_start (needs the loop)
        self.replies = ReplyListener(
            settings.kafka_bootstrap_servers,
            reply_topic(settings.worker_id),
            lambda raw: self.codec.decode(REPLY_SUBJECT, raw),
        )
        self.app, self.courses, self.enrollments = build_app(settings, self)
        self.pool: asyncpg.Pool | None = None
        self.redis = new_redis(settings.redis_url)
        self.cache = CourseCache(self.redis)
        self.catalog_cache = CatalogCache(self.redis)
        self.read_bypass = ReadBypass()
        self.search: AsyncElasticsearch | None = (
            AsyncElasticsearch(settings.search_url, request_timeout=10)
            if settings.search_url
            else None
        )
        self.catalog: PgCatalog | EsCatalog | None = None  # made in on_start (needs the pool)
        self.content = ContentStore(settings)
        self.verifier = TokenVerifier(
            secret=settings.jwt_secret,
            public_key_pem=settings.jwt_public_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        self._runner: web.AppRunner | None = None
        self._sinks: list[GroupConsumer] = []
        self._positions: dict[TP, tuple[int, float]] = {}
        self._stalled: set[TP] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        await register_schemas(self.codec)
        self._producer = new_producer(self.settings.kafka_bootstrap_servers)
        await self._producer.start()
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            [TopicSpec(self.replies.topic, None, REPLY_TOPIC_CONFIG, partitions=1)],
            1,
        )
        await self.replies.start()
        self.pool = await connect_pool(self.settings.database_url)
        self.catalog = EsCatalog(self.search) if self.search is not None else PgCatalog(self.pool)
        self._sinks = [enrollment_router(self), postgres_sink(self)]
        if self.search is not None:
            self._sinks.append(search_sink(self))
        for sink in self._sinks:
            await sink.start()
        await self.content.start()
        self._runner = web.AppRunner(
            create_app(
                self,
                self.verifier,
                self.content,
                {
                    "multipart_threshold": self.settings.upload_multipart_threshold_bytes,
                    "part_size": self.settings.upload_part_size_bytes,
                },
            ),
            access_log=None,
            handle_signals=False,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        log.info("api listening", extra={"url": self.settings.public_base_url})

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for sink in self._sinks:
            await sink.stop()
        await self.replies.stop()
        await self.content.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self.pool is not None:
            await self.pool.close()
        await self.redis.aclose()
        if self.search is not None:
            await self.search.close()
        await delete_topic(self.settings.kafka_bootstrap_servers, self.replies.topic)

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the runtime has not started")
        return self._producer

    @Service.timer(1.0)
    async def _watch_partitions(self) -> None:
        """Consumer lag per partition (gauges), and a warning when one stops advancing.

        Lag is the log end minus the committed offset (records not yet processed); a
        partition with lag whose committed offset has not moved for STALL_AFTER_S is
        logged once with the consumer's view of it, so a stuck partition is visible
        instead of silent. When later records of it were processed (acked) but the one at
        the committed offset never was, Faust skipped that record: the partition is
        rewound to its committed offset and replayed (handlers are idempotent).
        """
        if self.app.rebalancing or not self.app.tables.recovery.completed.is_set():
            return
        consumer = self.app.consumer
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            if tp.topic.endswith("-changelog"):
                continue  # written by this worker, read only while recovering
            end = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)
            if end is None:
                continue
            done = committed if committed is not None else 0
            CONSUMER_LAG.labels("course-agent", tp.topic, str(tp.partition)).set(max(0, end - done))
            seen = self._positions.get(tp)
            if seen is None or seen[0] != done or end <= done:
                self._positions[tp] = (done, now)
                self._stalled.discard(tp)
                continue
            if now - seen[1] < STALL_AFTER_S:
                continue
            acked_offsets = list(consumer._acked.get(tp) or ())
            # Later records processed (acked) but not the one at the committed offset.
            hole = bool(acked_offsets) and committed is not None and min(acked_offsets) > committed
            if tp in self._stalled and not hole:
                continue  # already reported; still waiting on its head record
            self._stalled.add(tp)
            state = {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": committed,
                "end": end,
                "position": await consumer.position(tp),
                "read_offset": consumer._read_offset.get(tp),
                "acked": len(acked_offsets),
                "first_acked": min(acked_offsets) if acked_offsets else None,
                "active": tp in (consumer._active_partitions or set()),
                "paused": tp in consumer._paused_partitions,
                "flow_active": consumer.flow_active,
            }
            log.warning("partition not advancing", extra=state)
            if hole:
                # Faust skipped the record at the committed offset (it resumes partitions
                # before seeking them after a restart, faust #216). Every handler is
                # idempotent, so replaying from the committed offset is safe, and it is
                # the only way to process it.
                log.warning("rewinding the partition to its committed offset", extra=state)
                PARTITION_REWINDS.labels(tp.topic).inc()
                await consumer.seek(tp, committed)
                self._positions.pop(tp, None)
                self._stalled.discard(tp)

    # -- used by agents ------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        key: str,
        subject: str,
        record: dict[str, Any],
        headers: Headers | None = None,
    ) -> None:
        """Encode with the registered schema and wait until the broker has the record."""
        value = self.codec.encode(subject, record)
        await self.producer.send_and_wait(
            topic, value=value, key=key.encode(), headers=list(headers or [])
        )
        EVENTS_PUBLISHED.labels(topic).inc()

    async def publish_all(self, records: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Publish (topic, key, subject, record)s in order; wait until the broker has all."""
        await self.forward_all(
            [
                (topic, key, self.codec.encode(subject, record), [])
                for topic, key, subject, record in records
            ]
        )

    async def still_awaited(
        self, replies: list[tuple[str, str, str, dict[str, Any]]]
    ) -> list[tuple[str, str, str, dict[str, Any]]]:
        """The replies whose reply topic still exists (one metadata request)."""
        existing = (await self.producer.client.fetch_all_metadata()).topics()
        kept = [reply for reply in replies if reply[0] in existing]
        if len(kept) < len(replies):
            gone = sorted({reply[0] for reply in replies} - existing)
            REPLIES_DROPPED.inc(len(replies) - len(kept))
            log.info("replies dropped: their workers are gone", extra={"topics": gone})
        return kept

    async def forward_all(self, records: list[tuple[str, str, bytes, Headers]]) -> None:
        """Send (topic, key, value bytes, headers)s in order; wait until the broker has all.

        Each is appended to the producer in order (so one partition keeps their order),
        then all acks are awaited together: one round trip instead of one per record.
        """
        pending = [
            await self.producer.send(topic, value=value, key=key.encode(), headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*pending)
        for topic, *_ in records:
            EVENTS_PUBLISHED.labels(topic).inc()

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str = "invalid"
    ) -> None:
        """Keep an unprocessable record, with why, on `<topic>.dlq`; count it."""
        log.warning("record dead-lettered", extra={"topic": topic, "reason": reason})
        await self.producer.send_and_wait(
            dlq(topic),
            value=value,
            key=key,
            headers=[("dlq.reason", reason[:1000].encode()), ("dlq.source_topic", topic.encode())],
        )
        DEAD_LETTERS.labels(topic, code).inc()

    # -- used by the API (api.ports.Backend) ---------------------------------------------------

    async def execute(self, command: CourseCommand) -> Reply:
        record = {
            "command_id": command.command_id,
            "command_type": command.command_type,
            "occurred_at": command.occurred_at,
            "course_id": command.course_id,
            "actor": {
                "id": command.actor.id,
                "name": command.actor.name,
                "roles": list(command.actor.roles),
            },
            "payload_json": json.dumps(command.payload, ensure_ascii=False),
            "payload_hash": command.payload_hash,
            "expected_version": command.expected_version,
            "reply_to": self.replies.topic,
        }
        return await self._ask(
            command.command_id,
            self.publish(COURSE_COMMANDS, command.course_id, f"{COURSE_COMMANDS}-value", record),
        )

    async def enroll(self, course_id: str, user_id: str, source: str) -> Reply:
        """Publish `user_enrolled` (as other services do) and wait for the agent's answer."""
        fields = {"user_id": user_id, "course_id": course_id, "source": source}
        return await self._publish_input(USER_ENROLLED, course_id, fields)

    async def report_progress(
        self, course_id: str, user_id: str, item_id: str, status: str, score: float | None
    ) -> Reply:
        """Publish an `ItemProgress` on course-progress and wait for the agent's answer."""
        fields = {
            "user_id": user_id,
            "course_id": course_id,
            "item_id": item_id,
            "status": status,
            "score": score,
        }
        return await self._publish_input(COURSE_PROGRESS, course_id, fields)

    async def _publish_input(self, topic: str, course_id: str, fields: dict[str, Any]) -> Reply:
        event_id = str(uuid.uuid4())
        record = {"event_id": event_id, "occurred_at": datetime.now(UTC), **fields}
        headers = [
            (REPLY_TO_HEADER, self.replies.topic.encode()),
            (CORRELATION_HEADER, event_id.encode()),
        ]
        return await self._ask(
            event_id, self.publish(topic, course_id, f"{topic}-value", record, headers)
        )

    async def _ask(self, correlation_id: str, send: Awaitable[None]) -> Reply:
        """Hand a command or input to Kafka and wait for the agent's answer, both within
        COMMAND_TIMEOUT_SECONDS: a broker that is down makes a 503, never a hang or a 500."""
        waiting = self.replies.expect(correlation_id)
        sent = False
        try:
            async with asyncio.timeout(self.settings.command_timeout_seconds):
                await send
                sent = True
                reply = await waiting
        except TimeoutError:
            if not sent:
                raise _kafka_unavailable() from None
            raise Problem.of(
                503,
                "not-confirmed",
                "the change was accepted but not confirmed in time; read it back or retry "
                "(retries are safe: the same request is applied once)",
            ) from None
        except KafkaError as exc:
            raise _kafka_unavailable() from exc
        finally:
            self.replies.forget(correlation_id)
        body = json.loads(reply["body_json"]) if reply["body_json"] else None
        return Reply(reply["status"], body)

    async def read_enrollment(self, course_id: str, user_id: str) -> dict[str, Any] | None:
        """The Enrollment with progress: from the table when local, else the mirror."""
        if self._is_local(course_id):
            record = self.enrollments.get(enrollment_key(course_id, user_id))
            course = course_of(self.courses.get(course_id))
            if record is None or course is None:
                return None
            return public_view(record, course)
        assert self.pool is not None
        snapshot = await fetch_enrollment(self.pool, course_id, user_id)
        return (await self._current([snapshot]))[0] if snapshot else None

    async def _current(self, snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Mirrored enrollments with progress recomputed against each course as it is now."""
        courses: dict[str, dict[str, Any] | None] = {}
        for course_id in {s["course_id"] for s in snapshots}:
            state = await self.read_course_state(course_id)
            courses[course_id] = state.get("course") if state else None
        return [current_view(s, courses[s["course_id"]]) for s in snapshots]

    async def read_course_state(self, course_id: str) -> dict[str, Any] | None:
        """Redis first; on a miss the table when its partition is here, else the mirror.

        The agent puts every change into Redis before it answers, so a reader never sees
        an older course than the one a write returned, whichever worker it asks.
        """
        bypass = self.read_bypass.call
        cached = await bypass(lambda: self.cache.get(course_id))
        if cached is not None:
            CACHE_READS.labels("hit").inc()
            return await self._with_enrollment_count(course_id, cached)
        if self._is_local(course_id):
            CACHE_READS.labels("miss_table").inc()
            record = self.courses.get(course_id)
            state = (
                {"course": record.get("course"), "deleted": bool(record.get("deleted"))}
                if record
                else None
            )
        else:
            CACHE_READS.labels("miss_mirror").inc()
            assert self.pool is not None
            state = await fetch_course_state(self.pool, course_id)
        if state is not None and (course := state["course"]) is not None:
            await bypass(lambda: self.cache.put(course, deleted=state["deleted"]))
        return await self._with_enrollment_count(course_id, state)

    async def _with_enrollment_count(
        self, course_id: str, state: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Seats taken change without a course version: merged in at read time."""
        if state is None or state.get("course") is None:
            return state
        bypass = self.read_bypass.call
        count = await bypass(lambda: self.cache.enrollment_count(course_id))
        if count is None:
            if self._is_local(course_id):
                seats = self.enrollments.get(seats_key(course_id)) or {}
                count = seats.get("count", 0)
            else:
                assert self.pool is not None
                count = await count_seats_taken(self.pool, course_id)
            # NX: a count the agent set meanwhile is newer than the one read here.
            filled = count
            await bypass(lambda: self.cache.fill_enrollment_count(course_id, filled))
        return {**state, "course": {**state["course"], "enrollment_count": count}}

    def _is_local(self, course_id: str) -> bool:
        partition = murmur2(course_id.encode()) & 0x7FFFFFFF
        partition %= self.settings.topic_partitions
        return TP(COURSE_COMMANDS, partition) in self.app.assignor.assigned_actives()

    async def list_course_enrollments(
        self, course_id: str, after_user: str | None, limit: int, only_user: str | None
    ) -> list[dict[str, Any]]:
        assert self.pool is not None
        rows = await list_course_enrollments(self.pool, course_id, after_user, limit, only_user)
        return await self._current(rows)

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int
    ) -> list[dict[str, Any]]:
        assert self.pool is not None
        return await self._current(
            await list_user_enrollments(self.pool, user_id, after_course, limit)
        )

    async def search_catalog(self, query: CatalogQuery) -> dict[str, Any]:
        """A catalog page from the configured backend, through the Redis page cache."""
        assert self.catalog is not None
        backend = self.catalog.backend
        key = hashlib.blake2b(
            json.dumps([backend, query.signature, query.limit, query.raw_cursor]).encode(),
            digest_size=16,
        ).hexdigest()
        from_cache = await self.read_bypass.call(lambda: self.catalog_cache.get(key))
        page_key, cached = from_cache or (None, None)
        if cached is not None:
            CATALOG_READS.labels(backend, "hit").inc()
            return cached
        try:
            page = await self.catalog.search(query)
        except CATALOG_UNAVAILABLE as exc:
            raise Problem.of(
                503, "search-unavailable", "the catalog cannot be searched now"
            ) from exc
        body = {
            "items": page.items,
            "next_cursor": encode_catalog_cursor(query, page.next_after, page.pit)
            if page.next_after is not None
            else None,
            "facets": page.facets,
        }
        if page_key is not None:
            cache_key = page_key
            await self.read_bypass.call(lambda: self.catalog_cache.put(cache_key, body))
        CATALOG_READS.labels(backend, "miss").inc()
        return body

    async def readiness(self) -> dict[str, bool]:
        recovery = self.app.tables.recovery
        checks = {
            "tables_recovered": bool(
                recovery.completed.is_set()
                and not recovery.in_recovery
                and not self.app.rebalancing
            ),
        }
        probes: dict[str, Awaitable[Any]] = {
            "kafka": self._probe_kafka(),
            "postgres": self._probe_postgres(),
            "schema_registry": self.codec.client.get_subjects(),
            "redis": self.redis.ping(),
        }
        if self.search is not None:
            probes["search"] = self.search.cluster.health()
        results = await asyncio.gather(
            *(asyncio.wait_for(p, 2.0) for p in probes.values()), return_exceptions=True
        )
        for name, result in zip(probes, results, strict=True):
            checks[name] = not isinstance(result, BaseException)
        return checks

    async def _probe_kafka(self) -> None:
        await self.producer.client.fetch_all_metadata()

    async def _probe_postgres(self) -> None:
        assert self.pool is not None
        await self.pool.fetchval("SELECT 1")


class _Worker(faust.Worker):
    """Leaves the clean-stop marker once everything stopped without a crash."""

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()
        if not self._crashed.is_set() and not self.app._crashed.is_set():
            mark_clean_stop(Path(self.app.conf.datadir))


def run_worker(settings: Settings) -> None:
    """Run the Faust worker with the API beside it until SIGTERM/SIGINT."""
    import sys

    from course_management.infra.avro import SchemaRegistrationError
    from course_management.logs import logging_config

    try:  # refuse to start, in one clear line, when the registry refuses a schema
        asyncio.run(register_schemas(AvroCodec(settings.schema_registry_url)))
    except SchemaRegistrationError as exc:
        print(f"start-up refused: {exc}", file=sys.stderr)
        sys.exit(3)
    runtime = Runtime(settings)
    conf = runtime.app.conf
    logging.config.dictConfig(logging_config(settings.log_level))  # JSON from the first line
    if discard_after_unclean_stop(Path(conf.datadir), Path(conf.tabledir)):
        LOCAL_TABLES_DISCARDED.inc()
    worker = _Worker(
        runtime.app,
        runtime,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
