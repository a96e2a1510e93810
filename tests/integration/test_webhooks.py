"""Webhooks against the real stack (issue 28, item 2; CONTRACT §5.4), delivered to a real
HTTP receiver on loopback and verified with the `standardwebhooks` package's verifier (a
client no one here wrote): signed, in order per course, at least once; a receiver that
fails or is down gets everything later, in order; a replay delivers again; DELETE stops
deliveries; a SIGKILL of the worker mid-delivery loses nothing; the secret is never in
clear on a topic."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from course_management.config import Settings
from tests.support import (
    ADMIN,
    OWNER,
    SERVICE,
    WorkerProcess,
    auth,
    enroll,
    eventually_async,
    produce,
    published_course,
    read_topic,
    run_cli,
)

ENROLMENT_TYPES = ["course_updated", "enrollment_created", "enrollment_cancelled"]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers `fail_next` attempts with 503, or
    `status` when set, and keeps every delivery it accepted (body, headers)."""

    fail_next: int = 0
    delay_s: float = 0.0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.received.append((body, dict(request.headers)))
        return web.Response(status=204)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery accepted, each checked by the standardwebhooks verifier."""
        verifier = Webhook(secret)
        return [dict(verifier.verify(body, headers)) for body, headers in self.received]

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for _, headers in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiving = Receiver()
    await receiving.start()
    try:
        yield receiving
    finally:
        await receiving.stop()


async def subscribe(
    http: aiohttp.ClientSession, url: str, course_id: str | None, types: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "event_types": types or ENROLMENT_TYPES}
    if course_id is not None:
        body["course_id"] = course_id
    answer = await http.post("/api/v1/webhooks", json=body, headers=SERVICE)
    assert answer.status == 201, await answer.text()
    created = dict(await answer.json())
    assert answer.headers["Location"] == f"/api/v1/webhooks/{created['id']}"
    return created


async def codec_of(settings: Settings) -> Any:
    """A codec with this service's schemas registered (to read and write its topics)."""
    from course_management.infra.avro import AvroCodec
    from course_management.ops.provisioning import register_schemas

    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    return codec


async def course_event_ids(settings: Settings, course_id: str, types: list[str]) -> list[str]:
    """The ids of the course's events of `types`, per topic in its order, first places."""
    codec = await codec_of(settings)
    found: list[str] = []
    for topic in ("course-events", "enrollment-events"):
        for record in await read_topic(settings, topic, lambda rs: True):
            if record.key != course_id.encode():
                continue
            value = await codec.decode(f"{topic}-value", record.value)
            if value["event_type"] in types:
                found.append(str(value["event_id"]))
    return list(dict.fromkeys(found))


async def changes(http: aiohttp.ClientSession, course_id: str, tag: str, learners: int) -> None:
    """An update, then `learners` enrolments and one cancellation."""
    answer = await http.put(
        f"/api/v1/courses/{course_id}/update", json={"title": f"Hooked {tag}"}, headers=OWNER
    )
    assert answer.status == 200, await answer.text()
    for n in range(learners):
        assert (await enroll(http, course_id, f"hook-{tag}-{n}")).status in (200, 201)
    answer = await http.delete(
        f"/api/v1/courses/{course_id}/enrollments/hook-{tag}-0", headers=ADMIN
    )
    assert answer.status in (200, 204), await answer.text()


async def status_of(http: aiohttp.ClientSession, hook_id: str) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/webhooks/{hook_id}", headers=SERVICE)
    assert answer.status == 200, await answer.text()
    return dict(await answer.json())


async def received_all(receiver: Receiver, expected: list[str], deadline_s: float = 60) -> None:
    async def check() -> bool:
        return set(expected) <= set(receiver.ids())

    await eventually_async(check, deadline_s=deadline_s, what="every event delivered")


async def test_deliveries_are_signed_complete_and_in_order(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    course = await published_course(http, title="Hooked")
    cid = course["id"]
    hook = await subscribe(http, receiver.url, cid)
    assert hook["secret"].startswith("whsec_") and hook["course_id"] == cid
    await changes(http, cid, "a", 3)
    expected = await course_event_ids(settings, cid, ENROLMENT_TYPES)
    assert len(expected) == 5  # the update, three enrolments, one cancellation
    await received_all(receiver, expected)
    payloads = receiver.verified(hook["secret"])  # raises on any bad signature
    assert [p["data"]["event_id"] for p in payloads] == receiver.ids()
    assert {p["type"] for p in payloads} == set(ENROLMENT_TYPES)
    assert all(p["data"]["course_id"] == cid for p in payloads)
    assert receiver.ids() == expected  # in order, each once

    async def saved() -> bool:  # the position is written at most a second later
        return (await status_of(http, hook["id"]))["last_delivery_at"] is not None

    await eventually_async(saved, deadline_s=10, what="last_delivery_at written")
    seen = await status_of(http, hook["id"])
    assert seen["status"] == "active" and seen["last_error"] is None
    assert "secret" not in seen


async def test_a_failing_receiver_gets_every_event_later_in_order(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    course = await published_course(http, title="Hooked, failing")
    cid = course["id"]
    hook = await subscribe(http, receiver.url, cid)
    receiver.fail_next = 3
    await changes(http, cid, "b", 2)

    async def failing() -> bool:
        seen = await status_of(http, hook["id"])
        return seen["status"] == "failing" and seen["last_error"] == "HTTP 503"

    await eventually_async(failing, deadline_s=30, what="the status says failing")
    expected = await course_event_ids(settings, cid, ENROLMENT_TYPES)
    await received_all(receiver, expected)
    assert receiver.attempts >= len(expected) + 3
    ids = receiver.ids()
    assert ids == expected  # nothing out of order behind the failures, nothing twice
    receiver.verified(hook["secret"])

    async def recovered() -> bool:
        seen = await status_of(http, hook["id"])
        return seen["status"] == "active" and seen["pending"] == 0

    await eventually_async(recovered, deadline_s=30, what="the status says active again")


async def test_a_receiver_down_for_a_while_gets_everything_when_it_is_back(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    course = await published_course(http, title="Hooked, down")
    cid = course["id"]
    hook = await subscribe(http, receiver.url, cid)
    port = receiver.port
    await receiver.stop()  # connections refused from now on
    await changes(http, cid, "c", 2)

    async def refused() -> bool:
        seen = await status_of(http, hook["id"])
        return seen["status"] == "failing" and "connect" in (seen["last_error"] or "")

    await eventually_async(refused, deadline_s=30, what="the status says it cannot connect")
    assert (await status_of(http, hook["id"]))["pending"] >= 1
    await receiver.start(port)
    expected = await course_event_ids(settings, cid, ENROLMENT_TYPES)
    await received_all(receiver, expected, deadline_s=90)
    assert receiver.ids() == expected
    receiver.verified(hook["secret"])


async def test_a_replay_delivers_every_matching_event_again_and_delete_stops(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    course = await published_course(http, title="Hooked, replayed")
    cid = course["id"]
    hook = await subscribe(http, receiver.url, cid, ["course_created", *ENROLMENT_TYPES])
    await changes(http, cid, "d", 2)
    expected = await course_event_ids(settings, cid, ["course_created", *ENROLMENT_TYPES])
    live = [i for i in expected if i in set(expected[1:])]  # created before subscribing
    await received_all(receiver, live)
    assert expected[0] not in receiver.ids()  # course_created came before the subscription
    count = len(receiver.received)
    answer = await http.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        json={"from": before.isoformat()},
        headers=SERVICE,
    )
    assert answer.status == 202, await answer.text()

    async def replayed() -> bool:
        return receiver.ids()[count:] == expected

    await eventually_async(replayed, deadline_s=60, what="the replay delivered all again")
    assert (await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=SERVICE)).status == 204
    assert (await http.get(f"/api/v1/webhooks/{hook['id']}", headers=SERVICE)).status == 404
    delivered = len(receiver.received)
    await changes(http, cid, "e", 1)
    # the dispatcher saw the deletion before these events were published: a probe
    # subscription made after them gets them, the deleted one never does
    probe = Receiver()
    await probe.start()
    try:
        other = await subscribe(http, probe.url, cid)
        await http.post(
            f"/api/v1/webhooks/{other['id']}/replay",
            json={"from": before.isoformat()},
            headers=SERVICE,
        )
        every = await course_event_ids(settings, cid, ENROLMENT_TYPES)
        await received_all(probe, every)
    finally:
        await probe.stop()
    assert len(receiver.received) == delivered


async def test_who_may_subscribe_and_what_is_refused(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    course = await published_course(http, title="Hooked, refused")
    cid = course["id"]
    post = "/api/v1/webhooks"

    async def refused(body: dict[str, Any], field: str, headers: dict[str, str] = SERVICE) -> None:
        answer = await http.post(post, json=body, headers=headers)
        assert answer.status == 422, await answer.text()
        assert [e["field"] for e in (await answer.json())["errors"]] == [field]

    ok_types = ["course_updated"]
    for url in (
        "http://10.0.0.1/hook",  # plain http off loopback
        "https://10.1.2.3/hook",  # private
        "https://169.254.169.254/latest/meta-data",  # metadata
        "https://[::ffff:169.254.169.254]/",  # metadata, IPv4-mapped
        "https://[fe80::1]/",  # link-local
        "https://224.0.0.1/",  # multicast
        "ftp://127.0.0.1/",
        "not a url",
    ):
        await refused({"url": url, "event_types": ok_types}, "url")
    await refused({"url": receiver.url, "event_types": ["course_exploded"]}, "event_types")
    await refused({"url": receiver.url, "event_types": []}, "event_types")
    await refused({"url": receiver.url, "event_types": ok_types, "course_id": "nope"}, "course_id")
    student = await http.post(
        post, json={"url": receiver.url, "event_types": ok_types}, headers=auth("s", "student")
    )
    assert student.status == 403
    hook = await subscribe(http, receiver.url, cid, ok_types)
    other_service = auth("user-management", "service")
    path = f"/api/v1/webhooks/{hook['id']}"
    assert (await http.get(path, headers=other_service)).status == 404
    assert (await http.get(path, headers=ADMIN)).status == 200
    assert (await http.delete(path, headers=other_service)).status == 404
    bad = await http.post(f"{path}/replay", json={"from": "yesterday"}, headers=SERVICE)
    assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "from"


async def test_the_secret_is_never_in_clear_on_a_topic(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    hook = await subscribe(http, receiver.url, None, ["course_created"])
    secret = hook["secret"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    records = await read_topic(
        settings,
        "course-management-webhooks",
        lambda rs: any(r.key == hook["id"].encode() for r in rs),
    )
    raw = b"".join(r.value or b"" for r in records)
    assert secret.encode() not in raw and key not in raw
    assert secret.removeprefix("whsec_").encode() not in raw
    # and the subscription without a course gets every course's events
    course = await published_course(http, title="Hooked, any course")

    async def got_it() -> bool:
        return any(json.loads(b)["data"]["course_id"] == course["id"] for b, _ in receiver.received)

    await eventually_async(got_it, deadline_s=30, what="a course_created of any course")
    await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=SERVICE)


async def test_an_operator_pauses_and_resumes_a_subscription(
    http: aiohttp.ClientSession,
    settings: Settings,
    stack_env: dict[str, str],
    receiver: Receiver,
) -> None:
    course = await published_course(http, title="Hooked, paused")
    cid = course["id"]
    hook = await subscribe(http, receiver.url, cid)
    paused = run_cli(stack_env, "ops", "webhooks", "pause", hook["id"])
    assert paused.returncode == 0, paused.stderr[-2000:]
    assert json.loads(paused.stdout)["status"] == "paused"
    await changes(http, cid, "p", 2)

    async def waiting() -> bool:
        seen = await status_of(http, hook["id"])
        return seen["status"] == "paused" and seen["pending"] >= 4

    await eventually_async(waiting, deadline_s=30, what="events waiting while paused")
    shown = run_cli(stack_env, "ops", "webhooks", "show")
    assert shown.returncode == 0, shown.stderr[-2000:]
    listed = {w["id"]: w for w in json.loads(shown.stdout)["webhooks"]}
    assert listed[hook["id"]]["status"] == "paused"
    assert all("secret" not in k for w in listed.values() for k in w)
    resumed = run_cli(stack_env, "ops", "webhooks", "resume", hook["id"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = await course_event_ids(settings, cid, ENROLMENT_TYPES)
    await received_all(receiver, expected)
    assert receiver.ids() == expected
    missing = run_cli(stack_env, "ops", "webhooks", "pause", "wh_none")
    assert missing.returncode == 1 and "no webhook subscription" in missing.stderr


@pytest.mark.rebalances
@pytest.mark.crash
async def test_a_sigkill_mid_delivery_loses_nothing(
    worker: WorkerProcess, settings: Settings, receiver: Receiver
) -> None:
    async with aiohttp.ClientSession(base_url=worker.base_url) as http:
        course = await published_course(http, title="Hooked, killed")
        cid = course["id"]
        hook = await subscribe(http, receiver.url, cid)
        receiver.delay_s = 0.3  # deliveries under way when the worker dies
        await changes(http, cid, "k", 8)

        async def some() -> bool:
            return len(receiver.received) >= 2

        await eventually_async(some, deadline_s=30, what="deliveries under way")
    worker.kill()  # SIGKILL
    worker.start().wait_ready()
    receiver.delay_s = 0.0
    expected = await course_event_ids(settings, cid, ENROLMENT_TYPES)
    await received_all(receiver, expected, deadline_s=90)
    ids = receiver.ids()
    firsts = list(dict.fromkeys(ids))
    assert firsts == expected  # each event's first delivery in order, none lost
    receiver.verified(hook["secret"])


async def latest_position(settings: Settings, hook_id: str) -> dict[str, Any]:
    """The last position record of the subscription on its compacted topic, decoded."""
    from course_management.messages import webhook_position

    codec = await codec_of(settings)
    records = await read_topic(
        settings,
        webhook_position.TOPIC,
        lambda rs: any(r.key == hook_id.encode() for r in rs),
    )
    mine = [r for r in records if r.key == hook_id.encode() and r.value is not None]
    return dict(await codec.decode(webhook_position.SUBJECT, mine[-1].value))


async def write_position(settings: Settings, value: dict[str, Any]) -> None:
    """A position record as another worker would write it."""
    from course_management.messages import webhook_position

    codec = await codec_of(settings)
    encoded = codec.encode(webhook_position.SUBJECT, value)
    key = str(value["subscription_id"]).encode()
    await produce(settings, webhook_position.TOPIC, [(key, encoded)])


async def test_an_owner_fenced_by_a_later_epoch_stops_and_its_late_writes_are_ignored(
    http: aiohttp.ClientSession, settings: Settings, receiver: Receiver
) -> None:
    """A worker that missed a rebalance while another took its subscription over: the
    new owner's claim (a later epoch on the positions topic) stops its delivery at once,
    and a position it writes afterwards (its lower epoch) is ignored by every reader. A
    second subscription on the same worker, not fenced, shows deliveries went on. No
    rebalance follows (the claim was this test's), so once WEBHOOK_FENCE_HOLD_SECONDS
    (20 s here) pass the worker claims the subscription back and delivers the rest."""
    control = Receiver()
    await control.start()
    try:
        course = await published_course(http, title="Hooked, fenced")
        cid = course["id"]
        hook = await subscribe(http, receiver.url, cid)
        other = await subscribe(http, control.url, cid)
        await changes(http, cid, "f1", 1)
        before = await course_event_ids(settings, cid, ENROLMENT_TYPES)
        await received_all(receiver, before)
        await received_all(control, before)
        mine = await latest_position(settings, hook["id"])
        assert mine["epoch"] >= 1  # the owner claimed it when it started delivering
        assert mine["owner"]  # the worker process that claimed it
        claim = {
            **mine,
            "epoch": mine["epoch"] + 1,
            "owner": "another-worker",
            "last_error": "taken over elsewhere",
        }
        await write_position(settings, claim)

        async def claimed() -> bool:
            return (await status_of(http, hook["id"]))["last_error"] == "taken over elsewhere"

        await eventually_async(claimed, deadline_s=30, what="the claim read")
        fenced_at = asyncio.get_running_loop().time()
        stale = {**mine, "last_error": "a fenced owner's late write"}
        await write_position(settings, stale)  # the old epoch: ignored
        assert (await status_of(http, hook["id"]))["last_error"] == "taken over elsewhere"
        await changes(http, cid, "f2", 1)
        after = await course_event_ids(settings, cid, ENROLMENT_TYPES)
        assert len(after) > len(before)
        await received_all(control, after)  # the worker delivers: the other subscription
        assert set(receiver.ids()) == set(before)  # the fenced one sent nothing more
        checked_within = asyncio.get_running_loop().time() - fenced_at
        assert checked_within < 20, f"checked {checked_within:.0f} s after the fence: too late"
        assert (await status_of(http, hook["id"]))["last_error"] == "taken over elsewhere"
        await received_all(receiver, after, deadline_s=60)  # claimed back once the hold passed
        taken_back = await latest_position(settings, hook["id"])
        assert taken_back["epoch"] == claim["epoch"] + 1
        assert taken_back["owner"] == mine["owner"]
        for sid in (hook["id"], other["id"]):
            await http.delete(f"/api/v1/webhooks/{sid}", headers=SERVICE)
    finally:
        await control.stop()
