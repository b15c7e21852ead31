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

    python benchmarks/ranking_sets.py [--broad 60] [--lineage 60] [--epochs 5] [--seeds 2]
"""
from __future__ import annotations

import argparse
import base64
import gzip
import json
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from evolution.data import IDXDataModule
from evolution.estimators import TrainEstimator
from evolution.genome import Genome, SearchSpace
from evolution.sampling import random_genome
from evolution.search import Search, SearchSettings
from evolution.train import GenomeModule

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k"
OUT = Path(__file__).parent / "results" / "ranking_sets.json.gz"


def data_module(root: str | Path = ROOT) -> IDXDataModule:
    return IDXDataModule(str(root), seed=0, batch_size=128, val_fraction=0.2, test_fraction=0.0)


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


def _pack(genome: dict) -> dict:
    """Edges as row-to-row differences in int16, base64: a third of the gzipped JSON lists' size."""
    if "edges" not in genome:
        return genome
    e = np.asarray(genome["edges"], dtype=np.int64).reshape(-1, 2)
    delta = np.diff(e, axis=0, prepend=np.zeros((1, 2), dtype=np.int64)).astype(np.int16)
    return {**{k: v for k, v in genome.items() if k != "edges"}, "edges_delta_int16": base64.b64encode(delta.tobytes()).decode()}


def _unpack(genome: dict) -> dict:
    if "edges_delta_int16" not in genome:
        return genome
    delta = np.frombuffer(base64.b64decode(genome["edges_delta_int16"]), dtype=np.int16).reshape(-1, 2)
    edges = np.cumsum(delta.astype(np.int64), axis=0)
    return {**{k: v for k, v in genome.items() if k != "edges_delta_int16"}, "edges": edges.tolist()}


def load() -> dict:
    """The saved sets: ``{"broad": [...], "lineage": [...], ...}``, each entry with genome and truth."""
    if not OUT.exists():
        raise FileNotFoundError(f"{OUT} does not exist; build it with python benchmarks/ranking_sets.py")
    doc = json.loads(gzip.decompress(OUT.read_bytes()))
    for name in ("broad", "lineage"):
        for entry in doc.get(name, []):
            entry["genome"] = _unpack(entry["genome"])
    return doc


def with_truth(doc: dict, name: str) -> list[dict]:
    """The entries of set ``name`` whose ground truth has both seeds (a set being built has fewer)."""
    return [e for e in doc.get(name, []) if len(e.get("acc", [])) >= 2]


def save(doc: dict) -> None:
    packed = {**doc, **{name: [{**e, "genome": _pack(e["genome"])} for e in doc[name]]
                        for name in ("broad", "lineage") if name in doc}}
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_bytes(gzip.compress(json.dumps(packed, separators=(",", ":")).encode(), 9))
    tmp.replace(OUT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broad", type=int, default=60)
    ap.add_argument("--lineage", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = data_module()
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
