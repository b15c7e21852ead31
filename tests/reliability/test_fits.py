"""Fits that resume exactly: ``last.ckpt`` is the last epoch's state, written atomically, and a fit
stopped at any step and resumed from it ends where the uninterrupted fit ends."""
from pathlib import Path

import pytest
import torch

from hypernet.__main__ import main as hypernet_cli
from hypernet.module import HypernetModule
from oneshot.__main__ import main as oneshot_cli
from oneshot.module import SupernetModule

REPO = Path(__file__).resolve().parents[2]


class Killed(Exception):
    """Stands for a kill -9 in the middle of a training step."""


def _fit(cli, kind: str, out: Path, *extra: str) -> int:
    small = {"oneshot": ["--model.width", "16"],
             "hypernet": ["--model.width", "16", "--model.hidden", "16", "--model.layers", "1",
                          "--model.scheduler", "cosine", "--trainer.check_val_every_n_epoch", "1"]}[kind]
    return cli(["fit", "--config", str(REPO / f"configs/{kind}/digits.yaml"), "--trainer.default_root_dir", str(out),
                "--checkpoint.dirpath", str(out / "ckpt"), "--trainer.enable_progress_bar", "false",
                "--trainer.logger", "false", "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "5",
                "--trainer.limit_val_batches", "1", *small, *extra])


def _kill_at(monkeypatch, module, step: int) -> None:
    real = module.training_step

    def step_or_die(self, batch, batch_idx):
        if self.global_step == step:
            raise Killed(step)
        return real(self, batch, batch_idx)

    monkeypatch.setattr(module, "training_step", step_or_die)


@pytest.mark.parametrize("kind, cli, module", [("oneshot", oneshot_cli, SupernetModule),
                                               ("hypernet", hypernet_cli, HypernetModule)])
def test_a_fit_killed_at_any_step_resumes_to_the_uninterrupted_fit(tmp_path, monkeypatch, kind, cli, module):
    assert _fit(cli, kind, tmp_path / "whole") == 0
    whole = torch.load(tmp_path / "whole" / "ckpt" / "last.ckpt", weights_only=True)
    assert whole["epoch"] == 3 and whole["global_step"] == 20  # the last epoch's state, not the best's
    out = tmp_path / "killed"
    for step in (7, 13, 16):  # mid-epoch kills: each resumes from the last finished epoch
        with monkeypatch.context() as m:
            _kill_at(m, module, step)
            last = out / "ckpt" / "last.ckpt"
            with pytest.raises(Killed):
                _fit(cli, kind, out, *(["--ckpt_path", str(last)] if last.is_file() else []))
        assert torch.load(last, weights_only=True)["global_step"] == step // 5 * 5
    assert _fit(cli, kind, out, "--ckpt_path", str(out / "ckpt" / "last.ckpt")) == 0
    resumed = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 20
    for k, v in whole["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][k], v, atol=1e-6, rtol=0), k
    assert resumed["sampler_rng"] == whole["sampler_rng"]  # the same genome stream
    lr = [g["lr"] for g in whole["optimizer_states"][0]["param_groups"]]
    assert [g["lr"] for g in resumed["optimizer_states"][0]["param_groups"]] == lr  # the same schedule
    assert not list((out / "ckpt").glob("*.tmp"))


def test_the_best_checkpoint_is_kept_apart_from_the_last(tmp_path):
    # mode min on val_acc: the best is an early epoch, so Lightning's own last.ckpt would stay there
    assert _fit(oneshot_cli, "oneshot", tmp_path, "--checkpoint.monitor", "val_acc", "--checkpoint.mode", "min") == 0
    best = [p for p in (tmp_path / "ckpt").glob("best-*.ckpt")]
    assert len(best) == 1
    assert torch.load(best[0], weights_only=True)["global_step"] < 20
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 20
