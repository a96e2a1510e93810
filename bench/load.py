"""Closed-loop HTTP load with wrk: throughput and the latency distribution of one URL.

wrk (Debian's package) keeps `connections` requests in flight from its own threads and
reports, through the Lua `done` hook below, the requests per second and the latency at
each percentile, so the benchmarks compare whole distributions, not one number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PERCENTILES = [50, 75, 90, 95, 99, 99.9]
_CURVE = [p / 2 for p in range(1, 200)] + [99.9]  # what the plots draw

_SCRIPT = """
local headers = %s
request = function() return wrk.format("GET", nil, headers) end
done = function(summary, latency, requests)
  local out = {}
  for _, p in ipairs(%s) do
    out[#out + 1] = string.format('"%%s": %%.1f', p, latency:percentile(p))
  end
  io.write(string.format(
    'WRK-JSON {"requests": %%d, "seconds": %%.3f, "errors": %%d, "non2xx": %%d, '
      .. '"percentiles_us": {%%s}}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.errors.status, table.concat(out, ", ")))
end
"""


@dataclass(frozen=True)
class Load:
    name: str
    requests: int
    seconds: float
    errors: int
    non2xx: int
    percentiles_us: dict[float, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def ms(self, p: float) -> float:
        return self.percentiles_us[p] / 1000


def _lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}"


def wrk(
    name: str,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    connections: int = 64,
    seconds: int = 10,
    threads: int = 1,
) -> Load:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (scripts/bootstrap.sh does)")
    points = sorted({*PERCENTILES, *_CURVE})
    script = _SCRIPT % (_lua_table(headers or {}), "{" + ", ".join(map(str, points)) + "}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "load.lua")
        path.write_text(script)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(path), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK-JSON "))
    data = json.loads(line.removeprefix("WRK-JSON "))
    return Load(
        name=name,
        requests=data["requests"],
        seconds=data["seconds"],
        errors=data["errors"],
        non2xx=data["non2xx"],
        percentiles_us={float(k): v for k, v in data["percentiles_us"].items()},
    )
