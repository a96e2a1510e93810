"""The history file: one JSON line per attempt, written as the answer comes (or doesn't).

An attempt is one request (or one record produced). Its `request_id` is sent as
`X-Request-ID` (or as the record's `x-request-id` header), and every event the service
publishes carries it, so the checker can tell which attempt caused which event. Attempts
of one logical operation (retries) share its `op`.

Outcomes:
- `ok`: a 2xx answer, or a record the broker acknowledged;
- `refused`: a 4xx answer (definitive: nothing was applied);
- `unknown`: a 5xx, a timeout or a connection lost after sending (it may apply, once);
- `not_sent`: the connection was refused (nothing left this process).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = ("ok", "refused", "unknown", "not_sent")


def outcome_of_status(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "refused"
    return "unknown"


@dataclass
class Attempt:
    op: str  # the logical operation (its retries share it)
    request_id: str  # unique per attempt
    kind: str  # create | update | enroll | cancel | progress | rate | feed_enroll | feed_progress
    client: str
    course_id: str | None = None
    user_id: str | None = None
    worker: str | None = None  # the worker asked (None for records produced)
    sent_at: float = 0.0
    answered_at: float = 0.0
    status: int | None = None
    outcome: str = "unknown"
    detail: str = ""
    args: dict[str, Any] = field(default_factory=dict)  # what was asked (stars, item, ...)
    answer: dict[str, Any] = field(default_factory=dict)  # what came back that matters


class History:
    """Appends attempts to a JSON-lines file as they finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def record(self, attempt: Attempt) -> Attempt:
        self._file.write(json.dumps(asdict(attempt), sort_keys=True) + "\n")
        self._file.flush()
        return attempt

    def note(self, what: str, **fields: Any) -> None:
        """A line that is not an attempt (a fault carried out, a phase)."""
        self._file.write(json.dumps({"note": what, "t": self.now(), **fields}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_history(path: Path) -> tuple[list[Attempt], list[dict[str, Any]]]:
    """The attempts and the notes of a history file."""
    attempts: list[Attempt] = []
    notes: list[dict[str, Any]] = []
    for line in _lines(path):
        row = json.loads(line)
        if "note" in row:
            notes.append(row)
        else:
            attempts.append(Attempt(**row))
    return attempts, notes


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line
