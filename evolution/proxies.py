"""Zero-cost proxies: scores of an untrained compiled network from one batch, no training.

``synflow`` (sum of |w * dR/dw| for R the output sum of the network with |weights| on an all-ones
input), ``snip`` (sum of |w * dL/dw| on a batch), ``grad_norm`` (norm of dL/dw), ``naswot`` (log
determinant of the Hamming-similarity kernel (plus the identity) of the hidden ReLUs' on/off codes over a batch) and
``params`` (log #parameters, the size baseline). ``ProxyEstimator`` scores with any of them, plus
``size * log #params`` when ``size`` is set (the size-regularised variant). The init and the batch are
seeded, so a score is the same in every call.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution import cost
from evolution.estimators import Estimate, Parent, genome_seed
from evolution.fidelity import safely
from evolution.genome import Genome
from evolution.network import SparseNet, level_outputs


def _net(genome: Genome, seed: int) -> SparseNet:
    return SparseNet(genome, torch.Generator().manual_seed(genome_seed(genome, seed)))


def synflow(genome: Genome, x: Tensor, y: Tensor, seed: int) -> float:
    net = _net(genome, seed).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    out = net(torch.ones(1, x[0].numel(), dtype=torch.float64))
    out.sum().backward()
    s = float((net.weight * net.weight.grad).abs().sum().detach())
    return math.log(s) if s > 0 else -math.inf


def _loss_grad(genome: Genome, x: Tensor, y: Tensor, seed: int) -> SparseNet:
    net = _net(genome, seed)
    F.cross_entropy(net(x), y).backward()
    return net


def snip(genome: Genome, x: Tensor, y: Tensor, seed: int) -> float:
    net = _loss_grad(genome, x, y, seed)
    return float((net.weight * net.weight.grad).abs().sum().detach())


def grad_norm(genome: Genome, x: Tensor, y: Tensor, seed: int) -> float:
    return float(_loss_grad(genome, x, y, seed).weight.grad.norm())


@torch.no_grad()
def naswot(genome: Genome, x: Tensor, y: Tensor, seed: int) -> float:
    net = _net(genome, seed)
    acts = level_outputs(net.plan, net.weights(), x)[1:-1]
    if not acts:  # no hidden neuron: every example has the same (empty) code
        return 0.0
    codes = (torch.cat(acts, 1) > 0).double()
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    # + I: examples with the same code make the kernel singular (often, in a small network)
    sign, logdet = torch.linalg.slogdet(k + torch.eye(len(k), dtype=k.dtype))
    return float(logdet) if sign > 0 else -math.inf


def params(genome: Genome, x: Tensor, y: Tensor, seed: int) -> float:
    return math.log(cost.parameters(genome))


PROXIES: dict[str, Callable[[Genome, Tensor, Tensor, int], float]] = {
    "synflow": synflow, "snip": snip, "grad_norm": grad_norm, "naswot": naswot, "params": params}


class ProxyEstimator:
    """Scores genomes by zero-cost proxy ``proxy`` on one seeded batch of ``batch`` training examples.

    The score is the raw proxy (higher is better; plus ``size * log #params`` when ``size`` is set)
    squashed by ``0.5 + atan(raw / scale) / pi`` into (0, 1): the same order, and an "error" a search
    can take as 1 - score. ``raw`` keeps the unsquashed values of the last call.
    """

    def __init__(self, data, proxy: str = "naswot", batch: int = 64, size: float = 0.0, scale: float = 100.0,
                 seed: int = 0) -> None:
        if proxy not in PROXIES:
            raise ValueError(f"ProxyEstimator: proxy {proxy!r}: expected one of {', '.join(PROXIES)}")
        if batch < 2 or scale <= 0:
            raise ValueError(f"ProxyEstimator: batch {batch}, scale {scale}: expected batch >= 2, scale > 0")
        self.data, self.proxy, self.batch, self.size, self.scale, self.seed = data, proxy, batch, size, scale, seed
        self._xy: tuple[Tensor, Tensor] | None = None
        self.raw: list[float] = []

    def _batch(self) -> tuple[Tensor, Tensor]:
        if self._xy is None:
            x, y = self.data.tensors("train")
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))[: self.batch]
            self._xy = (x[idx].flatten(1).float(), y[idx])
        return self._xy

    def raw_score(self, genome: Genome) -> float:
        x, y = self._batch()
        value = PROXIES[self.proxy](genome, x, y, self.seed)
        return value + (self.size * math.log(cost.parameters(genome)) if self.size else 0.0)

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        out, self.raw = [], []
        for g in genomes:
            start = time.perf_counter()
            raw, err = safely(lambda: self.raw_score(g))
            self.raw.append(raw)
            if err is None and not np.isfinite(raw):
                err = f"proxy {self.proxy} is not finite ({raw})"
            score = 0.5 + math.atan(raw / self.scale) / math.pi if err is None else float("nan")
            out.append(Estimate(score, time.perf_counter() - start, err))
        return out
