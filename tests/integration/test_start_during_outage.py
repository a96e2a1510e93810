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
