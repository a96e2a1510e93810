"""Crash injection at the course agent's phase boundaries, for the tests that prove no
crash loses or doubles anything (tests/integration/test_crash_points.py).

Set only by tests, through TEST_CRASH_AT=`<phase>[:<n>]`: the worker SIGKILLs itself
the n-th time (default 1) it reaches that phase with inputs in hand. Unset, `reached`
costs one comparison.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PHASES = (
    "decided",  # every input of the batch decided, nothing sent
    "unit-sent",  # the units handed to the producer, their acks not awaited
    "unit-acked",  # the units durable, the local store not written
    "local-partial",  # one partition's local store written, not the others'
    "local-written",  # every local store written, the outboxes not sent
    "outbox-sent",  # the outboxes handed to the producer, not acked; Redis not written
    "cached",  # Redis written, the replies not sent
    "replied",  # the replies sent, the outboxes maybe not acked
    "outbox-acked",  # the events, catalog entries and dead letters durable, the inputs
    # not acked nor committed
    "restoring",  # the restore before start has written part of a changelog
)


class CrashPoints:
    def __init__(self, setting: str | None) -> None:
        self._phase: str | None = None
        self._left = 0
        if setting:
            phase, _, times = setting.partition(":")
            if phase not in PHASES:
                raise ValueError(f"TEST_CRASH_AT: no phase {phase!r} (one of {', '.join(PHASES)})")
            self._phase, self._left = phase, int(times or "1")

    def reached(self, phase: str) -> None:
        if phase != self._phase:
            return
        self._left -= 1
        if self._left <= 0:
            log.critical("TEST_CRASH_AT: crashing", extra={"phase": phase})
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)


_PAUSED: set[str] = set()
START_STEPS = (
    "registry",
    "publisher",
    "topics",
    "changelog",
    "reply-topic",
    "replies",
    "groups",
    "broker",
)


async def paused_before(step: str, settings: Any, datadir: Path) -> None:
    """Tests only (TEST_PAUSE_AT=<step>): before that start-up step, wait while the file
    `paused-at-<step>` the worker made in its data folder exists (the test removes it
    once it has stopped a server)."""
    if settings.test_pause_at != step or step in _PAUSED:
        return
    _PAUSED.add(step)  # once: the consumer groups' step comes once per group
    marker = datadir / f"paused-at-{step}"
    marker.write_text("remove this file to let the worker go on\n")
    log.warning("TEST_PAUSE_AT: paused", extra={"step": step})
    while marker.exists():  # noqa: ASYNC110 - a file another process removes: polled
        await asyncio.sleep(0.05)
