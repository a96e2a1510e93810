"""Decoding a record whose writer schema must be fetched: a registry that cannot answer is
waited for (the record is never dead-lettered for it); an id it does not know makes the
record undecodable. The registry client here is a fake, named so, to reach each branch of
the decode path in process; the real registry stopped and started under a running worker
is tests/integration/test_schema_registry_down.py."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import httpx2
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from course_management.infra import retrying
from course_management.infra.avro import AvroCodec, AvroDecodeError

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}


class FakeRegistry:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    async def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return Schema(json.dumps(SCHEMA), "AVRO")


def codec_with(registry: FakeRegistry) -> AvroCodec:
    codec = AvroCodec("http://registry.invalid")
    codec._client = registry  # type: ignore[assignment]
    codec._parsed["s-value"] = fastavro.parse_schema(SCHEMA)
    return codec


def record(n: int, schema_id: int = 7) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), {"n": n})
    return struct.pack(">bI", 0, schema_id) + out.getvalue()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "wait_exponential", lambda **_: lambda _state: 0)


async def test_a_registry_outage_is_waited_out() -> None:
    registry = FakeRegistry(
        [
            httpx2.ConnectError("connection refused"),
            SchemaRegistryError(503, -1, "unavailable"),
        ]
    )
    assert await codec_with(registry).decode("s-value", record(5)) == {"n": 5}
    assert registry.calls == 3


async def test_an_unknown_schema_id_is_undecodable() -> None:
    registry = FakeRegistry([SchemaRegistryError(404, 40403, "Schema not found")])
    with pytest.raises(AvroDecodeError, match="unknown schema id 7"):
        await codec_with(registry).decode("s-value", record(5))
    assert registry.calls == 1


async def test_a_refusal_is_raised_not_retried() -> None:
    registry = FakeRegistry([SchemaRegistryError(401, 40101, "unauthorized")])
    with pytest.raises(SchemaRegistryError):
        await codec_with(registry).decode("s-value", record(5))
    assert registry.calls == 1


def test_what_counts_as_unavailable() -> None:
    assert retrying.registry_unavailable(SchemaRegistryError(500, -1, ""))
    assert retrying.registry_unavailable(SchemaRegistryError(429, -1, ""))
    assert retrying.registry_unavailable(httpx2.ReadTimeout("slow"))
    assert not retrying.registry_unavailable(SchemaRegistryError(404, 40403, ""))
    assert not retrying.registry_unavailable(ValueError("bad bytes"))
