"""What the history implies, against what the topics and the stores hold (pure).

The events are the hinge. Each event carries the `x-request-id` of the attempt that
caused it, so every event is traced to one attempt of the history, and every attempt to
the events it caused. Then:

- history ↔ events: an accepted write has its event (exactly one); a refused or unsent
  one has none; an unknown one has at most one; no event lacks an attempt; a create
  (one `Idempotency-Key`) makes at most one course, an edit at most one version;
- the events alone: each course's versions are 1, 2, 3... in order, each enrollment's
  too; seats never exceed the capacity, after any event; `course_completed` once;
- events ↔ stores: the tables (read through the API), the mirror and the catalog hold
  each course's and each enrollment's last event, and the seat counts;
- history ↔ stores: progress and ratings are what the accepted requests imply.

Events are deduplicated by `event_id` first (delivery is at least once).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.history import Attempt
from chaos.paths import check_paths
from chaos.queues import check_jobs, check_queues
from course_management.domain.commands import derived_id

SEATED = ("active", "completed")
EVENTS_OF = {
    "create": {"course_created"},
    "update": {"course_updated"},
    "enroll": {"enrollment_created"},
    "feed_enroll": {"enrollment_created"},
    "cancel": {"enrollment_cancelled"},
    "progress": {"progress_updated", "course_completed"},
    "feed_progress": {"progress_updated", "course_completed"},
    "rate": {"course_updated"},  # a rating changes the course's rating: a new version
    "feed_malformed": set(),
    "job": {"enrollment_created"},
}
# A seat freed (a cancel, an edit raising the capacity) or an enrolment (when the queue
# was behind) may promote another learner from a waitlist: their `enrollment_created`
# carries that request's id (chaos/queues.py checks each promotion).
PROMOTES = {"cancel", "update", "enroll", "feed_enroll", "job"}
# The event an accepted attempt of this kind must have caused (exactly one); creates are
# checked per Idempotency-Key.
MUST_CAUSE = {
    "enroll": "enrollment_created",  # a 201 (a 200 says "already enrolled")
    "cancel": "enrollment_cancelled",
    "update": "course_updated",
}


@dataclass(frozen=True)
class Anomaly:
    kind: str
    id: str
    detail: str

    def shown(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Observed:
    course_events: list[dict[str, Any]]  # each with request_id, partition, offset
    enrollment_events: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]  # {"topic", "sha256", "event_id"}
    courses: dict[str, dict[str, Any] | None]  # GET through the API (None: 404)
    enrollments: dict[str, dict[str, Any] | None]  # "<course>:<user>" -> GET (None: 404)
    mirror_courses: dict[str, dict[str, Any]]
    mirror_enrollments: dict[str, dict[str, Any]]
    catalog: dict[str, dict[str, Any]]  # the catalog's listing, by course id
    ratings: dict[str, dict[str, int]]  # course -> user -> stars (GET .../ratings)
    ops_check: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # sha256 -> where (diagnosis)
    milestones: list[dict[str, Any]] = field(default_factory=list)  # learner-milestones
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"job", "rows"}


def unique(events: list[dict[str, Any]], what: str, out: list[Anomaly]) -> list[dict[str, Any]]:
    """The events once each (by event_id, first delivery), in partition order; a reused
    event_id with other content is an anomaly."""
    seen: dict[str, dict[str, Any]] = {}
    kept = []
    for event in sorted(events, key=lambda e: (e["partition"], e["offset"])):
        first = seen.get(event["event_id"])
        if first is None:
            seen[event["event_id"]] = event
            kept.append(event)
        elif (first["event_type"], first.get("version")) != (
            event["event_type"],
            event.get("version"),
        ):
            out.append(Anomaly(f"{what} event id reused", event["event_id"], _brief(event)))
    return kept


def verify(attempts: list[Attempt], seen: Observed) -> list[Anomaly]:
    out: list[Anomaly] = []
    course_events = unique(seen.course_events, "course", out)
    enrollment_events = unique(seen.enrollment_events, "enrollment", out)
    _trace(attempts, course_events + enrollment_events, seen.milestones, out)
    _course_versions(course_events, out)
    seats = _enrollments(course_events, enrollment_events, out)
    _course_stores(course_events, seats, seen, out)
    _enrollment_stores(enrollment_events, seen, out)
    _learners(attempts, enrollment_events, seen, out)
    _feed(attempts, enrollment_events, seen, out)
    _ratings(attempts, seen, out)
    found = check_paths(course_events, enrollment_events, seen.milestones)
    found += check_queues(enrollment_events, seen.milestones)
    found += check_jobs(seen.jobs, enrollment_events)
    out += [Anomaly(kind, key, detail) for kind, key, detail in found]
    for difference in seen.ops_check:
        out.append(Anomaly("ops check difference", str(difference.get("id")), str(difference)))
    return out


def _brief(event: dict[str, Any]) -> str:
    keys = ("event_type", "course_id", "user_id", "version", "request_id", "partition", "offset")
    return str({k: event.get(k) for k in keys})


def _own(attempt: Attempt, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the attempt itself: not the promotions from a waitlist that the
    request made room for (another learner's `enrollment_created`; chaos/queues.py)."""
    if attempt.kind == "job":
        return events
    return [
        e
        for e in events
        if not (
            attempt.kind in PROMOTES
            and e["event_type"] == "enrollment_created"
            and e.get("user_id") != attempt.user_id
        )
    ]


def _trace(
    attempts: list[Attempt],
    events: list[dict[str, Any]],
    milestones: list[dict[str, Any]],
    out: list[Anomaly],
) -> None:
    by_request: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        by_request[attempt.request_id].append(attempt)
    caused: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        request_id = event.get("request_id")
        if not request_id or request_id not in by_request:
            out.append(Anomaly("event without a request", event["event_id"], _brief(event)))
            continue
        caused[request_id].append(event)
    left: dict[str, set[str]] = defaultdict(set)  # request -> users who left a queue by it
    for m in milestones:
        if m["event_type"] == "waitlist_left" and m.get("reason") == "cancelled":
            left[str(m.get("request_id"))].add(m["user_id"])
    per_op: dict[str, Counter[str]] = defaultdict(Counter)
    created: set[str] = set()  # the create operations answered 2xx (one key, any attempt)
    for request_id, tries in by_request.items():
        attempt = tries[0]
        events_here = _own(attempt, caused.get(request_id, []))
        types = Counter(e["event_type"] for e in events_here)
        per_op[attempt.op].update(types)
        outcomes = {t.outcome for t in tries}
        unexpected = set(types) - EVENTS_OF[attempt.kind]
        if unexpected:
            out.append(Anomaly("unexpected event", request_id, f"{attempt.kind}: {unexpected}"))
        if events_here and outcomes <= {"refused", "not_sent"}:
            out.append(
                Anomaly(
                    "event for a write not applied",
                    request_id,
                    f"{attempt.kind} answered {[t.status for t in tries]}: {types}",
                )
            )
        per_user = Counter((e["event_type"], e.get("user_id")) for e in events_here)
        for (kind, user), n in per_user.items():
            if n > 1:
                out.append(
                    Anomaly("applied twice", request_id, f"{attempt.kind}: {n} x {kind} ({user})")
                )
        if "ok" in outcomes and attempt.kind == "create":
            created.add(attempt.op)
        elif "ok" in outcomes:
            if attempt.kind == "cancel" and attempt.user_id in left.get(request_id, set()):
                continue  # it took a waiting learner off the queue: no enrolment event
            _accepted_has_its_event(attempt, events_here, out)
    for op, types in per_op.items():
        if op.startswith("feed"):
            continue
        for kind in ("course_created", "course_updated"):
            if types[kind] > 1:
                out.append(Anomaly("operation applied twice", op, f"{types[kind]} x {kind}"))
    for op in created:  # an idempotent repeat is traced to the attempt that made it
        if per_op[op]["course_created"] != 1:
            n = per_op[op]["course_created"]
            out.append(Anomaly("accepted write without its event", op, f"create: {n} courses"))


def _accepted_has_its_event(
    attempt: Attempt, events: list[dict[str, Any]], out: list[Anomaly]
) -> None:
    """An accepted enrolment (201, not "already enrolled" nor "waitlisted"), cancel or
    edit caused its event, exactly one; an edit's has the version it answered."""
    wanted = MUST_CAUSE.get(attempt.kind)
    if wanted is None or (attempt.kind == "enroll" and attempt.status != 201):
        return
    if attempt.kind == "enroll" and attempt.answer.get("status") == "waitlisted":
        return
    mine = [e for e in events if e["event_type"] == wanted]
    if len(mine) != 1:
        out.append(
            Anomaly(
                "accepted write without its event",
                attempt.request_id,
                f"{attempt.kind} {attempt.status} on {attempt.course_id}: {len(mine)} x {wanted}",
            )
        )
        return
    version = attempt.answer.get("version")
    if attempt.kind == "update" and version is not None and mine[0].get("version") != version:
        out.append(
            Anomaly(
                "answered version differs from the event's",
                attempt.request_id,
                f"answered {version}, event {mine[0].get('version')}",
            )
        )


def _course_versions(events: list[dict[str, Any]], out: list[Anomaly]) -> None:
    by_course: dict[str, list[int]] = defaultdict(list)
    for event in events:
        by_course[event["course_id"]].append(int(event["version"]))
    for course_id, versions in by_course.items():
        if versions != list(range(1, len(versions) + 1)):
            out.append(Anomaly("course versions not contiguous", course_id, str(versions)))


def _enrollments(
    course_events: list[dict[str, Any]],
    enrollment_events: list[dict[str, Any]],
    out: list[Anomaly],
) -> dict[str, int]:
    """Seats after every event never above the capacity; versions contiguous; one
    completion. Returns each course's seats taken at the end."""
    capacity: dict[str, int | None] = {}
    for event in course_events:
        if event.get("course"):
            capacity[event["course_id"]] = event["course"].get("capacity")
    status: dict[tuple[str, str], str] = {}
    versions: dict[tuple[str, str], list[int]] = defaultdict(list)
    completions: Counter[tuple[str, str]] = Counter()
    seats: Counter[str] = Counter()
    for event in enrollment_events:
        key = (event["course_id"], event["user_id"])
        versions[key].append(int(event["version"]))
        if event["event_type"] == "course_completed":
            completions[key] += 1
        new = event["enrollment"]["status"]
        seats[key[0]] += (new in SEATED) - (status.get(key) in SEATED)
        status[key] = new
        limit = capacity.get(key[0])
        if limit is not None and seats[key[0]] > limit:
            out.append(
                Anomaly(
                    "capacity exceeded",
                    key[0],
                    f"{seats[key[0]]} seats of {limit} after {_brief(event)}",
                )
            )
    for key, seen in versions.items():
        if seen != list(range(1, len(seen) + 1)):
            out.append(Anomaly("enrollment versions not contiguous", ":".join(key), str(seen)))
    for key, n in completions.items():
        if n > 1:
            out.append(Anomaly("course completed twice", ":".join(key), f"{n} x course_completed"))
    return dict(seats)


def _course_stores(
    events: list[dict[str, Any]], seats: dict[str, int], seen: Observed, out: list[Anomaly]
) -> None:
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        last[event["course_id"]] = event
    for course_id, event in last.items():
        version = int(event["version"])
        table = seen.courses.get(course_id)
        if table is None or table.get("version") != version:
            found = table and table.get("version")
            out.append(Anomaly("tables behind the events", course_id, f"{found} != {version}"))
        elif table.get("enrollment_count") != seats.get(course_id, 0):
            out.append(
                Anomaly(
                    "enrollment_count differs",
                    course_id,
                    f"tables {table.get('enrollment_count')}, events {seats.get(course_id, 0)}",
                )
            )
        mirror = seen.mirror_courses.get(course_id)
        if mirror is None or mirror.get("version") != version:
            found = mirror and mirror.get("version")
            out.append(Anomaly("mirror behind the events", course_id, f"{found} != {version}"))
        listed = seen.catalog.get(course_id)
        if event["course"] and event["course"]["status"] == "published":
            if listed is None:
                out.append(Anomaly("missing from the catalog", course_id, f"version {version}"))
            elif (
                listed.get("version"),
                listed.get("enrollment_count"),
                listed.get("rating"),
            ) != (version, seats.get(course_id, 0), (table or {}).get("rating")):
                out.append(
                    Anomaly(
                        "catalog differs",
                        course_id,
                        f"catalog {listed.get('version')}/{listed.get('enrollment_count')}/"
                        f"{listed.get('rating')}, events {version}/{seats.get(course_id, 0)}, "
                        f"tables' rating {(table or {}).get('rating')}",
                    )
                )


def _last_enrollments(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        last[f"{event['course_id']}:{event['user_id']}"] = event
    return last


def _enrollment_stores(events: list[dict[str, Any]], seen: Observed, out: list[Anomaly]) -> None:
    for key, event in _last_enrollments(events).items():
        snapshot = event["enrollment"]
        expected = (snapshot["status"], snapshot["progress"]["completed_items"])
        table = seen.enrollments.get(key)
        if snapshot["status"] == "cancelled":
            if table is not None and table.get("status") != "cancelled":
                out.append(Anomaly("tables differ from the events", key, f"{table} != cancelled"))
        else:
            found = table and (table["status"], table["progress"]["completed_items"])
            if found != expected:
                out.append(Anomaly("tables differ from the events", key, f"{found} != {expected}"))
        mirror = seen.mirror_enrollments.get(key)
        wanted = (snapshot["status"], int(event["version"]), expected[1])
        got = mirror and (mirror["status"], mirror["version"], mirror["completed_items"])
        if got != wanted:
            out.append(Anomaly("mirror differs from the events", key, f"{got} != {wanted}"))


def _learners(
    attempts: list[Attempt],
    events: list[dict[str, Any]],
    seen: Observed,
    out: list[Anomaly],
) -> None:
    """The API's learners: the last accepted enrol or cancel, and accepted progress."""
    last = _last_enrollments(events)
    reports: dict[str, set[str]] = defaultdict(set)  # items someone said were completed
    for attempt in attempts:
        reporting = attempt.kind in ("progress", "feed_progress") and attempt.outcome != "not_sent"
        if reporting and attempt.args.get("status") == "completed":
            reports[f"{attempt.course_id}:{attempt.user_id}"].add(attempt.args["item_id"])
    by_learner: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in sorted(attempts, key=lambda a: a.sent_at):
        if attempt.kind in ("enroll", "cancel", "progress") and attempt.user_id:
            by_learner[f"{attempt.course_id}:{attempt.user_id}"].append(attempt)
    for key, tries in by_learner.items():
        status = last[key]["enrollment"]["status"] if key in last else None
        changes = [a for a in tries if a.kind in ("enroll", "cancel")]
        settled = _settled(changes)
        if settled is not None and settled.answer.get("status") == "waitlisted":
            settled = None  # the learner waits: promoted since, or not (chaos/queues.py)
        if settled is not None:
            # a cancel that took a waiting learner off the queue changes no event
            wanted = ("cancelled", None) if settled.kind == "cancel" else SEATED
            if status not in wanted:
                out.append(
                    Anomaly(
                        "enrollment status differs from the history",
                        key,
                        f"last accepted {settled.kind} {settled.request_id}; events say {status}",
                    )
                )
        table = seen.enrollments.get(key)
        if table is None:  # cancelled at the end: its progress is not shown
            continue
        items = {i["item_id"]: i["status"] for i in table["progress"]["items"]}
        reported = reports.get(key, set())
        for item, state in items.items():
            if state == "completed" and item not in reported:
                out.append(Anomaly("progress no request reported", key, f"{item} completed"))
        for attempt in tries:
            if attempt.kind != "progress" or attempt.outcome != "ok":
                continue
            item, reported = attempt.args["item_id"], attempt.args["status"]
            allowed = ("completed",) if reported == "completed" else ("started", "completed")
            if items.get(item) not in allowed:
                out.append(
                    Anomaly(
                        "accepted progress missing",
                        key,
                        f"{attempt.request_id}: {item} {reported}, tables say {items.get(item)}",
                    )
                )


def _settled(changes: list[Attempt]) -> Attempt | None:
    """The last accepted enrol or cancel, if no attempt after it is left unknown."""
    for n in range(len(changes) - 1, -1, -1):
        if changes[n].outcome == "ok":
            later = changes[n + 1 :]
            if any(a.outcome == "unknown" for a in later):
                return None
            return changes[n]
    return None


def _feed(
    attempts: list[Attempt], events: list[dict[str, Any]], seen: Observed, out: list[Anomaly]
) -> None:
    """Each record other services sent: it took effect, or it is dead-lettered."""
    created = {e["event_id"] for e in events if e["event_type"] == "enrollment_created"}
    enrolled = {(e["course_id"], e["user_id"]) for e in events}
    enrolled |= {  # queued for a full course: a milestone, no enrolment event
        (m["course_id"], m["user_id"]) for m in seen.milestones if m["event_type"] == "waitlisted"
    }
    dead_ids = {d["event_id"] for d in seen.dead_letters if d.get("event_id")}
    dead_bytes = {d["sha256"] for d in seen.dead_letters}
    for attempt in attempts:
        if attempt.outcome != "ok" or attempt.args.get("duplicate"):
            continue
        if attempt.kind == "feed_malformed":
            if attempt.args["sha256"] not in dead_bytes:
                out.append(
                    Anomaly(
                        "malformed record not dead-lettered",
                        attempt.request_id,
                        f"{attempt.args['malformed']} on {attempt.args['topic']}",
                    )
                )
        elif attempt.kind == "feed_enroll":
            event_id = attempt.args["event_id"]
            if (
                derived_id(event_id, "enrollment_created") not in created
                and event_id not in dead_ids
                and (attempt.course_id, attempt.user_id) not in enrolled
            ):
                places = seen.inputs.get(attempt.args.get("sha256", ""), [])
                out.append(
                    Anomaly(
                        "user_enrolled record lost",
                        attempt.request_id,
                        f"{attempt.user_id} in {attempt.course_id}: no event, no dead letter; "
                        f"the record is at {places or 'no place read'}",
                    )
                )


def _ratings(attempts: list[Attempt], seen: Observed, out: list[Anomaly]) -> None:
    """Each learner's stars are their last accepted rating (or one left unknown), and the
    course's rating is the aggregate of the listed ones."""
    by_learner: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    for attempt in sorted(attempts, key=lambda a: a.sent_at):
        if attempt.kind == "rate" and attempt.course_id and attempt.user_id:
            by_learner[(attempt.course_id, attempt.user_id)].append(attempt)
    for (course_id, user), tries in by_learner.items():
        accepted = [a for a in tries if a.outcome == "ok"]
        unknown = {a.args["stars"] for a in tries if a.outcome == "unknown"}
        allowed = unknown | ({accepted[-1].args["stars"]} if accepted else {None})
        found = seen.ratings.get(course_id, {}).get(user)
        if found not in allowed:
            out.append(
                Anomaly(
                    "rating differs from the history",
                    f"{course_id}:{user}",
                    f"stars {found}, the history allows {sorted(allowed, key=str)}",
                )
            )
    for course_id, stars in seen.ratings.items():
        table = seen.courses.get(course_id) or {}
        rating = table.get("rating") or {}
        count = len(stars)
        average = sum(stars.values()) / count if count else None
        if rating.get("count") != count or (
            average is not None
            and (rating.get("average") is None or abs(rating["average"] - average) > 0.01)
        ):
            out.append(
                Anomaly(
                    "course rating differs from its ratings",
                    course_id,
                    f"course says {rating}, the {count} ratings average {average}",
                )
            )
