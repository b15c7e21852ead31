"""The graph hypernetwork: a direction-aware GNN encoder and decoders for every weight of a genome.

SMASH (Brock et al. 2018) and GHN (Zhang et al. 2019; GHN-2, Knyazev et al. 2021) predict the
parameters of a network from its graph; here the graph is one of single neurons and each edge's
weight is decoded from its two end states. Each layer passes messages along the edges (inputs to
outputs) and against them (``GraphConv`` on ``edge_index`` and on its flip), so a neuron hears both
what feeds it and what it feeds. Edge weights are scaled by ``1 / sqrt(fan_in)`` of their target,
so genomes larger than any trained on keep finite, well-scaled activations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GraphConv
from torch_geometric.utils import degree

from evolution.network import Weights
from hypernet.graph import EDGE_FEATURES, NODE_FEATURES


class HyperNet(nn.Module):
    """``forward(batch) -> list[Weights]``, one per graph, aligned with ``compile``/``sparse_forward``."""

    def __init__(self, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(NODE_FEATURES, hidden)
        self.forward_convs = nn.ModuleList([GraphConv(hidden, hidden, aggr="mean") for _ in range(layers)])
        self.backward_convs = nn.ModuleList([GraphConv(hidden, hidden, aggr="mean") for _ in range(layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])
        self.edge_head = nn.Sequential(nn.Linear(2 * hidden + EDGE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.node_head = nn.Linear(hidden, 3)  # LayerNorm gain and shift, output bias
        # Learned scale of the decoded weights (log), started where a trained MLP's weights sit.
        self.log_scale = nn.Parameter(torch.tensor(1.0))
        nn.init.zeros_(self.node_head.weight)
        nn.init.zeros_(self.node_head.bias)

    def encode(self, batch) -> Tensor:
        """Node states ``(N, hidden)``."""
        h = F.relu(self.embed(batch.x))
        flipped = batch.edge_index.flip(0)
        for fwd, bwd, norm in zip(self.forward_convs, self.backward_convs, self.norms):
            h = h + F.relu(norm(fwd(h, batch.edge_index) + bwd(h, flipped)))
        return h

    def forward(self, batch) -> list[Weights]:
        h = self.encode(batch)
        src, dst = batch.edge_index
        raw = self.edge_head(torch.cat([h[src], h[dst], batch.edge_attr], 1)).squeeze(1)
        fan_in = degree(dst, num_nodes=h.shape[0]).clamp(min=1)
        edge = raw * self.log_scale.exp() / fan_in[dst].sqrt()
        node = self.node_head(h)
        # Bounded around LayerNorm's own init: free gains collapse to 0 early in training (every
        # hidden neuron constant, the net predicts the class prior).
        gain, shift, bias = 1 + 0.5 * torch.tanh(node[:, 0]), 0.5 * torch.tanh(node[:, 1]), node[:, 2]
        edges = edge.split(batch.n_edges.tolist())
        hidden = batch.hidden_index.split(batch.n_hidden.tolist())
        outputs = batch.output_index.view(len(edges), -1)
        return [Weights(e, gain[hi], shift[hi], bias[oi]) for e, hi, oi in zip(edges, hidden, outputs)]
