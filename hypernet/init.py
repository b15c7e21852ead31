"""Standalone networks that start from a hypernetwork's predicted weights."""
from __future__ import annotations

import torch

from evolution.genome import Genome
from evolution.network import SparseNet
from hypernet.graph import to_batch
from hypernet.model import HyperNet


@torch.no_grad()
def predicted_sparsenet(hypernet: HyperNet, genome: Genome) -> SparseNet:
    """A ``SparseNet`` of ``genome`` initialised from the weights ``hypernet`` predicts for it (on the
    hypernet's device); a tie group starts from the mean of its edges' predictions."""
    device = next(hypernet.parameters()).device
    net = SparseNet(genome).to(device)
    net.set_weights(hypernet(to_batch([genome]).to(device))[0])
    return net
