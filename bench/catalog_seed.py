"""A deterministic catalog of N courses as catalog entries (for the contract tests and the bench).

Entries go straight into a backend's writer (the same functions the sinks call), so a
100,000-course catalog is seeded in seconds instead of through 100,000 commands.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from course_management.catalog.query import catalog_document, catalog_version

CATEGORIES = ("data", "programming", "design", "business", "music", "languages")
LEVELS = ("beginner", "intermediate", "advanced")
LANGUAGES = ("en", "fr", "de", "pt-BR")
INSTRUCTORS = tuple(
    (f"instr-{n}", name)
    for n, name in enumerate(
        (
            "Ada Lovelace",
            "Alan Turing",
            "Grace Hopper",
            "Edsger Dijkstra",
            "Barbara Liskov",
            "Donald Knuth",
            "Margaret Hamilton",
            "Ken Thompson",
            "Frances Allen",
            "John McCarthy",
        )
    )
)
SUBJECTS = (
    "python",
    "statistics",
    "kafka",
    "streaming",
    "typography",
    "marketing",
    "guitar",
    "spanish",
    "databases",
    "algorithms",
    "photography",
    "finance",
    "painting",
    "rust",
    "negotiation",
    "harmony",
    "grammar",
    "security",
    "networks",
    "compilers",
)
WORDS = (
    "practical",
    "complete",
    "modern",
    "hands",
    "introduction",
    "guide",
    "deep",
    "fast",
    "applied",
    "essential",
    "masterclass",
    "fundamentals",
    "projects",
    "bootcamp",
)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def course(n: int, rng: random.Random, namespace: uuid.UUID) -> dict[str, Any]:
    subject = SUBJECTS[n % len(SUBJECTS)]
    other = SUBJECTS[(n * 7 + 3) % len(SUBJECTS)]
    instructor_id, instructor_name = INSTRUCTORS[n % len(INSTRUCTORS)]
    count = rng.choice((0, 0, 1, 3, 10, 25, 120))
    average = round(rng.uniform(1, 5), 2) if count else None
    created = EPOCH + timedelta(minutes=n)
    stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # Published some time after it was drafted, in another order than created.
    published = created + timedelta(minutes=(n * 7919) % 100_000)
    published_stamp = published.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "id": str(uuid.uuid5(namespace, str(n))),
        "title": f"{rng.choice(WORDS).title()} {subject} {n}",
        "description": f"A {rng.choice(WORDS)} course about {other} and {subject}.",
        "category": CATEGORIES[n % len(CATEGORIES)],
        "tags": [subject, rng.choice(WORDS)],
        "level": LEVELS[n % len(LEVELS)],
        "language": LANGUAGES[(n // 3) % len(LANGUAGES)],
        "status": "published",
        "instructor": {"id": instructor_id, "name": instructor_name},
        "capacity": None,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": [],
        "rating": {"average": average, "count": count},
        "enrollment_count": 0,
        "version": 1,
        "created_at": stamp,
        "updated_at": stamp,
        "published_at": published_stamp,
    }


def entry(course_: dict[str, Any], enrollments: int, seq: int = 0) -> dict[str, Any]:
    document = catalog_document({**course_, "enrollment_count": enrollments})
    return {
        "course_id": course_["id"],
        "catalog_version": catalog_version(course_["version"], seq),
        "listed": document["listed"],
        "document": document,
    }


def catalog(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """N published courses as entries; deterministic for a seed."""
    rng = random.Random(seed)
    namespace = uuid.uuid5(uuid.NAMESPACE_OID, f"catalog-seed-{seed}")
    return [entry(course(i, rng, namespace), rng.randrange(0, 500)) for i in range(n)]
