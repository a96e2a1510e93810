"""The chaos run (`make chaos`): several workers on the local stack under mixed load while
faults drawn from a seed hit them and the servers; a checker then compares the whole
history with every store (docs/chaos.md).

Like `bench/` and `devstack/`, not part of the deployable package.

- `schedule`: the faults and their times, drawn from the seed (pure).
- `history`: the history file, one line per attempt, and how an answer is classified.
- `load`: the load generator (the API and the consumed topics).
- `faults`: carries out the schedule on the workers and the servers.
- `observe`: reads the topics and the stores once the faults stop.
- `verify`: what the history implies against what was observed (pure).
- `run`: puts them together in one folder per run.
"""
