"""Avro in the Confluent wire format (magic byte 0, 4-byte schema id, Avro binary).

Schemas are parsed once from `schemas/*.avsc` and registered (or looked up) in the
registry at start; encoding uses the registered id, decoding resolves the writer's
schema (fetched once per id) against ours, so older and newer writers both decode.
"""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from course_management.infra.retrying import until_registry_answers

_MAGIC = 0
_HEADER = struct.Struct(">bI")


class AvroDecodeError(ValueError):
    """A record is not a valid Confluent-framed Avro value for its subject."""


class SchemaRegistrationError(RuntimeError):
    """The registry refused a schema (for example, a BACKWARD-incompatible change)."""


def schemas_dir() -> Path:
    configured = os.environ.get("CMS_SCHEMAS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "schemas"


def load_schema_text(filename: str) -> str:
    return (schemas_dir() / filename).read_text(encoding="utf-8")


class AvroCodec:
    """Encodes and decodes the values of registered subjects."""

    def __init__(self, registry_url: str) -> None:
        self._registry = {"url": registry_url, "timeout": 10}
        self._client = AsyncSchemaRegistryClient(self._registry)
        self._parsed: dict[str, Any] = {}
        self._ids: dict[str, int] = {}
        self._writers: dict[int, Any] = {}

    @property
    def client(self) -> AsyncSchemaRegistryClient:
        return self._client

    async def probe(self) -> None:
        """Readiness: the registry answers."""
        await self._client.get_subjects()

    async def release(self) -> None:
        """Close the registry client's connections, which belong to the running event loop;
        the codec stays usable, with a new client, in the next loop (the worker registers
        its schemas before Faust's loop runs: startup.py)."""
        await self._client.aclose()
        self._client = AsyncSchemaRegistryClient(self._registry)

    async def register(self, subject: str, schema_file: str, *, compatibility: str | None) -> int:
        """Register (idempotent) and remember the schema id for `subject`."""
        text = load_schema_text(schema_file)
        parsed = fastavro.parse_schema(json.loads(text))
        try:
            if compatibility:
                await self._client.set_compatibility(subject_name=subject, level=compatibility)
            schema_id = await self._client.register_schema(subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            raise SchemaRegistrationError(
                f"schema registry refused {schema_file} for subject {subject}: "
                f"{exc.error_message} (HTTP {exc.http_status_code})"
            ) from None
        self._parsed[subject] = parsed
        self._ids[subject] = schema_id
        self._writers[schema_id] = parsed
        return schema_id

    def schema_id(self, subject: str) -> int:
        return self._ids[subject]

    def encode(self, subject: str, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(_HEADER.pack(_MAGIC, self._ids[subject]))
        fastavro.schemaless_writer(out, self._parsed[subject], record)
        return out.getvalue()

    async def _writer_schema(self, schema_id: int) -> Any:
        """The schema a record was written with. An id the registry does not know makes the
        record undecodable; a registry that cannot answer now is waited for."""

        async def fetch() -> Any:
            try:
                return await self._client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise AvroDecodeError(f"unknown schema id {schema_id}") from exc
                raise

        registered = await until_registry_answers(fetch)
        return fastavro.parse_schema(json.loads(registered.schema_str or "{}"))

    async def decode(self, subject: str, data: bytes | None) -> dict[str, Any]:
        reader = self._parsed.get(subject)
        if reader is None:  # a bug, not bad data: never a dead letter
            raise LookupError(f"no reader schema for {subject}: register it with this codec")
        if not data or len(data) < _HEADER.size:
            raise AvroDecodeError("empty or truncated value")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise AvroDecodeError(f"unknown magic byte {magic}")
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = await self._writer_schema(schema_id)
            self._writers[schema_id] = writer
        try:
            result = fastavro.schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, reader)
        except Exception as exc:  # fastavro raises many types on bad bytes
            raise AvroDecodeError(f"value does not decode: {exc}") from exc
        if not isinstance(result, dict):
            raise AvroDecodeError("value is not a record")
        # Ids travel as `uuid` logical strings; the service handles them as text.
        return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in result.items()}
