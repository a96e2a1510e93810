"""The local stack: real servers on 127.0.0.1, free ports, throwaway data folders.

Each server is started with a process-fixture library (mirakuru; pytest-postgresql's and
pytest-redis's executors; Versity S3 Gateway), waited for with a readiness condition
and a deadline, and stopped cleanly. `LocalStack` starts them in parallel.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devstack import downloads
from devstack.java import ApicurioRegistry, Elasticsearch, KafkaServer
from devstack.processes import start_on_free_ports
from devstack.stores import S3, PostgreSQL, Redis


class LocalStack:
    """Every server of the local stack, started in parallel, stopped in reverse."""

    def __init__(self, workdir: Path | None = None, *, search: bool = True) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cms-stack-"))
        self.servers: list[Any] = [
            KafkaServer(self.workdir),
            ApicurioRegistry(self.workdir),
            PostgreSQL(self.workdir),
            Redis(self.workdir),
            S3(self.workdir),
        ]
        if search:
            self.servers.append(Elasticsearch(self.workdir))
        self.started: list[Any] = []
        self.timings: dict[str, float] = {}
        # The local stack's own settings: webhooks to loopback receivers (CONTRACT §1), and
        # a sealing key made for this stack (production's comes from its secret store).
        self.settings = {
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            "WEBHOOK_SEALING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }

    def start(self) -> dict[str, str]:
        downloads.fetch_all()  # sequential: Maven's local repository is not concurrency-safe
        self.workdir.chmod(0o755)
        for server in self.servers:
            if hasattr(server, "prepare"):
                server.prepare()

        def start_one(server: Any) -> Any:
            begun = time.monotonic()
            start_on_free_ports(server, lambda: self._log_tail(server.name))
            self.timings[server.name] = round(time.monotonic() - begun, 1)
            return server

        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            futures = [pool.submit(start_one, s) for s in self.servers]
            errors = []
            for server, future in zip(self.servers, futures, strict=True):
                try:
                    self.started.append(future.result())
                except Exception as exc:
                    errors.append(f"{server.name}: {exc}{self._log_tail(server.name)}")
        if errors:
            self.stop()
            raise RuntimeError("the local stack did not start: " + "; ".join(errors))
        return self.env()

    def _log_tail(self, name: str) -> str:
        log_file = self.workdir / f"{name}.out"
        if not log_file.exists():
            return ""
        lines = log_file.read_text(errors="replace").splitlines()[-15:]
        return "\n  last lines of its log:\n    " + "\n    ".join(lines)

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = dict(self.settings)
        for server in self.started:
            merged.update(server.env())
        return merged

    def versions(self) -> dict[str, str]:
        return {s.name: s.version() for s in self.started}

    def server(self, name: str) -> Any:
        return next(s for s in self.started if s.name == name)

    def stop(self) -> None:
        for server in reversed(self.started):
            with contextlib.suppress(Exception):
                server.stop()
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
