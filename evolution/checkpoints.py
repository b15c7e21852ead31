"""Reading saved files (Lightning checkpoints, a search's state) with one-line errors that name the file.

``torch.load`` of a truncated file, or ``load_state_dict`` of another model's weights, ends in a long
traceback about zip archives or size mismatches; a user needs to know which file is wrong and why.
Every file loads with ``weights_only=True`` (tensors, numbers, strings and plain containers), so a
crafted file cannot run code; what neuronas saves is made of those alone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar
from weakref import proxy

import torch
from torch import nn

M = TypeVar("M")


UNSAFE = "Weights only load failed"  # torch's words for a file it cannot load safely


def unsafe(err: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a global (an object other than plain data),
    not a damaged file."""
    return UNSAFE in str(err) and "global" in str(err).lower()


def unsafe_message(what: str, path: str | Path) -> str:
    return (f"{what} {path} holds Python objects other than tensors, numbers, strings and plain containers, and "
            "loading it could run code, so it is not loaded; if you trust it (an older neuronas wrote it), convert it: "
            f"python -m evolution convert {path}")


def read(path: str | Path, what: str = "checkpoint", weights_only: bool = True) -> Any:
    """``torch.load`` of ``path`` onto the CPU with ``weights_only`` (tensors and plain containers
    only); a missing, unreadable, truncated or unsafe file is one line naming it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # zip, pickle and EOF errors all mean the same thing to the user
        if unsafe(err):
            raise ValueError(unsafe_message(what, path)) from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "truncated, or not written by torch.save?" if not weights_only else \
            "truncated, not written by torch.save, or holding objects other than tensors?"
        raise ValueError(f"{what} {path} cannot be read ({hint}): {reason[:200]}") from None


def read_checkpoint(path: str | Path, what: str = "checkpoint", weights_only: bool = True) -> dict:
    """A Lightning checkpoint's dict (``state_dict``, ``hyper_parameters``, ...), on the CPU."""
    ckpt = read(path, what, weights_only)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{what} {path} is not a Lightning checkpoint (it has no state_dict)")
    return ckpt


def check_fits(module: nn.Module, ckpt: dict, path: str | Path) -> None:
    """Raise one line naming the first difference between ``module`` and the checkpoint: the data shape
    it was trained on, then weights missing, unexpected or of another shape."""
    name = type(module).__name__
    theirs_hp, mine_hp = ckpt.get("hyper_parameters") or {}, getattr(module, "hparams", {})
    for key in ("input_shape", "num_classes"):
        if key in theirs_hp and key in mine_hp and _plain(theirs_hp[key]) != _plain(mine_hp[key]):
            raise ValueError(f"checkpoint {path} was trained with {key} {_plain(theirs_hp[key])}; this {name} has "
                             f"{_plain(mine_hp[key])} (another dataset?)")
    mine, theirs = module.state_dict(), ckpt["state_dict"]
    missing, extra = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
    if missing or extra:
        parts = ([f"{len(missing)} weights missing (e.g. {missing[0]})"] if missing else []) + \
                ([f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else [])
        raise ValueError(f"checkpoint {path} does not fit {name}: {', '.join(parts)}; was it written by another command?")
    for key, value in mine.items():
        if tuple(theirs[key].shape) != tuple(value.shape):
            raise ValueError(f"checkpoint {path} does not fit {name}: {key} has shape {tuple(theirs[key].shape)}, "
                             f"this model {tuple(value.shape)} (trained with another config?)")


def check_data(module: nn.Module, data, what: str, path: str | Path) -> None:
    """One line when ``data`` is not the input shape and class count ``module`` was trained on."""
    hp = module.hparams
    if tuple(hp.input_shape) != tuple(data.input_shape) or hp.num_classes != data.num_classes:
        raise ValueError(f"{what} {path} was trained on input shape {tuple(hp.input_shape)} with {hp.num_classes} "
                         f"classes; the data has {tuple(data.input_shape)} and {data.num_classes}")


def load_module(cls: type[M], path: str | Path, what: str, map_location: str | torch.device = "cpu") -> M:
    """``cls.load_from_checkpoint(path)`` for an estimator: a checkpoint of another kind (a hypernet's
    given to the supernet) or a damaged one fails with one line naming the file. The module is built
    from the checkpoint's own hyperparameters and loads its weights strictly, so nothing else can differ."""
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:
        read_checkpoint(path, what)  # a missing, directory, unreadable or non-Lightning file says so itself
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{what} {path} is not a {cls.__name__} checkpoint: {reason[:200]}") from None
    try:
        return module.to(map_location)
    except (RuntimeError, AssertionError) as err:  # "cpux", or CUDA on a machine without it
        raise ValueError(f"device {str(map_location)!r}: {str(err).splitlines()[0]}") from None


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _checkpoint_callback():
    from lightning.pytorch.callbacks import ModelCheckpoint

    class BestAndLast(ModelCheckpoint):
        """``ModelCheckpoint`` whose ``last.ckpt`` is the state at the end of every epoch (Lightning's
        follows the best), apart from the best; every file written atomically (a kill leaves the old
        file or the new one), so a fit killed at any moment resumes from its last finished epoch."""

        def _save_checkpoint(self, trainer, filepath: str) -> None:
            tmp = f"{filepath}.{os.getpid()}.tmp"
            trainer.save_checkpoint(tmp, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(tmp, filepath)
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = filepath
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(proxy(self))

        def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
            if getattr(self, "_saving_last", False):
                super()._save_last_checkpoint(trainer, monitor_candidates)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            super().on_train_epoch_end(trainer, pl_module)  # the best, when it is saved on train epoch end
            if self.save_last and not trainer.sanity_checking:
                self._saving_last = True
                try:
                    super()._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
                finally:
                    self._saving_last = False

    return BestAndLast


def __getattr__(name: str):
    # Lightning imports in seconds: the callback class is built when first asked for.
    if name == "BestAndLast":
        return _checkpoint_callback()
    raise AttributeError(name)
