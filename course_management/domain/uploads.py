"""Content uploads: which files a course may hold, where they go, how they are sent. Pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MiB = 1024 * 1024
GiB = 1024 * MiB

# Allowed content types and the largest object of each.
MAX_SIZE_BY_TYPE: dict[str, int] = {
    "video/mp4": 10 * GiB,
    "video/webm": 10 * GiB,
    "audio/mpeg": GiB,
    "audio/mp4": GiB,
    "audio/ogg": GiB,
    "application/pdf": 200 * MiB,
    "image/png": 20 * MiB,
    "image/jpeg": 20 * MiB,
    "image/webp": 20 * MiB,
    "image/gif": 20 * MiB,
    "text/markdown": 5 * MiB,
    "application/zip": GiB,
}
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    content_type: str
    size_bytes: Annotated[int, Field(gt=0)]

    @field_validator("content_type")
    @classmethod
    def _allowed(cls, value: str) -> str:
        if value not in MAX_SIZE_BY_TYPE:
            raise ValueError(f"must be one of {', '.join(sorted(MAX_SIZE_BY_TYPE))}")
        return value

    @field_validator("size_bytes")
    @classmethod
    def _not_too_big(cls, value: int, info: object) -> int:
        data = getattr(info, "data", {})
        limit = MAX_SIZE_BY_TYPE.get(data.get("content_type", ""), 0)
        if limit and value > limit:
            raise ValueError(f"must be at most {limit} bytes for {data['content_type']}")
        return value


@dataclass(frozen=True)
class UploadPlan:
    key: str
    content_type: str
    size_bytes: int
    max_size_bytes: int
    part_size_bytes: int | None  # None: a single PUT
    parts: int


def content_prefix(course_id: str) -> str:
    return f"courses/{course_id}/"


def plan_upload(
    course_id: str,
    upload_id: str,
    request: UploadRequest,
    *,
    multipart_threshold: int,
    part_size: int,
) -> UploadPlan:
    name = _SAFE.sub("-", request.filename).strip("-.") or "file"
    key = f"{content_prefix(course_id)}content/{upload_id}/{name}"
    limit = MAX_SIZE_BY_TYPE[request.content_type]
    if request.size_bytes <= multipart_threshold:
        return UploadPlan(key, request.content_type, request.size_bytes, limit, None, 1)
    size = max(part_size, MIN_PART_SIZE, math.ceil(request.size_bytes / MAX_PARTS))
    return UploadPlan(
        key,
        request.content_type,
        request.size_bytes,
        limit,
        size,
        math.ceil(request.size_bytes / size),
    )


def content_keys(payload: dict[str, object]) -> list[tuple[str, str]]:
    """(field path, key) of every item `content_key` set in a create/update body."""
    found: list[tuple[str, str]] = []
    modules = payload.get("modules") or []
    assert isinstance(modules, list)
    for mi, module in enumerate(modules):
        for ii, item in enumerate(module.get("items") or []):
            key = item.get("content_key")
            if key:
                found.append((f"modules[{mi}].items[{ii}].content_key", key))
    return found


def without_content_keys(course: dict[str, Any]) -> dict[str, Any]:
    """The course as shown to whoever may not edit it: every item's `content_key` null."""
    return {
        **course,
        "modules": [
            {**module, "items": [{**item, "content_key": None} for item in module["items"]]}
            for module in course.get("modules", [])
        ],
    }


def has_content_keys(course: dict[str, Any]) -> bool:
    return any(
        item.get("content_key") for module in course.get("modules", []) for item in module["items"]
    )
