-- The PostgreSQL mirror of the courses table (written by the course-events sink).
-- depends:
CREATE TABLE IF NOT EXISTS courses (
    id              text PRIMARY KEY,
    version         integer     NOT NULL,
    title           text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    category        text        NOT NULL DEFAULT '',
    tags            text[]      NOT NULL DEFAULT '{}',
    level           text        NOT NULL,
    language        text        NOT NULL,
    status          text        NOT NULL,
    instructor_id   text        NOT NULL,
    instructor_name text        NOT NULL,
    snapshot        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    last_event_id   text        NOT NULL
);
CREATE INDEX IF NOT EXISTS courses_instructor_idx ON courses (instructor_id);
CREATE INDEX IF NOT EXISTS courses_status_idx ON courses (status) WHERE deleted_at IS NULL;
