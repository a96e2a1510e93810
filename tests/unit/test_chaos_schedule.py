"""The chaos run's schedule is drawn from the seed alone, and has what issue 15 asks."""

from __future__ import annotations

import itertools

import pytest

from chaos.schedule import KINDS, PROFILES, RECOVERY_S, counts, make_schedule


@pytest.mark.parametrize("seed", [1, 2, 3, 99, 12345])
def test_the_same_seed_gives_the_same_schedule_and_another_seed_another(seed: int) -> None:
    first = make_schedule(seed, PROFILES["full"])
    assert first == make_schedule(seed, PROFILES["full"])
    assert first != make_schedule(seed + 1, PROFILES["full"])


@pytest.mark.parametrize("seed", range(1, 40))
def test_the_full_run_has_every_fault_and_at_least_ten_kills(seed: int) -> None:
    profile = PROFILES["full"]
    faults = make_schedule(seed, profile)
    n = counts(faults)
    assert n["sigkill"] >= 10
    assert all(n[kind] >= 1 for kind in KINDS), n
    assert all(profile.warmup_s <= f.at <= profile.duration_s - profile.cooldown_s for f in faults)


@pytest.mark.parametrize("name", ["full", "short"])
@pytest.mark.parametrize("seed", range(1, 40))
def test_server_outages_never_overlap_and_a_worker_is_always_up(name: str, seed: int) -> None:
    profile = PROFILES[name]
    faults = make_schedule(seed, profile)
    outages = sorted(
        (f.at, f.at + f.hold_s + RECOVERY_S)
        for f in faults
        if f.kind.endswith(("-stop", "-restart"))
    )
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(outages)), outages
    joined = next(f.at for f in faults if f.kind == "join")
    down: dict[str, float] = {}
    for fault in (f for f in faults if f.kind in ("sigkill", "sigterm")):
        present = profile.workers + (1 if fault.at > joined + 15 else 0)
        up = [w for w in range(1, present + 1) if down.get(f"worker-{w}", 0) <= fault.at]
        assert f"worker-{fault.target.split('-')[1]}" in [f"worker-{w}" for w in up]
        assert len(up) >= 2, "the last worker up is never the target"
        down[fault.target] = fault.at + fault.hold_s + 8


def test_a_run_too_short_for_faults_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        make_schedule(1, PROFILES["short"], duration_s=40)
