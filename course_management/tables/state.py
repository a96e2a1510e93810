"""The `course-state` table: everything the course agent decides against, on the
partition of its course, in one table so that one batch's writes to a partition are one
unit of its changelog (tables/units.py, decision 49). Its keys:

- `<course id>`: the course's record (`CourseRecord`: snapshot, create fingerprint,
  recently applied commands);
- `<course id>:<user id>`: a learner's enrollment (`EnrollmentRecord`);
- `<course id>#seats`: the course's seats taken (`SeatsRecord`);
- `#next:<partition>`, `#applied:<partition>:<topic>:<source partition>`: what the
  agent has applied of its inputs (streams/tracking.py);
- `#outbox:<partition>`: the last unit's outbox (tables/units.py).

RocksDB-backed (tables/store.py), made durable by a compacted changelog that only the
agent owning the partition appends to. The keys are made in tables/keys.py.
"""

from __future__ import annotations

from typing import Any

import faust

from course_management.tables.store import ROCKSDB_OPTIONS, store_url
from course_management.topology import STATE_TABLE, UNIT_MAX_BYTES


def define_state_table(app: faust.App, partitions: int) -> Any:
    return app.Table(
        STATE_TABLE,
        default=None,
        key_type=str,
        value_type=None,
        partitions=partitions,
        store=store_url(STATE_TABLE),
        options=dict(ROCKSDB_OPTIONS),
        extra_topic_configs={"max.message.bytes": str(UNIT_MAX_BYTES + 64 * 1024)},
        help="course, enrollments, seats, tracking and outbox of each partition",
    )
