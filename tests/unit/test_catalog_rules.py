"""The catalog's pure rules: query parsing, cursors, documents, versions. No servers."""

from __future__ import annotations

import pytest

from course_management.catalog.query import (
    MAX_TERMS,
    MAX_TYPO_EXPANSIONS,
    Sort,
    allowed_edits,
    catalog_document,
    catalog_summary,
    catalog_version,
    encode_cursor,
    parse_query,
    search_terms,
    sort_values,
    typo_matches,
)
from course_management.domain.outcomes import Refusal, RefusalKind


def fields_of(refusal: Refusal) -> list[str]:
    return [e["field"] for e in refusal.to_dict()["errors"]]


def test_sort_defaults_follow_q() -> None:
    assert parse_query({}).sort is Sort.newest
    assert parse_query({"q": "kafka"}).sort is Sort.relevance
    assert parse_query({"q": "kafka", "sort": "popular"}).sort is Sort.popular
    assert parse_query({"sort": "relevance"}).sort is Sort.newest  # nothing to rank by
    assert parse_query({"q": "!!!"}).sort is Sort.newest  # no words at all


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"sort": "price"}, "sort"),
        ({"level": "expert"}, "level"),
        ({"language": "english"}, "language"),
        ({"cursor": "%%%"}, "cursor"),
        ({"category": ""}, "category"),
        ({"q": "x" * 5001}, "q"),
    ],
)
def test_bad_parameters_name_themselves(params: dict[str, str], field: str) -> None:
    with pytest.raises(Refusal) as caught:
        parse_query(params)
    assert caught.value.kind is RefusalKind.INVALID
    assert fields_of(caught.value) == [field]


def test_query_text_becomes_plain_words() -> None:
    assert search_terms('title:(Kafka OR "streams") AND /reg.*ex/') == (
        "title",
        "kafka",
        "or",
        "streams",
        "and",
        "reg",
        "ex",
    )
    assert search_terms('"unbalanced \\ quotes (((') == ("unbalanced", "quotes")
    assert search_terms("Ünïcode 中文 café") == ("ünïcode", "中文", "café")
    long = " ".join(f"w{n}" for n in range(1000))
    assert len(search_terms(long)) == MAX_TERMS
    assert len(search_terms("a" * 5000)[0]) == 64
    assert search_terms("kafka KAFKA Kafka") == ("kafka",)


def test_a_cursor_is_bound_to_its_query_and_sort() -> None:
    query = parse_query({"q": "kafka", "category": "data"})
    cursor = encode_cursor(query, (3.5, "course-9"), None)
    again = parse_query({"q": "kafka", "category": "data", "cursor": cursor})
    assert again.after == (3.5, "course-9")
    for other in ({"q": "kafka"}, {"q": "kafka", "category": "data", "sort": "newest"}):
        with pytest.raises(Refusal) as caught:
            parse_query({**other, "cursor": cursor})
        assert fields_of(caught.value) == ["cursor"]


@pytest.mark.parametrize("after", [("x", "id"), (1.0,), (True, "id"), ([], "id")])
def test_a_cursor_with_the_wrong_shape_is_refused(after: tuple) -> None:
    query = parse_query({"q": "kafka"})
    with pytest.raises(Refusal):
        parse_query({"q": "kafka", "cursor": encode_cursor(query, after, None)})


def test_catalog_version_grows_with_course_versions_and_seats() -> None:
    assert catalog_version(1, 0) < catalog_version(1, 1) < catalog_version(2, 0)
    assert catalog_version(2, 0) < catalog_version(2, 5_000_000) < catalog_version(3, 0)


COURSE = {
    "id": "c-1",
    "title": "Kafka",
    "description": "Streams",
    "category": "data",
    "tags": ["kafka"],
    "level": "beginner",
    "language": "en",
    "status": "published",
    "instructor": {"id": "i-1", "name": "Ada"},
    "rating": {"average": None, "count": 0},
    "enrollment_count": 0,
    "version": 4,
    "created_at": "2026-11-27T10:00:00.000Z",
    "updated_at": "2026-11-27T10:00:00.000Z",
}


def test_documents_list_only_published_courses_and_carry_the_seat_count() -> None:
    doc = catalog_document({**COURSE, "enrollment_count": 7})
    assert doc["listed"] and doc["enrollment_count"] == 7 and doc["course"]["enrollment_count"] == 7
    assert doc["instructor_id"] == "i-1" and doc["instructor_name"] == "Ada"
    assert doc["rating_sort"] == 0.0  # unrated courses sort last by rating
    for status in ("draft", "archived"):
        assert not catalog_document({**COURSE, "status": status})["listed"]
    assert sort_values(doc, Sort.popular) == (7, "c-1")
    assert sort_values(doc, Sort.newest) == ("2026-11-27T10:00:00.000Z", "c-1")  # legacy
    published = catalog_document({**COURSE, "published_at": "2026-12-06T09:00:00.000Z"})
    assert sort_values(published, Sort.newest) == ("2026-12-06T09:00:00.000Z", "c-1")


def test_the_catalog_lists_summaries_without_modules_or_content_keys() -> None:
    """Issue 24, item 3: a page of large courses was tens of MiB, content keys included."""
    items = [
        {"id": f"i-{n}", "content_key": f"k/{n}", "duration_seconds": d}
        for n, d in enumerate((60, None, 240))
    ]
    modules = [{"id": "m-1", "items": items[:2]}, {"id": "m-2", "items": items[2:]}]
    doc = catalog_document({**COURSE, "modules": modules})
    summary = doc["course"]
    assert "modules" not in summary and "k/0" not in str(doc)
    assert (summary["module_count"], summary["item_count"], summary["duration_seconds"]) == (
        2,
        3,
        300,
    )
    assert catalog_summary(summary) is summary  # a summary stays as it is
    legacy = catalog_summary({**COURSE, "modules": modules})  # indexed before: no published_at
    assert legacy["published_at"] == COURSE["created_at"]


def test_the_rating_sort_accounts_for_the_count() -> None:
    """Issue 24, item 12: one 5-star rating does not outrank a thousand 4.9s; among equal
    averages, more ratings rank higher; an unrated course ranks last."""
    one_five = catalog_document({**COURSE, "rating": {"average": 5.0, "count": 1}})
    many = catalog_document({**COURSE, "rating": {"average": 4.9, "count": 1000}})
    few = catalog_document({**COURSE, "rating": {"average": 4.9, "count": 3}})
    one_low = catalog_document({**COURSE, "rating": {"average": 1.0, "count": 1}})
    ranked = sorted(
        [one_five, many, few, one_low, catalog_document(COURSE)],
        key=lambda d: sort_values(d, Sort.rating),
        reverse=True,
    )
    assert [d["rating_sort"] for d in ranked] == [4.8905, 3.7125, 3.3333, 2.6667, 0.0]
    assert ranked[0] is many and ranked[-1]["rating_count"] == 0
    assert many["rating_average"] == 4.9  # what a client reads is the plain average


def test_a_rebuilt_index_pairs_with_the_live_one_by_its_shape() -> None:
    from course_management.catalog.rebuild_table import index_shape

    live = "CREATE INDEX catalog_search_idx ON public.catalog_courses USING gin (search) WHERE x"
    copy = (
        "CREATE INDEX catalog_courses_rebuild_search_idx ON public.catalog_courses_rebuild "
        "USING gin (search) WHERE x"
    )
    other = "CREATE INDEX catalog_tags_idx ON public.catalog_courses USING gin (tags) WHERE listed"
    assert index_shape(live) == index_shape(copy) != index_shape(other)
    key = "CREATE UNIQUE INDEX catalog_courses_pkey ON public.catalog_courses USING btree (id)"
    assert index_shape(key) == "CREATE UNIQUE INDEX ON USING btree (id)"


def test_allowed_edits_follow_elasticsearch_auto() -> None:
    assert [allowed_edits("x" * n) for n in range(1, 9)] == [0, 0, 1, 1, 1, 2, 2, 2]


def test_typo_matches_count_a_swap_as_one_edit_and_keep_the_first_letter() -> None:
    words = ["kafka", "kafkas", "rafka", "kfkaa", "python", "pyhton", "pythons", "pyth"]
    # "kafka" is a swap away; "rafka" changes the first letter, "kfkaa" is two swaps away.
    assert typo_matches("kafak", words) == ["kafka"]
    assert typo_matches("pythn", words) == ["pyth", "python"]  # one edit each
    assert typo_matches("pyhotn", words) == ["pyhton", "python"]  # six letters: two edits
    assert typo_matches("ab", ["ac", "ab"]) == []  # under three letters: none
    assert typo_matches("kafka", words) == ["kafkas"]  # the word itself is not a correction


def test_typo_matches_keep_the_nearest_twenty() -> None:
    words = [f"abcde{chr(97 + i)}" for i in range(26)] + ["abcdef"]
    matches = typo_matches("abcdef", [*words, "abcdxy"])
    assert len(matches) == MAX_TYPO_EXPANSIONS
    assert "abcdxy" not in matches  # two edits: farther than the one-edit words
