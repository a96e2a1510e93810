"""Carries out a schedule: kills, terminations and restarts of the workers, a joining
worker, and outages of the broker, PostgreSQL, Elasticsearch and Redis.

Each fault is noted in the history when it begins and when it is over. The blocking
steps (a server's stop and start) run in threads so the load goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from chaos.history import History
from chaos.schedule import Fault
from tests.support import WorkerProcess


class Injector:
    def __init__(
        self,
        history: History,
        workers: dict[str, WorkerProcess],
        server: Callable[[str], Any],
        extra_env: dict[str, str],
    ) -> None:
        self.history = history
        self.workers = workers
        self.server = server
        self.extra_env = extra_env
        self.done: list[dict[str, Any]] = []  # each fault carried out, with its timings
        self.skipped: list[dict[str, Any]] = []

    async def run(self, schedule: list[Fault], t0: float) -> None:
        """Every fault at its time (seconds after `t0`, a `time.monotonic()`)."""
        await asyncio.gather(*(self._at(fault, t0) for fault in schedule))

    async def _at(self, fault: Fault, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
        began = self.history.now()
        self.history.note("fault", **fault.shown())
        try:
            carried_out = await getattr(self, "_" + fault.kind.replace("-", "_"))(fault)
        except Exception as exc:
            self.history.note("fault failed", error=repr(exc), **fault.shown())
            raise
        if not carried_out:
            self.skipped.append(fault.shown())
            self.history.note("fault skipped", **fault.shown())
            return
        over = self.history.now()
        self.done.append({**fault.shown(), "began": began, "over": over})
        self.history.note("fault over", **fault.shown())

    def _running(self, name: str) -> bool:
        proc = self.workers[name].proc
        return proc is not None and proc.poll() is None

    async def _sigkill(self, fault: Fault) -> bool:
        if not self._running(fault.target):
            return False
        self.workers[fault.target].kill()
        await asyncio.sleep(fault.hold_s)
        self.workers[fault.target].start(self.extra_env)
        return True

    async def _sigterm(self, fault: Fault) -> bool:
        if not self._running(fault.target):
            return False
        await asyncio.to_thread(self.workers[fault.target].stop, 60)
        await asyncio.sleep(fault.hold_s)
        self.workers[fault.target].start(self.extra_env)
        return True

    async def _join(self, fault: Fault) -> bool:
        self.workers[fault.target].start(self.extra_env)
        return True

    async def _broker_restart(self, fault: Fault) -> bool:
        kafka = self.server("kafka")
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(kafka.restart)
        return True

    async def _postgresql_stop(self, fault: Fault) -> bool:
        return await self._outage("postgresql", fault.hold_s, "restart")

    async def _elasticsearch_stop(self, fault: Fault) -> bool:
        return await self._outage("elasticsearch", fault.hold_s, "restart")

    async def _redis_stop(self, fault: Fault) -> bool:
        return await self._outage("redis", fault.hold_s, "start")

    async def _outage(self, name: str, hold_s: float, again: str) -> bool:
        server = self.server(name)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(hold_s)
        await asyncio.to_thread(getattr(server, again))
        return True
