"""`WebhookPosition` on the compacted course-management-webhook-positions
(schemas/webhook_position.avsc): how far a subscription's deliveries have got and how the
last ones went, key the subscription's id, written by the worker delivering it (decision
63)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from course_management.topology import WEBHOOK_POSITIONS, spec

TOPIC = WEBHOOK_POSITIONS
SUBJECT = spec(TOPIC).subject


@dataclass(frozen=True)
class WebhookPosition:
    subscription_id: str
    position: str  # domain/delivery_positions.py, encoded
    updated_at: str
    replay_id: str | None = None
    last_delivery_at: str | None = None
    last_error: str | None = None
    failing_since: str | None = None
    delivered: int = 0
    epoch: int = 0  # the delivery's ownership; a lower one than already read is ignored
    owner: str | None = None  # the worker process that wrote it (ranks equal epochs)


def encode(position: WebhookPosition) -> dict[str, Any]:
    return asdict(position)


def decode(value: dict[str, Any]) -> WebhookPosition:
    return WebhookPosition(
        subscription_id=value["subscription_id"],
        position=value["position"],
        updated_at=value["updated_at"],
        replay_id=value.get("replay_id"),
        last_delivery_at=value.get("last_delivery_at"),
        last_error=value.get("last_error"),
        failing_since=value.get("failing_since"),
        delivered=int(value.get("delivered") or 0),
        epoch=int(value.get("epoch") or 0),
        owner=value.get("owner"),
    )
