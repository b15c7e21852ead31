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
# The iso-cost set lives in its own file (built by ``--iso``), so the two sets' files change apart.
OUT_ISO = common.RANKING_SETS_ISO  # the iso-cost set, built by --iso, in its own file
ISO_LEVELS = (2_000, 20_000, 100_000)  # FLOPs per example of the iso set's three levels
ISO_TOLERANCE = 0.03


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


def _iso_recipe(i: int, level: int) -> dict:
    """Structure of the ``i``-th genome of an iso level: depth, wide or narrow levels, skips, long
    (source-shuffled) edges, ties and conv-like seeds cycle so each varies against the others."""
    narrow, wide = {2_000: ((0.02, 0.05), (0.1, 0.25)), 20_000: ((0.05, 0.15), (0.5, 1.0)),
                    100_000: ((0.1, 0.25), (0.6, 1.0))}[level]
    r = {"levels": 1 + i % 3, "fill": wide if (i // 3) % 2 else narrow, "skip": 0.5 if (i // 6) % 2 else 0.0,
         "long": (i // 12) % 2 == 1, "ties": i % 4 == 3, "conv": None}
    if level > 2_000 and i % 8 == 7:  # conv-like: one channel of local tied kernels (1x3x3 .. 1x5x5)
        r["conv"] = "conv:1x7" if level == 20_000 else "conv:1x7,mlp:160"
    return r


def _shuffle_sources(g: Genome, rng: np.random.Generator) -> Genome:
    """The same neurons and edge count, each edge's source relabelled by a permutation of the present
    sources of its level: locality gone, FLOPs kept."""
    sp, e = g.space, g.edges.copy()
    for level in range(sp.output_level):
        present = np.unique(e[:, 0][sp.level[e[:, 0]] == level])
        pool = sp.inputs if level == 0 else present
        perm = dict(zip(present.tolist(), rng.choice(pool, len(present), replace=False).tolist()))
        rows = sp.level[e[:, 0]] == level
        e[rows, 0] = [perm[s] for s in e[rows, 0].tolist()]
    return Genome(sp, g.hidden, e, g.ties).pruned().canonical()


def _tie_offsets(g: Genome, rng: np.random.Generator, share: float = 0.5) -> Genome:
    """Edges of one level pair with the same rounded offset (target minus source position) share a
    weight, for about ``share`` of such classes: a conv-like weight sharing at the same FLOPs."""
    sp, e = g.space, g.edges
    offset = np.round(sp.positions[e[:, 1]] - sp.positions[e[:, 0]]).astype(np.int64)
    key = np.stack([sp.level[e[:, 0]], sp.level[e[:, 1]], offset[:, 0], offset[:, 1]], 1)
    _, cls = np.unique(key, axis=0, return_inverse=True)
    cls = cls.reshape(-1)
    tied = rng.random(cls.max() + 1) < share
    ties = np.where(tied[cls], cls, cls.max() + 1 + np.arange(len(e)))
    return Genome(sp, g.hidden, e, ties)


def _at_flops(space: SearchSpace, recipe: dict, target: int, seed: int) -> Genome | None:
    """A genome of ``recipe`` within ``ISO_TOLERANCE`` of ``target`` FLOPs: the edge density is
    bisected (the same draws at every density, so more density adds edges), or None."""
    from evolution import cost, seeds

    def draw(d: float) -> Genome:
        rng = np.random.default_rng(seed)
        if recipe["conv"]:
            g = seeds.build(recipe["conv"], space)
            keep = rng.random(g.n_edges) < d * 4  # conv-like: thinned (its ties kept) to the target
            keep[g.edges[:, 1] >= space.outputs[0]] = True
            g = Genome(space, g.hidden, g.edges[keep], g.ties[keep]).pruned().canonical()
        else:
            g = random_genome(space, rng, density=d, n_levels=recipe["levels"], fill=recipe["fill"],
                              skip=recipe["skip"])
        if recipe["long"]:
            g = _shuffle_sources(g, rng)
        if recipe["ties"] and not recipe["conv"]:  # a conv-like genome is tied already
            g = _tie_offsets(g, rng)
        return g

    lo, hi = 1e-4, 0.25 if recipe["conv"] else 1.0
    for _ in range(40):
        d = float(np.sqrt(lo * hi))
        try:
            g = draw(d)
        except ValueError:
            lo = d
            continue
        f = cost.flops(g).total
        if abs(f / target - 1) <= ISO_TOLERANCE:
            return g
        lo, hi = (d, hi) if f < target else (lo, d)
    return None


def iso_set(space: SearchSpace, per_level: int, seed: int = 0) -> list[dict]:
    """``per_level`` genomes at each of ``ISO_LEVELS`` FLOPs (within +-3 %), varied in structure."""
    out = []
    for level in ISO_LEVELS:
        for i in range(per_level):
            recipe, g = _iso_recipe(i, level), None
            # 12 attempts sufficed for the first 24 of each level; attempts 17+ share seeds with the next
            # genome's first ones, but its recipe has another depth, so the genomes differ
            for attempt in range(30):
                if attempt == 6:  # this recipe cannot reach the level: the plain local one of its depth
                    recipe = {**recipe, "conv": None, "long": False}
                g = _at_flops(space, recipe, level, seed * 100_003 + level * 31 + i * 17 + attempt)
                if g is not None:
                    break
            if g is None:
                raise RuntimeError(f"iso set: no genome of {recipe} reaches {level} FLOPs")
            out.append({"genome": g.to_dict(), "level": level, "recipe": recipe})
    return out


def extended_iso(saved: list[dict], fresh: list[dict], per_level: int) -> list[dict]:
    """``saved`` with the genomes of ``fresh`` (``iso_set(space, per_level)``) it lacks appended, level
    by level, so a larger ``--iso`` grows the set and keeps every saved entry (and its truth) where it
    is. Refuses when a saved genome is not the one ``iso_set`` draws at its place now."""
    out = list(saved)
    for j, level in enumerate(ISO_LEVELS):
        mine = [e["genome"] for e in saved if e["level"] == level]
        drawn = fresh[j * per_level:(j + 1) * per_level]
        if mine != [e["genome"] for e in drawn[:len(mine)]]:
            raise SystemExit(f"error: the saved iso set's {level}-FLOPs genomes are not what iso_set draws now; "
                             "build the larger set into a new file")
        out += drawn[len(mine):]
    return out


def truth_loop(genome: Genome, data: IDXDataModule, epochs: int, seed: int) -> tuple[float, float]:
    """``truth``'s recipe (Adam 3e-3, batch 128, constant rate, ``epochs``; validation accuracy) in
    ``TrainEstimator``'s loop: no Trainer to set up, which cost more than training a small genome."""
    est = TrainEstimator(data, epochs=epochs, batch_size=128, lr=3e-3, seed=seed)
    start = time.perf_counter()
    e = est.estimate([genome])[0]
    return e.score, (time.perf_counter() - start) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broad", type=int, default=60)
    ap.add_argument("--lineage", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--iso", type=int, default=0, help="genomes per FLOPs level of the iso-cost set (0: none; more than it holds: appended)")
    ap.add_argument("--threads", type=int, default=2)
    common.add_data_root(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
    if args.iso > min((sum(e["level"] == v for e in doc.get("iso", [])) for v in ISO_LEVELS)):
        doc["iso"] = extended_iso(doc.get("iso", []), iso_set(space, args.iso), args.iso)
        save(doc)
    # "seeds": what the broad and lineage entries hold; a run asking for fewer trains nothing and lowers nothing
    doc.update({"epochs": args.epochs, "seeds": max(args.seeds, doc.get("seeds", 0)), "lr": 3e-3, "batch_size": 128,
                "split": "mnist-t10k, seed 0: 8,000 train / 2,000 validation", "grid": space.to_dict()})
    names = [k for k in ("broad", "lineage", "iso") if k in doc]
    total = sum(len(doc[k]) for k in names) + len(doc.get("iso", []))  # the iso set takes two passes
    done = 0
    # The iso set's truth always has 4 seeds (its pairs are close; its ceiling is two 2-seed means),
    # seeds 0, 1 of every genome first; trained by the same recipe in TrainEstimator's plain loop.
    passes = [("iso", 2), ("iso", 4)] if "iso" in doc else []
    for name, upto in [(n, args.seeds) for n in names if n != "iso"] + passes:
        for entry in doc[name]:
            accs = entry.setdefault("acc", [])
            secs = entry.setdefault("epoch_seconds", [])
            for seed in range(len(accs), upto):
                train = truth_loop if name == "iso" else truth
                a, s = train(Genome.from_dict(entry["genome"]), data, args.epochs, seed)
                accs.append(a)
                secs.append(s)
                save(doc, only="iso" if name == "iso" else None)
            done += 1
            g = entry["genome"]
            print(f"[{done}/{total}] {name}: {len(g['edges'])} edges, acc {np.mean(accs):.4f} "
                  f"(seeds {', '.join(f'{a:.4f}' for a in accs)}), {np.mean(secs):.2f} s/epoch", flush=True)
    save(doc)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
