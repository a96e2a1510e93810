"""JSON log lines carry the context they were written in (infra/logs.py)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from course_management.infra.logs import context_value, log_context, logging_config


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The service's own logging configuration, writing into a buffer."""
    root = logging.getLogger()
    kept = (root.handlers[:], root.level)
    config = logging_config("INFO")
    config["handlers"]["stderr"].pop("stream")
    logging.config.dictConfig(config)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], _ = kept
    root.setLevel(kept[1])


def test_a_line_carries_the_context_it_was_written_in(lines: io.StringIO) -> None:
    log = logging.getLogger("course_management.test")
    with log_context(request_id="r-1", course_id="c-1", offset=None):
        with log_context(topic="enrollment-inputs", partition=2, offset=7):
            log.info("inside")
        log.info("outer", extra={"course_id": "named-by-the-line"})
    log.info("outside")
    inside, outer, outside = (json.loads(line) for line in lines.getvalue().splitlines())
    assert inside["request_id"] == "r-1" and inside["course_id"] == "c-1"
    assert (inside["topic"], inside["partition"], inside["offset"]) == ("enrollment-inputs", 2, 7)
    assert outer["course_id"] == "named-by-the-line" and "offset" not in outer
    assert "request_id" not in outside


@dataclass(frozen=True)
class _Refused(Exception):
    reason: str


def test_a_frozen_exception_leaves_the_context_unchanged() -> None:
    with pytest.raises(_Refused), log_context(request_id="r-2"):
        assert context_value("request_id") == "r-2"
        raise _Refused("no")
    assert context_value("request_id") is None
