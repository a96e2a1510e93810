"""The ids of live-stream events (domain/stream_ids.py): a position per topic, refused
when garbage or another stream's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_management.domain.stream_ids import (
    MAX_OFFSET,
    BadStreamId,
    StreamPosition,
    decode,
    scope_of,
)

SCOPE = scope_of("course-1")


@given(st.lists(st.integers(0, MAX_OFFSET), min_size=3, max_size=3))
def test_an_id_names_its_position_again(offsets: list[int]) -> None:
    position = StreamPosition(SCOPE, tuple(offsets))
    assert decode(position.encode(), SCOPE, 3) == position


def test_each_stream_has_its_own_scope() -> None:
    scopes = {scope_of("c1"), scope_of("c2"), scope_of("c1", "u1"), scope_of("c1", "u2")}
    assert len(scopes) == 4


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "garbage",
        f"{SCOPE}.1.2",  # a learner stream's id (two topics) on a course stream
        f"{SCOPE}.1.2.3.4",
        f"{SCOPE}.1.-2.3",
        f"{SCOPE}.1.x.3",
        f"{SCOPE}.1.2.99999999999999999999",
        f"{SCOPE}.1.2.\u0663",  # a digit, but not ASCII
    ],
)
def test_garbage_is_refused(raw: str) -> None:
    with pytest.raises(BadStreamId, match="not an event id"):
        decode(raw, SCOPE, 3)


def test_another_stream_s_id_is_refused() -> None:
    other = StreamPosition(scope_of("course-2"), (1, 2, 3)).encode()
    with pytest.raises(BadStreamId, match="another stream"):
        decode(other, SCOPE, 3)


def test_a_position_moves_forward_only() -> None:
    position = StreamPosition(SCOPE, (5, 7, 9))
    assert position.after(1, 3).offsets == (5, 7, 9)  # an older record: no move back
    assert position.after(1, 10).offsets == (5, 11, 9)
    assert position.at_least((6, 0, 20)).offsets == (6, 7, 20)
