"""Static group membership (STATIC_MEMBERSHIP, decision 43): a worker joins the Faust
group and its plain groups as its WORKER_ID, and a SIGKILLed one comes back in place of
its old member instead of beside it. It joins the session's groups, so it runs with the
tests that rebalance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from course_management.config import Settings
from course_management.topology import APP_ID, POSTGRES_GROUP, ROUTER_GROUP
from tests.support import WorkerProcess

INSTANCE = "test-worker-static"
GROUPS = (APP_ID, ROUTER_GROUP, POSTGRES_GROUP)


@pytest.fixture(scope="module")
def static_worker(
    stack_env: dict[str, str], provisioned: Any, workdir: Path, worker: WorkerProcess
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(stack_env, workdir, worker_id=INSTANCE)
    process.start({"STATIC_MEMBERSHIP": "true"})
    try:
        yield process.wait_ready()
    finally:
        process.stop()
        process.keep_log()


def members(settings: Settings) -> dict[str, list[tuple[str, str | None]]]:
    """Each group's members as (member id, group instance id), as the broker describes
    them (librdkafka's admin client: aiokafka's cannot decode this broker's answer)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    futures = admin.describe_consumer_groups(list(GROUPS), request_timeout=20)
    return {
        group: sorted((m.member_id, m.group_instance_id) for m in future.result(30).members)
        for group, future in futures.items()
    }


def mine(group: list[tuple[str, str | None]]) -> list[str]:
    return [member for member, instance in group if instance == INSTANCE]


@pytest.mark.rebalances
async def test_a_sigkilled_static_worker_comes_back_in_place_of_its_member(
    static_worker: WorkerProcess, settings: Settings
) -> None:
    before = members(settings)
    for group in GROUPS:  # one static member in each of its groups
        assert len(mine(before[group])) == 1, (group, before[group])
    static_worker.kill()
    static_worker.start({"STATIC_MEMBERSHIP": "true"}).wait_ready()
    after = members(settings)
    for group in GROUPS:
        # The broker replaced the killed member by the new one at once: the group has as
        # many members as before, and this worker's is a new member id of the same
        # instance. A dynamic member would have joined beside the dead one and waited
        # for its session to expire.
        assert len(after[group]) == len(before[group]), (group, before[group], after[group])
        assert len(mine(after[group])) == 1 and mine(after[group]) != mine(before[group])
