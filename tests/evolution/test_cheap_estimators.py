"""The cheap estimators of issue 24: curve fitting, successive halving, multi-objective early
stopping, zero-cost proxies, the learned predictor (and the ensemble built on them)."""
from __future__ import annotations

import numpy as np
import pytest

from evolution import seeds
from evolution.curves import EarlyStopTrain, fit_curve
from evolution.data import DigitsDataModule
from evolution.ensemble import EnsembleEstimator
from evolution.estimators import Estimator, build_estimator
from evolution.genome import Genome, SearchSpace
from evolution.halving import HalvingEstimator
from evolution.predictor import FEATURES, Predictor, PredictorEstimator, genome_features, log_flops_bound
from evolution.proxies import PROXIES, ProxyEstimator
from evolution.sampling import random_genome


@pytest.fixture(scope="module")
def data():
    return DigitsDataModule()


def genomes(n: int, seed: int = 0, width: int = 16):
    space = SearchSpace((1, 8, 8), 10, levels=2, width=width)
    rng = np.random.default_rng(seed)
    return [random_genome(space, rng, density=float(rng.uniform(0.1, 0.6))) for _ in range(n)]


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


def test_halving_gives_the_largest_budget_to_the_best_of_a_synthetic_set(data):
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


def test_halving_promotes_by_pareto_rank_not_accuracy_alone(data):
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
def test_early_stopping_never_stops_a_candidate_that_ends_non_dominated(data, projection):
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
def test_proxies_are_finite_and_deterministic(data, proxy):
    gs = genomes(4) + [seeds.build("mlp:8", SearchSpace((1, 8, 8), 10, levels=2, width=16))]
    a = [e.score for e in ProxyEstimator(data, proxy, batch=32, seed=0).estimate(gs)]
    b = [e.score for e in ProxyEstimator(data, proxy, batch=32, seed=0).estimate(gs)]
    assert np.isfinite(a).all() and a == b and all(0 < s < 1 for s in a)
    if proxy != "params":
        assert len(set(a)) > 1  # it tells the genomes apart


def test_predictor_improves_with_data_on_a_synthetic_task():
    gs = genomes(240, seed=5, width=32)
    X = np.stack([genome_features(g) for g in gs])
    assert X.shape == (240, len(FEATURES)) and np.isfinite(X).all()
    # accuracy set by structure: depth, skip share, where the inputs are read, size
    y = 0.5 + 0.05 * X[:, FEATURES.index("depth")] - 0.3 * X[:, FEATURES.index("input_centre_distance")] \
        + 0.02 * X[:, FEATURES.index("log_edges")]
    test = slice(160, None)
    err = []
    for n in (10, 40, 160):
        pred, _ = Predictor("gbr").fit(X[:n], y[:n]).predict(X[test])
        err.append(float(np.mean(np.abs(pred - y[test]))))
    assert err[2] < err[1] < err[0]
    mean, std = Predictor("gp").fit(X[:40], y[:40]).predict(X[test])
    assert (std > 0).all() and np.mean(np.abs(mean - y[test])) < np.mean(np.abs(y[test] - y[:40].mean()))


def test_capacity_features_count_output_edges_live_edges_and_thin_hidden_neurons():
    """Inputs 0-3, hidden h0, h1 (level 1), outputs o0, o1: h0 reads two inputs and feeds o0, h1 reads
    one input and feeds nothing (dead), input 3 feeds o1 directly."""
    sp = SearchSpace((1, 2, 2), 2, levels=1, width=4)
    h0, h1 = sp.hidden_id(1, 0), sp.hidden_id(1, 1)
    o0, o1 = sp.outputs
    g = Genome(sp, [h0, h1], [[0, h0], [1, h0], [2, h1], [h0, o0], [3, o1]]).validate()
    f = dict(zip(FEATURES, genome_features(g)))
    assert f["log_output_fan_in"] == pytest.approx(np.log1p(2 / 2))  # two edges into two outputs
    assert f["live_edge_share"] == pytest.approx(4 / 5)  # 2 -> h1 lies on no input-to-output path
    assert f["thin_hidden_share"] == pytest.approx(1 / 2)  # h1 is fed by one edge
    pruned = dict(zip(FEATURES, genome_features(g.pruned())))  # as every genome a search makes
    assert pruned["live_edge_share"] == 1.0 and pruned["thin_hidden_share"] == 0.0


def test_predictor_estimator_keeps_an_earlier_feature_set_and_refuses_a_state_of_another_width(data):
    gs = genomes(6)
    old = PredictorEstimator(data, warmup=2, steps=2, features=16)
    assert old.features(gs).shape == (6, 16)
    np.testing.assert_array_equal(old.features(gs), np.stack([genome_features(g) for g in gs])[:, :16])
    state = old.state_dict() | {"X": old.features(gs).tolist(), "y": [0.5] * 6, "fitted": 6}
    PredictorEstimator(data, warmup=2, steps=2, features=16).load_state_dict(state)
    with pytest.raises(RuntimeError, match=f"the saved state was made with features 16, this estimator has {len(FEATURES)}"):
        PredictorEstimator(data, warmup=2, steps=2).load_state_dict(state)
    before = {k: v for k, v in state.items() if k != "features"}  # saved before the option: its width tells
    with pytest.raises(RuntimeError, match=f"the saved genomes have 16 features, this estimator makes {len(FEATURES)} "):
        PredictorEstimator(data, warmup=2, steps=2).load_state_dict(before)
    with pytest.raises(ValueError, match=f"features 2: expected 3..{len(FEATURES)}"):
        PredictorEstimator(data, features=2)
    with pytest.raises(RuntimeError, match="the saved state was made with features 16, this estimator has 17"):
        PredictorEstimator(data, warmup=2, steps=2, features=17).load_state_dict(state)


def test_a_bagged_predictor_is_the_mean_of_its_seeded_fits_and_their_spread():
    gs = genomes(60, seed=5, width=32)
    X = np.stack([genome_features(g) for g in gs])
    y = 0.5 + 0.05 * X[:, FEATURES.index("depth")] - 0.3 * X[:, FEATURES.index("input_centre_distance")]
    mean, std = Predictor("gbr", seed=2, bag=3).fit(X[:40], y[:40]).predict(X[40:])
    each = [Predictor("gbr", seed=s).fit(X[:40], y[:40]).predict(X[40:]) for s in (2, 3, 4)]
    assert np.allclose(mean, np.mean([m for m, _ in each], 0)) and np.allclose(std, np.std([m for m, _ in each], 0))
    assert (std > 0).any() and all((sd == 0).all() for _, sd in each)  # one fit gives no spread
    with pytest.raises(ValueError, match="bag 3 with model 'gp': expected an integer >= 1, and 1 unless the model is gbr"):
        Predictor("gp", bag=3)
    with pytest.raises(ValueError, match="bag 2.0 with model 'gbr'"):
        Predictor("gbr", bag=2.0)


def test_pairwise_predictor_learns_the_order_at_equal_cost_and_keeps_it_on_the_accuracy_scale():
    gs = genomes(240, seed=5, width=32)
    X = np.stack([genome_features(g) for g in gs])
    y = 0.5 + 0.05 * X[:, FEATURES.index("depth")] - 0.3 * X[:, FEATURES.index("input_centre_distance")] \
        + 0.02 * X[:, FEATURES.index("log_edges")]
    flops = X[:, FEATURES.index("log_flops")]
    test = np.arange(160, 240)
    i, j = np.triu_indices(len(test), 1)
    near = np.abs(flops[test[i]] - flops[test[j]]) < np.log(1.25)
    i, j = test[i[near]], test[j[near]]

    def agreement(pred: np.ndarray) -> float:
        return float(np.mean((pred[i - 160] > pred[j - 160]) == (y[i] > y[j])))

    got = {n: agreement(Predictor("pairwise").fit(X[:n], y[:n]).predict(X[test])[0]) for n in (6, 160)}
    assert len(i) > 50 and got[160] > 0.9 and got[160] > got[6]
    model = Predictor("pairwise").fit(X[:160], y[:160])
    mean, std = model.predict(X[test])
    score = ((X[test] - model._fitted["mean"]) / model._fitted["scale"]) @ model._fitted["w"]
    assert (np.argsort(mean) == np.argsort(score)).all() and (std == 0).all()  # the line keeps the ranker's order
    assert abs(np.mean(mean) - np.mean(y[test])) < 0.05  # and puts it on the accuracy scale
    flat, _ = Predictor("pairwise").fit(X[:5], np.full(5, 0.3)).predict(X[test])
    assert np.allclose(flat, 0.3)  # nothing to order: the one accuracy it saw
    with pytest.raises(ValueError, match="model 'rank': expected one of gbr, gp, pairwise"):
        Predictor("rank")


def test_every_estimator_is_built_from_a_config_and_scores_a_batch(data):
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


def test_predictor_estimator_trains_a_share_and_resumes_from_its_state(data):
    gs = genomes(12)
    est = PredictorEstimator(data, warmup=4, train_share=0.25, steps=3, bag=2)
    est.estimate(gs[:4])
    est.estimate(gs[4:12])
    assert est.stats == {"trained": 4 + 2, "predicted": 6} and len(est.y) == 6 and len(est.predictor._fitted) == 2
    again = PredictorEstimator(data, warmup=4, train_share=0.25, steps=3, bag=2)
    again.load_state_dict(est.state_dict())
    X = est.features(gs)
    assert np.allclose(again.predictor.predict(X)[0], est.predictor.predict(X)[0])
    assert np.allclose(again.predictor.predict(X)[1], est.predictor.predict(X)[1])
    assert est.fitted == again.fitted == 6  # refit 0: after every trained batch


def test_refit_waits_for_the_data_to_grow_and_resumes_the_last_fit_not_a_newer_one(data):
    gs = genomes(20)
    est = PredictorEstimator(data, warmup=4, train_share=0.25, steps=3, refit=1.0)
    est.estimate(gs[:4])
    est.estimate(gs[4:12])
    assert len(est.y) == 6 and est.fitted == 4  # 6 rows < 2 x 4: the fit on the warmup's 4 stays
    on_four = Predictor().fit(np.array(est.X[:4]), np.array(est.y[:4]))
    X = est.features(gs)
    assert np.array_equal(est.predictor.predict(X)[0], on_four.predict(X)[0])
    again = PredictorEstimator(data, warmup=4, train_share=0.25, steps=3, refit=1.0)
    again.load_state_dict(est.state_dict())
    assert again.fitted == 4 and np.array_equal(again.predictor.predict(X)[0], on_four.predict(X)[0])
    est.estimate(gs[12:20])
    assert len(est.y) == 8 and est.fitted == 8  # doubled: refitted on every row
    old = {k: v for k, v in est.state_dict().items() if k != "fitted"}  # saved before "fitted": every row
    again.load_state_dict(old)
    assert again.fitted == 8 and np.array_equal(again.predictor.predict(X)[0], est.predictor.predict(X)[0])
    # the batch that completes the warmup is fitted on, growth or not: the predictions that follow use it
    est = PredictorEstimator(data, warmup=6, steps=3, refit=2.0)
    est.estimate(gs[:4])
    est.estimate(gs[4:8])
    assert len(est.y) == 8 and est.fitted == 8
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"refit {bad}"):
            PredictorEstimator(data, refit=bad)


def test_refit_counts_the_searchs_own_genomes_not_the_loaded_pairs(data, tmp_path):
    import json

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"genome": g.to_dict(), "accuracy": 0.1 * i}) + "\n"
                            for i, g in enumerate(genomes(5))))
    est = PredictorEstimator(data, warmup=4, pairs=str(path), steps=3, refit=1.0)
    assert est.fitted == 5
    est.estimate(genomes(8, seed=9))  # 2 trained: the search's first own rows, refitted on at once
    assert len(est.y) == 7 and est.fitted == 7
    est.estimate(genomes(4, seed=11))  # 1 more: 3 own rows < 2 x 2
    assert len(est.y) == 8 and est.fitted == 7


def test_pareto_selection_trains_the_predicted_front_not_only_the_largest(data):
    from evolution import cost, nsga2
    from evolution.estimators import Estimate

    gs = sorted(genomes(16, seed=3), key=lambda g: cost.flops(g).total)
    flops = [cost.flops(g).total for g in gs]
    assert len(set(flops)) == len(flops)

    class BiggerIsBetter:  # predicts accuracy rising with FLOPs, as size alone would
        def predict(self, X):
            return np.linspace(0.5, 0.9, len(X)), np.zeros(len(X))

        def fit(self, X, y):
            return self

    class Recorder:
        def estimate(self, batch):
            trained.extend(gs.index(g) for g in batch)
            return [Estimate(0.5, 0.0) for _ in batch]

    picked = {}
    for select in ("score", "pareto"):
        trained: list[int] = []
        est = PredictorEstimator(data, warmup=2, train_share=0.25, steps=2, select=select)
        est.y, est.X = [0.1, 0.2], est.features(gs[:2]).tolist()  # past warmup
        est.predictor, est.trainer = BiggerIsBetter(), Recorder()
        est.estimate(gs)
        picked[select] = sorted(trained)
    # every genome is on the predicted front: score trains the 4 largest, pareto both ends and the most
    # isolated between them (NSGA-II's crowding distance on (predicted error, log FLOPs))
    assert picked["score"] == [12, 13, 14, 15]
    log_flops = np.log(flops)
    hope = np.linspace(0.5, 0.9, 16)
    assert picked["pareto"] == nsga2.survival(np.stack([1 - hope, log_flops], 1), 4).tolist()
    assert {0, 15} <= set(picked["pareto"]) and min(picked["pareto"][1:3]) < 12
    # hv: genome 8, measured at 0.95 (and 15 at 0.96), dominates every child of its FLOPs or more
    # (predicted <= 0.9): the trained ones are those that could add to the measured front, all smaller
    trained = []
    est = PredictorEstimator(data, warmup=2, train_share=0.25, steps=2, select="hv")
    est.y, est.X = [0.95, 0.96], est.features([gs[8], gs[15]]).tolist()
    est.predictor, est.trainer = BiggerIsBetter(), Recorder()
    est.estimate(gs)
    assert len(trained) == 4 and max(trained) < 8
    # a measured front that dominates every child: nothing adds hypervolume, the best-predicted are trained
    trained = []
    est.y = [0.99, 0.99]
    est.X = est.features([gs[0], gs[0]]).tolist()
    est.estimate(gs)
    assert sorted(trained) == [12, 13, 14, 15]
    # the same rows loaded from ``pairs`` (another recipe's accuracies) teach the predictor but are no
    # front to beat: the picks are those against an empty front, the largest optimistic gains
    trained = []
    est.y, est.X, est.loaded = [0.99, 0.99], est.features([gs[0], gs[0]]).tolist(), 2
    est.estimate(gs)
    X = est.features(gs)
    empty = PredictorEstimator(data, warmup=2, steps=2, select="hv")
    bound = log_flops_bound(gs[0])
    assert trained == empty._hv_pick(1 - hope, X[:, FEATURES.index("log_flops")], hope, 4, bound)
    assert sorted(trained) != [12, 13, 14, 15]
    # a loaded row before the search's own: the own rows (8 at 0.95, 15 at 0.96) are the front, as above
    trained = []
    est.y, est.X, est.loaded = [0.99, 0.95, 0.96], est.features([gs[0], gs[8], gs[15]]).tolist(), 1
    est.estimate(gs)
    assert len(trained) == 4 and max(trained) < 8
    again = PredictorEstimator(data, warmup=2, steps=2, select="hv")
    again.load_state_dict(est.state_dict())
    assert again.loaded == 1
    again.load_state_dict({k: v for k, v in est.state_dict().items() if k != "loaded"})  # saved before "loaded"
    assert again.loaded == 0
    with pytest.raises(ValueError, match="select 'best'"):
        PredictorEstimator(data, select="best")


def test_predictor_reads_another_estimators_score_as_a_feature_and_keeps_it_updated(data):
    from evolution.estimators import Estimate

    gs = genomes(6)
    spec = {"class_path": "evolution.proxies.ProxyEstimator", "init_args": {"proxy": "params"}}
    est = PredictorEstimator(data, warmup=2, steps=2, scorer=spec)
    X, plain = est.features(gs), PredictorEstimator(data, warmup=2, steps=2).features(gs)
    assert np.array_equal(X[:, :-1], plain)
    assert np.allclose(X[:, -1], [e.score for e in est.scorer.estimate(gs)])

    class Spy:  # a scorer that learns between iterations, as a supernet does
        def __init__(self):
            self.seen = 0

        def estimate(self, batch, parents=None):
            return [Estimate(float(self.seen), 0.0) for _ in batch]

        def update(self, population):
            self.seen += len(population)

        def state_dict(self):
            return {"seen": self.seen}

        def load_state_dict(self, state):
            self.seen = state["seen"]

    est.scorer = Spy()
    est.update(gs[:3])
    assert est.features(gs[:1])[0, -1] == 3.0
    again = PredictorEstimator(data, warmup=2, steps=2, scorer=spec)
    again.scorer = Spy()
    again.load_state_dict(est.state_dict())
    assert again.scorer.seen == 3
    n = len(FEATURES)
    with pytest.raises(RuntimeError, match=f"the saved genomes have {n} features, this estimator makes {n + 1}"):
        PredictorEstimator(data, warmup=2, steps=2, scorer=spec).load_state_dict(
            PredictorEstimator(data, warmup=2, steps=2).state_dict() | {"X": plain.tolist(), "y": [0.5] * 6})
    with pytest.raises(ValueError, match="PredictorEstimator scorer: evolution.proxies.ProxyEstimator does not take"):
        PredictorEstimator(data, scorer={"class_path": "evolution.proxies.ProxyEstimator", "init_args": {"nope": 1}})


def test_predictor_starts_from_pairs_in_a_file(data, tmp_path):
    import json

    gs = genomes(5)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"genome": g.to_dict(), "accuracy": 0.1 * i}) + "\n" for i, g in enumerate(gs)))
    est = PredictorEstimator(data, warmup=4, pairs=str(path), steps=3)
    assert est.y == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4]) and est.loaded == 5
    out = est.estimate(genomes(4, seed=9))  # past warmup: only a quarter is trained
    assert est.stats == {"trained": 1, "predicted": 3} and all(e.ok for e in out)
    with pytest.raises(ValueError, match="neither a run directory"):
        PredictorEstimator(data, pairs=str(tmp_path / "nope"))


def test_ensemble_averages_percentiles_of_its_members(data):
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


def test_early_stopping_refuses_a_remote_executor_and_curves_start_from_an_initializer(data):
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
