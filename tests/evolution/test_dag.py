import numpy as np

from evolution import dag


def _brute_reach(sources, edges, n):
    seen, stack = set(sources), list(sources)
    while stack:
        u = stack.pop()
        for s, d in edges:
            if s == u and d not in seen:
                seen.add(d)
                stack.append(d)
    return np.array([i in seen for i in range(n)])


def test_reachability_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 25))
        e = rng.integers(0, n, size=(int(rng.integers(0, 40)), 2))
        src = rng.choice(n, size=int(rng.integers(1, 3)), replace=False)
        assert np.array_equal(dag.reachable(src, e, n), _brute_reach(src.tolist(), e.tolist(), n))
        back = _brute_reach(src.tolist(), e[:, ::-1].tolist(), n)
        assert np.array_equal(dag.reachable(src, e, n, reverse=True), back)
        # one pass rarely settles: the BFS finishes (as for graphs deeper than max_passes)
        assert np.array_equal(dag.reachable(src, e, n, reverse=True, max_passes=1), back)
    chain = np.stack([np.arange(39), np.arange(1, 40)], 1)  # 39 hops: more than max_passes, so the BFS
    assert dag.reachable([0], chain, 41).tolist() == [True] * 40 + [False]


def test_find_cycle_returns_a_real_cycle():
    e = np.array([[0, 1], [1, 2], [2, 3], [3, 1], [3, 4]])
    cycle = dag.find_cycle(e, 5)
    assert cycle[0] == cycle[-1] and set(cycle) == {1, 2, 3}
    for a, b in zip(cycle, cycle[1:]):
        assert [a, b] in e.tolist()
    assert dag.find_cycle(np.array([[0, 1], [1, 2], [0, 2]]), 3) is None
    assert dag.find_cycle(np.array([[2, 2]]), 3) == [2, 2]


def test_prune_and_degrees():
    # 0,1 inputs; 5 output; 2 on a path; 3 has no input; 4 reaches no output.
    e = np.array([[0, 2], [2, 5], [3, 5], [1, 4], [0, 5]])
    live, keep = dag.prune(e, 6, np.array([0, 1]), np.array([5]))
    assert live.tolist() == [True, True, True, False, False, True]
    assert keep.tolist() == [True, True, False, False, True]
    indeg, outdeg = dag.degrees(e, 6)
    assert indeg.tolist() == [0, 0, 1, 0, 1, 3] and outdeg.tolist() == [2, 1, 1, 1, 0, 0]


def test_topological_levels():
    level = np.array([0, 0, 2, 1, 3])
    assert dag.topological_levels(level, np.array([[0, 2], [2, 4], [1, 3]])) == [0, 1, 2, 3]
