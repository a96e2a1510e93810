"""The composition root: one worker process, built and run.

`Worker` builds every client (the shared ones through infra/clients.py, as the sink
process does), the Faust app with its tables and the course agent, the
consumer groups (router, mirror and catalog sinks), the partition watch and the HTTP
API, and owns their lifecycle and the worker's readiness. Nothing else lives here: each
part is in its own module and gets only the collaborators it uses.

`Worker` is a mode Service handed to the Faust worker before the app itself, so the
clients exist before any agent runs and `/healthz` answers while tables recover.

Where things happen (see docs/architecture.md):
- a request enters:  api/middleware.py, then api/routes_*.py
- a write is sent:   gateways/writes.py (course-commands, user-enrolled, course-progress)
- a rule decides:    domain/
- an event leaves:   streams/apply.py (the course agent's outboxes, through infra/publisher.py)
- stores are written: the table (streams/apply.py), PostgreSQL mirror (sinks/mirror.py),
  PostgreSQL catalog and Elasticsearch (sinks/catalog.py), Redis (streams/apply.py)
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiokafka.partitioner import murmur2
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
from course_management.domain.webhooks import parse_sealing_key
from course_management.gateways.history import HistoryReads
from course_management.gateways.live_events import LiveEvents
from course_management.gateways.reads import ReadGateway
from course_management.gateways.webhooks import WebhookGateway
from course_management.gateways.writes import KafkaWriteGateway
from course_management.infra.cache import CatalogCache, CourseCache, ReadBypass
from course_management.infra.changelog import ChangelogWriter
from course_management.infra.clients import Clients, membership, stop_in_turn
from course_management.infra.consumer_group import GroupConsumer
from course_management.infra.heap import settle_heap
from course_management.infra.kafka import delete_topic, ensure_topics, topic_partitions
from course_management.infra.metrics import (
    EVENT_LOOP_LAG,
    PROCESS_RSS,
    READY,
    REBALANCES,
    ROCKSDB_MEMORY,
    resident_bytes,
)
from course_management.infra.probes import PROBE_EVERY_S, Probes
from course_management.infra.rate_limit import Budget, RateLimiter
from course_management.infra.replies import ReplyListener
from course_management.infra.retrying import until_started
from course_management.infra.sealing import Sealer
from course_management.infra.storage import ContentStore
from course_management.infra.webhook_sender import WebhookSender
from course_management.sinks.groups import sink_groups
from course_management.streams.agent import PartitionRewinder, register_course_agent
from course_management.streams.app import build_app
from course_management.streams.apply import BatchApplier
from course_management.streams.batch import Batch
from course_management.streams.completions import CompletionIndex
from course_management.streams.crash_points import CrashPoints, paused_before
from course_management.streams.partition_watch import PartitionWatch
from course_management.streams.router import EnrollmentRouter
from course_management.streams.webhook_dispatch import WebhookDispatcher, position_writer
from course_management.streams.webhook_registry import WebhookRegistry
from course_management.tables.restore import (
    remember_assignment,
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

TOPICS_EVERY_S = 1.0
MEMORY_EVERY_S = 10.0
LOOP_LAG_EVERY_S = 0.25


class Worker(Service):
    """Shared clients, the Faust app, the consumer groups and the API server."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.clients = clients = Clients(settings)  # registered by startup.py, started here
        self.codec, self.publisher = clients.codec, clients.publisher
        self.database, self.redis, self.search = clients.database, clients.redis, clients.search
        self.replies = ReplyListener(
            settings.kafka_bootstrap_servers,
            reply_topic(settings.worker_id),
            lambda raw: self.codec.decode(REPLY_SUBJECT, raw),
        )
        self.course_cache = CourseCache(self.redis)
        self.catalog_pages = CatalogCache(self.redis)
        self.content = ContentStore(settings)
        self.app, self.course_state = build_app(settings)
        self.changelog = ChangelogWriter(settings.kafka_bootstrap_servers)
        store = self.course_state.data  # tables/store.UnitStore
        self.applier = applier = BatchApplier(
            self.course_state.changelog_topic.get_topic_name(),
            self.changelog,
            store,
            self.publisher,
            self.course_cache,
            lambda: int(self.app.consumer_generation_id),
            CrashPoints(settings.test_crash_at),
        )
        self.completions = CompletionIndex(settings.kafka_bootstrap_servers, self.codec)
        self.live = LiveEvents(
            settings.kafka_bootstrap_servers, self.codec, settings.sse_max_streams
        )
        self.webhooks = WebhookRegistry(settings.kafka_bootstrap_servers, self.codec)
        key = settings.webhook_sealing_key
        self.sealer = Sealer(parse_sealing_key(key)) if key else None
        self.sender = WebhookSender(settings.webhook_allow_loopback)
        self.dispatcher = WebhookDispatcher(
            settings.kafka_bootstrap_servers,
            self.codec,
            self.webhooks,
            self.sealer,
            self.sender.post,
            position_writer(self.publisher),
            settings.webhook_retry_scale,
            owner=f"{settings.worker_id}/{uuid.uuid4().hex[:12]}",
            fence_hold_s=settings.webhook_fence_hold_seconds,
        )
        batch = Batch(store, self.codec.encode, decode_value, self.completions)
        rewinder = PartitionRewinder(self.app)  # the one rewinder of the agent's consumer
        register_course_agent(
            self.app, self.codec, batch, applier, self._recovered_partitions, rewinder
        )
        self.partition_watch = PartitionWatch(self.app, rewinder)
        self.app.on_partitions_assigned.connect(self._on_assignment)
        self._groups: list[GroupConsumer] = []
        self._runner: web.AppRunner | None = None
        self._probes = Probes(clients.probes())

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Every step that talks to a server waits out its outage (STARTUP_WAIT_SECONDS):
        a worker restarted while the broker restarts waits instead of exiting. (The
        schemas were registered before, once: startup.py.)"""
        settings = self.settings
        step = self.start_step
        await self.clients.start(step)  # publisher, topics, database pool
        await step("changelog", self.changelog.start)
        await step(
            "reply-topic",
            lambda: ensure_topics(
                settings.kafka_bootstrap_servers,
                [TopicSpec(self.replies.topic, None, REPLY_TOPIC_CONFIG, partitions=1)],
                1,
            ),
        )
        await step("replies", self.replies.start)
        await step("completions", self.completions.start)
        await step("live", self.live.start)
        await step("webhooks", self.webhooks.start)
        await step("webhook-deliveries", self.dispatcher.start)
        self._groups = self._consumer_groups()
        for group in self._groups:
            await step("groups", group.connect)
            await group.start()
        await self.content.start()
        await self.partition_watch.start()
        self._runner = web.AppRunner(
            self._http_app(), access_log=None, handle_signals=False, **SERVER_LIMITS
        )
        await self._runner.setup()
        await self._probes.round()
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        log.info("api listening", extra={"url": settings.public_base_url})
        # Faust starts its producer next, once, without waiting out an outage: a broker
        # restarting now is waited for here (the window left is the moment between).
        await step(
            "broker", lambda: topic_partitions(settings.kafka_bootstrap_servers, COURSE_COMMANDS)
        )

    async def start_step(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One step of the start (infra/clients.py `Step`), paused before when a test asks
        (TEST_PAUSE_AT)."""
        await paused_before(name, self.settings, Path(self.app.conf.datadir))
        return await until_started(call, self.settings.startup_wait_seconds)

    async def on_stop(self) -> None:
        """Each step is bounded: a stop during an outage ends (its reply topic may stay,
        deleted by its retention)."""
        await (
            self.live.stop()
        )  # every open stream ends cleanly, before the server stops (never raises)
        if self._runner is not None:
            await self._runner.cleanup()
        await stop_in_turn(
            [
                ("webhook deliveries", self.dispatcher.stop),
                ("webhook registry", self.webhooks.stop),
                ("webhook sender", self.sender.close),
                ("partition watch", self.partition_watch.stop),
                *((f"group {g.group_id}", g.stop) for g in self._groups),
                ("replies", self.replies.stop),
                ("completions", self.completions.stop),
                ("content", self.content.stop),
                ("changelog", self.changelog.stop),
                *self.clients.stop_steps(),  # publisher, database, redis, search
                (
                    "reply topic",
                    lambda: delete_topic(self.settings.kafka_bootstrap_servers, self.replies.topic),
                ),
            ]
        )

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
            groups += sink_groups(bootstrap, self.clients, self.catalog_pages, member)
        return groups

    def _http_app(self) -> web.Application:
        settings = self.settings
        backend = (
            elastic.EsCatalog(self.search)
            if self.search is not None
            else postgres.PgCatalog(self.database.pool)
        )
        bypass = ReadBypass()
        reads = ReadGateway(
            self.course_state,
            self._is_local,
            self.course_cache,
            bypass,
            self.database,
            CatalogSearch(backend, self.catalog_pages, bypass),
            wait_s=settings.consistency_wait_seconds,
        )
        return create_app(
            writes=KafkaWriteGateway(
                self.publisher, self.replies, settings.command_timeout_seconds
            ),
            reads=reads,
            history=HistoryReads(self.database, wait_s=settings.consistency_wait_seconds),
            live=self.live,
            webhooks=WebhookGateway(
                self.webhooks,
                self.publisher,
                self.sealer,
                settings.webhook_allow_loopback,
                lambda: self.live.partitions,
            ),
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
        """Once the tables have recovered: the start-up heap out of the collector's sight,
        and full collections rarer (infra/heap.py; decisions 41 and 64)."""
        await self.app.tables.recovery.completed.wait()
        frozen = settle_heap(self.settings.gc_old_threshold)
        log.info("heap frozen after recovery", extra={"objects": frozen})

    def changelog_stores(self) -> dict[str, Any]:
        """The table's changelog topic and its local RocksDB store."""
        return {self.course_state.changelog_topic.get_topic_name(): self.course_state.data}

    def _recovered_partitions(self) -> set[int]:
        """The course partitions this worker owns, once their table is recovered; none
        while it stops (the tables close while the agent still runs, decision 65)."""
        recovery = self.app.tables.recovery
        if not recovery.completed.is_set() or recovery.in_recovery or self.app.rebalancing:
            return set()
        if self.app.should_stop:
            return set()
        actives = self.app.assignor.assigned_actives()
        return {tp.partition for tp in actives if tp.topic == COURSE_COMMANDS}

    async def _on_assignment(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        """Counts the rebalance, and notes what the next start restores before Faust does
        after a crash (decision 44)."""
        REBALANCES.inc()
        remember_assignment(Path(self.app.conf.datadir), assigned, set(self.changelog_stores()))

    @Service.timer(PROBE_EVERY_S)
    async def _probe_one(self) -> None:
        """One server asked per tick (infra/probes.py); `cms_ready` set from the results:
        set only by `/readyz`, it stayed at its last value when nothing probed."""
        await self._probes.tick()
        READY.set(1 if all((await self.readiness()).values()) else 0)

    @Service.timer(TOPICS_EVERY_S)
    async def _read_topics(self) -> None:
        """The broker's topics, for the replies (infra/publisher.py) and readiness."""
        try:
            await self.publisher.refresh_topics()
        except Exception:  # the broker away: readiness says so, the next tick tries again
            log.debug("topics not read", exc_info=True)

    @Service.timer(MEMORY_EVERY_S)
    async def _report_memory(self) -> None:
        """The process's RSS beside RocksDB's own memory (bench/soak.py reads both)."""
        for kind, size in self.course_state.data.memory().items():
            ROCKSDB_MEMORY.labels(kind).set(size)
        PROCESS_RSS.set(resident_bytes())

    @Service.task
    async def _measure_loop_lag(self) -> None:
        """How late the event loop wakes a sleeper (`cms_event_loop_lag_seconds`): what a
        request or a batch waits before it runs at all, so a tail can be attributed."""
        loop = asyncio.get_running_loop()
        while not self.should_stop:
            asked = loop.time()
            await asyncio.sleep(LOOP_LAG_EVERY_S)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked - LOOP_LAG_EVERY_S))

    # -- readiness (api.ports.Readiness) -------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """The tables' state now, the servers' as last probed (one per tick)."""
        recovery = self.app.tables.recovery
        return {
            "tables_recovered": bool(
                recovery.completed.is_set()
                and not recovery.in_recovery
                and not self.app.rebalancing
            ),
            **self._probes.results,
        }
