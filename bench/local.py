"""The local stack with one provisioned worker, for the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from course_management.config import Settings, load_settings
from course_management.ops.provisioning import provision_all
from devstack.stack import LocalStack
from tests.support import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, WorkerProcess

# One client sends everything: budgets it never reaches (the limiter still runs).
BENCH_BUDGETS = {
    f"RATE_LIMIT_{kind}_PER_MINUTE": "10000000"
    for kind in ("READS", "WRITES", "SERVICE_READS", "SERVICE_WRITES")
}


@contextmanager
def local_worker(
    extra_env: dict[str, str] | None = None, *, search: bool = False, sinks_apart: bool = False
) -> Iterator[tuple[WorkerProcess, Settings]]:
    """The stack and one worker; `sinks_apart`: a `course-management sink` process too
    (start the worker with RUN_SINKS=false)."""
    stack = LocalStack(search=search)
    env = stack.start()
    env.update({"JWT_SECRET": JWT_SECRET, "JWT_ISSUER": JWT_ISSUER, "JWT_AUDIENCE": JWT_AUDIENCE})
    env.update(BENCH_BUDGETS)
    worker = sink = None
    try:
        settings = load_settings(**{k.lower(): v for k, v in env.items()})
        provision_all(settings)
        workdir = Path(tempfile.mkdtemp(prefix="cms-bench-"))
        worker = WorkerProcess(env, workdir).start(extra_env).wait_ready()
        if sinks_apart:
            sink = WorkerProcess(env, workdir, worker_id="bench-sink", command="sink")
            sink.start().wait_ready()
        yield worker, settings
    finally:
        for process in (sink, worker):
            if process is not None:
                process.stop()
        stack.stop()


def profiler(pid: int, output: str) -> subprocess.Popen[bytes]:
    """py-spy on the worker's process (collapsed stacks, PYSPY_RATE samples a second,
    100 unless set)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    rate = os.environ.get("PYSPY_RATE", "100")  # samples a second
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", rate,
               "--output", output]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)
