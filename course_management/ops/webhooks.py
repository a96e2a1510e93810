"""Operators' view of webhooks (issue 28; docs/runbook.md): `show` every subscription
with how its deliveries go, `pause` and `resume` one. A paused subscription keeps its
position: resumed, it delivers everything after it, in order."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from course_management.config import Settings
from course_management.domain.times import rfc3339
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import new_producer
from course_management.messages.webhook_subscription import ACTIVE, DELETED, PAUSED
from course_management.ops.provisioning import register_schemas
from course_management.streams.webhook_registry import WebhookRegistry


async def _registry(settings: Settings) -> WebhookRegistry:
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    registry = WebhookRegistry(settings.kafka_bootstrap_servers, codec)
    await registry.start()  # read both topics to their ends
    return registry


def _shown(found: Any, status: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in asdict(found).items() if k not in ("sealed_secret", "start")}
    return {**shown, "event_types": list(found.event_types), **status}


async def show_webhooks(settings: Settings) -> list[dict[str, Any]]:
    """Every subscription not deleted, oldest first, with its status (never its secret)."""
    registry = await _registry(settings)
    try:
        live = [s for s in registry.subscriptions.values() if s.state != DELETED]
        live.sort(key=lambda s: (s.created_at, s.id))
        return [_shown(s, await registry.status(s)) for s in live]
    finally:
        await registry.stop()


async def set_webhook_state(settings: Settings, subscription_id: str, pause: bool) -> dict | None:
    """Pause (deliveries stop at once, the position kept) or resume one; None if there
    is no such subscription."""
    registry = await _registry(settings)
    producer = new_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        found = registry.subscriptions.get(subscription_id)
        if found is None or found.state == DELETED:
            return None
        state = PAUSED if pause else ACTIVE
        if found.state != state:
            found = found.changed(rfc3339(datetime.now(UTC)), state=state)
            await registry.write(producer, found)
        return _shown(found, await registry.status(found))
    finally:
        await producer.stop()
        await registry.stop()
