"""A JSON request body, parsed strictly: whatever a client sends gets a 400 or 422 naming
what is wrong, never a 500 later (issue 12).

Refused, beyond what `json` itself refuses: a body nested deeper than MAX_DEPTH (the
decoder would otherwise recurse until Python stops it), duplicate keys in an object (two
values for one field: which one was meant?), NaN, Infinity and numbers too large for a
double, integers outside the signed 64-bit range (no store or schema here holds them),
and strings or keys that are not valid Unicode (lone surrogates, which cannot be encoded
as UTF-8 and so could not be sent on).
"""

from __future__ import annotations

import json
import math
from typing import Any

from course_management.api.problems import Problem

MAX_DEPTH = 32
INT64 = 2**63


class _Refused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Refused(key, "duplicate key")
        seen[key] = value
    return seen


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("body", f"the number {text[:40]} is too large")
    return value


def _constant(name: str) -> Any:
    raise _Refused("body", f"{name} is not JSON")


def _walk(value: Any) -> None:
    """Depth, integer range and encodable text, without recursion."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Refused(path or "body", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                _text(key, path or "body")
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int) and not -INT64 <= node < INT64:
            raise _Refused(path or "body", "an integer beyond the signed 64-bit range")
        elif isinstance(node, str):
            _text(node, path or "body")


def _text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(field, "not valid Unicode (a lone surrogate)") from None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; a Problem (400 naming the field) for anything else."""
    try:
        data = json.loads(
            raw, object_pairs_hook=_pairs, parse_float=_float, parse_constant=_constant
        )
        _walk(data)
    except _Refused as refused:
        raise Problem.of(
            400,
            "malformed-json",
            f"the body is not acceptable JSON: {refused}",
            errors=[{"field": refused.field, "message": refused.message}],
        ) from None
    except RecursionError:
        raise Problem.of(
            400, "malformed-json", f"the body is nested deeper than {MAX_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem.of(400, "malformed-json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Problem.of(400, "malformed-json", "the body must be a JSON object")
    return data
