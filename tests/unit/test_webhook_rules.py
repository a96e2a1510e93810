"""Webhooks' rules (domain/webhooks.py): signatures checked by the `standardwebhooks`
package's verifier (a client no one here wrote), the retry schedule, and the targets
refused by address class, resolving nothing and connecting to nothing."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from course_management.domain import webhooks
from course_management.domain.webhooks import TargetRefused


def test_a_signed_delivery_passes_the_standard_verifier() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "course_updated", "data": {"title": "Ünïcode"}}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "evt-1",
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.signature(secret, "evt-1", now, body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "course_updated"
    # and it is the verifier's own signature
    stamp = datetime.fromtimestamp(now, UTC)
    assert Webhook(secret).sign("evt-1", stamp, body) == headers["webhook-signature"]


def test_another_secret_or_a_changed_body_fails_the_verifier() -> None:
    secret, other = webhooks.new_secret(), webhooks.new_secret()
    now = int(time.time())
    body = b'{"type":"x"}'
    headers = {
        "webhook-id": "evt-1",
        "webhook-timestamp": str(now),
        "webhook-signature": webhooks.signature(secret, "evt-1", now, body),
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"type":"y"}', headers)


def test_retries_start_within_30_s_grow_and_last_a_day() -> None:
    delays = [webhooks.retry_delay(n, 0) for n in range(1, 12)]
    assert delays[0] is not None and delays[0] <= 30
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(delays))
    elapsed, attempt = 0.0, 1
    while (delay := webhooks.retry_delay(attempt, elapsed)) is not None:
        elapsed += delay
        attempt += 1
    assert elapsed >= 24 * 3600


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12::1", "a private address"),
        ("169.254.10.10", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("0.0.0.0", "an unspecified address"),
        ("100.64.0.1", "a reserved address"),
        ("240.0.0.1", "a reserved address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
    ],
)
def test_addresses_refused_by_class(address: str, why: str) -> None:
    assert webhooks.refusal(address, allow_loopback=False) == why


def test_loopback_only_where_allowed_and_public_addresses_always() -> None:
    assert webhooks.refusal("127.0.0.1", allow_loopback=True) is None
    assert webhooks.refusal("10.0.0.1", allow_loopback=True) == "a private address"
    assert webhooks.refusal("93.184.216.34", allow_loopback=False) is None
    assert webhooks.refusal("2606:2800:220:1::1", allow_loopback=False) is None


def test_one_bad_address_among_those_a_name_resolves_to_refuses_it() -> None:
    with pytest.raises(TargetRefused, match="private"):
        webhooks.check_addresses(["93.184.216.34", "10.0.0.7"], False, "https")
    with pytest.raises(TargetRefused, match="no address"):
        webhooks.check_addresses([], False, "https")
    with pytest.raises(TargetRefused, match="plain http"):
        webhooks.check_addresses(["93.184.216.34"], True, "http")
    webhooks.check_addresses(["127.0.0.1"], True, "http")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/x", "https URL"),
        ("https://", "https URL"),
        ("not a url", "https URL"),
        ("http://example.com/hook", "https only"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com:99999/hook", "not a URL"),
        ("https://example.com/" + "x" * 2000, "2,000"),
    ],
)
def test_malformed_targets_are_refused(url: str, match: str) -> None:
    with pytest.raises(TargetRefused, match=match):
        webhooks.parse_target(url, allow_loopback=False)


def test_a_target_names_its_host_and_port() -> None:
    assert webhooks.parse_target("https://Hooks.Example.com/x", False).port == 443
    target = webhooks.parse_target("http://127.0.0.1:8123/hook", allow_loopback=True)
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8123)


def test_event_types_must_be_known_and_not_none() -> None:
    assert webhooks.event_types_error([]) == "at least one event type"
    assert webhooks.event_types_error(["course_updated", "nope"]) == "unknown event types: nope"
    assert webhooks.event_types_error(["course_updated", "waitlisted"]) is None
