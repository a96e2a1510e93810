"""`course-management sink`: the sinks alone in a process (decision 42), with the
worker's client lifecycle (infra/clients.py) and its staggered readiness probes
(infra/probes.py): `/readyz` says whether Kafka, the schema registry, PostgreSQL, Redis
and Elasticsearch (with SEARCH_URL) answered when last asked.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from course_management.config import Settings
from course_management.infra.cache import CatalogCache
from course_management.infra.clients import Clients, membership, stop_in_turn, waiting
from course_management.infra.logs import logging_config
from course_management.infra.metrics import READY
from course_management.infra.probes import PROBE_EVERY_S, Probes
from course_management.infra.retrying import until_broker_answers
from course_management.sinks.groups import sink_groups

log = logging.getLogger(__name__)


def http_app(probes: Probes) -> web.Application:
    """Liveness, readiness (the servers as last probed, asking nothing) and metrics."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": "sink"})

    async def readyz(request: web.Request) -> web.Response:
        checks = dict(probes.results)
        ready = all(checks.values())
        READY.set(1 if ready else 0)
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def probe_in_turn(probes: Probes) -> None:
    """One server asked per tick, `cms_ready` set from the results (as the worker does)."""
    while True:
        await asyncio.sleep(PROBE_EVERY_S)
        await probes.tick()
        READY.set(1 if all(probes.results.values()) else 0)


async def _serve(settings: Settings) -> None:
    wait_s = settings.startup_wait_seconds  # each step waits out an outage (issue 22)
    bootstrap = settings.kafka_bootstrap_servers  # a restart during an outage waits it out
    await until_broker_answers(bootstrap, wait_s)
    step = waiting(wait_s)
    clients = Clients(settings)
    await clients.register_schemas(step)
    await clients.start(step)
    groups = sink_groups(bootstrap, clients, CatalogCache(clients.redis), membership(settings))
    for group in groups:
        await step("groups", group.connect)
        await group.start()
    # No background reading of the topics here (the worker's): the probe asks the broker.
    probes = Probes(clients.probes(kafka=clients.publisher.refresh_topics))
    await probes.round()
    runner = web.AppRunner(http_app(probes), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    probing = asyncio.create_task(probe_in_turn(probes))
    log.info("sinks running", extra={"groups": [g.group_id for g in groups]})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        probing.cancel()
        await runner.cleanup()
        await stop_in_turn(
            [*((f"group {g.group_id}", g.stop) for g in groups), *clients.stop_steps()]
        )


def run_sinks(settings: Settings) -> None:
    """Run the sinks alone until SIGTERM/SIGINT (`course-management sink`)."""
    logging.config.dictConfig(logging_config(settings.log_level))
    if settings.event_loop == "uvloop":
        import uvloop

        uvloop.run(_serve(settings))
    else:
        asyncio.run(_serve(settings))
