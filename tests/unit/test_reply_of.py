"""A decoded CommandReply as the domain's Reply: the current shape (`outcome`), and the
shape of the version before it (an HTTP `status`, a problem document as the body), which
workers of that version still send during a rolling upgrade."""

from __future__ import annotations

import json

from course_management.domain.outcomes import Outcome, RefusalKind
from course_management.gateways.writes import reply_of


def test_a_reply_with_an_outcome_is_taken_as_it_is() -> None:
    reply = reply_of(
        {"command_id": "x", "status": 0, "outcome": "created", "body_json": '{"id": "c1"}'}
    )
    assert (reply.outcome, reply.body, reply.refusal) == (Outcome.CREATED, {"id": "c1"}, None)
    refused = reply_of(
        {
            "command_id": "x",
            "status": 0,
            "outcome": "course-full",
            "body_json": json.dumps({"kind": "course-full"}),
        }
    )
    assert refused.refusal is not None and refused.refusal.kind is RefusalKind.COURSE_FULL


def test_a_reply_of_the_previous_version_is_understood() -> None:
    assert (
        reply_of({"command_id": "x", "status": 204, "outcome": None, "body_json": None}).outcome
        == Outcome.REMOVED
    )
    problem = {
        "type": "https://moocflix.example/problems/version-mismatch",
        "title": "Precondition Failed",
        "status": 412,
        "detail": "stale",
    }
    reply = reply_of(
        {"command_id": "x", "status": 412, "outcome": None, "body_json": json.dumps(problem)}
    )
    assert reply.refusal is not None
    assert (reply.refusal.kind, reply.refusal.detail) == (RefusalKind.VERSION_MISMATCH, "stale")
