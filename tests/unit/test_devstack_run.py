"""`make run` before and after its servers (issue 24, item 5): a bad setting is one line
before anything starts, and what a killed run left behind is reaped by the next one
(devstack/reaper.py). Real processes, no servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from devstack import reaper


def test_a_short_jwt_secret_is_one_line_before_any_server_starts() -> None:
    env = {**os.environ, "JWT_SECRET": "too-short"}
    env.pop(reaper.OWNER_ENV, None)
    run = subprocess.run(
        [sys.executable, "-m", "devstack", "run", "--no-demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "configuration error: JWT_SECRET must be at least 32 characters"
    ]
    assert "Traceback" not in run.stdout + run.stderr


def _sleeper(owner_mark: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, reaper.OWNER_ENV: owner_mark}
    # a shell that forks its sleep: the grandchild carries the mark too
    return subprocess.Popen(["sh", "-c", "sleep 300 & wait"], env=env)


def _with_mark(mark: str) -> list[int]:
    pids = (int(e.name) for e in reaper.PROC.iterdir() if e.name.isdigit())
    return [pid for pid in pids if reaper._mark_of(pid) == mark]


def _until(check: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, f"{what}: not within {deadline_s}s"
        time.sleep(0.05)


def test_what_a_killed_run_left_is_reaped_and_a_live_runs_servers_are_not() -> None:
    gone = subprocess.Popen(["true"])
    gone_mark = f"{gone.pid}:{reaper._started(gone.pid)}"
    gone.wait()  # the run that started these sleepers is no more
    live_mark = f"{os.getpid()}:{reaper._started(os.getpid())}"
    left, kept = _sleeper(gone_mark), _sleeper(live_mark)
    try:
        _until(lambda: len(_with_mark(gone_mark)) == 2, "the shell and its sleep marked")
        _until(lambda: len(_with_mark(live_mark)) == 2, "the live run's two")
        assert set(_with_mark(gone_mark)) <= set(reaper.orphans())
        assert not set(_with_mark(live_mark)) & set(reaper.orphans())
        assert set(reaper.reap_orphans()) >= set(_with_mark(gone_mark)) | {left.pid}
        assert left.wait(10) == -9
        _until(lambda: _with_mark(gone_mark) == [], "the grandchild reaped too")
        assert kept.poll() is None and len(_with_mark(live_mark)) == 2  # never touched
    finally:
        for pid in _with_mark(gone_mark) + _with_mark(live_mark):
            os.kill(pid, 9)
        for proc in (left, kept):
            proc.wait(10)
