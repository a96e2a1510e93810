"""What the `course-management` commands share: one flag per setting, the settings read
from them (a bad one is one line and exit 2), progress bars on stderr."""

from __future__ import annotations

import sys
from typing import Any

import click

from course_management.config import ConfigError, Settings, load_settings


def setting_options(fn: Any) -> Any:
    """One flag per setting (`--kafka-bootstrap-servers` for KAFKA_BOOTSTRAP_SERVERS, ...)."""
    for name, field in reversed(list(Settings.model_fields.items())):
        flag = "--" + name.replace("_", "-")
        fn = click.option(
            flag,
            name,
            default=None,
            help=f"{name.upper()} ({field.description or ''})".replace(" ()", ""),
        )(fn)
    return fn


def settings_from(overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


class Bars:
    """ops.progress.Steps as progress bars on stderr: one per step, counting records."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *_: object) -> None:
        self._close()

    def step(self, name: str) -> None:
        from tqdm import tqdm

        self._close()
        self._bar = tqdm(desc=name, unit="record", file=sys.stderr)

    def read(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
