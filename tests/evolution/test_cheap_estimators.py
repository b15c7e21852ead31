"""The cheap estimators of issue 24: curve fitting, successive halving, multi-objective early
stopping, zero-cost proxies and the ensemble (the learned predictor: test_predictor.py)."""
from __future__ import annotations

import numpy as np
import pytest

from evolution import seeds
from evolution.curves import EarlyStopTrain, fit_curve
from evolution.ensemble import EnsembleEstimator
from evolution.estimators import Estimator, build_estimator
from evolution.genome import SearchSpace
from evolution.halving import HalvingEstimator
from evolution.proxies import PROXIES, ProxyEstimator


def test_curve_fit_recovers_a_known_saturating_curve():
    t = np.array([10, 20, 40, 60, 80, 100], dtype=float)
    acc = 0.92 - 0.6 * t ** -0.7
    assert fit_curve(t, acc, 1000) == pytest.approx(0.92 - 0.6 * 1000 ** -0.7, abs=2e-3)
    # unstable: too few points, or noise no saturating curve explains -> the last value
    assert fit_curve(t[:2], acc[:2], 1000) == acc[1]
    zigzag = np.array([0.1, 0.9, 0.1, 0.9, 0.1, 0.5])
    assert fit_curve(t, zigzag, 1000) == 0.5


class Synthetic:
    """A training run whose accuracy after s steps is q * (1 - exp(-s / 40))."""

    def __init__(self, q: float) -> None:
        self.q, self.steps = q, 0

    def advance(self, n: int) -> None:
        self.steps += n

    def score(self) -> float:
        return self.q * (1 - np.exp(-self.steps / 40))


def test_halving_gives_the_largest_budget_to_the_best_of_a_synthetic_set(data, genomes):
    gs = genomes(8)
    qual = np.linspace(0.5, 0.9, 8)[np.random.default_rng(1).permutation(8)]
    lookup = {id(g): q for g, q in zip(gs, qual)}
    # equal FLOPs for all: promotion is then by accuracy within the front's rank order
    est = HalvingEstimator(data, min_steps=10, eta=2, rungs=3, runner=lambda g, total: Synthetic(lookup[id(g)]))
    from unittest import mock

    with mock.patch("evolution.halving.flops_of", return_value=1000):
        out = est.estimate(gs)
    steps = np.array(est.last_steps)
    best = int(np.argmax(qual))
    assert steps[best] == 40 and steps.max() == 40 and (steps == 40).sum() == 2
    assert sorted(steps.tolist()) == [10, 10, 10, 10, 20, 20, 40, 40]
    # scores of lower rungs are lifted by the measured gain: the best is still the best
    assert int(np.argmax([e.score for e in out])) == best


def test_halving_promotes_by_pareto_rank_not_accuracy_alone(data, genomes):
    gs = genomes(4)
    qual = {id(gs[0]): 0.9, id(gs[1]): 0.85, id(gs[2]): 0.8, id(gs[3]): 0.5}
    flops = {id(gs[0]): 4000, id(gs[1]): 3000, id(gs[2]): 2000, id(gs[3]): 100}
    est = HalvingEstimator(data, min_steps=10, eta=2, rungs=2, runner=lambda g, total: Synthetic(qual[id(g)]))
    from unittest import mock

    with mock.patch("evolution.halving.flops_of", side_effect=lambda g: flops[id(g)]):
        est.estimate(gs)
    # all four are non-dominated; accuracy breaks the tie within the front: the two most accurate go on
    assert est.last_steps == [20, 20, 10, 10]


@pytest.mark.parametrize("projection", ["gain", "linear"])
def test_early_stopping_never_stops_a_candidate_that_ends_non_dominated(data, projection, genomes):
    rng = np.random.default_rng(0)
    n, checks = 40, (0.2, 0.5)
    final = rng.uniform(0.5, 0.95, n)
    flops = rng.integers(1_000, 100_000, n)

    class Run(Synthetic):
        total = 100

        def __init__(self, i):
            self.i, self.steps = i, 0
            self.curve = []

        def score(self):  # rises to final[i] at the end, faster for some
            frac = self.steps / self.total
            return final[self.i] * (1 - 0.5 * (1 - frac) ** (1 + self.i % 3))

        @property
        def done(self):
            return self.steps >= self.total

    gs = genomes(n, seed=3)
    index = {id(g): i for i, g in enumerate(gs)}
    from unittest import mock

    est = EarlyStopTrain(data, steps=100, checks=checks, calibrate=6, slack=0.0, projection=projection)
    with mock.patch("evolution.curves.TrainRun", side_effect=lambda g, t: Run(index[id(g)])), \
            mock.patch("evolution.curves.flops_of", side_effect=lambda g: int(flops[index[id(g)]])):
        out = []
        for g in gs:  # one at a time, as a search's stream of candidates
            out.append(est.estimate([g])[0].score)
    assert est.stats["stopped"] > 0 and est.report()["steps_saved"] > 0
    stopped = [i for i in range(n) if out[i] != pytest.approx(final[i])]
    assert len(stopped) == est.stats["stopped"]
    # a stopped candidate would not have been non-dominated among those trained before it (nor at the end)
    for i in stopped:
        before = [(final[j], flops[j]) for j in range(i) if j not in stopped]
        assert any(a >= final[i] and f <= flops[i] for a, f in before), i
    front = [i for i in range(n) if not any(final[j] >= final[i] and flops[j] <= flops[i] and j != i
                                           and (final[j] > final[i] or flops[j] < flops[i]) for j in range(n))]
    assert not set(front) & set(stopped)


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_proxies_are_finite_and_deterministic(data, proxy, genomes):
    gs = genomes(4) + [seeds.build("mlp:8", SearchSpace((1, 8, 8), 10, levels=2, width=16))]
    a = [e.score for e in ProxyEstimator(data, proxy, batch=32, seed=0).estimate(gs)]
    b = [e.score for e in ProxyEstimator(data, proxy, batch=32, seed=0).estimate(gs)]
    assert np.isfinite(a).all() and a == b and all(0 < s < 1 for s in a)
    if proxy != "params":
        assert len(set(a)) > 1  # it tells the genomes apart


def test_every_estimator_is_built_from_a_config_and_scores_a_batch(data, genomes):
    gs = genomes(6)
    specs = [
        {"class_path": "evolution.halving.HalvingEstimator", "init_args": {"min_steps": 2, "rungs": 2}},
        {"class_path": "evolution.curves.CurveEstimator", "init_args": {"steps": 6, "horizon": 50, "points": 3}},
        {"class_path": "evolution.curves.EarlyStopTrain", "init_args": {"steps": 6, "calibrate": 2}},
        {"class_path": "evolution.proxies.ProxyEstimator", "init_args": {"proxy": "synflow", "size": 1.0}},
        {"class_path": "evolution.predictor.PredictorEstimator", "init_args": {"warmup": 3, "steps": 4, "bag": 2}},
        {"class_path": "evolution.predictor.PredictorEstimator",
         "init_args": {"model": "pairwise", "proxy": "naswot", "warmup": 3, "steps": 4}},
        {"class_path": "evolution.ensemble.EnsembleEstimator", "init_args": {"members": [
            {"class_path": "evolution.proxies.ProxyEstimator", "init_args": {"proxy": "naswot"}},
            {"class_path": "evolution.proxies.ProxyEstimator", "init_args": {"proxy": "params"}}]}},
    ]
    for spec in specs:
        est = build_estimator(spec, data)
        assert isinstance(est, Estimator)
        out = est.estimate(gs[:3]) + est.estimate(gs[3:])
        assert len(out) == 6 and all(e.ok for e in out), spec["class_path"]
    with pytest.raises(ValueError, match="proxy 'nope'"):
        ProxyEstimator(data, "nope")


def test_ensemble_averages_percentiles_of_its_members(data, genomes):
    class Fixed:
        def __init__(self, scores):
            self.scores = iter(scores)

        def estimate(self, genomes, parents=None):
            from evolution.estimators import Estimate

            return [Estimate(next(self.scores), 0.0) for _ in genomes]

    ens = EnsembleEstimator(data, [Fixed([1.0, 2.0, 3.0]), Fixed([30.0, 20.0, 10.0])])
    out = [e.score for e in ens.estimate(genomes(3))]
    assert out == pytest.approx([0.5, 0.5, 0.5])  # the members disagree completely
    ens = EnsembleEstimator(data, [Fixed([1.0, 2.0, 3.0]), Fixed([10.0, 20.0, 30.0])], weights=[1, 3])
    out = [e.score for e in ens.estimate(genomes(3))]
    assert out == sorted(out) and out[0] < out[2]


def test_early_stopping_refuses_a_remote_executor_and_curves_start_from_an_initializer(data, genomes):
    class Remote:
        name = "ray"

    with pytest.raises(ValueError, match="executor 'ray': EarlyStopTrain stops candidates against the archive"):
        EarlyStopTrain(data, steps=4).use_executor(Remote())

    from evolution.curves import CurveEstimator
    from evolution.network import SparseNet

    g = genomes(1)[0]
    asked = []

    class Start:  # an Initializer: the network it hands out is the one the curve starts from
        def initialize(self, genome):
            asked.append(genome)
            return SparseNet(genome, __import__("torch").Generator().manual_seed(1))

    est = CurveEstimator(data, steps=4, initializer=Start(), horizon=10, points=2)
    out = est.estimate([g])
    assert out[0].ok, out[0].error
    assert asked == [g]
