"""A unit: one batch's writes to one partition of the `course-state` table, as the records
of one Kafka record batch. Pure: no Faust, no I/O.

The course agent writes its table through units (streams/unit_log.py, decision 49). A
unit holds the last value of every key the batch wrote on the partition, the tracking
of what it applied (streams/tracking.py) and its outbox (the events, catalog entries and
dead letters it decided, published after the unit is durable). It is sent as one explicit
record batch, which the broker appends whole or not at all, so the changelog only ever
holds whole units.

**Placement.** Every record carries, in the `cms-at` header, the offset its writer
expected it to land at (the end of the changelog as the writer last knew it, plus the
record's place in the unit). A record is *placed* when it landed there. A record that
did not was written by a worker that no longer owned the partition (paused past its
session, or still finishing a batch while the partition moved): somebody else appended
in between. Readers (Faust's recovery through tables/store.py, the restore before start
in tables/restore.py) skip records that are not placed, and a writer whose unit did not
land where it expected stops before it writes its local store or publishes anything.
That is the fencing a transactional producer would give, without its coordinator round
trips (decision 49). Records without the header (written before units) are placed.

The encodings are Faust's own for a table with `str` keys and JSON values (the json
codec with orjson), so Faust reads what this module writes (tests/unit/test_units.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

POSITION_HEADER = "cms-at"
WRITER_HEADER = "cms-by"  # on a unit's first record: which writer (tells its own unit apart)
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z

# (key, value or None for a deletion, headers) as they go into the record batch
# (infra/changelog.BatchRecord)
UnitRecord = tuple[bytes, bytes | None, list[tuple[str, bytes]]]
# An outgoing Kafka record, encoded: (topic, key, value, headers)
Outgoing = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


def encode_key(key: str) -> bytes:
    return orjson.dumps(key)


def decode_key(raw: bytes) -> str:
    key = orjson.loads(raw)
    if not isinstance(key, str):
        raise TypeError(f"a course-state key is a string, not {key!r}")
    return key


def encode_value(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=_OPTIONS)


def decode_value(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def unit_records(writes: Mapping[str, Any], base: int, writer: bytes) -> list[UnitRecord]:
    """The records of a unit that is to start at offset `base`: each key once, with its
    last value (None deletes it), each saying where it is to land; the first also says
    who wrote it."""
    records: list[UnitRecord] = [
        (encode_key(key), encode_value(value), [(POSITION_HEADER, str(base + i).encode())])
        for i, (key, value) in enumerate(writes.items())
    ]
    if records:
        records[0][2].append((WRITER_HEADER, writer))
    return records


def written_by(headers: Iterable[tuple[str, bytes]], writer: bytes, offset: int) -> bool:
    """Is this record the placed first record of a unit of `writer`'s?"""
    pairs = list(headers)
    return (WRITER_HEADER, writer) in pairs and is_placed(offset, pairs)


def expected_offset(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> int | None:
    """Where a changelog record's writer expected it (None: no header, an older record)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == POSITION_HEADER:
            try:
                return int(value)
            except ValueError:
                return -1  # a header that says nothing sensible places nothing
    return None


def is_placed(
    offset: int, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
) -> bool:
    """Did this changelog record land where its writer expected it?"""
    expected = expected_offset(headers)
    return expected is None or expected == offset


# -- the outbox ---------------------------------------------------------------------------


@dataclass
class Outbox:
    """What a unit publishes once it is durable, kept in the unit itself (key
    `#outbox:<partition>`), so a worker that crashed before publishing it, or the next
    owner of the partition, publishes exactly the same records again: the records, in
    order, the Redis entries to refresh (courses, enrollments as (course, user)), and the
    replies to the requests that wait for its inputs (reply topic, command id, record)."""

    records: list[Outgoing] = field(default_factory=list)
    courses: list[str] = field(default_factory=list)
    enrollments: list[tuple[str, str]] = field(default_factory=list)
    replies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def to_value(self) -> dict[str, Any]:
        return {
            "records": [
                [topic, _b64(key), _b64(value), [[name, _b64(v)] for name, v in headers]]
                for topic, key, value, headers in self.records
            ],
            "courses": list(self.courses),
            "enrollments": [list(pair) for pair in self.enrollments],
            "replies": [[topic, key, value] for topic, key, value in self.replies],
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Outbox:
        return cls(
            records=[
                (str(topic), _unb64(key), _unb64(raw), [(str(n), _unb64(v) or b"") for n, v in hs])
                for topic, key, raw, hs in value.get("records", ())
            ],
            courses=[str(c) for c in value.get("courses", ())],
            enrollments=[(str(c), str(u)) for c, u in value.get("enrollments", ())],
            replies=[(str(t), str(k), dict(v)) for t, k, v in value.get("replies", ())],
        )


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def records_size(records: Sequence[Outgoing]) -> int:
    return sum(len(key or b"") + len(value or b"") for _, key, value, _ in records)
