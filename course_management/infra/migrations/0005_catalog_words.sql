-- The words of the PostgreSQL catalog, for its typo tolerance: a misspelt query word is
-- looked up here (same first letter, a length within the allowed edits, a bounded
-- Levenshtein distance from fuzzystrmatch) and searched together with the words it may
-- have meant. Written with the catalog rows; a word no course has any more stays until
-- `search rebuild --target postgres` prunes it (meanwhile it only widens a query with a
-- word that matches nothing).
-- depends: 0004_catalog
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;

CREATE TABLE IF NOT EXISTS catalog_words (
    word text PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS catalog_words_start_idx ON catalog_words (left(word, 1), length(word));

INSERT INTO catalog_words (word)
SELECT DISTINCT w FROM catalog_courses, unnest(tsvector_to_array(search)) AS w
WHERE listed AND length(w) BETWEEN 2 AND 66  -- a query word has at most 64 letters, plus two edits
ON CONFLICT DO NOTHING;
