"""Demo courses, created through the public API so they take the same path as any write."""

from __future__ import annotations

import json
import urllib.request

from course_management.api.auth import issue_token

_TOPICS = [
    ("Streaming Systems with Kafka", "data", ["kafka", "streaming"], "intermediate"),
    ("Python for Beginners", "programming", ["python"], "beginner"),
    ("Designing HTTP APIs", "programming", ["api", "http"], "intermediate"),
    ("Search Engines in Practice", "data", ["search", "elasticsearch"], "advanced"),
    ("PostgreSQL Internals", "databases", ["postgresql", "sql"], "advanced"),
    ("Intro to Machine Learning", "data", ["ml"], "beginner"),
]


def load_demo_data(
    base_url: str,
    jwt_secret: str,
    count: int,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> int:
    """Creates `count` published demo courses through the API; the tokens carry the
    issuer and audience the service checks (JWT_ISSUER, JWT_AUDIENCE), when it has them."""
    instructors = [("instructor-1", "Ada Instructor"), ("instructor-2", "Linus Teacher")]
    created = 0
    for n in range(count):
        title, category, tags, level = _TOPICS[n % len(_TOPICS)]
        sub, name = instructors[n % len(instructors)]
        token = issue_token(
            jwt_secret,
            sub,
            ["instructor"],
            name=name,
            ttl_seconds=600,
            issuer=issuer,
            audience=audience,
        )
        body = {
            "title": f"{title} #{n + 1}",
            "description": f"A demo course about {', '.join(tags)}.",
            "category": category,
            "tags": tags,
            "level": level,
            "modules": [
                {
                    "title": "Getting started",
                    "position": 0,
                    "items": [
                        {
                            "type": "lesson",
                            "title": "Welcome",
                            "position": 0,
                            "duration_seconds": 300,
                        },
                        {"type": "quiz", "title": "Warm-up quiz", "position": 1, "max_score": 10},
                    ],
                }
            ],
            "status": "published" if n % 4 else "draft",
        }
        request = urllib.request.Request(  # noqa: S310 - the local API
            f"{base_url}/api/v1/courses/create",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"demo-{n}",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            if response.status == 201:
                created += 1
    return created


def published_demo_courses(count: int) -> int:
    return sum(1 for n in range(count) if n % 4)


def catalog_lists(base_url: str, at_least: int) -> bool:
    """True once the catalog lists `at_least` courses (the sinks index them within ~1 s)."""
    url = f"{base_url}/api/v1/courses?limit=100"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the local API
        return len(json.load(response)["items"]) >= at_least
