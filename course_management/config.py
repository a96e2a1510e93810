"""Service settings: CONTRACT §1, read from the environment (and CLI flags), validated once.

A missing or malformed setting stops start-up with one line naming it (`ConfigError`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from course_management.domain.webhooks import parse_sealing_key


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


def _check_url(value: str, schemes: tuple[str, ...], name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{name} must be a {'/'.join(schemes)} URL with a host, got {value!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{name} has a malformed port: {value!r}") from exc
    return value


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    kafka_bootstrap_servers: str
    schema_registry_url: str
    database_url: str
    redis_url: str
    search_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = "moocflix-course-content"
    aws_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # An identity provider's JWKS document (RS256/ES256 keys, rotated by key id).
    jwt_jwks_url: str | None = None
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080

    # Not in the contract: this worker's own knobs (documented in the README).
    http_host: str = "0.0.0.0"  # noqa: S104 - the container listens on all interfaces
    worker_id: str = "course-management-1"
    data_dir: str = "./.data"
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 6
    command_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    # Rate limits (requests per minute per caller, kept in Redis: api/rate_limits.py).
    rate_limits: bool = True
    rate_limit_reads_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] = 1200
    rate_limit_writes_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] = 120
    rate_limit_service_reads_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] = 12000
    rate_limit_service_writes_per_minute: Annotated[int, Field(ge=1, le=10_000_000)] = 3000
    # Anonymous callers are told apart by the rightmost X-Forwarded-For address (only
    # behind a gateway that sets it); else by the connection's address.
    rate_limit_trust_forwarded: bool = False
    # Open live event streams per worker (CONTRACT §5.4); one more answers 503.
    sse_max_streams: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Webhook targets on loopback over plain http (CONTRACT §5.4): the local stack only.
    webhook_allow_loopback: bool = False
    # Not in the contract: the key webhook secrets are sealed with at rest (32 bytes in
    # base64, from the deployment's secret store; decision 63). Unset: no webhooks.
    webhook_sealing_key: str | None = None
    # Tests and benchmarks only: the retry delays (domain/webhooks.py) multiplied by this.
    webhook_retry_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Not in the contract: how long a worker whose webhook delivery was fenced by another
    # worker's claim waits for the rebalance that explains it before claiming it back.
    webhook_fence_hold_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # Not in the contract: middle collections between two full ones (CPython's threshold 2,
    # default 10): full collections, which scan every open stream, 10x rarer (decision 64).
    gc_old_threshold: Annotated[int, Field(ge=1, le=100_000)] = 100
    # How long a read given a Consistency-Token waits for its store before a 503.
    consistency_wait_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0
    log_level: str = "INFO"
    # The access log: every error answer and every slower one, and this share of the rest
    # (every request is counted and timed in the metrics either way).
    access_log_sample: Annotated[float, Field(ge=0, le=1)] = 0.01
    access_log_slow_ms: Annotated[int, Field(ge=0)] = 250
    # Whether the worker also runs the sinks (the PostgreSQL mirror and catalog, the search
    # index); false when `course-management sink` processes run them apart.
    run_sinks: bool = True
    # The worker's event loop: uvloop (faster sockets), or asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Static group membership (KIP-345, decision 43): each worker joins its groups as
    # WORKER_ID, so a restart within the session timeout (a crash, a rolling deploy) takes
    # the partitions back without a rebalance; a worker stopped for good keeps its
    # partitions until the session timeout. Needs a stable WORKER_ID (a StatefulSet).
    static_membership: bool = False
    # After an unclean stop, restore the tables this worker held last straight from their
    # changelogs into RocksDB before Faust starts (decision 44); false leaves it to Faust.
    restore_before_start: bool = True
    # How long a starting worker waits for the broker to answer before it gives up (a
    # restart during a broker outage waits it out instead of exiting at once).
    startup_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = 300.0
    # How long the group waits for a worker that vanished (crash) before moving its partitions.
    broker_session_timeout_seconds: Annotated[float, Field(ge=6, le=300)] = 30.0
    public_url: str | None = None
    # Tests only (tests/integration/test_crash_points.py): the worker SIGKILLs itself at
    # this phase boundary of the course agent's batch, `<phase>[:<n>]` (the n-th time it
    # gets there; streams/crash_points.py lists the phases). Never set in production.
    test_crash_at: str | None = None
    # Tests only (tests/integration/test_start_during_outage.py): the worker waits before
    # this step of its start-up while a file `paused-at-<step>` exists in its data folder,
    # so a test can stop a server just then. Never set in production.
    test_pause_at: str | None = None
    upload_multipart_threshold_bytes: Annotated[int, Field(ge=5 * 1024 * 1024)] = 100 * 1024 * 1024
    upload_part_size_bytes: Annotated[int, Field(ge=5 * 1024 * 1024)] = 64 * 1024 * 1024

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        for broker in value.split(","):
            host, sep, port = broker.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _registry(cls, value: str) -> str:
        return _check_url(value, ("http", "https"), "SCHEMA_REGISTRY_URL")

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        return _check_url(value, ("postgresql", "postgres"), "DATABASE_URL")

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        return _check_url(value, ("redis", "rediss"), "REDIS_URL")

    @field_validator("search_url", "s3_endpoint_url", mode="before")
    @classmethod
    def _optional_http(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        return _check_url(str(value), ("http", "https"), "URL")

    @field_validator("webhook_sealing_key")
    @classmethod
    def _sealing_key(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_sealing_key(value)
        return value

    @field_validator("jwt_public_key")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN PUBLIC KEY-----" not in value:
            raise ValueError("must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return value

    @model_validator(mode="after")
    def _one_jwt_key(self) -> Settings:
        given = [n for n in ("jwt_secret", "jwt_public_key", "jwt_jwks_url") if getattr(self, n)]
        if not given:
            raise ValueError("JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL is required")
        if len(given) > 1:
            raise ValueError("set only one of JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_URL")
        if self.jwt_jwks_url:
            _check_url(self.jwt_jwks_url, ("http", "https"), "URL")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters")
        return self

    @property
    def public_base_url(self) -> str:
        return self.public_url or f"http://127.0.0.1:{self.http_port}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's report into one line naming the setting."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ()
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "is required but not set"
        # A check of several settings names them itself ("JWT_SECRET must be ...").
        named = f"{str(loc[0]).upper()} {message}" if loc else message
        raise ConfigError(f"configuration error: {named}") from None
