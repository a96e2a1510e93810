"""Readiness probes, staggered: one server asked per tick, in turn, results kept.

`/readyz` and `cms_ready` read the kept results and ask nothing themselves. Before, every
readiness check asked the broker for all topics' metadata, the registry, PostgreSQL and
Redis at once, on the event loop that answers requests (issue 22); now each server is
asked once per round (a few seconds), one at a time, with a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

Probe = Callable[[], Awaitable[object]]

PROBE_TIMEOUT_S = 2.0
PROBE_EVERY_S = 1.0  # one server asked per tick


class Probes:
    def __init__(self, probes: dict[str, Probe]) -> None:
        self._probes = probes
        self._turns = itertools.cycle(list(probes))
        self.results: dict[str, bool] = {name: False for name in probes}

    async def tick(self) -> None:
        """Ask the next server in turn."""
        name = next(self._turns)
        self.results[name] = await self.ask(name)

    async def round(self) -> dict[str, bool]:
        """Ask every server now (at start-up, before the first ticks)."""
        answers = await asyncio.gather(*(self.ask(name) for name in self._probes))
        self.results = dict(zip(self._probes, answers, strict=True))
        return self.results

    async def ask(self, name: str) -> bool:
        try:
            await asyncio.wait_for(self._probes[name](), PROBE_TIMEOUT_S)
        except Exception:
            return False
        return True
