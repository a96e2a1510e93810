"""`CompletionEntry` on the compacted course-management-completions
(schemas/completion_entry.avsc): a learner completed a course, keyed
"<user id>:<course id>", for the completions index every worker keeps
(streams/completions.py, decision 57)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from course_management.topology import COURSE_COMPLETIONS, spec

TOPIC = COURSE_COMPLETIONS
SUBJECT = spec(TOPIC).subject


@dataclass(frozen=True)
class CompletionEntry:
    user_id: str
    course_id: str
    completed_at: str  # RFC 3339 UTC

    @property
    def key(self) -> str:
        return f"{self.user_id}:{self.course_id}"


def encode(entry: CompletionEntry) -> dict[str, Any]:
    return asdict(entry)


def decode(value: dict[str, Any]) -> CompletionEntry:
    return CompletionEntry(
        user_id=value["user_id"], course_id=value["course_id"], completed_at=value["completed_at"]
    )
