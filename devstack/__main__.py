"""The local dev stack's command: `python -m devstack run|up|fetch`.

Not part of the deployable package (the image has none of it): it starts real servers on
127.0.0.1 for `make run` and the tests, provisions them, and (`run`) starts a worker and
loads the demo courses.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from course_management.api.auth import issue_token
from course_management.config import ConfigError, Settings, load_settings
from course_management.ops.demo import catalog_lists, load_demo_data, published_demo_courses
from course_management.ops.provisioning import provision_all
from devstack.downloads import fetch_all
from devstack.gateway import Gateway
from devstack.processes import wait_until
from devstack.reaper import mark_this_run, reap_orphans
from devstack.stack import LocalStack

STACK_ENV = Path(".stack") / "env"


@click.group()
def main() -> None:
    """The local stack: real Kafka, registry, PostgreSQL, Redis, Elasticsearch and S3."""


@main.command("fetch")
def fetch() -> None:
    """Download the stack's Java servers from Maven Central into the cache."""
    fetch_all()


@main.command("up")
@click.option("--no-search", is_flag=True, help="no Elasticsearch (PostgreSQL full-text search)")
def up(no_search: bool) -> None:
    """Start the stack, provision it, write .stack/env, and wait for Ctrl-C."""
    _exit_on_sigterm()
    _before_start()
    local = LocalStack(search=not no_search)
    env = _start_stack(local)
    click.echo(f"stack is up; settings written to {STACK_ENV}. Ctrl-C stops it.")
    _print_env(env)
    try:
        _wait_for_signal()
    finally:
        local.stop()


@main.command("run")
@click.option("--port", default=None, type=int, help="HTTP port (default: HTTP_PORT or 8080)")
@click.option("--no-search", is_flag=True, help="no Elasticsearch (PostgreSQL full-text search)")
@click.option("--demo/--no-demo", default=True, show_default=True)
@click.option(
    "--gateway", is_flag=True, help="HAProxy in front of the worker (config/haproxy), URL printed"
)
def run(port: int | None, no_search: bool, demo: bool, gateway: bool) -> None:
    """Everything for a local run: stack, provisioning, worker on :8080, demo data."""
    _exit_on_sigterm()
    _before_start(port)
    started = time.monotonic()
    local = LocalStack(search=not no_search)
    worker_proc: subprocess.Popen[bytes] | None = None
    gate: Gateway | None = None
    if gateway:  # the gateway checks these claims: the worker is given the same
        os.environ.setdefault("JWT_ISSUER", "https://auth.moocflix.local")
        os.environ.setdefault("JWT_AUDIENCE", "course-management")
    try:
        env = _start_stack(local, port=port)
        full_env = {**os.environ, **env}
        log_path = Path(".stack") / "worker.log"
        worker_proc = subprocess.Popen(
            [sys.executable, "-m", "course_management", "worker"],
            env=full_env,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{env['HTTP_PORT']}"
        wait_until(lambda: _ready(base, worker_proc), 180, f"the worker (log: {log_path})")
        if demo:
            load_demo_data(
                base,
                env["JWT_SECRET"],
                12,
                issuer=env.get("JWT_ISSUER"),
                audience=env.get("JWT_AUDIENCE"),
            )
            # The banner's catalog query should find them when it is printed.
            wanted = published_demo_courses(12)
            wait_until(lambda: catalog_lists(base, wanted), 30, "the demo courses in the catalog")
        if gateway:
            gate = Gateway(
                local.workdir,
                f"127.0.0.1:{env['HTTP_PORT']}",
                env["JWT_SECRET"],
                env["JWT_ISSUER"],
                env["JWT_AUDIENCE"],
            )
            gate.start()
        _print_banner(base, env, local.versions(), time.monotonic() - started)
        if gate is not None:
            click.echo(f"the gateway (HAProxy, config/haproxy/haproxy.cfg) is at {gate.url}")
        _wait_for_signal(worker_proc)
    finally:
        if gate is not None:
            gate.stop()
        if worker_proc is not None and worker_proc.poll() is None:
            worker_proc.terminate()
            try:
                worker_proc.wait(30)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
        local.stop()
        click.echo("stopped everything that was started")


def _exit_on_sigterm() -> None:
    """Make SIGTERM and SIGHUP (the terminal closed) unwind like Ctrl-C, so every `finally`
    stops what it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))


def _before_start(port: int | None = None) -> None:
    """The settings checked before any server starts (one line naming a bad one, exit 2),
    what a killed earlier run left behind reaped, and this run marked (devstack/reaper.py)."""
    placeholders = {
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "schema_registry_url": "http://127.0.0.1:8081",
        "database_url": "postgresql://cms@127.0.0.1:5432/cms",
        "redis_url": "redis://127.0.0.1:6379/0",
        "jwt_secret": os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32),
        "http_port": str(port or os.environ.get("HTTP_PORT", "8080")),
    }
    try:
        load_settings(**placeholders)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    reaped = reap_orphans()
    if reaped:
        click.echo(f"stopped {len(reaped)} processes a killed earlier run left behind")
    mark_this_run()


def _ready(base: str, proc: subprocess.Popen[bytes]) -> bool:
    import urllib.request

    if proc.poll() is not None:
        raise RuntimeError(f"the worker exited with code {proc.returncode}")
    with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def _start_stack(local: Any, port: int | None = None) -> dict[str, str]:
    env = local.start()
    env["JWT_SECRET"] = os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
    for passthrough in ("JWT_ISSUER", "JWT_AUDIENCE"):
        if os.environ.get(passthrough):
            env[passthrough] = os.environ[passthrough]
    env["HTTP_PORT"] = str(port or os.environ.get("HTTP_PORT", "8080"))
    env["DATA_DIR"] = str(local.workdir / "worker-data")
    provision_all(_settings_from(env))
    STACK_ENV.parent.mkdir(exist_ok=True)
    STACK_ENV.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    return env


def _settings_from(env: dict[str, str]) -> Settings:
    return load_settings(**{k.lower(): v for k, v in env.items()})


def _print_env(env: dict[str, str]) -> None:
    for key, value in sorted(env.items()):
        click.echo(f"  {key}={value}")


def _print_banner(base: str, env: dict[str, str], versions: dict[str, str], took: float) -> None:
    click.echo("")
    click.echo(f"course-management is up at {base}  (started in {took:.0f}s)")
    click.echo(
        f"  OpenAPI: {base}/openapi.json   readiness: {base}/readyz   metrics: {base}/metrics"
    )
    click.echo("  servers: " + "; ".join(versions.values()))
    click.echo(f"settings (also in {STACK_ENV}):")
    _print_env(env)
    click.echo("dev tokens (12 h):")
    for sub, role, name in (
        ("student-1", "student", "Sam Student"),
        ("instructor-1", "instructor", "Ada Instructor"),
        ("admin-1", "admin", "Grace Admin"),
        ("content-delivery", "service", "Content Delivery"),
    ):
        tok = issue_token(
            env["JWT_SECRET"],
            sub,
            [role],
            name=name,
            issuer=env.get("JWT_ISSUER"),
            audience=env.get("JWT_AUDIENCE"),
        )
        click.echo(f"  {role:<10} {tok}")
    click.echo("try:")
    click.echo(f"  curl -s '{base}/api/v1/courses?q=python'   (the catalog, anonymous)")
    click.echo(
        "  curl -s -H 'Authorization: Bearer <instructor token>' "
        "-H 'Content-Type: application/json' "
        f'-d \'{{"title":"Hello"}}\' {base}/api/v1/courses/create'
    )
    click.echo("Ctrl-C stops everything.")


def _wait_for_signal(proc: subprocess.Popen[bytes] | None = None) -> None:
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    while not stop:
        if proc is not None and proc.poll() is not None:
            click.echo(f"the worker exited with code {proc.returncode}", err=True)
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
