"""``HypernetModule``: trains the graph hypernetwork with Lightning on genomes drawn by a sampler."""
from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evolution.batched import concat, levels_readout_loss, stack, stacked_levels
from evolution.device import cheap_cuda_probe
from evolution.scoring import finite
from evolution.train import cosine_to_zero
from evolution.genome import Genome, SearchSpace
from evolution.network import Weights, compile, sparse_forward, tied
from evolution.readout import readout_loss
from evolution.sampling import GenomeSampler
from hypernet.graph import to_batch
from hypernet.model import HyperNet


def predict(model: HyperNet, genomes: list[Genome], device: torch.device | str) -> list[Weights]:
    """The weights ``model`` predicts for each genome, in one batched pass of the GNN; a tie group's
    edges at the mean of their predictions, as the network ``SparseNet`` builds from them has."""
    return [tied(g, w) for g, w in zip(genomes, model(to_batch(genomes).to(device)))]


def predicted_logits(model: HyperNet, genomes: list[Genome], x: Tensor) -> list[Tensor]:
    """Logits ``(B, n_outputs)`` of each genome on ``x`` ``(B, n_inputs)`` with the weights the
    hypernet predicts for it."""
    return [sparse_forward(compile(g).to(x.device), w, x) for g, w in zip(genomes, predict(model, genomes, x.device))]


def hypernet_loss(model: HyperNet, genomes: list[Genome], x: Tensor, y: Tensor, support: int = 0, ridge: float = 1.0,
                  scale: Tensor | None = None, batched: bool = False) -> Tensor:
    """Mean cross-entropy of the genomes on one batch, with the weights ``model`` predicts for them;
    with ``support`` > 0 the mean ``evolution.readout.readout_loss`` instead (output levels refitted on
    the first ``support`` examples, logits of the refit times ``scale``). ``batched``: the genomes'
    networks in one pass (``evolution.batched``), same loss and gradients."""
    if batched:
        s = stack(genomes).to(x.device)
        acts = stacked_levels(s, concat(predict(model, genomes, x.device)), x)
        if not support:
            return F.cross_entropy(acts[-1].flatten(0, 1), y.repeat(len(genomes)))
        return torch.stack([levels_readout_loss(compile(g).to(x.device), acts, s, i, y, support, ridge, scale)
                            for i, g in enumerate(genomes)]).mean()
    if not support:
        return torch.stack([F.cross_entropy(z, y) for z in predicted_logits(model, genomes, x)]).mean()
    return torch.stack([readout_loss(compile(g).to(x.device), w, x, y, support, ridge, scale)
                        for g, w in zip(genomes, predict(model, genomes, x.device))]).mean()


class HypernetModule(pl.LightningModule):
    """A graph hypernetwork trained on genomes of a ``levels`` x ``width`` grid of the data's shape.

    Each step draws ``genomes_per_step`` genomes, predicts all their weights, and backpropagates the
    mean cross-entropy of their ``sparse_forward`` into the hypernet (SMASH, Brock et al. 2018; GHN,
    Zhang et al. 2019). Validation scores a fixed panel: the sampler's largest and smallest genomes
    and three draws of a fixed seed.

    Args:
        input_shape: the data's input shape (linked from the DataModule by the CLI).
        num_classes: the data's class count (linked from the DataModule by the CLI).
        levels: hidden levels of the training grid.
        width: slots per level.
        channels: lattice copies per level.
        sampler: ``uniform``, ``nested``, ``sandwich`` or ``fair`` (see ``evolution.sampling``).
        density: range of edge densities drawn (log-uniform).
        fill: range of the share of a level's slots that are present.
        skip: range of the factor (times the density) at which a genome also joins non-consecutive
            levels, as a search's added edges do (``uniform`` and ``fair`` samplers; default none).
        genomes_per_step: genomes per training step (predicted in one batched pass).
        hidden: width of the GNN's node states.
        layers: message-passing layers.
        bands: Fourier bands of the node positions.
        lr: Adam learning rate (3e-3 collapsed to constant logits on digits; 1e-3 learns).
        scheduler: ``none`` or ``cosine`` (per step, to zero at the trainer's last step).
        readout: the first ``readout`` examples of each batch fit every genome's output level by
            ridge regression, and the loss adds that readout's cross-entropy on the rest
            (``evolution.readout.readout_loss``): the hidden features train for the readout that scores
            them (``HypernetEstimator(readout=...)``);
            0: off. The batch size should exceed it (a shorter batch fits on half of its examples).
        ridge: the readout's ridge penalty.
        batched: the step's predicted networks in one pass (``evolution.batched``), same loss and
            gradients; ``None``: on a GPU only (on the CPU the per-genome kernel is as fast:
            benchmarks/results/throughput.md).
        seed: seeds the hypernet's init and the sampler's stream.
    """

    def __init__(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, levels: int = 3,
                 width: int = 256, channels: int = 1, sampler: str = "uniform",
                 density: tuple[float, float] = (0.02, 0.3), fill: tuple[float, float] = (0.25, 1.0),
                 skip: tuple[float, float] = (0.0, 0.0),
                 genomes_per_step: int = 4, hidden: int = 64, layers: int = 3, bands: int = 4, lr: float = 1e-3,
                 scheduler: str = "none", readout: int = 0, ridge: float = 1.0, batched: bool | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if input_shape is None or num_classes is None:
            raise ValueError("HypernetModule needs the data's input_shape and num_classes")
        if genomes_per_step < 1 or hidden < 1 or layers < 0 or bands < 0:
            raise ValueError(f"genomes_per_step {genomes_per_step}, hidden {hidden}, layers {layers}, bands {bands}: "
                             "expected genomes_per_step, hidden >= 1 and layers, bands >= 0")
        if readout < 0 or ridge <= 0:
            raise ValueError(f"readout {readout}, ridge {ridge}: expected readout >= 0 and ridge > 0")
        if scheduler not in ("none", "cosine"):
            raise ValueError(f"scheduler {scheduler!r}: expected 'none' or 'cosine'")
        self.save_hyperparameters()
        self.space = SearchSpace(tuple(input_shape), num_classes, levels, width, channels)
        # PyG layers take no generator: seed the init in a forked RNG, leaving the global one alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = HyperNet(hidden, layers, bands)
        # The readout's ridge logits lie near [0, 1]; cross-entropy needs them scaled (learned, as R2D2's).
        self.readout_scale = torch.nn.Parameter(torch.tensor(10.0)) if readout else None
        self.sampler = GenomeSampler(self.space, sampler, tuple(density), tuple(fill), seed, tuple(skip))
        self.rng = np.random.default_rng(seed)
        draws = self.sampler.sample(np.random.default_rng(seed + 10_000), 5)
        # (sandwich draws start with the extremes, already in the panel)
        self.panel = [self.sampler.largest(), self.sampler.smallest()] + (draws[2:] if sampler == "sandwich" else draws[:3])

    def forward(self, genomes: list[Genome], x: Tensor) -> list[Tensor]:
        return predicted_logits(self.model, genomes, x)

    @property
    def batched(self) -> bool:
        """Whether training steps run their genomes in one pass (``batched``; ``None``: on a GPU)."""
        on = self.hparams.get("batched")
        return self.device.type == "cuda" if on is None else bool(on)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        genomes = self.sampler.sample(self.rng, self.hparams.genomes_per_step)
        loss = hypernet_loss(self.model, genomes, x, y, self.hparams.readout, self.hparams.ridge, self.readout_scale,
                             self.batched)
        finite(loss, self.global_step, "hypernet training")
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y), on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(self.panel, x)
        accs = torch.stack([(z.argmax(1) == y).float().mean() for z in logits])
        for i, acc in enumerate(accs):
            self.log(f"val_acc_panel{i}", acc, batch_size=len(y), sync_dist=True)
        self.log("val_acc", accs.mean(), prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_loss", torch.stack([F.cross_entropy(z, y) for z in logits]).mean(), batch_size=len(y), sync_dist=True)

    def configure_optimizers(self):
        cheap_cuda_probe()  # Adam asks for CUDA at every step
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        if self.hparams.scheduler == "none":
            return opt
        return cosine_to_zero(opt, self.trainer, per_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The sampler's stream continues where it stopped when a fit resumes.
        checkpoint["sampler_rng"] = self.rng.bit_generator.state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "sampler_rng" in checkpoint:
            self.rng.bit_generator.state = checkpoint["sampler_rng"]
