"""NSGA-II building blocks (Deb et al. 2002), aging removal (Real et al. 2019) and hypervolume.

Every objective is minimised. ``F`` is an ``(n, m)`` float array: one row per individual, one
column per objective. A row holding NaN or +-inf is *non-finite*: it dominates nothing, is dominated
by nothing, sorts into one last front after every finite row, has crowding 0 in
``rank_and_crowding``, is never on the ``pareto_front`` and adds no ``hypervolume``. An empty array
of any shape (``np.array([])`` included) counts as zero individuals.

All functions are pure: no global state, randomness only through a passed ``np.random.Generator``.
"""
from __future__ import annotations

import numpy as np

# Elements of one (rows, n, m) comparison block in the dominance matrix: bounds the temporary
# memory (~16 MiB of bools) whatever n is; the n x n matrix itself costs n^2 bytes.
_BLOCK = 1 << 24


def _objectives(F: np.ndarray) -> np.ndarray:
    """``F`` as a float ``(n, m)`` array, empty input as ``(0, 0)``."""
    F = np.asarray(F, dtype=float)
    if F.size == 0 and F.ndim < 2:
        return F.reshape(0, 0)
    if F.ndim != 2:
        raise ValueError(f"F must be a 2-D (n, m) array of objectives, got shape {F.shape}")
    return F


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` Pareto-dominates ``b``: no worse in every objective, better in one. (m,), (m,)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got shapes {a.shape} and {b.shape}")
    return bool(np.all(a <= b) and np.any(a < b))


def dominance_matrix(F: np.ndarray) -> np.ndarray:
    """``D[i, j]`` = row i dominates row j. (n, m) -> (n, n) bool; non-finite rows take no part."""
    F = _objectives(F)
    n, m = F.shape
    D = np.zeros((n, n), dtype=bool)
    if n == 0:
        return D
    step = max(1, _BLOCK // max(1, n * m))
    for s in range(0, n, step):
        B = F[s:s + step, None, :]
        D[s:s + step] = np.all(B <= F[None], axis=2) & np.any(B < F[None], axis=2)
    finite = np.isfinite(F).all(axis=1)
    # NaN compares false anyway, but an inf row could still dominate or be dominated: cut it out.
    D[~finite] = False
    D[:, ~finite] = False
    return D


def non_dominated_sort(F: np.ndarray) -> np.ndarray:
    """Front index per row, 0 = non-dominated. (n, m) -> (n,) int; Deb et al. 2002, Sec. III-A.

    Equal rows do not dominate each other, so duplicates share a front. Non-finite rows all go to
    one front after the last finite one. Memory is n^2 bytes for the dominance matrix."""
    F = _objectives(F)
    n = F.shape[0]
    rank = np.full(n, -1, dtype=int)
    finite = np.isfinite(F).all(axis=1)
    D = dominance_matrix(F)
    count = D.sum(axis=0)  # how many rows dominate each row
    left = finite.copy()
    front = 0
    while left.any():
        cur = left & (count == 0)
        rank[cur] = front
        left &= ~cur
        count -= D[cur].sum(axis=0)
        front += 1
    rank[~finite] = front
    return rank


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """Crowding distance within ONE front. (n, m) finite -> (n,) float; Deb et al. 2002, Sec. III-B.

    Per objective the points are sorted (stably, so among equal values the lower index comes
    first); both ends get inf and an inner point adds ``(next - prev) / (max - min)``. A constant
    objective adds nothing (not even inf at its ends); a front of at most 2 points is all inf."""
    F = _objectives(F)
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    if not np.isfinite(F).all():
        raise ValueError("crowding_distance needs finite objectives; sort non-finite rows out first")
    dist = np.zeros(n)
    for k in range(m):
        order = np.argsort(F[:, k], kind="stable")
        v = F[order, k]
        span = v[-1] - v[0]
        if span <= 0:
            continue
        dist[order[1:-1]] += (v[2:] - v[:-2]) / span
        dist[order[[0, -1]]] = np.inf
    return dist


def rank_and_crowding(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front index and within-front crowding distance per row. (n, m) -> (n,) int, (n,) float.

    Non-finite rows (the last front) get crowding 0."""
    F = _objectives(F)
    rank = non_dominated_sort(F)
    crowd = np.zeros(F.shape[0])
    finite = np.isfinite(F).all(axis=1)
    for r in np.unique(rank[finite]):
        idx = np.flatnonzero(rank == r)
        crowd[idx] = crowding_distance(F[idx])
    return rank, crowd


def _preference(rank: np.ndarray, crowding: np.ndarray, age: np.ndarray | None = None) -> np.ndarray:
    """Indices from best to worst: lower rank, then higher crowding, then younger, then lower index."""
    n = len(rank)
    c = np.nan_to_num(np.asarray(crowding, dtype=float), nan=-np.inf)
    keys = [np.arange(n)]  # np.lexsort sorts by the LAST key first
    if age is not None:
        keys.append(np.asarray(age))
    keys += [-c, np.asarray(rank)]
    return np.lexsort(keys)


def tournament(rank: np.ndarray, crowding: np.ndarray, n_select: int, rng: np.random.Generator,
               size: int = 2) -> np.ndarray:
    """Winners of ``n_select`` tournaments of ``size`` distinct contestants. (n,), (n,) -> (n_select,) int.

    Contestants are a uniform random subset; the winner has the lowest rank, then the highest
    crowding (NaN counts as lowest), then the lowest index (crowded-comparison operator, Deb et al.
    2002). Tournaments are independent: one individual can win several."""
    rank, crowding = np.asarray(rank), np.asarray(crowding)
    n = len(rank)
    if rank.shape != (n,) or crowding.shape != (n,):
        raise ValueError(f"rank and crowding must be 1-D of one length, got {rank.shape} and {crowding.shape}")
    if not 1 <= size <= n:
        raise ValueError(f"tournament size must be in [1, n={n}], got {size}")
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    pos = np.empty(n, dtype=int)
    pos[_preference(rank, crowding)] = np.arange(n)
    # The `size` smallest of n iid uniform keys form a uniform subset without replacement.
    keys = rng.random((n_select, n))
    contestants = np.argpartition(keys, size - 1, axis=1)[:, :size] if size < n else \
        np.broadcast_to(np.arange(n), (n_select, n))
    best = np.argmin(pos[contestants], axis=1)
    return contestants[np.arange(n_select), best].astype(int)


def survival(F: np.ndarray, n_keep: int, age: np.ndarray | None = None) -> np.ndarray:
    """Indices kept by NSGA-II survival, sorted ascending. (n, m) -> (n_keep,) int; Deb et al. 2002.

    Whole fronts are taken in order; the front that does not fit keeps its largest crowding
    distances. Ties in crowding drop the oldest first when ``age`` (n,) is given (larger = older),
    then the highest index. Non-finite rows are the last front, all with crowding 0."""
    F = _objectives(F)
    n = F.shape[0]
    if not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must be in [0, n={n}], got {n_keep}")
    if age is not None:
        age = np.asarray(age)
        if age.shape != (n,):
            raise ValueError(f"age must have shape ({n},), got {age.shape}")
    rank, crowd = rank_and_crowding(F)
    # Preference is lexicographic in (rank, -crowding, age, index), so taking its head fills whole
    # fronts first and truncates the last one by crowding, exactly as the front-by-front loop would.
    return np.sort(_preference(rank, crowd, age)[:n_keep])


def aging_removal(age: np.ndarray, n_remove: int) -> np.ndarray:
    """Indices of the ``n_remove`` oldest, oldest first. (n,) -> (n_remove,) int; Real et al. 2019.

    Larger ``age`` is older; among equal ages the lower index goes first."""
    age = np.asarray(age)
    if age.ndim != 1:
        raise ValueError(f"age must be 1-D, got shape {age.shape}")
    if not 0 <= n_remove <= len(age):
        raise ValueError(f"n_remove must be in [0, n={len(age)}], got {n_remove}")
    return np.lexsort((np.arange(len(age)), -age))[:n_remove]


def _hv2(P: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume of points strictly inside ``ref``: sort by f1, sweep the running min of f2."""
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    above = np.minimum.accumulate(np.concatenate(([ref[1]], P[:-1, 1])))
    return float(np.sum((ref[0] - P[:, 0]) * np.maximum(above - P[:, 1], 0.0)))


def _hv(P: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume by slicing along the last objective (HSO, While et al. 2006): O(n^(m-1) log n)."""
    n, m = P.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - P[:, 0].min())
    if m == 2:
        return _hv2(P, ref)
    P = P[np.argsort(P[:, -1], kind="stable")]
    z = P[:, -1]
    vol = 0.0
    for j in range(n):
        top = z[j + 1] if j + 1 < n else ref[-1]
        if top > z[j]:  # between equal z values there is no slab
            vol += _hv(P[:j + 1, :-1], ref[:-1]) * (top - z[j])
    return vol


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume dominated by ``F`` (n, m) and bounded by ``ref`` (m,); larger is better.

    Only finite points strictly better than ``ref`` in every objective count. Any m >= 1 works:
    m = 2 is a sort and sweep, m >= 3 slices along the last objective (O(n^2 log n) for m = 3;
    exponential in m, so keep n small beyond that). Dominated points are dropped first."""
    ref = np.asarray(ref, dtype=float)
    if ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"ref must be a 1-D point with m >= 1 objectives, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError(f"ref must be finite, got {ref}")
    F = _objectives(F)
    if F.size == 0 and F.shape[1] == 0:
        return 0.0
    if F.shape[1] != ref.size:
        raise ValueError(f"F has {F.shape[1]} objectives but ref has {ref.size}")
    P = F[np.isfinite(F).all(axis=1) & (F < ref).all(axis=1)]
    if len(P) == 0:
        return 0.0
    P = np.unique(P, axis=0)
    P = P[non_dominated_sort(P) == 0]
    return _hv(P, ref)


def pareto_front(F: np.ndarray) -> np.ndarray:
    """Indices of the finite non-dominated rows (front 0), ascending. (n, m) -> (k,) int.

    Unlike front 0 of ``non_dominated_sort``, this is empty when every row is non-finite."""
    F = _objectives(F)
    rank = non_dominated_sort(F)
    return np.flatnonzero((rank == 0) & np.isfinite(F).all(axis=1))
