"""Running the local stack's servers: free ports, readiness with a deadline, users, logs."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import port_for

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class Server(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def env(self) -> dict[str, str]: ...
    def version(self) -> str: ...


def wait_until(check: Callable[[], bool], deadline_s: float, what: str, every: float = 0.2) -> None:
    """Poll `check` until it is true; fail with `what` when the deadline passes."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception as exc:  # the check's own failure means "not yet"
            last = exc
        time.sleep(every)
    raise TimeoutError(f"{what} not ready after {deadline_s:.0f}s (last error: {last})")


def logs_to(path: Path) -> dict[str, Any]:
    """Send a server's output to a file: an unread pipe would fill up and stall it."""
    out = path.open("ab")
    return {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT}


_HANDED_OUT: set[int] = set()  # never hand the same port to two servers of this process
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    with _PORTS_LOCK:
        port = int(port_for.select_random(exclude_ports=_HANDED_OUT))
        _HANDED_OUT.add(port)
        return port


def _port_fields(server: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(server) if f.name.endswith("port")]


def _lost_a_port(server: Any, failure: str) -> bool:
    """Whether a failed start was another process taking one of the server's ports
    between choosing it and binding it."""
    if any(sign in failure for sign in ("in use", "BindException")):
        return True
    return any(not port_for.is_available(getattr(server, name)) for name in _port_fields(server))


def start_on_free_ports(server: Any, log_tail: Callable[[], str] = str) -> None:
    """Start a server; if another process took one of its ports between choosing and
    binding it, choose them afresh and start it once more."""
    try:
        server.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            server.stop()
        if not _lost_a_port(server, f"{exc}{log_tail()}"):
            raise
        log.warning("a port was taken; starting %s on new ports", server.name)
        for name in _port_fields(server):
            setattr(server, name, free_port())
        server.start()


def unprivileged(user: str) -> list[str]:
    """A command prefix that drops root to `user`; nothing when not root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


def ensure_user(user: str) -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
        )


def chown_to(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=user, group=user)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shutil.chown(Path(root) / name, user=user, group=user)
