"""Targets 4 and 6 of issue 13: start to ready after a SIGKILL, against a peer that reads
the same changelogs into RocksDB; and the worker's memory with its tables full.

    .venv/bin/python -m bench.recovery [--n 100000] [--session-timeout 30] [--static]
        [--faust-restore] [--profile FILE] [--png FILE]

Starts the local stack and one worker, enrols N students in courses of 1,000 seats (as
`user_enrolled` records from another service) and waits until every event is out; notes
the worker's RSS. Then SIGKILLs it and starts it again on the same data folder: an
unclean stop discards the local RocksDB (decision 26), so the tables are restored from
their changelogs: before Faust starts, by the worker's own restore (decision 44), or by
Faust with `--faust-restore`. It times start to ready (`/readyz`), which includes the wait for the
group to give the partitions back: up to the broker session timeout, because the killed
member never left the group, unless `--static` (STATIC_MEMBERSHIP, decision 43) lets the
new process take its place at once. It notes the RSS again.

The peer, in the same run: a plain aiokafka consumer reads the same changelog topics
from the beginning, decodes each value (JSON, as Faust wrote it) and puts it into a fresh
RocksDB (rocksdict) in write batches. It prints both times, the ratio, and the RSS.
No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer
from rocksdict import Rdict, WriteBatch

from bench.enrollment_throughput import count_until, inputs, produce
from bench.local import local_worker, profiler
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from course_management.topology import STATE_TABLE, changelog
from tests.support import ONE_MODULE, auth

CHANGELOGS = [changelog(STATE_TABLE)]
SEATS = 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def enrol(base: str, bootstrap: str, registry: str, n: int) -> None:
    codec = AvroCodec(registry)
    await register_schemas(codec)
    async with aiohttp.ClientSession(base_url=base) as http:
        for start in range(0, n, SEATS):
            response = await http.post(
                "/api/v1/courses/create",
                json={"title": f"Recovery {start}", "status": "published", "capacity": SEATS,
                      "modules": [ONE_MODULE]},
                headers=auth("bench", "instructor"),
            )  # fmt: skip
            course = await response.json()
            assert response.status == 201, course
            records = inputs(codec, course["id"], min(SEATS, n - start))
            await produce(bootstrap, "user-enrolled", records)
    await count_until(bootstrap, "enrollment-events", n, None)


async def peer_restore(bootstrap: str, folder: Path) -> tuple[float, int]:
    """Seconds to read the changelogs to their end, decode and write them to RocksDB."""
    db = Rdict(str(folder))
    consumer = AIOKafkaConsumer(
        *CHANGELOGS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )  # fmt: skip
    started = time.perf_counter()
    await consumer.start()
    records = 0
    try:
        partitions = consumer.assignment()
        while not partitions:
            await asyncio.sleep(0.01)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        left = {tp for tp, end in ends.items() if end > 0}
        while left:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            wb = WriteBatch()
            for tp, rs in batch.items():
                for r in rs:
                    value = json.loads(r.value) if r.value is not None else None
                    if value is None:
                        wb.delete(r.key)
                    else:
                        wb.put(r.key, json.dumps(value).encode())
                    records += 1
                if rs and rs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
            db.write(wb)
        return time.perf_counter() - started, records
    finally:
        await consumer.stop()
        db.close()


def wait_ready(url: str, deadline_s: float = 600) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(
            0.1
        )  # a probe costs the worker a few ms of its loop: poll as k8s would, only faster
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--session-timeout", type=float, default=30.0,
                        help="BROKER_SESSION_TIMEOUT_SECONDS of the worker")  # fmt: skip
    parser.add_argument("--static", action="store_true", help="STATIC_MEMBERSHIP=true")
    parser.add_argument("--faust-restore", action="store_true",
                        help="RESTORE_BEFORE_START=false: Faust restores the tables")  # fmt: skip
    parser.add_argument("--png", type=Path, help="draw start to ready against the peer")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the restarted worker, start to ready (raw)")  # fmt: skip
    args = parser.parse_args()
    extra = {"BROKER_SESSION_TIMEOUT_SECONDS": str(args.session_timeout)}
    if args.static:
        extra["STATIC_MEMBERSHIP"] = "true"
    if args.faust_restore:
        extra["RESTORE_BEFORE_START"] = "false"
    with local_worker(extra) as (worker, settings):
        bootstrap = settings.kafka_bootstrap_servers
        loaded_at = time.perf_counter()
        asyncio.run(enrol(worker.base_url, bootstrap, settings.schema_registry_url, args.n))
        loaded = time.perf_counter() - loaded_at
        assert worker.proc is not None
        rss_full = rss_mib(worker.proc.pid)
        worker.kill()
        started = time.perf_counter()
        worker.start(extra)
        assert worker.proc is not None
        spy = profiler(worker.proc.pid, args.profile) if args.profile else None
        wait_ready(f"{worker.base_url}/readyz")
        service = time.perf_counter() - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        assert worker.proc is not None
        rss_restored = rss_mib(worker.proc.pid)
        folder = Path(tempfile.mkdtemp(prefix="cms-peer-rocksdb-"))
        try:
            peer, records = asyncio.run(peer_restore(bootstrap, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"n={args.n} enrolments ({loaded:.0f} s to load), one worker, local stack; "
          f"session timeout {args.session_timeout:g} s, "
          f"{'static' if args.static else 'dynamic'} membership, "
          f"{'Faust restores' if args.faust_restore else 'restored before Faust'}")  # fmt: skip
    print(f"service: SIGKILL, start to ready  {service:8.2f} s")
    print(f"peer: {records} changelog records read, decoded, into RocksDB  {peer:8.2f} s")
    print(f"service ÷ peer: {service / peer:.1f}")
    print(f"worker RSS: {rss_full:.0f} MiB with the tables full, {rss_restored:.0f} MiB restored")
    if args.png:
        from bench.plots import bars

        bars(
            {"service: SIGKILL, start to ready": service, "peer: changelogs into RocksDB": peer},
            args.png,
            f"SIGKILL to ready, {args.n:,} enrolments ({records:,} records)",
            "seconds",
            shown=".2f",
        )
        print(f"drawn: {args.png}")


if __name__ == "__main__":
    main()
