"""A genome as a PyG graph: one node per present neuron, one directed edge per genome edge, in genome order.

Graph hypernetworks read an architecture as a graph (GHN, Zhang et al. 2019; GHN-2, Knyazev et al.
2021); here the nodes are single neurons, so node features say where a neuron sits (kind, level,
planar position) and how connected it is, and edge features say how far an edge reaches.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from evolution.genome import Genome

# kind one-hot (input, hidden, output), level, row, col, channel, log1p in-degree, log1p out-degree
NODE_FEATURES = 9
# planar distance, level gap, row offset, column offset
EDGE_FEATURES = 4


def _channels(genome: Genome, ids: np.ndarray) -> np.ndarray:
    """Channel of each neuron in [0, 1): the input channel for inputs, the lattice copy for hidden ones."""
    sp = genome.space
    out = np.zeros(len(ids))
    n_in_ch = 1 if len(sp.input_shape) == 1 else sp.input_shape[0]
    inputs = sp.level[ids] == 0
    out[inputs] = (ids[inputs] // (sp.n_inputs // n_in_ch)) / n_in_ch
    hidden = (sp.level[ids] > 0) & (sp.level[ids] < sp.output_level)
    slot = (ids[hidden] - sp.n_inputs) % sp.width
    out[hidden] = (slot // (sp.width // sp.channels)) / sp.channels
    return out


def to_data(genome: Genome) -> Data:
    """The graph of one genome.

    Nodes: inputs, present hidden neurons (sorted), outputs, i.e. ``genome.neurons``; ``x`` is
    ``(N, NODE_FEATURES)``. ``edge_index`` ``(2, E)`` is ``genome.edges`` mapped to node indices,
    row for row, so prediction ``i`` is the weight of ``genome.edges[i]``; ``edge_attr`` is
    ``(E, EDGE_FEATURES)``. ``hidden_index`` ``(H,)`` and ``output_index`` ``(n_out,)`` are node
    indices in the order ``Weights`` wants (PyG offsets them when batching); ``n_edges``,
    ``n_hidden`` and ``n_outputs`` let a batch's predictions be split back per genome.
    """
    sp, e = genome.space, genome.edges
    ids = genome.neurons
    node = np.full(sp.n_neurons, -1, dtype=np.int64)
    node[ids] = np.arange(len(ids))
    level = sp.level[ids]
    kind = np.where(level == 0, 0, np.where(level == sp.output_level, 2, 1))
    h, w = sp.plane
    extent = np.array([h, w], dtype=float)
    degree_in = np.bincount(e[:, 1], minlength=sp.n_neurons)[ids]
    degree_out = np.bincount(e[:, 0], minlength=sp.n_neurons)[ids]
    # Pixel centres and every slot lie within [-0.5, extent - 0.5]: the shift maps them into [0, 1].
    x = np.concatenate([np.eye(3)[kind], (level / sp.output_level)[:, None], (sp.positions[ids] + 0.5) / extent,
                        _channels(genome, ids)[:, None], np.log1p(degree_in)[:, None], np.log1p(degree_out)[:, None]], 1)
    # Offsets and distances in units of the plane, so planes of any size give the same range.
    offset = (sp.positions[e[:, 1]] - sp.positions[e[:, 0]]) / extent
    dist = np.linalg.norm(offset, axis=1) / np.sqrt(2)
    gap = (sp.level[e[:, 1]] - sp.level[e[:, 0]]) / sp.output_level
    edge_attr = np.concatenate([dist[:, None], gap[:, None], offset], 1)
    return Data(
        x=torch.as_tensor(x, dtype=torch.float32),
        edge_index=torch.as_tensor(node[e].T.copy()),
        edge_attr=torch.as_tensor(edge_attr, dtype=torch.float32),
        num_nodes=len(ids),
        hidden_index=torch.as_tensor(node[genome.hidden]),
        output_index=torch.as_tensor(node[sp.outputs]),
        n_edges=torch.tensor([len(e)]),
        n_hidden=torch.tensor([len(genome.hidden)]),
        n_outputs=torch.tensor([sp.n_outputs]),
    )


def to_batch(genomes: list[Genome]) -> Batch:
    """Many genomes as one disconnected graph (PyG ``Batch``); predictions split back by ``n_edges`` etc."""
    return Batch.from_data_list([to_data(g) for g in genomes])
