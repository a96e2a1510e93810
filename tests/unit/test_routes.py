"""The course agent's route table (streams/routes.py): every kind is read from the topic
topology says it comes from, `route_of` refuses a kind read from another topic, and every
command type the API sends has a route (a missing one would make each such request a dead
letter answered `unknown-command`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import course_management
from course_management.streams.routes import ROUTES, Route, route_of
from course_management.topology import (
    COURSE_COMMANDS,
    ENROLLMENT_INPUT_SOURCES,
    ENROLLMENT_INPUTS,
    TOPICS,
    spec,
)

# Where the API's writes are turned into commands (the agent's decoder, messages/, builds
# them from what it reads: not a sender).
API = Path(course_management.__file__).parent / "api"
# Every topic the agent reads an input from (the enrollment inputs stand for their sources).
SOURCES = (COURSE_COMMANDS, *ENROLLMENT_INPUT_SOURCES.values(), ENROLLMENT_INPUTS)
# The command types the API sends today (the scan below must find at least these).
KNOWN_COMMAND_TYPES = {
    "create_course",
    "update_course",
    "delete_course",
    "rate_course",
    "cancel_enrollment",
}


def expected_source(kind: str) -> str:
    return ENROLLMENT_INPUT_SOURCES.get(kind, COURSE_COMMANDS)


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_each_route_is_read_from_its_kinds_topic(kind: str) -> None:
    route = ROUTES[kind]
    assert route.kind == kind
    assert route.source == expected_source(kind)


def test_every_enrollment_input_kind_has_a_route() -> None:
    for kind, source in ENROLLMENT_INPUT_SOURCES.items():
        assert kind in ROUTES, kind
        assert ROUTES[kind].source == source


def test_commands_and_inputs_are_told_apart_by_source() -> None:
    """No command type shares a name with an input kind, and no kind is read elsewhere."""
    commands = {kind for kind, route in ROUTES.items() if route.source == COURSE_COMMANDS}
    inputs = {kind for kind, route in ROUTES.items() if route.source != COURSE_COMMANDS}
    assert inputs == set(ENROLLMENT_INPUT_SOURCES)
    assert not commands & set(ENROLLMENT_INPUT_SOURCES)


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_route_of_takes_a_kind_only_from_its_source(kind: str) -> None:
    route = ROUTES[kind]
    assert route_of(kind, route.source) is route
    for other in SOURCES:
        if other != route.source:
            assert route_of(kind, other) is None, (kind, other)


def test_route_of_refuses_an_unknown_kind() -> None:
    for source in SOURCES:
        assert route_of("drop_all_courses", source) is None
        assert route_of("", source) is None


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_each_route_writes_topics_of_this_service(kind: str) -> None:
    route = ROUTES[kind]
    assert route.writes, kind
    names = {topic.name for topic in TOPICS}
    for topic in route.writes:
        assert topic in names, topic
        assert spec(topic).schema_file is not None, topic  # a wire message, not a dlq
    assert route.source not in route.writes


def _command_types_sent(package: Path) -> tuple[set[str], list[str]]:
    """The literal command types given to `send_command(request, who, <type>, ...)` or
    `CourseCommand(command_type=<type>, ...)` under `package`, and where a type is not a
    literal (allowed only where `send_command` passes its own parameter on)."""
    literals: set[str] = set()
    computed: list[str] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            arg: ast.expr | None = None
            if name == "send_command":
                arg = node.args[2] if len(node.args) > 2 else None
            if name == "CourseCommand":  # (command_id, command_type, ...)
                arg = node.args[1] if len(node.args) > 1 else None
            if name in ("send_command", "CourseCommand"):
                for keyword in node.keywords:
                    if keyword.arg == "command_type":
                        arg = keyword.value
            if arg is None:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literals.add(arg.value)
            else:
                where = f"{path.relative_to(package)}:{node.lineno}"
                computed.append(f"{where} {ast.unparse(arg)}")
    return literals, computed


def test_every_command_type_the_api_sends_has_a_route() -> None:
    literals, computed = _command_types_sent(API)

    assert literals >= KNOWN_COMMAND_TYPES  # the scan sees the API's writes
    # The one place a type is passed on, not written: send_command's own parameter. A new
    # computed type would escape this test: name it here with the types it can take.
    assert [c.split(" ", 1)[1] for c in computed] == ["command_type"], computed
    assert computed[0].startswith("route_helpers.py:"), computed
    missing = {kind for kind in literals if route_of(kind, COURSE_COMMANDS) is None}
    assert not missing, f"command types the API sends without a route: {sorted(missing)}"


def test_route_is_a_frozen_record() -> None:
    """The table is read by every batch: a route cannot be changed in place."""
    route = next(iter(ROUTES.values()))
    assert isinstance(route, Route)
    with pytest.raises(AttributeError):
        route.source = "elsewhere"  # type: ignore[misc]
