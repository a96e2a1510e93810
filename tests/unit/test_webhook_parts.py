"""Webhooks' parts without Kafka: delivery positions (domain/delivery_positions.py), the
sealed secret (infra/sealing.py), and the sender (infra/webhook_sender.py) against a
receiver on 127.0.0.1, with names answered from a table by a resolver of the test's, so
that a name rebinding to a private or metadata address is refused unsent and nothing
leaves loopback."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from course_management.domain import delivery_positions as positions
from course_management.domain.webhooks import parse_sealing_key
from course_management.infra.sealing import Sealer, SealError
from course_management.infra.webhook_sender import WebhookSender

# -- positions ---------------------------------------------------------------------------


def test_a_position_round_trips_and_refuses_what_it_did_not_write() -> None:
    position = {0: (5, 0, 12), 3: (1, 2, 3)}
    assert positions.decode(positions.encode(position)) == position
    for bad in ("x", "0:1.2", "a:1.2.3", "0:1.2.-3", "0-1.2.3"):
        with pytest.raises(positions.BadPosition):
            positions.decode(bad)


def test_a_replay_moves_back_never_forward() -> None:
    now = {0: (10, 10, 10), 1: (4, 4, 4)}
    asked = {0: (3, 12, 10), 1: (9, 0, 4)}
    assert positions.earliest(now, asked) == {0: (3, 10, 10), 1: (4, 0, 4)}


def test_pending_counts_records_past_the_position() -> None:
    assert positions.pending({0: (3, 4, 5)}, {0: (5, 4, 9)}) == 6
    assert positions.pending({0: (5, 4, 9)}, {0: (5, 4, 9)}) == 0


# -- the sealed secret -------------------------------------------------------------------


def test_a_sealed_secret_opens_only_with_its_key_and_its_subscription() -> None:
    key = os.urandom(32)
    sealer = Sealer(key)
    sealed = sealer.seal("whsec_c2VjcmV0", "wh_1")
    assert "c2VjcmV0" not in sealed and sealer.open(sealed, "wh_1") == "whsec_c2VjcmV0"
    assert sealer.seal("whsec_c2VjcmV0", "wh_1") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        sealer.open(sealed, "wh_2")  # copied onto another subscription
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).open(sealed, "wh_1")
    with pytest.raises(SealError):
        sealer.open(sealed[:-4] + "AAAA", "wh_1")


def test_a_sealing_key_is_32_bytes_of_base64() -> None:
    assert len(parse_sealing_key(base64.b64encode(os.urandom(32)).decode())) == 32
    for bad in ("short", base64.b64encode(os.urandom(16)).decode(), "!!!"):
        with pytest.raises(ValueError):
            parse_sealing_key(bad)


# -- the sender --------------------------------------------------------------------------

TABLE = {
    "receiver.test": "127.0.0.1",
    "rebound.test": "10.0.0.7",
    "metadata.test": "169.254.169.254",
}


class TableResolver(AbstractResolver):
    """Answers from TABLE; never asks a DNS server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = TABLE[host]
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def receiver() -> AsyncIterator[dict[str, Any]]:
    seen: dict[str, Any] = {"posts": 0, "port": 0}

    async def hook(request: web.Request) -> web.Response:
        seen["posts"] += 1
        return web.Response(status=204)

    async def moved(request: web.Request) -> web.Response:
        seen["posts"] += 1
        raise web.HTTPFound(f"http://receiver.test:{seen['port']}/hook")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    seen["port"] = runner.addresses[0][1]
    try:
        yield seen
    finally:
        await runner.cleanup()


async def test_the_sender_delivers_to_loopback_and_refuses_a_rebound_name_unsent(
    receiver: dict[str, Any],
) -> None:
    sender = WebhookSender(allow_loopback=True, resolver=TableResolver)
    port = receiver["port"]
    try:
        assert await sender.post(f"http://receiver.test:{port}/hook", {}, b"{}") is None
        assert receiver["posts"] == 1
        for name, why in (("rebound.test", "private"), ("metadata.test", "metadata")):
            error = await sender.post(f"https://{name}:{port}/hook", {}, b"{}")
            assert error is not None and error.startswith("refused") and why in error, error
        error = await sender.post(f"https://10.0.0.8:{port}/hook", {}, b"{}")
        assert error is not None and "private" in error
        # a redirect is a failure, not followed
        error = await sender.post(f"http://receiver.test:{port}/moved", {}, b"{}")
        assert error is not None and "redirect" in error
        assert receiver["posts"] == 2  # the refused ones never connected
    finally:
        await sender.close()


async def test_without_loopback_allowed_the_sender_refuses_loopback_and_plain_http(
    receiver: dict[str, Any],
) -> None:
    sender = WebhookSender(allow_loopback=False, resolver=TableResolver)
    port = receiver["port"]
    try:
        for url in (f"http://receiver.test:{port}/hook", f"https://receiver.test:{port}/hook"):
            error = await sender.post(url, {}, b"{}")
            assert error is not None and error.startswith("refused"), error
        assert receiver["posts"] == 0
    finally:
        await sender.close()


# 169.254.169.254 in full-width digits: not an address to urllib, one to aiohttp (IDNA)
FULL_WIDTH = "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in "169.254.169.254")


async def test_a_full_width_address_is_checked_as_the_address_it_becomes() -> None:
    sender = WebhookSender(allow_loopback=True, resolver=TableResolver)
    try:
        error = await sender.post(f"https://{FULL_WIDTH}/latest", {}, b"{}")
        assert error is not None and "metadata" in error, error
    finally:
        await sender.close()


async def test_a_name_that_cannot_be_resolved_or_is_malformed_is_refused_not_an_error() -> None:
    from course_management.domain.webhooks import TargetRefused
    from course_management.gateways.webhooks import WebhookGateway

    async def resolve(host: str, port: int) -> list[str]:
        if host == "bad..label":
            raise UnicodeError("label empty or too long")
        if host == "nowhere.test":
            raise OSError("no such name")
        return [TABLE[host]]

    gateway = WebhookGateway(None, None, None, True, lambda: 4, resolve)  # type: ignore[arg-type]
    await gateway.check_target("https://receiver.test/hook")
    for url in ("https://bad..label/", "https://nowhere.test/", "https://rebound.test/"):
        with pytest.raises(TargetRefused):
            await gateway.check_target(url)


def test_claims_rank_by_epoch_then_owner() -> None:
    from course_management.domain.delivery_positions import claim

    assert claim(2, "a") > claim(1, "z")  # the later epoch wins whoever wrote it
    assert claim(3, "worker-2/b") > claim(3, "worker-1/a")  # equal epochs: the owner id
    assert claim(3, "w") == claim(3, "w")  # an owner's own writes never fence it
    assert claim(0, None) < claim(0, "w") and claim(0, None) == claim(0, "")  # before epochs
