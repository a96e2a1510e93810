"""The faults of a run and when they happen, drawn from the seed alone (pure).

The same seed and profile always give the same schedule. Kills are spaced over the
fault window and only ever hit a worker that the schedule has up at that moment, and
never the last one up; the server outages (broker, PostgreSQL, Elasticsearch, Redis)
each get their own slot, so two never overlap.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

RECOVERY_S = 15.0  # a stopped server is started again within this (Elasticsearch is slowest)

KINDS = (
    "sigkill",
    "sigterm",
    "join",
    "broker-restart",
    "postgresql-stop",
    "elasticsearch-stop",
    "redis-stop",
)


@dataclass(frozen=True)
class Profile:
    duration_s: float  # how long the load and the faults last
    workers: int  # workers at the start (one more joins mid-run)
    kills: int
    sigterms: int
    postgresql_hold_s: float
    elasticsearch_hold_s: float
    redis_hold_s: float
    warmup_s: float = 12.0  # load without faults first
    cooldown_s: float = 10.0  # no fault starts this close to the end


PROFILES = {
    "full": Profile(
        duration_s=240,
        workers=2,
        kills=12,
        sigterms=2,
        postgresql_hold_s=30,
        elasticsearch_hold_s=20,
        redis_hold_s=4,
    ),
    "short": Profile(
        duration_s=120,
        workers=2,
        kills=4,
        sigterms=1,
        postgresql_hold_s=10,
        elasticsearch_hold_s=5,
        redis_hold_s=2,
    ),
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the start of the load
    kind: str  # one of KINDS
    target: str  # a worker's name, or a server's
    hold_s: float = 0.0  # down for this long before the restart

    def shown(self) -> dict[str, Any]:
        return asdict(self)


def worker_names(count: int) -> list[str]:
    return [f"worker-{n}" for n in range(1, count + 1)]


def make_schedule(seed: int, profile: Profile, duration_s: float | None = None) -> list[Fault]:
    """Every fault of the run, in time order."""
    rng = random.Random(f"chaos-schedule:{seed}")
    duration = duration_s or profile.duration_s
    start, end = profile.warmup_s, duration - profile.cooldown_s
    if end - start < 20:
        raise ValueError(f"a run of {duration:.0f}s leaves no room for faults")
    span = end - start
    faults: list[Fault] = []

    # The servers: four slots, one outage each, in an order drawn from the seed.
    outages = [
        ("broker-restart", "kafka", 0.0),
        ("postgresql-stop", "postgresql", profile.postgresql_hold_s),
        ("elasticsearch-stop", "elasticsearch", profile.elasticsearch_hold_s),
        ("redis-stop", "redis", profile.redis_hold_s),
    ]
    rng.shuffle(outages)
    slot = span / len(outages)
    free_at = start  # each outage starts once the one before is over and its server back
    for n, (kind, target, hold) in enumerate(outages):
        room = max(0.0, slot - hold - RECOVERY_S)
        at = round(max(free_at, start + n * slot + rng.uniform(0, room)), 2)
        faults.append(Fault(at, kind, target, hold))
        free_at = at + hold + RECOVERY_S
    if free_at > duration:
        raise ValueError(f"a run of {duration:.0f}s leaves no room for the server outages")

    # A new worker joins a third of the way in.
    first = worker_names(profile.workers)
    joiner = f"worker-{profile.workers + 1}"
    join_at = round(start + span * rng.uniform(0.25, 0.4), 2)
    faults.append(Fault(join_at, "join", joiner))

    # Kills and terminations, evenly spread, each on a worker that is up by the plan.
    process_faults = ["sigkill"] * profile.kills + ["sigterm"] * profile.sigterms
    rng.shuffle(process_faults)
    gap = span / len(process_faults)
    down_until: dict[str, float] = {}
    for n, kind in enumerate(process_faults):
        at = round(start + n * gap + rng.uniform(0, gap * 0.6), 2)
        while True:  # never the last worker up: later, until two are
            present = first + ([joiner] if at > join_at + 15 else [])
            up = [w for w in present if down_until.get(w, 0.0) <= at]
            if len(up) >= 2:
                break
            at = round(min(t for t in down_until.values() if t > at) + 0.5, 2)
        if at > end:
            break
        target = rng.choice(up)
        hold = round(rng.uniform(0.5, 4.0), 2)
        down_until[target] = at + hold + 8  # back, and given time to start again
        faults.append(Fault(at, kind, target, hold))
    return sorted(faults, key=lambda f: (f.at, f.kind, f.target))


def counts(faults: list[Fault]) -> dict[str, int]:
    return {kind: sum(1 for f in faults if f.kind == kind) for kind in KINDS}
