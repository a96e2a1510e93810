"""One correction to faust-streaming's offset bookkeeping, applied when the app is built.

`Consumer._new_offset` (faust-streaming 0.15.3) refuses to commit past a hole at the head
of the acked offsets only when the hole is two records or more
(`min(acked) - committed_offset > 1`, and not at all when the committed offset is 0),
so a single record that was never processed is committed over and lost for good. Faust
can skip a record after a restart (it resumes partitions before seeking them, faust
#216), and the SIGKILL test saw exactly that: one enrollment missing of 1,000.

With this correction a head hole of any size holds the commit back; the worker's
partition watch (runtime.py) then sees the stuck partition and rewinds it to its
committed offset, and the skipped record is processed. This service's stream topics
have no legitimate offset gaps (no transactions; the only compacted topics are changelogs
and the catalog feed, which Faust does not commit for this service's agents).
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer

_original_new_offset = Consumer._new_offset


def _new_offset(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    committed = self._committed_offset[tp]
    if acked and committed is not None and min(acked) > committed and not self._gap[tp]:
        return None  # the record at `committed` was never acked: do not commit past it
    result: int | None = _original_new_offset(self, tp)
    return result


def apply() -> None:
    """Idempotent."""
    Consumer._new_offset = _new_offset
