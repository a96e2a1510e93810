"""Session fixtures: the real local stack, provisioned, and one worker process.

Integration tests fail (never skip) when a server cannot start.
"""

from __future__ import annotations

import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from course_management.config import Settings
from tests.support import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, WorkerProcess


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # pytest then runs the teardowns, which stop every server


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Any]:
    from devstack.stack import LocalStack

    signal.signal(signal.SIGTERM, _interrupt)  # a terminated run leaves no servers behind
    local = LocalStack()
    local.start()
    print(f"\nlocal stack started: {local.timings}")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack_env(local_stack: Any) -> dict[str, str]:
    env = local_stack.env()
    env.update(
        {
            "JWT_SECRET": JWT_SECRET,
            "JWT_ISSUER": JWT_ISSUER,
            "JWT_AUDIENCE": JWT_AUDIENCE,
            "TOPIC_PARTITIONS": "4",
            "COMMAND_TIMEOUT_SECONDS": "20",
            "BROKER_SESSION_TIMEOUT_SECONDS": "8",
            "UPLOAD_MULTIPART_THRESHOLD_BYTES": str(6 * 1024 * 1024),
            "UPLOAD_PART_SIZE_BYTES": str(5 * 1024 * 1024),
            # Tests poll and burst from one address: budgets no test reaches (the rate
            # limits have their own worker, test_rate_limits.py).
            "RATE_LIMIT_READS_PER_MINUTE": "1000000",
            "RATE_LIMIT_WRITES_PER_MINUTE": "1000000",
            "RATE_LIMIT_SERVICE_READS_PER_MINUTE": "1000000",
            "RATE_LIMIT_SERVICE_WRITES_PER_MINUTE": "1000000",
            # Webhook retries 20 times sooner: 0.25 s, 1.25 s, 6 s, ... (the schedule's
            # own shape is a unit test's: tests/unit/test_webhook_rules.py).
            "WEBHOOK_RETRY_SCALE": "0.05",
            "WEBHOOK_FENCE_HOLD_SECONDS": "20",
        }
    )
    return env


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings(**{k.lower(): v for k, v in stack_env.items()})


@pytest.fixture(scope="session")
def provisioned(settings: Settings) -> dict[str, object]:
    from course_management.ops.provisioning import provision_all

    return provision_all(settings)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cms-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def worker(
    stack_env: dict[str, str], provisioned: dict[str, object], workdir: Path
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(stack_env, workdir).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        process.keep_log()


@pytest.fixture(scope="module")
def postgres_worker(
    stack_env: dict[str, str], provisioned: Any, workdir: Path, worker: WorkerProcess
) -> Iterator[WorkerProcess]:
    """A second worker whose catalog is PostgreSQL full text (SEARCH_URL unset). It joins
    the consumer group: tests using it are marked `rebalances` (they run last)."""
    process = WorkerProcess(stack_env, workdir, worker_id="test-worker-pg")
    process.start({"SEARCH_URL": ""})
    try:
        yield process.wait_ready()
    finally:
        process.stop()
        process.keep_log()


@pytest.fixture(scope="session")
async def http(worker: WorkerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=worker.base_url) as session:
        yield session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that change the consumer group (more workers, kills) run after all others,
    and the fuzzer last of all (its thousands of writes would keep the sinks busy under
    the tests that time how soon a change is visible)."""
    items.sort(
        key=lambda item: (
            "tests/fuzz/" in item.nodeid,
            item.get_closest_marker("rebalances") is not None,
        )
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the worker shows the worker's recent warnings and errors
    (CI keeps only the console output)."""
    outcome = yield
    report = outcome.get_result()
    worker = getattr(item, "funcargs", {}).get("worker")
    if report.when != "call" or not report.failed or not isinstance(worker, WorkerProcess):
        return
    lines = [
        line[:500]
        for line in worker.log_tail(4000).splitlines()
        if '"level": "WARNING"' in line or '"level": "ERROR"' in line
    ]
    report.sections.append(("worker log: last warnings and errors", "\n".join(lines[-40:])))
