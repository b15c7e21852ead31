"""Standalone networks that start from a hypernetwork's predicted weights."""
from __future__ import annotations

import torch

from evolution.genome import Genome
from evolution.network import SparseNet, Weights
from hypernet.graph import to_batch
from hypernet.model import HyperNet


@torch.no_grad()
def predicted_sparsenet(hypernet: HyperNet, genome: Genome, rescale: bool = True) -> SparseNet:
    """A ``SparseNet`` of ``genome`` initialised from the weights ``hypernet`` predicts for it (on the
    hypernet's device); a tie group starts from the mean of its edges' predictions.

    ``rescale``: scale all edges into each hidden level by one factor, to the RMS of ``SparseNet``'s
    own init (uniform within ``1 / sqrt(fan_in)``). LayerNorm makes that a no-op for the network's
    function, but not for training: the hypernet predicts hidden weights about 9x larger than the
    init, and behind a normalisation a weight's effective learning rate falls with its norm (van
    Laarhoven 2017; Arora et al. 2019). Unscaled, retraining from predictions on mnist-t10k ended
    below from-scratch training on 8 of 10 genomes, with a training loss up to 26x higher.
    """
    device = next(hypernet.parameters()).device
    net = SparseNet(genome).to(device)
    w = hypernet(to_batch([genome]).to(device))[0]
    edge = w.edge.clone()
    if rescale:
        fan_in = torch.bincount(torch.as_tensor(genome.edges[:, 1], device=device), minlength=genome.space.n_neurons)
        init_var = 1.0 / (3.0 * fan_in[torch.as_tensor(genome.edges[:, 1], device=device)].clamp(min=1))
        for pairs in net.plan.pairs_into[:-1]:  # the output level has no LayerNorm: its scale is its function
            if not pairs:
                continue
            idx = torch.cat([p.edges for p in pairs])
            power = edge[idx].square().mean()
            if power > 0:
                edge[idx] *= (init_var[idx].mean() / power).sqrt()
    net.set_weights(Weights(edge, w.norm_weight, w.norm_bias, w.bias))
    return net
