"""Train one standalone ``SparseNet`` with Lightning: ``GenomeModule`` and its LightningCLI."""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from torch import Tensor

from evolution import checkpoints, seeds
from evolution.device import cheap_cuda_probe
from evolution.genome import Genome
from evolution.network import SparseNet
from evolution.scoring import finite


def resolve_genome(genome: str, input_shape: tuple[int, ...] | None, num_classes: int | None,
                   levels: int | None = None, width: int | None = None) -> Genome:
    """A genome from a JSON file, JSON text or a spec (``mlp:64``, ``conv:8x3,mlp:64``) built for
    the data's shape; ``ValueError`` when the genome does not fit the data."""
    if genome.lstrip().startswith("{"):
        g = Genome.from_json(genome)
    elif genome.endswith(".json") or Path(genome).is_file():
        g = Genome.load(genome)
    else:
        if input_shape is None or num_classes is None:
            raise ValueError(f"genome spec {genome!r} needs the data's input_shape and num_classes")
        if levels is None and width is None:
            space = seeds.space_for_spec(genome, tuple(input_shape), num_classes)
        else:
            if (levels is not None and levels < 1) or (width is not None and width < 1):
                raise ValueError(f"levels {levels}, width {width}: expected at least 1 each (or unset: the spec's own)")
            auto = seeds.space_for_spec(genome, tuple(input_shape), num_classes)
            space = dataclasses.replace(auto, levels=levels or auto.levels, width=width or auto.width)  # keeps channels
        return seeds.build(genome, space)
    n_in = None if input_shape is None else math.prod(input_shape)
    if (n_in is not None and g.space.n_inputs != n_in) or (num_classes is not None and g.space.n_outputs != num_classes):
        raise ValueError(
            f"genome {genome if len(genome) < 200 else 'JSON'} has {g.space.n_inputs} inputs and {g.space.n_outputs} "
            f"outputs; the data has {n_in} inputs and {num_classes} classes"
        )
    return g


def cosine_to_zero(opt: torch.optim.Optimizer, trainer: pl.Trainer, per_epoch: bool) -> dict:
    """Lightning's optimizer config for a cosine from ``opt``'s rate to 0 at ``trainer``'s last epoch
    (``per_epoch``) or step. The length is read from the trainer at every step, so a fit resumed with
    a longer budget anneals to its new end (a restored ``CosineAnnealingLR`` keeps its old length and
    climbs back to the full rate after it)."""
    def total() -> float:
        n = trainer.max_epochs if per_epoch else trainer.estimated_stepping_batches
        if n is None or not math.isfinite(n) or n < 1:
            raise ValueError("scheduler cosine needs a finite trainer.max_epochs or trainer.max_steps")
        return float(n)

    total()  # fail in one line before training starts
    sched = _Cosine(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total()) / total())))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch" if per_epoch else "step"}}


class _Cosine(torch.optim.lr_scheduler.LambdaLR):
    def load_state_dict(self, state_dict: dict) -> None:
        # Lightning restores the optimizer first, at the rate it ended with; the first step of the
        # resumed fit takes the rate of its own position in the (possibly longer) schedule.
        state_dict.setdefault("lr_lambdas", [None] * len(self.lr_lambdas))  # a CosineAnnealingLR's, before
        super().load_state_dict(state_dict)
        for group, base, f in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base * f(self.last_epoch)


class GenomeModule(pl.LightningModule):
    """Trains the ``SparseNet`` of one genome on a classification DataModule.

    Args:
        genome: a genome JSON path (or JSON text) or a spec such as ``mlp:64`` or ``conv:8x3,mlp:64``.
        input_shape: the data's input shape (linked from the DataModule by the CLI).
        num_classes: the data's class count (linked from the DataModule by the CLI).
        levels: grid levels for a spec (default: as many as the spec has layers).
        width: grid width for a spec (default: the spec's widest layer).
        lr: learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9).
        scheduler: ``none`` or ``cosine`` (over the trainer's max_epochs).
        seed: seeds the weight initialization.
        kernel: ``auto``, ``dense`` or ``csr`` (see ``evolution.network.sparse_forward``).
    """

    def __init__(self, genome: str = "mlp:64", input_shape: tuple[int, ...] | None = None,
                 num_classes: int | None = None, levels: int | None = None, width: int | None = None,
                 lr: float = 3e-3, weight_decay: float = 0.0, optimizer: str = "adam", scheduler: str = "none",
                 seed: int = 0, kernel: str = "auto") -> None:
        super().__init__()
        if optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer {optimizer!r}: expected 'adam', 'adamw' or 'sgd'")
        if scheduler not in ("none", "cosine"):
            raise ValueError(f"scheduler {scheduler!r}: expected 'none' or 'cosine'")
        self.save_hyperparameters()
        self.genome = resolve_genome(genome, input_shape, num_classes, levels, width)
        self.net = SparseNet(self.genome, torch.Generator().manual_seed(seed), mode=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        if stage == "train":
            finite(loss, self.global_step)
        self.log(f"{stage}_loss", loss, prog_bar=stage != "test", batch_size=len(y),
                 on_step=False, on_epoch=True)
        if stage != "train":
            acc = (logits.argmax(1) == y).float().mean()
            self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=len(y), on_epoch=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        cheap_cuda_probe()  # Adam asks for CUDA at every step
        hp = self.hparams
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
            opt = cls(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "cosine" and self.trainer is not None:
            # Per epoch; a run bounded by max_steps alone (max_epochs -1) anneals over its steps.
            epochs = self.trainer.max_epochs
            return cosine_to_zero(opt, self.trainer, per_epoch=epochs is not None and epochs > 0)
        return opt

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The genome travels with its weights, so a checkpoint loads even if the JSON file moved.
        checkpoint["genome"] = self.genome.to_json()

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> "GenomeModule":
        """Load a checkpoint written by ``fit`` (its genome is stored inside)."""
        ckpt = checkpoints.read_checkpoint(path)
        if "genome" not in ckpt:
            raise ValueError(f"checkpoint {path} holds no genome: it was not written by python -m evolution train fit")
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True, genome=ckpt["genome"])


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved config beside the checkpoints and also logs it to W&B, when W&B logs."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.as_dict(), allow_val_change=True)


class DataShapeCLI(LightningCLI):
    """LightningCLI whose model learns the data's input shape and class count from the DataModule,
    whose ``fit`` keeps the best checkpoint by ``val_loss`` and the last one, and which logs with
    Lightning's ``CSVLogger`` (``metrics.csv`` under ``trainer.default_root_dir``) unless told otherwise.

    ``val_loss``, not ``val_acc``: on a small validation split accuracy saturates early (every
    example right), and the first epoch to reach it would be kept however the loss goes on falling.
    The logger is named because Lightning's own default turns into TensorBoard wherever
    ``tensorboard`` happens to be installed, and then no ``metrics.csv`` is written."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(checkpoints.BestAndLast, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val_loss", "checkpoint.mode": "min", "checkpoint.save_last": True,
                             "checkpoint.filename": "best-{epoch}-{val_loss:.4f}",
                             # save_dir '': trainer.default_root_dir (filled in before_instantiate_classes)
                             "trainer.logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                                "init_args": {"save_dir": ""}}})

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        logger = cfg.trainer.logger
        if getattr(logger, "class_path", None) == "lightning.pytorch.loggers.CSVLogger" and not logger.init_args.save_dir:
            logger.init_args.save_dir = cfg.trainer.default_root_dir or os.getcwd()

    def _parse_ckpt_path(self) -> None:
        # LightningCLI torch.loads the checkpoint while parsing (for its hyperparameters): a truncated
        # or missing file would end there in a traceback, so it is read here first.
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        self._ckpt = checkpoints.read_checkpoint(path, weights_only=True) if _local(path) else None
        if self._ckpt is not None:
            hp = self._ckpt.get("hyper_parameters") or {}
            known = inspect.signature(self.model_class.__init__).parameters
            foreign = sorted(k for k in hp if k not in known and not k.startswith("_"))
            if foreign:  # else: "does not accept option model.<key>", which does not say what is wrong
                raise ValueError(f"checkpoint {path} is not a {self.model_class.__name__} checkpoint: it was trained "
                                 f"with {', '.join(foreign[:3])}, which {self.model_class.__name__} does not take")
            self._check_flags(path, hp, known)
        super()._parse_ckpt_path()

    def _check_flags(self, path: str, hp: dict, known: dict) -> None:
        """LightningCLI replaces the model settings with the checkpoint's: one line when a setting the
        flags or config give (not left at its default) differs from the checkpoint's."""
        given = self.config[self.config.subcommand].get("model")
        if given is None or not hasattr(given, "get"):
            return
        for key, theirs in hp.items():
            if key in ("input_shape", "num_classes") or key not in known or key not in given:
                continue
            mine, default = _plain(given.get(key)), _plain(known[key].default)
            if mine != default and mine != _plain(theirs):
                raise ValueError(f"checkpoint {path} was trained with model.{key} {_plain(theirs)!r}, the flags give "
                                 f"{mine!r}: drop the flag to use the checkpoint's, or give a checkpoint trained with it")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        from lightning.pytorch.loggers import WandbLogger

        from evolution.tracking import effective_mode, require_key

        for logger in self.trainer.loggers:  # the W&B logger's key, checked before a step runs
            if isinstance(logger, WandbLogger):
                offline = getattr(logger, "_offline", False) and not os.environ.get("WANDB_MODE")
                require_key("offline" if offline else effective_mode())

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        try:
            return super().instantiate_trainer(**kwargs)
        except TypeError as err:
            # Lightning refuses some flag values with a TypeError its own code raises (--trainer.devices x
            # on a CPU): bad input, one line. Elsewhere, or a call with the wrong arguments (a callback's
            # signature: Python raises that in the caller's frame, Lightning's), it is a bug.
            import lightning

            if not _raised_in(err, Path(lightning.__file__).parent):
                raise
            raise ValueError(f"trainer: {err}") from None

    def _check_ckpt_path(self) -> None:
        # Lightning would fail deep in load_state_dict (or, for a hypernet trained on other data,
        # not at all): check the file against the model the config built first.
        if self._ckpt is not None:  # read by _parse_ckpt_path
            checkpoints.check_fits(self.model, self._ckpt, self.config[self.subcommand]["ckpt_path"])
            self._ckpt = None

    before_fit = before_validate = before_test = _check_ckpt_path


def _plain(value):
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def _raised_in(err: BaseException, package: Path) -> bool:
    """Whether a ``raise`` statement of code under ``package`` raised ``err`` (its traceback's last frame)."""
    import linecache

    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    path = tb.tb_frame.f_code.co_filename
    return Path(path).resolve().is_relative_to(package.resolve()) and \
        linecache.getline(path, tb.tb_lineno).lstrip().startswith("raise")


def _local(ckpt_path: str | None) -> bool:
    """A ``ckpt_path`` naming a local file (not Lightning's "best", "last", "hpc", "registry:..." or a URL)."""
    return bool(ckpt_path) and ckpt_path not in ("best", "last", "hpc") and not ckpt_path.startswith("registry") \
        and "://" not in ckpt_path


class GenomeCLI(DataShapeCLI):
    """``DataShapeCLI`` that reports ``test_acc`` of the best checkpoint after ``fit``."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--test_after_fit", type=bool, default=True, help="run test with the best checkpoint after fit")

    def after_fit(self) -> None:
        if self.config.fit.test_after_fit and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best", weights_only=True)


def main(args: list[str] | None = None) -> None:
    """``python -m evolution train {fit,validate,test} --config ...``"""
    GenomeCLI(GenomeModule, pl.LightningDataModule, subclass_mode_data=True, args=args,
              parser_kwargs={"exit_on_error": False}, save_config_callback=LoggerSaveConfigCallback,
              save_config_kwargs={"overwrite": True})
