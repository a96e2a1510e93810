"""The worker's local RocksDB tables are trusted only after a clean stop.

Faust writes a table change into the local RocksDB store at once and sends it to the
changelog topic soon after. A worker killed in between leaves local tables *ahead* of
their changelogs, and on restart Faust replays the changelog from its last persisted
offset over them, which can put an older value of a key back while a newer value of
another key (written after it) stays. The SIGKILL test saw exactly this: the seats
record of a course replayed to an older count while the enrollment written after it
stayed, so the redelivered `user_enrolled` was a duplicate and one seat was never
counted (999 of 1,000).

The changelog on its own is always a consistent prefix of the writes (one producer,
in order, flushed before any input offset is committed), so after an unclean stop the
local tables are discarded and restored from the changelogs alone, as Kafka Streams
does under exactly-once. A clean stop leaves a marker that lets the next start keep
them (restoring only the changelog's tail).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "clean-stop"
PUBLISHED = "published.json"


def discard_after_unclean_stop(datadir: Path, tabledir: Path) -> bool:
    """At start-up: discard the local tables unless the last stop was clean.

    Returns True when tables were discarded. The marker is consumed, so a crash of this
    run is detected by the next one.
    """
    marker = datadir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if clean or not tabledir.exists() or not any(p.suffix == ".db" for p in tabledir.iterdir()):
        return False  # no store held (a first start): nothing to discard
    log.warning(
        "the last stop was not clean: local tables discarded, restoring them from changelogs",
        extra={"tabledir": str(tabledir)},
    )
    shutil.rmtree(tabledir)
    return True


def mark_clean_stop(datadir: Path) -> None:
    """After the worker stopped cleanly (changelogs flushed, offsets committed)."""
    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / MARKER).write_text("the tables beside this file were closed cleanly\n")


def remember_published(datadir: Path, published: dict[int, int]) -> None:
    """At a clean stop: up to where this worker published each partition's outboxes (the
    changelog's end offset after the unit), so that the next start, keeping its tables,
    does not publish its last outboxes again (streams/apply.py)."""
    pending = datadir / f"{PUBLISHED}.tmp"
    pending.write_text(json.dumps({str(p): o for p, o in published.items()}))
    os.replace(pending, datadir / PUBLISHED)


def remembered_published(datadir: Path) -> dict[int, int]:
    """What the last clean stop remembered (consumed: only the next start trusts it)."""
    path = datadir / PUBLISHED
    try:
        note = json.loads(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return {}
    if not isinstance(note, dict):
        return {}
    return {int(p): int(o) for p, o in note.items()}
