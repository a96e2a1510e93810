"""Webhooks' own rules (CONTRACT §5.4, the Standard Webhooks specification). Pure.

- **Signing**: `webhook-signature` is `v1,<base64 HMAC-SHA256>` of `<id>.<timestamp>.<body>`
  with the secret's bytes (`whsec_<base64>`), `webhook-id` the event's id, and
  `webhook-timestamp` the seconds since the epoch.
- **Retries**: growing delays, the first within 30 s, going on for at least 24 hours.
- **Targets**: `https` only; plain `http` and loopback only where the deployment allows
  them (`WEBHOOK_ALLOW_LOOPBACK`); private, link-local, multicast, reserved and
  cloud-metadata addresses never, checked on the addresses a name resolves to (at
  subscription and again at each delivery: DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32

# The first retry within 30 s, then longer; the last delay repeats until 24 h have passed
# since the first attempt (then the delivery is given up and counted).
RETRY_DELAYS_S = (5, 25, 120, 600, 1800, 3600, 3 * 3600)
GIVE_UP_AFTER_S = 26 * 3600

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)

EVENT_TYPES = frozenset(
    {
        "course_created",
        "course_updated",
        "course_deleted",
        "enrollment_created",
        "enrollment_cancelled",
        "progress_updated",
        "course_completed",
        "module_unlocked",
        "waitlisted",
        "waitlist_left",
    }
)


def parse_sealing_key(raw: str) -> bytes:
    """The 32 bytes a `WEBHOOK_SEALING_KEY` (base64) stands for; ValueError otherwise."""
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be 32 bytes in base64 (openssl rand -base64 32)") from None
    if len(key) != 32:
        raise ValueError("must be 32 bytes in base64 (openssl rand -base64 32)")
    return key


def new_secret() -> str:
    """A secret as the subscriber is shown it, once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_delay(attempt: int, since_first_s: float) -> float | None:
    """Seconds before attempt `attempt + 1` (attempt 1 was the first try); None: give up."""
    if since_first_s >= GIVE_UP_AFTER_S:
        return None
    return float(RETRY_DELAYS_S[min(attempt - 1, len(RETRY_DELAYS_S) - 1)])


class TargetRefused(ValueError):
    """A webhook target this service must not deliver to."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_target(url: str, allow_loopback: bool) -> Target:
    """The URL's scheme, host and port, or TargetRefused saying why."""
    if len(url) > 2000:
        raise TargetRefused("longer than 2,000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("an https URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("a URL without credentials in it")
    if parts.scheme == "http" and not allow_loopback:
        raise TargetRefused("https only")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname.lower(), port or default)


def refusal(address: str, allow_loopback: bool) -> str | None:
    """Why deliveries to this resolved address are refused (None: they are not)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None


def check_addresses(addresses: Iterable[str], allow_loopback: bool, scheme: str) -> None:
    """TargetRefused unless every address a name resolves to may be delivered to (one bad
    address is enough: the resolver could hand it out next), and plain `http` only to
    loopback."""
    found = list(addresses)
    if not found:
        raise TargetRefused("the name resolves to no address")
    for address in found:
        why = refusal(address, allow_loopback)
        if why is not None:
            raise TargetRefused(f"resolves to {why} ({address})")
        if scheme == "http" and not ipaddress.ip_address(address).is_loopback:
            raise TargetRefused("plain http only to a loopback address")


def event_types_error(types: list[str]) -> str | None:
    """Why a subscription's event types are refused (None: they are not)."""
    if not types:
        return "at least one event type"
    unknown = sorted(set(types) - EVENT_TYPES)
    if unknown:
        return f"unknown event types: {', '.join(unknown)}"
    return None


def _known_types(types: list[str]) -> list[str]:
    why = event_types_error(types)
    if why is not None:
        raise ValueError(why)
    if len(set(types)) != len(types):
        raise ValueError("each event type once")
    return types


class WebhookInput(BaseModel):
    """`POST /api/v1/webhooks` (the URL's own rules are checked by the route: they depend
    on WEBHOOK_ALLOW_LOOPBACK and on what the name resolves to)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    event_types: Annotated[list[str], AfterValidator(_known_types)]
    course_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class ReplayInput(BaseModel):
    """`POST /api/v1/webhooks/{id}/replay`: every matching event since `from` again."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: AwareDatetime = Field(alias="from")


def delivery_body(event_type: str, timestamp: str, data: bytes) -> bytes:
    """A delivery's body: `{"type", "timestamp", "data"}`, the event's JSON as it is."""
    return orjson.dumps({"type": event_type, "timestamp": timestamp, "data": orjson.Fragment(data)})


def delivery_headers(secret: str, event_id: str, now_s: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (its own timestamp and signature)."""
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(now_s),
        "webhook-signature": signature(secret, event_id, now_s, body),
    }
