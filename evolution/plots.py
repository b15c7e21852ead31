"""Plots of searches and verifications (matplotlib, written to PNG without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_fronts(fronts: list[list[list[float]]], objectives: list[str], path: str | Path) -> None:
    """The estimated front of every iteration (first two objectives), later iterations darker."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, front in enumerate(fronts):
        pts = sorted(front, key=lambda p: p[1])
        if not pts:
            continue
        xs, ys = [p[1] for p in pts], [p[0] for p in pts]
        color = cmap(i / max(len(fronts) - 1, 1))
        ax.step(xs, ys, where="post", color=color, alpha=0.8, lw=1)
        ax.scatter(xs, ys, color=color, s=10, label=f"iteration {i}" if i in (0, len(fronts) - 1) else None)
    ax.set_xlabel(f"{objectives[1]} (normalised)")
    ax.set_ylabel(objectives[0])
    ax.set_title("estimated Pareto front per iteration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
