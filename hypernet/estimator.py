"""``HypernetEstimator``: scores genomes with the weights a trained hypernetwork predicts for them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch

from evolution.estimators import Estimate, Parent
from evolution.genome import Genome
from evolution.network import SparseNet
from hypernet.module import HypernetModule, hypernet_logits


class HypernetEstimator:
    """Validation accuracy of each genome with predicted weights, ``batch`` genomes per GNN pass.

    Also an ``evolution.estimators.Initializer``: ``python -m evolution verify RUN --initializer
    hypernet.estimator.HypernetEstimator --initializer.init_args.checkpoint CKPT`` retrains from predictions.

    Args:
        data: the DataModule (linked by the search CLI); None when only used to initialise.
        checkpoint: a ``python -m hypernet fit`` checkpoint.
        batch: genomes predicted per pass.
        max_val: score on the first ``max_val`` validation examples only.
        device: where the hypernet runs.
    """

    def __init__(self, data=None, checkpoint: str = "", batch: int = 16, max_val: int | None = None,
                 device: str = "cpu") -> None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"hypernet checkpoint {path} does not exist; train one with python -m hypernet fit")
        self.module = HypernetModule.load_from_checkpoint(path, map_location=device, weights_only=False).eval()
        hp = self.module.hparams
        self.batch, self.device = batch, torch.device(device)
        if data is None:
            return
        if tuple(hp.input_shape) != tuple(data.input_shape) or hp.num_classes != data.num_classes:
            raise ValueError(f"hypernet checkpoint {path} was trained on input shape {tuple(hp.input_shape)} with "
                             f"{hp.num_classes} classes; the data has {tuple(data.input_shape)} and {data.num_classes}")
        x, y = data.tensors("val")
        if max_val:
            x, y = x[:max_val], y[:max_val]
        self.val = (x.to(self.device), y.to(self.device))

    @torch.no_grad()
    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        out: list[Estimate] = []
        x, y = self.val
        for i in range(0, len(genomes), self.batch):
            chunk = list(genomes[i:i + self.batch])
            start = time.perf_counter()
            try:
                scores = [float((z.argmax(1) == y).float().mean()) for z in hypernet_logits(self.module.model, chunk, x)]
                err = None
            except Exception as e:  # a failed batch is recorded per genome, never crashes the search
                scores, err = [float("nan")] * len(chunk), f"{type(e).__name__}: {e}"
            seconds = (time.perf_counter() - start) / len(chunk)
            out += [Estimate(s, seconds, err) for s in scores]
        return out

    @torch.no_grad()
    def initialise(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` starting from the predicted weights."""
        from hypernet.graph import to_batch

        net = SparseNet(genome)
        net.set_weights(self.module.model(to_batch([genome]))[0])
        return net
