"""``HypernetEstimator``: scores genomes with the weights a trained hypernetwork predicts for them."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from evolution import checkpoints
from evolution.batched import concat, stack, stacked_accuracy
from evolution.device import resolve_device
from evolution.estimators import Estimate, Parent
from evolution.genome import Genome
from evolution.network import SparseNet, compile, sparse_forward
from evolution.readout import ridge_readout
from evolution.scoring import CHUNK, correct_counts, load_update_state, population_update, update_state
from hypernet.init import predicted_sparsenet
from hypernet.module import HypernetModule, hypernet_loss, predict


class HypernetEstimator:
    """Validation accuracy of each genome with predicted weights, ``batch`` genomes per GNN pass.

    With ``update_steps`` > 0 the hypernet keeps training between search iterations on genomes of
    the current population (population-guided, as ``SupernetEstimator`` does): a hypernet trained on
    random genomes spends its capacity on the whole grid; the search only needs it to tell apart the
    population and its children.

    Also an ``evolution.estimators.Initializer``: ``python -m evolution verify RUN --initializer
    hypernet.estimator.HypernetEstimator --initializer.init_args.checkpoint CKPT`` retrains from predictions.

    Args:
        data: the DataModule (linked by the search CLI); None when only used to initialize.
        checkpoint: a ``python -m hypernet fit`` checkpoint.
        batch: genomes predicted per pass.
        max_val: score on the first ``max_val`` validation examples only.
        update_steps: hypernet steps per search iteration on the population (0: frozen).
        genomes_per_step: population genomes per update step.
        batch_size: training examples per update step (plus the hypernet's ``readout`` support examples
            when it was trained through the readout: its updates then train through it too).
        lr: Adam learning rate of the updates; each update anneals it to zero (cosine), so the scores
            that follow do not favour the genomes drawn last (at a constant rate the ranking swung
            with the step count; docs/ranking.md).
        readout: before scoring, refit each genome's output level in closed form
            (``evolution.readout.ridge_readout``) on the first ``readout`` training examples (0: off).
            The predicted hidden features are kept; the score then says how good they are, not how
            well the hypernet matched the output weights to them.
        ridge: the readout's ridge penalty.
        device: where the hypernet runs (``auto``: a GPU when there is one).
        batched: run each batch's predicted networks in one pass (``evolution.batched``: same scores), and
            update steps likewise; ``None``: on a GPU only (on the CPU the per-genome kernel is as fast:
            benchmarks/results/throughput.md).
        seed: seeds the update draws.
    """

    def __init__(self, data=None, checkpoint: str = "", batch: int = 16, max_val: int | None = None,
                 update_steps: int = 0, genomes_per_step: int = 4, batch_size: int = 128, lr: float = 3e-3,
                 readout: int = 0, ridge: float = 1.0, device: str = "auto", batched: bool | None = None,
                 seed: int = 0) -> None:
        if batch < 1 or update_steps < 0 or genomes_per_step < 1 or batch_size < 1 or readout < 0 or ridge <= 0 \
                or lr <= 0:
            raise ValueError(f"batch {batch}, update_steps {update_steps}, genomes_per_step {genomes_per_step}, "
                             f"batch_size {batch_size}, readout {readout}, ridge {ridge}, lr {lr}: expected "
                             "update_steps, readout >= 0, ridge, lr > 0 and the others >= 1")
        if (update_steps or readout) and data is None:
            raise ValueError("HypernetEstimator(update_steps > 0 or readout > 0) needs data to train on")
        path = Path(checkpoint)
        if not checkpoint or not path.exists():
            raise FileNotFoundError(f"hypernet checkpoint {checkpoint!r} does not exist; train one with "
                                    "python -m hypernet fit --config configs/hypernet/digits.yaml")
        device = resolve_device(device)
        self.module = checkpoints.load_module(HypernetModule, path, "hypernet checkpoint", device).eval()
        self.path = path
        self.batch, self.device = batch, device
        self.batched = self.device.type == "cuda" if batched is None else batched
        self.update_steps, self.genomes_per_step, self.batch_size = update_steps, genomes_per_step, batch_size
        self.rng, self.lr, self.readout, self.ridge = np.random.default_rng(seed), lr, readout, ridge
        self.opt = torch.optim.Adam(self.module.model.parameters(), lr=lr) if update_steps else None
        self.val: tuple[Tensor, Tensor] | None = None
        if data is None:
            return
        self.check_data(data)
        x, y = data.tensors("val")
        if max_val:
            x, y = x[:max_val], y[:max_val]
        self.val = (x.to(self.device), y.to(self.device))
        if update_steps or readout:
            self.train = tuple(t.to(self.device) for t in data.tensors("train"))

    def check_data(self, data) -> None:
        """Raise one line when ``data`` is not the input shape and class count the hypernet was trained on
        (its GNN would predict weights for any genome, but they would mean nothing)."""
        checkpoints.check_data(self.module, data, "hypernet checkpoint", self.path)

    @torch.no_grad()
    def _scores(self, genomes: list[Genome]) -> list[float]:
        x, y = self.val
        # Predicted and compiled once per batch of genomes, not once per chunk of examples.
        weights = predict(self.module.model, genomes, self.device)
        plans = [compile(g).to(self.device) for g in genomes]
        if self.batched:
            fit = (self.train[0][:self.readout], self.train[1][:self.readout]) if self.readout else None
            return stacked_accuracy(stack(genomes).to(self.device), plans, concat(weights), x, y, fit, self.ridge,
                                    CHUNK).tolist()
        if self.readout:
            x_fit, y_fit = self.train[0][:self.readout], self.train[1][:self.readout]
            weights = [ridge_readout(p, w, x_fit, y_fit, self.ridge) for p, w in zip(plans, weights)]
        correct = correct_counts([partial(sparse_forward, p, w) for p, w in zip(plans, weights)], x, y)
        return (correct / len(y)).tolist()

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        """One Estimate per genome; ``seconds`` is its share of its batch's time."""
        if self.val is None:
            raise ValueError("HypernetEstimator was built without data; it can only initialize networks")
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

    def update(self, population: Sequence[Genome]) -> None:
        """Population-guided training: ``update_steps`` hypernet steps on genomes drawn from the population."""
        if not self.update_steps or not population:
            return
        model, hp = self.module.model.train(), self.module.hparams
        # A hypernet trained through the readout keeps training through it, on that many more examples.
        support = hp.get("readout", 0)
        scale = self.module.readout_scale.detach() if support else None  # not trained by the updates
        loss = partial(hypernet_loss, model, support=support, ridge=hp.get("ridge", 1.0), scale=scale, batched=self.batched)
        population_update(self.opt, self.lr, self.update_steps, self.rng, population, self.genomes_per_step,
                          self.train, self.batch_size + support, loss, "hypernet update")
        model.eval()

    def state_dict(self) -> dict:
        """What a search saves with its state, so a resumed search continues the same hypernet."""
        return update_state("hypernet", self.module.model, self.rng, self.opt)

    def load_state_dict(self, state: dict) -> None:
        load_update_state(state, "hypernet", self.module.model, self.rng, self.opt)

    def _alone(self, genome: Genome) -> Estimate:
        start = time.perf_counter()
        try:
            return Estimate(self._scores([genome])[0], time.perf_counter() - start)
        except Exception as err:  # a failed estimate is recorded, never crashes the search
            return Estimate(float("nan"), time.perf_counter() - start, f"{type(err).__name__}: {err}")

    def initialize(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` starting from the predicted weights (the predicted output
        level, not a readout refit)."""
        return predicted_sparsenet(self.module.model, genome)
