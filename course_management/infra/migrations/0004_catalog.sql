-- The PostgreSQL catalog: one row per course the catalog has heard of, written by the
-- course-management-catalog sink; the full-text backend when SEARCH_URL is unset, and the
-- source `course-management search rebuild` copies into a new Elasticsearch index.
-- depends: 0003_enrollments
CREATE TABLE IF NOT EXISTS catalog_courses (
    id               text        PRIMARY KEY,
    catalog_version  bigint      NOT NULL,
    listed           boolean     NOT NULL,
    title            text        NOT NULL DEFAULT '',
    description      text        NOT NULL DEFAULT '',
    tags             text[]      NOT NULL DEFAULT '{}',
    tags_text        text        NOT NULL DEFAULT '',
    category         text,
    level            text,
    language         text,
    instructor_id    text,
    instructor_name  text        NOT NULL DEFAULT '',
    rating_average   double precision,
    rating_sort      double precision NOT NULL DEFAULT 0,
    rating_count     integer     NOT NULL DEFAULT 0,
    enrollment_count integer     NOT NULL DEFAULT 0,
    created_at       timestamptz,
    created_at_text  text,
    document         jsonb,
    changed_at       timestamptz NOT NULL DEFAULT now(),
    search           tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', tags_text), 'B') ||
        setweight(to_tsvector('simple', instructor_name), 'B') ||
        setweight(to_tsvector('simple', description), 'C')
    ) STORED
);
CREATE INDEX IF NOT EXISTS catalog_search_idx ON catalog_courses USING gin (search) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_tags_idx ON catalog_courses USING gin (tags) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_newest_idx ON catalog_courses (created_at_text DESC, id) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_popular_idx ON catalog_courses (enrollment_count DESC, id) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_rating_idx ON catalog_courses (rating_sort DESC, rating_count DESC, id) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_category_idx ON catalog_courses (category) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_instructor_idx ON catalog_courses (instructor_id) WHERE listed;
CREATE INDEX IF NOT EXISTS catalog_changed_idx ON catalog_courses (changed_at);
