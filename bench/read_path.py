"""Target 1 of issue 13: the hot reads under wrk at 64 connections, against peers.

    .venv/bin/python -m bench.read_path [--seconds 10] [--connections 64] [--png FILE]

Starts the local stack and one worker, creates a published course of about 3 KB with a
student enrolled, and takes its response bytes. Then runs, one after another in the same
run on the same machine (wrk uses one thread, the service or peer the other core):
- the peer `bare`: an aiohttp handler returning those bytes from memory;
- the peer `one-get`: an aiohttp handler doing one Redis GET of those bytes;
- the service's `GET /api/v1/courses/{id}` (a student's token);
- the service's access check `GET /api/v1/courses/{id}/enrollments/{userId}` (a service
  token), and `/healthz`;
- the course read by an anonymous client far over its budget (the worker restarted with
  60 reads a minute per caller): its 429s, to set against the reads served.
It prints requests per second and p50/p99 for each, and the ratios the issue asks for:
throughput against `one-get` (target 0.7) and `bare`, p99 against `one-get` (target at
most 3x). No threshold is asserted. `--png` draws the distributions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import Load, wrk
from bench.local import local_worker, profiler
from devstack.processes import free_port
from tests.support import auth

INSTRUCTOR = auth("bench-instructor", "instructor", name="Bench Instructor")
STUDENT = auth("bench-student", "student")
SERVICE = auth("bench-content-delivery", "service")


def realistic_course() -> dict[str, Any]:
    """About 3 KB of JSON: four modules of lessons, a quiz and an assignment."""
    modules = []
    for m in range(4):
        items = [
            {
                "type": "lesson",
                "title": f"Lesson {m}.{i}: the idea, worked through",
                "position": i,
                "duration_seconds": 600,
            }
            for i in range(3)
        ]
        items.append({"type": "quiz", "title": f"Quiz {m}", "position": 3, "max_score": 10})
        items.append(
            {
                "type": "assignment",
                "title": f"Assignment {m}",
                "position": 4,
                "max_score": 100,
                "due_at": "2027-03-01T00:00:00Z",
            }
        )
        modules.append({"title": f"Module {m}: part of the whole", "position": m, "items": items})
    return {
        "title": "Stream processing, from logs to tables",
        "description": "Kafka, tables, changelogs and the rest. " * 8,
        "category": "data-engineering",
        "tags": ["kafka", "streams", "python"],
        "level": "intermediate",
        "status": "published",
        "modules": modules,
    }


async def prepare(base: str) -> tuple[str, bytes, str]:
    async with aiohttp.ClientSession(base_url=base) as http:
        response = await http.post(
            "/api/v1/courses/create", json=realistic_course(), headers=INSTRUCTOR
        )
        course = await response.json()
        assert response.status == 201, course
        response = await http.post(f"/api/v1/courses/{course['id']}/enroll", headers=STUDENT)
        assert response.status in (200, 201), await response.text()
        response = await http.get(f"/api/v1/courses/{course['id']}", headers=STUDENT)
        body = await response.read()
        return course["id"], body, response.headers["ETag"]


def wait_http(url: str, deadline_s: float = 20) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def report(loads: list[Load], peer: Load, bare: Load) -> list[str]:
    lines = [
        f"{'path':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'÷ one-get':>11}{'÷ bare':>9}{'p99 ÷ one-get':>15}"
    ]
    for load in loads:
        lines.append(
            f"{load.name:<34}{load.rps:>10.0f}{load.ms(50):>9.2f}{load.ms(99):>9.2f}"
            f"{load.rps / peer.rps:>11.2f}{load.rps / bare.rps:>9.2f}"
            f"{load.ms(99) / peer.ms(99):>15.2f}"
        )
        if load.errors or load.non2xx:
            lines.append(f"  !! {load.errors} socket errors, {load.non2xx} non-2xx answers")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--profile", type=str, help="py-spy's raw stacks of GET course")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        help="KEY=VALUE for the worker (repeatable), e.g. RATE_LIMITS=false",
    )
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.worker_env)
    with local_worker(extra) as (worker, settings):
        course_id, body, etag = asyncio.run(prepare(worker.base_url))
        base = worker.base_url
        run = lambda name, url, headers=None: wrk(  # noqa: E731
            name, url, headers, connections=args.connections, seconds=args.seconds
        )
        port = free_port()
        with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
            Path(body_file.name).write_bytes(body)
            peer_proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.peers",
                    "read",
                    "--port",
                    str(port),
                    "--redis-url",
                    settings.redis_url,
                    "--key",
                    f"bench:ready:{course_id}",
                    "--body-file",
                    body_file.name,
                    "--etag",
                    etag,
                    *([] if extra.get("EVENT_LOOP") == "asyncio" else ["--uvloop"]),
                ]
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/bare")
                run("warm-up", f"{base}/api/v1/courses/{course_id}", STUDENT)
                bare = run("peer: bare (bytes in memory)", f"http://127.0.0.1:{port}/bare")
                peer = run("peer: one Redis GET", f"http://127.0.0.1:{port}/one-get")
                script = run(
                    "peer: the service's read script", f"http://127.0.0.1:{port}/script/{course_id}"
                )
            finally:
                peer_proc.terminate()
                peer_proc.wait()
        spy = profiler(worker.proc.pid, args.profile) if args.profile and worker.proc else None
        course_read = run("GET course (student)", f"{base}/api/v1/courses/{course_id}", STUDENT)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        loads = [
            bare,
            peer,
            script,
            course_read,
            run(
                "GET enrollment (service)",
                f"{base}/api/v1/courses/{course_id}/enrollments/bench-student",
                SERVICE,
            ),
            run("GET /healthz", f"{base}/healthz"),
        ]
        # An anonymous client far over its budget: the worker again with 60 reads a
        # minute per caller, so nearly every answer is a 429 (issue 22: a refusal must
        # cost less than a served read).
        worker.stop()
        worker.start({**extra, "RATE_LIMIT_READS_PER_MINUTE": "60"}).wait_ready()
        loads.append(run("GET course over budget (429)", f"{base}/api/v1/courses/{course_id}"))
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s, one worker, local stack; "
        f"response {len(body)} bytes"
    )
    print("\n".join(report(loads, peer, bare)))
    served, refused = loads[3], loads[-1]
    print(
        f"429s per second ÷ reads served per second: {refused.rps / served.rps:.2f} "
        f"({refused.non2xx} of the over-budget answers were not 200)"
    )
    if args.json:
        args.json.write_text(json.dumps([load.__dict__ for load in loads], indent=1))
    if args.png:
        from bench.plots import latency_and_throughput

        latency_and_throughput(loads, args.png, "Hot reads under wrk, 64 connections")
        print(f"drawn: {args.png}")


if __name__ == "__main__":
    main()
