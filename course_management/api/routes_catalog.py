"""The catalog (CONTRACT §3): `GET /api/v1/courses` and ratings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from course_management.api.http import json_response, read_body, require_principal
from course_management.api.models import CoursePage, RatingResult
from course_management.api.openapi import Endpoint, Param
from course_management.api.ports import BACKEND
from course_management.api.routes_courses import (
    COURSE_ID,
    course_id_param,
    problem_from_reply,
    send_command,
)
from course_management.domain.catalog import CatalogParams, parse_query
from course_management.domain.problems import Problem
from course_management.domain.ratings import RatingInput


async def list_courses(request: web.Request) -> web.StreamResponse:
    """Published courses: full text, filters, sorts, facets, cursor pages (anyone)."""
    query = parse_query(dict(request.query))
    body = await request.app[BACKEND].search_catalog(query)
    return json_response(body, headers={"Cache-Control": "public, max-age=5"})


async def rate_course(request: web.Request) -> web.StreamResponse:
    """One rating per enrolled student; posting again replaces it."""
    who = require_principal(request)
    course_id = course_id_param(request)
    if not who.has("student"):
        raise Problem.of(403, "forbidden", "ratings come from enrolled students")
    _, payload = await read_body(request, RatingInput)
    reply = await send_command(request, who, "rate_course", course_id, payload)
    if reply.status != 200:
        raise problem_from_reply(reply.status, reply.body)
    return json_response(reply.body)


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
        errors=(422, 503),
        params=_query_params(),
    ),
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/ratings",
        rate_course,
        summary="Rate a course (an enrolled student; posting again replaces the rating)",
        tag="catalog",
        body=RatingInput,
        responses={200: ("The rating and the course's rating after it", RatingResult)},
        errors=(400, 401, 403, 404, 413, 415, 422, 503),
        params=(COURSE_ID,),
    ),
]
