"""Idempotent provisioning: topics, schemas, database migrations, S3 bucket, search index."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.database import migrate
from course_management.infra.kafka import ensure_topics
from course_management.topology import TOPICS

log = logging.getLogger(__name__)

SEARCH_INDEX = "courses"
SEARCH_INDEX_SETTINGS: dict[str, Any] = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "description": {"type": "text"},
            "tags": {"type": "keyword", "fields": {"text": {"type": "text"}}},
            "category": {"type": "keyword"},
            "level": {"type": "keyword"},
            "language": {"type": "keyword"},
            "status": {"type": "keyword"},
            "instructor_id": {"type": "keyword"},
            "instructor_name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "rating_average": {"type": "float"},
            "rating_count": {"type": "integer"},
            "enrollment_count": {"type": "integer"},
            "created_at": {"type": "date"},
            "updated_at": {"type": "date"},
            "version": {"type": "long"},
        },
    },
}


async def provision_kafka(settings: Settings) -> list[str]:
    created = await ensure_topics(
        settings.kafka_bootstrap_servers, TOPICS, settings.topic_partitions
    )
    codec = AvroCodec(settings.schema_registry_url)
    from course_management.runtime import register_schemas

    await register_schemas(codec)
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
    if not settings.search_url:
        return False
    from elasticsearch import AsyncElasticsearch

    es = AsyncElasticsearch(settings.search_url)
    try:
        if await es.indices.exists_alias(name=SEARCH_INDEX):
            return False
        target = f"{SEARCH_INDEX}-v1"
        if not await es.indices.exists(index=target):
            await es.indices.create(index=target, **SEARCH_INDEX_SETTINGS)
        await es.indices.put_alias(index=target, name=SEARCH_INDEX)
        return True
    finally:
        await es.close()


def provision_all(settings: Settings) -> dict[str, Any]:
    """Everything the worker expects to exist. Safe to run again and again."""
    report: dict[str, Any] = {}
    report["topics_created"] = asyncio.run(provision_kafka(settings))
    report["migrations_applied"] = migrate(settings.database_url)
    report["bucket_created"] = provision_bucket(settings)
    report["search_index_created"] = asyncio.run(provision_search(settings))
    log.info("provisioned", extra=report)
    return report
