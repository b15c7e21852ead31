"""``HypernetEstimator``: scores genomes with the weights a trained hypernetwork predicts for them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from evolution.estimators import Estimate, Parent
from evolution.genome import Genome
from evolution.network import SparseNet
from hypernet.init import predicted_sparsenet
from hypernet.module import HypernetModule, predicted_logits

CHUNK = 4096  # validation examples per forward, so large splits stay within memory


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
        if batch < 1:
            raise ValueError(f"batch {batch}: must be positive")
        path = Path(checkpoint)
        if not checkpoint or not path.is_file():
            raise FileNotFoundError(f"hypernet checkpoint {checkpoint!r} does not exist; train one with "
                                    "python -m hypernet fit --config configs/hypernet/digits.yaml")
        self.module = HypernetModule.load_from_checkpoint(path, map_location=device, weights_only=False).eval()
        self.batch, self.device = batch, torch.device(device)
        self.val: tuple[Tensor, Tensor] | None = None
        if data is None:
            return
        hp = self.module.hparams
        if tuple(hp.input_shape) != tuple(data.input_shape) or hp.num_classes != data.num_classes:
            raise ValueError(f"hypernet checkpoint {path} was trained on input shape {tuple(hp.input_shape)} with "
                             f"{hp.num_classes} classes; the data has {tuple(data.input_shape)} and {data.num_classes}")
        x, y = data.tensors("val")
        if max_val:
            x, y = x[:max_val], y[:max_val]
        self.val = (x.to(self.device), y.to(self.device))

    @torch.no_grad()
    def _scores(self, genomes: list[Genome]) -> list[float]:
        x, y = self.val
        correct = torch.zeros(len(genomes), device=self.device)
        for i in range(0, len(y), CHUNK):
            logits = predicted_logits(self.module.model, genomes, x[i:i + CHUNK])
            correct += torch.stack([(z.argmax(1) == y[i:i + CHUNK]).sum() for z in logits])
        return (correct / len(y)).tolist()

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        """One Estimate per genome; ``seconds`` is its share of its batch's time."""
        if self.val is None:
            raise ValueError("HypernetEstimator was built without data; it can only initialise networks")
        out: list[Estimate] = []
        for i in range(0, len(genomes), self.batch):
            chunk = list(genomes[i:i + self.batch])
            start = time.perf_counter()
            try:
                scores = self._scores(chunk)
            except Exception:  # one bad genome must not sink its batch: retry them one by one
                out += [self._alone(g) for g in chunk]
                continue
            seconds = (time.perf_counter() - start) / len(chunk)
            out += [Estimate(s, seconds) for s in scores]
        return out

    def _alone(self, genome: Genome) -> Estimate:
        start = time.perf_counter()
        try:
            return Estimate(self._scores([genome])[0], time.perf_counter() - start)
        except Exception as err:  # a failed estimate is recorded, never crashes the search
            return Estimate(float("nan"), time.perf_counter() - start, f"{type(err).__name__}: {err}")

    def initialise(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` starting from the predicted weights."""
        return predicted_sparsenet(self.module.model, genome)
