-- History and time travel (CONTRACT §5.3), from course-events, enrollment-events and
-- learner-milestones (infra/history_mirror.py):
-- course_versions: every version of a course exactly as its event published it (the
--   snapshot's JSON; null for the version that deleted it), with the authoring changes
--   from the version before (domain/history.py), the actor and the request id;
-- learner_history: every change to a learner's record, one row per event or milestone
--   (domain/learner_history.py), in the agent's order: enrollment `version`, `rank`
--   (a version's events before its milestones) and the offset.
-- depends: 0010_enrollment_jobs
CREATE TABLE IF NOT EXISTS course_versions (
    course_id   text        NOT NULL,
    version     integer     NOT NULL,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    actor_id    text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    request_id  text,
    snapshot    text,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (course_id, version)
);

CREATE TABLE IF NOT EXISTS learner_history (
    event_id      text             PRIMARY KEY,
    course_id     text             NOT NULL,
    user_id       text             NOT NULL,
    occurred_at   timestamptz      NOT NULL,
    rank          smallint         NOT NULL,
    source_offset bigint           NOT NULL,
    version       integer          NOT NULL,
    event_type    text             NOT NULL,
    status        text,
    item_id       text,
    item_status   text,
    score         double precision,
    module_id     text,
    reason        text,
    request_id    text
);
CREATE INDEX IF NOT EXISTS learner_history_order_idx
    ON learner_history (course_id, user_id, version, rank, source_offset);
