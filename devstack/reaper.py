"""Servers left behind by a `make run` that was killed (SIGKILL: no `finally` runs).

`make run` marks its environment with its own pid and start time (OWNER_ENV); every
server it starts inherits it, down to the processes a server forks (pg_ctl's postmaster,
a JVM's launcher). The next `make run` reaps every process whose mark names a run that
is no longer alive. A run that is alive, and servers of a test session (which carry no
mark), are never touched. Linux only (/proc), as the stack is.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

OWNER_ENV = "CMS_DEVSTACK_OWNER"
PROC = Path("/proc")


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such process)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5)


def mark_this_run() -> str:
    """Mark this process's environment, inherited by every server it starts."""
    mark = f"{os.getpid()}:{_started(os.getpid())}"
    os.environ[OWNER_ENV] = mark
    return mark


def _mark_of(pid: int) -> str | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _alive(mark: str) -> bool:
    pid, _, started = mark.partition(":")
    return pid.isdigit() and _started(int(pid)) == started


def orphans() -> list[int]:
    """The processes a run that is gone left behind."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        mark = _mark_of(int(entry.name))
        if mark is not None and mark != os.environ.get(OWNER_ENV) and not _alive(mark):
            found.append(int(entry.name))
    return sorted(found)


def reap_orphans() -> list[int]:
    """SIGKILL what an earlier, killed run left behind; the pids reaped."""
    reaped = []
    for pid in orphans():
        try:
            os.kill(pid, signal.SIGKILL)
            reaped.append(pid)
        except ProcessLookupError:
            continue
    return reaped
