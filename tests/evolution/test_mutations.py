import numpy as np
import pytest
from scipy.stats import chisquare

from evolution import seeds
from evolution.genome import Genome, SearchSpace
from evolution.mutations import MutationRates, add_edges, duplicate_neuron, mutate, remove_edges, tie_weights
from evolution.sampling import random_genome


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((1, 8, 8), 10, levels=3, width=32)


def test_a_thousand_random_mutations_give_valid_pruned_children(space):
    rng = np.random.default_rng(0)
    g = random_genome(space, rng, density=0.2)
    seen = set()
    for i in range(1000):
        child, how = mutate(g, rng)
        child.validate()
        seen.add(how.mutation)
        assert child.pruned().n_edges == child.n_edges and len(child.pruned().hidden) == len(child.hidden)
        assert np.isin(space.outputs, child.edges[:, 1]).any()
        if i % 4 == 0:  # walk a lineage, so mutations also meet grown and shrunk genomes
            g = child
    assert {"add_neurons", "add_edges", "remove_edges", "remove_level", "duplicate_neuron"} <= seen
    assert seen & {"tie_weights", "untie_weights"}


def test_same_seed_same_child(space):
    g = random_genome(space, np.random.default_rng(1), density=0.2)
    a, _ = mutate(g, np.random.default_rng(7))
    b, _ = mutate(g, np.random.default_rng(7))
    assert np.array_equal(a.edges, b.edges) and np.array_equal(a.hidden, b.hidden)


def test_new_edges_follow_the_edge_law():
    # One hidden neuron in the middle of a 16x16 plane, a lone input edge: every drawn edge is an
    # input -> hidden edge, so their distances must follow p(d) ~ exp(-d / (4 + 1.5)).
    space = SearchSpace((1, 16, 16), 1, levels=1, width=1)
    h = space.hidden_id(1, 0)
    g = Genome(space, [h], [[0, h], [h, space.outputs[0]]]).validate()
    rng = np.random.default_rng(0)
    counts = np.zeros(space.n_inputs)
    for _ in range(6000):
        child, _ = add_edges(g, rng, n_pairs=1)
        new = child.edges[(child.edges[:, 1] == h) & (child.edges[:, 0] != 0)]
        np.add.at(counts, new[:, 0], 1)
    # Bin inputs by distance and compare drawn counts with the law's expectation.
    d = np.linalg.norm(space.positions[space.inputs] - space.positions[h], axis=1)
    bins = np.digitize(d, [2, 4, 6, 8, 10])
    observed = np.bincount(bins, weights=counts[space.inputs])
    law = np.exp(-d / 5.5)
    law[0] = 0  # input 0 already has its edge
    expected = np.bincount(bins, weights=law) / law.sum() * counts.sum()
    assert counts.sum() > 1500
    assert chisquare(observed, expected).pvalue > 1e-3
    big = expected > 200
    assert np.all(np.abs(observed[big] / expected[big] - 1) < 0.15)


def test_output_edges_are_uniform():
    space = SearchSpace((1, 4, 4), 8, levels=1, width=1)
    h = space.hidden_id(1, 0)
    g = Genome(space, [h], [[0, h], [h, space.outputs[0]]]).validate()
    rng = np.random.default_rng(0)
    counts = np.zeros(8)
    for _ in range(800):
        child, _ = add_edges(g, rng, n_pairs=3)
        new = child.edges[(child.edges[:, 0] == h)]
        np.add.at(counts, new[:, 1] - space.outputs[0], 1)
    counts = counts[1:]  # output 0 is the parent's own edge
    assert chisquare(counts).pvalue > 1e-3


def test_remove_edges_by_weight_magnitude_drops_the_smallest():
    space = SearchSpace((1, 8, 8), 10, levels=1, width=8)
    g = seeds.build("mlp:8", space)
    w = np.random.default_rng(0).normal(size=g.n_edges)
    child, _ = remove_edges(g, np.random.default_rng(0), n_pairs=1, weights=w)
    kept = np.isin(space.edge_id(g.edges[:, 0], g.edges[:, 1]), space.edge_id(child.edges[:, 0], child.edges[:, 1]))
    assert 0 < (~kept).sum() <= 0.31 * max(64 * 8, 8 * 10)
    pair = space.level[g.edges[~kept][0, 1]]
    in_pair = space.level[g.edges[:, 1]] == pair
    assert np.abs(w[~kept]).max() <= np.abs(w[kept & in_pair]).min()


def test_remove_edges_touches_10_to_30_percent_of_one_pair():
    space = SearchSpace((1, 8, 8), 10, levels=1, width=32)
    g = seeds.build("mlp:32", space)
    lv = space.level

    def pair_edges(genome: Genome, a: int, b: int) -> int:
        return int(((lv[genome.edges[:, 0]] == a) & (lv[genome.edges[:, 1]] == b)).sum())

    cut = set()
    for seed in range(8):
        child, _ = remove_edges(g, np.random.default_rng(seed), n_pairs=1)
        removed = [1 - pair_edges(child, a, b) / pair_edges(g, a, b) for a, b in ((0, 1), (1, space.output_level))]
        untouched, touched = sorted(removed)
        assert untouched == 0 and 0.1 <= touched <= 0.3, removed
        cut.add(int(np.argmax(removed)))
    assert cut == {0, 1}  # either pair can be the one cut


def test_duplicate_copies_incoming_and_outgoing(space):
    g = random_genome(space, np.random.default_rng(2), density=0.3, n_levels=1)
    child, how = duplicate_neuron(g, np.random.default_rng(0))
    (orig, copy), = how.duplicated
    assert space.level[orig] == space.level[copy] and copy not in g.hidden
    src_o = set(g.edges[g.edges[:, 1] == orig, 0].tolist())
    assert set(child.edges[child.edges[:, 1] == copy, 0].tolist()) == src_o
    assert set(child.edges[child.edges[:, 0] == copy, 1].tolist()) == set(g.edges[g.edges[:, 0] == orig, 1].tolist())


def test_tie_weights_ties_edges_of_one_offset(space):
    g = seeds.build("mlp:32", SearchSpace((1, 8, 8), 10, levels=1, width=32))
    child, how = tie_weights(g, np.random.default_rng(0))
    assert how.mutation == "tie_weights" and child.n_weights < child.n_edges
    groups = child.groups
    big = np.flatnonzero(np.bincount(groups) > 1)[0]
    idx = np.flatnonzero(groups == big)
    off = np.round(child.space.positions[child.edges[idx, 1]] - child.space.positions[child.edges[idx, 0]])
    assert (off == off[0]).all()
    # Again: half the time it unties a group (here the only one), else it ties another offset.
    outcomes = {}
    for seed in range(10):
        again, how2 = tie_weights(child, np.random.default_rng(seed))
        outcomes.setdefault(how2.mutation, again)
    untied = outcomes["untie_weights"]
    assert np.array_equal(untied.edges, child.edges) and untied.n_weights == g.n_edges
    assert outcomes["tie_weights"].n_weights < child.n_weights


def test_rates_are_validated_and_respected(space):
    with pytest.raises(ValueError, match="non-negative rates"):
        MutationRates(add_edges=-1)
    rates = MutationRates(add_neurons=0, add_edges=1, remove_edges=0, remove_level=0, duplicate_neuron=0, tie_weights=0)
    g = random_genome(space, np.random.default_rng(0), density=0.2)
    rng = np.random.default_rng(0)
    assert {mutate(g, rng, rates)[1].mutation for _ in range(20)} == {"add_edges"}


def test_a_wide_input_line_draws_finite_probabilities():
    # 6,000 tabular features on a line: distances of thousands make exp(-d / 5.5) underflow to 0
    # (and its inverse overflow), which drawing in log space must survive.
    space = SearchSpace((6000,), 2, levels=1, width=4)
    far = np.array([0, 2999, 5999])
    hidden = space.level_slots(1)
    edges = np.array([[s, h] for s in far for h in hidden] + [[h, o] for h in hidden for o in space.outputs])
    g = Genome(space, hidden, edges).validate()
    rng = np.random.default_rng(0)
    for op in (add_edges, remove_edges):
        for _ in range(5):
            child, _ = op(g, rng)
            child.validate()
    assert len({mutate(g, rng)[0].n_edges for _ in range(20)}) > 1
