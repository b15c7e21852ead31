"""Many genomes of one grid in one pass: the batched counterpart of ``sparse_forward``.

``stack(genomes)`` lays G genomes side by side: every pair that reads the inputs joins one
``(n_inputs, columns)`` weight matrix (the inputs are shared, so one GEMM serves all genomes and all
their target levels), and every pair between hidden levels becomes a ``(G, N_a, N_b)`` block batch
for one ``bmm``, each genome's present neurons padded to the widest genome's count ``N`` at that
grid level. Padded neurons have zero weights, zero LayerNorm affine and so an exactly zero output;
the LayerNorm of a level is taken over its present neurons only. Outputs and gradients are those of
``sparse_forward`` per genome (tests/evolution/test_batched.py), up to float rounding.

The weights are the per-genome ``Weights`` vectors concatenated in genome order (``Stack.offsets``
says where each genome's part starts), so a supernet gathers them with one ``index_select`` and a
hypernet predicts them with one GNN pass. The per-genome kernel stays for standalone networks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution.genome import Genome
from evolution.network import NORM_EPS, Plan, Weights, tie_mean
from evolution.readout import readout_features, readout_logits, ridge_solve


@dataclass(frozen=True)
class StackPair:
    """The edges of all genomes between grid levels ``src`` (> 0) and ``dst``: ``flat`` ``(e,)``
    positions in the ``(G, N_src, N_dst)`` block batch, ``edges`` ``(e,)`` indices into the stacked
    edge vector."""

    src: int
    dst: int
    flat: Tensor
    edges: Tensor


@dataclass(frozen=True)
class Stack:
    """G genomes of one grid, compiled for ``stacked_forward``.

    ``widths[l]``: padded width ``N_l`` of grid level ``l`` (0 where no genome has it; the inputs'
    entry is ``n_inputs``); ``counts`` ``(G, levels + 2)`` present neurons per genome and level;
    ``input_flat``/``input_edges``: the edges out of the inputs, as positions in the
    ``(n_inputs, columns)`` matrix (a column per neuron they reach) and indices into the edge vector;
    ``input_take[l]``: ``(G * N_l,)`` the column of each padded slot of level ``l`` (``columns``, a zero
    column, where no input edge reaches it); ``norm_flat``/``norm_src``: per hidden grid level, the
    padded positions ``(g * N_l + j)`` of the genomes' hidden neurons and their indices into the
    stacked LayerNorm vectors; ``offsets``: per genome, its first edge, hidden neuron and output.
    """

    n_genomes: int
    n_inputs: int
    n_outputs: int
    widths: list[int]
    counts: Tensor
    columns: int
    input_take: list[Tensor | None]
    input_flat: Tensor
    input_edges: Tensor
    pairs: list[StackPair]
    norm_flat: list[Tensor | None]
    norm_src: list[Tensor | None]
    groups: Tensor | None
    offsets: np.ndarray

    def to(self, device: torch.device | str) -> "Stack":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, counts=self.counts.to(device), input_flat=self.input_flat.to(device),
                       input_take=[move(t) for t in self.input_take],
                       input_edges=self.input_edges.to(device),
                       pairs=[replace(p, flat=p.flat.to(device), edges=p.edges.to(device)) for p in self.pairs],
                       norm_flat=[move(t) for t in self.norm_flat], norm_src=[move(t) for t in self.norm_src],
                       groups=move(self.groups))


def _long(a: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long)


def stack(genomes: list[Genome]) -> Stack:
    """Compile genomes of one ``SearchSpace`` for ``stacked_forward``."""
    if not genomes:
        raise ValueError("stack needs at least one genome")
    sp = genomes[0].space
    for g in genomes[1:]:
        if g.space != sp:
            raise ValueError(f"genomes of different grids cannot share a pass: {g.space} and {sp}")
    n_levels = sp.output_level + 1
    G = len(genomes)
    counts = np.zeros((G, n_levels), dtype=np.int64)
    counts[:, 0], counts[:, -1] = sp.n_inputs, sp.n_outputs
    local = np.empty((G, sp.n_neurons), dtype=np.int64)  # each neuron's index among its level's present ones
    for i, g in enumerate(genomes):
        g.validate()
        local[i, sp.inputs], local[i, sp.outputs] = np.arange(sp.n_inputs), np.arange(sp.n_outputs)
        lv = sp.level[g.hidden]
        counts[i, 1:-1] = np.bincount(lv, minlength=n_levels)[1:-1]
        # hidden is sorted by id, and ids run level by level: rank within the level = position - level start
        starts = np.searchsorted(lv, lv)
        local[i, g.hidden] = np.arange(len(g.hidden)) - starts
    widths = counts.max(0).tolist()
    n_edges = np.array([g.n_edges for g in genomes])
    n_hidden = np.array([len(g.hidden) for g in genomes])
    offsets = np.stack([np.concatenate([[0], np.cumsum(n_edges)]), np.concatenate([[0], np.cumsum(n_hidden)]),
                        np.arange(G + 1) * sp.n_outputs], 1)
    gid = np.repeat(np.arange(G), n_edges)
    e = np.concatenate([g.edges for g in genomes]) if n_edges.sum() else np.zeros((0, 2), dtype=np.int64)
    a, b = sp.level[e[:, 0]], sp.level[e[:, 1]]
    ls, ld = local[gid, e[:, 0]], local[gid, e[:, 1]]
    width = np.array(widths)
    from_inputs = a == 0
    # One column per neuron that input edges reach (not per padded slot: no GEMM work on padding or
    # on neurons fed by hidden levels only); input_take[l] gathers level l's padded block from them.
    fed = (np.asarray(b[from_inputs]) * G + gid[from_inputs]) * int(width.max()) + ld[from_inputs]
    targets, col = np.unique(fed, return_inverse=True)
    columns = len(targets)
    input_flat = e[from_inputs, 0] * columns + col
    input_take: list[Tensor | None] = [None] * n_levels
    t_level, rest = np.divmod(targets, G * int(width.max()))
    t_genome, t_local = np.divmod(rest, int(width.max()))
    for lvl in range(1, n_levels):
        here = np.flatnonzero(t_level == lvl)
        if len(here):
            take = np.full(G * widths[lvl], columns)  # the zero column appended to the product
            take[t_genome[here] * widths[lvl] + t_local[here]] = here
            input_take[lvl] = _long(take)
    pairs = []
    inner = np.flatnonzero(~from_inputs)
    key = a[inner] * n_levels + b[inner]
    order = inner[np.argsort(key, kind="stable")]
    bounds = np.flatnonzero(np.diff(a[order] * n_levels + b[order])) + 1
    for idx in np.split(order, bounds) if len(order) else []:
        sa, sb = int(a[idx[0]]), int(b[idx[0]])
        flat = (gid[idx] * width[sa] + ls[idx]) * width[sb] + ld[idx]
        pairs.append(StackPair(sa, sb, _long(flat), _long(idx)))
    norm_flat: list[Tensor | None] = [None] * n_levels
    norm_src: list[Tensor | None] = [None] * n_levels
    hid = np.concatenate([g.hidden for g in genomes]) if n_hidden.sum() else np.zeros(0, dtype=np.int64)
    hgid = np.repeat(np.arange(G), n_hidden)
    hl = sp.level[hid]
    for lvl in range(1, n_levels - 1):
        sel = np.flatnonzero(hl == lvl)
        if widths[lvl]:
            norm_flat[lvl] = _long(hgid[sel] * width[lvl] + local[hgid[sel], hid[sel]])
            norm_src[lvl] = _long(sel)
    groups = None
    if any(g.ties is not None for g in genomes):
        group_counts = np.array([g.n_weights for g in genomes])
        base = np.repeat(np.concatenate([[0], np.cumsum(group_counts)[:-1]]), n_edges)
        groups = _long(np.concatenate([g.groups for g in genomes]) + base)
    return Stack(G, sp.n_inputs, sp.n_outputs, widths, torch.as_tensor(counts), columns, input_take,
                 _long(input_flat), _long(np.flatnonzero(from_inputs)), pairs, norm_flat, norm_src, groups, offsets)


def concat(weights: list[Weights]) -> Weights:
    """Per-genome ``Weights`` as the stacked vectors ``stacked_forward`` takes."""
    return Weights(*(torch.cat(parts) for parts in zip(*weights)))


def _scatter(n: int, flat: Tensor, values: Tensor) -> Tensor:
    return values.new_zeros(n).scatter(0, flat, values)


def stacked_levels(s: Stack, weights: Weights, x: Tensor, dtype: torch.dtype | None = None,
                   compiled: bool = False) -> list[Tensor | None]:
    """Activations of all genomes per grid level: ``[x (B, n_inputs), (G, B, N_1), ..., logits (G, B,
    n_outputs)]`` (None for a level no genome has); padded neurons are 0. ``weights``: the genomes'
    ``Weights`` concatenated (``concat``; tie groups are averaged here, as ``SparseNet`` would).
    ``dtype``: the matmuls' type (e.g. ``torch.bfloat16``); LayerNorm and logits stay in ``x``'s.
    ``compiled``: LayerNorm through ``compiled_norm``."""
    x = x.flatten(1)
    if x.shape[1] != s.n_inputs:
        raise ValueError(f"input has {x.shape[1]} features; the genomes expect {s.n_inputs}")
    out_dtype, dtype = x.dtype, dtype or x.dtype
    G, B, n_levels = s.n_genomes, len(x), len(s.widths)
    edge = weights.edge
    if s.groups is not None:
        edge = tie_mean(edge, s.groups)
    edge = edge.to(dtype)
    acc: list[Tensor | None] = [None] * n_levels
    if len(s.input_edges):
        w = _scatter(s.n_inputs * s.columns, s.input_flat, edge.index_select(0, s.input_edges))
        y = x.to(dtype) @ w.view(s.n_inputs, s.columns)  # one GEMM: every genome, every level the inputs feed
        y = torch.cat([y, y.new_zeros(B, 1)], 1)
        for lvl, take in enumerate(s.input_take):
            if take is not None:
                acc[lvl] = y.index_select(1, take).view(B, G, s.widths[lvl]).transpose(0, 1)
    acts: list[Tensor | None] = [x] + [None] * (n_levels - 1)
    by_dst: dict[int, list[StackPair]] = {}
    for p in s.pairs:
        by_dst.setdefault(p.dst, []).append(p)
    counts = s.counts.to(out_dtype)
    for lvl in range(1, n_levels):
        n = s.widths[lvl]
        if not n:
            continue
        total = acc[lvl]
        for p in by_dst.get(lvl, []):
            n_src = s.widths[p.src]
            w = _scatter(G * n_src * n, p.flat, edge.index_select(0, p.edges)).view(G, n_src, n)
            y = torch.bmm(acts[p.src].to(dtype), w)
            total = y if total is None else total + y
        total = x.new_zeros(G, B, n) if total is None else total.to(out_dtype)
        if lvl < n_levels - 1:
            acts[lvl] = _layer_norm_relu(total, counts[:, lvl], s, weights, lvl, compiled)
        else:
            acts[lvl] = total + weights.bias.to(out_dtype).view(G, 1, s.n_outputs)
    return acts


def _norm(h: Tensor, present: Tensor, k: Tensor, gain: Tensor, shift: Tensor) -> Tensor:
    mean = h.sum(-1, keepdim=True) / k  # padded entries are exactly 0: the sum is over present ones
    centred = (h - mean) * present
    var = centred.square().sum(-1, keepdim=True) / k
    return torch.relu(centred * torch.rsqrt(var + NORM_EPS) * gain + shift)


_compiled: dict[str, object] = {}


def compiled_norm():
    """``_norm`` through ``torch.compile`` (dynamic shapes: one compile serves every pass): one fused
    kernel instead of ~9 passes over ``(G, B, N)``; built on first use (tens of seconds)."""
    if "norm" not in _compiled:
        _compiled["norm"] = torch.compile(_norm, dynamic=True)
    return _compiled["norm"]


def _layer_norm_relu(h: Tensor, count: Tensor, s: Stack, weights: Weights, lvl: int, compiled: bool = False) -> Tensor:
    """``ReLU(LayerNorm(h))`` per genome over its present neurons (``count`` ``(G,)``); padded ones get
    gain and shift 0, so their output is exactly 0."""
    G, _, n = h.shape
    size = G * n
    gain = _scatter(size, s.norm_flat[lvl], weights.norm_weight.to(h.dtype).index_select(0, s.norm_src[lvl]))
    shift = _scatter(size, s.norm_flat[lvl], weights.norm_bias.to(h.dtype).index_select(0, s.norm_src[lvl]))
    present = _scatter(size, s.norm_flat[lvl], h.new_ones(len(s.norm_flat[lvl]))).view(G, 1, n)
    k = count.clamp(min=1).view(G, 1, 1)
    if compiled:
        return compiled_norm()(h, present, k, gain.view(G, 1, n), shift.view(G, 1, n))
    if not torch.is_grad_enabled():  # scoring: in place, no (G, B, N) temporaries to allocate and fill
        mean = h.sum(-1, keepdim=True) / k
        var = ((h - mean).square_().mul_(present)).sum(-1, keepdim=True).div_(k)
        return h.sub_(mean).mul_(torch.rsqrt(var.add_(NORM_EPS))).mul_(gain.view(G, 1, n)).add_(shift.view(G, 1, n)).relu_()
    return _norm(h, present, k, gain.view(G, 1, n), shift.view(G, 1, n))


def stacked_forward(s: Stack, weights: Weights, x: Tensor, dtype: torch.dtype | None = None,
                    compiled: bool = False) -> Tensor:
    """Logits ``(G, B, n_outputs)`` of all stacked genomes on the same inputs ``x`` ``(B, n_inputs)``."""
    return stacked_levels(s, weights, x, dtype, compiled)[-1]


def genome_levels(s: Stack, acts: list[Tensor | None], g: int, plan: Plan) -> list[Tensor]:
    """Genome ``g``'s activations as ``evolution.network.level_outputs`` gives them for its ``plan``:
    ``[inputs used, present hidden levels..., logits]`` (views, for a readout refit)."""
    counts = s.counts[g].tolist()
    out = [acts[0] if plan.input_index is None else acts[0].index_select(1, plan.input_index)]
    for lvl in range(1, len(s.widths)):
        if counts[lvl]:
            out.append(acts[lvl][g, :, :counts[lvl]])
    return out


@torch.no_grad()
def stacked_accuracy(s: Stack, plans: list[Plan], weights: Weights, x: Tensor, y: Tensor,
                     fit: tuple[Tensor, Tensor] | None = None, ridge: float = 1.0, chunk: int = 4096,
                     dtype: torch.dtype | None = None, compiled: bool = False) -> Tensor:
    """``(G,)`` accuracy of each stacked genome on ``(x, y)``, in chunks of ``chunk`` examples. With
    ``fit``, each genome's output level is first refitted in closed form on it, as
    ``evolution.network.ridge_readout`` does (its hidden levels and plan ``plans[g]`` unchanged).
    ``dtype``, ``compiled``: as ``stacked_levels`` takes them."""
    readouts = None
    if fit is not None:
        acts = stacked_levels(s, weights, fit[0], dtype, compiled)
        readouts = []
        for g, plan in enumerate(plans):
            r = readout_features(plan, genome_levels(s, acts, g, plan))
            readouts.append(None if r is None else ridge_solve(r, fit[1], plan.n_outputs, ridge))
    correct = torch.zeros(s.n_genomes, device=y.device)
    for i in range(0, len(y), chunk):
        acts = stacked_levels(s, weights, x[i:i + chunk], dtype, compiled)
        target = y[i:i + chunk]
        if readouts is None:
            correct += (acts[-1].argmax(2) == target).sum(1)
            continue
        for g, plan in enumerate(plans):
            if readouts[g] is None:  # no edge reaches an output: the network's own output level
                logits = acts[-1][g]
            else:
                r = readout_features(plan, genome_levels(s, acts, g, plan))
                logits = readout_logits(r, *readouts[g])
            correct[g] += (logits.argmax(1) == target).sum()
    return correct / len(y)


def levels_readout_loss(plan: Plan, acts: list[Tensor | None], s: Stack, g: int, y: Tensor, support: int, ridge: float,
                        scale: Tensor) -> Tensor:
    """``evolution.readout.readout_loss`` of stacked genome ``g`` (plan ``plan``) from the stacked
    activations ``acts`` of its batch: cross-entropy of its logits on ``y[support:]`` plus that of its
    output level refitted on the first ``support`` examples."""
    support = min(support, len(y) // 2)
    levels = genome_levels(s, acts, g, plan)
    loss = F.cross_entropy(levels[-1][support:], y[support:])
    r = readout_features(plan, levels)
    if r is None or not support:
        return loss
    coef, bias = ridge_solve(r._replace(feats=r.feats[:support]), y[:support], plan.n_outputs, ridge)
    query = readout_logits(r._replace(feats=r.feats[support:]), coef, bias)
    return loss + F.cross_entropy(scale * query.to(scale.dtype), y[support:])
