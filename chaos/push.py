"""Push through the faults (issue 28): a webhook receiver subscribed to every event of
every course, and a live-stream client following one course, both running from before
the load until everything published has reached them.

- The receiver (on 127.0.0.1) answers a seeded tenth of the attempts with a 503 (so the
  retries run too) and checks each delivery's signature with the `standardwebhooks`
  verifier; it keeps the accepted deliveries in order.
- The stream client reconnects with its `Last-Event-ID` after any end or error, to a
  worker that runs (another one each time), and keeps what it received in order.
- `check_push` (pure) then wants: every event of the subscription at least once, in its
  topic's order per course (first deliveries; repeats are at least once), nothing that
  was never published, every signature good; and of the stream: every event of its
  course exactly once, in each topic's order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from httpx_sse import aconnect_sse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chaos.load import Target
from course_management.domain.webhooks import EVENT_TYPES

EVERY_TYPE = sorted(EVENT_TYPES)  # the subscription takes every kind there is
FAIL_SHARE = 0.1
LEAVE_SHARE = 0.05  # the stream client reconnects elsewhere after about one event in 20

log = logging.getLogger(__name__)


@dataclass
class Receiver:
    seed: int
    secret: str = ""
    received: list[str] = field(default_factory=list)  # event ids, as accepted
    bad_signatures: int = 0
    refused: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(f"chaos:{self.seed}:receiver")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._rng.random() < FAIL_SHARE:
            self.refused += 1
            return web.Response(status=503)
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400)
        self.received.append(str(payload["data"]["event_id"]))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def subscribe(self, url: str, bearer: str) -> str:
        """A subscription of every event type of every course; its id."""
        body = {"url": f"http://127.0.0.1:{self.port}/hook", "event_types": EVERY_TYPE}
        headers = {"Authorization": f"Bearer {bearer}"}
        async with aiohttp.ClientSession() as http:
            for _ in range(30):
                async with http.post(f"{url}/api/v1/webhooks", json=body, headers=headers) as r:
                    if r.status == 201:
                        made = await r.json()
                        self.secret = made["secret"]
                        return str(made["id"])
                await asyncio.sleep(1)
        raise RuntimeError("the webhook subscription could not be made")


@dataclass
class StreamClient:
    """Follows one course's live stream through the faults."""

    course_id: str
    bearer: str
    targets: list[Target]
    since: str | None = None  # where its first connection starts (RFC 3339)
    received: list[str] = field(default_factory=list)  # event ids, in order
    reconnections: int = 0
    last_id: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"chaos:stream:{self.course_id}")

    async def run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            running = [t for t in self.targets if t.running()]
            if not running:
                await asyncio.sleep(0.5)
                continue
            target = running[turn % len(running)]
            turn += 1
            try:
                await self._follow(target.url)
            except Exception as exc:  # a worker killed or stopped, the broker away
                log.info("stream client: reconnecting", extra={"error": repr(exc)})
            self.reconnections += 1
            await asyncio.sleep(0.2)

    async def _follow(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {self.bearer}"}
        path = f"/api/v1/courses/{self.course_id}/events"
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        elif self.since is not None:
            path += f"?since={self.since}"
        timeout = httpx.Timeout(10.0, read=30.0)
        async with (
            httpx.AsyncClient(base_url=url, timeout=timeout) as client,
            aconnect_sse(client, "GET", path, headers=headers) as source,
        ):
            if source.response.status_code != 200:
                return
            async for sse in source.aiter_sse():
                if self.stop.is_set():
                    return
                if not sse.data:
                    continue
                self.received.append(str(json.loads(sse.data)["event_id"]))
                self.last_id = sse.id
                if self._rng.random() < LEAVE_SHARE:
                    return  # goes to another worker with its last id, now and then


Events = list[dict[str, Any]]


def topic_orders(
    course_events: Events, enrollment_events: Events, milestones: Events
) -> dict[str, tuple[str, str]]:
    """Each event id's (course id, topic), its first place kept (a copy published again
    after a crash is the same event)."""
    placed: dict[str, tuple[str, str]] = {}
    for topic, events in (
        ("course-events", course_events),
        ("enrollment-events", enrollment_events),
        ("learner-milestones", milestones),
    ):
        for event in events:
            placed.setdefault(str(event["event_id"]), (str(event["course_id"]), topic))
    return placed


def _order(events: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(e["event_id"]) for e in events))


def check_push(
    receiver: Receiver,
    stream: StreamClient | None,
    course_events: Events,
    enrollment_events: Events,
    milestones: Events,
) -> list[tuple[str, str, str]]:
    """Anomalies (kind, id, detail) of what the receiver and the stream client got."""
    out: list[tuple[str, str, str]] = []
    placed = topic_orders(course_events, enrollment_events, milestones)
    every: dict[tuple[str, str], list[str]] = defaultdict(list)  # (course, topic) -> ids
    for events in (course_events, enrollment_events, milestones):
        for event_id in _order(events):
            every[placed[event_id]].append(event_id)
    if receiver.bad_signatures:
        out.append(("webhook signature refused", "receiver", str(receiver.bad_signatures)))
    out += _delivered("webhook", receiver.received, every, placed, exactly_once=False)
    if stream is not None:
        mine = {k: v for k, v in every.items() if k[0] == stream.course_id}
        out += _delivered("stream", stream.received, mine, placed, exactly_once=True)
    return out


def _delivered(
    who: str,
    received: list[str],
    every: dict[tuple[str, str], list[str]],
    placed: dict[str, tuple[str, str]],
    exactly_once: bool,
) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    unknown = [i for i in received if i not in placed]
    if unknown:
        out.append((f"{who}: never published", unknown[0], f"{len(unknown)} such"))
    if exactly_once:
        twice = [i for i, n in _counts(received).items() if n > 1]
        if twice:
            out.append((f"{who}: delivered twice", twice[0], f"{len(twice)} such"))
    firsts = list(dict.fromkeys(received))
    by_place: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event_id in firsts:
        if event_id in placed:
            by_place[placed[event_id]].append(event_id)
    for place, expected in every.items():
        got = by_place.get(place, [])
        missing = [i for i in expected if i not in set(got)]
        if missing:
            out.append((f"{who}: missing", f"{place[0]} {place[1]}", f"{len(missing)} events"))
        elif got != expected:
            out.append((f"{who}: out of order", f"{place[0]} {place[1]}", f"{got} != {expected}"))
    return out


def _counts(ids: list[str]) -> dict[str, int]:
    counted: dict[str, int] = defaultdict(int)
    for i in ids:
        counted[i] += 1
    return counted


async def until_complete(
    receiver: Receiver,
    stream: StreamClient | None,
    wanted: Callable[[], tuple[set[str], set[str]]],
    deadline_s: float,
) -> bool:
    """Waits until the receiver has every id of `wanted()[0]` and the stream every one of
    `wanted()[1]` (or the deadline)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    hooks, streamed = wanted()
    while loop.time() < end:
        done = hooks <= set(receiver.received)
        if stream is not None:
            done = done and streamed <= set(stream.received)
        if done:
            return True
        await asyncio.sleep(0.5)
    return False
