"""Dense parity: ``mlp:256`` through GenomeModule vs a plain ``nn.Sequential`` MLP with LayerNorm.

Both train on mnist-t10k (8,000 train / 2,000 test, seeded split) with the same Lightning Trainer,
optimizer (Adam 3e-3), epochs and batches, for several seeds; prints both test accuracies and both
median epoch times, and writes ``benchmarks/results/dense_parity.json``.

    python -m benchmarks.dense_parity [--epochs 5] [--seeds 5] [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common
from evolution.data import IDXDataModule
from evolution.train import GenomeModule



class TorchMLP(pl.LightningModule):
    """The reference: Linear(784, 256) + LayerNorm + ReLU + Linear(256, 10), trained like GenomeModule."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(784, 256), nn.LayerNorm(256), nn.ReLU(), nn.Linear(256, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        # Logged as GenomeModule logs it, so the epoch times compare the networks, not the logging.
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y), on_step=False, on_epoch=True)
        return loss

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean(), batch_size=len(y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append(time.perf_counter() - self.start)


def train(module: pl.LightningModule, data: IDXDataModule, epochs: int) -> tuple[float, float]:
    """Test accuracy and the median epoch time (first epoch excluded: warm-up)."""
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    acc = trainer.test(module, datamodule=data, verbose=False)[0]["test_acc"]
    return acc, float(np.median(timer.times[1:] if len(timer.times) > 1 else timer.times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=5)
    common.add_data_root(ap)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    rows = []
    for seed in range(args.seeds):
        pl.seed_everything(seed, verbose=False)
        data = IDXDataModule(str(common.mnist_t10k(args.data_root)), seed=0, batch_size=128, val_fraction=0.0, test_fraction=0.2)
        g_acc, g_time = train(GenomeModule("mlp:256", data.input_shape, data.num_classes, lr=args.lr, seed=seed), data, args.epochs)
        pl.seed_everything(seed, verbose=False)
        data = IDXDataModule(str(common.mnist_t10k(args.data_root)), seed=0, batch_size=128, val_fraction=0.0, test_fraction=0.2)
        t_acc, t_time = train(TorchMLP(args.lr), data, args.epochs)
        rows.append({"seed": seed, "genome_acc": g_acc, "torch_acc": t_acc, "genome_epoch_s": g_time, "torch_epoch_s": t_time})
        print(f"seed {seed}: genome {g_acc:.4f} ({g_time:.3f} s/epoch)  torch {t_acc:.4f} ({t_time:.3f} s/epoch)")
    n_train = len(data.tensors("train")[1])
    n_test = len(data.tensors("test")[1])
    result = {
        "genome_acc": float(np.mean([r["genome_acc"] for r in rows])),
        "torch_acc": float(np.mean([r["torch_acc"] for r in rows])),
        "genome_epoch_s": float(np.median([r["genome_epoch_s"] for r in rows])),
        "torch_epoch_s": float(np.median([r["torch_epoch_s"] for r in rows])),
    }
    result["acc_gap_pp"] = 100 * (result["genome_acc"] - result["torch_acc"])
    result["epoch_time_ratio"] = result["genome_epoch_s"] / result["torch_epoch_s"]
    print(f"mlp:256 on mnist-t10k ({n_train} train / {n_test} test), {args.epochs} epochs, mean of {args.seeds} seeds")
    print(f"{'':>10} {'test acc':>9} {'s/epoch':>8}")
    print(f"{'genome':>10} {result['genome_acc']:>9.4f} {result['genome_epoch_s']:>8.3f}")
    print(f"{'torch':>10} {result['torch_acc']:>9.4f} {result['torch_epoch_s']:>8.3f}")
    print(f"gap {result['acc_gap_pp']:+.2f} pp (target within 1), epoch time ratio {result['epoch_time_ratio']:.2f} (target <= 1.3)")
    out = common.write_results("dense_parity", {**result, "epochs": args.epochs, "seeds": args.seeds, "n_train": n_train,
                                                "n_test": n_test, "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
