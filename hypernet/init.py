"""Standalone networks that start from a hypernetwork's predicted weights."""
from __future__ import annotations

import torch

from evolution.genome import Genome
from evolution.network import SparseNet
from hypernet.module import predict
from hypernet.model import HyperNet


@torch.no_grad()
def predicted_sparsenet(hypernet: HyperNet, genome: Genome, rescale: bool = True) -> SparseNet:
    """A ``SparseNet`` of ``genome`` initialized from the weights ``hypernet`` predicts for it (on the
    hypernet's device); a tie group starts from the mean of its edges' predictions.

    ``rescale``: bring each hidden level to the init's scale (``evolution.network.init_scaled``,
    same function). The hypernet predicts hidden weights about 9x larger than the init; unscaled,
    retraining from them on mnist-t10k ended below from-scratch training on 8 of 10 genomes, with a
    training loss up to 26x higher.
    """
    device = next(hypernet.parameters()).device
    # Tied first, so the rescale measures the weights the network will hold.
    return SparseNet.starting_from(genome, predict(hypernet, [genome], device)[0], rescale)
