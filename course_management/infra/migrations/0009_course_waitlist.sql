-- The waitlists (CONTRACT §5.2), from the `waitlisted` and `waitlist_left` milestones of
-- learner-milestones (infra/waitlist_mirror.py). One row per course and learner: when
-- they last joined and last left, by the milestone's offset (a course's milestones are
-- on one partition, in the order the agent decided them, so the offsets are the queue's
-- order). A learner waits when they joined after they last left.
-- depends: 0008_catalog_published_at
CREATE TABLE IF NOT EXISTS course_waitlist (
    course_id   text        NOT NULL,
    user_id     text        NOT NULL,
    joined_seq  bigint      NOT NULL,
    joined_at   timestamptz,
    left_seq    bigint,
    left_reason text,
    left_at     timestamptz,
    PRIMARY KEY (course_id, user_id)
);
CREATE INDEX IF NOT EXISTS course_waitlist_queue_idx ON course_waitlist (course_id, joined_seq);
