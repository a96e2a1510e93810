"""Every Kafka topic this service touches, its schema, its settings, and the consumer groups
that read them: one place to look.

Topics keyed by course id share one partition count, so a course, its commands, its
events and its table rows live on the same partition number (co-partitioning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

APP_ID = "course-management"

COURSE_COMMANDS = "course-commands"
COURSE_EVENTS = "course-events"
USER_ENROLLED = "user-enrolled"
COURSE_PROGRESS = "course-progress"
ENROLLMENT_EVENTS = "enrollment-events"
LEARNER_MILESTONES = "learner-milestones"  # CONTRACT §5.5: a learner's path, per course

# Internal: user_enrolled / item progress records re-keyed by course id, so that the agent
# owning a course's partition applies them next to the course (co-partitioning).
ENROLLMENT_INPUTS = f"{APP_ID}-enrollment-inputs"
# Each kind of enrollment input and its source topic: the router names a forwarded
# record's kind in the `cms-kind` header (KIND_HEADER), the agent reads its source's schema
# by it (streams/router.py, streams/agent.py).
ENROLLMENT_INPUT_SOURCES = {"user_enrolled": USER_ENROLLED, "item_progress": COURSE_PROGRESS}

# Internal, compacted: the catalog document of each course after every change the catalog
# shows (course, rating, seats), for the search index and the PostgreSQL catalog sinks.
COURSE_CATALOG = f"{APP_ID}-catalog"

# Internal, compacted: each student's rating of a course as it is now, key
# "<course id>:<user id>", for the ratings list in the PostgreSQL mirror.
COURSE_RATINGS = f"{APP_ID}-ratings"

# Internal, compacted: each learner's completed courses, key "<user id>:<course id>", read
# whole by every worker so that an enrolment honours a prerequisite completed on another
# partition (streams/completions.py, decision 57).
COURSE_COMPLETIONS = f"{APP_ID}-completions"

# Internal: a bulk enrolment job's progress after each chunk the agent applied (its counts,
# each row's outcome), key course id, for the job routes' PostgreSQL tables (decision 58).
JOB_PROGRESS = f"{APP_ID}-job-progress"

# The course agent's table (tables/state.py): courses, enrollments, seats, tracking and
# outboxes, one changelog (decision 49).
STATE_TABLE = "course-state"
# A unit (tables/units.py) is one record batch: its changelog takes records this large,
# and the agent cuts its batches long before (streams/agent.py CUT_BYTES).
UNIT_MAX_BYTES = 16 * 1024 * 1024

# Internal, compacted: each webhook subscription as it is now, key its id, read whole by
# every worker; and how far each one's deliveries have got, written by the worker that
# delivers it (decision 63).
WEBHOOKS = f"{APP_ID}-webhooks"
WEBHOOK_POSITIONS = f"{APP_ID}-webhook-positions"

_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema_file: str | None
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None: the service's course partition count

    @property
    def subject(self) -> str:
        return f"{self.name}-value"


DLQ_REPLAYS = f"{APP_ID}-dlq-replays"


def dlq(name: str) -> str:
    return f"{name}.dlq"


def changelog(table: str) -> str:
    """Faust's changelog topic name for a table of this app."""
    return f"{APP_ID}-{table}-changelog"


_FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1"}
_COMPACTED = {"cleanup.policy": "compact"}
# A dead letter is the original record plus its reason: room for a record that was at
# the 1 MiB limit of its own topic.
DLQ_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
_DLQ = {
    "cleanup.policy": "delete",
    "retention.ms": str(4 * _WEEK_MS),
    "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(COURSE_COMMANDS, "course_command.avsc", {"retention.ms": str(_WEEK_MS)}),
    TopicSpec(COURSE_EVENTS, "course_event.avsc", _FOREVER),
    TopicSpec(USER_ENROLLED, "user_enrolled.avsc", _FOREVER),
    TopicSpec(COURSE_PROGRESS, "item_progress.avsc", _FOREVER),
    TopicSpec(ENROLLMENT_EVENTS, "enrollment_event.avsc", _FOREVER),
    TopicSpec(dlq(COURSE_COMMANDS), None, _DLQ),
    TopicSpec(dlq(COURSE_EVENTS), None, _DLQ),
    TopicSpec(dlq(USER_ENROLLED), None, _DLQ),
    TopicSpec(dlq(COURSE_PROGRESS), None, _DLQ),
    TopicSpec(dlq(ENROLLMENT_EVENTS), None, _DLQ),
    TopicSpec(LEARNER_MILESTONES, "learner_milestone.avsc", _FOREVER),
    TopicSpec(dlq(ENROLLMENT_INPUTS), None, _DLQ),
    TopicSpec(ENROLLMENT_INPUTS, None, {"retention.ms": str(_WEEK_MS)}),
    TopicSpec(COURSE_CATALOG, "catalog_entry.avsc", _COMPACTED),
    TopicSpec(dlq(COURSE_CATALOG), None, _DLQ),
    TopicSpec(COURSE_RATINGS, "rating_entry.avsc", _COMPACTED),
    TopicSpec(dlq(COURSE_RATINGS), None, _DLQ),
    TopicSpec(COURSE_COMPLETIONS, "completion_entry.avsc", _COMPACTED),
    TopicSpec(JOB_PROGRESS, "job_progress.avsc", {"retention.ms": str(4 * _WEEK_MS)}),
    TopicSpec(dlq(JOB_PROGRESS), None, _DLQ),
    TopicSpec(WEBHOOKS, "webhook_subscription.avsc", _COMPACTED),
    TopicSpec(WEBHOOK_POSITIONS, "webhook_position.avsc", _COMPACTED),
    TopicSpec(
        changelog(STATE_TABLE),
        None,
        {**_COMPACTED, "max.message.bytes": str(UNIT_MAX_BYTES + 64 * 1024)},
    ),
    # `course-management ops dlq replay`: each dead letter replayed, by its place (so a
    # second replay of the same record changes nothing).
    TopicSpec(DLQ_REPLAYS, None, _COMPACTED, partitions=1),
)

DLQ_TOPICS = tuple(spec.name for spec in TOPICS if spec.name.endswith(".dlq"))

_BY_NAME = {spec.name: spec for spec in TOPICS}


def spec(name: str) -> TopicSpec:
    """The spec of one of this service's topics (its schema subject is `.subject`)."""
    return _BY_NAME[name]


# Consumer groups (plain aiokafka groups; the course agent is Faust's group, APP_ID).
ROUTER_GROUP = f"{APP_ID}-router"  # user-enrolled, course-progress -> enrollment inputs
POSTGRES_GROUP = f"{APP_ID}-sink-postgres"  # events -> mirror; catalog -> catalog table
SEARCH_GROUP = f"{APP_ID}-sink-search"  # catalog -> Elasticsearch index
# Who delivers which webhook subscription: the partitions of WEBHOOKS each worker is
# assigned (streams/webhook_dispatch.py).
WEBHOOK_GROUP = f"{APP_ID}-webhooks"

# Subjects registered without a topic of their own (the per-worker reply topics).
REPLY_SUBJECT = "course-management-replies-value"
REPLY_SCHEMA_FILE = "command_reply.avsc"


REPLY_TOPIC_PREFIX = f"{APP_ID}-replies-"


def reply_topic(worker_id: str) -> str:
    return f"{REPLY_TOPIC_PREFIX}{worker_id}"


def is_reply_topic(name: str) -> bool:
    """Only a worker's reply topic is ever answered (a header names it; anyone can set it)."""
    return name.startswith(REPLY_TOPIC_PREFIX) and len(name) > len(REPLY_TOPIC_PREFIX)


# Headers that carry a request's reply address through the enrollment path.
# The HTTP request's X-Request-ID, on its command or input and on every event that came of
# it (other services' records may carry it too: it is kept as they sent it).
REQUEST_ID_HEADER = "x-request-id"  # CONTRACT §3
REPLY_TO_HEADER = "cms-reply-to"
CORRELATION_HEADER = "cms-correlation-id"
KIND_HEADER = "cms-kind"
SOURCE_KEY_HEADER = "cms-source-key"  # the key the record had on its source topic
# Where the router read it: partition and offset on its source topic (streams/tracking.py).
SOURCE_PARTITION_HEADER = "cms-source-partition"
SOURCE_OFFSET_HEADER = "cms-source-offset"

REPLY_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(3600 * 1000)}
