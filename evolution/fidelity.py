"""Low-fidelity training in chunks: the helper every cheap training-based estimator shares.

``TrainRun`` is ``TrainEstimator``'s loop (same seeded init, data order, Adam and schedule, so a
run advanced to the end scores what ``TrainEstimator`` scores) cut into pieces a caller advances
and scores in between: successive halving promotes a run, a learning curve reads its accuracies,
early stopping abandons it.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from evolution import cost
from evolution.scoring import finite
from evolution.train_estimator import TrainEstimator, genome_seed
from evolution.genome import Genome
from evolution.network import SparseNet


class TrainRun:
    """One genome's training by ``trainer``'s recipe over ``total`` steps, advanced on demand.

    ``curve`` holds ``(step, validation accuracy)`` of every ``score()``; ``steps`` how many were run.
    """

    def __init__(self, genome: Genome, trainer: TrainEstimator, total: int | None = None) -> None:
        self.genome, self.trainer = genome, trainer
        x, y = trainer._split("train")
        self.x, self.y = x, y
        self.total = total if total is not None else total_steps(trainer, len(y))
        self.gen = torch.Generator().manual_seed(genome_seed(genome, trainer.seed))
        self.net = SparseNet(genome, self.gen)
        if trainer.initializer is not None:
            self.net.set_weights(trainer.initializer.initialize(genome).weights())
        self.net = self.net.to(trainer.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=trainer.lr)
        self.order, self.pos, self.steps = torch.randperm(len(y), generator=self.gen), 0, 0
        self.curve: list[tuple[int, float]] = []

    def advance(self, n: int) -> None:
        """``n`` more steps (never past ``total``); a diverged loss raises ``FloatingPointError``."""
        t = self.trainer
        self.net.train()
        for _ in range(max(0, min(n, self.total - self.steps))):
            if t.schedule == "cosine":
                for group in self.opt.param_groups:
                    group["lr"] = t.lr * 0.5 * (1 + math.cos(math.pi * self.steps / self.total))
            if self.pos + t.batch_size > len(self.y):
                self.order, self.pos = torch.randperm(len(self.y), generator=self.gen), 0
            idx = self.order[self.pos:self.pos + t.batch_size].to(t.device)
            self.pos += t.batch_size
            loss = finite(F.cross_entropy(self.net(self.x[idx]), self.y[idx]), self.steps)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.steps += 1

    def score(self) -> float:
        acc = self.trainer.score(self.net)
        self.curve.append((self.steps, acc))
        return acc

    @property
    def done(self) -> bool:
        return self.steps >= self.total


def total_steps(trainer: TrainEstimator, n_train: int) -> int:
    """The steps ``trainer`` runs per genome (its ``steps``, or ``epochs`` over ``n_train`` examples)."""
    if trainer.epochs is None:
        return trainer.steps
    return int(np.ceil(trainer.epochs * n_train / trainer.batch_size))


def safely(fn: Callable[[], float]) -> tuple[float, str | None]:
    """``fn()`` or NaN and the one-line reason, as ``TrainEstimator`` records a failed genome."""
    try:
        return fn(), None
    except FloatingPointError as err:
        return float("nan"), str(err)
    except Exception as err:  # a failed candidate is recorded, never crashes the search
        return float("nan"), f"{type(err).__name__}: {err}"


def flops_of(genome: Genome) -> int:
    return cost.flops(genome).total


def pareto_rank(error: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Non-dominated sorting rank (0: the front) on (error, FLOPs), both minimised; NaN errors last."""
    from evolution.nsga2 import non_dominated_sort

    err = np.where(np.isfinite(error), error, np.inf)
    F_ = np.stack([np.nan_to_num(err, posinf=1e9), np.asarray(flops, dtype=float)], 1)
    return np.asarray(non_dominated_sort(F_))
