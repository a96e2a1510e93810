"""Bulk enrolment jobs against the real stack (issue 26, items 2 and 4; CONTRACT §5.2):
JSON and CSV files, per-row outcomes in file order under the rules of a single
enrolment, Idempotency-Key, malformed files refused whole before any row is applied,
and who may start and read a job."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support import ADMIN, OWNER, auth, eventually_async, published_course

CO = auth("co-jobs", "student")


async def start(
    http: aiohttp.ClientSession,
    course_id: str,
    body: Any,
    headers: dict[str, str] | None = None,
    csv: bool = False,
) -> aiohttp.ClientResponse:
    url = f"/api/v1/courses/{course_id}/enrollments/batch"
    sent = {**(OWNER if headers is None else headers)}
    if csv:
        sent["Content-Type"] = "text/csv"
        return await http.post(url, data=body, headers=sent)
    return await http.post(url, json=body, headers=sent)


async def finished(
    http: aiohttp.ClientSession, location: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        answer = await http.get(location, headers=headers or OWNER)
        assert answer.status == 200, await answer.text()
        job: dict[str, Any] = await answer.json()
        return job if job["status"] == "done" else None

    return await eventually_async(done, deadline_s=60, what="the job done")


async def all_rows(
    http: aiohttp.ClientSession, location: str, query: str = "", limit: int = 100
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = f"limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = await http.get(f"{location}/rows?{params}", headers=OWNER)
        assert answer.status == 200, await answer.text()
        page = await answer.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


async def test_a_json_job_applies_its_rows_in_order_with_the_rules_of_an_enrolment(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http, capacity=2, waitlist_capacity=1)
    cid = course["id"]
    ids = ["j-a", "j-b", "", "j-c", "j-d", "j-a", "x\u0001y", "z" * 201]
    answer = await start(http, cid, {"user_ids": ids})
    assert answer.status == 202, await answer.text()
    location = answer.headers["Location"]
    job = await answer.json()
    assert location == f"/api/v1/jobs/{job['id']}" and job["total"] == len(ids)
    done = await finished(http, location)
    assert done["counts"] == {
        "enrolled": 2,
        "already_enrolled": 0,
        "waitlisted": 1,
        "refused": 1,
        "invalid": 4,
    }
    assert done["finished_at"] is not None
    rows = await all_rows(http, location, limit=3)
    assert [(r["row"], r["outcome"], r["problem_type"]) for r in rows] == [
        (1, "enrolled", None),
        (2, "enrolled", None),
        (3, "invalid", "validation"),
        (4, "waitlisted", None),
        (5, "refused", "course-full"),
        (6, "invalid", "validation"),  # repeats row 1
        (7, "invalid", "validation"),
        (8, "invalid", "validation"),
    ]
    assert rows[6]["user_id"] == "x\ufffdy" and len(rows[7]["user_id"]) == 200
    invalid = await all_rows(http, location, "&outcome=invalid")
    assert [r["row"] for r in invalid] == [3, 6, 7, 8]
    shown = await (await http.get(f"/api/v1/courses/{cid}", headers=OWNER)).json()
    assert (shown["enrollment_count"], shown["waitlist_count"]) == (2, 1)


async def test_a_csv_job_with_an_idempotency_key_is_one_job(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http)
    cid = course["id"]
    body = b"email,user_id\na@x,csv-1\nb@x,csv-2\n"
    key = {**OWNER, "Idempotency-Key": f"cohort-{cid}"}
    first = await start(http, cid, body, key, csv=True)
    assert first.status == 202, await first.text()
    again = await start(http, cid, body, key, csv=True)
    assert again.status == 202
    assert again.headers["Location"] == first.headers["Location"]
    done = await finished(http, first.headers["Location"])
    assert done["counts"]["enrolled"] == 2 and sum(done["counts"].values()) == 2
    other = await start(http, cid, b"user_id\nsomeone-else\n", key, csv=True)
    assert other.status == 422
    assert (await other.json())["errors"][0]["field"] == "Idempotency-Key"


async def test_a_malformed_file_is_refused_whole_and_applies_nothing(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http)
    cid = course["id"]
    cases: list[tuple[Any, bool, int, str | None]] = [
        (b"name\nAda\n", True, 422, "user_id"),
        (b"user_id\n\xff\xfe\n", True, 422, "body"),
        (("user_id\n" + "".join(f"m-{n}\n" for n in range(10_001))).encode(), True, 422, None),
        ({"user_ids": [f"m-{n}" for n in range(10_001)]}, False, 422, None),
        ({"user_ids": "m-1"}, False, 422, "user_ids"),
        ({"user_ids": ["m-1", {"id": "m-2"}]}, False, 422, "user_ids[1]"),
        ({"users": ["m-1"]}, False, 422, None),
        (b"user_id\n" + b"m" * (1024 * 1024), True, 413, None),
    ]
    for body, csv, status, field in cases:
        answer = await start(http, cid, body, csv=csv)
        assert answer.status == status, (status, await answer.text())
        problem = await answer.json()
        if field is not None:
            assert problem["errors"][0]["field"] == field, problem
    wrong_type = await http.post(
        f"/api/v1/courses/{cid}/enrollments/batch",
        data=b"m-1",
        headers={**OWNER, "Content-Type": "text/plain"},
    )
    assert wrong_type.status == 415
    shown = await (await http.get(f"/api/v1/courses/{cid}", headers=OWNER)).json()
    assert shown["enrollment_count"] == 0


async def test_who_may_start_and_read_a_job(http: aiohttp.ClientSession) -> None:
    course = await published_course(http, staff=[{"user_id": "co-jobs", "role": "co_instructor"}])
    cid = course["id"]
    body = {"user_ids": ["who-1"]}
    for headers, status in (
        (auth("someone", "student"), 403),
        (auth("another-instructor", "instructor"), 403),
        (auth("ta-jobs", "student"), 403),
        ({}, 401),
    ):
        assert (await start(http, cid, body, headers)).status == status, headers
    mine = await start(http, cid, body, CO)
    assert mine.status == 202, await mine.text()
    location = mine.headers["Location"]
    await finished(http, location, CO)
    assert (await http.get(location, headers=ADMIN)).status == 200
    assert (await http.get(location, headers=OWNER)).status == 404  # not its creator
    assert (await http.get("/api/v1/jobs/not-a-job", headers=ADMIN)).status == 404
    service = await start(http, cid, {"user_ids": ["who-2"]}, auth("svc", "service"))
    assert service.status == 202
