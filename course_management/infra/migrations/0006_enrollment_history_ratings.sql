-- One enrollment per course and learner: its status changes, with their times, and the
-- ratings list (the enrollment-events and course-management-ratings sinks).
-- depends: 0005_catalog_words
CREATE TABLE IF NOT EXISTS enrollment_transitions (
    event_id   text        PRIMARY KEY,
    course_id  text        NOT NULL,
    user_id    text        NOT NULL,
    version    integer     NOT NULL,
    status     text        NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS enrollment_transitions_idx
    ON enrollment_transitions (course_id, user_id, version);

CREATE TABLE IF NOT EXISTS course_ratings (
    course_id      text        NOT NULL,
    user_id        text        NOT NULL,
    course_version integer     NOT NULL,
    stars          smallint    NOT NULL,
    review         text,
    rated_at       timestamptz NOT NULL,
    PRIMARY KEY (course_id, user_id)
);
CREATE INDEX IF NOT EXISTS course_ratings_newest_idx
    ON course_ratings (course_id, rated_at DESC, user_id DESC);
