"""Consistency tokens: what a write left behind, so that a read can wait for it. Pure.

Every write's answer carries a token (the `Consistency-Token` header): the versions the
write made, one mark per store kind it reaches. A read that sends the token back answers
only from a store holding at least those versions (gateways/reads.py checks each store it
answers from). The token is opaque to clients: base64url of compact JSON, versioned by
its first field so that it can change shape later.

- `course`: (course id, course version): point reads of the course and its modules;
- `catalog`: (course id, catalog version, which grows with the course and its seats):
  the catalog on either backend;
- `enrollment`: (course id, user id, enrollment version): the enrollment's point read
  and both lists;
- `rating`: (course id, user id, the catalog version the rating made): the ratings list.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

TOKEN_FORMAT = 1
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Marks:
    course: tuple[str, int] | None = None
    catalog: tuple[str, int] | None = None
    enrollment: tuple[str, str, int] | None = None
    rating: tuple[str, str, int] | None = None

    def course_version(self, course_id: str) -> int:
        """The course version a read of `course_id` must reach (0: none)."""
        return self.course[1] if self.course and self.course[0] == course_id else 0

    def catalog_version(self) -> tuple[str, int] | None:
        return self.catalog

    def enrollment_version(self, course_id: str, user_id: str) -> int:
        e = self.enrollment
        return e[2] if e and e[0] == course_id and e[1] == user_id else 0


NONE = Marks()
_SHORT = {"course": "c", "catalog": "k", "enrollment": "e", "rating": "r"}


def encode(marks: Marks) -> str:
    body: dict[str, Any] = {"f": TOKEN_FORMAT}
    for name, short in _SHORT.items():
        value = getattr(marks, name)
        if value is not None:
            body[short] = list(value)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> Marks:
    """The marks of a token; ValueError (saying why) for anything that is not one."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise ValueError("not a consistency token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a consistency token") from None
    if not isinstance(body, dict) or body.get("f") != TOKEN_FORMAT:
        raise ValueError("not a consistency token of this service")
    return Marks(
        course=_mark(body.get("c"), (str, int)),
        catalog=_mark(body.get("k"), (str, int)),
        enrollment=_mark(body.get("e"), (str, str, int)),
        rating=_mark(body.get("r"), (str, str, int)),
    )


def _mark(value: Any, shape: tuple[type, ...]) -> Any:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != len(shape)
        or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(value, shape, strict=True)
        )
        or any(isinstance(v, int) and not 0 <= v < 2**63 for v in value)
    ):
        raise ValueError("a consistency token with a damaged mark")
    return tuple(value)
