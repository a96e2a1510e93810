"""What can be checked of the Docker files without a Docker engine (the Kubernetes
manifests: test_manifests.py)."""

from pathlib import Path

import yaml

from course_management.config import Settings

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {name.upper() for name, field in Settings.model_fields.items() if field.is_required()}


def test_the_image_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2
    final = lines[lines.index(stages[1]) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert not any("build-essential" in line for line in final)


def test_compose_runs_every_component_and_gives_the_service_its_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "registry", "postgres", "redis", "elasticsearch", "s3"} <= set(services)
    env = services["course-management"]["environment"]
    assert REQUIRED | {"JWT_SECRET"} <= set(env)
    assert services["course-management"]["ports"] == ["8080:8080"]


def test_a_static_member_names_its_instance_and_session_timeout() -> None:
    from course_management.infra.consumer_group import Membership

    assert Membership().consumer_options() == {}
    assert Membership("w-1", 30.0).consumer_options() == {
        "group_instance_id": "w-1",
        "session_timeout_ms": 30_000,
    }
