"""Webhook subscriptions (CONTRACT §5.4; decision 63): made by admins and services, read,
replayed and deleted by their creator and admins. Deliveries are the dispatcher's
(streams/webhook_dispatch.py); the subscriptions are the Webhooks port's
(gateways/webhooks.py)."""

from __future__ import annotations

from aiohttp import web

from course_management.api.http import json_response, read_body, require_principal
from course_management.api.models import WebhookCreated, WebhookStatus
from course_management.api.openapi import Endpoint, Param
from course_management.api.ports import READS, WEBHOOKS
from course_management.api.problems import Problem, validation_problem
from course_management.domain.access import may_manage_webhook, may_subscribe_webhooks
from course_management.domain.records import course_of
from course_management.domain.times import rfc3339
from course_management.domain.webhooks import ReplayInput, TargetRefused, WebhookInput
from course_management.messages.webhook_subscription import WebhookSubscription

WEBHOOK_ID = Param("webhookId", "path", "The subscription's id", required=True)


async def create_webhook(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    if not may_subscribe_webhooks(who.actor()):
        raise Problem.of(403, "forbidden", "webhooks are subscribed by admins and services")
    body, _ = await read_body(request, WebhookInput)
    webhooks = request.app[WEBHOOKS]
    try:
        await webhooks.check_target(body.url)
    except TargetRefused as exc:
        raise validation_problem([("url", str(exc))]) from None
    course_id = body.course_id
    if (
        course_id is not None
        and course_of(await request.app[READS].read_course_state(course_id)) is None
    ):
        raise validation_problem([("course_id", "no course with this id")])
    created = await webhooks.subscribe(body.url, body.event_types, body.course_id, who.user_id)
    location = f"/api/v1/webhooks/{created['id']}"
    return json_response(created, status=201, headers={"Location": location})


async def _subscription(request: web.Request) -> WebhookSubscription:
    """The subscription named in the path, for its creator or an admin (404 for anyone
    else: whose subscriptions exist is not told)."""
    who = require_principal(request)
    found = await request.app[WEBHOOKS].find(request.match_info["webhookId"])
    if found is None or not may_manage_webhook(found.creator_id, who.actor()):
        raise Problem.of(404, "webhook-not-found", "no webhook subscription with this id")
    return found


async def get_webhook(request: web.Request) -> web.StreamResponse:
    subscription = await _subscription(request)
    return json_response(await request.app[WEBHOOKS].status(subscription))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    subscription = await _subscription(request)
    await request.app[WEBHOOKS].delete(subscription)
    return web.Response(status=204)


async def replay_webhook(request: web.Request) -> web.StreamResponse:
    subscription = await _subscription(request)
    body, _ = await read_body(request, ReplayInput)
    await request.app[WEBHOOKS].replay(subscription, body.since)
    return json_response(
        {"id": subscription.id, "from": rfc3339(body.since), "status": "replaying"},
        status=202,
    )


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/webhooks",
        create_webhook,
        summary="Subscribe a URL to events, signed per Standard Webhooks (admin, service)",
        tag="webhooks",
        body=WebhookInput,
        responses={201: ("The subscription, with its secret (shown only here)", WebhookCreated)},
        errors=(400, 401, 403, 413, 415, 422, 503),
    ),
    Endpoint(
        "GET",
        "/api/v1/webhooks/{webhookId}",
        get_webhook,
        summary="A subscription and how its deliveries go (its creator, admin)",
        tag="webhooks",
        responses={200: ("The subscription and its status", WebhookStatus)},
        errors=(401, 404, 503),
        params=(WEBHOOK_ID,),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/webhooks/{webhookId}",
        delete_webhook,
        summary="End a subscription: its deliveries stop at once (its creator, admin)",
        tag="webhooks",
        responses={204: ("Ended", None)},
        errors=(401, 404, 503),
        params=(WEBHOOK_ID,),
    ),
    Endpoint(
        "POST",
        "/api/v1/webhooks/{webhookId}/replay",
        replay_webhook,
        summary="Deliver every matching event since a moment again, in order (its creator, admin)",
        tag="webhooks",
        body=ReplayInput,
        responses={202: ("The replay is under way", {"type": "object"})},
        errors=(400, 401, 404, 413, 415, 422, 503),
        params=(WEBHOOK_ID,),
    ),
]
