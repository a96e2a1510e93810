"""The publisher waits out a broker that is away, however aiokafka says so.

A fake client stands in for aiokafka's: the test is about how one error is classified
(a real broker restart is what the chaos run does)."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaError

from course_management.infra.publisher import Publisher
from course_management.infra.retrying import kafka_unavailable, until_published


class _Metadata:
    def topics(self) -> set[str]:
        return {"course-management-replies-w1"}


class _Client:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def fetch_all_metadata(self) -> _Metadata:
        if self.failures:
            self.failures -= 1
            # what aiokafka raises when no broker answers: a plain, non-retriable KafkaError
            raise KafkaError("Unable to get cluster metadata over all known brokers")
        return _Metadata()


class _Producer:
    def __init__(self, failures: int) -> None:
        self.client = _Client(failures)


async def test_metadata_unavailable_is_waited_out_not_raised() -> None:
    """It stopped a worker during a broker restart (the chaos run, issue 15): the reply
    send raised the non-retriable KafkaError and the batch could not be applied."""
    publisher = Publisher("127.0.0.1:1", codec=None)  # type: ignore[arg-type]
    producer: Any = _Producer(failures=2)
    publisher._producer = producer
    topics = await until_published(lambda: publisher._topics_now(set(), fresh=True))
    assert topics == {"course-management-replies-w1"}
    assert producer.client.failures == 0


def test_the_plain_kafka_error_is_not_retriable_by_itself() -> None:
    """Why the publisher translates it: the predicate keys on aiokafka's `retriable`."""
    assert not kafka_unavailable(KafkaError("Unable to get cluster metadata"))
