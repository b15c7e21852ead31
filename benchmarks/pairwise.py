"""Cost-aware ranking measures: how often an estimator orders two genomes of about the same cost as
the truth does. A search over (error, FLOPs) never needs to order genomes of different cost (Pareto
ranking knows the cost); it needs the order among genomes of the same cost.

- ``iso_pairwise``: share of the pairs within one level of the iso set (``ranking_sets.py --iso``:
  every genome within 3 % of its level's FLOPs) that the estimate orders as the truth does;
- ``near_cost_pairwise``: the same over the pairs of a set whose FLOPs differ by less than 25 %;
- ``*_vs_ceiling``: that share over the share two independent truths agree on (the mean of seeds
  2, 3 against the mean of seeds 0, 1, the truth; seed 1 against seed 0 where a set has 2 seeds).

Pairs the truth ties are left out; a tie of the estimate counts half.
"""
from __future__ import annotations

import numpy as np


def pairwise(est: np.ndarray, truth: np.ndarray, pairs: np.ndarray) -> float:
    """Share of ``pairs`` ((P, 2) indices) that ``est`` orders as ``truth`` does."""
    if not len(pairs):
        return float("nan")
    i, j = pairs[:, 0], pairs[:, 1]
    t = np.sign(truth[i] - truth[j])
    e = np.sign(np.nan_to_num(est[i], nan=-np.inf) - np.nan_to_num(est[j], nan=-np.inf))
    keep = t != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.where(e[keep] == 0, 0.5, e[keep] == t[keep])))


def iso_pairs(levels: np.ndarray) -> np.ndarray:
    """Every pair of genomes within the same iso level."""
    i, j = np.triu_indices(len(levels), 1)
    same = levels[i] == levels[j]
    return np.stack([i[same], j[same]], 1)


def level_index(levels: list) -> np.ndarray:
    """Each entry's index within its level (the iso set saves a level's entries in index order)."""
    seen: dict = {}
    out = []
    for lv in levels:
        seen[lv] = seen.get(lv, -1) + 1
        out.append(seen[lv])
    return np.array(out, dtype=int)


def pairs_among(levels: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Every pair within the same level among the genomes where ``among`` is true."""
    return iso_pairs(np.where(among, levels, -np.arange(len(levels)) - 1))


def near_cost_pairs(flops: np.ndarray, within: float = 0.25) -> np.ndarray:
    """Every pair whose FLOPs differ by less than ``within`` of the larger."""
    f = np.asarray(flops, dtype=float)
    i, j = np.triu_indices(len(f), 1)
    close = np.abs(f[i] - f[j]) < within * np.maximum(f[i], f[j])
    return np.stack([i[close], j[close]], 1)


def ceiling(seeds: np.ndarray, pairs: np.ndarray) -> float:
    """Agreement of two independent truths on ``pairs``: the mean of seeds 2, 3 against the mean of
    seeds 0, 1 when ``seeds`` ((N, S) accuracies, NaN where a seed is not trained yet) has 4 columns
    (over the pairs whose genomes have all 4), else seed 1 against seed 0."""
    if seeds.shape[1] >= 4:
        whole = np.isfinite(seeds[:, :4]).all(1)
        pairs = pairs[whole[pairs[:, 0]] & whole[pairs[:, 1]]]
        return pairwise(seeds[:, 2:4].mean(1), seeds[:, :2].mean(1), pairs)
    return pairwise(seeds[:, 1], seeds[:, 0], pairs)


def cost_aware(est: np.ndarray, truth: np.ndarray, seeds: np.ndarray, pairs: np.ndarray, name: str) -> dict:
    """``{name}_pairwise`` and ``{name}_pairwise_vs_ceiling`` of ``est`` on ``pairs``."""
    est = np.asarray(est, dtype=float)
    share = pairwise(est, truth, pairs)
    top = ceiling(seeds, pairs)
    same = pairs
    if seeds.shape[1] >= 4:  # the fraction is taken on the pairs the ceiling was measured on
        whole = np.isfinite(seeds[:, :4]).all(1)
        same = pairs[whole[pairs[:, 0]] & whole[pairs[:, 1]]]
    return {f"{name}_pairwise": share, f"{name}_pairwise_vs_ceiling": pairwise(est, truth, same) / top if top > 0 else float("nan"),
            f"{name}_pairs": int(len(pairs)), f"{name}_ceiling_pairs": int(len(same))}


def near_cost(est: np.ndarray, s: dict) -> dict:
    """``near_cost_pairwise`` (+ ``_vs_ceiling``) of ``est`` on a ranking set ``s`` of ``ranking.py``
    (its ``genomes``, ``truth`` and seeds; the FLOPs are computed once and kept in ``s``)."""
    if "flops" not in s:
        from evolution import cost

        s["flops"] = np.array([cost.flops(g).total for g in s["genomes"]], dtype=float)
    seeds = s["seeds4"] if s.get("seeds4") is not None else s["seeds"]
    return cost_aware(est, s["truth"], seeds, near_cost_pairs(s["flops"]), "near_cost")


def iso_bootstrap(est: np.ndarray, truth: np.ndarray, seeds: np.ndarray, levels: np.ndarray,
                  n: int = 2000, seed: int = 0) -> dict:
    """How much ``iso_pairwise_vs_ceiling`` owes to which genomes the iso set happens to hold: the
    genomes are resampled with replacement within each level (a genome drawn twice is not paired
    with itself; its pairs count twice), and on each resample the estimate's share (its scores kept
    as they are: a predictor is not refit) and the ceiling are taken again on the same pairs. The
    resamples depend on ``seed`` and the set only, so two estimators' ``ratios`` pair up. Returns the
    5th and 95th percentiles, the share of resamples below 0.8 and the ratios themselves."""
    rng = np.random.default_rng(seed)
    est, truth, levels = np.asarray(est, dtype=float), np.asarray(truth, dtype=float), np.asarray(levels)
    whole = np.isfinite(seeds[:, :4]).all(1) if seeds.shape[1] >= 4 else np.ones(len(truth), bool)
    groups = [np.flatnonzero((levels == lv) & whole) for lv in np.unique(levels)]
    ratios = []
    for _ in range(n):
        pick = np.concatenate([rng.choice(g, len(g)) for g in groups])
        pairs = pick[iso_pairs(levels[pick])]
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        top = ceiling(seeds, pairs)
        ratios.append(pairwise(est, truth, pairs) / top if top > 0 else float("nan"))
    r = np.asarray(ratios)
    return {"iso_vs_ceiling_p5": float(np.nanpercentile(r, 5)), "iso_vs_ceiling_p95": float(np.nanpercentile(r, 95)),
            "iso_vs_ceiling_share_below_0.8": float(np.mean(r < 0.8)), "resamples": n, "ratios": r}
