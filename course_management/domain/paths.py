"""Learning paths (CONTRACT §5.1): which modules and items a learner may work on, and what
each requirement asks (what a course's path may say: domain/path_rules.py). Pure: no I/O,
no clock (the caller passes `now`).

A path is derived, never stored: a learner's state is a function of the course as it is
now, their `enrolled_at`, their item states and the moment. Two rules keep a learner's
work from being taken back when an instructor changes the path (decision 55):

- an item the learner has reported on never locks, and an item whose requirement is met
  stays met;
- a module the learner has started (a report on any of its items) or completed never
  locks, from that report's moment on (a report dated before a time lock stays locked
  whatever came after it: decision 66). A module they have not started follows the
  rules as they are now: it can lock again. Its `module_unlocked` milestone is still
  published once per learner and module, ever (the enrolment record's `opened`
  remembers which were sent).

A module is *locked by its rules* while one of its prerequisite modules is not completed,
or before its `unlock_at`, or before `enrolled_at + unlock_after_days`. In a `sequential`
module an item unlocks when every item before it in the module has its requirement met.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from course_management.domain.times import parse_rfc3339, rfc3339

COMPLETE, VIEW, MIN_SCORE = "complete", "view", "min_score"
REQUIREMENTS = (COMPLETE, VIEW, MIN_SCORE)
DEFAULT_COMPLETION: dict[str, Any] = {"type": COMPLETE}
SCORED_TYPES = ("quiz", "assignment")

Item = Mapping[str, Any]
ItemStates = Mapping[str, Mapping[str, Any]]  # item id -> the learner's state of it


# -- requirements ---------------------------------------------------------------------------


def completion_of(item: Item) -> Mapping[str, Any]:
    return item.get("completion") or DEFAULT_COMPLETION


def reported(state: Mapping[str, Any] | None) -> bool:
    return bool(state and state.get("status") in ("started", "completed", "failed"))


def requirement_met(item: Item, state: Mapping[str, Any] | None) -> bool:
    """`view`: any report; `complete`: a `completed` report; `min_score`: a `completed`
    report scoring at least `min_score`. Judged against the rules as they are now, from
    what the reports were (so relaxing a rule meets it), except that a completion stays
    met whatever the rules say later (status `completed`)."""
    if not state:
        return False
    completion = completion_of(item)
    kind = completion.get("type")
    if kind == VIEW:
        return reported(state)
    if kind == MIN_SCORE:
        best = state.get("best_completed")
        return state.get("status") == "completed" or (
            best is not None and best >= float(completion["min_score"])
        )
    return state.get("status") in ("completed", "failed")


def report_status(item: Item, reported_status: str, score: float | None) -> str:
    """The status one report leaves an item in: a `completed` report on a `min_score`
    item completes it only if its own score reaches `min_score`; else it is `failed`."""
    completion = completion_of(item)
    if reported_status != "completed" or completion.get("type") != MIN_SCORE:
        return reported_status
    if score is not None and score >= float(completion["min_score"]):
        return "completed"
    return "failed"


def item_of(course: Mapping[str, Any], item_id: str) -> dict[str, Any] | None:
    return next(
        (item for module in course["modules"] for item in module["items"] if item["id"] == item_id),
        None,
    )


def module_of(course: Mapping[str, Any], item_id: str) -> str | None:
    """The id of the module holding `item_id` (None: no such item)."""
    return next(
        (m["id"] for m in course["modules"] for item in m["items"] if item["id"] == item_id),
        None,
    )


def score_error(item: dict[str, Any], score: float | None) -> str | None:
    """Why a report's score does not fit its item (None: it does): a lesson takes none; a
    quiz's or assignment's is 0..max_score."""
    if score is None:
        return None
    if item.get("type") == "lesson" or item.get("max_score") is None:
        return "a lesson takes no score"
    if not 0 <= score <= float(item["max_score"]):
        return f"must be 0..{item['max_score']:g} (the item's max_score)"
    return None


# -- a learner's path -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModulePath:
    module_id: str
    state: str  # locked | unlocked | started | completed
    unlocks_at: str | None  # when its time lock opens for this learner (None: none applies)


@dataclass(frozen=True)
class PathState:
    modules: tuple[ModulePath, ...]
    locked: frozenset[str]  # item ids the learner may not report on now
    met: frozenset[str]  # item ids whose requirement is met
    next_item_id: str | None  # the first unlocked item whose requirement is not met
    total: int  # items in the course

    @property
    def percent(self) -> float:
        return round(100.0 * len(self.met) / self.total, 2) if self.total else 0.0

    @property
    def completed(self) -> bool:
        """Every item's requirement is met (a course without items is never completed)."""
        return self.total > 0 and len(self.met) == self.total

    def module(self, module_id: str) -> ModulePath | None:
        return next((m for m in self.modules if m.module_id == module_id), None)


def unlocks_at(module: Mapping[str, Any], enrolled_at: datetime) -> datetime | None:
    """The moment the module's time locks open for a learner enrolled at `enrolled_at`."""
    moments = []
    if module.get("unlock_at"):
        moments.append(_parse(module["unlock_at"]))
    if module.get("unlock_after_days") is not None:
        moments.append(enrolled_at + timedelta(days=int(module["unlock_after_days"])))
    return max(moments) if moments else None


def path_state(
    course: Mapping[str, Any], enrolled_at: str, items: ItemStates, now: datetime
) -> PathState:
    """The learner's path through `course` at `now` (see the module's docstring)."""
    enrolled = _parse(enrolled_at)
    modules = course.get("modules", [])
    completed_modules = _completed_modules(modules, items, enrolled, now)
    paths: list[ModulePath] = []
    locked: set[str] = set()
    met: set[str] = set()
    next_item: str | None = None
    total = 0
    for module in modules:
        states = [items.get(i["id"]) for i in module["items"]]
        moment = unlocks_at(module, enrolled)
        if module["id"] in completed_modules:
            state = "completed"
        elif any(reported(s) for s in states):
            state = "started"
        elif _locked_by_rules(module, completed_modules, moment, now):
            state = "locked"
        else:
            state = "unlocked"
        paths.append(ModulePath(module["id"], state, rfc3339(moment) if moment else None))
        blocked = state == "locked"
        for item, item_state in zip(module["items"], states, strict=True):
            total += 1
            is_met = requirement_met(item, item_state)
            if is_met:
                met.add(item["id"])
            if blocked and not reported(item_state) and not is_met:
                locked.add(item["id"])
            elif next_item is None and not is_met:
                next_item = item["id"]
            if module.get("sequential") and not is_met:
                blocked = True  # the items after it wait for this one
    return PathState(tuple(paths), frozenset(locked), frozenset(met), next_item, total)


def _completed_modules(
    modules: list[Mapping[str, Any]], items: ItemStates, enrolled: datetime, now: datetime
) -> set[str]:
    """Modules whose every item has its requirement met; a module without items is
    completed once its own rules let it open (so it holds back what requires it no longer
    than its own locks do). A fixpoint: completing one module may open an empty one."""
    done = {
        m["id"]
        for m in modules
        if m["items"] and all(requirement_met(i, items.get(i["id"])) for i in m["items"])
    }
    while True:
        more = {
            m["id"]
            for m in modules
            if not m["items"]
            and m["id"] not in done
            and not _locked_by_rules(m, done, unlocks_at(m, enrolled), now)
        }
        if not more:
            return done
        done |= more


def _locked_by_rules(
    module: Mapping[str, Any], completed: Collection[str], moment: datetime | None, now: datetime
) -> bool:
    if any(p not in completed for p in module.get("prerequisite_module_ids") or ()):
        return True
    return moment is not None and now < moment


def lock_reason(
    course: Mapping[str, Any], enrolled_at: str, items: ItemStates, now: datetime, item_id: str
) -> str | None:
    """Why the item is locked for the learner now (None: it is not): what it waits for."""
    path = path_state(course, enrolled_at, items, now)
    if item_id not in path.locked:
        return None
    enrolled = _parse(enrolled_at)
    for module in course.get("modules", []):
        ids = [i["id"] for i in module["items"]]
        if item_id not in ids:
            continue
        done = {m.module_id for m in path.modules if m.state == "completed"}
        waiting = [p for p in module.get("prerequisite_module_ids") or () if p not in done]
        if waiting and path.module(module["id"]) and _state(path, module["id"]) == "locked":
            return f"waits for module {', '.join(waiting)} to be completed"
        moment = unlocks_at(module, enrolled)
        if _state(path, module["id"]) == "locked" and moment is not None and now < moment:
            return f"waits until {rfc3339(moment)}"
        before = ids[: ids.index(item_id)]
        pending = [i for i in before if i not in path.met]
        if pending:
            return f"waits for item {pending[0]} to have its requirement met"
    return "locked"


def time_lock_before(
    course: Mapping[str, Any], enrolled_at: str, items: ItemStates, now: datetime, item_id: str
) -> datetime | None:
    """The time lock a report at `now` on `item_id` came before, if the learner had not
    started its module by then (None: no time lock binds it). A started module never
    locks (decision 55), but only from its first report on: a report dated before the
    module's moment, arriving after a later report started the module (a late or
    repeated record), is as locked as it was at its moment (decision 66)."""
    enrolled = _parse(enrolled_at)
    for module in course.get("modules", []):
        ids = [i["id"] for i in module["items"]]
        if item_id not in ids:
            continue
        moment = unlocks_at(module, enrolled)
        if moment is None or now >= moment:
            return None
        started = [first_reported_at(items.get(i)) for i in ids]
        if any(first is not None and first <= now for first in started):
            return None
        return moment
    return None


def first_reported_at(state: Mapping[str, Any] | None) -> datetime | None:
    """When the learner first reported on the item; a state kept from before `first_at`
    counts as reported long ago (the rule as it was before decision 66)."""
    if not reported(state):
        return None
    assert state is not None
    first = state.get("first_at")
    return _parse(first) if first else datetime.min.replace(tzinfo=UTC)


def _state(path: PathState, module_id: str) -> str | None:
    found = path.module(module_id)
    return None if found is None else found.state


def newly_unlocked(before: PathState, after: PathState, sent: Collection[str]) -> list[str]:
    """Modules locked in `before` and open in `after` whose milestone was never sent."""
    was_locked = {m.module_id for m in before.modules if m.state == "locked"}
    return [
        m.module_id
        for m in after.modules
        if m.module_id in was_locked and m.state != "locked" and m.module_id not in sent
    ]


def _parse(ts: str) -> datetime:
    return parse_rfc3339(ts)
