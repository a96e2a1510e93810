"""api.ports.Webhooks: subscriptions written to their compacted topic and read back from
the registry every worker keeps (streams/webhook_registry.py; decision 63).

A target is checked here when subscribing: its URL (`parse_target`), then every address
its name resolves to. The secret is made here, shown once in the reply, and written only
sealed (infra/sealing.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import murmur2

from course_management.api.ports import Unavailable
from course_management.domain import delivery_positions
from course_management.domain.times import rfc3339
from course_management.domain.webhooks import check_addresses, new_secret, parse_target
from course_management.infra.publisher import Publisher
from course_management.infra.sealing import Sealer
from course_management.messages.webhook_subscription import (
    ACTIVE,
    DELETED,
    WebhookSubscription,
)
from course_management.streams.webhook_registry import WebhookRegistry, ends_of

RESOLVE_TIMEOUT_S = 5.0

Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses a name resolves to (the system's resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _now() -> str:
    return rfc3339(datetime.now(UTC))


class WebhookGateway:
    def __init__(
        self,
        registry: WebhookRegistry,
        publisher: Publisher,
        sealer: Sealer | None,
        allow_loopback: bool,
        event_partitions: Callable[[], int],
        resolve: Resolve = resolve_host,
    ) -> None:
        self._registry = registry
        self._publisher = publisher
        self._sealer = sealer
        self._allow_loopback = allow_loopback
        self._event_partitions = event_partitions
        self._resolve = resolve

    async def check_target(self, url: str) -> None:
        """TargetRefused (saying why) unless deliveries may go to `url`."""
        target = parse_target(url, self._allow_loopback)
        try:
            addresses = [str(ipaddress.ip_address(target.host.strip("[]")))]
        except ValueError:
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                    addresses = await self._resolve(target.host, target.port)
            except (OSError, ValueError, TimeoutError):  # UnicodeError: a malformed label
                addresses = []
        check_addresses(addresses, self._allow_loopback, target.scheme)

    def _partitions(self, course_id: str | None) -> list[int]:
        """The event partitions the subscription reads: its course's, or all."""
        if course_id is None:
            return list(range(self._event_partitions()))
        return [(murmur2(course_id.encode()) & 0x7FFFFFFF) % self._event_partitions()]

    async def subscribe(
        self,
        url: str,
        event_types: list[str],
        course_id: str | None,
        creator_id: str,
    ) -> dict[str, Any]:
        """The 201 body (the secret in it, for the only time)."""
        if self._sealer is None:
            raise Unavailable("webhooks-unavailable", "webhooks are not set up on this service")
        subscription_id = "wh_" + secrets.token_hex(12)
        secret = new_secret()
        partitions = self._partitions(course_id)
        start = await ends_of(self._registry.offsets, partitions)
        now = _now()
        subscription = WebhookSubscription(
            id=subscription_id,
            url=url,
            event_types=tuple(event_types),
            course_id=course_id,
            creator_id=creator_id,
            created_at=now,
            sealed_secret=self._sealer.seal(secret, subscription_id),
            state=ACTIVE,
            start=delivery_positions.encode(start),
            changed_at=now,
        )
        await self._write(subscription)
        return {**self.view(subscription), "secret": secret}

    async def find(self, subscription_id: str) -> WebhookSubscription | None:
        """The subscription as of every change acked before the call (None: none, or
        deleted)."""
        await self._registry.caught_up()
        found = self._registry.subscriptions.get(subscription_id)
        return None if found is None or found.state == DELETED else found

    async def status(self, subscription: WebhookSubscription) -> dict[str, Any]:
        return {**self.view(subscription), **await self._registry.status(subscription)}

    async def delete(self, subscription: WebhookSubscription) -> None:
        await self._write(subscription.changed(_now(), state=DELETED, sealed_secret=""))

    async def replay(self, subscription: WebhookSubscription, moment: datetime) -> None:
        replay_id = secrets.token_hex(8)
        await self._write(
            subscription.changed(_now(), replay_from=rfc3339(moment), replay_id=replay_id)
        )

    async def set_state(self, subscription: WebhookSubscription, state: str) -> None:
        await self._write(subscription.changed(_now(), state=state))

    async def _write(self, subscription: WebhookSubscription) -> None:
        await self._registry.write(self._publisher.producer, subscription)

    @staticmethod
    def view(subscription: WebhookSubscription) -> dict[str, Any]:
        return {
            "id": subscription.id,
            "url": subscription.url,
            "event_types": list(subscription.event_types),
            "course_id": subscription.course_id,
            "created_at": subscription.created_at,
        }
