"""Each worker's reply topic: where the agents' answers to this worker's requests arrive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

Decode = Callable[[bytes | None], Awaitable[dict[str, Any]]]


class ReplyListener:
    """Waits for the agents' answers to this worker's commands.

    Each worker reads its own one-partition reply topic with a plain consumer (no group):
    a command carries the topic name in `reply_to`, the agent that applies it sends the
    outcome there keyed by `command_id`, and the waiting request is resumed.
    """

    def __init__(self, bootstrap: str, topic: str, decode: Decode) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._decode = decode
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self._topic

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
            client_id="course-management-replies",
        )
        await self._consumer.start()
        partition = TopicPartition(self._topic, 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_end(partition)
        await self._consumer.position(partition)
        self._task = asyncio.create_task(self._run(), name="reply-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()
        for future in self._waiting.values():
            future.cancel()

    def expect(self, command_id: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        return future

    def forget(self, command_id: str) -> None:
        self._waiting.pop(command_id, None)

    async def _run(self) -> None:
        assert self._consumer is not None
        async for message in self._consumer:
            try:
                reply = await self._decode(message.value)
            except Exception:
                log.exception("undecodable reply skipped")
                continue
            future = self._waiting.pop(reply["command_id"], None)
            if future is not None and not future.done():
                future.set_result(reply)
