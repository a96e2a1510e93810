"""Issue 28's live-stream targets, against a peer measured in the same run.

    .venv/bin/python -m bench.live_streams [--streams 1000] [--courses 100] [--rate 100]
                                           [--seconds 20]

Starts the local stack (no Elasticsearch) and one worker; creates `--courses` published
courses. An event source PUTs `--rate` course updates a second, round the courses, each
title carrying the moment it was sent. Phases, one after another, each `--seconds` long:

1. **At rest**: the updates, no stream; a probe GETs a course 20 times a second.
2. **The service**: `--streams` live streams (`GET .../events`, spread evenly over the
   courses), the updates and the probe. Each `course_updated` a stream receives gives a
   delivery latency: from the update's sending to its arrival on that stream.
3. **The peer**: the same number of streams on a bare aiohttp SSE endpoint fed from
   `course-events` by one consumer (`bench.peers sse`, its own process), the same
   updates; the same latency.

Targets: delivery p99 of the service within 2x of the peer's; the probe's p99 during the
streams within 1.5x of at rest. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp

from bench.history import percentile
from bench.local import local_worker, profiler
from devstack.processes import free_port
from tests.support import ONE_MODULE, auth

OWNER = auth("bench-instructor", "instructor", name="Bench Instructor")
PROBE_PER_S = 20


async def make_courses(http: aiohttp.ClientSession, count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = {"title": f"Live {n}", "status": "published", "modules": [ONE_MODULE]}
        answer = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
        assert answer.status == 201, await answer.text()
        ids.append((await answer.json())["id"])
    return ids


async def updates(
    http: aiohttp.ClientSession, ids: list[str], rate: float, stop: asyncio.Event
) -> int:
    """PUTs `rate` title changes a second, round the courses, until `stop`."""
    sent, n = 0, 0
    began = time.perf_counter()
    pending: set[asyncio.Task[Any]] = set()

    async def put(cid: str) -> None:
        body = {"title": f"sent {time.time():.6f}"}
        async with http.put(f"/api/v1/courses/{cid}/update", json=body, headers=OWNER) as r:
            await r.read()

    while not stop.is_set():
        due = began + n / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        task = asyncio.ensure_future(put(ids[n % len(ids)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        sent += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return sent


async def probe(http: aiohttp.ClientSession, cid: str, stop: asyncio.Event) -> list[float]:
    samples = []
    while not stop.is_set():
        started = time.perf_counter()
        async with http.get(f"/api/v1/courses/{cid}") as r:
            await r.read()
            assert r.status == 200
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, 1 / PROBE_PER_S - samples[-1]))
    return samples


async def follow(
    session: aiohttp.ClientSession, url: str, latencies: list[float], opened: list[int]
) -> None:
    """One stream: the latency of each `course_updated` (sent time in its title)."""
    async with session.get(url, headers=OWNER, timeout=aiohttp.ClientTimeout(total=None)) as r:
        assert r.status == 200, await r.text()
        opened.append(1)
        event = ""
        async for line in r.content:
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            elif line.startswith(b"data: ") and event == "course_updated":
                title = json.loads(line[6:])["course"]["title"]
                if title.startswith("sent "):
                    latencies.append(time.time() - float(title[5:]))


async def phase(
    api: str,
    stream_urls: list[str],
    ids: list[str],
    rate: float,
    seconds: float,
) -> tuple[list[float], list[float], int]:
    """(delivery latencies, probe samples, updates sent) of one phase."""
    latencies: list[float] = []
    opened: list[int] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as streams,
        aiohttp.ClientSession(base_url=api) as http,
    ):
        readers = [
            asyncio.ensure_future(follow(streams, u, latencies, opened)) for u in stream_urls
        ]
        deadline = time.monotonic() + 60
        while len(opened) < len(stream_urls):  # every stream open before the load
            assert time.monotonic() < deadline, f"{len(opened)} of {len(stream_urls)} open"
            for reader in readers:
                if reader.done() and reader.exception():
                    raise reader.exception()  # type: ignore[misc]
            await asyncio.sleep(0.1)
        stop = asyncio.Event()
        source = asyncio.ensure_future(updates(http, ids, rate, stop))
        probing = asyncio.ensure_future(probe(http, ids[0], stop))
        await asyncio.sleep(seconds)
        stop.set()
        sent = await source
        samples = await probing
        await asyncio.sleep(1.0)  # the last updates' events reach the streams
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return latencies, samples, sent


async def listening(port: int, deadline_s: float) -> None:
    """Returns once something accepts connections on the port (within the deadline)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.05)


def shown(samples: list[float]) -> str:
    if not samples:
        return "none"
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(samples)} samples)"


async def run(worker: Any, settings: Any, args: argparse.Namespace) -> None:
    api = f"http://127.0.0.1:{worker.port}"
    async with aiohttp.ClientSession(base_url=api) as http:
        ids = await make_courses(http, args.courses)
    per_course = [ids[n % len(ids)] for n in range(args.streams)]
    _, quiet, _ = await phase(api, [], ids, 0.001, 5)  # nothing at all: the probe alone
    _, at_rest, sent = await phase(api, [], ids, args.rate, args.seconds)
    print(f"quiet: probe {shown(quiet)}")
    print(f"at rest ({sent} updates): probe {shown(at_rest)}")
    service_urls = [f"{api}/api/v1/courses/{cid}/events" for cid in per_course]
    spy = profiler(worker.proc.pid, args.profile) if args.profile else None
    service, during, sent = await phase(api, service_urls, ids, args.rate, args.seconds)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    print(f"service, {args.streams} streams ({sent} updates): delivery {shown(service)}")
    print(f"  probe during: {shown(during)}")
    port = free_port()
    peer = subprocess.Popen(  # noqa: ASYNC220 (once, before anything is timed)
        [sys.executable, "-m", "bench.peers", "sse", "--port", str(port), "--uvloop",
         "--bootstrap", settings.kafka_bootstrap_servers,
         "--registry", settings.schema_registry_url],
    )  # fmt: skip
    try:
        await listening(port, 20)
        peer_urls = [f"http://127.0.0.1:{port}/events/{cid}" for cid in per_course]
        bare, _, sent = await phase(api, peer_urls, ids, args.rate, args.seconds)
        print(f"peer, {args.streams} streams ({sent} updates): delivery {shown(bare)}")
    finally:
        peer.terminate()
        peer.wait()
    ratio = percentile(service, 0.99) / percentile(bare, 0.99)
    print(f"delivery p99, service / peer: {ratio:.2f} (target <= 2)")
    api_ratio = percentile(during, 0.99) / percentile(at_rest, 0.99)
    print(f"probe p99, during the streams / at rest: {api_ratio:.2f} (target <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--courses", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--profile", help="py-spy the worker during the service's phase")
    args = parser.parse_args()
    with local_worker() as (worker, settings):
        asyncio.run(run(worker, settings, args))


if __name__ == "__main__":
    main()
