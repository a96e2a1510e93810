"""The checker's part for waitlists and bulk jobs (issue 26), pure: what the milestones,
the enrollment events and the jobs' rows must say whatever the faults.

- The queue of each course, replayed from its `waitlisted` and `waitlist_left`
  milestones in partition order: each joiner's `waitlist_position` is the queue's length
  with them; whoever is promoted or taken off is its head at that moment (first come,
  first served); a promotion has its `enrollment_created`, caused by the same request.
- Each job: every row 1..total has exactly one outcome, the counts are the outcomes',
  and every row `enrolled` has its learner's `enrollment_created` in the course.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

Found = list[tuple[str, str, str]]
TAKEN_FROM_THE_HEAD = ("promoted", "course-not-published", "enrollment-closed",
                       "prerequisites-not-met", "course-not-found")  # fmt: skip


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    kept = []
    for record in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        if record["event_id"] not in seen:
            seen.add(record["event_id"])
            kept.append(record)
    return kept


def check_queues(
    enrollment_events: list[dict[str, Any]], milestones: list[dict[str, Any]]
) -> Found:
    out: Found = []
    created = {
        (e["course_id"], e["user_id"], e.get("request_id"))
        for e in enrollment_events
        if e["event_type"] == "enrollment_created"
    }
    queues: dict[str, list[str]] = defaultdict(list)
    for m in _unique(milestones):
        course, user, kind = m["course_id"], m["user_id"], m["event_type"]
        queue = queues[course]
        if kind == "waitlisted":
            if user in queue:
                out.append(("queued twice", f"{course}:{user}", f"offset {m['offset']}"))
                continue
            queue.append(user)
            if m.get("waitlist_position") != len(queue):
                out.append(
                    (
                        "waitlist position wrong",
                        f"{course}:{user}",
                        f"told {m.get('waitlist_position')}, the queue has {len(queue)}",
                    )
                )
        elif kind == "waitlist_left":
            if user not in queue:
                out.append(("left a queue it was not in", f"{course}:{user}", str(m["reason"])))
                continue
            if m["reason"] in TAKEN_FROM_THE_HEAD and queue[0] != user:
                out.append(
                    (
                        "not first come first served",
                        f"{course}:{user}",
                        f"{m['reason']} at place {queue.index(user) + 1}, {queue[0]} was first",
                    )
                )
            if m["reason"] == "promoted" and (course, user, m.get("request_id")) not in created:
                out.append(("promotion without its enrolment", f"{course}:{user}", m["event_id"]))
            queue.remove(user)
    return out


def check_jobs(jobs: dict[str, dict[str, Any]], enrollment_events: list[dict[str, Any]]) -> Found:
    out: Found = []
    enrolled = {(e["course_id"], e["user_id"]) for e in enrollment_events}
    for job_id, seen in jobs.items():
        job, rows = seen.get("job"), seen.get("rows") or []
        if job is None:
            out.append(("job lost", job_id, "answered 202, then not found"))
            continue
        numbers = [r["row"] for r in rows]
        if job["status"] != "done" or numbers != list(range(1, job["total"] + 1)):
            out.append(
                (
                    "job rows not one outcome each",
                    job_id,
                    f"{job['status']}, {len(numbers)} rows of {job['total']}",
                )
            )
        outcomes = Counter(r["outcome"] for r in rows)
        if {k: v for k, v in job["counts"].items() if v} != dict(outcomes):
            out.append(("job counts differ from its rows", job_id, f"{job['counts']} {outcomes}"))
        for row in rows:
            if row["outcome"] == "enrolled" and (job["course_id"], row["user_id"]) not in enrolled:
                out.append(("job row enrolled without its event", job_id, str(row)))
    return out
