import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evolution import seeds
from evolution.genome import Genome, SearchSpace
from evolution.network import CSR_MIN_ENTRIES, SparseNet, Weights, compile, level_outputs, pair_mode, sparse_forward
from evolution.readout import readout_features, readout_logits, readout_loss, ridge_readout, ridge_solve
from evolution.sampling import random_genome


def _mlp_reference(net: SparseNet, widths: list[int], n_in: int, n_out: int) -> nn.Sequential:
    """A plain nn.Linear + nn.LayerNorm + ReLU MLP holding the SparseNet's weights."""
    layers, prev, start, h0 = [], n_in, 0, 0
    w = net.edge_weights().detach()
    for i, width in enumerate(widths + [n_out]):
        lin = nn.Linear(prev, width, bias=i == len(widths))
        with torch.no_grad():
            lin.weight.copy_(w[start:start + prev * width].view(prev, width).T)
            if lin.bias is not None:
                lin.bias.copy_(net.bias)
        layers.append(lin)
        if i < len(widths):
            ln = nn.LayerNorm(width)
            with torch.no_grad():
                ln.weight.copy_(net.norm_weight[h0:h0 + width])
                ln.bias.copy_(net.norm_bias[h0:h0 + width])
            layers += [ln, nn.ReLU()]
            h0 += width
        start += prev * width
        prev = width
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("kernel", ["dense", "csr", "auto"])
def test_dense_genome_equals_torch_mlp(kernel):
    space = seeds.space_for_spec("mlp:48,32", (1, 8, 8), 10)
    net = SparseNet(seeds.build("mlp:48,32", space), torch.Generator().manual_seed(0), mode=kernel)
    with torch.no_grad():  # non-trivial affine, so the test sees it
        net.norm_weight.uniform_(0.5, 1.5)
        net.norm_bias.uniform_(-0.5, 0.5)
    ref = _mlp_reference(net, [48, 32], 64, 10).float()
    x = torch.randn(33, 64, generator=torch.Generator().manual_seed(1))
    out, expect = net(x), ref(x)
    assert (out - expect).abs().max() < 1e-5
    # The training loss keeps gradients O(1), where 1e-5 is a float32 statement.
    y = torch.arange(33) % 10
    nn.functional.cross_entropy(out, y).backward()
    nn.functional.cross_entropy(expect, y).backward()
    # Gradients of the edge vector, mapped back into each Linear's matrix.
    g = net.weight.grad
    assert (g[:64 * 48].view(64, 48).T - ref[0].weight.grad).abs().max() < 1e-5
    assert (g[64 * 48:64 * 48 + 48 * 32].view(48, 32).T - ref[3].weight.grad).abs().max() < 1e-5
    assert (g[64 * 48 + 48 * 32:].view(32, 10).T - ref[6].weight.grad).abs().max() < 1e-5
    assert (net.norm_weight.grad[:48] - ref[1].weight.grad).abs().max() < 1e-5
    assert (net.norm_bias.grad[48:] - ref[4].bias.grad).abs().max() < 1e-5
    assert (net.bias.grad - ref[6].bias.grad).abs().max() < 1e-5


def _grads(net: SparseNet, x: torch.Tensor, mode: str):
    net.zero_grad()
    x = x.clone().requires_grad_(True)
    out = sparse_forward(net.plan, net.weights(), x, mode)
    (out.square().mean() + out[:, 0].mean()).backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("seed", range(4))
def test_masked_dense_and_csr_agree_on_random_genomes(seed):
    space = SearchSpace((1, 12, 12), 5, levels=3, width=64)
    g = random_genome(space, np.random.default_rng(seed), density=0.1, skip=0.5)
    net = SparseNet(g, torch.Generator().manual_seed(seed))
    x = torch.rand(17, 144, generator=torch.Generator().manual_seed(seed))
    for a, b in zip(_grads(net, x, "dense"), _grads(net, x, "csr")):
        assert (a - b).abs().max() < 1e-5
    with torch.no_grad():
        assert (sparse_forward(net.plan, net.weights(), x, "dense") - sparse_forward(net.plan, net.weights(), x, "auto")).abs().max() < 1e-5


def test_conv_genome_equals_conv2d_layernorm_relu():
    space = seeds.space_for_spec("conv:4x3,mlp:16", (1, 8, 8), 3)
    g = seeds.build("conv:4x3,mlp:16", space)
    net = SparseNet(g, torch.Generator().manual_seed(0))
    assert g.n_weights == 4 * 9 + 4 * 64 * 16 + 16 * 3
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    # Recover the kernel from the tied edges: the edge from pixel (r+dr, c+dc) into channel co at (r, c).
    w = net.edge_weights().detach()
    sp = g.space
    with torch.no_grad():
        for co in range(4):
            dst = sp.hidden_id(1, co * 64 + 3 * 8 + 3)  # the neuron at (3, 3)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    src = (3 + dr) * 8 + (3 + dc)
                    e = np.flatnonzero((g.edges[:, 0] == src) & (g.edges[:, 1] == dst))[0]
                    conv.weight[co, 0, dr + 1, dc + 1] = w[e]
    x = torch.randn(6, 1, 8, 8)
    h = torch.relu(nn.functional.layer_norm(conv(x).reshape(6, -1), (256,)))
    # The rest of the net is dense: run it through the plan's own later levels via a dense genome.
    level1 = net.plan.levels[1]
    assert len(level1) == 256
    x_flat = x.reshape(6, -1)
    with torch.no_grad():
        full = net(x_flat)
        # Replace the conv level by the reference activations: the output must not change.
        pair = net.plan.pairs_into[1][0]
        w2 = w[pair.edges].view(256, 16) if pair.block is None else w[pair.block:pair.block + 256 * 16].view(256, 16)
        h2 = torch.relu(nn.functional.layer_norm(h @ w2, (16,)))
        w3 = net.plan.pairs_into[2][0]
        out = h2 @ w[w3.block:w3.block + 48].view(16, 3) + net.bias
    assert (full - out).abs().max() < 1e-5


def test_tied_weights_share_one_parameter_and_gradient():
    space = SearchSpace((1, 2, 2), 1, levels=1, width=2)
    g = Genome(space, [4, 5], [[0, 4], [1, 5], [4, 6], [5, 6]], ties=[0, 0, 1, 2]).validate()
    net = SparseNet(g)
    assert net.weight.shape == (3,)
    assert net.edge_weights()[0] == net.edge_weights()[1]
    net(torch.rand(4, 4)).sum().backward()
    assert net.weight.grad.shape == (3,) and net.weight.grad[0] != 0


def test_keyed_weights_survive_genome_edits():
    space = SearchSpace((1, 4, 4), 3, levels=2, width=8)
    g = random_genome(space, np.random.default_rng(0), density=0.5, n_levels=2)
    parent = SparseNet(g, torch.Generator().manual_seed(0))
    state = parent.keyed_state()
    # A child without the first edge and with a new one: shared keys copy, the new one keeps its init.
    new_edge = np.array([[15, int(g.hidden[-1])]]) if not ((g.edges[:, 0] == 15) & (g.edges[:, 1] == g.hidden[-1])).any() else np.array([[14, int(g.hidden[-1])]])
    child_g = Genome(space, g.hidden, np.concatenate([g.edges[1:], new_edge])).validate()
    child = SparseNet(child_g, torch.Generator().manual_seed(1))
    init_new = child.edge_weights()[-1].item()
    report = child.load_keyed(state)
    assert report.missing_edges == 1 and report.extra_edges == 1
    assert report.missing_neurons == 0 and report.extra_neurons == 0
    assert torch.equal(child.edge_weights()[:-1], parent.edge_weights()[1:].detach())
    assert child.edge_weights()[-1].item() == init_new
    assert torch.equal(child.norm_weight, parent.norm_weight) and torch.equal(child.bias, parent.bias)


def test_fan_in_scaled_init_and_determinism():
    space = seeds.space_for_spec("mlp:256", (1, 28, 28), 10)
    g = seeds.build("mlp:256", space)
    a, b = SparseNet(g, torch.Generator().manual_seed(3)), SparseNet(g, torch.Generator().manual_seed(3))
    assert torch.equal(a.weight, b.weight)
    first = a.weight[:784 * 256]
    assert first.abs().max() <= 1 / np.sqrt(784) and first.abs().max() > 0.9 / np.sqrt(784)
    assert a.weight[784 * 256:].abs().max() > 1.5 / np.sqrt(784)  # fan-in 256 into the outputs


def test_bfloat16_close_to_float32():
    space = SearchSpace((1, 8, 8), 10, levels=2, width=64)
    net = SparseNet(random_genome(space, np.random.default_rng(0), density=0.3, n_levels=2))
    x = torch.rand(8, 64)
    out32 = net(x)
    out16 = net.to(torch.bfloat16)(x.bfloat16())
    assert out16.dtype == torch.bfloat16
    assert (out16.float() - out32).abs().max() < 0.1 * out32.abs().max() + 0.05


def test_plan_structure_and_auto_choice():
    space = SearchSpace((1, 64, 64), 10, levels=1, width=1024)
    rng = np.random.default_rng(0)
    g = random_genome(space, rng, density=0.02, n_levels=1, fill=(1.0, 1.0))
    plan = compile(g)
    first = plan.pairs_into[0][0]
    assert first.n_src <= 4096 and first.n_dst == len(g.hidden) and first.block is None
    assert pair_mode(first, 128, torch.float32) == "csr"
    assert pair_mode(first, 128, torch.bfloat16) == "dense"
    assert pair_mode(first, 128, torch.float32, "cuda") == "dense"
    # Unused inputs are dropped from the plan and never multiplied.
    used = np.unique(g.edges[:, 0][g.edges[:, 0] < 4096])
    assert plan.input_index is None or plan.input_index.tolist() == used.tolist()


def test_auto_choice_follows_targets_and_batch():
    """CSR only where benchmarks/kernel.py measured it faster: sparse pairs into many targets; at a
    validation-sized batch only wide ones."""
    rng = np.random.default_rng(0)

    def pair(n_dst: int, density: float):  # 784 inputs into n_dst hidden neurons, uniform edges
        space = SearchSpace((784,), 1, levels=1, width=n_dst)
        src, dst = np.nonzero(rng.random((784, n_dst)) < density)
        return compile(Genome(space, space.level_slots(1), np.stack([src, space.hidden_id(1, dst)], 1))).pairs_into[0][0]

    narrow, wide, mid = pair(64, 0.02), pair(256, 0.03), pair(256, 0.15)
    assert narrow.n_src * narrow.n_dst >= CSR_MIN_ENTRIES and wide.n_dst == 256 and 0.13 < mid.density < 0.17
    assert pair_mode(narrow, 128, torch.float32) == "dense"  # too few targets at any density
    assert pair_mode(wide, 128, torch.float32) == "csr"
    assert pair_mode(mid, 128, torch.float32) == "dense"  # sparse enough by density alone, not for 256 targets
    assert pair_mode(wide, 512, torch.float32) == "csr"
    assert pair_mode(wide, 513, torch.float32) == "dense"  # dense matmul wins at a large batch
    big = pair(2048, 0.03)
    assert pair_mode(big, 2000, torch.float32) == "csr"


def test_input_shape_mismatch_and_bad_mode():
    space = SearchSpace((1, 2, 2), 1, levels=1, width=2)
    net = SparseNet(Genome(space, [4], [[0, 4], [4, 6]]))
    with pytest.raises(ValueError, match="input has 5 features; the genome expects 4"):
        net(torch.rand(2, 5))
    with pytest.raises(ValueError, match="kernel mode 'sparse'"):
        sparse_forward(net.plan, net.weights(), torch.rand(2, 4), "sparse")


def test_genome_without_hidden_is_a_linear_model():
    space = SearchSpace((3,), 2, levels=1, width=4)
    g = seeds.build("linear", space)
    net = SparseNet(g)
    x = torch.rand(5, 3)
    w = net.edge_weights().detach().view(3, 2)
    assert torch.allclose(net(x), x @ w + net.bias, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    space = SearchSpace((1, 16, 16), 10, levels=2, width=128)
    net = SparseNet(random_genome(space, np.random.default_rng(0), density=0.05, n_levels=2))
    x = torch.rand(32, 256)
    cpu = net(x)
    gpu = net.cuda()(x.cuda())
    assert (gpu.cpu() - cpu).abs().max() < 1e-4
    with torch.no_grad():
        assert (net(x.cuda()).cpu() - cpu).abs().max() < 1e-4


def test_set_weights_round_trip_with_ties():
    space = SearchSpace((1, 2, 2), 1, levels=1, width=2)
    g = Genome(space, [4, 5], [[0, 4], [1, 5], [4, 6], [5, 6]], ties=[0, 0, 1, 2]).validate()
    a, b = SparseNet(g, torch.Generator().manual_seed(0)), SparseNet(g, torch.Generator().manual_seed(1))
    b.set_weights(a.weights())
    x = torch.rand(3, 4)
    assert torch.equal(a(x), b(x))


def test_ridge_readout_solves_each_outputs_ridge_regression_and_keeps_the_hidden_levels():
    space = SearchSpace((1, 6, 6), 4, levels=2, width=12)
    g = random_genome(space, np.random.default_rng(5), density=0.3, skip=0.6)  # outputs read 2-3 levels
    plan, net = compile(g), SparseNet(g, torch.Generator().manual_seed(0))
    x, y = torch.rand(300, 36), torch.randint(0, 4, (300,))
    w = Weights(*(t.detach() for t in net.weights()))
    fit = ridge_readout(plan, w, x, y, ridge=0.5)
    acts = level_outputs(plan, w, x)
    where = {int(n): (k, i) for k, ids in enumerate(plan.levels) for i, n in enumerate(ids)}
    into = np.isin(g.edges[:, 1], space.outputs)
    assert len({where[int(s)][0] for s in g.edges[into, 0]}) >= 2
    assert torch.equal(fit.edge[~torch.as_tensor(into)], w.edge[~torch.as_tensor(into)])
    assert torch.equal(fit.norm_weight, w.norm_weight) and torch.equal(fit.norm_bias, w.norm_bias)
    for o, out in enumerate(space.outputs):
        rows = np.flatnonzero(g.edges[:, 1] == out)
        a = np.stack([acts[where[int(s)][0]][:, where[int(s)][1]].double().numpy() for s in g.edges[rows, 0]], 1)
        a1 = np.concatenate([a, np.ones((300, 1))], 1)
        penalty = np.diag([0.5] * len(rows) + [0.0])  # the bias is not shrunk
        sol = np.linalg.solve(a1.T @ a1 + penalty, a1.T @ (y.numpy() == o).astype(float))
        assert np.allclose(fit.edge[rows].numpy(), sol[:-1], atol=1e-4)
        assert abs(float(fit.bias[o]) - sol[-1]) < 1e-4
    assert torch.equal(sparse_forward(plan, w, x), acts[-1])


def test_readout_logits_are_the_refitted_networks_and_their_gradient_reaches_the_hidden_weights():
    space = SearchSpace((1, 6, 6), 4, levels=2, width=12)
    g = random_genome(space, np.random.default_rng(5), density=0.3, skip=0.6)
    plan, net = compile(g), SparseNet(g, torch.Generator().manual_seed(0))
    x, y = torch.rand(200, 36, dtype=torch.float64), torch.randint(0, 4, (200,))
    w = Weights(*(t.detach().double() for t in net.weights()))
    r = readout_features(plan, level_outputs(plan, w, x))
    coef, bias = ridge_solve(r._replace(feats=r.feats[:150]), y[:150], 4, ridge=0.5)
    refit = ridge_readout(plan, w, x[:150], y[:150], ridge=0.5)
    assert torch.allclose(readout_logits(r._replace(feats=r.feats[150:]), coef, bias), sparse_forward(plan, refit, x[150:]))
    hidden = ~torch.as_tensor(np.isin(g.edges[:, 1], space.outputs))

    def query_loss(h: torch.Tensor) -> torch.Tensor:  # the readout's loss as a function of the hidden edges
        edge = w.edge.masked_scatter(hidden, h)
        r = readout_features(plan, level_outputs(plan, w._replace(edge=edge), x))
        c, b = ridge_solve(r._replace(feats=r.feats[:150]), y[:150], 4, ridge=0.5)
        return F.cross_entropy(readout_logits(r._replace(feats=r.feats[150:]), c, b), y[150:])

    h = w.edge[hidden].clone().requires_grad_()
    assert torch.autograd.gradcheck(query_loss, (h,), eps=1e-6, atol=1e-5)


def test_readout_loss_on_a_short_batch_fits_on_half_and_on_one_example_is_the_cross_entropy():
    space = SearchSpace((1, 6, 6), 4, levels=2, width=12)
    g = random_genome(space, np.random.default_rng(5), density=0.3, skip=0.6)
    plan, net = compile(g), SparseNet(g, torch.Generator().manual_seed(0))
    x, y = torch.rand(100, 36), torch.randint(0, 4, (100,))
    scale = torch.tensor(10.0)
    assert torch.equal(readout_loss(plan, net.weights(), x, y, 96, 1.0, scale),
                       readout_loss(plan, net.weights(), x, y, 50, 1.0, scale))
    assert torch.equal(readout_loss(plan, net.weights(), x[:1], y[:1], 96, 1.0, scale),
                       F.cross_entropy(sparse_forward(plan, net.weights(), x[:1]), y[:1]))


def test_match_keys_finds_each_key_and_where():
    from evolution.network import match_keys

    hit, pos = match_keys(np.array([7, 3, 9, 3]), np.array([3, 5, 7]))
    assert hit.tolist() == [True, True, False, True]
    assert pos[hit].tolist() == [2, 0, 0]
    hit, _ = match_keys(np.array([1, 2]), np.array([], dtype=np.int64))
    assert not hit.any()


def test_the_readout_stays_importable_from_network():
    from evolution import network, readout

    assert network.ridge_readout is readout.ridge_readout and network.Readout is readout.Readout
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        network.nothing  # noqa: B018
