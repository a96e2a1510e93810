"""The Docker image, run for real: Debian's podman runs the image `make image` built
(scripts/container-image.sh) against the local stack, with a read-only root file
system, as a non-root user, with every capability dropped; then `/readyz`, one write and
one read go through the container. It joins the session's consumer group, so it runs
with the tests that rebalance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest

from devstack.downloads import cache_dir
from devstack.processes import free_port
from tests.support import ONE_MODULE, OWNER, eventually, http_get_json

pytestmark = pytest.mark.rebalances
IMAGE = os.environ.get("IMAGE", "moocflix/course-management:ci")


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    podman = shutil.which("podman")
    assert podman, "podman is not installed (make image installs it)"
    env = {**os.environ, "CONTAINERS_CONF": str(cache_dir() / "container" / "containers.conf")}
    return subprocess.run(
        [podman, *args], capture_output=True, text=True, timeout=300, check=check, env=env
    )


@pytest.fixture(scope="module")
def container(
    stack_env: dict[str, str], provisioned: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    assert _podman("image", "exists", IMAGE, check=False).returncode == 0, (
        f"{IMAGE} is not built: `make image` (scripts/container-image.sh) builds it"
    )
    port = free_port()
    env = {**stack_env, "HTTP_PORT": str(port), "WORKER_ID": "container-1"}
    env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    name = f"cms-test-{port}"
    # The tables' volume, owned by the image's user (as a pod's fsGroup makes it).
    data = tmp_path_factory.mktemp("container-data")
    os.chown(data, 10001, 10001)
    _podman(
        "run", "--detach", "--name", name, "--network=host",
        "--read-only", "--tmpfs", "/tmp", "--volume", f"{data}:/app/data",
        "--user", "10001:10001", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        *env_args, IMAGE, "worker",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        logs = _podman("logs", "--tail", "40", name, check=False)
        print(logs.stdout[-4000:], logs.stderr[-4000:])
        _podman("rm", "--force", "--time", "20", name, check=False)


def test_the_container_runs_locked_down(container: str) -> None:
    name = f"cms-test-{container.rsplit(':', 1)[1]}"
    (inspected,) = json.loads(_podman("inspect", name).stdout)
    host = inspected["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert inspected["Config"]["User"] == "10001:10001"
    assert not inspected["EffectiveCaps"]  # every capability dropped
    assert "no-new-privileges" in " ".join(host.get("SecurityOpt") or [])


async def test_the_container_gets_ready_and_serves_a_write_and_a_read(container: str) -> None:
    eventually(lambda: http_get_json(f"{container}/readyz")[0] == 200, 240, "the container ready")
    async with aiohttp.ClientSession(base_url=container) as http:
        body = {"title": "From the container", "status": "published", "modules": [ONE_MODULE]}
        created = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
        assert created.status == 201, await created.text()
        course_id = (await created.json())["id"]
        read = await http.get(f"/api/v1/courses/{course_id}")
        assert read.status == 200
        assert (await read.json())["title"] == "From the container"
