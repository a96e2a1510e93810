"""p50/p95 of `GET /api/v1/courses?q=...` over a large catalog, on both search backends.

    .venv/bin/python -m bench.catalog_search [--courses 100000] [--requests 300] [--png FILE]
        [--profile FILE]
    (or: make bench)

Starts the local stack (with Elasticsearch), seeds N published courses into the
PostgreSQL catalog and the Elasticsearch index through the sinks' own writer functions,
then runs one worker per backend (SEARCH_URL set: Elasticsearch; unset: PostgreSQL full
text) and times, one request at a time over a kept-alive connection:
  - GET /api/v1/courses?q=<one or two words>[&filters][&sort]   (cache bypassed: the bench
    bumps the Redis catalog generation before each request, so every page is computed)
  - the same with the Redis page cache warm
  - GET /healthz: the same HTTP stack doing no work
  - the peer of the Elasticsearch backend: each computed request's own query body sent to
    raw `_search`, paired with the request in alternating order (whichever runs second
    finds Elasticsearch's caches warm)
and reports each against the peer measured in the same run; then times the index rebuild
(`search rebuild`) against the seed's own bulk load. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from elasticsearch import AsyncElasticsearch

from bench.api_latency import percentile
from bench.catalog_seed import CATEGORIES, INSTRUCTORS, LEVELS, SUBJECTS, WORDS, catalog
from bench.local import profiler
from course_management.catalog import elastic as catalog_es
from course_management.catalog import postgres as catalog_pg
from course_management.catalog.query import parse_query
from course_management.catalog.rebuild_index import rebuild
from course_management.config import Settings, load_settings
from course_management.infra.cache import CatalogCache
from course_management.ops.provisioning import provision_all
from devstack.stack import LocalStack
from tests.support import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, WorkerProcess


async def seed(settings: Settings, n: int) -> dict[str, float]:
    took: dict[str, float] = {}
    started = time.perf_counter()
    entries = catalog(n)
    took["generate"] = time.perf_counter() - started
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None and settings.search_url
    es = AsyncElasticsearch(settings.search_url, request_timeout=120)
    try:
        started = time.perf_counter()
        for start in range(0, n, 5000):
            await catalog_pg.write_catalog_entries(pool, entries[start : start + 5000])
        await pool.execute("ANALYZE catalog_courses")
        took["postgres"] = time.perf_counter() - started
        started = time.perf_counter()
        index = await catalog_es.current_index(es)
        assert index is not None
        for start in range(0, n, 2000):
            await catalog_es.write_catalog_entries(
                es, entries[start : start + 2000], index=index, refresh=False
            )
        await es.indices.refresh(index=index)
        await es.indices.forcemerge(index=index, max_num_segments=1)
        took["elasticsearch"] = time.perf_counter() - started
    finally:
        await pool.close()
        await es.close()
    return took


def queries(count: int, seed: int = 11) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = [name.split()[1] for _, name in INSTRUCTORS]
    out = []
    for _ in range(count):
        words = [rng.choice(SUBJECTS)]
        if rng.random() < 0.4:
            words.append(rng.choice((*WORDS, *SUBJECTS, *names)))
        params = {"q": " ".join(words), "limit": "20"}
        roll = rng.random()
        if roll < 0.25:
            params["category"] = rng.choice(CATEGORIES)
        elif roll < 0.45:
            params["level"] = rng.choice(LEVELS)
        if rng.random() < 0.3:
            params["sort"] = rng.choice(("newest", "rating", "popular"))
        out.append(params)
    return out


async def measure(
    base: str, redis_url: str, plan: list[dict[str, str]], peer: RawSearch | None = None
) -> dict[str, list[float]]:
    """The service's timings; with `peer`, each computed request is paired with the same
    query sent to raw `_search`, the two in alternating order (whichever goes second finds
    Elasticsearch's caches warmed by the first)."""
    redis = aioredis.from_url(redis_url)
    timings: dict[str, list[float]] = {"q (computed)": [], "q (cached page)": [], "healthz": []}
    if peer is not None:
        timings[PEER] = []
    results: list[int] = []
    try:
        async with aiohttp.ClientSession(base_url=base) as http:
            for params in plan[:20]:  # warm-up
                await (await http.get("/api/v1/courses", params=params)).read()
                if peer is not None:
                    await peer.time(params)
            for i, params in enumerate(plan):
                if peer is not None and i % 2:
                    timings[PEER].append(await peer.time(params))
                await redis.incr(CatalogCache.GENERATION)  # this page is computed, not cached
                started = time.perf_counter()
                response = await http.get("/api/v1/courses", params=params)
                body: dict[str, Any] = await response.json()
                timings["q (computed)"].append(time.perf_counter() - started)
                assert response.status == 200, body
                results.append(len(body["items"]))
                if peer is not None and not i % 2:
                    timings[PEER].append(await peer.time(params))
            for params in plan:
                await (await http.get("/api/v1/courses", params=params)).read()  # fills it
                started = time.perf_counter()
                await (await http.get("/api/v1/courses", params=params)).read()
                timings["q (cached page)"].append(time.perf_counter() - started)
            for _ in plan:
                started = time.perf_counter()
                await (await http.get("/healthz")).read()
                timings["healthz"].append(time.perf_counter() - started)
    finally:
        await redis.aclose()
    assert sum(results) > 0, "the queries found nothing: the seed did not land"
    return timings


class _Recorder:
    """Stands in for the client to catch the body EsCatalog would send."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}

    async def search(self, index: str, **body: Any) -> dict[str, Any]:
        self.body = body
        return {"hits": {"hits": []}, "aggregations": {}}


PEER = "peer: raw _search"


class RawSearch:
    """The peer: each query's own body (as the service builds it) sent straight to
    Elasticsearch's `_search`, timed the same way."""

    def __init__(self, search_url: str) -> None:
        self._recorder = _Recorder()
        self._shaper = catalog_es.EsCatalog(self._recorder)  # type: ignore[arg-type]
        self._es = AsyncElasticsearch(search_url, request_timeout=30)

    async def time(self, params: dict[str, str]) -> float:
        with contextlib.suppress(KeyError, TypeError):  # the recorder's empty answer
            await self._shaper.search(parse_query(params))
        started = time.perf_counter()
        await self._es.search(index=catalog_es.ALIAS, **self._recorder.body)
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._es.close()


async def measure_with_peer(
    base: str, redis_url: str, plan: list[dict[str, str]], search_url: str
) -> dict[str, list[float]]:
    peer = RawSearch(search_url)
    try:
        return await measure(base, redis_url, plan, peer)
    finally:
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--png", type=Path, help="draw the latency distributions")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the Elasticsearch worker while it answers (raw)")  # fmt: skip
    args = parser.parse_args()
    stack = LocalStack(search=True)
    env = stack.start()
    env.update({"JWT_SECRET": JWT_SECRET, "JWT_ISSUER": JWT_ISSUER, "JWT_AUDIENCE": JWT_AUDIENCE})
    report: dict[str, dict[str, list[float]]] = {}
    try:
        settings = load_settings(**{k.lower(): v for k, v in env.items()})
        provision_all(settings)
        took = asyncio.run(seed(settings, args.courses))
        print(
            f"seeded {args.courses} courses: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        )
        plan = queries(args.requests)
        search_url = settings.search_url
        assert search_url
        for backend, extra in (("elasticsearch", {}), ("postgres", {"SEARCH_URL": ""})):
            workdir = Path(tempfile.mkdtemp(prefix=f"cms-bench-{backend}-"))
            worker = WorkerProcess(env, workdir, worker_id=f"bench-{backend}")
            try:
                worker.start(extra).wait_ready()
                assert worker.proc is not None
                spy = (
                    profiler(worker.proc.pid, args.profile)
                    if args.profile and backend == "elasticsearch"
                    else None
                )
                report[backend] = asyncio.run(
                    measure_with_peer(worker.base_url, settings.redis_url, plan, search_url)
                    if backend == "elasticsearch"
                    else measure(worker.base_url, settings.redis_url, plan)
                )
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
            finally:
                worker.stop()
        # Last, so the searches above ran on the force-merged seed index.
        started = time.perf_counter()
        rebuilt = asyncio.run(rebuild(settings))
        rebuild_s = time.perf_counter() - started
    finally:
        stack.stop()
    print(
        f"{args.courses} published courses, {args.requests} sequential requests per row, "
        "one worker, the whole local stack on this machine (2 cores)"
    )
    print(f"{'backend':<15}{'request':<18}{'p50 ms':>9}{'p95 ms':>9}{'p50 / healthz':>15}")
    for backend, timings in report.items():
        peer = statistics.median(timings["healthz"])
        for name, samples in timings.items():
            p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
            print(f"{backend:<15}{name:<18}{p50 * 1000:>9.2f}{p95 * 1000:>9.2f}{p50 / peer:>15.1f}")
    es_p95 = percentile(report["elasticsearch"]["q (computed)"], 0.95)
    raw_p95 = percentile(report["elasticsearch"][PEER], 0.95)
    pg_p95 = percentile(report["postgres"]["q (computed)"], 0.95)
    print(f"p95: Elasticsearch backend ÷ raw _search {es_p95 / raw_p95:.2f}; "
          f"PostgreSQL backend ÷ Elasticsearch backend {pg_p95 / es_p95:.2f}")  # fmt: skip
    if args.png:
        from bench.plots import distributions

        distributions(
            {
                "Elasticsearch backend, computed": report["elasticsearch"]["q (computed)"],
                "peer: raw _search, same bodies": report["elasticsearch"][PEER],
                "PostgreSQL backend, computed": report["postgres"]["q (computed)"],
                "Elasticsearch backend, cached page": report["elasticsearch"]["q (cached page)"],
            },
            args.png,
            f"Catalog search, {args.courses:,} courses, one request at a time",
        )
        print(f"drawn: {args.png}")
    print(
        f"index rebuild (search rebuild: PostgreSQL catalog -> new index, alias swap): "
        f"{rebuild_s:.1f} s for {rebuilt['documents']} courses; peer, the seed's direct bulk "
        f"into the index: {took['elasticsearch']:.1f} s ({rebuild_s / took['elasticsearch']:.2f}x)"
    )


if __name__ == "__main__":
    main()
