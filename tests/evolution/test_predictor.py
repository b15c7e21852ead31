"""The learned predictor of issue 24: genome features, bagged and pairwise fits, the estimator's
trained share, refits, selection of what it trains, scorers as features, and its state."""
from __future__ import annotations

import numpy as np
import pytest

from evolution.genome import Genome, SearchSpace
from evolution.predictor import FEATURES, Predictor, PredictorEstimator, genome_features, log_flops_bound


def test_predictor_improves_with_data_on_a_synthetic_task(genomes):
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


def test_predictor_estimator_keeps_an_earlier_feature_set_and_refuses_a_state_of_another_width(data, genomes):
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


def test_a_bagged_predictor_is_the_mean_of_its_seeded_fits_and_their_spread(genomes):
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


def test_pairwise_predictor_learns_the_order_at_equal_cost_and_keeps_it_on_the_accuracy_scale(genomes):
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


def test_predictor_estimator_trains_a_share_and_resumes_from_its_state(data, genomes):
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


def test_refit_waits_for_the_data_to_grow_and_resumes_the_last_fit_not_a_newer_one(data, genomes):
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


def test_refit_counts_the_searchs_own_genomes_not_the_loaded_pairs(data, tmp_path, genomes):
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


def test_pareto_selection_trains_the_predicted_front_not_only_the_largest(data, genomes):
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


def test_predictor_reads_another_estimators_score_as_a_feature_and_keeps_it_updated(data, genomes):
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


def test_predictor_starts_from_pairs_in_a_file(data, tmp_path, genomes):
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
    good = json.dumps({"genome": gs[0].to_dict(), "accuracy": 0.5})
    for bad, reason in [('{"acc": 0.5}', "KeyError: 'genome'"), ('{"genome": {}, "accuracy": 0.5}', ""),
                        (json.dumps({"genome": gs[0].to_dict(), "accuracy": None}), "TypeError"), ("{oops", "JSONDecode")]:
        path.write_text(f"{good}\n\n{bad}\n")
        with pytest.raises(ValueError, match=rf"pairs {path} line 3: expected .*{reason}") as caught:
            PredictorEstimator(data, pairs=str(path))
        assert "\n" not in str(caught.value)


def test_predictor_starts_from_a_run_directory_and_names_a_bad_history_row(data, tmp_path, genomes):
    import json

    gs = genomes(3)
    (tmp_path / "genomes").mkdir()
    for i, g in enumerate(gs):
        g.save(tmp_path / "genomes" / f"{i}.json")
    rows = [{"id": 0, "score": 0.3}, {"id": 1, "score": 0.5, "error": None}, {"id": 2, "score": 0.1, "error": "diverged"},
            {"id": 7, "score": 0.2}]  # a failed candidate and one whose genome was not kept are left out
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    est = PredictorEstimator(data, pairs=str(tmp_path))
    assert est.y == pytest.approx([0.3, 0.5]) and est.loaded == 2
    assert np.allclose(est.X, est.features(gs[:2]))
    (tmp_path / "history.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps({"score": 0.4}) + "\n")
    with pytest.raises(ValueError, match=r"history.jsonl line 2: expected a search's history row with id and score"):
        PredictorEstimator(data, pairs=str(tmp_path))
    (tmp_path / "history.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "genomes" / "0.json").write_text('{"levels": ')  # the genome file is the culprit, not the row
    with pytest.raises(ValueError, match=r"genomes/0.json") as caught:
        PredictorEstimator(data, pairs=str(tmp_path))
    assert "history.jsonl" not in str(caught.value)
