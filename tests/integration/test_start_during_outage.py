"""A worker (re)started while a server is down starts anyway: it answers, reports not
ready naming what is missing, and becomes ready once the server is back. An orchestrator
restarting a killed pod during an outage must not get a crash loop.

Found by the chaos run (issue 15): a worker restarted during a PostgreSQL outage exited
with a traceback, because its pool opened a connection at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from course_management.streams.crash_points import START_STEPS
from tests.support import WorkerProcess, eventually, http_get_json

pytestmark = pytest.mark.rebalances


def test_a_worker_started_while_postgresql_is_down_waits_for_it(
    local_stack: Any, stack_env: dict[str, str], provisioned: Any, workdir: Path
) -> None:
    postgresql = local_stack.server("postgresql")
    worker = WorkerProcess(stack_env, workdir, worker_id="test-worker-no-pg")
    postgresql.stop()
    try:
        worker.start()

        def answers_not_ready() -> Any:
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
            status, body = http_get_json(f"{worker.base_url}/readyz")
            return body if status == 503 else None

        body = eventually(answers_not_ready, 90, "the worker up, not ready")
        # Its API listens (it used to exit before that), and it names what is missing.
        assert body["checks"]["postgres"] is False, body
    finally:
        postgresql.restart()
    try:
        worker.wait_ready(90)
    finally:
        worker.stop()
        worker.keep_log()


def test_a_worker_restarted_while_the_broker_is_down_waits_for_it(
    local_stack: Any, stack_env: dict[str, str], provisioned: Any, workdir: Path
) -> None:
    """After an unclean stop (its tables are restored from the changelogs before Faust
    starts), during a broker outage: it used to exit in that restore, and then in its
    producer's start. It waits for the broker (STARTUP_WAIT_SECONDS), then restores."""
    kafka = local_stack.server("kafka")
    worker = WorkerProcess(stack_env, workdir, worker_id="test-worker-no-kafka")
    worker.start().wait_ready(120)
    worker.kill()  # an unclean stop: the next start restores before Faust
    kafka.stop()
    try:
        worker.start()
        eventually(
            lambda: worker.log_text().count("as it raised KafkaConnectionError") >= 2,
            60,
            "the worker waiting for the broker",
        )
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    finally:
        kafka.restart()
    try:
        worker.wait_ready(120)
        assert "local tables restored from their changelogs before start" in worker.log_text()
    finally:
        worker.stop()
        worker.keep_log()


@pytest.mark.parametrize("step", START_STEPS)
def test_each_start_up_step_waits_out_an_outage(
    step: str, local_stack: Any, stack_env: dict[str, str], provisioned: Any, workdir: Path
) -> None:
    """Issue 22: a worker restarted while the broker restarted got past the first contact,
    then exited when its publisher started. Each step of the start that talks to a server
    now waits out its outage (STARTUP_WAIT_SECONDS): the worker is paused before the step
    (TEST_PAUSE_AT), the server stopped, the worker let go into the step; it waits, and
    becomes ready once the server is back."""
    server = local_stack.server("schema-registry" if step == "registry" else "kafka")
    worker = WorkerProcess(stack_env, workdir, worker_id=f"test-worker-step-{step}")
    marker = workdir / "worker-data" / worker.worker_id / f"paused-at-{step}"
    worker.start({"TEST_PAUSE_AT": step})
    try:
        eventually(lambda: marker.exists(), 90, f"the worker paused before {step}")
        server.stop()
        try:
            marker.unlink()  # into the step, with its server down
            eventually(
                lambda: "Retrying " in worker.log_text().split('"TEST_PAUSE_AT: paused"')[-1],
                60,
                f"the worker waiting in {step}",
            )
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        finally:
            server.restart()
        worker.wait_ready(120)
    finally:
        assert worker.stop() == 0, worker.log_tail()
        worker.keep_log()


def test_a_stop_during_a_broker_outage_ends(
    local_stack: Any, stack_env: dict[str, str], provisioned: Any, workdir: Path
) -> None:
    """SIGTERM while the broker is down: every step of the stop is bounded, the process
    ends (no hang waiting for a broker that does not answer)."""
    kafka = local_stack.server("kafka")
    worker = WorkerProcess(stack_env, workdir, worker_id="test-worker-stop-outage")
    worker.start().wait_ready(120)
    kafka.stop()
    try:
        code = worker.stop(timeout=150)
        assert code is not None and code >= 0, f"ended by SIGKILL: {worker.log_tail()}"
    finally:
        kafka.restart()
        worker.keep_log()
