"""Start-up refuses bad configuration and refused schemas with one clear line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import Elasticsearch

from course_management.config import Settings
from course_management.infra.avro import schemas_dir
from course_management.ops.provisioning import provision_all
from tests.support import TopicSettings


def run_worker(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course_management", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_missing_setting_stops_start_up_naming_it(stack_env: dict[str, str]) -> None:
    env = {k: v for k, v in {**os.environ, **stack_env}.items() if k != "DATABASE_URL"}
    result = run_worker(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["configuration error: DATABASE_URL is required but not set"]


def test_a_malformed_setting_stops_start_up_naming_it(stack_env: dict[str, str]) -> None:
    result = run_worker({**os.environ, **stack_env, "REDIS_URL": "localhost"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("configuration error: REDIS_URL")
    assert "Traceback" not in result.stderr


def test_a_schema_the_registry_refuses_stops_start_up(
    stack_env: dict[str, str], provisioned: dict[str, object], tmp_path: Path
) -> None:
    changed = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), changed)
    schema = json.loads((changed / "course_event.avsc").read_text())
    schema["fields"].append({"name": "new_required_field", "type": "string"})  # not BACKWARD
    (changed / "course_event.avsc").write_text(json.dumps(schema))
    result = run_worker({**os.environ, **stack_env, "CMS_SCHEMAS_DIR": str(changed)})
    assert result.returncode == 3
    assert "start-up refused: schema registry refused course_event.avsc" in result.stderr
    assert "Traceback" not in result.stderr


def test_provisioning_is_idempotent_and_complete(
    settings: Settings, provisioned: dict[str, object]
) -> None:
    again = provision_all(settings)
    assert again["topics_created"] == []
    assert again["migrations_applied"] == 0
    assert again["bucket_created"] is False
    assert again["search_index_created"] is False

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
    )
    s3.head_bucket(Bucket=settings.s3_bucket)
    es = Elasticsearch(settings.search_url)
    assert es.indices.exists_alias(name="courses")


async def test_topics_have_explicit_partitions_and_compacted_changelogs(
    settings: Settings, provisioned: dict[str, object]
) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = {
            t["topic"]: len(t["partitions"])
            for t in await admin.describe_topics(
                [
                    "course-commands",
                    "course-events",
                    "user-enrolled",
                    "enrollment-events",
                    "course-management-course-state-changelog",
                ]
            )
        }
        assert set(described.values()) == {settings.topic_partitions}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "course-management-course-state-changelog")]
        )
        entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
        # a unit (one record batch) may be larger than the broker's default record limit
        assert int(entries["max.message.bytes"]) > 16 * 1024 * 1024
    finally:
        await admin.close()


async def test_provisioning_gives_existing_topics_their_settings_again(
    settings: Settings, provisioned: dict[str, object]
) -> None:
    """A setting added after a topic was created (the dead-letter topics' larger records)
    reaches existing topics when provisioning runs again."""
    two_mib = str(2 * 1024 * 1024)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    dlq = TopicSettings(admin, "user-enrolled.dlq")
    try:
        assert await dlq.get("max.message.bytes") == two_mib
        # As if the topic predated the setting: only the retention override.
        await dlq.set(
            {"retention.ms": "1000000"}, then=("max.message.bytes", lambda v: v != two_mib)
        )
        await asyncio.to_thread(provision_all, settings)
        await dlq.became("max.message.bytes", lambda v: v == two_mib)
    finally:
        await admin.close()
