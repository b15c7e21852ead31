"""NSGA-II operators against brute-force references: Python dominance loops and grid-cell counts."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from evolution import nsga2


def _dom(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _brute_fronts(F: np.ndarray) -> list[int]:
    """Peel off the rows no remaining row dominates, one front at a time."""
    rows = [tuple(r) for r in F.tolist()]
    left, fronts, level = set(range(len(rows))), [-1] * len(rows), 0
    while left:
        front = {i for i in left if not any(_dom(rows[j], rows[i]) for j in left)}
        for i in front:
            fronts[i] = level
        left -= front
        level += 1
    return fronts


def _grid_hv(F: np.ndarray, ref: np.ndarray) -> int:
    """Unit cells [c, c + 1] of the integer grid below ``ref`` that some point's box covers."""
    pts = F.astype(int).tolist()
    cells = itertools.product(*[range(int(r)) for r in ref])
    return sum(any(all(p[k] <= c[k] for k in range(len(ref))) for p in pts) for c in cells)


def _ints(rng: np.random.Generator, n: int, m: int, hi: int) -> np.ndarray:
    return rng.integers(0, hi, size=(n, m)).astype(float)


# --- non-dominated sort ------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3])
def test_non_dominated_sort_matches_brute_force(m):
    rng = np.random.default_rng(m)
    for n in range(1, 61):
        for _ in range(3):
            F = _ints(rng, n, m, 6)  # a small range: many ties and duplicated rows
            ranks = nsga2.non_dominated_sort(F)
            assert ranks.dtype.kind == "i" and ranks.tolist() == _brute_fronts(F)


def test_non_dominated_sort_in_blocks(monkeypatch):
    rng = np.random.default_rng(7)
    F = _ints(rng, 80, 3, 8)
    whole = nsga2.non_dominated_sort(F)
    monkeypatch.setattr(nsga2, "_BLOCK", 50)  # forces many small row blocks
    assert np.array_equal(nsga2.non_dominated_sort(F), whole)


def test_duplicates_share_a_front_and_non_finite_rows_come_last():
    F = np.array([[1.0, 2.0], [np.nan, 0.0], [2.0, 1.0], [3.0, 3.0], [-np.inf, 1.0], [1.0, 2.0]])
    assert nsga2.non_dominated_sort(F).tolist() == [0, 2, 0, 1, 2, 0]
    assert nsga2.pareto_front(F).tolist() == [0, 2, 5]
    assert nsga2.non_dominated_sort(np.full((2, 2), np.nan)).tolist() == [0, 0]
    assert nsga2.pareto_front(np.full((2, 2), np.nan)).tolist() == []


def test_dominates():
    assert nsga2.dominates(np.array([1, 2]), np.array([1, 3]))
    assert not nsga2.dominates(np.array([1, 2]), np.array([1, 2]))
    assert not nsga2.dominates(np.array([0, 3]), np.array([1, 2]))


def test_empty_input_is_no_individuals():
    assert nsga2.non_dominated_sort(np.zeros((0, 2))).shape == (0,)
    assert nsga2.pareto_front(np.array([])).tolist() == []
    assert nsga2.hypervolume(np.array([]), np.ones(2)) == 0.0
    assert nsga2.hypervolume(np.zeros((0, 2)), np.ones(2)) == 0.0


# --- crowding ------------------------------------------------------------------------------------
def test_crowding_distance_by_hand():
    F = np.array([[0.0, 5.0], [1.0, 3.0], [2.0, 2.0], [5.0, 0.0]])
    d = nsga2.crowding_distance(F)
    # f1: point 1 has neighbours 0 and 2 -> 2/5, point 2 has 1 and 5 -> 4/5;
    # f2: point 1 has neighbours 2 and 5 -> 3/5, point 2 has 0 and 3 -> 3/5.
    assert np.isinf(d[[0, 3]]).all()
    assert d[1] == pytest.approx(2 / 5 + 3 / 5) and d[2] == pytest.approx(4 / 5 + 3 / 5)
    assert np.isinf(nsga2.crowding_distance(F[:2])).all() and np.isinf(nsga2.crowding_distance(F[:1])).all()


def test_crowding_constant_objective_adds_nothing():
    F = np.array([[0.0, 7.0], [1.0, 7.0], [3.0, 7.0], [4.0, 7.0]])
    d = nsga2.crowding_distance(F)
    assert np.isinf(d[[0, 3]]).all() and d[1] == pytest.approx(3 / 4) and d[2] == pytest.approx(3 / 4)
    assert nsga2.crowding_distance(np.ones((3, 2))).tolist() == [0.0, 0.0, 0.0]


def test_rank_and_crowding_is_per_front():
    F = np.array([[0.0, 5.0], [1.0, 3.0], [2.0, 2.0], [5.0, 0.0], [6.0, 6.0], [np.nan, 0.0]])
    rank, crowd = nsga2.rank_and_crowding(F)
    assert rank.tolist() == [0, 0, 0, 0, 1, 2]
    assert np.allclose(crowd[:4], nsga2.crowding_distance(F[:4]))
    assert np.isinf(crowd[4]) and crowd[5] == 0.0


# --- tournament ----------------------------------------------------------------------------------
def test_tournament_is_deterministic_given_the_seed():
    rng = np.random.default_rng(3)
    rank, crowd = rng.integers(0, 3, 30), rng.random(30)
    a = nsga2.tournament(rank, crowd, 40, np.random.default_rng(0), size=3)
    b = nsga2.tournament(rank, crowd, 40, np.random.default_rng(0), size=3)
    assert np.array_equal(a, b) and a.shape == (40,) and a.dtype.kind == "i"


def test_tournament_order_rank_then_crowding_then_index():
    rng = np.random.default_rng(1)
    # Two contestants are always distinct, so the rank-0 point is always in and always wins.
    assert (nsga2.tournament(np.array([1, 0]), np.array([np.inf, 0.0]), 50, rng) == 1).all()
    assert (nsga2.tournament(np.array([1, 1]), np.array([0.5, 2.0]), 50, rng) == 1).all()
    assert (nsga2.tournament(np.array([1, 1]), np.array([2.0, 2.0]), 50, rng) == 0).all()
    rank, crowd = np.array([2, 0, 1, 0, 0]), np.array([9.0, 1.0, 9.0, np.inf, np.inf])
    assert (nsga2.tournament(rank, crowd, 50, rng, size=5) == 3).all()


def test_tournament_contestants_are_uniform():
    picks = nsga2.tournament(np.zeros(5, int), np.zeros(5), 5000, np.random.default_rng(4), size=1)
    assert np.allclose(np.bincount(picks, minlength=5) / 5000, 0.2, atol=0.03)
    # With size 2 of 3 equal contestants the winner is the lower index: 0 wins 2/3, 1 wins 1/3.
    picks = nsga2.tournament(np.zeros(3, int), np.zeros(3), 6000, np.random.default_rng(5), size=2)
    assert np.allclose(np.bincount(picks, minlength=3) / 6000, [2 / 3, 1 / 3, 0], atol=0.03)


def test_tournament_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="tournament size must be in"):
        nsga2.tournament(np.zeros(3, int), np.zeros(3), 1, rng, size=4)
    with pytest.raises(ValueError, match="rank and crowding"):
        nsga2.tournament(np.zeros(3, int), np.zeros(2), 1, rng)


# --- survival and aging --------------------------------------------------------------------------
def _brute_survival(F: np.ndarray, n_keep: int) -> list[int]:
    """Fill front by front; the last front keeps its largest crowding distances, lower index first."""
    ranks, kept = _brute_fronts(F), []
    for r in range(max(ranks) + 1):
        front = [i for i in range(len(F)) if ranks[i] == r]
        if len(kept) + len(front) <= n_keep:
            kept += front
            continue
        d = nsga2.crowding_distance(F[front])
        order = sorted(range(len(front)), key=lambda k: (-d[k], front[k]))
        kept += [front[k] for k in order[: n_keep - len(kept)]]
        break
    return sorted(kept)


def test_survival_matches_front_by_front_filling():
    rng = np.random.default_rng(11)
    for _ in range(100):
        n = int(rng.integers(1, 30))
        F, n_keep = _ints(rng, n, int(rng.integers(2, 4)), 10), int(rng.integers(0, n + 1))
        assert nsga2.survival(F, n_keep).tolist() == _brute_survival(F, n_keep)


def test_survival_keeps_front_zero_and_truncates_by_crowding():
    front0 = [[0.0, 9.0], [9.0, 0.0], [4.0, 4.0]]
    front1 = [[1.0, 14.0], [3.0, 12.0], [6.0, 9.0], [14.0, 1.0]]  # crowding inf, 1.0, 1.4, inf (by hand)
    F = np.array(front0 + front1 + [[20.0, 20.0]])
    assert nsga2.survival(F, 3).tolist() == [0, 1, 2]
    assert nsga2.survival(F, 5).tolist() == [0, 1, 2, 3, 6]
    assert nsga2.survival(F, 6).tolist() == [0, 1, 2, 3, 5, 6]
    assert nsga2.survival(F, 8).tolist() == list(range(8))


def test_survival_with_age_removes_the_oldest_among_equal_crowding():
    F = np.ones((4, 2))  # one front of duplicates: crowding all 0
    assert nsga2.survival(F, 2).tolist() == [0, 1]
    assert nsga2.survival(F, 2, age=np.array([0, 3, 1, 2])).tolist() == [0, 2]
    # Crowding still beats age: the extremes stay even when they are the oldest.
    G = np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    assert nsga2.survival(G, 3, age=np.array([9, 5, 0, 1, 9])).tolist() == [0, 2, 4]
    assert nsga2.survival(G, 3).tolist() == [0, 1, 4]


def test_aging_removal():
    assert nsga2.aging_removal(np.array([3, 9, 1, 9]), 3).tolist() == [1, 3, 0]
    assert nsga2.aging_removal(np.array([3, 9]), 0).tolist() == []
    with pytest.raises(ValueError, match="n_remove must be in"):
        nsga2.aging_removal(np.array([3, 9]), 3)


def test_survival_errors():
    with pytest.raises(ValueError, match="n_keep must be in"):
        nsga2.survival(np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match=r"age must have shape \(2,\)"):
        nsga2.survival(np.zeros((2, 2)), 1, age=np.zeros(3))


# --- hypervolume ---------------------------------------------------------------------------------
def test_hypervolume_2d_by_hand():
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert nsga2.hypervolume(F, np.array([4.0, 4.0])) == 3 + 2 + 1
    assert nsga2.hypervolume(F, np.array([2.5, 5.0])) == 1.5 * 2 + 0.5 * 1
    assert nsga2.hypervolume(F[:1], np.array([1.5, 3.5])) == 0.25


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_hypervolume_equals_the_grid_cell_count(m):
    rng = np.random.default_rng(20 + m)
    hi = {1: 9, 2: 9, 3: 7, 4: 5}[m]
    ref = np.full(m, float(hi))
    for _ in range(30):
        F = _ints(rng, int(rng.integers(1, 12)), m, hi + 2)  # some points on or beyond ref
        assert nsga2.hypervolume(F, ref) == _grid_hv(F, ref)  # integer sums: exact in float


def test_hypervolume_ignores_dominated_duplicate_outside_and_non_finite_points():
    rng = np.random.default_rng(5)
    ref = np.array([6.0, 6.0, 6.0])
    F = _ints(rng, 10, 3, 6)
    base = nsga2.hypervolume(F, ref)
    worse = F[rng.integers(0, 10, 5)] + rng.integers(0, 3, (5, 3))
    extra = np.array([[6.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0]])
    more = np.vstack([F, F, worse, extra])[rng.permutation(28)]
    assert nsga2.hypervolume(more, ref) == base
    assert nsga2.hypervolume(F[nsga2.pareto_front(F)], ref) == base


def test_hypervolume_errors():
    with pytest.raises(ValueError, match="F has 2 objectives but ref has 3"):
        nsga2.hypervolume(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="ref must be a 1-D point"):
        nsga2.hypervolume(np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="ref must be finite"):
        nsga2.hypervolume(np.zeros((2, 2)), np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"F must be a 2-D \(n, m\) array"):
        nsga2.hypervolume(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"F must be a 2-D \(n, m\) array"):
        nsga2.non_dominated_sort(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="crowding_distance needs finite"):
        nsga2.crowding_distance(np.array([[0.0, 1.0], [1.0, 0.0], [np.nan, 2.0]]))
