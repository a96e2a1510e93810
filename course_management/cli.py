"""The `course-management` command: worker, provisioning, search rebuilds, migrations,
demo data, dev tokens. (The local dev stack has its own: `python -m devstack`.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from course_management.ops.cli_support import Bars as _Bars
from course_management.ops.cli_support import setting_options as _setting_options
from course_management.ops.cli_support import settings_from as _settings
from course_management.ops.commands import ops

STACK_ENV = Path(".stack") / "env"


@click.group()
def main() -> None:
    """MoocFlix course-management-service."""


@main.command()
@_setting_options
def worker(**overrides: Any) -> None:
    """Run the Faust worker with the HTTP API beside it."""
    settings = _settings(overrides)
    from course_management.startup import run_worker

    run_worker(settings)


@main.command()
@_setting_options
def sink(**overrides: Any) -> None:
    """Run the sinks alone (the PostgreSQL mirror and catalog, the search index); the
    workers then run with RUN_SINKS=false."""
    settings = _settings(overrides)
    from course_management.sinks.process import run_sinks

    run_sinks(settings)


@main.command()
@_setting_options
def provision(**overrides: Any) -> None:
    """Create topics, register schemas, migrate the database, create the bucket and index."""
    from course_management.ops.provisioning import provision_all

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

    from course_management.catalog.rebuild_index import rebuild
    from course_management.catalog.rebuild_table import rebuild_catalog_table

    settings = _settings(overrides)
    target = target or ("index" if settings.search_url else "postgres")
    if target == "index" and not settings.search_url:
        click.echo("SEARCH_URL is not set: there is no search index to rebuild", err=True)
        sys.exit(2)
    build = rebuild if target == "index" else rebuild_catalog_table
    with _Bars() as bars:
        bars.step(f"rebuilding {target}")
        result = asyncio.run(build(settings, bars.read))
    click.echo(json.dumps(result))


@main.command()
@click.argument("what", type=click.Choice(["course", "learner"]))
@click.argument("course_id")
@click.argument("user_id", required=False)
@_setting_options
def history(what: str, course_id: str, user_id: str | None, **overrides: Any) -> None:
    """A course's history (`history course <courseId>`) or a learner's (`history learner
    <courseId> <userId>`), every entry as the history routes show them."""
    import asyncio

    from course_management.ops.history import print_history

    if (what == "learner") != (user_id is not None):
        click.echo("history learner takes <courseId> <userId>; history course <courseId>", err=True)
        sys.exit(2)
    entries = asyncio.run(print_history(_settings(overrides), course_id, user_id))
    if not entries:
        click.echo(f"no history for {course_id} {user_id or ''}".rstrip(), err=True)
        sys.exit(1)
    click.echo(json.dumps(entries, indent=2))


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
    from course_management.ops.demo import load_demo_data

    secret = os.environ.get("JWT_SECRET", "")
    base = url or f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8080')}"
    created = load_demo_data(
        base,
        secret,
        count,
        issuer=os.environ.get("JWT_ISSUER") or None,
        audience=os.environ.get("JWT_AUDIENCE") or None,
    )
    click.echo(f"demo courses created: {created}")


main.add_command(ops)

if __name__ == "__main__":
    main()
