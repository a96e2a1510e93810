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
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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
        if wait > 0:  # until the next is due, or the phase ends
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                break
        task = asyncio.ensure_future(put(ids[n % len(ids)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        sent += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return sent


async def probe(url: str, seconds: float) -> list[float]:
    """GETs `url` PROBE_PER_S times a second for `seconds`: each answer's latency."""
    samples = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            started = time.perf_counter()
            async with http.get(url) as r:
                await r.read()
                assert r.status == 200
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 1 / PROBE_PER_S - samples[-1]))
    return samples


async def probe_apart(url: str, seconds: float) -> list[float]:
    """The probe in a process of its own: its latencies are the API's, not those of the
    bench's own loop while it reads 1,000 streams."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.live_streams", "--probe", url, "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"the probe exited {proc.returncode}"
    return [float(s) for s in json.loads(out)]


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


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user and system, /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, all) ticks of every CPU so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, steal = values[3] + values[4], values[7]
    return sum(values) - idle - steal, steal, sum(values)


def cpu_shares(watched: dict[str, int], before: dict[str, float], ticks: Any, s: float) -> str:
    """Each watched process's CPU over the phase, in % of one core, and the machine's."""
    parts = [f"{n} {100 * (cpu_seconds(p) - before[n]) / s:.0f}%" for n, p in watched.items()]
    busy, steal, total = (a - b for a, b in zip(machine_ticks(), ticks, strict=True))
    cores = os.cpu_count() or 1
    parts.append(f"machine busy {100 * cores * busy / total:.0f}%")
    parts.append(f"stolen {100 * cores * steal / total:.0f}% (of {100 * cores}%)")
    return ", ".join(parts)


async def phase(
    api: str,
    stream_urls: list[str],
    ids: list[str],
    rate: float,
    seconds: float,
    watched: dict[str, int] | None = None,
) -> tuple[list[float], list[float], int]:
    """(delivery latencies, probe samples, updates sent) of one phase; prints the CPU
    of the `watched` processes (name: pid) while the load ran."""
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
        watched = {"bench": os.getpid(), **(watched or {})}
        cpu = {name: cpu_seconds(pid) for name, pid in watched.items()}
        ticks, began = machine_ticks(), time.monotonic()
        source = asyncio.ensure_future(updates(http, ids, rate, stop))
        samples = await probe_apart(f"{api}/api/v1/courses/{ids[0]}", seconds)
        stop.set()
        print(f"  cpu: {cpu_shares(watched, cpu, ticks, time.monotonic() - began)}")
        sent = await source
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


async def histograms(api: str) -> dict[str, dict[str, float]]:
    """The worker's loop-lag and GC-pause histograms (cumulative bucket counts)."""
    async with aiohttp.ClientSession() as http, http.get(f"{api}/metrics") as r:
        text = await r.text()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("cms_event_loop_lag_seconds", "cms_gc_pause_seconds"):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    generation = sample.labels.get("generation")
                    name = family.name + (f"[{generation}]" if generation else "")
                    buckets = found.setdefault(name, {})
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return found


def grown(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    """What each histogram gained between two scrapes: count above each bound."""
    parts = []
    for name, buckets in after.items():
        total = buckets.get("+Inf", 0.0) - before.get(name, {}).get("+Inf", 0.0)
        over = {
            le: total - (n - before.get(name, {}).get(le, 0.0))
            for le, n in buckets.items()
            if le in ("0.005", "0.01", "0.025", "0.05")
        }
        parts.append(
            f"{name}: {total:.0f}, over "
            + ", ".join(f"{float(le) * 1000:.0f} ms {n:.0f}" for le, n in over.items())
        )
    return "; ".join(parts)


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
    before = await histograms(api)
    mine = {"worker": worker.proc.pid}
    _, at_rest, sent = await phase(api, [], ids, args.rate, args.seconds, mine)
    print(f"  worker, at rest: {grown(before, before := await histograms(api))}")
    print(f"quiet: probe {shown(quiet)}")
    print(f"at rest ({sent} updates): probe {shown(at_rest)}")
    service_urls = [f"{api}/api/v1/courses/{cid}/events" for cid in per_course]
    spy = profiler(worker.proc.pid, args.profile) if args.profile else None
    service, during, sent = await phase(api, service_urls, ids, args.rate, args.seconds, mine)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    print(f"service, {args.streams} streams ({sent} updates): delivery {shown(service)}")
    print(f"  probe during: {shown(during)}")
    print(f"  worker, during: {grown(before, before := await histograms(api))}")
    port = free_port()
    peer = subprocess.Popen(  # noqa: ASYNC220 (once, before anything is timed)
        [sys.executable, "-m", "bench.peers", "sse", "--port", str(port), "--uvloop",
         "--bootstrap", settings.kafka_bootstrap_servers,
         "--registry", settings.schema_registry_url],
    )  # fmt: skip
    try:
        await listening(port, 20)
        peer_urls = [f"http://127.0.0.1:{port}/events/{cid}" for cid in per_course]
        watched = {**mine, "peer": peer.pid}
        bare, beside, sent = await phase(api, peer_urls, ids, args.rate, args.seconds, watched)
        print(f"peer, {args.streams} streams ({sent} updates): delivery {shown(bare)}")
        print(f"  probe of the service while the peer streams: {shown(beside)}")
        print(f"  worker, beside: {grown(before, await histograms(api))}")
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
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # the probe's own process: a URL
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(asyncio.run(probe(args.probe, args.seconds))))
        return
    with local_worker() as (worker, settings):
        asyncio.run(run(worker, settings, args))


if __name__ == "__main__":
    main()
