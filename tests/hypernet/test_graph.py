import numpy as np
import pytest
import torch

from evolution.genome import Genome, SearchSpace
from evolution.sampling import random_genome
from hypernet.graph import EDGE_FEATURES, NODE_FEATURES, to_batch, to_data


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((1, 8, 8), 10, levels=3, width=32)


def test_nodes_are_the_present_neurons_and_edges_keep_genome_order(space):
    g = random_genome(space, np.random.default_rng(0), density=0.2, skip=0.5)
    # A shuffled edge list: the graph must follow the genome's order, not any sorted one.
    g = Genome(space, g.hidden, g.edges[np.random.default_rng(1).permutation(g.n_edges)])
    d = to_data(g)
    assert d.num_nodes == space.n_inputs + len(g.hidden) + space.n_outputs
    ids = g.neurons  # node k is neuron ids[k]
    assert np.array_equal(ids[d.edge_index.numpy().T], g.edges)
    assert np.array_equal(ids[d.hidden_index.numpy()], g.hidden)
    assert np.array_equal(ids[d.output_index.numpy()], space.outputs)
    assert d.x.shape == (d.num_nodes, NODE_FEATURES) and d.edge_attr.shape == (g.n_edges, EDGE_FEATURES)


def test_features_against_the_space(space):
    g = random_genome(space, np.random.default_rng(2), density=0.3)
    d = to_data(g)
    ids = g.neurons
    kind = d.x[:, :3].argmax(1).numpy()
    assert np.array_equal(kind, np.where(space.level[ids] == 0, 0, np.where(space.level[ids] == space.output_level, 2, 1)))
    assert np.allclose(d.x[:, 3].numpy(), space.level[ids] / space.output_level)
    assert np.allclose(d.x[:, 4:6].numpy() * 8 - 0.5, space.positions[ids], atol=1e-5)  # 8x8 plane
    indeg = np.array([(g.edges[:, 1] == i).sum() for i in ids])
    assert np.allclose(d.x[:, 7].numpy(), np.log1p(indeg), atol=1e-6)
    s, t = g.edges[0]
    dist = np.hypot(*(space.positions[t] - space.positions[s])) / 8 / np.sqrt(2)
    assert d.edge_attr[0, 0].item() == pytest.approx(dist, abs=1e-6)
    assert d.edge_attr[0, 1].item() == pytest.approx((space.level[t] - space.level[s]) / space.output_level)
    assert 0 <= d.x[:, 3:7].min() and d.x[:, 3:7].max() <= 1


def test_batch_offsets_indices_and_keeps_counts(space):
    genomes = [random_genome(space, np.random.default_rng(i), density=0.2) for i in range(3)]
    b = to_batch(genomes)
    assert b.n_edges.tolist() == [g.n_edges for g in genomes]
    assert b.n_hidden.tolist() == [len(g.hidden) for g in genomes]
    starts = np.cumsum([0] + [to_data(g).num_nodes for g in genomes])[:-1]
    hidden = b.hidden_index.split(b.n_hidden.tolist())
    outputs = b.output_index.split(b.n_outputs.tolist())
    edges = b.edge_index.split(b.n_edges.tolist(), dim=1)
    for g, h, o, e, s in zip(genomes, hidden, outputs, edges, starts):
        assert np.array_equal(g.neurons[(h - s).numpy()], g.hidden)
        assert np.array_equal(g.neurons[(o - s).numpy()], space.outputs)
        assert np.array_equal(g.neurons[(e - s).numpy().T], g.edges)


def test_tabular_inputs_and_multichannel_images_convert():
    flat = random_genome(SearchSpace((12,), 3, levels=1, width=8), np.random.default_rng(0), density=0.5)
    rgb_space = SearchSpace((3, 4, 4), 5, levels=1, width=8, channels=2)
    rgb = random_genome(rgb_space, np.random.default_rng(0), density=0.5)
    for g in (flat, rgb):
        d = to_data(g)
        assert torch.isfinite(d.x).all() and torch.isfinite(d.edge_attr).all()
    x = to_data(rgb).x
    inputs = x[: rgb_space.n_inputs, 6]
    assert torch.allclose(inputs, torch.arange(3).repeat_interleave(16) / 3)  # input channel
