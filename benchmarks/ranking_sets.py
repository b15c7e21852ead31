"""Ranking sets with ground truth, built once and shared by every estimator's ranking benchmark.

Two sets of genomes on the mnist-t10k grid (3 levels x 256 slots; 8,000 train / 2,000 validation,
seeded), each with its ground truth: standalone ``GenomeModule`` training (5 epochs, Adam 3e-3,
batch 128), validation accuracy, for 2 seeds (their mean is the truth; seed vs seed is the noise
ceiling; ``--seeds 4`` adds seeds 2 and 3, which ``ranking.py`` uses for a second, less noisy
opinion and for the agreement of two independent 2-seed truths, while its truth stays seeds 0, 1):
- **broad**: genomes from the random edge-law sampler, 0.5k-50k edges;
- **lineage**: genomes a real search estimated (``TrainEstimator``, 50 steps): parents and their
  mutated children, the genomes an estimator must tell apart during a search.

Written to ``benchmarks/results/ranking_sets.json.gz`` (genome JSON + truth per genome); rerunning
resumes where it stopped (every trained genome is saved at once).

    python -m benchmarks.ranking_sets [--data-root ../shared/data] [--broad 60] [--lineage 60] [--epochs 5] [--seeds 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from benchmarks import common
from evolution.data import IDXDataModule
from evolution.estimators import TrainEstimator
from evolution.genome import Genome, SearchSpace
from evolution.sampling import random_genome
from evolution.search import Search, SearchSettings
from evolution.train import GenomeModule

OUT = common.RANKING_SETS


def data_module(data_root: str | Path = common.DATA_ROOT) -> IDXDataModule:
    """mnist-t10k under ``data_root``, split as the sets' truth was trained (8,000 / 2,000, seed 0)."""
    return IDXDataModule(str(common.mnist_t10k(data_root)), seed=0, batch_size=128, val_fraction=0.2, test_fraction=0.0)


def grid(data: IDXDataModule) -> SearchSpace:
    return SearchSpace(data.input_shape, data.num_classes, levels=3, width=256)


def broad_set(space: SearchSpace, n: int, seed: int = 0) -> list[Genome]:
    """Random genomes with 0.5k-50k edges (density log-uniform, out-of-range draws rejected)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        g = random_genome(space, rng, density=float(np.exp(rng.uniform(np.log(0.003), np.log(0.3)))))
        if 500 <= g.n_edges <= 50_000:
            out.append(g)
    return out


class Recorder:
    """Wraps an estimator and keeps every genome it was asked about, with its parent's index."""

    def __init__(self, inner) -> None:
        self.inner, self.genomes = inner, []

    def estimate(self, genomes, parents=None):
        self.genomes += list(genomes)
        return self.inner.estimate(genomes, parents)


def lineage_set(space: SearchSpace, data: IDXDataModule, n: int, seed: int = 0) -> tuple[list[Genome], list[dict]]:
    """The last ``n`` genomes a real search estimated (its later iterations: parents' children)."""
    rec = Recorder(TrainEstimator(data, steps=50, max_val=1000, seed=seed))
    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(run_dir=tmp, seed=seed, iterations=12, population=12, children=8, levels=3,
                                  width=256, density=0.05, progress=False)
        search = Search(settings, data, rec)
        search.run()
        history = [json.loads(l) for l in (Path(tmp) / "history.jsonl").read_text().splitlines()]
    return rec.genomes[-n:], history[-n:]


def truth(genome: Genome, data: IDXDataModule, epochs: int, seed: int) -> tuple[float, float]:
    """Validation accuracy after standalone training, and seconds per epoch."""
    pl.seed_everything(seed, verbose=False)
    module = GenomeModule(genome.to_json(), data.input_shape, data.num_classes, lr=3e-3, seed=seed)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    seconds = (time.perf_counter() - start) / epochs
    x, y = data.tensors("val")
    module.eval()
    with torch.no_grad():
        acc = float((module(x).argmax(1) == y).float().mean())
    return acc, seconds


# The sets' file is read through benchmarks.common (one loader for every benchmark).
load, save, with_truth = common.load_ranking_sets, common.save_ranking_sets, common.with_truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broad", type=int, default=60)
    ap.add_argument("--lineage", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    common.add_data_root(ap)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = data_module(args.data_root)
    space = grid(data)
    doc = load() if OUT.exists() else {}
    if "broad" not in doc:
        doc["broad"] = [{"genome": g.to_dict()} for g in broad_set(space, args.broad)]
        save(doc)
    if "lineage" not in doc:
        genomes, history = lineage_set(space, data, args.lineage)
        doc["lineage"] = [{"genome": g.to_dict(), "search": h} for g, h in zip(genomes, history)]
        save(doc)
    doc.update({"epochs": args.epochs, "seeds": args.seeds, "lr": 3e-3, "batch_size": 128,
                "split": "mnist-t10k, seed 0: 8,000 train / 2,000 validation", "grid": space.to_dict()})
    total = sum(len(doc[k]) for k in ("broad", "lineage"))
    done = 0
    for name in ("broad", "lineage"):
        for entry in doc[name]:
            accs = entry.setdefault("acc", [])
            secs = entry.setdefault("epoch_seconds", [])
            for seed in range(len(accs), args.seeds):
                a, s = truth(Genome.from_dict(entry["genome"]), data, args.epochs, seed)
                accs.append(a)
                secs.append(s)
                save(doc)
            done += 1
            g = entry["genome"]
            print(f"[{done}/{total}] {name}: {len(g['edges'])} edges, acc {np.mean(accs):.4f} "
                  f"(seeds {', '.join(f'{a:.4f}' for a in accs)}), {np.mean(secs):.2f} s/epoch", flush=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
