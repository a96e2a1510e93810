"""The sinks' consumer groups and their handlers, run by the worker (`RUN_SINKS=true`) or
by the sink process (process.py)."""

from __future__ import annotations

from course_management.catalog import elastic, postgres
from course_management.infra.cache import CatalogCache
from course_management.infra.clients import Clients
from course_management.infra.consumer_group import GroupConsumer, Membership
from course_management.infra.database import UNAVAILABLE as PG_UNAVAILABLE
from course_management.sinks.catalog import CatalogSink
from course_management.sinks.mirror import EventMirror
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_EVENTS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    JOB_PROGRESS,
    LEARNER_MILESTONES,
    POSTGRES_GROUP,
    SEARCH_GROUP,
)


def sink_groups(
    bootstrap: str, clients: Clients, catalog_pages: CatalogCache, member: Membership
) -> list[GroupConsumer]:
    """The PostgreSQL group, and the search group when there is a search node."""
    codec, database, search = clients.codec, clients.database, clients.search
    dead_letter = clients.publisher.send_dead_letter
    mirror = EventMirror(codec, database, dead_letter)
    postgres_catalog = CatalogSink(
        "postgres",
        lambda entries: postgres.write_catalog_entries(database.pool, entries),
        PG_UNAVAILABLE,
        codec,
        catalog_pages.invalidate,
        dead_letter,
    )
    groups = [
        GroupConsumer(
            bootstrap,
            POSTGRES_GROUP,
            {
                COURSE_EVENTS: mirror.course_events,
                ENROLLMENT_EVENTS: mirror.enrollment_events,
                LEARNER_MILESTONES: mirror.milestones,
                JOB_PROGRESS: mirror.job_progress,
                COURSE_RATINGS: mirror.ratings,
                COURSE_CATALOG: postgres_catalog,
            },
            dead_letter,
            member,
        )
    ]
    if search is not None:
        search_catalog = CatalogSink(
            "elasticsearch",
            lambda entries: elastic.write_catalog_entries(search, entries),
            (*elastic.UNAVAILABLE, OSError),
            codec,
            catalog_pages.invalidate,
            dead_letter,
        )
        groups.append(
            GroupConsumer(
                bootstrap, SEARCH_GROUP, {COURSE_CATALOG: search_catalog}, dead_letter, member
            )
        )
    return groups
