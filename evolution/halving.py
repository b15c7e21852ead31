"""Successive halving inside a generation: cheap training for all children, more for the better ones.

Every genome of a batch trains ``min_steps``; the better ``1/eta`` of them by Pareto rank on
(estimated error, FLOPs) (accuracy breaks ties within a rank) train on to ``min_steps * eta``, and so
on for ``rungs`` rungs: the bracket. A genome's score is its accuracy at the highest rung it
reached plus the mean gain, from that rung to the top one, of the genomes that reached the top
(running over batches), so scores of different fidelities compare.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from evolution.estimators import Estimate, Parent, TrainEstimator
from evolution.fidelity import TrainRun, flops_of, pareto_rank, safely
from evolution.genome import Genome


class HalvingEstimator:
    """Successive halving over each batch of genomes (a search's children of one iteration).

    Training settings are ``TrainEstimator``'s (``batch_size``, ``lr``, ``max_val``, ``seed``...);
    ``runner(genome, total_steps)`` may replace the training (tests use synthetic curves). After a
    call, ``last_steps`` holds the steps each genome got.
    """

    def __init__(self, data, min_steps: int = 25, eta: int = 2, rungs: int = 3,
                 runner: Callable[[Genome, int], object] | None = None, seed: int = 0, **train) -> None:
        if min_steps < 1 or eta < 2 or rungs < 1:
            raise ValueError(f"HalvingEstimator: min_steps {min_steps}, eta {eta}, rungs {rungs}: expected "
                             "min_steps >= 1, eta >= 2, rungs >= 1")
        self.min_steps, self.eta, self.rungs = min_steps, eta, rungs
        self.trainer = TrainEstimator(data, steps=self.budget(rungs - 1), seed=seed, **train)
        self.runner = runner or (lambda g, total: TrainRun(g, self.trainer, total))
        self.gain_sum = np.zeros(rungs)  # per rung: summed gain to the top rung of genomes that reached it
        self.gain_n = 0
        self.last_steps: list[int] = []

    def budget(self, rung: int) -> int:
        return self.min_steps * self.eta ** rung

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        start = time.perf_counter()
        n = len(genomes)
        flops = np.array([flops_of(g) for g in genomes], dtype=float)
        runs: list = [None] * n
        errors: list[str | None] = [None] * n
        acc = np.full((n, self.rungs), np.nan)
        alive = list(range(n))
        for rung in range(self.rungs):
            for i in alive:
                def step(i=i) -> float:
                    if runs[i] is None:
                        runs[i] = self.runner(genomes[i], self.budget(self.rungs - 1))
                    runs[i].advance(self.budget(rung) - runs[i].steps)
                    return runs[i].score()
                acc[i, rung], errors[i] = safely(step)
            alive = [i for i in alive if errors[i] is None]
            if rung == self.rungs - 1 or not alive:
                break
            keep = max(1, int(np.ceil(len(alive) / self.eta)))
            rank = pareto_rank(1 - acc[alive, rung], flops[alive])
            order = sorted(range(len(alive)), key=lambda j: (rank[j], -acc[alive[j], rung]))
            alive = [alive[j] for j in order[:keep]]
        top = [i for i in range(n) if np.isfinite(acc[i, -1])]
        if top:  # the gain from each rung to the top rung, averaged over every batch so far
            self.gain_sum += np.nansum(acc[top, -1:] - acc[top], axis=0)
            self.gain_n += len(top)
        gain = self.gain_sum / max(1, self.gain_n)
        self.last_steps = [0 if r is None else int(r.steps) for r in runs]
        seconds = (time.perf_counter() - start) / max(1, n)
        out = []
        for i in range(n):
            reached = np.flatnonzero(np.isfinite(acc[i]))
            if errors[i] is not None or not len(reached):
                out.append(Estimate(float("nan"), seconds, errors[i] or "not trained"))
                continue
            r = int(reached[-1])
            out.append(Estimate(float(min(1.0, acc[i, r] + gain[r])), seconds))
        return out

    def state_dict(self) -> dict:
        return {"gain_sum": self.gain_sum.tolist(), "gain_n": self.gain_n}

    def load_state_dict(self, state: dict) -> None:
        self.gain_sum, self.gain_n = np.asarray(state["gain_sum"], dtype=float), int(state["gain_n"])
