"""Pagination shared by list routes: `?limit=` (1..100, default 20) and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from course_management.api.openapi import Param
from course_management.api.problems import Problem, validation_problem

# The query parameters of every list route, for the OpenAPI document.
PAGE_PARAMS = (
    Param(
        "limit",
        "query",
        "Page size, 1..100 (default 20)",
        schema={"type": "integer", "minimum": 1, "maximum": 100},
    ),
    Param("cursor", "query", "Opaque: the `next_cursor` of the previous page"),
)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: str | None = None


def page_query(request: web.Request) -> PageQuery:
    try:
        return PageQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise Problem.from_validation(exc) from None


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *fields: str) -> dict[str, Any] | None:
    """The position a cursor names; a cursor this service did not make is a 422."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or any(not isinstance(position.get(f), str) for f in fields):
        raise validation_problem([("cursor", "not a cursor from this list")])
    return position


def page_body(
    items: list[dict[str, Any]], limit: int, next_position: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "items": items[:limit],
        "next_cursor": encode_cursor(next_position)
        if next_position and len(items) > limit
        else None,
    }
