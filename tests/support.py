"""Test helpers: a worker process of the real service, tokens, polling with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from course_management.api.auth import issue_token
from course_management.stack.servers import free_port

T = TypeVar("T")

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
JWT_ISSUER = "https://auth.moocflix.test"
JWT_AUDIENCE = "course-management"


def token(sub: str, *roles: str, name: str | None = None, **overrides: Any) -> str:
    params: dict[str, Any] = {"issuer": JWT_ISSUER, "audience": JWT_AUDIENCE, "name": name}
    params.update(overrides)
    return issue_token(JWT_SECRET, sub, list(roles), **params)


def auth(sub: str, *roles: str, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, *roles, name=name)}"}


def eventually(check: Callable[[], T | None], deadline_s: float = 30.0, what: str = "") -> T:
    """Poll until `check` returns something truthy; fail at the deadline (no fixed sleeps)."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            result = check()
        except Exception as exc:  # not yet
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.05)
    raise AssertionError(f"{what or 'condition'} not met within {deadline_s}s (last: {last!r})")


async def eventually_async(
    check: Callable[[], Awaitable[T | None]], deadline_s: float = 30.0, what: str = ""
) -> T:
    """`eventually` for coroutines: poll until truthy, fail at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    last: Any = None
    while loop.time() < end:
        result = await check()
        if result:
            return result
        last = result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what or 'condition'} not met within {deadline_s}s (last: {last!r})")


def http_get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def http_get_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


@dataclass
class WorkerProcess:
    """`python -m course_management worker` against the test stack, as in production."""

    env: dict[str, str]
    workdir: Path
    worker_id: str = "test-worker-1"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    readiness_seen: list[tuple[int, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.worker_id}.log"

    def start(self, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        env = {
            **os.environ,
            **self.env,
            "HTTP_PORT": str(self.port),
            "WORKER_ID": self.worker_id,
            "DATA_DIR": str(self.workdir / "worker-data"),
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course_management", "worker"],
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, deadline_s: float = 120.0) -> WorkerProcess:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")
            status, body = http_get_json(f"{self.base_url}/readyz")
            self.readiness_seen.append((status, body))
            return status == 200

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if ready():
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        raise AssertionError(f"worker not ready in {deadline_s}s: {self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def keep_log(self) -> None:
        """Copy this worker's log to ./test-logs/ (kept after the session, for diagnosis)."""
        target = Path("test-logs")
        target.mkdir(exist_ok=True)
        if self.log_path.exists():
            (target / self.log_path.name).write_bytes(self.log_path.read_bytes())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class TopicSettings:
    """Reads and sets a topic's settings through the admin API. The broker applies a
    change after answering it, so `set` waits (with a deadline) until it reads back."""

    def __init__(self, admin: Any, topic: str) -> None:
        self.admin = admin
        self.topic = topic

    async def get(self, name: str) -> str:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic)
        configs = await self.admin.describe_configs([resource])
        return str({e[0]: e[1] for e in configs[0].resources[0][4]}[name])

    async def set(self, overrides: dict[str, str], then: tuple[str, Callable[[str], bool]]) -> None:
        """Replace the topic's overrides, then wait until `then[1](setting then[0])`."""
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic, configs=overrides)
        await self.admin.alter_configs([resource])
        await self.became(*then)

    async def became(self, name: str, check: Callable[[str], bool]) -> None:
        async def applied() -> bool:
            return check(await self.get(name))

        await eventually_async(applied, what=f"{self.topic} {name} applied")
