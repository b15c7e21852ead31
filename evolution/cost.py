"""What a compiled genome costs: FLOPs, parameters, measured latency.

FLOPs convention, per example: 2 per edge (a multiply and an add, as ``torch.utils.flop_counter``
counts a matmul), 7 per hidden neuron for LayerNorm (mean: 1 add; centring: 1 subtract; variance:
1 multiply + 1 add; scaling by the reciprocal std: 1 multiply; affine: 1 multiply + 1 add), 1 per
hidden neuron for ReLU and 1 per output for its bias. Per-level constants (one rsqrt) are ignored.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import torch

from evolution.genome import Genome
from evolution.network import Plan, SparseNet, compile

NORM_FLOPS = 7
RELU_FLOPS = 1


class Flops(NamedTuple):
    matmul: int
    other: int

    @property
    def total(self) -> int:
        return self.matmul + self.other


def flops(plan: Plan | Genome) -> Flops:
    """FLOPs per example of a Plan (or a genome, compiled on the fly)."""
    plan = compile(plan) if isinstance(plan, Genome) else plan
    hidden = sum(len(ids) for ids in plan.levels[1:-1])
    return Flops(2 * plan.n_edges, (NORM_FLOPS + RELU_FLOPS) * hidden + plan.n_outputs)


def parameters(genome: Genome) -> int:
    """Free parameters: one per tie group, LayerNorm weight and bias per hidden neuron, output bias."""
    return genome.n_weights + 2 * len(genome.hidden) + genome.space.n_outputs


@torch.no_grad()
def latency(net: SparseNet, batch: int = 256, repeats: int = 20, device: str | torch.device = "cpu") -> float:
    """Median seconds of one inference forward at ``batch`` (after one warm-up call)."""
    net = net.to(device).eval()
    x = torch.randn(batch, net.plan.n_inputs, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    net(x)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        net(x)
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
