"""A genome as a ``torch_geometric.data.Data`` graph: one node per present neuron, its edges in genome order."""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from evolution.genome import Genome

NODE_FEATURES = 8  # kind one-hot (3), level, row, col, log1p in-degree, log1p out-degree
EDGE_FEATURES = 2  # planar distance, level gap


def to_data(genome: Genome) -> Data:
    """Nodes: inputs, present hidden neurons, outputs (ascending ids). ``edge_index`` (2, E) follows
    ``genome.edges`` row by row, so prediction ``i`` is the weight of edge ``i``. ``hidden_index`` and
    ``output_index`` locate the LayerNorm and bias nodes (PyG offsets them when batching)."""
    sp = genome.space
    ids = genome.neurons
    node = np.full(sp.n_neurons, -1, dtype=np.int64)
    node[ids] = np.arange(len(ids))
    level = sp.level[ids]
    kind = np.where(level == 0, 0, np.where(level == sp.output_level, 2, 1))
    h, w = sp.plane
    pos = sp.positions[ids] / np.array([max(h - 1, 1), max(w - 1, 1)])
    indeg = np.bincount(genome.edges[:, 1], minlength=sp.n_neurons)[ids]
    outdeg = np.bincount(genome.edges[:, 0], minlength=sp.n_neurons)[ids]
    x = np.concatenate([np.eye(3)[kind], (level / sp.output_level)[:, None], pos,
                        np.log1p(indeg)[:, None], np.log1p(outdeg)[:, None]], 1)
    e = genome.edges
    dist = np.linalg.norm(sp.positions[e[:, 0]] - sp.positions[e[:, 1]], axis=1) / np.hypot(h, w)
    gap = (sp.level[e[:, 1]] - sp.level[e[:, 0]]) / sp.output_level
    return Data(x=torch.as_tensor(x, dtype=torch.float32), edge_index=torch.as_tensor(node[e].T.copy()),
                edge_attr=torch.as_tensor(np.stack([dist, gap], 1), dtype=torch.float32), num_nodes=len(ids),
                hidden_index=torch.as_tensor(node[genome.hidden]), output_index=torch.as_tensor(node[sp.outputs]),
                n_edges=torch.tensor([len(e)]), n_hidden=torch.tensor([len(genome.hidden)]))


def to_batch(genomes: list[Genome]) -> Batch:
    """Many genomes as one disconnected graph (PyG ``Batch``)."""
    return Batch.from_data_list([to_data(g) for g in genomes])
