"""The `course-management` command: worker, provisioning, the local stack, demo data, tokens."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from course_management.config import ConfigError, Settings, load_settings

STACK_ENV = Path(".stack") / "env"


def _setting_options(fn: Any) -> Any:
    """One flag per setting (`--kafka-bootstrap-servers` for KAFKA_BOOTSTRAP_SERVERS, ...)."""
    for name, field in reversed(list(Settings.model_fields.items())):
        flag = "--" + name.replace("_", "-")
        fn = click.option(
            flag,
            name,
            default=None,
            help=f"{name.upper()} ({field.description or ''})".replace(" ()", ""),
        )(fn)
    return fn


def _settings(overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@click.group()
def main() -> None:
    """MoocFlix course-management-service."""


@main.command()
@_setting_options
def worker(**overrides: Any) -> None:
    """Run the Faust worker with the HTTP API beside it."""
    settings = _settings(overrides)
    from course_management.runtime import run_worker

    run_worker(settings)


@main.command()
@_setting_options
def provision(**overrides: Any) -> None:
    """Create topics, register schemas, migrate the database, create the bucket and index."""
    from course_management.provisioning import provision_all

    settings = _settings(overrides)
    click.echo(json.dumps(provision_all(settings)))


@main.group()
def search() -> None:
    """The catalog's search backends: the Elasticsearch index and the PostgreSQL table."""


@search.command("rebuild")
@click.option(
    "--target",
    type=click.Choice(["index", "postgres"]),
    default=None,
    help="index: the Elasticsearch index, from the PostgreSQL catalog; postgres: the "
    "PostgreSQL catalog table, from the catalog topic (default: the backend in use)",
)
@_setting_options
def search_rebuild(target: str | None, **overrides: Any) -> None:
    """Rebuild the catalog's search backend beside the live one, then swap them."""
    import asyncio

    from tqdm import tqdm

    from course_management.catalog_table import rebuild_catalog_table
    from course_management.search_index import rebuild

    settings = _settings(overrides)
    target = target or ("index" if settings.search_url else "postgres")
    if target == "index" and not settings.search_url:
        click.echo("SEARCH_URL is not set: there is no search index to rebuild", err=True)
        sys.exit(2)
    with tqdm(unit="course", desc=f"rebuilding {target}", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        build = rebuild if target == "index" else rebuild_catalog_table
        result = asyncio.run(build(settings, progress))
    click.echo(json.dumps(result))


@main.command()
@click.option("--database-url", envvar="DATABASE_URL", required=True)
def migrate(database_url: str) -> None:
    """Apply the database migrations (idempotent)."""
    from course_management.infra.database import migrate as apply

    click.echo(f"migrations applied: {apply(database_url)}")


@main.command()
@click.option("--sub", required=True, help="user id")
@click.option(
    "--role", "roles", multiple=True, required=True, help="student|instructor|admin|service"
)
@click.option("--name", default=None)
@click.option("--ttl", default=12 * 3600, show_default=True, help="seconds")
def token(sub: str, roles: tuple[str, ...], name: str | None, ttl: int) -> None:
    """Print a dev token signed with JWT_SECRET."""
    from course_management.api.auth import issue_token

    secret = os.environ.get("JWT_SECRET")
    if not secret:
        click.echo("configuration error: JWT_SECRET is required but not set", err=True)
        sys.exit(2)
    click.echo(
        issue_token(
            secret,
            sub,
            list(roles),
            name=name,
            ttl_seconds=ttl,
            issuer=os.environ.get("JWT_ISSUER"),
            audience=os.environ.get("JWT_AUDIENCE"),
        )
    )


@main.command()
@click.option("--url", default=None, help="the API (default: http://127.0.0.1:$HTTP_PORT)")
@click.option("--count", default=12, show_default=True)
def demo_data(url: str | None, count: int) -> None:
    """Create demo courses through the API (so they flow through Kafka like any write)."""
    from course_management.demo import load_demo_data

    secret = os.environ.get("JWT_SECRET", "")
    base = url or f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8080')}"
    created = load_demo_data(base, secret, count)
    click.echo(f"demo courses created: {created}")


@main.group()
def stack() -> None:
    """The local stack: real Kafka, registry, PostgreSQL, Redis, Elasticsearch and S3."""


@stack.command("fetch")
def stack_fetch() -> None:
    """Download the stack's Java servers from Maven Central into the cache."""
    from course_management.stack.downloads import fetch_all

    fetch_all()


@stack.command("up")
@click.option("--no-search", is_flag=True, help="no Elasticsearch (PostgreSQL full-text search)")
def stack_up(no_search: bool) -> None:
    """Start the stack, provision it, write .stack/env, and wait for Ctrl-C."""
    from course_management.stack.servers import LocalStack

    _exit_on_sigterm()
    local = LocalStack(search=not no_search)
    env = _start_stack(local)
    click.echo(f"stack is up; settings written to {STACK_ENV}. Ctrl-C stops it.")
    _print_env(env)
    try:
        _wait_for_signal()
    finally:
        local.stop()


@main.command()
@click.option("--port", default=None, type=int, help="HTTP port (default: HTTP_PORT or 8080)")
@click.option("--no-search", is_flag=True, help="no Elasticsearch (PostgreSQL full-text search)")
@click.option("--demo/--no-demo", default=True, show_default=True)
def dev(port: int | None, no_search: bool, demo: bool) -> None:
    """Everything for a local run: stack, provisioning, worker on :8080, demo data."""
    from course_management.stack.servers import LocalStack, wait_until

    _exit_on_sigterm()
    started = time.monotonic()
    local = LocalStack(search=not no_search)
    worker_proc: subprocess.Popen[bytes] | None = None
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
            from course_management.demo import (
                catalog_lists,
                load_demo_data,
                published_demo_courses,
            )

            load_demo_data(base, env["JWT_SECRET"], 12)
            # The banner's catalog query should find them when it is printed.
            wanted = published_demo_courses(12)
            wait_until(lambda: catalog_lists(base, wanted), 30, "the demo courses in the catalog")
        _print_banner(base, env, local.versions(), time.monotonic() - started)
        _wait_for_signal(worker_proc)
    finally:
        if worker_proc is not None and worker_proc.poll() is None:
            worker_proc.terminate()
            try:
                worker_proc.wait(30)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
        local.stop()
        click.echo("stopped everything that was started")


def _exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _ready(base: str, proc: subprocess.Popen[bytes]) -> bool:
    import urllib.request

    if proc.poll() is not None:
        raise RuntimeError(f"the worker exited with code {proc.returncode}")
    with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def _start_stack(local: Any, port: int | None = None) -> dict[str, str]:
    from course_management.provisioning import provision_all

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
    from course_management.api.auth import issue_token

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
    while not stop:
        if proc is not None and proc.poll() is not None:
            click.echo(f"the worker exited with code {proc.returncode}", err=True)
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main()
