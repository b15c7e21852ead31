import itertools

import numpy as np
import pytest

from evolution import nsga2


def _brute_fronts(F):
    left, fronts, level = set(range(len(F))), np.full(len(F), -1), 0
    while left:
        front = {i for i in left if not any(nsga2.dominates(F[j], F[i]) for j in left if j != i)}
        for i in front:
            fronts[i] = level
        left -= front
        level += 1
    return fronts


@pytest.mark.parametrize("m", [2, 3])
def test_non_dominated_sort_matches_brute_force(m):
    rng = np.random.default_rng(m)
    for _ in range(60):
        F = rng.integers(0, 6, size=(int(rng.integers(1, 40)), m)).astype(float)  # ties and duplicates
        assert np.array_equal(nsga2.non_dominated_sort(F), _brute_fronts(F))


def test_non_finite_rows_come_last():
    F = np.array([[1.0, 2.0], [np.nan, 0.0], [2.0, 1.0], [3.0, 3.0], [np.inf, 1.0]])
    assert nsga2.non_dominated_sort(F).tolist() == [0, 2, 0, 1, 2]


def test_crowding_distance_by_hand():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = nsga2.crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)
    assert np.isinf(nsga2.crowding_distance(F[:2])).all()


def _grid_hv(F, ref):
    """Count the unit cells of an integer grid dominated by some point: exact for integer points."""
    cells = itertools.product(*[range(0, int(r)) for r in ref])
    return sum(any(all(p[k] <= c[k] for k in range(len(ref))) for p in F) for c in cells)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_cell_count(m):
    rng = np.random.default_rng(10 + m)
    ref = np.full(m, 7.0)
    for _ in range(25):
        F = rng.integers(0, 8, size=(int(rng.integers(1, 12)), m)).astype(float)
        assert nsga2.hypervolume(F, ref) == pytest.approx(_grid_hv(F, ref))


def test_hypervolume_by_hand_and_invariances():
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert nsga2.hypervolume(F, np.array([4.0, 4.0])) == pytest.approx(3 + 2 + 1)
    more = np.vstack([F, [[3.0, 3.0], [2.0, 2.0], [5.0, 0.0]]])  # dominated, duplicate, outside ref
    assert nsga2.hypervolume(more, np.array([4.0, 4.0])) == pytest.approx(6)
    with pytest.raises(ValueError, match="reference point has 3 objectives, the points have 2"):
        nsga2.hypervolume(F, np.zeros(3))
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        nsga2.hypervolume(np.zeros((1, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"\(n, m\) array"):
        nsga2.non_dominated_sort(np.zeros(3))


def test_tournament_is_deterministic_and_prefers_rank():
    rank = np.array([0, 1, 1, 2])
    crowd = np.array([1.0, np.inf, 0.5, 3.0])
    a = nsga2.tournament(rank, crowd, 50, np.random.default_rng(0), size=2)
    b = nsga2.tournament(rank, crowd, 50, np.random.default_rng(0), size=2)
    assert np.array_equal(a, b)
    assert (nsga2.tournament(rank, crowd, 20, np.random.default_rng(1), size=4) == 0).all()
    # Same rank: the larger crowding distance wins.
    assert (nsga2.tournament(np.array([1, 1]), np.array([0.5, 2.0]), 10, np.random.default_rng(2), size=2) == 1).all()


def test_survival_fills_fronts_and_truncates_by_crowding():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.5], [4.0, 0.0], [5.0, 5.0], [6.0, 6.0]])
    assert nsga2.survival(F, 4).tolist() == [0, 1, 2, 3]
    kept = nsga2.survival(F, 3)
    assert {0, 3} <= set(kept.tolist()) and 4 not in kept
    # Equal crowding: the oldest leaves first.
    G = np.array([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    assert nsga2.survival(G, 3, age=np.array([0, 0, 9, 1])).tolist() == [0, 1, 3]
    assert nsga2.aging_removal(np.array([3, 9, 9, 1]), 2).tolist() == [1, 2]
