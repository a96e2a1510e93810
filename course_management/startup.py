"""Starting a worker process: the checks before anything starts (the schemas registered,
once per start), the restore of the tables after a crash (decision 44), then the Faust
worker with the composition root of worker.py, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.config
import sys
from collections.abc import Callable
from pathlib import Path

import faust
from aiokafka.errors import KafkaError

from course_management.config import Settings
from course_management.infra.avro import SchemaRegistrationError
from course_management.infra.logs import logging_config
from course_management.infra.metrics import CHANGELOG_RECORDS_RESTORED, LOCAL_TABLES_DISCARDED
from course_management.infra.retrying import until_broker_answers
from course_management.streams import faust_compat
from course_management.streams.crash_points import CrashPoints
from course_management.streams.local_state import (
    discard_after_unclean_stop,
    mark_clean_stop,
    remember_published,
    remembered_published,
)
from course_management.tables.restore import remembered_assignment, restore_from_changelogs
from course_management.worker import Worker

STARTUP_REFUSED_EXIT_CODE = 3


class _FaustWorker(faust.Worker):
    """Leaves the clean-stop marker, and what the agent published, once everything
    stopped without a crash."""

    published: Callable[[], dict[int, int]] = dict

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()
        if not self.crashed and not self.app.crashed:
            datadir = Path(self.app.conf.datadir)
            remember_published(datadir, self.published())
            mark_clean_stop(datadir)


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


def _register_schemas(worker: Worker) -> None:
    """Every schema, once per start, before anything else starts (the worker's clients
    start registered: infra/clients.py). A schema the registry refuses refuses the start;
    an unreachable registry is waited out, as by every start step."""

    async def register() -> None:
        try:
            await worker.clients.register_schemas(worker.start_step)
        finally:  # its connections belong to this loop, not to Faust's
            await worker.clients.codec.release()

    try:
        asyncio.run(register())
    except SchemaRegistrationError as exc:
        _refuse_start(str(exc))


def run_worker(settings: Settings) -> None:
    """Run the Faust worker with the API beside it until SIGTERM/SIGINT."""
    if settings.event_loop == "uvloop":  # before any loop exists (issue 13, decision 41)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:  # the private Faust names this service relies on are all there
        faust_compat.check()
    except faust_compat.FaustChanged as exc:
        _refuse_start(f"{exc} (see course_management/streams/faust_compat.py)")
    worker = Worker(settings)
    conf = worker.app.conf
    logging.config.dictConfig(logging_config(settings.log_level))  # JSON from the first line
    _register_schemas(worker)
    _wait_for_broker(settings)
    datadir = Path(conf.datadir)
    if not discard_after_unclean_stop(datadir, Path(conf.tabledir)):
        worker.applier.trust_published(remembered_published(datadir))
    else:
        LOCAL_TABLES_DISCARDED.inc()
        if settings.restore_before_start:  # much faster than Faust's own restore (decision 44)
            restored = asyncio.run(
                restore_from_changelogs(
                    settings.kafka_bootstrap_servers,
                    worker.changelog_stores(),
                    remembered_assignment(datadir),
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
    faust_worker.published = worker.applier.published
    faust_worker.execute_from_commandline()
