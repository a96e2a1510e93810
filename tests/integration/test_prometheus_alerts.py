"""A real Prometheus server scrapes the worker and evaluates config/prometheus/alerts.yml:
with the mirror's PostgreSQL stopped, the sinks fall behind and CmsSinkLag goes pending;
with PostgreSQL back, they catch up and the alert ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from devstack.prometheus import Prometheus
from tests.support import WorkerProcess, eventually, published_course

SINK = "course-management-sink-postgres"


def _sink_lag_alert(prometheus: Prometheus) -> dict[str, Any] | None:
    for alert in prometheus.alerts():
        if (
            alert["labels"].get("alertname") == "CmsSinkLag"
            and alert["labels"].get("consumer") == SINK
        ):
            return alert
    return None


async def test_sink_lag_goes_pending_while_the_mirror_is_down_and_ends_after(
    http: aiohttp.ClientSession, local_stack: Any, worker: WorkerProcess, tmp_path: Path
) -> None:
    prometheus = Prometheus(tmp_path, [worker.base_url.removeprefix("http://")])
    prometheus.start()
    try:
        eventually(
            lambda: prometheus.query(f'cms_consumer_lag{{consumer="{SINK}"}}'),
            deadline_s=60,
            what="the worker scraped, with the mirror's lag",
        )
        assert _sink_lag_alert(prometheus) is None
        postgres = local_stack.server("postgresql")
        postgres.stop()
        try:
            for n in range(120):  # 120 course events and 120 catalog entries to mirror
                await published_course(http, title=f"Mirror down {n}")
            alert = eventually(
                lambda: _sink_lag_alert(prometheus), deadline_s=60, what="CmsSinkLag pending"
            )
            assert alert["state"] in ("pending", "firing")
            assert float(alert["value"]) > 100
        finally:
            postgres.restart()
        eventually(
            lambda: _sink_lag_alert(prometheus) is None,
            deadline_s=120,
            what="CmsSinkLag ended once the mirror caught up",
        )
    finally:
        prometheus.stop()
