"""Routes declared once, with their models: aiohttp serves them and OpenAPI 3.1 describes them.

Each `Endpoint` names its handler, request body model, responses and who may call it; the
document at /openapi.json is generated from these declarations and the pydantic models'
JSON Schemas (2020-12, which OpenAPI 3.1 uses as is), so it cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_STANDARD_ERRORS = {
    400: "Malformed request (a body that is not JSON; a query parameter the operation does"
    " not declare, or a declared one given twice; a header the service reads, such as"
    " X-Request-ID, Authorization or Idempotency-Key, with a byte outside visible ASCII:"
    " `errors` names it)",
    401: "Missing, expired, malformed or badly signed token",
    403: "Authenticated but not allowed: `forbidden` when the caller's role may not do this,"
    " `not-course-owner` when the course is another instructor's (writes and enrolment"
    " reads alike)",
    404: "Not found: `course-not-found` also for a draft, on every route, to whoever may"
    " not see it (only its instructor and admins may); `not-enrolled` when the enrolment"
    " a route needs does not exist (reads, progress, ratings, cancellation alike)",
    409: "Conflict with the current state; `type` says why",
    412: "If-Match names a version that is not the current one",
    413: "Request body over 1 MiB",
    415: "Body is not application/json",
    422: "Validation failed; `errors` names each field",
    414: "The path and query string are over 8 KiB",
    429: "Over the caller's rate limit; `Retry-After` says when to retry",
    431: "The request's headers are over 16 KiB",
    503: "A dependency is unavailable or the write was not confirmed in time",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path | query | header
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: RequestHandler
    summary: str
    tag: str
    auth: bool = True  # needs a token (the handler still checks roles and ownership)
    body: type[BaseModel] | None = None
    responses: dict[int, tuple[str, type[BaseModel] | dict[str, Any] | None]] = field(
        default_factory=dict
    )
    errors: Sequence[int] = ()
    params: Sequence[Param] = ()
    content_type: str = "application/json"
    body_also: Sequence[str] = ()  # other media types the body may have (as text)
    content_types: Sequence[str] = ()  # when a success may be one of several (docs assets)
    consistency: bool = False  # a write: its success responses carry a Consistency-Token
    # A hot point read that spends its rate-limit request in the same Redis script that
    # fetches its data (one round trip; api/rate_limits.py)
    read_spends_limit: bool = False
    # OpenAPI links of a success response: {status: {name: (operationId, parameters)}}
    links: dict[int, dict[str, tuple[str, dict[str, str]]]] = field(default_factory=dict)
    # The headers a response always carries, by status (names of RESPONSE_HEADERS)
    response_headers: dict[int, Sequence[str]] = field(default_factory=dict)


CONSISTENCY_TOKEN = Param(
    "Consistency-Token",
    "header",
    "The Consistency-Token of a write's response: the read answers only from a store that "
    "has applied that write, waiting a bounded time, then 503 with Retry-After (never older "
    "data). Opaque; 400 when it is not one this service made",
)
_TOKEN_HEADER = {
    "Consistency-Token": {
        "description": "Opaque. Send it back on a read (as a request header) to read this "
        "write or a newer state from any worker and store",
        "schema": {"type": "string"},
    }
}


# Response headers the document declares. `required`: every such response carries it
# (the fuzz run checks each against the live worker).
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's own id (visible ASCII, up to 200), or a new UUID",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": '`"<version>.<seats taken>.<ratings>.<average x 100>"`: send it as'
        " If-None-Match, or as If-Match on an update or delete (only the version decides:"
        " seats taken and ratings change what a read returns, never the version)",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The resource the write made or found",
        "required": True,
        "schema": {"type": "string"},
    },
    "Vary": {
        "description": "`Authorization`: the items' `content_key` is shown only to whoever"
        " may edit the course and to services (null to everyone else)",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "How long a shared cache may keep the answer",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimit": {
        "description": 'The caller\'s budget left (IETF draft): `"<budget>";r=<left>;t=<reset s>`;'
        " on every answer of a limited route once the limit was checked",
        "required": False,
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'The budget: `"<budget>";q=<requests>;w=<window s>`',
        "required": False,
        "schema": {"type": "string"},
    },
}


def _headers(names: Iterable[str], required: bool | None = None) -> dict[str, Any]:
    shown = {}
    for name in names:
        spec = dict(RESPONSE_HEADERS[name])
        if required is not None:
            spec["required"] = required
        shown[name] = spec
    return shown


UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def route_path(path: str) -> str:
    """The router's form of a documented path: a course id matches only a UUID, so that
    `/api/v1/courses/create` is never also read as a course (as OpenAPI has it: a
    concrete path wins over a template), and `Allow` lists what the document lists; for
    the same reason an enrollment's user id is never `batch` (the bulk enrolment route)."""
    path = path.replace("{courseId}", "{courseId:" + UUID_PATTERN + "}")
    return path.replace("/enrollments/{userId}", "/enrollments/{userId:(?!batch$)[^/]+}")


def add_routes(app: web.Application, endpoints: Sequence[Endpoint]) -> None:
    """The hot point reads first: aiohttp tries the resources of a path prefix in order,
    and no other path matches theirs (a course id is a UUID), so order changes nothing
    else (the document keeps the endpoints' own order)."""
    for ep in sorted(endpoints, key=lambda ep: not ep.read_spends_limit):
        app.router.add_route(ep.method, route_path(ep.path), ep.handler, name=ep.handler.__name__)


def _schema_ref(
    model: type[BaseModel] | dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    if isinstance(model, dict):
        return model
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_document(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in ep.params
            ]
            + [
                {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "Echoed on the response; generated when absent",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {},
        }
        op["security"] = [{"bearer": []}] if ep.auth else [{}, {"bearer": []}]
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(ep.body, components)},
                    **{kind: {"schema": {"type": "string"}} for kind in ep.body_also},
                },
            }
        limited = ep.tag != "operations"
        rate_headers = ("RateLimit", "RateLimit-Policy") if limited else ()
        for status, (description, model) in ep.responses.items():
            response: dict[str, Any] = {"description": description}
            response["headers"] = {
                **_headers(("X-Request-ID", *ep.response_headers.get(status, ()))),
                **_headers(rate_headers),
            }
            if ep.consistency and 200 <= status < 300:
                response["headers"].update(_TOKEN_HEADER)
            if status in ep.links:
                response["links"] = {
                    name: {"operationId": operation, "parameters": parameters}
                    for name, (operation, parameters) in ep.links[status].items()
                }
            if model is not None:
                schema = _schema_ref(model, components)
                types = ep.content_types or (ep.content_type,)
                response["content"] = {media: {"schema": schema} for media in types}
            op["responses"][str(status)] = response
        # Every route: oversized targets and headers, a header outside ASCII, an unknown or
        # repeated query parameter (api/middleware.py); every route but the operations'
        # spends a rate-limit budget (api/rate_limits.py).
        for status in sorted({*ep.errors, 400, 414, 431, *((429,) if limited else ())}):
            waits = ("Retry-After",) if status in (429, 503) else ()
            op["responses"][str(status)] = {
                "description": _STANDARD_ERRORS[status],
                "headers": {
                    **_headers(("X-Request-ID", *waits)),
                    **_headers(rate_headers, required=True if status == 429 else None),
                },
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
