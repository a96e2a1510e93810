"""The access rules of domain/access.py: who may enroll, report progress, cancel, read
enrollments and rate (the routes turn a "no" into their 403)."""

from __future__ import annotations

from course_management.domain import access
from course_management.domain.commands import Actor


def caller(*roles: str, user_id: str = "u1") -> Actor:
    return Actor(user_id, "Someone", tuple(sorted(roles)))


def test_admins_and_services_enroll_others_students_and_instructors_do_not() -> None:
    assert access.may_enroll_others(caller("admin"))
    assert access.may_enroll_others(caller("service"))
    assert not access.may_enroll_others(caller("student"))
    assert not access.may_enroll_others(caller("instructor"))


def test_a_student_enrolls_only_themselves() -> None:
    assert access.may_enroll_self(caller("student"), None)
    assert access.may_enroll_self(caller("student"), "u1")
    assert not access.may_enroll_self(caller("student"), "u2")
    assert not access.may_enroll_self(caller("instructor"), None)


def test_only_a_service_reports_progress_for_others() -> None:
    assert access.may_report_progress_for_others(caller("service"))
    assert not access.may_report_progress_for_others(caller("admin"))
    assert not access.may_report_progress_for_others(caller("student"))


def test_a_student_reports_only_their_own_progress() -> None:
    assert access.may_report_own_progress(caller("student"), None)
    assert access.may_report_own_progress(caller("student"), "u1")
    assert not access.may_report_own_progress(caller("student"), "u2")
    assert not access.may_report_own_progress(caller("admin"), None)


def test_the_enrolled_student_or_an_admin_cancels() -> None:
    assert access.may_cancel_enrollment(caller("student"), "u1")
    assert access.may_cancel_enrollment(caller("admin"), "u2")
    assert not access.may_cancel_enrollment(caller("student"), "u2")
    assert not access.may_cancel_enrollment(caller("instructor"), "u1")  # not as a student
    assert not access.may_cancel_enrollment(caller("service"), "u2")


def test_a_users_enrollments_are_theirs_admins_and_services() -> None:
    assert access.may_read_enrollments_of(caller("instructor"), "u1")  # any role: their own
    assert access.may_read_enrollments_of(caller("admin"), "u2")
    assert access.may_read_enrollments_of(caller("service"), "u2")
    assert not access.may_read_enrollments_of(caller("student"), "u2")
    assert not access.may_read_enrollments_of(caller("instructor"), "u2")


def test_admins_and_services_read_every_course_enrollment() -> None:
    assert access.may_read_every_course_enrollment(caller("admin"))
    assert access.may_read_every_course_enrollment(caller("service"))
    assert not access.may_read_every_course_enrollment(caller("instructor"))
    assert not access.may_read_every_course_enrollment(caller("student"))


def test_a_student_reads_their_own_enrollment_in_a_course() -> None:
    assert access.may_read_own_course_enrollment(caller("student"))
    assert not access.may_read_own_course_enrollment(caller("instructor"))


def test_ratings_come_from_students() -> None:
    assert access.may_rate(caller("student"))
    assert access.may_rate(caller("student", "instructor"))
    assert not access.may_rate(caller("instructor"))
    assert not access.may_rate(caller("admin"))
    assert not access.may_rate(caller("service"))


STAFFED = {
    "status": "draft",
    "instructor": {"id": "owner"},
    "staff": [
        {"user_id": "co", "role": "co_instructor"},
        {"user_id": "ta", "role": "teaching_assistant"},
    ],
}


def test_staff_rights_follow_the_sub_whatever_the_roles() -> None:
    co, ta, owner = caller("student", user_id="co"), caller(user_id="ta"), caller(user_id="owner")
    stranger = caller("instructor", user_id="someone")
    assert [access.can_see(STAFFED, c) for c in (co, ta, owner, stranger)] == [
        True,
        True,
        True,
        False,
    ]
    assert [access.can_change(STAFFED, c) for c in (co, ta, owner, stranger)] == [
        True,
        False,
        True,
        False,
    ]
    assert [access.can_delete(STAFFED, c) for c in (co, ta, owner)] == [False, False, True]
    assert access.on_staff(STAFFED, ta) and not access.on_staff(STAFFED, stranger)
    assert access.assists(STAFFED, ta) and not access.assists(STAFFED, co)
    assert access.sees_content_keys("owner", co, STAFFED)
    assert not access.sees_content_keys("owner", ta, STAFFED)
    assert access.may_run_enrollment_jobs(STAFFED, co)
    assert not access.may_run_enrollment_jobs(STAFFED, ta)
    assert access.may_run_enrollment_jobs(STAFFED, caller("service", user_id="svc"))
    assert access.staff_role({**STAFFED, "staff": []}, co) is None
    assert access.staff_role(STAFFED, None) is None
