"""Local tables survive only a clean stop (streams/local_state.py); the partitions to
restore before Faust starts are those of the last assignment (tables/restore.py)."""

from __future__ import annotations

from pathlib import Path

from faust.types import TP

from course_management.streams.local_state import discard_after_unclean_stop, mark_clean_stop
from course_management.tables.restore import ASSIGNMENT, remember_assignment, remembered_assignment


def _tables(root: Path) -> Path:
    tabledir = root / "v1" / "tables"
    (tabledir / "courses-0.db").mkdir(parents=True)
    (tabledir / "courses-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return tabledir


def test_tables_are_discarded_after_an_unclean_stop(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    assert discard_after_unclean_stop(tmp_path, tabledir) is True
    assert not tabledir.exists()


def test_tables_are_kept_after_a_clean_stop_and_the_marker_is_consumed(tmp_path: Path) -> None:
    tabledir = _tables(tmp_path)
    mark_clean_stop(tmp_path)
    assert discard_after_unclean_stop(tmp_path, tabledir) is False
    assert (tabledir / "courses-0.db" / "CURRENT").exists()
    # This run then dies without a clean stop: the next start discards.
    assert discard_after_unclean_stop(tmp_path, tabledir) is True
    assert not tabledir.exists()


def test_a_first_start_has_nothing_to_discard(tmp_path: Path) -> None:
    assert discard_after_unclean_stop(tmp_path, tmp_path / "v1" / "tables") is False
    (tmp_path / "v1" / "tables" / "course-state-backups").mkdir(parents=True)  # by Faust
    assert discard_after_unclean_stop(tmp_path, tmp_path / "v1" / "tables") is False


def test_the_last_assignment_is_remembered_for_its_changelogs_only(tmp_path: Path) -> None:
    assigned = [
        TP("courses-changelog", 3), TP("courses-changelog", 1),
        TP("enrollments-changelog", 1), TP("course-commands", 1),
    ]  # fmt: skip
    remember_assignment(tmp_path, assigned, {"courses-changelog", "enrollments-changelog"})
    assert remembered_assignment(tmp_path) == {
        "courses-changelog": [1, 3],
        "enrollments-changelog": [1],
    }
    remember_assignment(tmp_path, [], {"courses-changelog"})  # a later, empty assignment
    assert remembered_assignment(tmp_path) == {}


def test_a_missing_or_damaged_assignment_note_restores_nothing(tmp_path: Path) -> None:
    assert remembered_assignment(tmp_path) == {}
    (tmp_path / ASSIGNMENT).write_text("{not json")
    assert remembered_assignment(tmp_path) == {}
    (tmp_path / ASSIGNMENT).write_text("[1, 2]")
    assert remembered_assignment(tmp_path) == {}
