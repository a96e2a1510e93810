-- Modules and items of each course, mirrored beside the course row (same version guard).
-- depends: 0001_courses
CREATE TABLE IF NOT EXISTS course_modules (
    id        text    PRIMARY KEY,
    course_id text    NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    title     text    NOT NULL,
    position  integer NOT NULL
);
CREATE INDEX IF NOT EXISTS course_modules_course_idx ON course_modules (course_id, position);

CREATE TABLE IF NOT EXISTS course_items (
    id               text    PRIMARY KEY,
    course_id        text    NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    module_id        text    NOT NULL REFERENCES course_modules (id) ON DELETE CASCADE,
    type             text    NOT NULL,
    title            text    NOT NULL,
    position         integer NOT NULL,
    content_key      text,
    duration_seconds integer,
    max_score        double precision,
    due_at           timestamptz
);
CREATE INDEX IF NOT EXISTS course_items_module_idx ON course_items (module_id, position);
