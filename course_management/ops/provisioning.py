"""Idempotent provisioning: topics, schemas, database migrations, S3 bucket, search index."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.clients import register_schemas
from course_management.infra.database import migrate
from course_management.infra.kafka import ensure_topics
from course_management.topology import TOPICS

log = logging.getLogger(__name__)


async def provision_kafka(settings: Settings) -> list[str]:
    created = await ensure_topics(
        settings.kafka_bootstrap_servers, TOPICS, settings.topic_partitions
    )
    await register_schemas(AvroCodec(settings.schema_registry_url))
    return created


def provision_bucket(settings: Settings) -> bool:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if settings.s3_bucket in existing:
        return False
    if settings.aws_region == "us-east-1":
        s3.create_bucket(Bucket=settings.s3_bucket)
    else:
        s3.create_bucket(
            Bucket=settings.s3_bucket,
            CreateBucketConfiguration={"LocationConstraint": settings.aws_region},
        )
    return True


async def provision_search(settings: Settings) -> bool:
    """The index behind the alias, with the current mapping (rebuilt from PostgreSQL if older)."""
    if not settings.search_url:
        return False
    from course_management.catalog.rebuild_index import ensure_search_index

    return await ensure_search_index(settings)


def provision_all(settings: Settings) -> dict[str, Any]:
    """Everything the worker expects to exist. Safe to run again and again."""
    report: dict[str, Any] = {}
    report["topics_created"] = asyncio.run(provision_kafka(settings))
    report["migrations_applied"] = migrate(settings.database_url)
    report["bucket_created"] = provision_bucket(settings)
    report["search_index_created"] = asyncio.run(provision_search(settings))
    log.info("provisioned", extra=report)
    return report
