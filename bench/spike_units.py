"""The spike behind decision 49: how to make a batch's table writes atomic on this Kafka.

    .venv/bin/python -m bench.spike_units [--kills 40]

Starts the local stack (Kafka only is used) and measures, in one run:
1. **Atomicity under SIGKILL.** A child process sends 400-record units (about 800 KB) in
   a loop and is SIGKILLed at a random moment, `--kills` times; then every unit's records
   are counted in the log. Once with one explicit record batch per unit
   (`create_batch`/`send_batch`), once with the records sent one by one as Faust's table
   path sends them (16 KiB producer batches). A unit with fewer than 400 records in the
   log was cut.
2. **Latency** of a 60-record unit to one partition, 300 times: an explicit record batch
   against a transaction (begin, 60 sends, commit).
3. **Transactional fencing**: a second producer with the same `transactional.id`, then a
   transaction of the first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

UNIT = 400  # records per unit
VALUE_BYTES = 2000


async def _child(bootstrap: str, mode: str, topic: str, seed: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_request_size=16 << 20,
        max_batch_size=(16 << 20) if mode == "batch" else 16384,
    )
    await producer.start()
    unit = seed * 100_000
    while True:
        unit += 1
        values = [os.urandom(VALUE_BYTES // 2).hex().encode() for _ in range(UNIT)]
        headers = [("unit", str(unit).encode())]
        if mode == "batch":
            batch = producer.create_batch()
            for i, value in enumerate(values):
                batch.append(key=f"k{i}".encode(), value=value, timestamp=None, headers=headers)
            await (await producer.send_batch(batch, topic, partition=0))
        else:
            sent = [
                await producer.send(topic, value=v, key=f"k{i}".encode(), partition=0,
                                    headers=headers)
                for i, v in enumerate(values)
            ]  # fmt: skip
            await asyncio.gather(*sent)
        print(unit, flush=True)


async def _cut_units(bootstrap: str, topic: str) -> tuple[int, int]:
    """(units in the log, units with fewer records than sent)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    counts: collections.Counter[bytes] = collections.Counter()
    try:
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                for record in records:
                    counts[dict(record.headers)["unit"]] += 1
    finally:
        await consumer.stop()
    return len(counts), sum(1 for n in counts.values() if n % UNIT)


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(16 << 20)}
        await admin.create_topics([NewTopic(n, 1, 1, topic_configs=config) for n in names])
    finally:
        await admin.close()


def atomicity(bootstrap: str, kills: int) -> dict[str, Any]:
    tag = str(int(time.time()))
    topics = {mode: f"spike-units-{mode}-{tag}" for mode in ("batch", "single")}
    asyncio.run(_topics(bootstrap, *topics.values()))
    rng = random.Random(7)
    found: dict[str, Any] = {}
    for mode, topic in topics.items():
        for trial in range(kills):
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.spike_units", "--child", mode, topic,
                 str(trial + 1), "--bootstrap", bootstrap],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            assert child.stdout is not None
            child.stdout.readline()  # its first unit acked: it is up and sending
            time.sleep(rng.uniform(0.0, 0.2))
            child.send_signal(signal.SIGKILL)
            child.wait()
        units, cut = asyncio.run(_cut_units(bootstrap, topic))
        found[mode] = {"units": units, "cut": cut}
    return found


async def latency_and_fencing(bootstrap: str) -> dict[str, Any]:
    topic = f"spike-latency-{int(time.time())}"
    await _topics(bootstrap, topic)
    records = [(f"k{i}".encode(), os.urandom(150).hex().encode()) for i in range(60)]

    def quantiles(samples: list[float]) -> str:
        samples.sort()
        p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
        return f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"

    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             max_batch_size=1 << 20, linger_ms=0)  # fmt: skip
    await plain.start()
    batches: list[float] = []
    for _ in range(300):
        started = time.perf_counter()
        batch = plain.create_batch()
        for key, value in records:
            batch.append(key=key, value=value, timestamp=None, headers=[])
        await (await plain.send_batch(batch, topic, partition=0))
        batches.append(time.perf_counter() - started)
    await plain.stop()
    txn_id = f"spike-{topic}"
    transactional = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id,
                                     max_batch_size=1 << 20, linger_ms=0)  # fmt: skip
    await transactional.start()
    transactions: list[float] = []
    for _ in range(300):
        started = time.perf_counter()
        async with transactional.transaction():
            sent = [await transactional.send(topic, value=v, key=k, partition=0)
                    for k, v in records]  # fmt: skip
            await asyncio.gather(*sent)
        transactions.append(time.perf_counter() - started)
    newer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
    await newer.start()
    try:
        transactional.begin_transaction()
        await (await transactional.send(topic, value=b"zombie", partition=0))
        await transactional.commit_transaction()
        fencing = "the older producer committed: NOT fenced"
    except Exception as exc:
        fencing = f"the older producer was refused: {type(exc).__name__}"
    await newer.stop()
    with contextlib.suppress(Exception):  # it was fenced
        await transactional.stop()
    return {
        "explicit batch": quantiles(batches),
        "transaction": quantiles(transactions),
        "fencing": fencing,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, topic, seed = args.child
        asyncio.run(_child(args.bootstrap, mode, topic, int(seed)))
        return
    from devstack.stack import LocalStack

    stack = LocalStack(search=False)
    try:
        bootstrap = stack.start()["KAFKA_BOOTSTRAP_SERVERS"]
        found = atomicity(bootstrap, args.kills)
        measured = asyncio.run(latency_and_fencing(bootstrap))
    finally:
        stack.stop()
    print(f"units of {UNIT} records, {args.kills} SIGKILLs of the producer each:")
    for mode, counts in found.items():
        print(f"  {mode:<7} {counts['units']} units in the log, {counts['cut']} cut")
    print(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
