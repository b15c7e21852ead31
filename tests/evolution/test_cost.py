import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from evolution import cost, seeds
from evolution.genome import SearchSpace
from evolution.network import SparseNet
from evolution.sampling import random_genome


@pytest.mark.parametrize("widths", [[64], [128, 32], [16, 16, 16]])
def test_dense_flops_equal_flop_counter_of_the_mlp(widths):
    space = seeds.space_for_spec("mlp:" + ",".join(map(str, widths)), (1, 8, 8), 10)
    g = seeds.mlp(space, widths)
    dims = [64] + widths + [10]
    mlp = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU())][:-2])
    counter = FlopCounterMode(display=False)
    with counter:
        mlp(torch.randn(1, 64))
    matmul = sum(v for k, v in counter.get_flop_counts()["Global"].items() if "mm" in str(k))
    f = cost.flops(g)
    assert f.matmul == matmul == 2 * sum(a * b for a, b in zip(dims, dims[1:]))
    assert f.other == 8 * sum(widths) + 10
    assert f.total == f.matmul + f.other


def test_parameters_count_tie_groups_once():
    space = seeds.space_for_spec("conv:4x3,mlp:16", (1, 8, 8), 3)
    g = seeds.build("conv:4x3,mlp:16", space)
    net = SparseNet(g)
    assert cost.parameters(g) == sum(p.numel() for p in net.parameters())
    assert cost.parameters(g) == 36 + 256 * 16 + 16 * 3 + 2 * (256 + 16) + 3


def test_sparse_flops_count_edges():
    space = SearchSpace((1, 8, 8), 10, levels=2, width=32)
    g = random_genome(space, np.random.default_rng(0), density=0.2)
    assert cost.flops(g).matmul == 2 * g.n_edges


def test_latency_is_positive_seconds():
    space = SearchSpace((1, 8, 8), 10, levels=1, width=32)
    t = cost.latency(SparseNet(seeds.mlp(space, [32])), batch=8, repeats=3)
    assert 0 < t and np.isfinite(t)  # seconds; no upper bound: shared machines are noisy
