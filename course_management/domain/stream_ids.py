"""The ids of live-stream events (CONTRACT §5.4): where a stream is, so that a client that
reconnects with `Last-Event-ID` gets every later event, none twice and none skipped, on
any worker and across restarts. Pure.

A stream reads its course's partition of each topic it follows (a course's records share
one partition number in every course topic: they are all keyed by the course id). An
event's id is the stream's position just after it: for each topic, the next offset to
read. So `<scope>.<offset>.<offset>.<offset>`, where `scope` names the stream (a digest
of its course, and learner for a learner's stream): an id from another stream is refused
instead of starting somewhere meaningless.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_OFFSET = 2**63 - 1


class BadStreamId(ValueError):
    """A `Last-Event-ID` this stream did not make (garbage, or another stream's)."""


def scope_of(course_id: str, user_id: str | None = None) -> str:
    """The stream's name in its ids: 12 hex digits of a digest of what it follows."""
    what = f"course:{course_id}" if user_id is None else f"learner:{course_id}:{user_id}"
    return hashlib.sha256(what.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StreamPosition:
    """For each topic the stream reads (in a fixed order), the next offset to read."""

    scope: str
    offsets: tuple[int, ...]

    def after(self, index: int, offset: int) -> StreamPosition:
        """The position once the record at `offset` of topic `index` is delivered."""
        offsets = list(self.offsets)
        offsets[index] = max(offsets[index], offset + 1)
        return StreamPosition(self.scope, tuple(offsets))

    def at_least(self, offsets: tuple[int, ...]) -> StreamPosition:
        """Moved up to `offsets` where it is behind them (never back)."""
        moved = tuple(max(a, b) for a, b in zip(self.offsets, offsets, strict=True))
        return StreamPosition(self.scope, moved)

    def encode(self) -> str:
        return ".".join([self.scope, *map(str, self.offsets)])


def decode(raw: str, scope: str, topics: int) -> StreamPosition:
    """The position a `Last-Event-ID` names, for the stream `scope` reading `topics`
    topics; BadStreamId for anything else."""
    parts = raw.strip().split(".")
    if len(parts) != topics + 1 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
        raise BadStreamId("not an event id of a live stream of this service")
    if parts[0] != scope:
        raise BadStreamId("an event id of another stream")
    offsets = tuple(int(p) for p in parts[1:])
    if any(len(p) > 19 or o > MAX_OFFSET for p, o in zip(parts[1:], offsets, strict=True)):
        raise BadStreamId("not an event id of a live stream of this service")
    return StreamPosition(scope, offsets)
