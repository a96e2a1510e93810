"""How far a webhook subscription's deliveries have got (decision 63). Pure.

A course's records share one partition number in `course-events`, `enrollment-events`
and `learner-milestones` (all keyed by the course id). A subscription's position is, for
each partition number it reads (its course's one, or all of them), the next offset to
read in each of the three topics, in that order: `<partition>:<o1>.<o2>.<o3>` joined by
commas. Deliveries are at least once: the position only ever names events delivered (or
given up), so a restart from it repeats at most what was after it.
"""

from __future__ import annotations

from collections.abc import Mapping

TOPICS = 3  # course-events, enrollment-events, learner-milestones

Offsets = tuple[int, ...]


class BadPosition(ValueError):
    """Not a position this service wrote."""


def encode(position: Mapping[int, Offsets]) -> str:
    return ",".join(f"{p}:{'.'.join(map(str, position[p]))}" for p in sorted(position))


def decode(raw: str) -> dict[int, Offsets]:
    found: dict[int, Offsets] = {}
    for part in filter(None, raw.split(",")):
        partition, sep, offsets = part.partition(":")
        numbers = offsets.split(".")
        if not sep or not partition.isdigit() or len(numbers) != TOPICS:
            raise BadPosition(f"not a delivery position: {raw!r}")
        if not all(n.isdigit() for n in numbers):
            raise BadPosition(f"not a delivery position: {raw!r}")
        found[int(partition)] = tuple(int(n) for n in numbers)
    return found


def earliest(a: Mapping[int, Offsets], b: Mapping[int, Offsets]) -> dict[int, Offsets]:
    """For each partition and topic, the lower of the two (a replay never skips what was
    still to deliver); a partition only one of them names keeps its offsets."""
    merged = dict(a)
    for partition, offsets in b.items():
        mine = merged.get(partition)
        merged[partition] = (
            offsets
            if mine is None
            else tuple(min(x, y) for x, y in zip(mine, offsets, strict=True))
        )
    return merged


def pending(position: Mapping[int, Offsets], ends: Mapping[int, Offsets]) -> int:
    """Records of its partitions past the position: an upper bound on the events still to
    deliver (records of other courses and types on them are passed over, not sent)."""
    return sum(
        max(0, end - at)
        for partition, offsets in ends.items()
        for at, end in zip(position.get(partition, offsets), offsets, strict=True)
    )


def claim(epoch: int, owner: str | None) -> tuple[int, str]:
    """How two position records of a subscription rank (decision 63): the later epoch,
    and between equal epochs (two workers that started from the same record) the
    greater owner id; the lower one is a fenced owner's. Records from before epochs
    rank lowest."""
    return (epoch, owner or "")
