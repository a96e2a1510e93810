"""A Prometheus server (Debian's `prometheus` package) scraping workers every second and
evaluating the repository's alert rules (config/prometheus/alerts.yml) every second."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.processes import HOST, free_port, logs_to, wait_until

RULES = Path(__file__).resolve().parents[1] / "config" / "prometheus" / "alerts.yml"


@dataclass
class Prometheus:
    workdir: Path
    targets: list[str]  # host:port of each worker
    name: str = "prometheus"
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: apt-get install prometheus")
        folder = self.workdir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "course-management", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        command = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
        ]
        self._proc = subprocess.Popen(command, **logs_to(folder / "prometheus.log"))
        wait_until(lambda: self._get("/-/ready") is not None, 60, "Prometheus")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        return list(json.loads(answer or b"{}").get("data", {}).get("result", []))

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        answer = self._get("/api/v1/alerts")
        return list(json.loads(answer or b"{}").get("data", {}).get("alerts", []))

    def _get(self, path: str) -> bytes | None:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310
            return bytes(response.read()) if response.status == 200 else None
