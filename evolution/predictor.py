"""A learned predictor of a genome's accuracy from its structure, trained online on the pairs a
search gathers.

``genome_features`` describes a genome by numbers that mean the same on any grid (sizes in logs,
widths and shares as fractions, edge lengths over the plane's diagonal). ``Predictor`` regresses
accuracy on them with scikit-learn (gradient boosting, a bag of such fits, or a Gaussian process;
the last two also give an uncertainty), or ranks them: ``pairwise`` learns which of two genomes of about the same FLOPs is
the better one (a linear ranker, as RankNet / RankSVM, on their feature difference), the order an
(error, FLOPs) search needs. ``PredictorEstimator`` trains the first ``warmup`` genomes by low-fidelity training,
then per batch predicts every genome and trains only the ``train_share`` most promising (predicted
mean plus ``explore`` times its uncertainty: by that alone, by Pareto rank on it and the known FLOPs,
or by the hypervolume it would add to the measured front), whose measured accuracies replace their
predictions and join the training pairs; another estimator's score can be one more feature.
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Sequence

import numpy as np

from evolution import cost, dag, nsga2
from evolution.estimators import Estimate, Parent, TrainEstimator
from evolution.genome import Genome

FEATURES = ("log_edges", "log_params", "log_flops", "depth", "width_1", "width_2", "width_3", "skip_share",
            "tie_share", "edge_length_mean", "edge_length_std", "inputs_used", "input_centre_distance",
            "output_edge_share", "log_hidden_fan_in", "direct_share", "log_output_fan_in", "live_edge_share",
            "thin_hidden_share")


def genome_features(g: Genome) -> np.ndarray:
    """The ``FEATURES`` of ``g``: sizes, depth, widths of its first three present levels (fractions
    of the grid's width), skip (edges over more than one level) and tie shares, edge lengths, which
    inputs it reads, how its edges spread; and what bounds its capacity at a given cost: edges into
    each output, the share of edges on an input-to-output path (1 on a pruned genome, as every genome a
    search or sampler makes is: it tells only on genomes handed in unpruned), hidden neurons fed by one
    edge or none."""
    sp, e = g.space, g.edges
    lv = sp.level
    present = g.levels_present()
    widths = [float(np.sum(lv[g.hidden] == l)) / sp.width for l in present[:3]]
    widths += [0.0] * (3 - len(widths))
    span = lv[e[:, 1]] - lv[e[:, 0]] if len(e) else np.zeros(0)
    h, w = sp.plane
    diag = math.hypot(h, w)
    length = np.linalg.norm(sp.positions[e[:, 0]] - sp.positions[e[:, 1]], axis=1) / diag if len(e) else np.zeros(1)
    used = np.unique(e[lv[e[:, 0]] == 0, 0]) if len(e) else np.zeros(0, dtype=np.int64)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    dist = np.linalg.norm(sp.positions[used] - centre, axis=1).mean() / diag if len(used) else 0.0
    into_out = lv[e[:, 1]] == sp.output_level if len(e) else np.zeros(0, dtype=bool)
    hidden_in = (~into_out).sum()
    direct = float(np.mean((lv[e[:, 0]] == 0) & into_out)) if len(e) else 0.0
    fan_in = np.bincount(e[:, 1], minlength=sp.n_neurons)[g.hidden] if len(e) else np.zeros(len(g.hidden))
    live = float(dag.prune(e, sp.n_neurons, sp.inputs, sp.outputs)[1].mean()) if len(e) else 0.0
    return np.array([
        math.log1p(g.n_edges), math.log(cost.parameters(g)), math.log(cost.flops(g).total), len(present), *widths,
        float(np.mean(span > 1)) if len(e) else 0.0, 1.0 - g.n_weights / max(1, g.n_edges),
        float(length.mean()), float(length.std()), len(used) / sp.n_inputs, float(dist),
        float(np.mean(into_out)) if len(e) else 0.0, math.log1p(hidden_in / max(1, len(g.hidden))), direct,
        math.log1p(into_out.sum() / sp.n_outputs), live, float(np.mean(fan_in <= 1)) if len(fan_in) else 0.0,
    ], dtype=float)


class Predictor:
    """Accuracy from ``genome_features`` (plus any extra columns): ``model`` ``gbr`` (scikit-learn
    gradient boosting, no uncertainty unless bagged), ``gp`` (a Gaussian process on standardised features, RBF
    with one length per feature plus noise; its standard deviation is the uncertainty) or
    ``pairwise`` (logistic regression on the standardised feature differences of the training pairs
    whose FLOPs differ by less than ``window``, inverse L2 strength ``c``; its linear score, mapped onto accuracy by a least-squares
    line, which keeps its order; no uncertainty). ``bag`` (``gbr`` only): that many fits, seeds ``seed`` ..
    ``seed + bag - 1``, each on its own 0.8 subsamples; the prediction is their mean and the uncertainty
    their spread (of the fits, not a calibrated interval). One fit's order of near-cost genomes moves with
    its seed, the mean of a few less (``ranking_cheap.md``, ``gbr_bag_iso_vs_ceiling_by_seeds``)."""

    MODELS = ("gbr", "gp", "pairwise")
    MAX_PAIRS = 50_000  # pairs a pairwise fit learns from at most (seeded): the regression's cost stays flat

    def __init__(self, model: str = "gbr", seed: int = 0, window: float = 0.25, c: float = 1.0, bag: int = 1) -> None:
        if model not in self.MODELS:
            raise ValueError(f"Predictor: model {model!r}: expected one of {', '.join(self.MODELS)}")
        if window <= 0 or c <= 0:
            raise ValueError(f"Predictor: window {window}, c {c}: expected both > 0")
        if not isinstance(bag, numbers.Integral) or isinstance(bag, bool) or bag < 1 or bag > 1 and model != "gbr":
            raise ValueError(f"Predictor: bag {bag!r} with model {model!r}: expected an integer >= 1, and 1 unless the "
                             "model is gbr")
        self.model, self.seed, self.window, self.c, self.bag, self._fitted = model, seed, window, c, bag, None

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "Predictor":
        """Fit on ``X`` (n, features) and accuracies ``y``; ``groups`` (pairwise only): pairs are
        drawn within a group only (e.g. truths made by different recipes), None for one group."""
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        if self.model == "pairwise":
            self._fitted = self._fit_pairwise(X, y, groups)
            return self
        if self.model == "gbr":
            from sklearn.ensemble import GradientBoostingRegressor

            self._fitted = [GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                                                      random_state=self.seed + k).fit(X, y) for k in range(self.bag)]
            return self
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        kernel = ConstantKernel() * RBF(length_scale=np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e3)) \
            + WhiteKernel(1e-3, (1e-6, 1e-1))
        reg = make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed))
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():  # a feature the GP finds irrelevant sits at its length bound: expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._fitted = reg.fit(X, y)
        return self

    def _fit_pairwise(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> dict:
        from sklearn.linear_model import LogisticRegression

        mean, scale = X.mean(0), X.std(0)
        scale[scale == 0] = 1.0
        Z = (X - mean) / scale
        i, j = np.triu_indices(len(y), 1)
        flops = X[:, FEATURES.index("log_flops")]
        keep = y[i] != y[j]
        if groups is not None:
            keep &= np.asarray(groups)[i] == np.asarray(groups)[j]
        near = keep & (np.abs(flops[i] - flops[j]) < math.log1p(self.window))
        # Too few near-cost pairs with both outcomes (a search's first genomes): learn from all pairs.
        i, j = (i[near], j[near]) if near.sum() >= 10 else (i[keep], j[keep])
        if len(i) == 0:  # every accuracy the same: nothing to order, predict it
            return {"mean": mean, "scale": scale, "w": np.zeros(X.shape[1]), "slope": 0.0, "intercept": float(y.mean())}
        if len(i) > self.MAX_PAIRS:
            pick = np.random.default_rng(self.seed).choice(len(i), self.MAX_PAIRS, replace=False)
            i, j = i[pick], j[pick]
        D = np.concatenate([Z[i] - Z[j], Z[j] - Z[i]])  # both orders: the ranker is antisymmetric
        t = np.concatenate([y[i] > y[j], y[j] > y[i]]).astype(int)
        w = LogisticRegression(C=self.c, fit_intercept=False, max_iter=5000).fit(D, t).coef_[0]
        score = Z @ w
        slope, icpt = np.polyfit(score, y, 1) if np.ptp(score) > 0 else (0.0, float(y.mean()))
        return {"mean": mean, "scale": scale, "w": w, "slope": max(float(slope), 1e-9), "intercept": float(icpt)}

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted accuracy and its standard deviation (zeros where the model gives none)."""
        if self._fitted is None:
            raise RuntimeError("Predictor.predict before fit")
        X = np.asarray(X, dtype=float)
        if self.model == "pairwise":
            f = self._fitted
            score = ((X - f["mean"]) / f["scale"]) @ f["w"]
            return f["intercept"] + f["slope"] * score, np.zeros(len(X))
        if self.model == "gp":
            Xs = self._fitted[0].transform(X)
            mean, std = self._fitted[-1].predict(Xs, return_std=True)
            return np.asarray(mean), np.asarray(std)
        each = np.stack([reg.predict(X) for reg in self._fitted])
        return each.mean(0), each.std(0)


def load_pairs(path: str) -> tuple[list[Genome], list[float]]:
    """(genome, accuracy) pairs to start a predictor from: a search's run directory (its estimated
    candidates: ``history.jsonl`` + ``genomes/``) or a JSONL file of ``{"genome": {...}, "accuracy": x}``."""
    import json
    from pathlib import Path

    p = Path(path)
    run = (p / "history.jsonl").is_file()
    if not run and not p.is_file():
        raise ValueError(f"PredictorEstimator: pairs {path}: neither a run directory nor a JSONL file")
    file = p / "history.jsonl" if run else p
    genomes, accuracies = [], []
    for i, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:  # a file a user hands in: a bad row is named, not a traceback
            r = json.loads(line)
            if run:
                genome = p / "genomes" / f"{r['id']}.json"
                if r.get("error") is not None or not genome.is_file():
                    continue
                acc = float(r["score"])
            else:
                genome, acc = Genome.from_dict(r["genome"]), float(r["accuracy"])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            what = "a search's history row with id and score" if run else '{"genome": {...}, "accuracy": x}'
            raise ValueError(f"PredictorEstimator: pairs {file} line {i}: expected {what} "
                             f"({type(err).__name__}: {err})") from None
        genomes.append(Genome.load(genome) if run else genome)  # a damaged genome file names itself
        accuracies.append(acc)
    return genomes, accuracies


def log_flops_bound(genome: Genome) -> float:
    """log of an upper bound on the FLOPs of any genome of ``genome``'s grid (every level pair fully
    connected), plus 1: a fixed hypervolume reference on the log-FLOPs axis."""
    counts = np.bincount(genome.space.level).astype(float)
    edges = (counts.sum() ** 2 - (counts ** 2).sum()) / 2
    return math.log(2 * edges + 8 * counts.sum()) + 1.0


class PredictorEstimator:
    """Online predictor over a search: low-fidelity training (``TrainEstimator`` with ``train``'s
    settings) for the first ``warmup`` genomes and for the ``train_share`` of each later batch that
    the predictor rates best; predictions for the rest. ``proxy``: a ``ProxyEstimator`` proxy name
    whose raw score is an extra feature; ``window``, ``c``: the ``pairwise`` model's, ``bag``: the ``gbr``
    model's fits (``Predictor``). ``pairs``: (genome, accuracy) pairs it starts from
    (``load_pairs``: another search's run directory, or a JSONL file, e.g. of a ranking set).
    ``refit``: refit only once the genomes this search measured (not ``pairs``) have grown by this fraction
    since the last fit, and also at the batch that completes the warmup (0: after every trained batch).
    Every fit takes CPU time the search would otherwise spend on candidates (a bag ``bag`` times as much);
    a fixed growth factor keeps the number of fits logarithmic in the data instead of one per generation.
    ``features``: the first that many of ``FEATURES`` only (None: all; 16 is the set before the
    capacity features; at least 3, as the FLOPs are read from the third).
    ``explore``: the weight of the predictor's uncertainty (the GP's, or a bag's spread; none for one
    ``gbr`` fit or ``pairwise``) in the optimistic prediction that picks what is trained.
    ``select``: which genomes of a batch are trained: ``score`` (the highest optimistic predictions)
    or ``pareto`` (NSGA-II survival within the batch on (optimistic predicted error, log FLOPs): front
    by front, its ends first; with 2 of 8 children that is the best-predicted and the smallest child)
    or ``hv`` (one at a time, the largest hypervolume its optimistic predicted point would add to the
    front of the genomes this search measured so far (not ``pairs``) and those already picked, as expected-improvement
    acquisitions do; ties by prediction; predictions clipped to [0, 1]). By score
    alone the trained share gathers at the large genomes, whose accuracy is highest, and the small
    ones a search also keeps on its front are only ever predicted; ``pareto`` looks only within the batch.
    ``scorer``: another estimator's ``{class_path, init_args}`` (e.g. a ``SupernetEstimator``, handed
    ``checkpoint`` and, where it takes one, the search's ``seed``) whose score of each genome is one more
    feature; it is updated with the population and saved with the predictor's state. A measured row
    keeps the score the scorer gave it then: rescoring the whole history at each refit would cost a
    scorer pass over every genome trained so far, so an updating scorer's column drifts with age."""

    SELECT = ("score", "pareto", "hv")

    def __init__(self, data, model: str = "gbr", warmup: int = 16, train_share: float = 0.25, explore: float = 1.0,
                 proxy: str | None = None, pairs: str | None = None, seed: int = 0, window: float = 0.25,
                 c: float = 1.0, select: str = "score", scorer: dict | None = None, checkpoint: str | None = None,
                 bag: int = 1, refit: float = 0.0, features: int | None = None, **train) -> None:
        if warmup < 2 or not 0.0 <= train_share <= 1.0 or not 0.0 <= refit < math.inf:
            raise ValueError(f"PredictorEstimator: warmup {warmup}, train_share {train_share}, refit {refit}: expected "
                             "warmup >= 2, train_share in [0, 1], refit finite and >= 0")
        if select not in self.SELECT:
            raise ValueError(f"PredictorEstimator: select {select!r}: expected one of {', '.join(self.SELECT)}")
        if features is not None and (not isinstance(features, numbers.Integral) or not 3 <= features <= len(FEATURES)):
            raise ValueError(f"PredictorEstimator: features {features}: expected 3..{len(FEATURES)} (the first that "
                             "many of FEATURES) or null for all")
        self.select, self.width = select, features or len(FEATURES)
        self.trainer = TrainEstimator(data, seed=seed, **train)
        self.predictor = Predictor(model, seed, window, c, bag)
        self.warmup, self.train_share, self.explore, self.refit = warmup, train_share, explore, refit
        self.proxy = None
        if proxy:
            from evolution.proxies import ProxyEstimator

            self.proxy = ProxyEstimator(data, proxy, seed=seed)
        self.scorer = None
        if scorer:
            from evolution.estimators import build_estimator

            self.scorer = build_estimator(scorer, data, checkpoint, "PredictorEstimator scorer", seed=seed)
        self.X: list[list[float]] = []
        self.y: list[float] = []
        self.stats = {"trained": 0, "predicted": 0}
        self.fitted = 0  # rows the predictor was last fitted on: the first ``fitted`` of X, y
        if pairs:
            gs, accs = load_pairs(pairs)
            self.X, self.y = self.features(gs).tolist(), list(accs)
            self._fit(len(self.y))
        # Rows before this one came from ``pairs``: they teach the predictor, but another recipe's
        # accuracies are no front for ``hv`` to beat.
        self.loaded = len(self.y)

    def features(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> np.ndarray:
        X = np.stack([genome_features(g)[:self.width] for g in genomes])
        if self.scorer is not None:  # a failed score (NaN) reads as 0
            scores = np.array([e.score for e in self.scorer.estimate(genomes, parents)], dtype=float)
            X = np.concatenate([X, np.nan_to_num(scores, nan=0.0)[:, None]], 1)
        if self.proxy is not None:
            raw = np.array([self.proxy.raw_score(g) for g in genomes])
            X = np.concatenate([X, np.nan_to_num(raw, nan=-1e3, neginf=-1e3, posinf=1e3)[:, None]], 1)
        return X

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        start = time.perf_counter()
        n = len(genomes)
        X = self.features(genomes, parents)
        if len(self.y) < self.warmup:
            train = list(range(n))
            mean = np.full(n, np.nan)
        else:
            mean, std = self.predictor.predict(X)
            k = int(math.ceil(self.train_share * n))
            hope = mean + self.explore * std
            logf = X[:, FEATURES.index("log_flops")]
            err = 1.0 - np.clip(hope, 0.0, 1.0)  # a linear map can promise more than 1: no larger gain for it
            if self.select == "pareto":
                train = nsga2.survival(np.stack([err, logf], 1), k).tolist()
            elif self.select == "hv":
                train = self._hv_pick(err, logf, hope, k, log_flops_bound(genomes[0]))
            else:
                train = np.argsort(-hope)[:k].tolist()
        out: list[Estimate | None] = [None] * n
        trained = self.trainer.estimate([genomes[i] for i in train]) if train else []
        for i, est in zip(train, trained):
            out[i] = est
            if est.ok:
                self.X.append(X[i].tolist())
                self.y.append(est.score)
        self.stats["trained"] += len(train)
        self.stats["predicted"] += n - len(train)
        if self._due():
            self._fit(len(self.y))
        seconds = (time.perf_counter() - start) / max(1, n)
        return [o if o is not None else Estimate(float(np.clip(mean[i], 0.0, 1.0)), seconds) for i, o in enumerate(out)]

    def _due(self) -> bool:
        """Refit now? When this search's own measured rows (``pairs`` apart) have grown by ``refit`` since
        the last fit, and at the batch that completes the warmup, whose predictions come next."""
        own, last = len(self.y) - self.loaded, self.fitted - self.loaded
        if own <= last or len(self.y) < 2:  # nothing new measured (or nothing to fit yet)
            return False
        return own >= (1.0 + self.refit) * last - 1e-9 or self.fitted < self.warmup <= len(self.y)

    def _fit(self, rows: int) -> None:
        self.predictor.fit(np.array(self.X[:rows]), np.array(self.y[:rows]))
        self.fitted = rows

    def _hv_pick(self, error: np.ndarray, logf: np.ndarray, hope: np.ndarray, k: int, bound: float) -> list[int]:
        """``k`` genomes, one at a time: the one whose (error, log FLOPs) point adds the most hypervolume
        to the front of the genomes this search measured so far (not ``pairs``) plus those already picked (ties: the higher
        ``hope``). The reference point is fixed by the grid (``bound``), not by the batch."""
        col = FEATURES.index("log_flops")
        front = np.array([[1.0 - a, x[col]] for x, a in zip(self.X[self.loaded:], self.y[self.loaded:])]).reshape(-1, 2)
        if len(front):  # hypervolume drops dominated points itself: this keeps the loop small
            front = front[nsga2.pareto_front(front)]
        ref = np.array([1.0, bound])
        picked: list[int] = []
        for _ in range(min(k, len(error))):
            base = nsga2.hypervolume(front, ref)
            gain = np.array([-np.inf if i in picked else nsga2.hypervolume(np.vstack([front, [e, f]]), ref) - base
                             for i, (e, f) in enumerate(zip(error, logf))])
            best = int(np.lexsort((-hope, -gain))[0])
            picked.append(best)
            front = np.vstack([front, [error[best], logf[best]]])
        return picked

    def update(self, population: Sequence[Genome]) -> None:
        if self.scorer is not None and hasattr(self.scorer, "update"):
            self.scorer.update(population)

    def state_dict(self) -> dict:
        state = {"X": self.X, "y": self.y, "stats": dict(self.stats), "loaded": self.loaded, "fitted": self.fitted,
                 "features": self.width}
        if self.scorer is not None and hasattr(self.scorer, "state_dict"):
            state["scorer"] = self.scorer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("features", self.width) != self.width:  # saved before "features": the width check below
            raise RuntimeError(f"PredictorEstimator: the saved state was made with features {state['features']}, "
                               f"this estimator has {self.width}")
        width = self.width + (self.proxy is not None) + (self.scorer is not None)
        if state["X"] and len(state["X"][0]) != width:
            raise RuntimeError(f"PredictorEstimator: the saved genomes have {len(state['X'][0])} features, this "
                               f"estimator makes {width} (its proxy or scorer, or this version's FEATURES, "
                               "changed since)")
        if self.scorer is not None and hasattr(self.scorer, "load_state_dict") and state.get("scorer") is None:
            raise RuntimeError("PredictorEstimator: the saved state has no scorer state, this estimator has a scorer")
        self.X, self.y, self.stats = list(state["X"]), list(state["y"]), dict(state["stats"])
        self.loaded = int(state.get("loaded", 0))
        if state.get("scorer") is not None and self.scorer is not None and hasattr(self.scorer, "load_state_dict"):
            self.scorer.load_state_dict(state["scorer"])
        fitted = int(state.get("fitted", len(self.y)))  # saved before "fitted": fitted on every row
        if fitted >= 2:  # the rows of the last fit: rows are only appended, so this is that fit again
            self._fit(fitted)
        self.fitted = fitted
