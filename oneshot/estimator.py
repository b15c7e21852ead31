"""``SupernetEstimator``: scores genomes with the weights they inherit from a trained supernet."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from evolution.batched import stack, stacked_accuracy
from evolution.checkpoints import check_data, load_module
from evolution.device import resolve_device
from evolution.estimators import Estimate, Parent
from evolution.genome import Genome
from evolution.network import SparseNet, sparse_forward
from evolution.readout import ridge_readout
from evolution.scoring import accuracy, finite, load_update_state, population_update, update_state
from oneshot.optim import LazyAdam
from oneshot.module import SupernetModule, supernet_loss
from oneshot.supernet import Supernet

GENOMES_PER_PASS = 16  # genomes scored per batched pass (their activations: 16 x 4096 x width floats per level)


class SupernetEstimator:
    """Validation accuracy of each genome with inherited supernet weights, on cached tensors.

    With ``update_steps`` > 0 the supernet keeps training between search iterations on the current
    population (population-guided training, as CARS, Yang et al. 2020, does with layer-level
    supernets): children share most edges with their parents, so they are scored with weights
    trained on their lineage. ``finetune_steps`` > 0 trains a copy of each genome's inherited
    weights that many steps before scoring (slower, usually ranks better).

    Args:
        data: the DataModule (linked by the search CLI).
        checkpoint: a ``python -m oneshot fit`` checkpoint.
        update_steps: supernet steps per search iteration on the population (0: frozen bank).
        genomes_per_step: population genomes per update step.
        finetune_steps: per-genome fine-tuning steps before scoring.
        batch_size: training batch size for updates and fine-tuning.
        lr: learning rate of fine-tuning, and the peak of each update's cosine schedule.
        max_val: score on the first ``max_val`` validation examples only.
        readout: training examples of the closed-form output refit (0: off; not with fine-tuning).
        ridge: the readout's ridge penalty.
        device: where the supernet runs (``auto``: a GPU when there is one).
        batched: score ``GENOMES_PER_PASS`` genomes per pass and train update steps in one pass
            (``evolution.batched``: same scores); ``None``: on a GPU only (on the CPU the per-genome
            kernel is as fast: benchmarks/results/throughput.md). One-bank supernets, no fine-tuning.
        seed: seeds the update batches.
    """

    def __init__(self, data, checkpoint: str, update_steps: int = 0, genomes_per_step: int = 4,
                 finetune_steps: int = 0, batch_size: int = 128, lr: float = 3e-3, max_val: int | None = None,
                 readout: int = 0, ridge: float = 1.0, device: str = "auto", batched: bool | None = None,
                 seed: int = 0) -> None:
        if readout < 0 or ridge <= 0 or (readout and finetune_steps):
            raise ValueError(f"readout {readout}, ridge {ridge}, finetune_steps {finetune_steps}: expected readout >= 0, "
                             "ridge > 0, and no readout with fine-tuning")
        if update_steps < 0 or finetune_steps < 0 or genomes_per_step < 1 or batch_size < 1 or lr <= 0:
            raise ValueError(f"update_steps {update_steps}, finetune_steps {finetune_steps}, genomes_per_step "
                             f"{genomes_per_step}, batch_size {batch_size}, lr {lr}: expected steps >= 0, "
                             "genomes_per_step and batch_size >= 1, lr > 0")
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"supernet checkpoint {path} does not exist; train one with python -m oneshot fit")
        device = resolve_device(device)
        self.module = load_module(SupernetModule, path, "supernet checkpoint", device)
        self.path = path
        check_data(self.module, data, "supernet checkpoint", path)
        self.supernet = self.module.supernet.to(device)
        self.space = self.module.space
        self.data, self.device = data, device
        self.update_steps, self.genomes_per_step, self.finetune_steps = update_steps, genomes_per_step, finetune_steps
        self.batch_size, self.lr, self.max_val, self.readout, self.ridge = batch_size, lr, max_val, readout, ridge
        self.rng = np.random.default_rng(seed)
        one_bank = isinstance(self.supernet, Supernet) and not finetune_steps
        self.batched = one_bank and (self.device.type == "cuda" if batched is None else batched)
        self.opt = LazyAdam(list(self.supernet.parameters()), lr=lr, rows=self.supernet.touched_rows) if update_steps else None
        x, y = data.tensors("val")
        if max_val:
            x, y = x[:max_val], y[:max_val]
        self.val = (x.to(self.device), y.to(self.device))
        self.train = tuple(t.to(self.device) for t in data.tensors("train"))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(self.rng.choice(len(self.train[1]), self.batch_size, replace=False), device=self.device)
        return self.train[0][idx], self.train[1][idx]

    def _inherited(self, genome: Genome):
        """The genome's weights from the bank (refused where a few-shot bank never trained)."""
        self.supernet.check_trained(genome)
        return self.supernet.weights_for(genome)

    @torch.no_grad()
    def _score(self, genome: Genome) -> float:
        x, y = self.val
        plan, weights = self.supernet.plan_for(genome), self._inherited(genome)
        if self.readout:
            weights = ridge_readout(plan, weights, self.train[0][:self.readout], self.train[1][:self.readout], self.ridge)
        return accuracy(partial(sparse_forward, plan, weights), x, y)

    def _finetuned_score(self, genome: Genome) -> float:
        net = SparseNet(genome).to(self.device)
        with torch.no_grad():  # only the values: nothing for the supernet's optimizer to move
            net.set_weights(self._inherited(genome))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        for step in range(self.finetune_steps):
            x, y = self._batch()
            loss = finite(torch.nn.functional.cross_entropy(net(x), y), step, "fine-tuning")
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            net.eval()
            x, y = self.val
            return float((finite(net(x), None, "fine-tuning").argmax(1) == y).float().mean())

    @torch.no_grad()
    def _batched_scores(self, genomes: list[Genome]) -> list[float]:
        s = stack(genomes).to(self.device)
        fit = (self.train[0][:self.readout], self.train[1][:self.readout]) if self.readout else None
        plans = [self.supernet.plan_for(g) for g in genomes]
        return stacked_accuracy(s, plans, self.supernet.stacked_weights(genomes), *self.val, fit, self.ridge).tolist()

    def estimate(self, genomes: Sequence[Genome], parents: Sequence[Parent | None] | None = None) -> list[Estimate]:
        if not self.batched:
            return self._one_by_one(genomes)
        out: list[Estimate | None] = [None] * len(genomes)
        # Genomes of like depth and size share a pass: less padding to the widest of each level.
        order = sorted(range(len(genomes)), key=lambda i: (len(genomes[i].levels_present()), len(genomes[i].hidden)))
        for i in range(0, len(order), GENOMES_PER_PASS):
            idx = order[i:i + GENOMES_PER_PASS]
            chunk = [genomes[j] for j in idx]
            start = time.perf_counter()
            try:
                scores = self._batched_scores(chunk)
                seconds = (time.perf_counter() - start) / len(chunk)
                done = [Estimate(v, seconds) for v in scores]
            except Exception:  # one bad genome must not sink its pass: score them one by one
                done = self._one_by_one(chunk)
            for j, e in zip(idx, done):
                out[j] = e
        return out  # type: ignore[return-value]

    def _one_by_one(self, genomes: Sequence[Genome]) -> list[Estimate]:
        out = []
        for g in genomes:
            start = time.perf_counter()
            try:
                score = self._finetuned_score(g) if self.finetune_steps else self._score(g)
                out.append(Estimate(score, time.perf_counter() - start))
            except Exception as err:  # a failed candidate is recorded, never crashes the search
                out.append(Estimate(float("nan"), time.perf_counter() - start, f"{type(err).__name__}: {err}"))
        return out

    def update(self, population: Sequence[Genome]) -> None:
        """Population-guided training: ``update_steps`` steps on genomes drawn from the population."""
        if not self.update_steps or not population:
            return
        # Annealed within each update, so the scores that follow do not favour the genomes drawn last
        # (docs/ranking.md compares annealed and constant-rate updates).
        population_update(self.opt, self.lr, self.update_steps, self.rng, population, self.genomes_per_step,
                          self.train, self.batch_size, partial(supernet_loss, self.supernet, batched=self.batched), "supernet update")

    @torch.no_grad()
    def initialize(self, genome: Genome) -> SparseNet:
        """A standalone network of ``genome`` starting from the weights it inherits from the bank (its
        hidden levels brought to the init's scale, ``evolution.network.init_scaled``: same function,
        retrains at a fresh init's pace); its output level is the bank's, not a readout refit."""
        return SparseNet.starting_from(genome, self._inherited(genome))

    def state_dict(self) -> dict:
        """What a search saves with its state, so a resumed search continues the same supernet."""
        return update_state("supernet", self.supernet, self.rng, self.opt)

    def load_state_dict(self, state: dict) -> None:
        load_update_state(state, "supernet", self.supernet, self.rng, self.opt)
