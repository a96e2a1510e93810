"""Operational routes: liveness, readiness, metrics, the OpenAPI and AsyncAPI documents."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from course_management.api.http import json_response
from course_management.api.models import Health, Readiness
from course_management.api.openapi import Endpoint
from course_management.api.ports import READINESS
from course_management.infra.metrics import READY

OPENAPI_DOCUMENT = web.AppKey("openapi", dict)
ASYNCAPI_DOCUMENT = web.AppKey("asyncapi", dict)


async def healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    checks = await request.app[READINESS].readiness()
    ready = all(checks.values())
    READY.set(1 if ready else 0)
    return json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI_DOCUMENT])


async def asyncapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[ASYNCAPI_DOCUMENT])


ENDPOINTS = [
    Endpoint(
        "GET",
        "/healthz",
        healthz,
        "Liveness",
        "operations",
        auth=False,
        responses={200: ("The process is alive", Health)},
    ),
    Endpoint(
        "GET",
        "/readyz",
        readyz,
        "Readiness: tables recovered, dependencies answer",
        "operations",
        auth=False,
        responses={200: ("Ready", Readiness), 503: ("Not ready yet", Readiness)},
    ),
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        "operations",
        auth=False,
        responses={200: ("Prometheus text exposition", {"type": "string"})},
        content_type="text/plain",
    ),
    Endpoint(
        "GET",
        "/openapi.json",
        openapi,
        "This document (OpenAPI 3.1)",
        "operations",
        auth=False,
        responses={200: ("OpenAPI 3.1", {"type": "object"})},
    ),
    Endpoint(
        "GET",
        "/asyncapi.json",
        asyncapi,
        "The topics this service writes and reads (AsyncAPI 3.0, Avro payloads)",
        "operations",
        auth=False,
        responses={200: ("AsyncAPI 3.0", {"type": "object"})},
    ),
]
