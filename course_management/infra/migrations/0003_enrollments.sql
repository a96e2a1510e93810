-- The PostgreSQL mirror of enrollments (written by the enrollment-events sink).
-- depends: 0002_modules_items
CREATE TABLE IF NOT EXISTS enrollments (
    course_id        text        NOT NULL,
    user_id          text        NOT NULL,
    version          integer     NOT NULL,
    status           text        NOT NULL,
    enrolled_at      timestamptz NOT NULL,
    completed_items  integer     NOT NULL,
    total_items      integer     NOT NULL,
    percent          double precision NOT NULL,
    completed_at     timestamptz,
    last_activity_at timestamptz,
    next_item_id     text,
    snapshot         jsonb       NOT NULL,
    last_event_id    text        NOT NULL,
    PRIMARY KEY (course_id, user_id)
);
CREATE INDEX IF NOT EXISTS enrollments_user_idx ON enrollments (user_id, course_id);
