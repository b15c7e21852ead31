"""Weight inheritance by network morphisms (Net2Net, Chen et al. 2016; NetMorph, Wei et al. 2016).

A child's ``SparseNet`` starts from its parent's weights keyed by edge and neuron id: shared edges
copy, new edges start at ``new_edge`` (0 by default), removed ones are dropped, and a duplicated
neuron (Net2WiderNet) takes the original's incoming weights while both halve their outgoing ones.
Adding edges at zero is exactly function preserving. Adding or duplicating a neuron is exact
without LayerNorm, but here the new neuron joins its level's LayerNorm statistics, and removals
change the function: ``drift`` measures how much.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from evolution.genome import Genome
from evolution.mutations import Inheritance
from evolution.network import SparseNet, match_keys


def child_state(parent: dict[str, Tensor], child: Genome, how: Inheritance, new_edge: float = 0.0) -> dict[str, Tensor]:
    """The child's keyed weights (every child edge present) from the parent's ``keyed_state()``."""
    sp = child.space
    theirs = sp.edge_id(parent["edges"][:, 0].numpy(), parent["edges"][:, 1].numpy())
    edge = parent["edge"].double().numpy()
    hit, pos = match_keys(sp.edge_id(child.edges[:, 0], child.edges[:, 1]), theirs)
    values = np.where(hit, edge[pos] if len(edge) else 0.0, new_edge)
    lookup = dict(zip(theirs.tolist(), edge.tolist())) if how.duplicated else {}
    hidden = {int(n): i for i, n in enumerate(parent["hidden"].tolist())}
    nhit, npos = match_keys(child.hidden, parent["hidden"].numpy())
    # A parent without hidden neurons (a linear seed) has nothing to index: every child neuron is new.
    had = len(parent["hidden"]) > 0
    norm_weight = np.where(nhit, parent["norm_weight"].double().numpy()[npos] if had else 1.0, 1.0)
    norm_bias = np.where(nhit, parent["norm_bias"].double().numpy()[npos] if had else 0.0, 0.0)
    for orig, copy in how.duplicated:
        for j in np.flatnonzero(child.edges[:, 1] == copy):
            values[j] = lookup.get(int(sp.edge_id(child.edges[j, 0], orig)), new_edge)
        for neuron in (orig, copy):
            for j in np.flatnonzero(child.edges[:, 0] == neuron):
                values[j] = lookup.get(int(sp.edge_id(orig, child.edges[j, 1])), new_edge) / 2
        if orig in hidden:
            c = int(np.searchsorted(child.hidden, copy))
            norm_weight[c] = float(parent["norm_weight"][hidden[orig]])
            norm_bias[c] = float(parent["norm_bias"][hidden[orig]])
    f = parent["edge"].dtype
    return {"edges": torch.as_tensor(child.edges), "edge": torch.as_tensor(values, dtype=f),
            "hidden": torch.as_tensor(child.hidden), "norm_weight": torch.as_tensor(norm_weight, dtype=f),
            "norm_bias": torch.as_tensor(norm_bias, dtype=f), "outputs": parent["outputs"], "bias": parent["bias"]}


def inherit(parent: SparseNet | dict[str, Tensor], child: Genome, how: Inheritance, new_edge: float = 0.0,
            generator: torch.Generator | None = None) -> SparseNet:
    """A ``SparseNet`` of ``child`` holding the weights it inherits from ``parent``."""
    state = parent.keyed_state() if isinstance(parent, SparseNet) else parent
    net = SparseNet(child, generator)
    net.load_keyed(child_state(state, child, how, new_edge))
    return net


class Drift(NamedTuple):
    """How far a child's inherited function is from its parent's on a batch."""

    max_abs_logit: float
    parent_acc: float
    child_acc: float


@torch.no_grad()
def drift(parent: SparseNet, child: SparseNet, x: Tensor, y: Tensor) -> Drift:
    """Max |logit change| and both accuracies on ``(x, y)``."""
    a, b = parent(x), child(x)
    return Drift(float((a - b).abs().max()), float((a.argmax(1) == y).float().mean()),
                 float((b.argmax(1) == y).float().mean()))
