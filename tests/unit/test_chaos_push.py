"""The chaos checker of push (chaos/push.py): each anomaly it must find, found, and a
clean run clean."""

from __future__ import annotations

from chaos.push import Receiver, StreamClient, check_push


def _ev(event_id: str, course: str = "c1") -> dict[str, str]:
    return {"event_id": event_id, "course_id": course}


COURSE = [_ev("a1"), _ev("a2"), _ev("x1", "c2")]
ENROLMENT = [_ev("e1"), _ev("e2"), _ev("e1")]  # e1 published again after a crash
MILESTONES = [_ev("m1")]


def _check(hooked: list[str], streamed: list[str] | None = None) -> list[str]:
    receiver = Receiver(1)
    receiver.received = hooked
    stream = None
    if streamed is not None:
        stream = StreamClient("c1", "t", [])
        stream.received = streamed
    return [kind for kind, _, _ in check_push(receiver, stream, COURSE, ENROLMENT, MILESTONES)]


def test_everything_once_or_more_in_each_topics_order_is_clean() -> None:
    assert _check(["a1", "e1", "a2", "x1", "e2", "m1"], ["e1", "a1", "a2", "e2", "m1"]) == []
    # a repeat (at least once) is fine for webhooks, even after later events
    assert _check(["a1", "e1", "a2", "x1", "e2", "a2", "m1", "e1"]) == []


def test_a_missing_event_an_unknown_one_and_disorder_are_found() -> None:
    assert _check(["a1", "e1", "x1", "e2", "m1"]) == ["webhook: missing"]
    assert _check(["a1", "e1", "a2", "x1", "e2", "m1", "zz"]) == ["webhook: never published"]
    assert _check(["a2", "a1", "e1", "x1", "e2", "m1"]) == ["webhook: out of order"]


def test_a_stream_must_deliver_its_course_exactly_once() -> None:
    found = _check(["a1", "e1", "a2", "x1", "e2", "m1"], ["a1", "a2", "e1", "e2", "e2", "m1"])
    assert found == ["stream: delivered twice"]
    found = _check(["a1", "e1", "a2", "x1", "e2", "m1"], ["a1", "a2", "e1", "m1"])
    assert found == ["stream: missing"]


def test_a_bad_signature_is_an_anomaly() -> None:
    receiver = Receiver(1)
    receiver.received = ["a1", "a2", "x1", "e1", "e2", "m1"]
    receiver.bad_signatures = 2
    kinds = [k for k, _, _ in check_push(receiver, None, COURSE, ENROLMENT, MILESTONES)]
    assert kinds == ["webhook signature refused"]
