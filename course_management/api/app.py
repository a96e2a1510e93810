"""The aiohttp application factory: routes, middlewares, the OpenAPI document."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from aiohttp.typedefs import Middleware

from course_management.api import (
    routes_catalog,
    routes_courses,
    routes_docs,
    routes_enrollments,
    routes_history,
    routes_jobs,
    routes_ops,
    routes_ratings,
    routes_streams,
    routes_webhooks,
)
from course_management.api.asyncapi import asyncapi_document
from course_management.api.auth import TokenVerifier
from course_management.api.http import MAX_BODY_BYTES
from course_management.api.middleware import AccessLog, build_middlewares
from course_management.api.openapi import Endpoint, add_routes, build_document
from course_management.api.ports import (
    CONTENT,
    HISTORY,
    LIVE,
    READINESS,
    READS,
    UPLOAD_LIMITS,
    WEBHOOKS,
    WRITES,
    ContentStorage,
    History,
    Live,
    Readiness,
    Reads,
    Webhooks,
    Writes,
)

ENDPOINTS: list[Endpoint] = [
    *routes_ops.ENDPOINTS,
    *routes_docs.ENDPOINTS,
    *routes_catalog.ENDPOINTS,
    *routes_courses.ENDPOINTS,
    *routes_enrollments.ENDPOINTS,
    *routes_history.ENDPOINTS,
    *routes_jobs.ENDPOINTS,
    *routes_ratings.ENDPOINTS,
    *routes_streams.ENDPOINTS,
    *routes_webhooks.ENDPOINTS,
]


def _version() -> str:
    try:
        return version("course-management")
    except PackageNotFoundError:
        return "0.0.0"


def openapi_document() -> dict[str, object]:
    return build_document(ENDPOINTS, title="MoocFlix course-management-service", version=_version())


def create_app(
    *,
    writes: Writes,
    reads: Reads,
    history: History,
    live: Live,
    webhooks: Webhooks,
    readiness: Readiness,
    verifier: TokenVerifier,
    content: ContentStorage,
    upload_limits: dict[str, int],
    rate_limit: Middleware | None = None,
    access_log: AccessLog | None = None,
) -> web.Application:
    """The API over its ports (api/ports.py): the worker passes the real ones, the
    in-process tests fakes. `rate_limit` (api/rate_limits.py) runs after authentication."""
    by_name = {ep.handler.__name__: ep for ep in ENDPOINTS}
    middlewares = build_middlewares(verifier, by_name, access_log)
    if rate_limit is not None:
        middlewares.append(rate_limit)
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[WRITES] = writes
    app[READS] = reads
    app[HISTORY] = history
    app[LIVE] = live
    app[WEBHOOKS] = webhooks
    app[READINESS] = readiness
    app[CONTENT] = content
    app[UPLOAD_LIMITS] = upload_limits
    app[routes_ops.OPENAPI_DOCUMENT] = openapi_document()
    app[routes_ops.ASYNCAPI_DOCUMENT] = asyncapi_document(_version())
    add_routes(app, ENDPOINTS)
    return app
