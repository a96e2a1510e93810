"""The Faust app and its table: Kafka is the backbone; the agent materializes the table.

The agent is registered by the composition root (worker.py), which gives it its
collaborators (streams/agent.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from course_management.config import Settings
from course_management.streams import faust_compat
from course_management.tables.state import define_state_table
from course_management.topology import APP_ID


def build_app(settings: Settings) -> tuple[faust.App, Any]:
    """Create the app with its table; returns (app, the course-state table)."""
    faust_compat.apply_fixes()
    datadir = Path(settings.data_dir) / settings.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka_bootstrap_servers.split(","))
    app = faust.App(
        APP_ID,
        broker=brokers,
        store="rocksdb://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,  # our own aiohttp server runs beside it; Faust's /table, /router are off
        canonical_url=settings.public_base_url,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        table_standby_replicas=0,
        broker_commit_every=100,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        consumer_group_instance_id=settings.worker_id if settings.static_membership else None,
        # Static membership only when asked for: decisions 17 and 43.
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
        # A revoke or a stop waits until the inputs in hand are applied (decision 65).
        stream_wait_empty=True,
        logging_config=None,
        TableManager=faust_compat.PromptTableManager,  # starts at once (decision 44)
    )
    return app, define_state_table(app, settings.topic_partitions)
