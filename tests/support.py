"""What test modules share: a worker process of the real service, tokens, polling with a
deadline, topic readers and producers, and the courses and enrollments tests start from."""

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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from course_management.api.auth import issue_token
from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.ops.provisioning import register_schemas
from devstack.processes import free_port

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


def run_cli(stack_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`course-management <args>` against the stack, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "course_management", *args],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=300,
    )


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
    command: str = "worker"  # or "sink"
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
            [sys.executable, "-m", "course_management", self.command],
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


# -- what integration test modules share ----------------------------------------------

ONE_MODULE = {
    "title": "Start",
    "position": 0,
    "items": [{"type": "lesson", "title": "Hello", "position": 0}],
}

OWNER = auth("instructor-1", "instructor", name="Ada Instructor")
ADMIN = auth("admin-1", "admin")
SERVICE = auth("content-delivery", "service")


async def readiness_says(
    http: aiohttp.ClientSession, check: str, value: bool, deadline_s: float = 20
) -> None:
    """`/readyz` reports `check` as `value` within the deadline: the worker probes one
    server per second, in turn (infra/probes.py), so an outage shows within a round."""

    async def says() -> bool:
        body = await (await http.get("/readyz")).json()
        return bool(body["checks"].get(check) is value)

    await eventually_async(says, deadline_s=deadline_s, what=f"readiness {check}={value}")


async def published_course(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    body = {"title": "Enrollable", "status": "published", "modules": [ONE_MODULE], **fields}
    response = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def enroll(http: aiohttp.ClientSession, course_id: str, user: str) -> aiohttp.ClientResponse:
    return await http.post(f"/api/v1/courses/{course_id}/enroll", headers=auth(user, "student"))


async def user_enrolled_value(settings: Settings, **fields: Any) -> bytes:
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC),
        "source": "test",
        **fields,
    }
    return codec.encode("user-enrolled-value", record)


def user_enrolled_records(
    codec: AvroCodec, course_id: str, users: list[str], source: str
) -> list[tuple[bytes, bytes]]:
    """One `user_enrolled` per user, keyed by user as another service might (the codec
    must have the schemas registered)."""
    return [
        (
            user.encode(),
            codec.encode(
                "user-enrolled-value",
                {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": datetime.now(UTC),
                    "user_id": user,
                    "course_id": course_id,
                    "source": source,
                },
            ),
        )
        for user in users
    ]


@dataclass
class EnrollmentBurst:
    """A course and the users whose accepted `user_enrolled` records are on their way."""

    course: dict[str, Any]
    codec: AvroCodec
    users: list[str]

    def mine(self, records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == self.course["id"].encode()]


async def enrollments_under_way(
    http: aiohttp.ClientSession, settings: Settings, n: int, prefix: str
) -> EnrollmentBurst:
    """A published course and `n` accepted `user_enrolled` records for it (each acked by
    the broker); returns once its first 20 enrollment events are out, so what the caller
    does next (a kill, an outage) lands in the middle of the stream."""
    course = await published_course(http, title=f"Enrolled in a burst ({prefix})")
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    burst = EnrollmentBurst(course, codec, [f"{prefix}-{k:04d}" for k in range(n)])
    records = user_enrolled_records(codec, course["id"], burst.users, f"{prefix}-test")
    await produce(settings, "user-enrolled", records)
    before = await read_topic(settings, "enrollment-events", lambda rs: len(burst.mine(rs)) >= 20)
    assert len(burst.mine(before)) < n, "the stream should still be under way"
    return burst


async def produce(
    settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_topic(
    settings: Settings, topic: str, until: Any, deadline_s: float = 30
) -> list[Any]:
    """All records of `topic` from the beginning: at least every one published before the
    call (its end offsets then), and then until `until(records)` holds (deadline)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(settings.kafka_bootstrap_servers, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while loop.time() < end:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind and until(records):
                return records
        raise AssertionError(
            f"{topic}: condition not met in {deadline_s}s ({len(records)} records)"
        )
    finally:
        await consumer.stop()
