"""The shared clients' one lifecycle (infra/clients.py), used by the worker and the sink
process: every schema registered once per start, the clients started only once
registered, the probes named as `/readyz` reports them, the sink groups built from them,
and the sink process's `/readyz` answering from its probes. In process: the registry is
a fake, and the starts that would talk to a server are replaced."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from course_management import startup
from course_management.config import Settings
from course_management.infra.clients import Clients, membership, waiting
from course_management.infra.probes import Probes
from course_management.sinks.groups import sink_groups
from course_management.sinks.process import http_app
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_EVENTS,
    POSTGRES_GROUP,
    REPLY_SUBJECT,
    SEARCH_GROUP,
    TOPICS,
)

SUBJECTS = {spec.subject for spec in TOPICS if spec.schema_file} | {REPLY_SUBJECT}


def settings(**overrides: Any) -> Settings:
    given: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "schema_registry_url": "http://registry.invalid",
        "database_url": "postgresql://u:p@127.0.0.1:1/db",
        "redis_url": "redis://127.0.0.1:1/0",
        "search_url": None,
        "jwt_secret": "x" * 32,
    }
    return Settings(**{**given, **overrides})


class FakeRegistry:
    def __init__(self) -> None:
        self.registered: list[str] = []
        self.closed = False

    async def set_compatibility(self, subject_name: str, level: str) -> None:
        pass

    async def register_schema(self, subject: str, schema: Any) -> int:
        self.registered.append(subject)
        return len(self.registered)

    async def aclose(self) -> None:
        self.closed = True


def fake_clients(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> tuple[Clients, list[str]]:
    """Clients whose registry is a fake and whose starts only note that they ran."""
    clients = Clients(settings(**overrides))
    registry = FakeRegistry()
    monkeypatch.setattr(clients.codec, "_client", registry)
    started: list[str] = []

    def noting(name: str) -> Any:
        async def start() -> None:
            started.append(name)

        return start

    monkeypatch.setattr(clients.publisher, "start", noting("publisher"))
    monkeypatch.setattr(clients.publisher, "refresh_topics", noting("topics"))
    monkeypatch.setattr(clients.database, "start", noting("database"))
    return clients, started


def test_the_worker_registers_every_schema_once_per_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """startup.py registers before Faust runs; the worker's start (Worker.on_start, in
    Faust's loop) starts the clients and registers nothing again (it used to: twice per
    start)."""
    clients, started = fake_clients(monkeypatch)
    registry = clients.codec.client
    assert isinstance(registry, FakeRegistry)
    worker = SimpleNamespace(
        app=SimpleNamespace(conf=SimpleNamespace(datadir=tmp_path / "data")),
        clients=clients,
        start_step=waiting(1.0),
    )
    startup._register_schemas(worker)  # type: ignore[arg-type]
    assert registry.closed, "the registry's connections belonged to the loop that ended"
    assert clients.codec.client is not registry, "a new client serves the next loop"
    asyncio.run(clients.start(waiting(1.0)))  # what Worker.on_start does with them
    assert Counter(registry.registered) == Counter(SUBJECTS)  # each subject once
    assert started == ["publisher", "topics", "database"]


async def test_the_sink_process_registers_once_then_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients, started = fake_clients(monkeypatch)
    registry = clients.codec.client
    assert isinstance(registry, FakeRegistry)
    await clients.register_schemas(waiting(1.0))
    await clients.start(waiting(1.0))
    assert Counter(registry.registered) == Counter(SUBJECTS)
    assert started == ["publisher", "topics", "database"]


async def test_the_clients_do_not_start_unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    clients, started = fake_clients(monkeypatch)
    with pytest.raises(RuntimeError, match="registered"):
        await clients.start(waiting(1.0))
    assert started == []


async def test_the_probes_name_each_server_the_process_needs() -> None:
    assert set(Clients(settings()).probes()) == {"kafka", "postgres", "schema_registry", "redis"}
    with_search = Clients(settings(search_url="http://127.0.0.1:1"))
    assert set(with_search.probes()) == {"kafka", "postgres", "schema_registry", "redis", "search"}

    async def asks_the_broker() -> None:
        pass

    assert with_search.probes(kafka=asks_the_broker)["kafka"] is asks_the_broker


async def test_the_sink_groups_are_built_from_the_clients() -> None:
    """The PostgreSQL group (mirror and catalog), and the search group with SEARCH_URL."""
    from course_management.infra.cache import CatalogCache

    for search_url, expected in (
        (None, {POSTGRES_GROUP}),
        ("http://127.0.0.1:1", {POSTGRES_GROUP, SEARCH_GROUP}),
    ):
        given = settings(search_url=search_url)
        clients = Clients(given)
        groups = sink_groups(
            given.kafka_bootstrap_servers,
            clients,
            CatalogCache(clients.redis),
            membership(given),
        )
        assert {g.group_id for g in groups} == expected
        by_id = {g.group_id: g for g in groups}
        assert COURSE_EVENTS in by_id[POSTGRES_GROUP].topics
        assert COURSE_CATALOG in by_id[POSTGRES_GROUP].topics
        if SEARCH_GROUP in by_id:
            assert by_id[SEARCH_GROUP].topics == [COURSE_CATALOG]


async def test_the_sink_process_is_ready_only_when_its_servers_answer() -> None:
    """Its `/readyz` used to say only that it was alive."""
    postgres_up = False

    async def answers() -> None:
        pass

    async def postgres() -> None:
        if not postgres_up:
            raise OSError("connection refused")

    probes = Probes({"kafka": answers, "postgres": postgres, "redis": answers})
    await probes.round()
    client = TestClient(TestServer(http_app(probes)))
    await client.start_server()
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body == {"ready": False, "checks": {"kafka": True, "postgres": False, "redis": True}}
        postgres_up = True
        await probes.round()
        response = await client.get("/readyz")
        assert response.status == 200
        assert (await response.json())["ready"] is True
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()
