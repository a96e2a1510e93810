-- Bulk enrolment jobs (CONTRACT §5.2): each job's counts and each row's outcome, from
-- course-management-job-progress (infra/job_mirror.py). A job's record moves only
-- forward (next_row); a row's outcome is written once.
-- depends: 0009_course_waitlist
CREATE TABLE IF NOT EXISTS enrollment_jobs (
    id          text        PRIMARY KEY,
    course_id   text        NOT NULL,
    creator     text        NOT NULL,
    total       integer     NOT NULL,
    next_row    integer     NOT NULL,
    counts      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS enrollment_job_rows (
    job_id       text    NOT NULL,
    row_number   integer NOT NULL,
    user_id      text    NOT NULL,
    outcome      text    NOT NULL,
    problem_type text,
    PRIMARY KEY (job_id, row_number)
);
CREATE INDEX IF NOT EXISTS enrollment_job_rows_outcome_idx
    ON enrollment_job_rows (job_id, outcome, row_number);
