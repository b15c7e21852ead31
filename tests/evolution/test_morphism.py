import numpy as np
import pytest
import torch

from evolution.genome import SearchSpace
from evolution.morphism import drift, inherit
from evolution.mutations import OPERATORS, add_edges, duplicate_neuron
from evolution.network import SparseNet
from evolution.sampling import random_genome


@pytest.fixture
def parent() -> SparseNet:
    space = SearchSpace((1, 8, 8), 10, levels=3, width=32)
    g = random_genome(space, np.random.default_rng(0), density=0.3, n_levels=3)
    net = SparseNet(g, torch.Generator().manual_seed(0), mode="dense")
    with torch.no_grad():
        net.norm_weight.uniform_(0.5, 1.5)
        net.norm_bias.uniform_(-0.3, 0.3)
    return net


def test_adding_edges_at_zero_changes_no_logit(parent):
    rng = np.random.default_rng(1)
    x = torch.rand(50, 64, dtype=torch.float64)
    parent = parent.double()
    for _ in range(20):
        child_g, how = add_edges(parent.genome, rng)
        child = inherit(parent, child_g, how).double()
        child.mode = "dense"
        assert child_g.n_edges > parent.genome.n_edges
        a, b = child(x), parent(x)
        # Exact in exact arithmetic; when a new edge makes an unused input live, the matmul gains
        # a (zero) column and BLAS may sum the same terms in another order.
        assert (a - b).abs().max() <= 1e-12
        same_shape = [len(l) for l in child.plan.levels] == [len(l) for l in parent.plan.levels]
        if same_shape and len(sum(child.plan.pairs_into, [])) == len(sum(parent.plan.pairs_into, [])):
            assert torch.equal(a, b)


def test_duplicate_copies_incoming_and_halves_outgoing(parent):
    child_g, how = duplicate_neuron(parent.genome, np.random.default_rng(3))
    child = inherit(parent, child_g, how)
    (orig, copy), = how.duplicated
    sp = child_g.space
    pw = dict(zip(sp.edge_id(*parent.genome.edges.T).tolist(), parent.edge_weights().tolist()))
    cw = dict(zip(sp.edge_id(*child_g.edges.T).tolist(), child.edge_weights().tolist()))
    for s, d in child_g.edges.tolist():
        if d == copy:
            assert cw[sp.edge_id(s, d)] == pytest.approx(pw[sp.edge_id(s, orig)])
        if s in (orig, copy):
            assert cw[sp.edge_id(s, d)] == pytest.approx(pw[sp.edge_id(orig, d)] / 2)
    i, j = np.searchsorted(child_g.hidden, [orig, copy])
    assert child.norm_weight[i] == child.norm_weight[j] and child.norm_bias[i] == child.norm_bias[j]
    # LayerNorm sees one more neuron, so the function moves, but only a little.
    d = drift(parent, child, torch.rand(100, 64), torch.randint(0, 10, (100,)))
    assert 0 <= d.max_abs_logit < 1.0


def test_every_operator_inherits_shared_weights(parent):
    rng = np.random.default_rng(5)
    seen = set()
    for name, op in OPERATORS.items():
        child_g, how = op(parent.genome, rng)
        child = inherit(parent, child_g, how)
        sp = child_g.space
        shared, pi, ci = np.intersect1d(sp.edge_id(*parent.genome.edges.T), sp.edge_id(*child_g.edges.T),
                                        return_indices=True)
        dup = {n for pair in how.duplicated for n in pair}
        plain = [k for k, c in enumerate(ci) if child_g.edges[c, 0] not in dup and child_g.groups[c] == c and child_g.ties is None]
        if plain:
            assert torch.allclose(child.edge_weights()[ci[plain]], parent.edge_weights()[pi[plain]]), name
        new = np.setdiff1d(np.arange(child_g.n_edges), ci)
        if how.mutation in ("add_edges", "add_neurons"):
            assert (child.edge_weights()[new] == 0).all(), name
        if how.mutation == "tie_weights":  # a tied group starts from the mean of its edges' weights
            assert np.array_equal(child_g.edges, parent.genome.edges)
            g = torch.as_tensor(child_g.groups)
            counts = torch.bincount(g)
            mean = torch.zeros(len(counts)).index_add_(0, g, parent.edge_weights().float()) / counts
            assert (counts > 1).any() and torch.allclose(child.edge_weights(), mean[g]), name
        seen.add(how.mutation)
    assert "tie_weights" in seen  # the tie check above ran (tie_weights falls back to add_edges when nothing ties)


def test_a_parent_without_hidden_neurons_passes_on_its_edges():
    # A `linear` seed (inputs straight to outputs), or what remove_level leaves of a one-level genome.
    from evolution.mutations import add_neurons
    from evolution.seeds import build

    space = SearchSpace((1, 8, 8), 10, levels=2, width=16)
    parent = SparseNet(build("linear", space), torch.Generator().manual_seed(0))
    assert parent.genome.hidden.size == 0
    child_g, how = add_neurons(parent.genome, np.random.default_rng(0))
    assert child_g.hidden.size > 0
    child = inherit(parent, child_g, how)
    sp = space
    shared, pi, ci = np.intersect1d(sp.edge_id(*parent.genome.edges.T), sp.edge_id(*child_g.edges.T),
                                    return_indices=True)
    assert len(shared) == parent.genome.n_edges
    assert torch.equal(child.edge_weights()[ci], parent.edge_weights()[pi])
    assert (child.norm_weight == 1).all() and (child.norm_bias == 0).all()
