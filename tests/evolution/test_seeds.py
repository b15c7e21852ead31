import numpy as np
import pytest

from evolution import seeds
from evolution.genome import SearchSpace
from evolution.sampling import GenomeSampler, law_edges, random_genome


def test_mlp_spec_is_dense_and_spread():
    space = SearchSpace((1, 8, 8), 10, levels=2, width=64)
    g = seeds.build("mlp:64,16", space)
    per_level = np.bincount(space.level[g.hidden])
    assert per_level[1] == 64 and per_level[2] == 16
    assert g.n_edges == 64 * 64 + 64 * 16 + 16 * 10 and g.ties is None
    # The 16 neurons of level 2 cover the lattice, not one corner of it.
    pos = space.positions[g.hidden[space.level[g.hidden] == 2]]
    assert pos[:, 0].min() < 2 and pos[:, 0].max() > 5


def test_conv_spec_ties_kernels():
    space = seeds.space_for_spec("conv:8x3,mlp:64", (1, 8, 8), 10)
    assert (space.channels, space.width, space.lattice) == (8, 512, (8, 8))
    g = seeds.build("conv:8x3,mlp:64", space)
    conv = space.level[g.edges[:, 1]] == 1
    assert len(np.unique(g.ties[conv])) == 8 * 9
    # Interior neurons see 9 pixels, corners 4 (zero padding adds no edge).
    indeg = np.bincount(g.edges[conv, 1], minlength=space.n_neurons)
    assert indeg[space.hidden_id(1, 9)] == 9 and indeg[space.hidden_id(1, 0)] == 4


def test_stride_and_second_conv():
    space = seeds.space_for_spec("conv:4x3s2,conv:4x3,mlp:32", (1, 28, 28), 10)
    assert space.lattice == (14, 14) and space.levels == 3
    g = seeds.build("conv:4x3s2,conv:4x3,mlp:32", space)
    second = space.level[g.edges[:, 1]] == 2
    assert len(np.unique(g.ties[second])) == 4 * 4 * 9


@pytest.mark.parametrize("spec, message", [
    ("mlp:abc", "cannot read mlp:'abc'"),
    ("rnn:4", "unknown layer kind 'rnn'"),
    ("mlp:0", "sizes must be positive"),
    ("mlp:8,conv:2x3", "conv layers must come before mlp layers"),
    ("conv:4x3,conv:4x3s2", "only the first conv layer may have a stride"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        seeds.parse_spec(spec)


def test_spec_must_fit_the_grid():
    space = SearchSpace((1, 8, 8), 10, levels=1, width=32)
    with pytest.raises(ValueError, match="does not fit the grid's width 32"):
        seeds.build("mlp:64", space)
    with pytest.raises(ValueError, match="has 2 hidden layers; the grid has 1 levels"):
        seeds.build("mlp:8,8", space)
    with pytest.raises(ValueError, match="conv layers need image data"):
        seeds.space_for_spec("conv:2x3", (10,), 2)


def test_random_genome_density_law_and_determinism():
    space = SearchSpace((1, 28, 28), 10, levels=2, width=64)
    a = random_genome(space, np.random.default_rng(5), density=0.05, n_levels=1, fill=(1.0, 1.0))
    b = random_genome(space, np.random.default_rng(5), density=0.05, n_levels=1, fill=(1.0, 1.0))
    assert np.array_equal(a.edges, b.edges)
    into_hidden = law_edges(space, space.inputs, space.level_slots(1), 0.05, np.random.default_rng(0))
    assert abs(len(into_hidden) / (784 * 64) - 0.05) < 0.003
    into_out = law_edges(space, space.level_slots(1), space.outputs, 0.5, np.random.default_rng(0))
    assert abs(len(into_out) / (64 * 10) - 0.5) < 0.06
    # The law favours near edges: drawn edges are shorter than random pairs.
    d = np.linalg.norm(space.positions[into_hidden[:, 0]] - space.positions[into_hidden[:, 1]], axis=1)
    rng = np.random.default_rng(0)
    s, t = rng.integers(0, 784, 5000), space.hidden_id(1, rng.integers(0, 64, 5000))
    assert d.mean() < 0.8 * np.linalg.norm(space.positions[s] - space.positions[t], axis=1).mean()
    a.validate()


def test_density_scale_is_exact_with_and_without_saturation():
    from evolution.sampling import _scale_to_density

    space = SearchSpace((1, 28, 28), 10, levels=2, width=64)
    s, d = (m.ravel() for m in np.meshgrid(space.inputs, space.level_slots(1), indexing="ij"))
    law = space.edge_law(s, d)
    for density in (0.001, 0.05, 0.5, 0.95):  # low: a plain rescale; high: the top of the law saturates
        p = _scale_to_density(law, density)
        assert p.mean() == pytest.approx(density, rel=1e-9) and p.max() <= 1.0
        # still proportional to the law below saturation
        free = p < 1.0
        assert np.allclose(p[free] / law[free], (p[free] / law[free])[0])
    assert (_scale_to_density(law, 0.95) == 1.0).any() and (_scale_to_density(law, 0.001) < 1.0).all()
    # more density than nonzero law (an underflowed law far away): every nonzero pair, no NaN
    assert _scale_to_density(np.array([1.0, 0.5, 0.0, 0.0]), 0.6).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_cached_level_law_lines_up_with_the_edge_law():
    from evolution.sampling import _level_law, _slot_index

    space = SearchSpace((1, 28, 28), 10, levels=3, width=64)
    rng = np.random.default_rng(0)
    for a, b in ((0, 1), (0, 3), (1, 2), (1, 3)):  # skip pairs too: the law depends on the target level
        src = space.inputs if a == 0 else space.level_slots(a)
        src = np.sort(rng.choice(src, 20, replace=False))
        dst = np.sort(rng.choice(space.level_slots(b), 15, replace=False))
        s, d = (m.ravel() for m in np.meshgrid(src, dst, indexing="ij"))
        got = _level_law(space, a, b)[np.ix_(_slot_index(space, src, a), _slot_index(space, dst, b))].ravel()
        assert np.array_equal(got, space.edge_law(s, d))


def test_samplers_draw_the_genomes_they_always_drew():
    """Seeded draws pinned (edges, sum of edge ids, sum of hidden ids), taken with the samplers as
    they were before the cached law, Newton scale and faster pruning: a change of the stream
    (which changes every trained estimator) has to be deliberate."""
    space = SearchSpace((1, 8, 8), 10, levels=3, width=16)
    pinned = {
        ("uniform", 0.0): [(49, 306631, 646), (127, 515959, 0), (156, 775350, 635)],
        ("uniform", 0.5): [(80, 375169, 292), (489, 2809327, 2400), (258, 1520632, 2527)],
        ("fair", 0.5): [(258, 1404715, 1572), (291, 1453922, 1315), (204, 1088489, 1313)],
        ("nested", 0.0): [(108, 483208, 422), (19, 95360, 356), (436, 2636496, 2881)],
        ("sandwich", 0.0): [(880, 5613402, 4200), (5, 30230, 77), (108, 483208, 422)],
    }
    for (kind, skip), want in pinned.items():
        genomes = GenomeSampler(space, kind, (0.05, 0.5), skip=(0.0, skip)).sample(np.random.default_rng(0), 3)
        got = [(g.n_edges, int(space.edge_id(g.edges[:, 0], g.edges[:, 1]).sum()), int(g.hidden.sum())) for g in genomes]
        assert got == want, (kind, skip)
