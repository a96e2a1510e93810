"""The sinks: the consumer groups that write the derived stores from the topics.

- the PostgreSQL group: the mirror (course, enrollment and rating events) and the
  PostgreSQL catalog (catalog entries);
- the search group: the Elasticsearch index (catalog entries), when a node is set.

A worker runs them beside its agents (`RUN_SINKS=true`, the default); `course-management
sink` runs them alone, so that a deployment can scale them apart from the agents (issue
13): they share nothing with the agents but the topics, and each group shares its
partitions among all the processes that run it.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import signal

from aiohttp import web
from elasticsearch import AsyncElasticsearch
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from course_management.catalog import elastic, postgres
from course_management.catalog.sinks import CatalogSink
from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.cache import CatalogCache, new_redis
from course_management.infra.consumer_group import GroupConsumer, Membership
from course_management.infra.database import UNAVAILABLE as PG_UNAVAILABLE
from course_management.infra.database import Database
from course_management.infra.dead_letters import DeadLetter
from course_management.infra.logs import logging_config
from course_management.infra.publisher import Publisher
from course_management.infra.retrying import until_broker_answers, until_started
from course_management.ops.provisioning import register_schemas
from course_management.streams.mirror import EventMirror
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_EVENTS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    POSTGRES_GROUP,
    SEARCH_GROUP,
)

log = logging.getLogger(__name__)


def membership(settings: Settings) -> Membership:
    """This process's membership of its plain consumer groups (static with
    STATIC_MEMBERSHIP, as the Faust app's: streams/app.py)."""
    instance = settings.worker_id if settings.static_membership else None
    return Membership(instance, settings.broker_session_timeout_seconds)


def sink_groups(
    bootstrap: str,
    codec: AvroCodec,
    database: Database,
    catalog_pages: CatalogCache,
    search: AsyncElasticsearch | None,
    dead_letter: DeadLetter,
    member: Membership,
) -> list[GroupConsumer]:
    """The PostgreSQL group, and the search group when there is a search node."""
    mirror = EventMirror(codec, database, dead_letter)
    postgres_catalog = CatalogSink(
        "postgres",
        lambda entries: postgres.write_catalog_entries(database.pool, entries),
        PG_UNAVAILABLE,
        codec,
        catalog_pages.invalidate,
        dead_letter,
    )
    groups = [
        GroupConsumer(
            bootstrap,
            POSTGRES_GROUP,
            {
                COURSE_EVENTS: mirror.course_events,
                ENROLLMENT_EVENTS: mirror.enrollment_events,
                COURSE_RATINGS: mirror.ratings,
                COURSE_CATALOG: postgres_catalog,
            },
            dead_letter,
            member,
        )
    ]
    if search is not None:
        search_catalog = CatalogSink(
            "elasticsearch",
            lambda entries: elastic.write_catalog_entries(search, entries),
            (*elastic.UNAVAILABLE, OSError),
            codec,
            catalog_pages.invalidate,
            dead_letter,
        )
        groups.append(
            GroupConsumer(
                bootstrap, SEARCH_GROUP, {COURSE_CATALOG: search_catalog}, dead_letter, member
            )
        )
    return groups


async def _serve(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers  # a restart during an outage waits it out
    await until_broker_answers(bootstrap, settings.startup_wait_seconds)
    wait_s = settings.startup_wait_seconds  # each step waits out an outage (issue 22)
    codec = AvroCodec(settings.schema_registry_url)
    await until_started(lambda: register_schemas(codec), wait_s)
    publisher = Publisher(settings.kafka_bootstrap_servers, codec)  # for dead letters
    database = Database(settings.database_url)
    redis = new_redis(settings.redis_url)
    search = AsyncElasticsearch(settings.search_url) if settings.search_url else None
    await until_started(publisher.start, wait_s)
    await database.start()
    groups = sink_groups(
        settings.kafka_bootstrap_servers,
        codec,
        database,
        CatalogCache(redis),
        search,
        publisher.send_dead_letter,
        membership(settings),
    )
    for group in groups:
        await until_started(group.connect, wait_s)
        await group.start()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": "sink"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)  # ready once its groups have started
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("sinks running", extra={"groups": [g.group_id for g in groups]})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        for group in groups:
            await group.stop()
        await publisher.stop()
        await database.stop()
        await redis.aclose()
        if search is not None:
            await search.close()


def run_sinks(settings: Settings) -> None:
    """Run the sinks alone until SIGTERM/SIGINT (`course-management sink`)."""
    logging.config.dictConfig(logging_config(settings.log_level))
    if settings.event_loop == "uvloop":
        import uvloop

        uvloop.run(_serve(settings))
    else:
        asyncio.run(_serve(settings))
