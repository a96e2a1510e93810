"""Prometheus metrics of the service (exposed on GET /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "cms_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "cms_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMANDS_APPLIED = Counter(
    "cms_commands_applied_total", "Commands that changed a table", ["command_type"]
)
EVENTS_PUBLISHED = Counter("cms_events_published_total", "Records published", ["topic"])
EVENTS_MIRRORED = Counter(
    "cms_events_mirrored_total", "Events handled by the PostgreSQL sink", ["entity", "outcome"]
)
INPUTS_SKIPPED = Counter(
    "cms_inputs_skipped_total",
    "Course agent inputs not decided: `replayed` (a second forward of a source record "
    "applied already), `repeat` (applied already: after a crash or a rewind), `ahead` "
    "(records before it were skipped by the consumer: it comes again after the rewind)",
    ["topic", "reason"],
)
RATE_LIMITED = Counter(
    "cms_rate_limited_total",
    "Requests refused by a rate limit (`refused`), or taken without one while Redis was "
    "unreachable (`unavailable`: reads go on, writes answer 503)",
    ["budget", "outcome"],
)
DEAD_LETTERS = Counter(
    "cms_dead_letters_total", "Records sent to a dead-letter topic", ["topic", "reason"]
)
READY = Gauge("cms_ready", "1 when the worker is ready to serve")
CACHE_READS = Counter("cms_course_reads_total", "Course point reads by source", ["source"])
REPLIES_DROPPED = Counter(
    "cms_replies_dropped_total", "Agent replies not sent: the asking worker's topic is gone"
)
CACHE_BYPASSED = Counter(
    "cms_cache_bypassed_total", "Cache calls of API reads skipped or failed: Redis unavailable"
)
ENROLLMENTS_APPLIED = Counter(
    "cms_enrollment_changes_total", "Enrollment changes applied", ["event_type"]
)
CATALOG_ENTRIES = Counter(
    "cms_catalog_entries_written_total", "Catalog entries written by a sink", ["store"]
)
CATALOG_READS = Counter(
    "cms_catalog_pages_total",
    "Catalog pages answered, by backend and cache outcome",
    ["backend", "cache"],
)
CONSUMER_LAG = Gauge(
    "cms_consumer_lag",
    "Records waiting on an assigned partition, per consumer (the course agent or a group)",
    ["consumer", "topic", "partition"],
)
LOCAL_TABLES_DISCARDED = Counter(
    "cms_local_tables_discarded_total",
    "Start-ups that discarded the local tables after an unclean stop (restored from changelogs)",
)
CHANGELOG_RECORDS_RESTORED = Counter(
    "cms_changelog_records_restored_total",
    "Changelog records written into the local tables before Faust started (decision 44)",
)
REBALANCES = Counter(
    "cms_rebalances_total",
    "Partition assignments this worker received from its Faust group (one per rebalance)",
)
PARTITION_REWINDS = Counter(
    "cms_partition_rewinds_total",
    "Partitions rewound to their committed offset after records were skipped",
    ["topic"],
)
AGENT_BATCH_INPUTS = Histogram(
    "cms_agent_batch_inputs",
    "Inputs the course agent took in one batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
CHANGELOG_RECORDS_WRITTEN = Counter(
    "cms_changelog_records_written_total",
    "Records the course agent appended to the course-state changelog (in units)",
)
AGENT_BATCH_SECONDS = Histogram(
    "cms_agent_batch_seconds",
    "Time the course agent spent on a batch, by phase (decide: every input in turn; "
    "apply: its effects, together, made of unit, local, publish, cache and answer)",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

EVENT_LOOP_LAG = Histogram(
    "cms_event_loop_lag_seconds",
    "How late the worker's event loop woke a 250 ms sleeper",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

GC_PAUSE = Histogram(
    "cms_gc_pause_seconds",
    "How long one garbage collection held the process, by generation",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


def observe_gc_pauses() -> None:
    """Time every collection (gc.callbacks), so that a tail can be told from a GC pause."""
    import gc
    import time

    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    if callback not in gc.callbacks:
        gc.callbacks.append(callback)


ROCKSDB_MEMORY = Gauge(
    "cms_rocksdb_memory_bytes",
    "RocksDB's own memory in the course-state store, by kind (memtables, block cache, readers)",
    ["kind"],
)
PROCESS_RSS = Gauge("cms_process_resident_bytes", "The worker's resident memory (VmRSS)")


def resident_bytes() -> int:
    """This process's resident memory (Linux: VmRSS in /proc/self/status; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# Time locks (streams/timer.py): how far behind its earliest due moment the timer is, what
# it released, and the milestones every decision published.
TIMER_LAG = Gauge(
    "cms_timer_lag_seconds",
    "Now minus the earliest due time lock this worker has not released yet (0: none due)",
)
TIMER_RELEASED = Counter(
    "cms_timer_learners_released_total", "Learners the timer looked at for a due time lock"
)
MILESTONES = Counter("cms_milestones_total", "Learner milestones published", ["event_type"])
JOB_ROWS = Counter(
    "cms_job_rows_total", "Rows of bulk enrolment jobs applied, by outcome", ["outcome"]
)

SSE_STREAMS = Gauge("cms_sse_streams_open", "Live event streams open on this worker")
SSE_EVENTS = Counter(
    "cms_sse_events_sent_total", "Events sent on live streams, by phase", ["phase"]
)  # phase: catch_up (before the tail's position when the stream opened) | live

# Webhooks (decision 63), per subscription (a deployment holds tens of them, not thousands).
WEBHOOK_DELIVERIES = Counter(
    "cms_webhook_deliveries_total",
    "Webhook delivery attempts, by subscription and result",
    ["subscription", "result"],
)  # result: ok | failed (retried later) | given_up (after the retries' 24 h)
WEBHOOK_LAG = Gauge(
    "cms_webhook_lag_seconds",
    "How old the event a subscription is delivering is (0: nothing waiting)",
    ["subscription"],
)
WEBHOOK_FAILING = Gauge(
    "cms_webhook_failing_seconds",
    "How long a subscription's deliveries have been failing (0: they are not)",
    ["subscription"],
)
