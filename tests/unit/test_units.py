"""Units of the course-state changelog (tables/units.py): Faust reads what they hold, a
record is placed only where its writer expected it, and an outbox comes back as it went.
Pure."""

from __future__ import annotations

from typing import Any

import faust
from hypothesis import given
from hypothesis import strategies as st

from course_management.tables.units import (
    POSITION_HEADER,
    WRITER_HEADER,
    Outbox,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    is_placed,
    unit_records,
    written_by,
)

_app = faust.App("units-test", autodiscover=False)
_faust = _app.Table("units-test", default=None, key_type=str, value_type=None).data

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.text(max_size=40), json_values)
def test_keys_and_values_are_encoded_as_faust_encodes_them(key: str, value: Any) -> None:
    assert encode_key(key) == _faust._encode_key(key)
    assert decode_key(encode_key(key)) == key
    if value is not None:
        assert encode_value(value) == _faust._encode_value(value)
        assert decode_value(encode_value(value)) == _faust._decode_value(encode_value(value))


def test_a_unit_says_where_each_record_is_to_land_and_who_wrote_it() -> None:
    records = unit_records({"a": 1, "b": None, "c": {"x": 2}}, 40, b"w1")
    assert [decode_key(k) for k, _, _ in records] == ["a", "b", "c"]
    assert [v for _, v, _ in records] == [b"1", None, b'{"x":2}']
    assert [dict(h)[POSITION_HEADER] for _, _, h in records] == [b"40", b"41", b"42"]
    assert [WRITER_HEADER in dict(h) for _, _, h in records] == [True, False, False]
    assert [is_placed(40 + i, h) for i, (_, _, h) in enumerate(records)] == [True] * 3
    assert not any(is_placed(41 + i, h) for i, (_, _, h) in enumerate(records))
    assert written_by(records[0][2], b"w1", 40)
    assert not written_by(records[0][2], b"w2", 40)
    assert not written_by(records[0][2], b"w1", 41)


def test_records_without_a_position_are_placed_and_a_bad_one_is_not() -> None:
    assert is_placed(7, None) and is_placed(7, []) and is_placed(7, {"other": b"x"})
    assert not is_placed(7, [(POSITION_HEADER, b"seven")])
    assert is_placed(7, {POSITION_HEADER: b"7"})


def test_an_outbox_comes_back_as_it_went() -> None:
    outbox = Outbox(
        records=[
            ("course-events", b"c1", b"\x00\x00\x00\x00\x01avro", [("x-request-id", b"r1")]),
            ("user-enrolled.dlq", None, None, []),
        ],
        courses=["c1"],
        enrollments=[("c1", "u1")],
    )
    stored = decode_value(encode_value(outbox.to_value()))
    assert Outbox.from_value(stored) == outbox
