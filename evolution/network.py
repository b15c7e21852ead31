"""Compile a genome into a Plan and run it: the one hot kernel of neuronas.

A level's output is ``ReLU(LayerNorm(sum_pairs x_src @ W_pair))`` over its present neurons; the
output level gives logits ``sum_pairs x_src @ W_pair + bias``. Weights are always one edge vector
aligned with the genome's edges (plus LayerNorm affine per hidden neuron and the output bias), so
a standalone ``SparseNet``, the supernet's bank and the hypernet all feed the same ``sparse_forward``.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evolution.genome import Genome

# When a pair runs the CSR kernel, per device type and batch size. A pair runs CSR when its density
# is at most ``max_density * (1 - targets / n_dst)``: CSR's fixed cost per call (the transposed
# input it multiplies) is only amortised over many targets, and below ``targets`` targets the pair
# always runs masked-dense. The values are set by hand from benchmarks/kernel.py (docs/kernel.md
# shows the measurements behind them); a device type without an entry (CUDA) always runs masked-dense.
CSR_RULE = {"cpu": {"small": (0.2, 120), "large": (0.15, 400)}}  # (max_density, targets) per batch class
LARGE_BATCH = 512  # rows above which a batch is "large"
# Below this many matrix entries the sparse-format overhead outweighs any saving.
CSR_MIN_ENTRIES = 16384
NORM_EPS = 1e-5
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

_PAIR_TENSORS = ("flat", "edges", "crow", "col", "csr_edges", "crow_t", "col_t", "to_t")


@dataclass(frozen=True)
class Pair:
    """The edges between one source level and one target level of a Plan.

    ``flat``: ``(e,)`` row-major positions ``src * n_dst + dst`` in the ``(n_src, n_dst)`` block;
    ``edges``: ``(e,)`` indices into the genome's edge vector; ``span``: their start when they are
    one contiguous run (a slice then replaces the gather); ``block``: that start when the pair is
    also full and row-major (the block is then a free view);
    ``crow``/``col``/``csr_edges``: CSR layout of ``W^T`` (rows = targets); ``crow_t``/``col_t``/
    ``to_t``: CSR layout of ``W`` (rows = sources, for the input gradient) as a permutation of it.
    """
    src_level: int
    n_src: int
    n_dst: int
    flat: Tensor
    edges: Tensor
    span: int | None
    block: int | None
    crow: Tensor
    col: Tensor
    csr_edges: Tensor
    crow_t: Tensor
    col_t: Tensor
    to_t: Tensor

    @property
    def density(self) -> float:
        return len(self.edges) / (self.n_src * self.n_dst)

    def to(self, device: torch.device | str) -> "Pair":
        return replace(self, **{k: getattr(self, k).to(device) for k in _PAIR_TENSORS})


@dataclass(frozen=True)
class Plan:
    """Compiled genome: levels in topological order and, per target level, its incoming pairs.

    ``input_index``: the inputs that carry edges (``None`` = all); ``levels``: neuron ids per plan
    level (0 = used inputs, last = outputs); ``norm_slices``: per hidden plan level, its slice of the
    genome's (sorted) hidden neurons, i.e. of the LayerNorm affine vectors.
    """
    n_inputs: int
    n_edges: int
    input_index: Tensor | None
    levels: list[np.ndarray]
    grid_levels: list[int]
    pairs_into: list[list[Pair]]
    norm_slices: list[tuple[int, int]]

    @property
    def n_outputs(self) -> int:
        return len(self.levels[-1])

    def to(self, device: torch.device | str) -> "Plan":
        index = None if self.input_index is None else self.input_index.to(device)
        pairs = [[p.to(device) for p in ps] for ps in self.pairs_into]
        return replace(self, input_index=index, pairs_into=pairs)


class Weights(NamedTuple):
    """Everything ``sparse_forward`` multiplies by: ``edge`` (E,), ``norm_weight``/``norm_bias`` (H,)
    per hidden neuron in the genome's sorted order, ``bias`` (n_outputs,)."""
    edge: Tensor
    norm_weight: Tensor
    norm_bias: Tensor
    bias: Tensor


def tie_mean(edge: Tensor, groups: Tensor | None) -> Tensor:
    """``edge`` (E,) with each tie group's edges at their mean (differentiable); ``groups`` (E,) the
    group of each edge (``Genome.groups``), None for an untied genome. Weights made per edge (a
    supernet's gather, a hypernet's prediction) become those of the network ``SparseNet`` builds."""
    if groups is None:
        return edge
    return group_mean(edge, groups, int(groups.max()) + 1 if len(groups) else 0)[groups]


def group_mean(edge: Tensor, groups: Tensor, n: int) -> Tensor:
    """``(n,)``: the mean of ``edge`` over each of the ``n`` groups (0 where a group has no edge)."""
    total = torch.zeros(n, device=edge.device, dtype=edge.dtype).index_add(0, groups, edge)
    return total / torch.bincount(groups, minlength=n).clamp(min=1).to(edge.dtype)


def tied(genome: Genome, weights: Weights) -> Weights:
    """``weights`` of ``genome`` with its tie groups at their mean (``tie_mean``)."""
    if genome.ties is None:
        return weights
    return weights._replace(edge=tie_mean(weights.edge, torch.as_tensor(genome.groups, device=weights.edge.device)))


def _long(a: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long)


def compile(genome: Genome) -> Plan:  # noqa: A001 - the natural name; shadows a rarely used builtin
    """Group a genome's neurons by level and its edges by level pair."""
    sp, e = genome.space, genome.edges
    genome.validate()
    used = np.unique(e[:, 0][sp.level[e[:, 0]] == 0])
    inputs = sp.inputs if len(used) == sp.n_inputs else used
    hidden_levels = genome.levels_present()
    levels = [inputs] + [genome.hidden[sp.level[genome.hidden] == l] for l in hidden_levels] + [sp.outputs]
    grid_levels = [0] + hidden_levels + [sp.output_level]
    plan_level = np.full(sp.output_level + 1, -1)
    plan_level[grid_levels] = np.arange(len(grid_levels))
    local = np.full(sp.n_neurons, -1, dtype=np.int64)
    for ids in levels:
        local[ids] = np.arange(len(ids))
    src_l, dst_l = plan_level[sp.level[e[:, 0]]], plan_level[sp.level[e[:, 1]]]
    pairs_into: list[list[Pair]] = [[] for _ in range(len(levels) - 1)]
    order = np.lexsort((src_l, dst_l))
    bounds = np.flatnonzero(np.diff(dst_l[order] * len(levels) + src_l[order])) + 1
    for idx in np.split(order, bounds) if len(order) else []:
        idx = np.sort(idx)  # genome order within the pair keeps a row-major block contiguous
        a, b = int(src_l[idx[0]]), int(dst_l[idx[0]])
        n_src, n_dst = len(levels[a]), len(levels[b])
        s, d = local[e[idx, 0]], local[e[idx, 1]]
        flat = s * n_dst + d
        span = int(idx[0]) if (np.diff(idx) == 1).all() else None
        full = len(idx) == n_src * n_dst
        block = span if full and span is not None and (flat == np.arange(len(idx))).all() else None
        by_dst = np.lexsort((s, d))
        by_src = np.lexsort((d[by_dst], s[by_dst]))  # positions in the by-target order
        crow = np.concatenate([[0], np.cumsum(np.bincount(d, minlength=n_dst))])
        crow_t = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=n_src))])
        pairs_into[b - 1].append(Pair(a, n_src, n_dst, _long(flat), _long(idx), span, block, _long(crow),
                                      _long(s[by_dst]), _long(idx[by_dst]), _long(crow_t),
                                      _long(d[by_dst][by_src]), _long(by_src)))
    starts = np.searchsorted(genome.hidden, [ids[0] for ids in levels[1:-1]])
    norm_slices = [(int(s), int(s) + len(ids)) for s, ids in zip(starts, levels[1:-1])]
    return Plan(sp.n_inputs, genome.n_edges, None if inputs is sp.inputs else _long(inputs), levels,
                grid_levels, pairs_into, norm_slices)


def masked_dense(p: Pair, edge: Tensor) -> Tensor:
    """The pair's ``(n_src, n_dst)`` weight block, differentiable in ``edge``."""
    if p.block is not None:
        return edge[p.block:p.block + p.n_src * p.n_dst].view(p.n_src, p.n_dst)
    values = edge[p.span:p.span + len(p.edges)] if p.span is not None else edge[p.edges]
    # scatter, not index_put: much faster on CPU for millions of entries (docs/kernel.md).
    return edge.new_zeros(p.n_src * p.n_dst).scatter(0, p.flat, values).view(p.n_src, p.n_dst)


class CSRProduct(torch.autograd.Function):
    """``x @ W`` for a sparse pair as ``(W^T_csr @ x^T)^T`` (the orientation that is fast on CPU),
    with the input gradient from the CSR of ``W`` and the weight gradient by sampled dense-dense
    matmul, so a training step costs O(B * E) instead of O(B * n_src * n_dst)."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, p: Pair) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, values)
        ctx.pair = p
        wt = torch.sparse_csr_tensor(p.crow, p.col, values, (p.n_dst, p.n_src), check_invariants=False)
        return (wt @ x.T).T

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, values = ctx.saved_tensors
        p: Pair = ctx.pair
        grad_x = grad_v = None
        if ctx.needs_input_grad[0]:
            w = torch.sparse_csr_tensor(p.crow_t, p.col_t, values[p.to_t], (p.n_src, p.n_dst), check_invariants=False)
            grad_x = (w @ grad.T).T
        if ctx.needs_input_grad[1]:
            mask = torch.sparse_csr_tensor(p.crow, p.col, torch.zeros_like(values), (p.n_dst, p.n_src),
                                           check_invariants=False)
            grad_v = torch.sparse.sampled_addmm(mask, grad.T.contiguous(), x.contiguous(), beta=0.0).values()
        return grad_x, grad_v, None


def pair_mode(p: Pair, batch: int, dtype: torch.dtype, device: str = "cpu") -> str:
    """The kernel the automatic choice picks for a pair multiplying ``batch`` rows: ``"csr"`` or
    ``"dense"`` (masked-dense)."""
    rule = CSR_RULE.get(device)
    if rule is None or dtype not in (torch.float32, torch.float64) or p.n_src * p.n_dst < CSR_MIN_ENTRIES:
        return "dense"
    max_density, targets = rule["large" if batch > LARGE_BATCH else "small"]
    return "csr" if p.density <= max_density * (1 - targets / p.n_dst) else "dense"


def sparse_forward(plan: Plan, weights: Weights, x: Tensor, mode: str = "auto") -> Tensor:
    """Logits ``(B, n_outputs)`` of the compiled genome for inputs ``x`` ``(B, n_inputs)`` (any
    trailing shape is flattened). ``mode``: ``"auto"``, ``"dense"`` (masked-dense) or ``"csr"``
    (inference only)."""
    return level_outputs(plan, weights, x, mode)[-1]


def level_outputs(plan: Plan, weights: Weights, x: Tensor, mode: str = "auto") -> list[Tensor]:
    """What ``sparse_forward`` computes, level by level: ``[inputs used, hidden levels..., logits]``,
    each ``(B, len(plan.levels[k]))``."""
    x = x.flatten(1)
    if x.shape[1] != plan.n_inputs:
        raise ValueError(f"input has {x.shape[1]} features; the genome expects {plan.n_inputs}")
    if plan.input_index is not None:
        x = x.index_select(1, plan.input_index)
    edge = weights.edge.to(x.dtype)
    if mode not in ("auto", "dense", "csr"):
        raise ValueError(f"kernel mode {mode!r}: expected 'auto', 'dense' or 'csr'")
    acts = [x]
    last = len(plan.pairs_into)
    for k, pairs in enumerate(plan.pairs_into, start=1):
        acc = None
        for p in pairs:
            m = pair_mode(p, len(x), x.dtype, x.device.type) if mode == "auto" else mode
            src = acts[p.src_level]
            y = CSRProduct.apply(src, edge[p.csr_edges], p) if m == "csr" else src @ masked_dense(p, edge)
            acc = y if acc is None else acc + y
        if acc is None:
            acc = x.new_zeros(x.shape[0], len(plan.levels[k]))
        if k < last:
            lo, hi = plan.norm_slices[k - 1]
            nw, nb = weights.norm_weight[lo:hi].to(x.dtype), weights.norm_bias[lo:hi].to(x.dtype)
            acc = F.relu(F.layer_norm(acc, (hi - lo,), nw, nb, NORM_EPS))
        else:
            acc = acc + weights.bias.to(x.dtype)
        acts.append(acc)
    return acts


@torch.no_grad()
def init_scaled(genome: Genome, plan: Plan, weights: Weights) -> Weights:
    """``weights`` with all edges into each hidden level scaled by one factor, to the RMS of
    ``SparseNet``'s init (uniform within ``1 / sqrt(fan_in)``).

    LayerNorm makes that a no-op for the function (up to its eps), but not for training: behind a
    normalisation a weight's effective learning rate falls with its norm (van Laarhoven 2017; Arora
    et al. 2019), so weights from elsewhere (a hypernet's predictions, a supernet's bank) retrain as
    fast as a fresh init only at the init's scale. The output level, without LayerNorm, keeps its scale.
    """
    edge = weights.edge.detach().clone()
    dst = torch.as_tensor(genome.edges[:, 1], device=edge.device)
    fan_in = torch.bincount(dst, minlength=genome.space.n_neurons).clamp(min=1)
    init_var = 1.0 / (3.0 * fan_in[dst].to(edge.dtype))
    for pairs in plan.pairs_into[:-1]:
        if not pairs:
            continue
        idx = torch.cat([p.edges for p in pairs])
        power = edge[idx].square().mean()
        if power > 0:
            edge[idx] *= (init_var[idx].mean() / power).sqrt()
    return weights._replace(edge=edge)


class LoadReport(NamedTuple):
    """What ``SparseNet.load_keyed`` matched: keys it had to initialize, keys it did not use."""
    missing_edges: int
    extra_edges: int
    missing_neurons: int
    extra_neurons: int


class SparseNet(nn.Module):
    """A standalone network of a genome: owns one weight per tie group (gathered to edges),
    LayerNorm affine per hidden neuron and the output bias.

    Init follows ``nn.Linear``: edge weights and output bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    with the fan-in of the edge's target; LayerNorm weight 1, bias 0.
    """

    def __init__(self, genome: Genome, generator: torch.Generator | None = None, mode: str = "auto") -> None:
        super().__init__()
        self.genome = genome
        self.mode = mode
        self.plan = compile(genome)
        sp, e = genome.space, genome.edges
        fan_in = np.maximum(np.bincount(e[:, 1], minlength=sp.n_neurons), 1)
        groups = genome.groups
        first = np.zeros(genome.n_weights, dtype=np.int64)
        first[groups[::-1]] = np.arange(len(groups))[::-1]  # first edge of each group sets its fan-in
        bound = torch.as_tensor(1.0 / np.sqrt(fan_in[e[first, 1]] if len(e) else np.ones(0)), dtype=torch.float32)
        self.weight = nn.Parameter((torch.rand(genome.n_weights, generator=generator) * 2 - 1) * bound)
        self.norm_weight = nn.Parameter(torch.ones(len(genome.hidden)))
        self.norm_bias = nn.Parameter(torch.zeros(len(genome.hidden)))
        out_bound = 1.0 / np.sqrt(fan_in[sp.outputs])
        self.bias = nn.Parameter((torch.rand(sp.n_outputs, generator=generator) * 2 - 1) * torch.as_tensor(out_bound, dtype=torch.float32))
        self.register_buffer("groups", None if genome.ties is None else _long(groups), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # The plan's index tensors follow the parameters' device (never their dtype).
        super()._apply(fn, recurse)
        self.plan = self.plan.to(self.bias.device)
        return self

    def edge_weights(self) -> Tensor:
        """``(E,)`` per-edge weights, tied groups gathered."""
        return self.weight if self.groups is None else self.weight[self.groups]

    def weights(self) -> Weights:
        return Weights(self.edge_weights(), self.norm_weight, self.norm_bias, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return sparse_forward(self.plan, self.weights(), x, self.mode)

    @torch.no_grad()
    def set_weights(self, weights: Weights) -> None:
        """Start from given weights (a supernet's gather, a hypernet's prediction): ``edge`` (E,)
        per edge, a tie group taking the mean of its edges."""
        g = self.groups if self.groups is not None else torch.arange(len(self.weight), device=self.weight.device)
        self.weight.copy_(group_mean(weights.edge.detach().to(self.weight), g, len(self.weight)))
        self.norm_weight.copy_(weights.norm_weight.detach())
        self.norm_bias.copy_(weights.norm_bias.detach())
        self.bias.copy_(weights.bias.detach())

    @classmethod
    @torch.no_grad()
    def starting_from(cls, genome: Genome, weights: Weights, rescale: bool = True) -> "SparseNet":
        """A network of ``genome``, on ``weights``' device, starting from weights made elsewhere (a
        hypernet's prediction, a supernet's gather); ``rescale``: hidden levels at the init's scale
        (``init_scaled``: the same function, retrained at a fresh init's pace)."""
        net = cls(genome).to(weights.edge.device)
        weights = tied(genome, weights)  # first, so the rescale measures the weights the net will hold
        net.set_weights(init_scaled(genome, net.plan, weights) if rescale else weights)
        return net

    # --- weights keyed by edge and neuron id, so they survive genome edits ------------------
    def keyed_state(self) -> dict[str, Tensor]:
        """Weights keyed by ids: ``edges`` (E, 2) with ``edge`` (E,), ``hidden`` (H,) with
        ``norm_weight``/``norm_bias`` (H,), ``outputs`` with ``bias``."""
        return {
            "edges": _long(self.genome.edges), "edge": self.edge_weights().detach().cpu().clone(),
            "hidden": _long(self.genome.hidden), "norm_weight": self.norm_weight.detach().cpu().clone(),
            "norm_bias": self.norm_bias.detach().cpu().clone(),
            "outputs": _long(self.genome.space.outputs), "bias": self.bias.detach().cpu().clone(),
        }

    @torch.no_grad()
    def load_keyed(self, state: dict[str, Tensor]) -> LoadReport:
        """Copy weights whose edge / neuron ids this genome has; keep the init for the rest.

        A tie group takes the mean of the values given for its edges."""
        sp = self.genome.space
        mine = sp.edge_id(self.genome.edges[:, 0], self.genome.edges[:, 1])
        theirs = sp.edge_id(state["edges"][:, 0].numpy(), state["edges"][:, 1].numpy())
        hit, pos = match_keys(mine, theirs)
        g, values = _long(self.genome.groups[hit]), state["edge"].to(self.weight)[_long(pos[hit])]
        have = torch.bincount(g, minlength=len(self.weight)) > 0
        self.weight.copy_(torch.where(have, group_mean(values, g, len(self.weight)), self.weight))
        nhit, npos = match_keys(self.genome.hidden, state["hidden"].numpy())
        for name in ("norm_weight", "norm_bias"):
            getattr(self, name)[_long(np.flatnonzero(nhit))] = state[name].to(self.weight)[_long(npos[nhit])]
        ohit, opos = match_keys(sp.outputs, state["outputs"].numpy())
        self.bias[_long(np.flatnonzero(ohit))] = state["bias"].to(self.weight)[_long(opos[ohit])]
        return LoadReport(int((~hit).sum()), len(theirs) - int(hit.sum()),
                          int((~nhit).sum()), len(state["hidden"]) - int(nhit.sum()))


def match_keys(mine: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key of ``mine`` (edge ids, neuron ids): whether ``theirs`` holds it, and where; the
    lookup behind weights keyed by id (``SparseNet.load_keyed``, ``morphism.child_state``)."""
    theirs = np.asarray(theirs)
    order = np.argsort(theirs, kind="stable")
    pos = np.searchsorted(theirs[order], mine).clip(0, max(len(theirs) - 1, 0))
    hit = (theirs[order][pos] == mine) if len(theirs) else np.zeros(len(mine), dtype=bool)
    return hit, order[pos] if len(theirs) else pos



def __getattr__(name: str):  # the ridge readout moved to evolution.readout; its names stay importable here
    if name in ("Readout", "readout_features", "ridge_solve", "readout_logits", "readout_loss", "ridge_readout"):
        return getattr(importlib.import_module("evolution.readout"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
