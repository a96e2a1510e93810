"""The garbage collector of a long-running worker (decisions 41 and 64).

- **The start-up heap frozen** (`gc.freeze`): Faust, the schemas and the routes are never
  garbage, and scanning them made each full collection pause the loop for 110-130 ms.
- **Full collections rarer**: one for every `GC_OLD_THRESHOLD` middle collections (100,
  not CPython's 10). A full collection scans every object alive since the freeze, every
  open stream's among them: with 1,000 live streams one came every 3 s, and 4 in 5
  paused the loop for over 50 ms. The young and middle collections, which stay short, are
  CPython's.
- **Every collection timed** (`cms_gc_pause_seconds{generation}`).
"""

from __future__ import annotations

import gc

from course_management.infra.metrics import observe_gc_pauses


def settle_heap(old_threshold: int) -> int:
    """Collects once, freezes what is alive, sets the full collections' threshold (the
    younger ones stay CPython's), times collections from now on. Returns the objects
    frozen."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, old_threshold)
    observe_gc_pauses()
    return gc.get_freeze_count()
