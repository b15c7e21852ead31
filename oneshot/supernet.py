"""The neuron supernet: one weight for every potential edge of a grid, shared by all its genomes.

Every genome of a ``SearchSpace`` is a sub-graph of the supernet (one-shot NAS: SMASH, Brock et al.
2018; ENAS, Pham et al. 2018; Bender et al. 2018; SPOS, Guo et al. 2020). The bank holds one block
per allowed level pair (lower -> higher), rows and columns in stable slot order, so an edge id
always finds the same weight; LayerNorm affine per hidden slot; output bias. A genome gets its
weights by a differentiable gather and runs through the core's ``sparse_forward``, so the
supernet's output for a genome is exactly that of a ``SparseNet`` holding the gathered weights.
Entries a genome does not use get an exactly zero gradient; ``oneshot.optim.LazyAdam`` then moves
only the entries the sampled genomes used (absent weights get no stale momentum).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor, nn

from evolution.genome import Genome, SearchSpace
from evolution.network import Plan, Weights, compile, sparse_forward, tie_mean


class Supernet(nn.Module):
    """Weight bank of a grid. ``bank`` (N, 1): every potential edge; ``norm_weight``/``norm_bias``
    (levels * width, 1) per hidden slot; ``bias`` (n_outputs, 1)."""

    def __init__(self, space: SearchSpace, generator: torch.Generator | None = None, plan_cache: int = 512) -> None:
        super().__init__()
        self.space = space
        sizes = [space.n_inputs] + [space.width] * space.levels + [space.n_outputs]
        self.level_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.sizes = np.array(sizes)
        n = len(sizes)
        self.offset = np.full((n, n), -1, dtype=np.int64)
        total = 0
        for a in range(n):
            for b in range(a + 1, n):
                self.offset[a, b] = total
                total += sizes[a] * sizes[b]
        # Init as nn.Linear would for a target seeing all of one source level: U(+-1/sqrt(fan_in)).
        bound = np.zeros(total, dtype=np.float32)
        for a in range(n):
            for b in range(a + 1, n):
                bound[self.offset[a, b]:self.offset[a, b] + sizes[a] * sizes[b]] = 1 / np.sqrt(sizes[a])
        w = (torch.rand(total, 1, generator=generator) * 2 - 1) * torch.as_tensor(bound)[:, None]
        self.bank = nn.Parameter(w)
        self.norm_weight = nn.Parameter(torch.ones(space.levels * space.width, 1))
        self.norm_bias = nn.Parameter(torch.zeros(space.levels * space.width, 1))
        self.bias = nn.Parameter(torch.zeros(space.n_outputs, 1))
        self._plans: OrderedDict[bytes, tuple[Plan, dict[str, Tensor]]] = OrderedDict()
        self._plan_cache = plan_cache
        self._touched: dict[int, list[Tensor]] = {}

    @property
    def n_bank(self) -> int:
        return len(self.bank)

    def bank_index(self, edges: np.ndarray) -> np.ndarray:
        """``(E,)`` bank rows of edges ``(E, 2)`` of this grid."""
        sp = self.space
        a, b = sp.level[edges[:, 0]], sp.level[edges[:, 1]]
        return self.offset[a, b] + (edges[:, 0] - self.level_start[a]) * self.sizes[b] + (edges[:, 1] - self.level_start[b])

    def _compiled(self, genome: Genome) -> tuple[Plan, dict[str, Tensor]]:
        """Plan and gather indices of a genome, cached: a search asks about the same genomes often."""
        key = genome.edges.tobytes() + b"|" + genome.hidden.tobytes() + b"|" + (
            b"" if genome.ties is None else genome.ties.tobytes())
        hit = self._plans.get(key)
        if hit is not None:
            self._plans.move_to_end(key)
            return hit
        if genome.space != self.space:
            raise ValueError(f"genome is on {genome.space}, not on the supernet's grid {self.space}")
        device = self.bank.device
        idx = {
            "edge": torch.as_tensor(self.bank_index(genome.edges), device=device),
            "slot": torch.as_tensor(genome.hidden - self.space.n_inputs, device=device),
            "groups": None if genome.ties is None else torch.as_tensor(genome.groups, device=device),
        }
        hit = (compile(genome).to(device), idx)
        self._plans[key] = hit
        if len(self._plans) > self._plan_cache:
            self._plans.popitem(last=False)
        return hit

    def weights_for(self, genome: Genome) -> Weights:
        """The genome's weights gathered from the bank (differentiable); tied
        edges take the mean of their bank entries."""
        _, idx = self._compiled(genome)
        # index_select: its backward is one index_add (embedding's sorts the indices first, ~4x slower here).
        edge = tie_mean(self.bank.index_select(0, idx["edge"]).squeeze(1), idx["groups"])
        slot = idx["slot"]
        outputs = torch.arange(self.space.n_outputs, device=slot.device)
        if torch.is_grad_enabled():  # what the next optimizer step may move (see touched_rows)
            for param, rows in ((self.bank, idx["edge"]), (self.norm_weight, slot), (self.norm_bias, slot),
                                (self.bias, outputs)):
                self._touched.setdefault(id(param), []).append(rows)
        return Weights(edge, self.norm_weight.index_select(0, slot).squeeze(1),
                       self.norm_bias.index_select(0, slot).squeeze(1), self.bias.index_select(0, outputs).squeeze(1))

    def stacked_weights(self, genomes: list[Genome]) -> Weights:
        """The genomes' weights concatenated in order (``evolution.batched.concat``), each vector by one
        gather from the bank for all genomes; tie groups are left to ``stacked_forward``."""
        idx = [self._compiled(g)[1] for g in genomes]
        edge, slot = torch.cat([i["edge"] for i in idx]), torch.cat([i["slot"] for i in idx])
        outputs = torch.arange(self.space.n_outputs, device=slot.device).repeat(len(genomes))
        if torch.is_grad_enabled():
            for param, rows in ((self.bank, edge), (self.norm_weight, slot), (self.norm_bias, slot), (self.bias, outputs)):
                self._touched.setdefault(id(param), []).append(rows)
        return Weights(self.bank.index_select(0, edge).squeeze(1), self.norm_weight.index_select(0, slot).squeeze(1),
                       self.norm_bias.index_select(0, slot).squeeze(1), self.bias.index_select(0, outputs).squeeze(1))

    def check_trained(self, genome: Genome) -> None:
        """Nothing to refuse: one bank serves every depth (``FewShotSupernet`` counts per depth)."""

    def touched_rows(self, param: Tensor) -> Tensor | None:
        """Rows of ``param`` gathered with grad since the last call (for ``LazyAdam(rows=...)``);
        None for a tensor this supernet does not own."""
        if not any(param is p for p in self.parameters()):
            return None
        rows = self._touched.pop(id(param), [])
        return torch.cat(rows) if rows else param.new_zeros(0, dtype=torch.long)

    def plan_for(self, genome: Genome) -> Plan:
        """The genome's compiled plan (cached), on the bank's device."""
        return self._compiled(genome)[0]

    def forward(self, genome: Genome, x: Tensor) -> Tensor:
        """Logits ``(B, n_outputs)`` of ``genome`` with its inherited weights."""
        return sparse_forward(self.plan_for(genome), self.weights_for(genome), x)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        self._plans.clear()  # cached index tensors live on the old device
        return super()._apply(fn, recurse)


class FewShotSupernet(nn.Module):
    """One bank per depth (few-shot NAS, Zhao et al. 2021, split by number of hidden levels): a
    genome trains and is scored only in the bank of its depth, so shallow and deep genomes stop
    fighting over the same weights. Same interface as ``Supernet``.

    A bank only learns from the depths its sampler draws (sandwich and nested draw 1..levels hidden
    levels, fair fills them all), so ``draws`` counts the genomes each bank was trained on, and
    ``check_trained`` refuses to score a genome whose bank never was: its weights are the init's.
    """

    def __init__(self, space: SearchSpace, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.space = space
        self.banks = nn.ModuleList([Supernet(space, generator) for _ in range(space.levels + 1)])
        self.register_buffer("draws", torch.zeros(space.levels + 1, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # A checkpoint from before banks were counted: -1, unknown, never refused.
        state_dict.setdefault(prefix + "draws", torch.full_like(self.draws, -1))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check_trained(self, genome: Genome) -> None:
        """``ValueError`` when the bank of ``genome``'s depth never trained."""
        depth = len(genome.levels_present())
        if int(self.draws[depth]) == 0:
            raise ValueError(f"few-shot supernet: the bank for {depth} hidden levels was never trained (its sampler "
                             "draws no such genomes), so this genome's inherited weights are untrained")

    @property
    def n_bank(self) -> int:
        return sum(b.n_bank for b in self.banks)

    def bank_for(self, genome: Genome) -> Supernet:
        return self.banks[len(genome.levels_present())]

    def touched_rows(self, param: Tensor) -> Tensor | None:
        for bank in self.banks:
            rows = bank.touched_rows(param)
            if rows is not None:
                return rows
        return None

    def weights_for(self, genome: Genome) -> Weights:
        depth = len(genome.levels_present())
        if torch.is_grad_enabled() and self.draws[depth] >= 0:  # -1: an older checkpoint, not counted
            self.draws[depth] += 1
        return self.bank_for(genome).weights_for(genome)

    def plan_for(self, genome: Genome) -> Plan:
        return self.bank_for(genome).plan_for(genome)

    def forward(self, genome: Genome, x: Tensor) -> Tensor:
        return sparse_forward(self.plan_for(genome), self.weights_for(genome), x)
