"""`WebhookSubscription` on the compacted course-management-webhooks
(schemas/webhook_subscription.avsc): a subscription as it is now, key its id (decision 63).
The secret is sealed (infra/sealing.py): a dump of the topic does not reveal it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from course_management.topology import WEBHOOKS, spec

TOPIC = WEBHOOKS
SUBJECT = spec(TOPIC).subject

ACTIVE, PAUSED, DELETED = "active", "paused", "deleted"


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    url: str
    event_types: tuple[str, ...]
    course_id: str | None
    creator_id: str
    created_at: str
    sealed_secret: str
    state: str
    start: str  # domain/delivery_positions.py, encoded
    changed_at: str
    replay_from: str | None = None
    replay_id: str | None = None

    def changed(self, at: str, **fields: Any) -> WebhookSubscription:
        return replace(self, changed_at=at, **fields)


def encode(subscription: WebhookSubscription) -> dict[str, Any]:
    value = asdict(subscription)
    value["event_types"] = list(subscription.event_types)
    return value


def decode(value: dict[str, Any]) -> WebhookSubscription:
    return WebhookSubscription(
        id=value["id"],
        url=value["url"],
        event_types=tuple(value["event_types"]),
        course_id=value.get("course_id"),
        creator_id=value["creator_id"],
        created_at=value["created_at"],
        sealed_secret=value["sealed_secret"],
        state=value["state"],
        start=value["start"],
        changed_at=value["changed_at"],
        replay_from=value.get("replay_from"),
        replay_id=value.get("replay_id"),
    )
