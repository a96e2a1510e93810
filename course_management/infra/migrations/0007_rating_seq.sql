-- A rating makes no course version since decision 52: the ratings of one course are
-- ordered by (course_version, seq), seq being the course's seats sequence the rating
-- made (0 for the ratings made before, which each made a course version).
-- depends: 0006_enrollment_history_ratings
ALTER TABLE course_ratings ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0;
