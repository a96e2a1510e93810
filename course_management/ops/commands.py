"""`course-management ops`: an operator's repair tools (docs/runbook.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from course_management.config import Settings
from course_management.ops.cli_support import Bars as _Bars
from course_management.ops.cli_support import setting_options as _setting_options
from course_management.ops.cli_support import settings_from as _settings


@click.group()
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
def webhooks() -> None:
    """Webhook subscriptions and their deliveries (CONTRACT §5.4, decision 63)."""


@webhooks.command("show")
@_setting_options
def webhooks_show(**overrides: Any) -> None:
    """Every subscription with its status, last delivery and error, and pending count."""
    import asyncio

    from course_management.ops.webhooks import show_webhooks

    click.echo(json.dumps({"webhooks": asyncio.run(show_webhooks(_settings(overrides)))}))


@webhooks.command("pause")
@click.argument("webhook_id")
@_setting_options
def webhooks_pause(webhook_id: str, **overrides: Any) -> None:
    """Stop its deliveries at once; its position is kept for `resume`."""
    _set_webhook_state(webhook_id, True, overrides)


@webhooks.command("resume")
@click.argument("webhook_id")
@_setting_options
def webhooks_resume(webhook_id: str, **overrides: Any) -> None:
    """Deliver again, from where it was paused, in order."""
    _set_webhook_state(webhook_id, False, overrides)


def _set_webhook_state(webhook_id: str, pause: bool, overrides: dict[str, Any]) -> None:
    import asyncio

    from course_management.ops.webhooks import set_webhook_state

    found = asyncio.run(set_webhook_state(_settings(overrides), webhook_id, pause))
    if found is None:
        click.echo(f"no webhook subscription {webhook_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps(found))


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
