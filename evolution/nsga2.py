"""NSGA-II building blocks in pure numpy (Deb et al. 2002); every objective is minimised.

``F`` is an ``(n, m)`` float array of objectives. Rows with NaN or inf are treated as worst: they
form the last front(s), after every finite row.
"""
from __future__ import annotations

import numpy as np


def _check(F: np.ndarray) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ValueError(f"objectives must be an (n, m) array, got shape {F.shape}")
    return F


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(F: np.ndarray) -> np.ndarray:
    """Front index per row, 0 = best (fast non-dominated sort with a vectorised dominance matrix)."""
    F = _check(F)
    n = len(F)
    fronts = np.full(n, -1, dtype=np.int64)
    finite = np.isfinite(F).all(axis=1)
    idx = np.flatnonzero(finite)
    if len(idx):
        G = F[idx]
        le = (G[:, None, :] <= G[None, :, :]).all(axis=2)
        lt = (G[:, None, :] < G[None, :, :]).any(axis=2)
        dom = le & lt  # dom[i, j]: i dominates j
        count = dom.sum(axis=0)
        level = 0
        current = np.flatnonzero(count == 0)
        while len(current):
            fronts[idx[current]] = level
            count = count - dom[current].sum(axis=0)
            count[current] = -1
            current = np.flatnonzero(count == 0)
            level += 1
    bad = np.flatnonzero(~finite)
    if len(bad):
        fronts[bad] = (fronts.max() + 1) if len(idx) else 0
    return fronts


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """Crowding distance of the points of ONE front: inf at the extremes of every objective, else the
    sum over objectives of the neighbours' gap divided by the objective's range in the front."""
    F = _check(F)
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    d = np.zeros(n)
    for k in range(m):
        order = np.argsort(F[:, k], kind="stable")
        v = F[order, k]
        span = v[-1] - v[0]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            d[order[1:-1]] += (v[2:] - v[:-2]) / span
    return d


def rank_and_crowding(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front index and crowding distance (computed within each front) per row."""
    F = _check(F)
    rank = non_dominated_sort(F)
    crowd = np.zeros(len(F))
    for r in np.unique(rank):
        members = np.flatnonzero(rank == r)
        crowd[members] = crowding_distance(F[members]) if np.isfinite(F[members]).all() else 0.0
    return rank, crowd


def tournament(rank: np.ndarray, crowding: np.ndarray, n_select: int, rng: np.random.Generator,
               size: int = 2) -> np.ndarray:
    """Indices of ``n_select`` winners; each tournament draws ``size`` distinct contestants, the lowest
    rank wins, ties go to the larger crowding distance, then to the lower index."""
    n = len(rank)
    if not 1 <= size <= n:
        raise ValueError(f"tournament size {size}: expected 1..{n} (the number of candidates)")
    winners = np.empty(n_select, dtype=np.int64)
    for t in range(n_select):
        c = np.sort(rng.choice(n, size=size, replace=False))
        winners[t] = c[np.lexsort((c, -crowding[c], rank[c]))[0]]
    return winners


def pareto_front(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows (front 0), ascending."""
    F = _check(F)
    if not len(F):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(non_dominated_sort(F) == 0)


def survival(F: np.ndarray, n_keep: int, age: np.ndarray | None = None) -> np.ndarray:
    """Indices kept by NSGA-II survival: whole fronts while they fit, the last one truncated by
    crowding distance (largest kept); among equal crowding the oldest (largest ``age``) go first."""
    F = _check(F)
    rank, crowd = rank_and_crowding(F)
    age = np.zeros(len(F)) if age is None else np.asarray(age, dtype=float)
    order = np.lexsort((np.arange(len(F)), age, -crowd, rank))
    return np.sort(order[:n_keep])


def aging_removal(age: np.ndarray, n_remove: int) -> np.ndarray:
    """Indices of the ``n_remove`` oldest (largest age; ties by lower index), as aging evolution
    removes them (Real et al. 2019)."""
    age = np.asarray(age)
    return np.sort(np.lexsort((np.arange(len(age)), -age))[:n_remove])


def _hv2(P: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume of points strictly better than ``ref`` (sweep over the first objective)."""
    if not len(P):
        return 0.0
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    hv, best_y = 0.0, ref[1]
    for x, y in P:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume dominated by ``F`` and bounded by the reference point ``ref`` (m = 2 or 3);
    points not strictly better than ``ref`` in every objective add nothing."""
    F = _check(F)
    ref = np.asarray(ref, dtype=float).reshape(-1)
    if F.shape[1] != len(ref):
        raise ValueError(f"reference point has {len(ref)} objectives, the points have {F.shape[1]}")
    if len(ref) not in (2, 3):
        raise ValueError(f"hypervolume is implemented for 2 or 3 objectives, got {len(ref)}")
    P = F[np.isfinite(F).all(axis=1) & (F < ref).all(axis=1)]
    if len(ref) == 2:
        return _hv2(P, ref)
    # Slice along the third objective: between consecutive levels the dominated area is constant.
    P = P[np.argsort(P[:, 2], kind="stable")]
    hv = 0.0
    for i in range(len(P)):
        top = P[i + 1, 2] if i + 1 < len(P) else ref[2]
        if top > P[i, 2]:
            hv += _hv2(P[: i + 1, :2], ref[:2]) * (top - P[i, 2])
    return hv
