"""The cheap estimators of issue 24 on the ranking sets, judged at equal cost.

On broad, lineage and the iso-cost set (``ranking_sets.py --iso``): Kendall tau, Spearman, top-10
tau, precision@10 (``rank_metrics.metrics``) and the cost-aware measures of ``benchmarks/pairwise.py``
(``iso_pairwise`` on the iso set, ``near_cost_pairwise`` on broad and lineage, each also over the
agreement of two independent truths), and seconds per genome, for: the baselines (#edges, #params,
one seed against the truth, 50 steps from scratch), the zero-cost proxies (``evolution/proxies.py``),
learning-curve extrapolation from 50 steps, successive halving (25/50/100 steps), the learned
predictor (``evolution/predictor.py``; trained on the other sets' truths and, on the iso set, on its
other two levels: never on a genome it is judged on) and rank-averaged ensembles. Also the
near-cost measures of every entry saved in ``ranking.json``, from its saved estimates.

Estimates are kept in ``benchmarks/results/ranking_cheap.json`` and reused (they do not depend on
the truth): rerun after more truth seeds to rescore, ``--fresh NAME,..`` to measure entries again.

    python -m benchmarks.ranking_cheap [--fresh scratch50,halving]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from evolution import cost
from evolution.curves import CurveEstimator
from evolution.estimators import TrainEstimator
from evolution.genome import Genome
from evolution.halving import HalvingEstimator
from evolution.predictor import FEATURES, Predictor, genome_features
from evolution.proxies import ProxyEstimator

from benchmarks import common, pairwise, ranking_sets
from benchmarks.ranking_cheap_page import page
from benchmarks.ranking import OUT as RANKING
from benchmarks.rank_metrics import metrics

OUT = Path(__file__).parent / "results" / "ranking_cheap.json"
PROXIES = ("synflow", "snip", "grad_norm", "naswot")
SIZE_WEIGHT = 10.0  # naswot+size: naswot + this * log #params (logdets of a 64-example kernel are in the tens)
# The iso set's held-out parts: the genomes of index start <= i < stop in each level were drawn and
# trained after the entry named had been chosen on the genomes before them, so its figure there is free
# of that choice. The first check, from 48, held out predictor_gbr+naswot, the best on genomes 0-47 (0.812
# there when chosen; 0.746 on the held-out 48-95 after refitting, commit d64f0b0). The bag of BAG fits was
# then chosen, on genomes 0-95, not as the best there (0.802 against the rank average with 50 steps' 0.818)
# but to take out the fit seed's swing (a single fit moved over 0.749-0.814 with it); it was checked on
# 96-143 with the 16 features it had then (predictor_gbr_bag16). Three features were then added, chosen on
# genomes 0-143 and the other sets (commit f67ddac), and the bag with them is checked on 144-191.
HOLDOUTS = ((96, 144, "predictor_gbr_bag16"), (144, 192, "predictor_gbr_bag"))
BAG = 5
FEATURES_BEFORE = 16  # predictor_gbr_bag16: the first 16 of FEATURES, the set the first check judged
assert FEATURES[FEATURES_BEFORE - 1] == "direct_share"  # the capacity features were appended after it


def load_sets() -> tuple[dict[str, dict], dict[str, list[Genome]], dict[str, np.ndarray]]:
    """The sets restricted to genomes with a truth; every genome of each set (estimates are made on
    all of them once); and the indices of the former among the latter."""
    doc = ranking_sets.load()
    sets, every, where = {}, {}, {}
    for name in ("broad", "lineage", "iso"):
        if not doc.get(name):
            continue
        every[name] = [Genome.from_dict(e["genome"]) for e in doc[name]]
        where[name] = np.array([i for i, e in enumerate(doc[name]) if len(e.get("acc", [])) >= 2], dtype=int)
        entries = [doc[name][i] for i in where[name]]
        if len(entries) < 12:
            continue
        genomes = [every[name][i] for i in where[name]]
        # seeds 2, 3 (NaN where not trained yet): the ceiling is taken over pairs of genomes with all 4
        k = max(len(e["acc"]) for e in entries)
        seeds = np.array([e["acc"][:k] + [np.nan] * (k - len(e["acc"])) for e in entries], dtype=float)
        index = pairwise.level_index([e.get("level", 0) for e in doc[name]])
        sets[name] = {"genomes": genomes, "truth": seeds[:, :2].mean(1), "seeds": seeds, "index": index[where[name]],
                      "seeds4": seeds if k >= 4 else None,
                      "params": np.array([cost.parameters(g) for g in genomes], dtype=float),
                      "edges": np.array([g.n_edges for g in genomes], dtype=float),
                      "flops": np.array([cost.flops(g).total for g in genomes], dtype=float),
                      "depth": np.array([len(g.levels_present()) for g in genomes]),
                      "level": np.array([e.get("level", 0) for e in entries])}
    return sets, every, where


def timed(fn, genomes) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = np.asarray(fn(genomes), dtype=float)
    return scores, (time.perf_counter() - start) / len(genomes)


def scores_of(est):
    return lambda gs: [e.score for e in est.estimate(gs)]


def halving_scores(data, gs: list[Genome], batch: int, by_level: bool = False) -> list[float]:
    """Halving over consecutive batches of ``batch`` genomes (a search's generations), or with
    ``by_level`` (the iso set) one halving per FLOPs level over all its genomes, each with its own
    estimator, so every same-level pair is scored on one scale."""
    if by_level:
        level = [min(ranking_sets.ISO_LEVELS, key=lambda v: abs(np.log(cost.flops(g).total / v))) for g in gs]
        groups = [[i for i, lv in enumerate(level) if lv == v] for v in dict.fromkeys(level)]
    else:
        groups = [list(range(start, min(start + batch, len(gs)))) for start in range(0, len(gs), batch)]
    out, est = [float("nan")] * len(gs), None
    for idx in groups:
        if by_level or est is None:
            est = HalvingEstimator(data, min_steps=25, eta=2, rungs=3, batch_size=128, lr=3e-3)
        for i, e in zip(idx, est.estimate([gs[i] for i in idx])):
            out[i] = e.score
    return out


def predictor_scores(sets: dict, name: str, model: str, extra: dict | None = None, within_set: bool = False,
                     entry: str | None = None, width: int | None = None, **settings) -> tuple[np.ndarray, float]:
    """The predictor's scores on set ``name``, trained on the truth of every genome it is not judged
    on: the other sets, and on the iso set the other levels (one model per level). Seconds per
    genome: its features (``extra``'s proxy included) and the prediction; the fits are counted apart
    (``FIT_SECONDS[(name, entry)]``), as a search fits once per generation for all its children. ``within_set``:
    the pairwise model draws its pairs within each set (and iso level) only; ``settings``: the
    ``Predictor``'s (``seed``, ``bag``, ``window``, ``c``); ``width``: the first that many features only."""
    feats = {n: np.stack([genome_features(g)[:width] for g in s["genomes"]]) for n, s in sets.items()}
    start = time.perf_counter()
    for g in sets[name]["genomes"]:
        genome_features(g)
    per = (time.perf_counter() - start) / len(sets[name]["genomes"])
    if extra:
        feats = {n: np.concatenate([f, extra[n][0][:, None]], 1) for n, f in feats.items()}
        per += extra[name][1]
    s = sets[name]
    judged_groups = [s["level"] == lv for lv in np.unique(s["level"])] if name == "iso" else [np.ones(len(s["truth"]), bool)]
    pred = np.zeros(len(s["truth"]))
    fit = predict = 0.0
    for judged in judged_groups:
        X = [feats[n] for n in sets if n != name] + [feats[name][~judged]]
        y = [sets[n]["truth"] for n in sets if n != name] + [s["truth"][~judged]]
        groups = [np.full(len(sets[n]["truth"]), -k - 1) for k, n in enumerate(sets) if n != name] \
            + [s["level"][~judged]] if within_set else None
        t0 = time.perf_counter()
        model_ = Predictor(model, **settings).fit(np.concatenate(X), np.concatenate(y),
                                      None if groups is None else np.concatenate(groups))
        t1 = time.perf_counter()
        pred[judged] = model_.predict(feats[name][judged])[0]
        fit, predict = fit + t1 - t0, predict + time.perf_counter() - t1
    if entry:
        FIT_SECONDS[(name, entry)] = fit / len(judged_groups)
    return pred, per + predict / len(pred)


FIT_SECONDS: dict = {}
FIT_SEEDS = 5  # gradient-boosting fits per entry in gbr_iso_vs_ceiling_by_fit_seed (their mean: a bag of as many)


def fit_figures(est: np.ndarray, iso: dict) -> dict:
    """``iso_pairwise_vs_ceiling`` on the whole iso set, its first part and its held-out parts."""
    m = figures(est, iso, "iso")
    return {k: m.get(k) for k in ("iso_pairwise_vs_ceiling", "iso_first_pairwise_vs_ceiling",
                                  *(f"{holdout_key(i)}_pairwise_vs_ceiling" for i in range(len(HOLDOUTS))))}


def percentile_mean(*scores: np.ndarray) -> np.ndarray:
    return np.mean([rankdata(np.nan_to_num(s, nan=-np.inf)) / len(s) for s in scores], axis=0)


def figures(est: np.ndarray, s: dict, name: str, key: str = "") -> dict:
    """The figures of ``est`` on set ``s``; ``seed_vs_seed`` (seed 0) is judged by seed 1, not by a
    truth that holds seed 0 itself."""
    ok = np.isfinite(est)
    e = np.where(ok, est, (est[ok].min() - 1) if ok.any() else 0.0)
    if key == "seed_vs_seed":
        s = {**s, "truth": s["seeds"][:, 1]}
    m = metrics(e, s["truth"], s["params"], s["edges"], s["depth"])
    m = {k: m[k] for k in ("kendall_tau", "spearman", "top10_tau", "precision_at_10", "size_controlled_tau")}
    seeds = s["seeds4"] if s["seeds4"] is not None else s["seeds"]
    if name == "iso":
        m.update(pairwise.cost_aware(e, s["truth"], seeds, pairwise.iso_pairs(s["level"]), "iso"))
        for lv in np.unique(s["level"]):
            pairs = pairwise.pairs_among(s["level"], s["level"] == lv)
            m[f"iso_pairwise_{int(lv) // 1000}k"] = pairwise.pairwise(e, s["truth"], pairs)
        first = s["index"] < HOLDOUTS[0][0]  # the part every check's entry was chosen on
        m.update(pairwise.cost_aware(e, s["truth"], seeds, pairwise.pairs_among(s["level"], first), "iso_first"))
        for k, (start, stop, _) in enumerate(HOLDOUTS):
            pairs = pairwise.pairs_among(s["level"], (s["index"] >= start) & (s["index"] < stop))
            if len(pairs):  # and the pairs among the genomes its entry was chosen on, as fitted now
                m.update(pairwise.cost_aware(e, s["truth"], seeds, pairs, holdout_key(k)))
                before = pairwise.pairs_among(s["level"], s["index"] < start)
                m.update(pairwise.cost_aware(e, s["truth"], seeds, before, holdout_key(k) + "_before"))
    else:
        m.update(pairwise.cost_aware(e, s["truth"], seeds, pairwise.near_cost_pairs(s["flops"]), "near_cost"))
    return m


def holdout_key(k: int) -> str:
    """The figures' prefix of the ``k``-th held-out part: ``iso_holdout``, ``iso_holdout2``, ..."""
    return "iso_holdout" + (str(k + 1) if k else "")


def prefixed(m: dict, name: str) -> dict:
    pre = {"broad": "", "lineage": "lineage_", "iso": "iso_"}[name]
    return {(k if name == "iso" and k.startswith("iso_") else pre + k): v for k, v in m.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", type=lambda t: set(t.split(",")), default=set(), help="entries to measure again")
    ap.add_argument("--threads", type=int, default=1)
    common.add_data_root(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets, every, where = load_sets()
    data = ranking_sets.data_module(args.data_root)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    cache: dict = old.get("estimates", {})
    saved = common.read_results("ranking").get("estimates", {})  # the raw estimates live in ranking.raw.json.gz

    def est_of(key: str, name: str, fn) -> tuple[np.ndarray, float]:
        """Scores on the set's genomes with a truth, measured once on all of them (``fn(genomes)``)."""
        c = cache.get(key, {}).get(name)
        if not c or key in args.fresh or len(c["scores"]) != len(every[name]):
            scores, secs = timed(fn, every[name])
            c = cache.setdefault(key, {})[name] = {"seconds": secs, "scores": [
                None if not np.isfinite(v) else float(v) for v in scores]}
            OUT.write_text(json.dumps({**old, "estimates": cache}))  # kept as measured: a kill loses one entry
            print(f"  {key} on {name}: {secs:.3f} s/genome", flush=True)
        scores = np.array([np.nan if v is None else v for v in c["scores"]], dtype=float)
        return scores[where[name]], c["seconds"]

    results: dict[str, dict] = {}
    for name, s in sets.items():
        ests: dict[str, tuple[np.ndarray, float]] = {
            "seed_vs_seed": (s["seeds"][:, 0], float("nan")),
            "edges": (s["edges"], 0.0), "params": (s["params"], 0.0)}
        if name != "iso" and "scratch50" in saved and saved["scratch50"].get(name) is not None:
            ests["scratch50"] = (np.array([np.nan if v is None else v for v in saved["scratch50"][name]]),
                                 json.loads(RANKING.read_text())["estimators"]["scratch50"].get(
                                     "seconds_per_genome" if name == "broad" else "lineage_seconds_per_genome", np.nan))
        else:
            ests["scratch50"] = est_of("scratch50", name, scores_of(
                TrainEstimator(data, steps=50, batch_size=128, lr=3e-3, seed=0)))
        for p in PROXIES:
            proxy = ProxyEstimator(data, p, seed=0)
            ests[p] = est_of(p, name, lambda g, proxy=proxy: [proxy.raw_score(x) for x in g])
        ests["naswot+size"] = (ests["naswot"][0] + SIZE_WEIGHT * np.log(s["params"]), ests["naswot"][1])
        ests["curve50"] = est_of("curve50", name, scores_of(
            CurveEstimator(data, steps=50, horizon=315, points=5, batch_size=128, lr=3e-3)))
        # halving: a search's generations of 8; on the iso set one halving per level
        ests["halving"] = est_of("halving", name, lambda g: halving_scores(data, g, 8, name == "iso"))
        results[name] = ests
    # The predictor needs every set's features; the naswot column comes from the cached raw scores.
    naswot = {n: (np.nan_to_num(results[n]["naswot"][0], nan=-1e3, neginf=-1e3), results[n]["naswot"][1]) for n in sets}
    for name in sets:
        r = results[name]
        r["predictor_gbr"] = predictor_scores(sets, name, "gbr", entry="predictor_gbr")
        r["predictor_gbr_bag"] = predictor_scores(sets, name, "gbr", entry="predictor_gbr_bag", bag=BAG)
        r["predictor_gbr_bag16"] = predictor_scores(sets, name, "gbr", entry="predictor_gbr_bag16", bag=BAG,
                                                    width=FEATURES_BEFORE)
        r["predictor_gp"] = predictor_scores(sets, name, "gp", entry="predictor_gp")
        r["predictor_gbr+naswot"] = predictor_scores(sets, name, "gbr", naswot, entry="predictor_gbr+naswot")
        r["predictor_pairwise"] = predictor_scores(sets, name, "pairwise", entry="predictor_pairwise")
        r["predictor_pairwise+naswot"] = predictor_scores(sets, name, "pairwise", naswot, entry="predictor_pairwise+naswot")
        r["predictor_pairwise+naswot_within_set"] = predictor_scores(sets, name, "pairwise", naswot, within_set=True,
                                                                   entry="predictor_pairwise+naswot_within_set")
        r["ensemble(predictor_gbr,scratch50)"] = (percentile_mean(r["predictor_gbr"][0], r["scratch50"][0]),
                                                  r["predictor_gbr"][1] + r["scratch50"][1])
        r["ensemble(predictor_gbr,naswot)"] = (percentile_mean(r["predictor_gbr"][0], r["naswot"][0]),
                                               r["predictor_gbr"][1] + r["naswot"][1])
    # How much the pairwise predictor's iso figure owes to its settings: the grid around the defaults.
    iso_set = sets.get("iso")
    sensitivity = {}
    for c in (0.1, 1.0, 10.0):
        for window in (0.1, 0.25, 0.5):
            sensitivity[f"c{c}_window{window}"] = {
                mode: figures(predictor_scores(sets, "iso", "pairwise", naswot, mode == "within_set", c=c, window=window)[0],
                              iso_set, "iso")["iso_pairwise_vs_ceiling"] for mode in ("all", "within_set")} if iso_set else None
    # How much a gradient-boosted predictor's iso figures owe to its own seed (its 0.8 subsamples):
    # fits 0-4, and the mean of their predictions (a bagged predictor); without NASWOT also five bags of
    # BAG (seeds 0.., the first is predictor_gbr_bag), to see how much a bag still moves with its seeds.
    by_fit_seed, bag_spread = {}, {}
    for key, extra in (("predictor_gbr", None), ("predictor_gbr+naswot", naswot)) if iso_set else ():
        n = max(FIT_SEEDS, 5 * BAG) if extra is None else FIT_SEEDS
        preds = [predictor_scores(sets, "iso", "gbr", extra, seed=sd)[0] for sd in range(n)]
        by_fit_seed[key] = [fit_figures(e, iso_set) for e in preds[:FIT_SEEDS] + [np.mean(preds[:FIT_SEEDS], 0)]]
        if extra is None:
            bag_spread = {"single_fits": [fit_figures(e, iso_set) for e in preds], "bags": [
                fit_figures(np.mean(preds[k:k + BAG], 0), iso_set) for k in range(0, 5 * BAG, BAG)]}
    table: dict[str, dict] = {}
    for name, r in results.items():
        for key, (est, secs) in r.items():
            m = figures(np.asarray(est, dtype=float), sets[name], name, key)
            m["seconds_per_genome"] = secs
            if key.startswith("predictor"):
                m["fit_seconds"] = FIT_SECONDS[(name, key)]
            table.setdefault(key, {}).update(prefixed(m, name))
    # how much each iso figure owes to which genomes the set holds (resampled within levels)
    boot = {key: pairwise.iso_bootstrap(np.asarray(r[0], dtype=float), iso_set["truth"],
                                        iso_set["seeds4"] if iso_set["seeds4"] is not None else iso_set["seeds"],
                                        iso_set["level"])
            for key, r in results.get("iso", {}).items() if key != "seed_vs_seed"} if iso_set else {}
    checks = []
    for k, (start, stop, chosen) in enumerate(HOLDOUTS if iso_set else ()):
        held = (iso_set["index"] >= start) & (iso_set["index"] < stop)
        if not len(pairwise.pairs_among(iso_set["level"], held)):
            continue
        boots = {key: pairwise.iso_bootstrap(np.asarray(r[0], dtype=float)[held], iso_set["truth"][held],
                                             iso_set["seeds"][held], iso_set["level"][held])
                 for key, r in results["iso"].items() if key != "seed_vs_seed"}
        for b in boots.values():
            b.pop("ratios")
        checks.append({"key": holdout_key(k), "from_index": start, "to_index": stop, "preregistered": chosen,
                       "genomes": int(held.sum()), "bootstrap": boots,
                       "ceiling": pairwise.ceiling(iso_set["seeds"][held], pairwise.iso_pairs(iso_set["level"][held]))})
    if boot:  # paired: on the same resamples, how often each entry is at or above the best by the figure
        best = max(boot, key=lambda k: table[k]["iso_pairwise_vs_ceiling"])
        for key, b in boot.items():
            b["at_or_above_best"] = float(np.mean(b.pop("ratios") >= boot[best]["ratios"])) if key != best else None
        boot[best].pop("ratios")
        boot = {"best": best, "entries": boot}
    # near-cost figures of every entry ranking.json saved estimates of
    existing = {}
    for key, by_set in saved.items():
        for name in ("broad", "lineage"):
            if by_set.get(name) is not None and name in sets and len(by_set[name]) == len(sets[name]["truth"]):
                est = np.array([np.nan if v is None else v for v in by_set[name]], dtype=float)
                m = {k: v for k, v in figures(est, sets[name], name, key).items() if k.startswith("near_cost")}
                existing.setdefault(key, {}).update(prefixed(m, name))
    iso = sets.get("iso")
    doc = {"sets": {n: {"genomes": len(s["truth"]), "truth_seeds": int(s["seeds"].shape[1]),
                        "genomes_with_4_seeds": int(np.isfinite(s["seeds"]).all(1).sum())} for n, s in sets.items()},
           "ceiling": {"iso_pairwise": pairwise.ceiling(iso["seeds"], pairwise.iso_pairs(iso["level"])) if iso else None,
                       **{f"{n}_near_cost_pairwise": pairwise.ceiling(sets[n]["seeds"], pairwise.near_cost_pairs(sets[n]["flops"]))
                          for n in ("broad", "lineage") if n in sets},
                       "kind": "mean of seeds 2, 3 against the mean of seeds 0, 1 (seed 1 against seed 0 with 2 seeds)"},
           "estimators": table, "pairwise_naswot_iso_vs_ceiling_by_setting": sensitivity,
           "gbr_iso_vs_ceiling_by_fit_seed": by_fit_seed, "gbr_bag_iso_vs_ceiling_by_seeds": bag_spread,
           "iso_bootstrap": boot,
           "iso_first_below": HOLDOUTS[0][0], "iso_holdouts": checks, "ranking_json_near_cost": existing,
           "estimates": cache}
    OUT.write_text(common.summary_json(doc))
    keys = ["iso_pairwise", "iso_pairwise_vs_ceiling", "iso_kendall_tau", "near_cost_pairwise",
            "lineage_near_cost_pairwise", "kendall_tau", "lineage_kendall_tau", "seconds_per_genome"]
    print(f"ceilings: {doc['ceiling']}")
    print(f"{'estimator':>36} " + " ".join(f"{k[:14]:>14}" for k in keys))
    for key, m in table.items():
        print(f"{key:>36} " + " ".join(f"{m.get(k, float('nan')):>14.3f}" for k in keys))
    OUT.with_suffix(".md").write_text(page(doc))
    print(f"wrote {OUT} and {OUT.with_suffix('.md')}")


if __name__ == "__main__":
    main()
