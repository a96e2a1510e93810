"""The catalog (CONTRACT §3): `GET /api/v1/courses`, published courses only."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from course_management.api.http import CONSISTENCY_HEADER, json_response, since
from course_management.api.models import CoursePage
from course_management.api.openapi import CONSISTENCY_TOKEN, Endpoint, Param
from course_management.api.ports import READS
from course_management.catalog.query import CatalogParams, parse_query
from course_management.domain.consistency import NONE


async def list_courses(request: web.Request) -> web.StreamResponse:
    """Published courses: full text, filters, sorts, facets, cursor pages (anyone)."""
    query = parse_query(dict(request.query))
    marks = since(request)
    body = await request.app[READS].search_catalog(query, marks)
    # A page read for a write must not be served to others from a shared cache.
    cache = "public, max-age=5" if marks == NONE else "no-store"
    return json_response(body, headers={"Cache-Control": cache, "Vary": CONSISTENCY_HEADER})


def _query_params() -> tuple[Param, ...]:
    schema = CatalogParams.model_json_schema()
    defs = schema.get("$defs", {})
    params = []
    for name, prop in schema["properties"].items():
        options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
        shown: dict[str, Any] = dict(options[0]) if options else {"type": "string"}
        if "$ref" in shown:
            shown = dict(defs[shown["$ref"].rsplit("/", 1)[-1]])
        shown.pop("title", None)
        if "default" in prop and prop["default"] is not None:
            shown["default"] = prop["default"]
        params.append(Param(name, "query", prop.get("description", name), schema=shown))
    return tuple(params)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/courses",
        list_courses,
        summary="The catalog: published courses with full text, filters, sorts and facets",
        tag="catalog",
        auth=False,
        responses={
            200: ("A page of published courses and the facets of the filtered set", CoursePage)
        },
        errors=(400, 422, 503),
        params=(*_query_params(), CONSISTENCY_TOKEN),
        response_headers={200: ("Cache-Control",)},
    ),
]
