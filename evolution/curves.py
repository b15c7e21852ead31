"""Learning curves: extrapolation to a full budget, and multi-objective early stopping.

``fit_curve`` fits the saturating power law ``acc(t) = c - a * t**-alpha`` to a few (step, accuracy)
points and predicts the accuracy at a later step, falling back to the last value whenever the fit is
unstable. ``CurveEstimator`` trains a few steps and scores a genome by that prediction.

``EarlyStopTrain`` trains every genome by its full recipe but stops one as soon as an optimistic
projection of its final accuracy cannot make it non-dominated against the archive of the genomes it
trained to the end (on accuracy and FLOPs, which are known exactly). The projection is the accuracy
now plus the largest gain (``quantile`` 1; a lower quantile stops more, at a risk) from this point to
the end that the fully trained genomes made, plus a ``slack``: an empirical bound that needs ``calibrate`` full curves before anything is stopped.
``projection: linear`` instead regresses the final accuracy on the accuracy at the check over the
fully trained genomes and adds the largest residual: a gain that depends on where a genome stands.
The decision itself is ``StopRule`` (no training in it), so recorded curves can be replayed under
other settings.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from evolution.estimators import Estimate, Parent, TrainEstimator
from evolution.fidelity import TrainRun, flops_of, safely
from evolution.genome import Genome


def _power_law(t: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(t, -alpha)


def fit_curve(steps: Sequence[float], accs: Sequence[float], at: float, max_rmse: float = 0.05) -> float:
    """The accuracy at step ``at`` of the saturating curve through ``(steps, accs)``; the last
    accuracy when there are fewer than 3 points, the fit fails, fits badly (RMSE > ``max_rmse``) or
    predicts outside [0, 1] or below the last value minus the fit's own error."""
    from scipy.optimize import curve_fit

    t, y = np.asarray(steps, dtype=float), np.asarray(accs, dtype=float)
    last = float(y[-1]) if len(y) else float("nan")
    if len(y) < 3 or not np.isfinite(y).all() or (t <= 0).any():
        return last
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, cov = curve_fit(_power_law, t, y, p0=(min(1.0, y.max() + 0.05), max(1e-3, y.max() - y.min()) * t[0] ** 0.5, 0.5),
                               bounds=([0.0, 0.0, 0.05], [1.0, 100.0, 3.0]), maxfev=2000)
    except (RuntimeError, ValueError):
        return last
    rmse = float(np.sqrt(np.mean((_power_law(t, *p) - y) ** 2)))
    pred = float(_power_law(np.asarray([at], dtype=float), *p)[0])
    if not np.isfinite(pred) or not np.isfinite(cov).all() or rmse > max_rmse or not 0.0 <= pred <= 1.0 \
            or pred < last - max(rmse, 0.01):
        return last
    return pred


class CurveEstimator(TrainEstimator):
    """``steps`` steps of low-fidelity training scored at ``points`` evenly spaced steps; the score
    is ``fit_curve``'s prediction at ``horizon`` steps (constant learning rate: a power law fits it)."""

    def __init__(self, data, steps: int = 100, horizon: int = 1000, points: int = 5, seed: int = 0, **kwargs) -> None:
        super().__init__(data, steps=steps, seed=seed, **kwargs)
        if points < 1 or horizon < steps:
            raise ValueError(f"CurveEstimator: points {points}, horizon {horizon}: expected points >= 1, horizon >= steps")
        self.horizon, self.points = horizon, points

    def _train(self, genome: Genome, parent: Parent | None):
        run = TrainRun(genome, self, self.steps)
        marks = np.unique(np.linspace(self.steps / self.points, self.steps, self.points).round().astype(int))
        for m in marks:
            run.advance(int(m) - run.steps)
            run.score()
        s, a = zip(*run.curve)
        return fit_curve(s, a, self.horizon), None


class StopRule:
    """The stopping decision apart from any training, so a recorded stream of learning curves can be
    replayed under other settings (``benchmarks/early_stop_replay.py``).

    It keeps the archive of the genomes trained to the end (accuracy, FLOPs; non-dominated), their
    gains from each check to the end and their final accuracies, and stops a genome at a check when
    its optimistic projection is dominated by that archive.
    """

    def __init__(self, calibrate: int = 8, slack: float = 0.005, quantile: float = 1.0,
                 projection: str = "gain") -> None:
        if calibrate < 1:
            raise ValueError(f"EarlyStopTrain: calibrate {calibrate}: expected >= 1")
        if projection not in ("gain", "linear"):
            raise ValueError(f"EarlyStopTrain: projection {projection!r}: expected 'gain' or 'linear'")
        self.calibrate, self.slack, self.quantile, self.kind = calibrate, slack, quantile, projection
        self.finals: list[float] = []  # final accuracy of each fully trained genome (beside its gains)
        self.archive: list[tuple[float, int]] = []  # (accuracy, FLOPs) of fully trained genomes, non-dominated
        self.gains: list[list[float]] = []  # per fully trained genome: final minus accuracy at each check

    def projection(self, acc: float, check: int) -> float | None:
        """Optimistic final accuracy of a genome at ``acc`` after check ``check``; None before calibration."""
        if len(self.gains) < self.calibrate:
            return None
        gains = np.array([g[check] for g in self.gains])
        if self.kind == "linear" and len(self.finals) == len(gains):
            # final ~ a + b * acc now, over the fully trained genomes, plus the largest residual: the
            # gain of a genome depends on how far it is from the top, which one gain for all ignores
            final = np.array(self.finals)
            now = final - gains
            b, a = np.polyfit(now, final, 1) if np.ptp(now) > 0 else (1.0, float(np.mean(gains)))
            resid = final - (a + b * now)
            return float(a + b * acc + np.quantile(resid, self.quantile) + self.slack)
        return acc + float(np.quantile(gains, self.quantile)) + self.slack

    def dominated(self, acc: float, flops: int) -> bool:
        """Whether an archive genome is at least as accurate and as cheap, and better in one."""
        return any(a >= acc and f <= flops and (a > acc or f < flops) for a, f in self.archive)

    def stop(self, acc: float, check: int, flops: int) -> float | None:
        """The projection (unclipped) when a genome at ``acc`` after check ``check`` stops, else None."""
        proj = self.projection(acc, check)
        return proj if proj is not None and self.dominated(min(1.0, proj), flops) else None

    def finished(self, accs: Sequence[float], final: float, flops: int) -> None:
        """Record a genome trained to the end: its accuracies at the checks and at the end."""
        self.gains.append([final - a for a in accs])
        self.finals.append(final)
        if not self.dominated(final, flops):
            self.archive = [(a, f) for a, f in self.archive if not (final >= a and flops <= f)] + [(final, flops)]

    def state_dict(self) -> dict:
        return {"archive": [list(p) for p in self.archive], "gains": self.gains, "finals": self.finals}

    def load_state_dict(self, state: dict) -> None:
        self.archive = [(float(a), int(f)) for a, f in state["archive"]]
        self.gains, self.finals = state["gains"], list(state.get("finals", []))


class EarlyStopTrain(TrainEstimator):
    """Full training (a ``TrainEstimator`` recipe: ``epochs`` or ``steps``, usually ``schedule:
    cosine``) with multi-objective early stopping at fractions ``checks`` of the steps (``StopRule``).

    A stopped genome scores its optimistic projection (which the archive dominates); ``report()``
    gives the steps run against the steps full training would have run, and every ``sample``-th
    stopped genome with the archive it was stopped against, for the check whether it would have
    made the front had it trained to the end. ``stop: false`` measures without stopping.
    """

    def __init__(self, data, checks: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 0.7), calibrate: int = 8,
                 slack: float = 0.005, quantile: float = 1.0, projection: str = "gain", sample: int = 5,
                 stop: bool = True, seed: int = 0, **kwargs) -> None:
        super().__init__(data, seed=seed, **kwargs)
        if not all(0 < c < 1 for c in checks):
            raise ValueError(f"EarlyStopTrain: checks {list(checks)} must lie in (0, 1)")
        self.rule = StopRule(calibrate, slack, quantile, projection)
        self.checks, self.sample, self.stop = sorted(checks), sample, stop
        self.stats = {"candidates": 0, "stopped": 0, "steps_run": 0, "steps_full": 0}
        self.stops: list[dict] = []

    def use_executor(self, executor) -> None:
        """Only in this process: each stop is decided against the archive of the genomes trained before."""
        if executor is not None and executor.name != "local":
            raise ValueError(f"executor {executor.name!r}: EarlyStopTrain stops candidates against the archive it "
                             "keeps in this process; run it with executor local")
        super().use_executor(executor)

    def _one(self, genome: Genome, parent: Parent | None) -> Estimate:
        import time

        start = time.perf_counter()
        flops = flops_of(genome)
        run = TrainRun(genome, self)
        self.stats["candidates"] += 1
        self.stats["steps_full"] += run.total

        def go() -> float:
            accs = []
            for i, frac in enumerate(self.checks):
                run.advance(int(round(frac * run.total)) - run.steps)
                acc = run.score()
                accs.append(acc)
                proj = self.rule.stop(acc, i, flops)
                if proj is not None and self.stop:
                    self.stats["stopped"] += 1
                    if (self.stats["stopped"] - 1) % self.sample == 0:
                        self.stops.append({"genome": genome.to_json(), "flops": flops, "at": frac,
                                           "projection": proj, "archive": [list(p) for p in self.rule.archive]})
                    return min(1.0, proj)
            run.advance(run.total - run.steps)
            final = run.score()
            self.rule.finished(accs, final, flops)
            return final

        score, err = safely(go)
        self.stats["steps_run"] += run.steps
        return Estimate(score, time.perf_counter() - start, err)

    def report(self) -> dict:
        s = self.stats
        return {**s, "steps_saved": 1 - s["steps_run"] / max(1, s["steps_full"]), "stops_sampled": self.stops}

    def state_dict(self) -> dict:
        return {**self.rule.state_dict(), "stats": dict(self.stats), "stops": self.stops}

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)
        self.stats, self.stops = dict(state["stats"]), list(state["stops"])
