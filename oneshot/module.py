"""``SupernetModule``: trains the neuron supernet with Lightning on genomes drawn by a sampler."""
from __future__ import annotations

import numpy as np
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evolution.genome import Genome, SearchSpace
from evolution.batched import stack, stacked_forward
from evolution.readout import readout_loss
from evolution.sampling import GenomeSampler
from evolution.scoring import finite
from oneshot.optim import LazyAdam
from oneshot.supernet import FewShotSupernet, Supernet


def supernet_logits(supernet: Supernet | FewShotSupernet, genomes: list[Genome], x: Tensor,
                    batched: bool = False) -> list[Tensor] | Tensor:
    """Each genome's logits ``(B, n_outputs)`` on ``x``; ``batched``: all in one pass
    (``evolution.batched``, one gather from the bank), for a one-bank supernet."""
    if batched and isinstance(supernet, Supernet):
        return stacked_forward(stack(genomes), supernet.stacked_weights(genomes), x)
    return [supernet(g, x) for g in genomes]


def supernet_loss(supernet: Supernet | FewShotSupernet, genomes: list[Genome], x: Tensor, y: Tensor, distill: bool = False,
                  batched: bool = False) -> Tensor:
    """Mean cross-entropy of the genomes on one batch; with ``distill`` the first genome (the
    largest, under the sandwich sampler) also teaches the others its soft predictions (in-place
    distillation, Yu et al. 2020 BigNAS / Cai et al. 2020 OFA). ``batched``: the genomes in one pass."""
    losses, teacher = [], None
    for i, logits in enumerate(supernet_logits(supernet, genomes, x, batched)):
        loss = F.cross_entropy(logits, y)
        if distill and i == 0:
            teacher = logits.detach().softmax(1)
        elif teacher is not None:
            loss = 0.5 * loss + 0.5 * F.cross_entropy(logits, teacher)
        losses.append(loss)
    return torch.stack(losses).mean()


class SupernetModule(pl.LightningModule):
    """A weight-sharing neuron supernet over a ``levels`` x ``width`` grid of the data's shape.

    Args:
        input_shape: the data's input shape (linked from the DataModule by the CLI).
        num_classes: the data's class count (linked from the DataModule by the CLI).
        levels: hidden levels of the grid.
        width: slots per level.
        channels: lattice copies per level.
        sampler: ``uniform``, ``nested``, ``sandwich`` or ``fair`` (see ``evolution.sampling``).
        density: range of edge densities drawn (log-uniform).
        fill: range of the share of a level's slots that are present.
        skip: range of the factor (times the density) at which a genome also joins non-consecutive
            levels, as a search's added edges do (``uniform`` and ``fair`` samplers; default none).
        genomes_per_step: genomes sampled per training step; their losses are averaged.
        distill: in-place distillation from the first (largest, with ``sandwich``) genome.
        few_shot: one bank per depth (number of hidden levels) instead of one for all.
        lr: LazyAdam learning rate (only the entries a step used move).
        readout: the first ``readout`` examples of each batch fit every genome's output level by
            ridge regression, and the loss adds that readout's cross-entropy on the rest
            (``evolution.readout.readout_loss``), training the bank's hidden levels for the readout
            that scores them (``SupernetEstimator(readout=...)``); 0: off. Not with ``distill``.
        ridge: the readout's ridge penalty.
        batched: the step's genomes in one pass (``evolution.batched``): one gather, one GEMM per level
            pair for all of them, the same loss and gradients. ``None``: on a GPU only (on the CPU
            the per-genome kernel is as fast: benchmarks/results/throughput.md). One-bank supernets,
            without ``readout``.
        seed: seeds the bank and the sampler's stream.
    """

    def __init__(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, levels: int = 3,
                 width: int = 256, channels: int = 1, sampler: str = "uniform",
                 density: tuple[float, float] = (0.02, 0.3), fill: tuple[float, float] = (0.25, 1.0),
                 skip: tuple[float, float] = (0.0, 0.0),
                 genomes_per_step: int = 4, distill: bool = False, few_shot: bool = False, lr: float = 3e-3,
                 readout: int = 0, ridge: float = 1.0, batched: bool | None = None, seed: int = 0) -> None:
        super().__init__()
        if input_shape is None or num_classes is None:
            raise ValueError("SupernetModule needs the data's input_shape and num_classes")
        if genomes_per_step < 1:
            raise ValueError(f"genomes_per_step {genomes_per_step}: must be positive")
        if readout < 0 or ridge <= 0 or (readout and distill):
            raise ValueError(f"readout {readout}, ridge {ridge}, distill {distill}: expected readout >= 0, ridge > 0, "
                             "and not both readout and distill")
        self.save_hyperparameters()
        self.space = SearchSpace(tuple(input_shape), num_classes, levels, width, channels)
        bank = FewShotSupernet if few_shot else Supernet
        self.supernet = bank(self.space, torch.Generator().manual_seed(seed))
        self.sampler = GenomeSampler(self.space, sampler, tuple(density), tuple(fill), seed, tuple(skip))
        self.rng = np.random.default_rng(seed)
        # The readout's ridge logits lie near [0, 1]; cross-entropy needs them scaled (learned, as R2D2's).
        # Shape (1,), not a scalar: LazyAdam updates parameters by rows.
        self.readout_scale = nn.Parameter(torch.tensor([10.0])) if readout else None
        # The validation panel: the extremes and three genomes of the training distribution.
        draws = self.sampler.sample(np.random.default_rng(seed + 10_000), 5)
        self.panel = [self.sampler.largest(), self.sampler.smallest()] + (draws[2:] if sampler == "sandwich" else draws[:3])

    def forward(self, genome: Genome, x: Tensor) -> Tensor:
        return self.supernet(genome, x)

    @property
    def batched(self) -> bool:
        """Whether training steps run their genomes in one pass (``batched``; ``None``: on a GPU)."""
        on = self.hparams.get("batched")
        return self.device.type == "cuda" if on is None else bool(on)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        genomes = self.sampler.sample(self.rng, self.hparams.genomes_per_step)
        if self.hparams.readout:
            loss = torch.stack([readout_loss(self.supernet.plan_for(g), self.supernet.weights_for(g), x, y,
                                             self.hparams.readout, self.hparams.ridge, self.readout_scale)
                                for g in genomes]).mean()
        else:
            loss = supernet_loss(self.supernet, genomes, x, y, self.hparams.distill, self.batched)
        finite(loss, self.global_step, "supernet training")
        if self._trainer is not None and self.trainer.world_size > 1:
            # DDP reduces every parameter's gradient on every step: the ones this step's genomes left out
            # (another depth's bank, the norms of a genome without hidden neurons) join with zeros.
            loss = loss + 0.0 * sum(p.sum() for p in self.parameters())
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y), on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        accs, losses = [], []
        for i, g in enumerate(self.panel):
            logits = self.supernet(g, x)
            acc = (logits.argmax(1) == y).float().mean()
            accs.append(acc)
            losses.append(F.cross_entropy(logits, y))
            self.log(f"val_acc_panel{i}", acc, batch_size=len(y), sync_dist=True)
        self.log("val_acc", torch.stack(accs).mean(), prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_loss", torch.stack(losses).mean(), batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        return LazyAdam(list(self.parameters()), lr=self.hparams.lr, rows=self.supernet.touched_rows)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The sampler's stream continues where it stopped when a fit resumes.
        checkpoint["sampler_rng"] = self.rng.bit_generator.state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "sampler_rng" in checkpoint:
            self.rng.bit_generator.state = checkpoint["sampler_rng"]
