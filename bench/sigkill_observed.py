"""What an operator sees while a worker is SIGKILLed and comes back: a real Prometheus
(devstack/prometheus.py, the repository's alert rules) scrapes one worker every second
while students enrol; the worker is SIGKILLed, started again on the same data, and the
run prints, second by second, the series the dashboard draws and the alerts' states.

    .venv/bin/python -m bench.sigkill_observed [--n 4000] [--after 40] [--static]

Not a benchmark: an observation for docs/runbook.md and issue 14's closing note.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from bench.enrollment_throughput import inputs, produce
from bench.local import local_worker
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from devstack.prometheus import Prometheus
from tests.support import ONE_MODULE, auth

QUERIES = {
    "up": 'sum(up{job="course-management"})',
    "ready": "sum(cms_ready)",
    "agent lag": 'sum(cms_consumer_lag{consumer="course-agent"})',
    "sink lag": 'sum(cms_consumer_lag{consumer=~"course-management-sink-.*"})',
    "rebalances": "sum(cms_rebalances_total)",
    "restored": "sum(cms_changelog_records_restored_total)",
    "enrolled/s": 'sum(rate(cms_enrollment_changes_total{event_type="enrollment_created"}[15s]))',
}


async def _enrolments(base: str, bootstrap: str, registry: str, n: int) -> None:
    """A course with room for all, and `n` user_enrolled records for it, sent in a trickle
    (about 100 a second) so that some are in flight when the worker dies."""
    codec = AvroCodec(registry)
    await register_schemas(codec)
    async with aiohttp.ClientSession(base_url=base) as http:
        body = {"title": "Observed", "status": "published", "capacity": n, "modules": [ONE_MODULE]}
        response = await http.post(
            "/api/v1/courses/create", json=body, headers=auth("observer", "instructor")
        )
        course = await response.json()
        assert response.status == 201, course
    records = inputs(codec, course["id"], n)
    for start in range(0, n, 100):
        await produce(bootstrap, "user-enrolled", records[start : start + 100])
        await asyncio.sleep(1.0)  # the trickle's pace


def _value(prometheus: Prometheus, promql: str) -> str:
    result = prometheus.query(promql)
    return f"{float(result[0]['value'][1]):.0f}" if result else "-"


def _alerts(prometheus: Prometheus) -> str:
    states = sorted(f"{a['labels']['alertname']}:{a['state']}" for a in prometheus.alerts())
    return ", ".join(states) or "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000, help="enrolments, about 100 a second")
    parser.add_argument("--after", type=float, default=40.0, help="seconds watched after the kill")
    parser.add_argument("--static", action="store_true", help="STATIC_MEMBERSHIP=true, as in k8s")
    args = parser.parse_args()
    extra = {"BROKER_SESSION_TIMEOUT_SECONDS": "10"}
    if args.static:
        extra["STATIC_MEMBERSHIP"] = "true"
    with local_worker(extra) as (worker, settings):
        folder = Path(tempfile.mkdtemp(prefix="cms-observed-"))
        prometheus = Prometheus(folder, [worker.base_url.removeprefix("http://")])
        prometheus.start()
        try:
            sender = threading.Thread(
                target=asyncio.run,
                args=(
                    _enrolments(
                        worker.base_url,
                        settings.kafka_bootstrap_servers,
                        settings.schema_registry_url,
                        args.n,
                    ),
                ),
                daemon=True,
            )
            sender.start()
            started = time.monotonic()
            killed = False
            print("t(s)  " + "  ".join(f"{name:>10}" for name in QUERIES) + "  alerts")
            while time.monotonic() - started < args.after + 10:
                t = time.monotonic() - started
                if not killed and t >= 10:
                    worker.kill()
                    print(f"{t:5.1f}  --- SIGKILL; started again at once ---")
                    worker.start(extra)
                    killed = True
                row = "  ".join(f"{_value(prometheus, q):>10}" for q in QUERIES.values())
                print(f"{t:5.1f}  {row}  {_alerts(prometheus)}", flush=True)
                time.sleep(1.0)  # a sampling period, not a synchronisation
        finally:
            prometheus.stop()


if __name__ == "__main__":
    main()
