"""The composition root: one worker process, built and run.

`Worker` builds every client, the Faust app with its tables and the course agent, the
consumer groups (router, mirror and catalog sinks), the partition watch and the HTTP
API, and owns their lifecycle and the worker's readiness. Nothing else lives here: each
part is in its own module and gets only the collaborators it uses.

`Worker` is a mode Service handed to the Faust worker before the app itself, so the
clients exist before any agent runs and `/healthz` answers while tables recover.

Where things happen (see docs/architecture.md):
- a request enters:  api/middleware.py, then api/routes_*.py
- a write is sent:   service/writes.py (course-commands, user-enrolled, course-progress)
- a rule decides:    domain/
- an event leaves:   streams/apply.py (the course agent's outboxes, through infra/publisher.py)
- stores are written: the table (streams/apply.py), PostgreSQL mirror (streams/mirror.py),
  PostgreSQL catalog and Elasticsearch (catalog/sinks.py), Redis (streams/apply.py)
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import logging.config
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import faust
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from elasticsearch import AsyncElasticsearch
from faust.types import TP
from mode import Service

from course_management.api.app import ENDPOINTS, create_app
from course_management.api.auth import TokenVerifier
from course_management.api.jwks import JwksKeys
from course_management.api.middleware import SERVER_LIMITS, AccessLog
from course_management.api.rate_limits import Budgets, rate_limit_middleware
from course_management.catalog import elastic, postgres
from course_management.catalog.search import CatalogSearch
from course_management.config import Settings
from course_management.infra.avro import AvroCodec, SchemaRegistrationError
from course_management.infra.cache import CatalogCache, CourseCache, ReadBypass, new_redis
from course_management.infra.changelog import ChangelogWriter
from course_management.infra.consumer_group import GroupConsumer
from course_management.infra.database import Database
from course_management.infra.kafka import delete_topic, ensure_topics
from course_management.infra.logs import logging_config
from course_management.infra.metrics import (
    CHANGELOG_RECORDS_RESTORED,
    LOCAL_TABLES_DISCARDED,
    READY,
    REBALANCES,
)
from course_management.infra.publisher import Publisher
from course_management.infra.rate_limit import Budget, RateLimiter
from course_management.infra.replies import ReplyListener
from course_management.infra.retrying import until_broker_answers
from course_management.infra.storage import ContentStore
from course_management.ops.provisioning import register_schemas
from course_management.service.reads import ReadService
from course_management.service.writes import WriteGateway
from course_management.sinks import membership, sink_groups
from course_management.streams import faust_compat
from course_management.streams.agent import register_course_agent
from course_management.streams.app import build_app
from course_management.streams.apply import BatchApplier
from course_management.streams.batch import Batch
from course_management.streams.crash_points import CrashPoints
from course_management.streams.local_state import discard_after_unclean_stop, mark_clean_stop
from course_management.streams.partition_watch import PartitionWatch
from course_management.streams.router import EnrollmentRouter
from course_management.tables.restore import (
    remember_assignment,
    remembered_assignment,
    restore_from_changelogs,
)
from course_management.tables.units import decode_value
from course_management.topology import (
    COURSE_COMMANDS,
    REPLY_SUBJECT,
    REPLY_TOPIC_CONFIG,
    ROUTER_GROUP,
    TopicSpec,
    reply_topic,
)

log = logging.getLogger(__name__)

STARTUP_REFUSED_EXIT_CODE = 3
READY_EVERY_S = 5.0  # how often the worker sets cms_ready itself


class Worker(Service):
    """Shared clients, the Faust app, the consumer groups and the API server."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = AvroCodec(settings.schema_registry_url)
        self.publisher = Publisher(settings.kafka_bootstrap_servers, self.codec)
        self.replies = ReplyListener(
            settings.kafka_bootstrap_servers,
            reply_topic(settings.worker_id),
            lambda raw: self.codec.decode(REPLY_SUBJECT, raw),
        )
        self.database = Database(settings.database_url)
        self.redis = new_redis(settings.redis_url)
        self.course_cache = CourseCache(self.redis)
        self.catalog_pages = CatalogCache(self.redis)
        self.search: AsyncElasticsearch | None = (
            AsyncElasticsearch(settings.search_url, request_timeout=10)
            if settings.search_url
            else None
        )
        self.content = ContentStore(settings)
        self.app, self.course_state = build_app(settings)
        self.changelog = ChangelogWriter(settings.kafka_bootstrap_servers)
        store = self.course_state.data  # tables/store.UnitStore
        applier = BatchApplier(
            self.course_state.changelog_topic.get_topic_name(),
            self.changelog,
            store,
            self.publisher,
            self.course_cache,
            lambda: int(self.app.consumer_generation_id),
            CrashPoints(settings.test_crash_at),
        )
        batch = Batch(store, self.codec.encode, decode_value)
        register_course_agent(self.app, self.codec, batch, applier, self._recovered_partitions)
        self.partition_watch = PartitionWatch(self.app)
        self.app.on_partitions_assigned.connect(self._on_assignment)
        self._groups: list[GroupConsumer] = []
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        settings = self.settings
        await register_schemas(self.codec)
        await self.publisher.start()
        await self.changelog.start()
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [TopicSpec(self.replies.topic, None, REPLY_TOPIC_CONFIG, partitions=1)],
            1,
        )
        await self.replies.start()
        await self.database.start()
        self._groups = self._consumer_groups()
        for group in self._groups:
            await group.start()
        await self.content.start()
        await self.partition_watch.start()
        self._runner = web.AppRunner(
            self._http_app(), access_log=None, handle_signals=False, **SERVER_LIMITS
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        log.info("api listening", extra={"url": settings.public_base_url})

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.partition_watch.stop()
        for group in self._groups:
            await group.stop()
        await self.replies.stop()
        await self.content.stop()
        await self.publisher.stop()
        await self.changelog.stop()
        await self.database.stop()
        await self.redis.aclose()
        if self.search is not None:
            await self.search.close()
        await delete_topic(self.settings.kafka_bootstrap_servers, self.replies.topic)

    # -- the parts -----------------------------------------------------------------------

    def _rate_limit(self, bypass: ReadBypass) -> Middleware | None:
        settings = self.settings
        if not settings.rate_limits:
            return None
        budgets = Budgets(
            read=Budget("read", settings.rate_limit_reads_per_minute, 60),
            write=Budget("write", settings.rate_limit_writes_per_minute, 60),
            service_read=Budget("service-read", settings.rate_limit_service_reads_per_minute, 60),
            service_write=Budget(
                "service-write", settings.rate_limit_service_writes_per_minute, 60
            ),
            trust_forwarded=settings.rate_limit_trust_forwarded,
        )
        endpoints = {ep.handler.__name__: ep for ep in ENDPOINTS}
        return rate_limit_middleware(RateLimiter(self.redis), budgets, endpoints, bypass)

    def _consumer_groups(self) -> list[GroupConsumer]:
        """The router, and the sinks unless `course-management sink` runs them apart."""
        bootstrap = self.settings.kafka_bootstrap_servers
        dead_letter = self.publisher.send_dead_letter
        router = EnrollmentRouter(self.codec, self.publisher.send_encoded, dead_letter)
        member = membership(self.settings)
        groups = [GroupConsumer(bootstrap, ROUTER_GROUP, router.handlers(), dead_letter, member)]
        if self.settings.run_sinks:
            groups += sink_groups(
                bootstrap,
                self.codec,
                self.database,
                self.catalog_pages,
                self.search,
                dead_letter,
                member,
            )
        return groups

    def _http_app(self) -> web.Application:
        settings = self.settings
        backend = (
            elastic.EsCatalog(self.search)
            if self.search is not None
            else postgres.PgCatalog(self.database.pool)
        )
        bypass = ReadBypass()
        reads = ReadService(
            self.course_state,
            self._is_local,
            self.course_cache,
            bypass,
            self.database,
            CatalogSearch(backend, self.catalog_pages, bypass),
            wait_s=settings.consistency_wait_seconds,
        )
        return create_app(
            writes=WriteGateway(self.publisher, self.replies, settings.command_timeout_seconds),
            reads=reads,
            readiness=self,
            verifier=TokenVerifier(
                secret=settings.jwt_secret,
                public_key_pem=settings.jwt_public_key,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                jwks=JwksKeys(settings.jwt_jwks_url) if settings.jwt_jwks_url else None,
            ),
            content=self.content,
            # Its own bypass, with a short cooldown: writes are refused only while Redis
            # is really unreachable, not for the reads' cooldown after it came back.
            rate_limit=self._rate_limit(ReadBypass(cooldown_s=1.0)),
            access_log=AccessLog(settings.access_log_sample, settings.access_log_slow_ms / 1000),
            upload_limits={
                "multipart_threshold": settings.upload_multipart_threshold_bytes,
                "part_size": settings.upload_part_size_bytes,
            },
        )

    def _is_local(self, course_id: str) -> bool:
        """Does this worker own the course's partition (and so its table rows)?"""
        partition = murmur2(course_id.encode()) & 0x7FFFFFFF
        partition %= self.settings.topic_partitions
        return TP(COURSE_COMMANDS, partition) in self.app.assignor.assigned_actives()

    @Service.task
    async def _freeze_the_heap_once_recovered(self) -> None:
        """Once the tables have recovered, move every object alive then out of the garbage
        collector's sight (gc.freeze): the start-up heap (Faust, the schemas, the routes)
        is never garbage, and scanning it made each full collection pause the loop for
        110-130 ms, the p99 of a cached read (issue 13, decision 41)."""
        await self.app.tables.recovery.completed.wait()
        gc.collect()
        gc.freeze()
        log.info("heap frozen after recovery", extra={"objects": gc.get_freeze_count()})

    def changelog_stores(self) -> dict[str, Any]:
        """The table's changelog topic and its local RocksDB store."""
        return {self.course_state.changelog_topic.get_topic_name(): self.course_state.data}

    def _recovered_partitions(self) -> set[int]:
        """The course partitions this worker owns, once their table is recovered."""
        recovery = self.app.tables.recovery
        if not recovery.completed.is_set() or recovery.in_recovery or self.app.rebalancing:
            return set()
        actives = self.app.assignor.assigned_actives()
        return {tp.partition for tp in actives if tp.topic == COURSE_COMMANDS}

    async def _on_assignment(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        """Counts the rebalance, and notes what the next start restores before Faust does
        after a crash (decision 44)."""
        REBALANCES.inc()
        remember_assignment(Path(self.app.conf.datadir), assigned, set(self.changelog_stores()))

    @Service.timer(READY_EVERY_S)
    async def _report_readiness(self) -> None:
        """`cms_ready` from the worker itself, every few seconds: set only by `/readyz`, it
        stayed at its last value when nothing probed (a restarted worker showed 0)."""
        READY.set(1 if all((await self.readiness()).values()) else 0)

    # -- readiness (api.ports.Readiness) -------------------------------------------------

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
            "kafka": self.publisher.probe(),
            "postgres": self.database.probe(),
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


class _FaustWorker(faust.Worker):
    """Leaves the clean-stop marker once everything stopped without a crash."""

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()
        if not self.crashed and not self.app.crashed:
            mark_clean_stop(Path(self.app.conf.datadir))


def _refuse_start(reason: str) -> None:
    print(f"start-up refused: {reason}", file=sys.stderr)
    sys.exit(STARTUP_REFUSED_EXIT_CODE)


def _wait_for_broker(settings: Settings) -> None:
    """A worker restarted during a broker outage waits it out (STARTUP_WAIT_SECONDS), rather
    than exiting: its restore, producer and consumers all need the broker (the chaos run
    found restarts failing there)."""
    bootstrap = settings.kafka_bootstrap_servers
    try:
        asyncio.run(until_broker_answers(bootstrap, settings.startup_wait_seconds))
    except KafkaError as exc:
        _refuse_start(
            f"no broker of KAFKA_BOOTSTRAP_SERVERS ({bootstrap}) answered in "
            f"{settings.startup_wait_seconds:.0f} s: {exc}"
        )


def run_worker(settings: Settings) -> None:
    """Run the Faust worker with the API beside it until SIGTERM/SIGINT."""
    if settings.event_loop == "uvloop":  # before any loop exists (issue 13, decision 41)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:  # the private Faust names this service relies on are all there
        faust_compat.check()
    except faust_compat.FaustChanged as exc:
        _refuse_start(f"{exc} (see course_management/streams/faust_compat.py)")
    try:  # the registry accepts every schema
        asyncio.run(register_schemas(AvroCodec(settings.schema_registry_url)))
    except SchemaRegistrationError as exc:
        _refuse_start(str(exc))
    worker = Worker(settings)
    conf = worker.app.conf
    logging.config.dictConfig(logging_config(settings.log_level))  # JSON from the first line
    _wait_for_broker(settings)
    if discard_after_unclean_stop(Path(conf.datadir), Path(conf.tabledir)):
        LOCAL_TABLES_DISCARDED.inc()
        if settings.restore_before_start:  # much faster than Faust's own restore (decision 44)
            restored = asyncio.run(
                restore_from_changelogs(
                    settings.kafka_bootstrap_servers,
                    worker.changelog_stores(),
                    remembered_assignment(Path(conf.datadir)),
                    after_write=functools.partial(
                        CrashPoints(settings.test_crash_at).reached, "restoring"
                    ),
                )
            )
            CHANGELOG_RECORDS_RESTORED.inc(restored.records)
    faust_worker = _FaustWorker(
        worker.app,
        worker,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        redirect_stdouts=False,
    )
    faust_worker.execute_from_commandline()
