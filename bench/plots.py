"""Figures for docs/benchmarks.md: latency distributions side by side, and throughput."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.load import Load


def latency_and_throughput(loads: Sequence[Load], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for load in loads:
        points = sorted(load.percentiles_us.items())
        left.plot([p for p, _ in points], [us / 1000 for _, us in points], label=load.name)
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms)")
    left.set_yscale("log")
    left.set_title("latency distribution")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.barh([load.name for load in loads], [load.rps for load in loads])
    right.set_xlabel("requests per second")
    right.set_title("throughput")
    right.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars(
    values: dict[str, float], path: str | Path, title: str, unit: str, shown: str = ",.0f"
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(values) + 1.5))
    ax.barh(list(values), list(values.values()))
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.invert_yaxis()
    for y, v in enumerate(values.values()):
        ax.text(v, y, f" {v:{shown}}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def distributions(samples: dict[str, list[float]], path: str | Path, title: str) -> None:
    """Latency percentiles (ms) of each named sample set, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in samples.items():
        ordered = sorted(values)
        points = [100 * (i + 0.5) / len(ordered) for i in range(len(ordered))]
        ax.plot(points, [v * 1000 for v in ordered], label=name)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
