"""The local stack's API gateway: Debian's HAProxy running config/haproxy/haproxy.cfg in
front of a worker (what Kong does in production; the config says which checks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import HOST, free_port, logs_to, wait_until

CONFIG = Path(__file__).resolve().parents[1] / "config" / "haproxy" / "haproxy.cfg"
MAX_BODY_BYTES = 1024 * 1024  # the service's own limit (api/http.py)


@dataclass
class Gateway:
    workdir: Path
    backend: str  # host:port of the worker
    jwt_secret: str
    jwt_issuer: str
    jwt_audience: str
    requests_per_minute: int = 1200
    max_body_bytes: int = MAX_BODY_BYTES
    name: str = "gateway"
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def environment(self) -> dict[str, str]:
        return {
            "GATEWAY_BIND": f"{HOST}:{self.port}",
            "GATEWAY_BACKEND": self.backend,
            "JWT_SECRET": self.jwt_secret,
            "JWT_ISSUER": self.jwt_issuer,
            "JWT_AUDIENCE": self.jwt_audience,
            "GATEWAY_REQUESTS_PER_MINUTE": str(self.requests_per_minute),
            "GATEWAY_MAX_BODY_BYTES": str(self.max_body_bytes),
        }

    def start(self) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise RuntimeError("haproxy not found: apt-get install haproxy")
        folder = self.workdir / "gateway"
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.environment()}
        subprocess.run([haproxy, "-c", "-q", "-f", str(CONFIG)], env=env, check=True)
        command = [haproxy, "-db", "-f", str(CONFIG)]  # -db: in the foreground
        self._proc = subprocess.Popen(command, env=env, **logs_to(folder / "haproxy.log"))
        wait_until(self._healthy, 30, "the HAProxy gateway")

    def _healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self._proc.returncode}")
        url = f"{self.url}/gateway/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None

    def version(self) -> str:
        haproxy = shutil.which("haproxy") or "haproxy"
        out = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else "HAProxy"
