-- `sort=newest` orders by when a course was first published (decision 53), not when it
-- was drafted. Courses listed before keep their creation time as their publication.
-- depends: 0007_rating_seq
ALTER TABLE catalog_courses ADD COLUMN IF NOT EXISTS published_at_text text;
UPDATE catalog_courses SET published_at_text = created_at_text WHERE published_at_text IS NULL;
CREATE INDEX IF NOT EXISTS catalog_published_idx
    ON catalog_courses (published_at_text DESC, id) WHERE listed;
DROP INDEX IF EXISTS catalog_newest_idx;
-- `sort=rating` ranks by a Bayesian average (decision 52, catalog.query.rating_score):
-- the rows written before keep the plain average until recomputed here.
UPDATE catalog_courses
SET rating_sort = CASE
    WHEN rating_count > 0 AND rating_average IS NOT NULL
    THEN round(((3.0 * 5 + rating_average * rating_count) / (5 + rating_count))::numeric, 4)
    ELSE 0 END;
