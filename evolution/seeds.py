"""Hand-made genomes: dense MLPs and conv-like genomes with tied kernels, from string specs.

A spec is a comma-separated list of hidden layers, each ``kind:arg`` or a bare ``arg`` that repeats
the previous kind: ``mlp:64,32`` (two dense levels), ``conv:8x3,mlp:64`` (8 channels of 3x3 local
receptive fields with tied kernels, then a dense level of 64), ``conv:8x3s2`` (the lattice of the conv
levels at stride 2), ``linear`` (inputs straight to outputs). Seeds of this kind start the original
neuron-level search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evolution.genome import Genome, SearchSpace


@dataclass(frozen=True)
class Layer:
    kind: str  # "mlp" or "conv"
    size: int  # neurons (mlp) or channels (conv)
    kernel: int = 0
    stride: int = 1


def parse_spec(spec: str) -> list[Layer]:
    """``"conv:8x3,mlp:64"`` -> layers; ``ValueError`` naming the bad token."""
    spec = spec.strip()
    if spec in ("linear", "mlp:", ""):
        return []
    layers: list[Layer] = []
    kind = None
    for token in spec.split(","):
        token = token.strip()
        if ":" in token:
            kind, token = token.split(":", 1)
        if kind not in ("mlp", "conv"):
            raise ValueError(f"genome spec {spec!r}: unknown layer kind {kind!r} (expected mlp:N or conv:CxK)")
        try:
            if kind == "mlp":
                layers.append(Layer("mlp", int(token)))
            else:
                ck, _, stride = token.partition("s")
                c, k = ck.split("x")
                layers.append(Layer("conv", int(c), int(k), int(stride or 1)))
        except ValueError:
            raise ValueError(f"genome spec {spec!r}: cannot read {kind}:{token!r} (expected mlp:N or conv:CxK[sS])") from None
        if min(layers[-1].size, layers[-1].kernel or 1, layers[-1].stride) < 1:
            raise ValueError(f"genome spec {spec!r}: sizes must be positive in {kind}:{token}")
    if any(l.stride != 1 for l in [l for l in layers if l.kind == "conv"][1:]):
        # Every hidden level shares one lattice, which the first conv's stride sets.
        raise ValueError(f"genome spec {spec!r}: only the first conv layer may have a stride (it sets the "
                         "grid's lattice, which every level shares)")
    kinds = [l.kind for l in layers]
    if "mlp" in kinds and "conv" in kinds[kinds.index("mlp"):]:
        raise ValueError(f"genome spec {spec!r}: conv layers must come before mlp layers")
    return layers


def space_for_spec(spec: str, input_shape: tuple[int, ...], n_outputs: int) -> SearchSpace:
    """The smallest grid that holds the spec: one level per layer, a lattice fit for its convs."""
    layers = parse_spec(spec)
    convs = [l for l in layers if l.kind == "conv"]
    widths = [l.size for l in layers if l.kind == "mlp"]
    if not convs:
        return SearchSpace(input_shape, n_outputs, max(len(layers), 1), max(widths, default=1))
    if len(input_shape) != 3:
        raise ValueError(f"genome spec {spec!r}: conv layers need image data (C, H, W), got input shape {input_shape}")
    h, w = input_shape[1:]
    stride = convs[0].stride
    points = math.ceil(h / stride) * math.ceil(w / stride)
    channels = max(max(l.size for l in convs), math.ceil(max(widths, default=1) / points))
    return SearchSpace(input_shape, n_outputs, len(layers), channels * points, channels)


def _spread_slots(space: SearchSpace, n: int) -> np.ndarray:
    """``n`` slots of a level spread over the lattice first, then over channels."""
    if n > space.width:
        raise ValueError(f"a level of {n} neurons does not fit the grid's width {space.width}")
    points = space.width // space.channels
    order = np.arange(space.width).reshape(space.channels, points).T.ravel()  # point-major
    return np.sort(order[np.floor(np.arange(n) * space.width / n).astype(np.int64)])


def _conv_edges(space: SearchSpace, level: int, channels: int, kernel: int, src_ids: np.ndarray,
                src_grid: tuple[int, int, int], label0: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges and tie labels of one conv level: each neuron sees the ``kernel x kernel`` window of
    the source lattice nearest its position, one shared weight per (out ch, in ch, offset)."""
    c_in, rows, cols = src_grid
    h, w = space.plane
    points = space.width // space.channels
    p = np.arange(points)
    pos = space.positions[space.hidden_id(level, p)]
    # Nearest source lattice point: source lattice cell centres are spread over the same plane.
    r0 = np.clip(np.floor((pos[:, 0] + 0.5) * rows / h), 0, rows - 1).astype(np.int64)
    c0 = np.clip(np.floor((pos[:, 1] + 0.5) * cols / w), 0, cols - 1).astype(np.int64)
    half = kernel // 2
    src, dst, tie = [], [], []
    offsets = [(dr, dc) for dr in range(-half, kernel - half) for dc in range(-half, kernel - half)]
    for co in range(channels):
        d = space.hidden_id(level, co * points + p)
        for ci in range(c_in):
            for k, (dr, dc) in enumerate(offsets):
                r, c = r0 + dr, c0 + dc
                ok = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)  # zero padding: no edge
                src.append(src_ids[ci * rows * cols + r[ok] * cols + c[ok]])
                dst.append(d[ok])
                tie.append(np.full(ok.sum(), label0 + (co * c_in + ci) * len(offsets) + k))
    return np.stack([np.concatenate(src), np.concatenate(dst)], 1), np.concatenate(tie)


def build(spec: str, space: SearchSpace) -> Genome:
    """The genome of ``spec`` on ``space`` (levels filled from 1 up); ``ValueError`` if it does not fit."""
    layers = parse_spec(spec)
    if len(layers) > space.levels:
        raise ValueError(f"genome spec {spec!r} has {len(layers)} hidden layers; the grid has {space.levels} levels")
    if len(space.input_shape) == 3:
        c, h, w = space.input_shape
        grid = (c, h, w)
    else:
        grid = (space.n_inputs, 1, 1)
    prev = space.inputs
    hidden, edges, ties = [], [], []
    label = 0
    points = space.width // space.channels
    for level, layer in enumerate(layers, start=1):
        if layer.kind == "conv":
            if layer.size > space.channels:
                raise ValueError(f"conv layer of {layer.size} channels does not fit the grid's {space.channels} channels")
            e, t = _conv_edges(space, level, layer.size, layer.kernel, prev, grid, label)
            label = int(t.max()) + 1 if len(t) else label
            ids = space.hidden_id(level, np.arange(layer.size * points))
            grid = (layer.size, *space.lattice)
        else:
            ids = space.hidden_id(level, _spread_slots(space, layer.size))
            src, dst = np.meshgrid(prev, ids, indexing="ij")
            e = np.stack([src.ravel(), dst.ravel()], 1)
            t = label + np.arange(len(e))
            label += len(e)
        hidden.append(ids)
        edges.append(e)
        ties.append(t)
        prev = ids
    src, dst = np.meshgrid(prev, space.outputs, indexing="ij")
    edges.append(np.stack([src.ravel(), dst.ravel()], 1))
    ties.append(label + np.arange(len(prev) * space.n_outputs))
    tied = any(l.kind == "conv" for l in layers)
    hidden_ids = np.concatenate(hidden) if hidden else np.zeros(0, dtype=np.int64)
    genome = Genome(space, hidden_ids, np.concatenate(edges), np.concatenate(ties) if tied else None)
    return genome.validate().pruned().canonical()


def mlp(space: SearchSpace, widths: list[int]) -> Genome:
    """Dense MLP-equivalent genome: every neuron of a level feeds every neuron of the next."""
    return build("mlp:" + ",".join(map(str, widths)) if widths else "linear", space)
