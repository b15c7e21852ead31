"""Supernet and hypernet fits under Lightning DDP: two CPU processes (gloo)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

# Lightning's DDP launcher starts this same script again as rank 1; each rank saves what it holds.
SCRIPT = """
import sys, torch, lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from evolution.data import DigitsDataModule

kind, out = sys.argv[1], sys.argv[2]
pl.seed_everything(0)
data = DigitsDataModule(seed=0, batch_size=32)
data.setup()
if kind in ("supernet", "fewshot"):
    from oneshot.module import SupernetModule
    model = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, sampler="sandwich", seed=0,
                           few_shot=kind == "fewshot")
else:
    from hypernet.module import HypernetModule
    model = HypernetModule(data.input_shape, data.num_classes, levels=2, width=16, seed=0)
seen = []

class Record(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        seen.append(batch[1].tolist())

trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_steps=6, val_check_interval=3, logger=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=2, callbacks=[Record(), ModelCheckpoint(dirpath=out, save_last=True)])
trainer.fit(model, data)
torch.save({"state": model.state_dict(), "opt": trainer.optimizers[0].state_dict()["state"], "labels": seen, "metrics": {k: float(v) for k, v in
            trainer.callback_metrics.items()}}, f"{out}/rank{trainer.global_rank}.pt")
"""


def _fit(tmp_path: Path, kind: str) -> tuple[dict, dict]:
    script = tmp_path / "fit_ddp.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(script), kind, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (torch.load(tmp_path / "rank0.pt", weights_only=True), torch.load(tmp_path / "rank1.pt", weights_only=True))


def test_ddp_supernet_fit_keeps_ranks_identical_and_its_checkpoint_loads(tmp_path):
    r0, r1 = _fit(tmp_path, "supernet")
    # Every rank trains the same genomes on its own shard of each epoch: the batches differ, the banks
    # (and LazyAdam's rows, which follow the genomes) stay identical.
    assert r0["labels"] != r1["labels"] and len(r0["labels"]) == len(r1["labels"]) == 6
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["metrics"]["val_acc"] == r1["metrics"]["val_acc"]  # reduced across ranks
    from oneshot.module import SupernetModule

    fresh = SupernetModule((1, 8, 8), 10, levels=2, width=16, sampler="sandwich", seed=0).state_dict()
    assert not torch.equal(fresh["supernet.bank"], r0["state"]["supernet.bank"])  # the steps trained it
    for i, state in r0["opt"].items():  # LazyAdam's moments and steps, row by row
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(r1["opt"][i][k])), (i, k)
    # One checkpoint of the run (rank 0 writes): the last and the best of its two validations.
    assert (tmp_path / "last.ckpt").is_file() and len(list(tmp_path.glob("*.ckpt"))) == 2

    from evolution.data import DigitsDataModule
    from evolution.sampling import GenomeSampler
    from oneshot.estimator import SupernetEstimator

    data = DigitsDataModule(seed=0)
    data.setup()
    est = SupernetEstimator(data, str(tmp_path / "last.ckpt"))
    for k, v in est.supernet.state_dict().items():
        assert torch.equal(v, r0["state"][f"supernet.{k}"]), k
    g = GenomeSampler(est.module.space, "uniform", (0.1, 0.3), (0.5, 1.0), 0).sample(__import__("numpy").random.default_rng(0), 1)[0]
    assert 0.0 <= est.estimate([g])[0].score <= 1.0


def test_ddp_few_shot_supernet_fit_runs_with_banks_a_step_leaves_unused(tmp_path):
    r0, r1 = _fit(tmp_path, "fewshot")
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k


def test_ddp_hypernet_fit_keeps_ranks_identical(tmp_path):
    pytest.importorskip("torch_geometric")
    r0, r1 = _fit(tmp_path, "hypernet")
    assert r0["labels"] != r1["labels"]
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert (tmp_path / "last.ckpt").is_file()
