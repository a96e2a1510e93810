"""Issue 28's webhook target, against a hand-written peer measured in the same run.

    .venv/bin/python -m bench.webhooks [--events 10000] [--rounds 2] [--profile FILE]

Starts the local stack (no Elasticsearch), one worker, and a webhook receiver in its own
process (`bench.peers receiver`: 204 to every POST, arrival times kept). A published
course gets `--events` enrolments (one bulk job), so `enrollment-events` holds that many
`enrollment_created` events of it. Then, per round:

1. **The service**: a subscription of the course's `enrollment_created` events to the
   receiver, then `POST .../replay` from before the course: the worker delivers the
   backlog, in order, one POST at a time (its in-order contract), signed.
2. **The peer**: a hand-written aiohttp client (one session, keep-alive) POSTs the same
   events' bodies, signed the same way and built beforehand, one after another.
3. **The whole work by hand**: a hand-written aiokafka loop reads the course's partition,
   decodes each event, makes its body, signs and POSTs it, one after another (what the
   service does, without the service): where the gap to the peer comes from.

Each rate is the receiver's: deliveries between its first and last arrival, over the time
between them. Target: the service at least 0.7x the peer. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from bench.enrollment_jobs import course, job_rate_into
from bench.local import local_worker, profiler
from bench.read_path import wait_http
from chaos.observe import wait_quiet
from course_management.domain.webhooks import delivery_body, delivery_headers, new_secret
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.ops.provisioning import register_schemas
from devstack.processes import free_port
from tests.support import auth, read_topic

SERVICE = auth("bench-service", "service")


async def stats(http: aiohttp.ClientSession, receiver: str) -> dict[str, Any]:
    return dict(await (await http.get(f"{receiver}/stats")).json())


async def until_count(
    http: aiohttp.ClientSession, receiver: str, n: int, deadline_s: float
) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = await stats(http, receiver)
        if found["count"] >= n:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"the receiver got {found['count']} of {n} in {deadline_s} s")


def rate(found: dict[str, Any]) -> float:
    return (found["count"] - 1) / max(1e-9, found["last"] - found["first"])


async def service_round(
    http: aiohttp.ClientSession, receiver: str, cid: str, since: datetime, events: int
) -> float:
    await http.post(f"{receiver}/reset")
    body = {"url": f"{receiver}/hook", "event_types": ["enrollment_created"], "course_id": cid}
    made = await http.post("/api/v1/webhooks", json=body, headers=SERVICE)
    assert made.status == 201, await made.text()
    hook = await made.json()
    replay = await http.post(
        f"/api/v1/webhooks/{hook['id']}/replay", json={"from": since.isoformat()}, headers=SERVICE
    )
    assert replay.status == 202, await replay.text()
    found = await until_count(http, receiver, events, 600)
    await http.delete(f"/api/v1/webhooks/{hook['id']}", headers=SERVICE)
    return rate(found)


async def peer_round(receiver: str, bodies: list[tuple[str, bytes]]) -> float:
    secret = new_secret()
    async with aiohttp.ClientSession() as http:
        await http.post(f"{receiver}/reset")
        for event_id, body in bodies:
            headers = delivery_headers(secret, event_id, int(time.time()), body)
            async with http.post(f"{receiver}/hook", data=body, headers=headers) as answer:
                assert answer.status == 204
        return rate(await stats(http, receiver))


async def loop_round(settings: Any, receiver: str, cid: str, events: int) -> float:
    """A hand-written aiokafka loop doing the service's whole work: read the course's
    partition from its start, decode each record, make the body, sign and POST it, one
    after another."""
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    secret = new_secret()
    bootstrap = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    sent = 0
    try:
        tps = await topic_partitions(bootstrap, "enrollment-events")
        tp = TopicPartition("enrollment-events", partition_of(cid, len(tps)))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        async with aiohttp.ClientSession() as http:
            await http.post(f"{receiver}/reset")
            while sent < events:
                for records in (await consumer.getmany(timeout_ms=200, max_records=500)).values():
                    for record in records:
                        if record.key != cid.encode() or sent >= events:
                            continue
                        value = await codec.decode("enrollment-events-value", record.value)
                        body = delivery_body(
                            str(value["event_type"]), value["occurred_at"].isoformat(), _json(value)
                        )
                        event_id = str(value["event_id"])
                        headers = delivery_headers(secret, event_id, int(time.time()), body)
                        async with http.post(f"{receiver}/hook", data=body, headers=headers) as r:
                            assert r.status == 204
                        sent += 1
            return rate(await stats(http, receiver))
    finally:
        await consumer.stop()


def partition_of(course_id: str, partitions: int) -> int:
    return (murmur2(course_id.encode()) & 0x7FFFFFFF) % max(partitions, 1)


def _json(value: dict[str, Any]) -> bytes:
    return orjson.dumps(
        value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)
    )


async def bodies_of(settings: Any, cid: str, events: int) -> list[tuple[str, bytes]]:
    """The course's `enrollment_created` events as the service's bodies, in order."""
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    records = await read_topic(
        settings, "enrollment-events", lambda rs: sum(r.key == cid.encode() for r in rs) >= events
    )
    out = []
    for record in records:
        if record.key != cid.encode():
            continue
        value = await codec.decode("enrollment-events-value", record.value)
        data = orjson.dumps(
            value, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)
        )
        out.append(
            (
                str(value["event_id"]),
                delivery_body("enrollment_created", value["occurred_at"].isoformat(), data),
            )
        )
    return out


async def run(worker: Any, settings: Any, events: int, rounds: int, profile: str | None) -> None:
    port = free_port()
    peer = subprocess.Popen(  # noqa: ASYNC220 (once, before anything is timed)
        [sys.executable, "-m", "bench.peers", "receiver", "--port", str(port), "--uvloop"]
    )
    receiver = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{receiver}/stats")
        base = f"http://127.0.0.1:{worker.port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            since = datetime.now(UTC) - timedelta(seconds=1)
            cid = (await course(http))["id"]
            await job_rate_into(http, settings.kafka_bootstrap_servers, cid, events, "hooks")
            bodies = await bodies_of(settings, cid, events)
            # the sinks mirror the enrolments first: nothing else runs during the rounds
            quiet, seen = await wait_quiet(settings.kafka_bootstrap_servers, [base], 300)
            assert quiet, seen
            results: dict[str, list[float]] = {"service": [], "peer": [], "loop": []}
            for n in range(rounds):
                spy = profiler(worker.proc.pid, profile) if profile and n == rounds - 1 else None
                results["service"].append(await service_round(http, receiver, cid, since, events))
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                results["peer"].append(await peer_round(receiver, bodies))
                results["loop"].append(await loop_round(settings, receiver, cid, events))
                print(
                    f"round {n + 1}: service {results['service'][-1]:,.0f}/s, "
                    f"peer {results['peer'][-1]:,.0f}/s, loop {results['loop'][-1]:,.0f}/s"
                )
        best = {k: max(v) for k, v in results.items()}
        print(f"deliveries/s, best of {rounds}: {best}")
        print(f"service / peer: {best['service'] / best['peer']:.2f} (target >= 0.7)")
        print(f"service / the whole work by hand: {best['service'] / best['loop']:.2f}")
    finally:
        peer.terminate()
        peer.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", help="py-spy the worker during the last service round")
    args = parser.parse_args()
    with local_worker() as (worker, settings):
        asyncio.run(run(worker, settings, args.events, args.rounds, args.profile))


if __name__ == "__main__":
    main()
