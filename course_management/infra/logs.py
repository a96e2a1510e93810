"""JSON logs on stderr, one object a line (python-json-logger), each carrying the
context it was written in: the request id, and in the agent the input's course id,
event id, topic, partition and offset (`log_context`)."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("cms_log_context", default={})  # noqa: B039


class log_context:  # lower case: used as a function, `with log_context(...)`
    """Every log record written inside carries these fields (None values are left out).

    A class, not a generator: `contextlib.contextmanager` writes `__traceback__` on the
    exception leaving the block, which the domain's frozen-dataclass exceptions refuse."""

    def __init__(self, **fields: Any) -> None:
        self._added = {name: value for name, value in fields.items() if value is not None}
        self._token: Token[dict[str, Any]] | None = None

    def __enter__(self) -> None:
        self._token = _CONTEXT.set({**_CONTEXT.get(), **self._added})

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _CONTEXT.reset(self._token)


def context_value(name: str) -> Any:
    """A field of the current log context (None outside one)."""
    return _CONTEXT.get().get(name)


class ContextFilter(logging.Filter):
    """Adds the current log context to each record (fields the record names itself win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def logging_config(level: str = "INFO") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "filters": {"context": {"()": "course_management.infra.logs.ContextFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": level},
            "mode": {"level": "WARNING" if level == "INFO" else level},
            "aiohttp.access": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},
        },
    }
