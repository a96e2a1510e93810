"""`course-management ops dlq show | replay` on real dead letters: `user_enrolled` records
from another service for a draft course are refused and dead-lettered; once the course is
published (the fix), replaying them enrols the students; replaying again changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from course_management.topology import USER_ENROLLED, dlq
from tests.support import (
    ADMIN,
    ONE_MODULE,
    OWNER,
    eventually,
    eventually_async,
    produce,
    user_enrolled_records,
)

DLQ = dlq(USER_ENROLLED)


def _ops(stack_env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "course_management", "ops", "dlq", *args],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


async def test_refused_records_are_shown_then_replayed_once_after_the_fix(
    http: aiohttp.ClientSession, settings: Settings, stack_env: dict[str, str]
) -> None:
    body = {"title": "Not yet published", "status": "draft", "modules": [ONE_MODULE]}
    created = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    assert created.status == 201, await created.text()
    course = await created.json()
    users = [f"dlq-{uuid.uuid4().hex[:8]}-{n}" for n in range(2)]
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    await produce(settings, USER_ENROLLED, user_enrolled_records(codec, course["id"], users, "lms"))

    def mine() -> list[dict[str, Any]]:
        shown = _ops(stack_env, "show", "--topic", DLQ, "--code", "refused")["dead_letters"]
        return [d for d in shown if d["key"] in users]

    letters = eventually(lambda: len(mine()) == len(users) and mine(), 60, "the dead letters")
    assert all(d["source_topic"] == USER_ENROLLED for d in letters)
    assert all(d["reason"].startswith("refused: course-not-published") for d in letters)
    later = _ops(stack_env, "show", "--topic", DLQ, "--since", "2999-01-01T00:00:00")
    assert later["summary"]["dead_letters"] == 0

    # The fix: the course is published. Then the two records are replayed, by place.
    published = await http.put(
        f"/api/v1/courses/{course['id']}/update",
        json={"status": "published"},
        headers={**OWNER, "If-Match": f'"{course["version"]}"'},
    )
    assert published.status == 200, await published.text()
    places = [arg for d in letters for arg in ("--place", d["place"])]
    assert _ops(stack_env, "replay", "--topic", DLQ, *places) == {
        "selected": 2,
        "replayed": 2,
        "skipped_replayed_before": 0,
    }

    async def enrolled() -> bool:
        for user in users:
            url = f"/api/v1/courses/{course['id']}/enrollments/{user}"
            if (await http.get(url, headers=ADMIN)).status != 200:
                return False
        return True

    await eventually_async(enrolled, deadline_s=60, what="both students enrolled by the replay")

    # Replaying the same records again sends nothing, and the course still has two seats taken.
    assert _ops(stack_env, "replay", "--topic", DLQ, *places) == {
        "selected": 2,
        "replayed": 0,
        "skipped_replayed_before": 2,
    }
    read = await (await http.get(f"/api/v1/courses/{course['id']}", headers=ADMIN)).json()
    assert read["enrollment_count"] == 2
