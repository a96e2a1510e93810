import pytest
from pydantic import ValidationError

from course_management.domain.course_fields import CourseFields
from course_management.domain.outcomes import Refusal, RefusalKind, invalid_from


def problem_for(body: dict) -> Refusal:
    with pytest.raises(ValidationError) as caught:
        CourseFields.model_validate(body)
    return invalid_from(caught.value)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"title": "t", "level": "expert"}, "level"),
        ({"title": "t", "language": "not a tag"}, "language"),
        ({"title": "t", "capacity": 0}, "capacity"),
        ({"title": "t", "id": "mine"}, "id"),
        ({"title": "t", "rating": {"average": 5}}, "rating"),
        ({"title": "t", "version": 7}, "version"),
        (
            {
                "title": "t",
                "modules": [
                    {
                        "title": "m",
                        "position": 0,
                        "items": [{"type": "video", "title": "x", "position": 0}],
                    }
                ],
            },
            "modules[0].items[0].type",
        ),
    ],
)
def test_each_rule_names_its_field(body: dict, field: str) -> None:
    problem = problem_for(body)
    assert problem.kind is RefusalKind.INVALID
    assert field in [e["field"] for e in problem.errors]


def test_unicode_and_sql_looking_text_is_kept_exactly() -> None:
    title = "Robert'); DROP TABLE courses;-- 🎓 Ünïcode"
    assert CourseFields.model_validate({"title": title}).title == title


def test_no_text_field_may_hold_a_nul_character() -> None:
    """PostgreSQL cannot store one; a course holding one would stop the mirror."""
    import pydantic

    from course_management.domain.course_fields import CourseFields

    item = {"type": "lesson", "title": "i", "position": 0}
    for fields in (
        {"tags": ["a\x00"]},
        {"modules": [{"title": "m", "position": 0, "items": [{**item, "content_key": "k\x00"}]}]},
    ):
        with pytest.raises(pydantic.ValidationError):
            CourseFields.model_validate({"title": "t", **fields})
