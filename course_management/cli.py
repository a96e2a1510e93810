"""The `course-management` command: worker, provisioning, search rebuilds, migrations,
demo data, dev tokens. (The local dev stack has its own: `python -m devstack`.)"""

from __future__ import annotations

import json
import os
import sys
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


class _Bars:
    """ops.progress.Steps as progress bars on stderr: one per step, counting records."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *_: object) -> None:
        self._close()

    def step(self, name: str) -> None:
        from tqdm import tqdm

        self._close()
        self._bar = tqdm(desc=name, unit="record", file=sys.stderr)

    def read(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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


@main.group()
def ops() -> None:
    """An operator's repair tools (docs/runbook.md)."""


@ops.group()
def dlq() -> None:
    """The dead-letter topics (`<topic>.dlq`): what is there and why, and replays."""


def _dlq_filters(fn: Any) -> Any:
    fn = click.option(
        "--topic", "topics", multiple=True, help="a dead-letter topic (default: all)"
    )(fn)
    fn = click.option(
        "--code", default=None, help="a reason code: malformed, refused, invalid, ..."
    )(fn)
    fn = click.option("--since", type=click.DateTime(), default=None, help="UTC, inclusive")(fn)
    fn = click.option("--until", type=click.DateTime(), default=None, help="UTC, exclusive")(fn)
    return fn


def _selected(
    settings: Settings, options: dict[str, Any], places: set[str] | None = None
) -> list[Any]:
    import asyncio
    from datetime import UTC

    from course_management.ops.dead_letters import read_dead_letters, select
    from course_management.topology import DLQ_TOPICS

    def utc(value: Any) -> Any:
        return value.replace(tzinfo=UTC) if value is not None else None

    with _Bars() as bars:
        bars.step("reading dead letters")
        topics = options["topics"] or DLQ_TOPICS
        letters = asyncio.run(
            read_dead_letters(settings.kafka_bootstrap_servers, topics, on_read=bars.read)
        )
    return select(
        letters,
        code=options["code"],
        since=utc(options["since"]),
        until=utc(options["until"]),
        places=places,
    )


@dlq.command("show")
@_dlq_filters
@_setting_options
def dlq_show(
    topics: tuple[str, ...], code: str | None, since: Any, until: Any, **overrides: Any
) -> None:
    """Print the dead letters (place, time, source topic, reason) and a summary, as JSON."""
    from course_management.ops.dead_letters import summary

    settings = _settings(overrides)
    options = {"topics": topics, "code": code, "since": since, "until": until}
    letters = _selected(settings, options)
    click.echo(
        json.dumps({"dead_letters": [d.shown() for d in letters], "summary": summary(letters)})
    )


@dlq.command("replay")
@_dlq_filters
@click.option("--place", "places", multiple=True, help="a record: <dlq topic>:<partition>:<offset>")
@click.option("--all", "everything", is_flag=True, help="every record the filters select")
@_setting_options
def dlq_replay(
    topics: tuple[str, ...],
    code: str | None,
    since: Any,
    until: Any,
    places: tuple[str, ...],
    everything: bool,
    **overrides: Any,
) -> None:
    """Send dead letters back to their source topic, after a fix; each place once ever."""
    import asyncio

    from course_management.ops.dead_letters import replay

    if not (places or code or everything):
        click.echo("say what to replay: --place, --code or --all", err=True)
        sys.exit(2)
    settings = _settings(overrides)
    options = {"topics": topics, "code": code, "since": since, "until": until}
    letters = _selected(settings, options, set(places) or None)
    with _Bars() as bars:
        bars.step("replaying")
        result = asyncio.run(replay(settings.kafka_bootstrap_servers, letters, bars.read))
    click.echo(json.dumps({"selected": len(letters), **result}))


@ops.command("check")
@_setting_options
def ops_check(**overrides: Any) -> None:
    """Compare the tables, the mirror and the catalog with the topics; print every
    difference (JSON) and exit 1 when there is one."""
    import asyncio

    from course_management.ops.check import check

    settings = _settings(overrides)
    with _Bars() as bars:
        differences = asyncio.run(check(settings, bars))
    by_store: dict[str, int] = {}
    for difference in differences:
        by_store[difference.store] = by_store.get(difference.store, 0) + 1
    shown = [d.shown() for d in differences]
    click.echo(
        json.dumps({"differences": shown, "summary": {"differences": len(shown), **by_store}})
    )
    sys.exit(1 if differences else 0)


@ops.group()
def completions() -> None:
    """The completions topic every worker's completions index reads (decision 57)."""


@completions.command("backfill")
@_setting_options
def completions_backfill(**overrides: Any) -> None:
    """Publish the entry of every course completion that lacks one (idempotent)."""
    import asyncio

    from course_management.ops.paths import backfill_completions

    click.echo(json.dumps(asyncio.run(backfill_completions(_settings(overrides)))))


@ops.command("timers")
@click.option("--course", "course_id", default=None, help="only this course's time locks")
@_setting_options
def ops_timers(course_id: str | None, **overrides: Any) -> None:
    """The time locks the agent has yet to release, oldest first, each with `late_s`
    (seconds past its moment; negative: still ahead)."""
    import asyncio

    from course_management.ops.paths import pending_timers

    found = asyncio.run(pending_timers(_settings(overrides), course_id))
    click.echo(json.dumps({"pending": found, "count": len(found)}))


@ops.group()
def mirror() -> None:
    """The PostgreSQL mirror of courses and enrollments."""


@mirror.command("rebuild")
@_setting_options
def mirror_rebuild(**overrides: Any) -> None:
    """Make every mirror row that differs from its event topic what the topic says."""
    import asyncio

    from course_management.ops.mirror_rebuild import rebuild_mirror

    settings = _settings(overrides)
    with _Bars() as bars:
        result = asyncio.run(rebuild_mirror(settings, bars))
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


if __name__ == "__main__":
    main()
