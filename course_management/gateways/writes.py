"""The API's writes (api.ports.Writes): a command or input on Kafka, then the agent's reply.

Every write is sent to the topic the course agent reads, carrying this worker's reply
topic; the agent that owns the course decides and answers there (infra/replies.py), and
the waiting request resumes with the decision (read-your-writes). Both the send and the
wait are bounded by COMMAND_TIMEOUT_SECONDS: a broker that is down makes a 503, never a
hang or a 500, and a retry is safe (the same request is applied once).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from course_management.api.ports import Unavailable
from course_management.domain.commands import CourseCommand
from course_management.domain.enrollment import EnrollInput, ProgressInput
from course_management.domain.outcomes import Reply
from course_management.infra.kafka import Headers
from course_management.infra.logs import context_value
from course_management.infra.replies import ReplyListener
from course_management.messages import command_reply, course_command, item_progress, user_enrolled
from course_management.topology import (
    CORRELATION_HEADER,
    REPLY_TO_HEADER,
    REQUEST_ID_HEADER,
    spec,
)


class SendsRecord(Protocol):
    async def send(
        self,
        topic: str,
        key: str,
        subject: str,
        value: dict[str, Any],
        headers: Headers | None = None,
    ) -> None: ...


def _traced(headers: Headers) -> Headers:
    """The headers, and the request id of the HTTP request being served (if any)."""
    request_id = context_value("request_id")
    if request_id:
        return [*headers, (REQUEST_ID_HEADER, str(request_id).encode())]
    return headers


def _not_taken() -> Unavailable:
    return Unavailable(
        "kafka-unavailable",
        "Kafka did not take the change in time; it may still apply: retry later "
        "(retries are safe: the same request is applied once)",
    )


class KafkaWriteGateway:
    """api.ports.Writes: each write sent to the course agent over Kafka, then its reply."""

    def __init__(self, sends: SendsRecord, replies: ReplyListener, timeout_s: float) -> None:
        self._sends = sends
        self._replies = replies
        self._timeout_s = timeout_s

    async def execute(self, command: CourseCommand) -> Reply:
        record = course_command.encode(course_command.SentCommand(command, self._replies.topic))
        send = self._sends.send(
            course_command.TOPIC, command.course_id, course_command.SUBJECT, record, _traced([])
        )
        return await self._ask(command.command_id, send)

    async def start_job(self, chunks: list[CourseCommand]) -> Reply:
        reply = await self.execute(chunks[0])
        if reply.refusal is not None or (reply.body or {}).get("status") == "done":
            return reply
        try:
            async with asyncio.timeout(self._timeout_s):
                for command in chunks[1:]:  # each taken by Kafka before the next: in order
                    record = course_command.encode(
                        course_command.SentCommand(command, self._replies.topic)
                    )
                    await self._sends.send(
                        course_command.TOPIC,
                        command.course_id,
                        course_command.SUBJECT,
                        record,
                        _traced([]),
                    )
        except (TimeoutError, KafkaError) as exc:
            raise Unavailable(
                "kafka-unavailable",
                "Kafka did not take the whole job in time; it may still apply: send it again "
                "with the same Idempotency-Key (no row is applied twice)",
            ) from exc
        return reply

    async def enroll(self, course_id: str, user_id: str, source: str) -> Reply:
        """Publish `user_enrolled` (as other services do) and wait for the agent's answer."""
        enroll = EnrollInput(str(uuid.uuid4()), course_id, user_id, datetime.now(UTC), source)
        record = user_enrolled.encode(enroll)
        return await self._publish_input(user_enrolled.TOPIC, enroll.event_id, course_id, record)

    async def report_progress(
        self, course_id: str, user_id: str, item_id: str, status: str, score: float | None
    ) -> Reply:
        """Publish an `ItemProgress` on course-progress and wait for the agent's answer."""
        progress = ProgressInput(
            str(uuid.uuid4()), course_id, user_id, item_id, status, score, datetime.now(UTC)
        )
        record = item_progress.encode(progress)
        return await self._publish_input(item_progress.TOPIC, progress.event_id, course_id, record)

    async def _publish_input(
        self, topic: str, event_id: str, course_id: str, record: dict[str, Any]
    ) -> Reply:
        headers = _traced(
            [
                (REPLY_TO_HEADER, self._replies.topic.encode()),
                (CORRELATION_HEADER, event_id.encode()),
            ]
        )
        return await self._ask(
            event_id, self._sends.send(topic, course_id, spec(topic).subject, record, headers)
        )

    async def _ask(self, correlation_id: str, send: Awaitable[None]) -> Reply:
        waiting = self._replies.expect(correlation_id)
        sent = False
        try:
            async with asyncio.timeout(self._timeout_s):
                await send
                sent = True
                reply = await waiting
        except TimeoutError:
            if not sent:
                raise _not_taken() from None
            raise Unavailable(
                "not-confirmed",
                "the change was accepted but not confirmed in time; read it back or retry "
                "(retries are safe: the same request is applied once)",
            ) from None
        except KafkaError as exc:
            raise _not_taken() from exc
        finally:
            self._replies.forget(correlation_id)
        return reply_of(reply)


def reply_of(record: dict[str, Any]) -> Reply:
    """A decoded CommandReply as the domain's Reply."""
    return command_reply.decode(record).reply
