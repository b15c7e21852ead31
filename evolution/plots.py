"""Plots of searches and verifications (matplotlib, written to PNG without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

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


def plot_verify(cands: list[dict], path: str | Path, dense: list[dict] | None = None) -> None:
    """Left: estimate vs retrained validation accuracy; right: estimated vs retrained front, and
    ``dense`` networks (``name``, ``flops``, ``val_acc``) trained the same way, where given."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    est = [c["estimate"] for c in cands]
    val = [c["val_acc"] for c in cands]
    a.scatter(est, val, c=["C3" if c["on_front"] else "C0" for c in cands], s=18)
    a.set_xlabel("estimate")
    a.set_ylabel("retrained validation accuracy")
    a.set_title("estimate vs truth (red: estimated front)")
    front = sorted((c for c in cands if c["on_front"]), key=lambda c: c["flops"])
    flops = [c["flops"] for c in front]
    b.step(flops, [1 - c["estimate"] for c in front], where="post", label="estimated", color="C0")
    b.step(flops, [1 - c["val_acc"] for c in front], where="post", label="same candidates, retrained", color="C3")
    for d in dense or []:
        b.scatter([d["flops"]], [1 - d["val_acc"]], marker="x", color="k")
        b.annotate(d["name"], (d["flops"], 1 - d["val_acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if dense:
        b.scatter([], [], marker="x", color="k", label="dense MLPs, retrained")
    b.set_xscale("log")
    b.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short log axis
    b.set_xlabel("FLOPs per example")
    b.set_ylabel("validation error")
    b.set_title("front: estimated vs retrained")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
