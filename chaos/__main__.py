"""`python -m chaos [--seed N] [--duration S] [--short] [--out DIR]` (`make chaos`)."""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path

import click

from chaos.run import run, summary, write_report
from chaos.schedule import PROFILES


@click.command()
@click.option("--seed", type=int, default=None, help="draws the faults and the requests")
@click.option("--duration", type=float, default=None, help="seconds of load and faults")
@click.option("--short", is_flag=True, help="the short profile CI runs (fewer faults)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="the run's folder")
def main(seed: int | None, duration: float | None, short: bool, out: Path | None) -> None:
    """A chaos run on the local stack; exits 1 on any anomaly (the folder keeps it all)."""
    name = "short" if short else "full"
    profile = PROFILES[name]
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 10**6)
    folder = out or Path("chaos-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    # The clients' own logs (a broker going away is loud) go to the folder, not the screen.
    logging.basicConfig(
        filename=folder / "chaos.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )
    click.echo(f"chaos: seed {seed}, profile {name}, folder {folder}", err=True)
    report = run(seed, name, profile, duration or profile.duration_s, folder)
    write_report(report, folder)
    click.echo(summary(report))
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
