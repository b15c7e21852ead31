"""Rank averaging of estimators: each member scores the genomes; the ensemble's score is the mean,
over members, of each score's percentile among every score that member gave so far (this batch
included), so scores of different members, scales and batches average and compare."""
from __future__ import annotations

import time
from bisect import bisect_left, bisect_right, insort
from typing import Sequence

import numpy as np

from evolution.estimators import Estimate, Parent, build_estimator
from evolution.genome import Genome


class EnsembleEstimator:
    """``members``: estimator specs ``{class_path, init_args}`` (built on ``data``) or estimators;
    ``weights``: one per member (default equal). A genome any member fails on fails."""

    def __init__(self, data, members: Sequence, weights: Sequence[float] | None = None) -> None:
        if not members:
            raise ValueError("EnsembleEstimator: no members")
        self.members = [build_estimator(m, data, where="EnsembleEstimator member") if isinstance(m, dict) else m
                        for m in members]
        w = np.ones(len(self.members)) if weights is None else np.asarray(weights, dtype=float)
        if len(w) != len(self.members) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"EnsembleEstimator: weights {list(w)}: expected {len(self.members)} non-negative, not all 0")
        self.weights = w / w.sum()
        self.seen: list[list[float]] = [[] for _ in self.members]  # sorted scores per member

    def _percentile(self, m: int, s: float) -> float:
        seen = self.seen[m]
        return (bisect_left(seen, s) + bisect_right(seen, s)) / (2 * len(seen))

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        start = time.perf_counter()
        per = [m.estimate(genomes, parents) for m in self.members]
        for m, ests in enumerate(per):
            for e in ests:
                if e.ok:
                    insort(self.seen[m], e.score)
        seconds = (time.perf_counter() - start) / max(1, len(genomes))
        out = []
        for i in range(len(genomes)):
            bad = [per[m][i].error or "not finite" for m in range(len(per)) if not per[m][i].ok]
            if bad:
                out.append(Estimate(float("nan"), seconds, bad[0]))
                continue
            score = sum(w * self._percentile(m, per[m][i].score) for m, w in enumerate(self.weights))
            out.append(Estimate(float(score), seconds))
        return out

    def update(self, population: Sequence[Genome]) -> None:
        for m in self.members:
            if hasattr(m, "update"):
                m.update(population)

    def state_dict(self) -> dict:
        return {"seen": self.seen, "members": [m.state_dict() if hasattr(m, "state_dict") else None for m in self.members]}

    def load_state_dict(self, state: dict) -> None:
        self.seen = [list(s) for s in state["seen"]]
        for m, s in zip(self.members, state["members"]):
            if s is not None and hasattr(m, "load_state_dict"):
                m.load_state_dict(s)
