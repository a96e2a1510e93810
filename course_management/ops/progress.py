"""How a long operator command reports its progress: named steps, and within a step the
records read so far (the CLI draws them as progress bars, tests pass `Quiet`)."""

from __future__ import annotations

from typing import Protocol


class Steps(Protocol):
    def step(self, name: str) -> None: ...
    def read(self, done: int, total: int) -> None: ...


class Quiet:
    def step(self, name: str) -> None:
        pass

    def read(self, done: int, total: int) -> None:
        pass
