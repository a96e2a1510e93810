"""Hand-written peers the benchmarks measure the service against, in the same run.

    python -m bench.peers read --port P --redis-url URL --key K --body-file F

`read` is an aiohttp app with two routes:
- `/bare`: the ready-made response bytes and headers from memory (no I/O at all);
- `/one-get`: one Redis GET of the same bytes, then the same response: the least a read
  that must be fresh on every worker does;
- `/script/{id}`: the service's own read script (rate limit and entry in one call,
  infra/cache.py) from a bare handler: what the Redis side of a read costs, without the
  rest of the service.
It runs on the same event loop policy as the service (`--uvloop`).

    python -m bench.peers history --port P --database-url URL

`history` is an aiohttp app with one route, `/history/{id}`: the plain indexed PostgreSQL
query of a course's newest versions (`course_versions`, its primary key) and the rows as
JSON, without the service's authentication, access checks or rate limits (issue 27).

    python -m bench.peers receiver --port P

    python -m bench.peers sse --port P --bootstrap B --registry URL

`sse` is a bare SSE endpoint fed from `course-events` by one consumer (issue 28).

`receiver` is a webhook receiver (issue 28): 204 to each POST on `/hook`, arrival times
kept, `GET /stats`, `POST /reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from course_management.infra.cache import CourseCache
from course_management.infra.rate_limit import Budget, Charge


def read_peer(redis_url: str, key: str, body: bytes, etag: str) -> web.Application:
    client = aioredis.from_url(redis_url)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Content-Type": "application/json"}

    async def bare(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async def one_get(request: web.Request) -> web.Response:
        raw = await client.get(key)
        if raw is None:
            raise web.HTTPNotFound()
        return web.Response(body=raw, headers=headers)

    cache = CourseCache(client)
    budget = Budget("peer-read", 10_000_000, 60)

    async def script(request: web.Request) -> web.Response:
        charge = Charge(budget, "peer")
        entry = await cache.spend_and_get_course(request.match_info["id"], charge)
        if entry is None or entry.body is None:
            raise web.HTTPNotFound()
        return web.Response(body=entry.body, headers=headers)

    async def prime(app: web.Application) -> None:
        await client.set(key, body)

    app = web.Application()
    app.on_startup.append(prime)
    app.router.add_get("/bare", bare)
    app.router.add_get("/one-get", one_get)
    app.router.add_get("/script/{id}", script)
    return app


HISTORY_QUERY = (
    "SELECT version, event_type, actor_id, occurred_at, request_id, changes::text AS changes"
    " FROM course_versions WHERE course_id = $1 ORDER BY version DESC LIMIT $2"
)


def history_peer(database_url: str) -> web.Application:
    import json

    import asyncpg

    pools: list[asyncpg.Pool] = []

    async def open_pool(app: web.Application) -> None:
        pools.append(await asyncpg.create_pool(database_url, min_size=1, max_size=4))

    async def history(request: web.Request) -> web.Response:
        rows = await pools[0].fetch(HISTORY_QUERY, request.match_info["id"], 21)
        items = [
            {
                **dict(r),
                "occurred_at": r["occurred_at"].isoformat(),
                "changes": json.loads(r["changes"]),
            }
            for r in rows[:20]
        ]
        return web.json_response({"items": items, "next_cursor": None})

    app = web.Application()
    app.on_startup.append(open_pool)
    app.router.add_get("/history/{id}", history)
    return app


def receiver_peer() -> web.Application:
    """A webhook receiver: 204 to every POST, the arrival times kept; `GET /stats` says
    how many came and when the first and last did; `POST /reset` starts again."""
    times: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        times.append(time.perf_counter())
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        first, last = (times[0], times[-1]) if times else (0.0, 0.0)
        return web.json_response({"count": len(times), "first": first, "last": last})

    async def reset(request: web.Request) -> web.Response:
        times.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


def sse_peer(bootstrap: str, registry_url: str) -> web.Application:
    """A bare SSE endpoint, `/events/{course}`, fed by one consumer of `course-events`
    (every partition, from its end): each record decoded once, as JSON, to the streams of
    its course (issue 28). No authentication, positions, resumption or limits."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    from course_management.infra.avro import AvroCodec
    from course_management.infra.kafka import topic_partitions
    from course_management.ops.provisioning import register_schemas

    streams: dict[str, set[asyncio.Queue[bytes]]] = {}
    tasks: list[asyncio.Task[None]] = []

    async def tail(app: web.Application) -> None:
        codec = AvroCodec(registry_url)
        await register_schemas(codec)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        tps = await topic_partitions(bootstrap, "course-events")
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)

        async def follow() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        key = (record.key or b"").decode()
                        if key not in streams:
                            continue
                        value = await codec.decode("course-events-value", record.value)
                        data = orjson.dumps(value, default=str)
                        message = b"event: %s\ndata: %s\n\n" % (
                            str(value["event_type"]).encode(),
                            data,
                        )
                        for queue in streams.get(key, ()):
                            queue.put_nowait(message)

        tasks.append(asyncio.create_task(follow()))

    async def events(request: web.Request) -> web.StreamResponse:
        course = request.match_info["course"]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        streams.setdefault(course, set()).add(queue)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(await queue.get())
        finally:
            streams[course].discard(queue)

    app = web.Application()
    app.on_startup.append(tail)
    app.router.add_get("/events/{course}", events)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="peer", required=True)
    read = sub.add_parser("read")
    read.add_argument("--port", type=int, required=True)
    read.add_argument("--redis-url", required=True)
    read.add_argument("--key", required=True)
    read.add_argument("--body-file", type=Path, required=True)
    read.add_argument("--etag", default='"1.0"')
    read.add_argument("--uvloop", action="store_true")
    past = sub.add_parser("history")
    past.add_argument("--port", type=int, required=True)
    past.add_argument("--database-url", required=True)
    past.add_argument("--uvloop", action="store_true")
    hook = sub.add_parser("receiver")
    hook.add_argument("--port", type=int, required=True)
    hook.add_argument("--uvloop", action="store_true")
    sse = sub.add_parser("sse")
    sse.add_argument("--port", type=int, required=True)
    sse.add_argument("--bootstrap", required=True)
    sse.add_argument("--registry", required=True)
    sse.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.peer == "history":
        app = history_peer(args.database_url)
    elif args.peer == "receiver":
        app = receiver_peer()
    elif args.peer == "sse":
        app = sse_peer(args.bootstrap, args.registry)
    else:
        app = read_peer(args.redis_url, args.key, args.body_file.read_bytes(), args.etag)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
