"""The graph hypernetwork on mnist-t10k: beyond its grid, as an initializer, and its speed.

Uses the hypernet ``benchmarks/ranking.py`` trains (cached under ``runs/benchmarks``), on the grid
of the ranking sets (3 levels x 256 slots, 8,000 train / 2,000 validation images).

- Beyond the grid: random genomes of a grid 2x wider and one level deeper than any the hypernet saw,
  scored with predicted weights and with a random initialization (``SparseNet``'s default), each also
  with its output level refitted in closed form (the readout the search configs use), beside genomes
  of the training grid.
- Initializer: genomes spread over the sizes of the broad set, then of the lineage set (genomes of
  a real search, as verify retrains them), retrained with Lightning (Adam 3e-3, constant, as the
  ranking truth) from scratch and from predicted weights; the epochs each needs to reach the from-scratch
  final validation accuracy (0 = the predictions alone do), how many from-scratch epochs the
  predicted start is worth (the last epoch whose accuracy it matches), and the effective rank of each hidden
  level's features on the validation images, predicted against the default init. Also as verify
  retrains (cosine schedule): half the epochs from predicted weights against the full run from
  scratch, and half from scratch as the control. On the largest broad-set genomes, where
  predicted weights help least, other starts (lower and higher learning rate, hidden levels scaled
  down, LayerNorm affine reset, predicted plus a fraction of a fresh init, a fresh output level)
  and the from-scratch final of two more init seeds (its noise).
- Initializer as a search leaves it: the same on both sets with the hypernet first trained on the
  set's genomes (1,000 population-guided steps, as ``ranking.py``'s ``hypernet+population`` and a
  search with ``update_steps`` do), what ``verify --init estimator`` starts from.
- Speed: seconds per genome estimated in batches of 16 and one by one (and with the readout), the
  best of three runs, against one epoch of standalone training.

Writes ``benchmarks/results/predicted_weights.json``.

    python -m benchmarks.predicted_weights [--hypernet-steps 12000] [--genomes 10] [--epochs 10]
"""
from __future__ import annotations

import argparse
import logging
import time
import warnings

import lightning.pytorch as pl
import numpy as np
import torch

from evolution.genome import Genome, SearchSpace
from evolution.network import SparseNet, level_outputs
from evolution.readout import ridge_readout
from evolution.sampling import random_genome
from evolution.train import GenomeModule

from benchmarks import common, ranking, ranking_sets

OUT = common.RESULTS / "predicted_weights.json"
READOUT = 2000  # training examples of the closed-form output refit (HypernetEstimator(readout=...))
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@torch.no_grad()
def accuracy(net: SparseNet, x: torch.Tensor, y: torch.Tensor) -> float:
    mode = net.training  # kept: a net measured before training must train in train mode
    net.eval()
    acc = float((net(x).argmax(1) == y).float().mean())
    net.train(mode)
    return acc


class Curve(pl.Callback):
    """Validation accuracy and wall time after every epoch."""

    def __init__(self) -> None:
        self.acc: list[float] = []
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.acc.append(float(trainer.callback_metrics["val_acc"]))


# From-scratch curves by (genome, epochs, lr, seed, schedule): every initializer section compares
# with the same seeded runs, which need training only once per process.
_SCRATCH: dict[tuple, tuple[list[float], float]] = {}


def curve(genome: Genome, data, epochs: int, start: SparseNet | None, lr: float = 3e-3,
          seed: int = 0, scheduler: str = "none") -> tuple[list[float], float]:
    """Validation accuracy before training and after each of ``epochs`` epochs; mean epoch seconds.
    ``seed`` seeds the init (the data order is the DataModule's own). From-scratch runs
    (``start`` None) are trained once per process and then reused."""
    key = (genome.to_json(), epochs, lr, seed, scheduler)
    if start is None and key in _SCRATCH:
        return _SCRATCH[key]
    pl.seed_everything(seed, verbose=False)
    module = GenomeModule(genome.to_json(), data.input_shape, data.num_classes, lr=lr, scheduler=scheduler, seed=seed)
    if start is not None:
        module.net.set_weights(start.weights())
    x, y = data.tensors("val")
    before = accuracy(module.net, x, y)
    rec = Curve()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", callbacks=[rec])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(LeafSpec|num_workers).*")
        trainer.fit(module, datamodule=data)
    result = [before] + rec.acc, float(np.mean(rec.seconds))
    if start is None:
        _SCRATCH[key] = result
    return result


def start_worth(start: float, scratch: list[float]) -> int:
    """The from-scratch epochs a start is worth: the last epoch of the from-scratch curve whose
    accuracy the start already matches (0: not even one epoch). Reaching the final in half the
    epochs takes a start worth a few epochs, or one that then trains faster than a fresh init."""
    return max((e for e, a in enumerate(scratch) if a <= start), default=0)


@torch.no_grad()
def effective_rank(net: SparseNet, x: torch.Tensor) -> list[float]:
    """Per hidden level, the participation ratio of its centred features' covariance spectrum,
    ``(sum s^2)^2 / sum s^4`` (1: all neurons compute one feature; n: n equally strong ones)."""
    out = []
    for a in level_outputs(net.plan, net.weights(), x)[1:-1]:
        power = torch.linalg.svdvals(a - a.mean(0)).square()
        out.append(float(power.sum().square() / power.square().sum()) if power.sum() > 0 else 0.0)
    return out


def variant_start(net: SparseNet, genome: Genome, name: str) -> SparseNet:
    """``net`` (predicted weights) changed as the variant ``name`` says (``curve``'s other start)."""
    w = net.weights()
    fresh = SparseNet(genome, torch.Generator().manual_seed(123)).weights()
    hidden = torch.ones(len(w.edge), dtype=torch.bool)
    for p in net.plan.pairs_into[-1]:
        hidden[p.edges] = False
    if name == "hidden levels x 0.5":  # behind LayerNorm: the same function, a 4x larger effective step
        w = w._replace(edge=torch.where(hidden, 0.5 * w.edge, w.edge))
    elif name == "LayerNorm affine reset":
        w = w._replace(norm_weight=torch.ones_like(w.norm_weight), norm_bias=torch.zeros_like(w.norm_bias))
    elif name == "+ 0.6 x fresh init":  # shrink-free perturbation (Ash & Adams 2020 shrink and perturb)
        w = w._replace(edge=torch.where(hidden, w.edge + 0.6 * fresh.edge, w.edge))
    elif name == "fresh output level":
        w = w._replace(edge=torch.where(hidden, w.edge, fresh.edge), bias=fresh.bias)
    net.set_weights(w)
    return net


def initializer(doc: dict, name: str, data, est, n: int, epochs: int,
                title: str = "") -> tuple[dict, list[Genome], list[float]]:
    """Retraining from predicted weights against from scratch on ``n`` genomes spread over the sizes
    of ranking set ``name``: epochs to reach the from-scratch final at a constant rate, and, as
    verify retrains (cosine to zero over the run), half the epochs from predicted weights against
    the full run from scratch, with half the epochs from scratch as the control. The section, its
    genomes and the seconds of their from-scratch epochs."""
    genomes = [Genome.from_dict(e["genome"]) for e in doc[name]]
    order = np.argsort([g.n_edges for g in genomes])
    picks = [genomes[i] for i in order[np.linspace(0, len(order) - 1, n).round().astype(int)]]
    x, _ = data.tensors("val")
    rows, epoch_s = [], []
    for g in picks:
        scratch, sec = curve(g, data, epochs, None)
        warm, _ = curve(g, data, epochs, est.initialize(g))
        epoch_s.append(sec)
        final = scratch[-1]
        reach = next((e for e, a in enumerate(warm) if a >= final), None)
        rows.append({"edges": g.n_edges, "scratch": scratch, "predicted": warm, "scratch_final": final,
                     "epochs_to_reach": reach, "start_worth_epochs": start_worth(warm[0], scratch),
                     "effective_rank_predicted": effective_rank(est.initialize(g), x),
                     "effective_rank_init": effective_rank(SparseNet(g, torch.Generator().manual_seed(0)), x)})
    reached = [r["epochs_to_reach"] for r in rows]
    within = sum(r is not None and r <= epochs / 2 for r in reached)
    section = {"epochs": epochs, "genomes": rows, "within_half": within,
               "median_epochs_to_reach": float(np.median([epochs + 1 if r is None else r for r in reached]))}
    print(f"\ninitializer{title} ({len(picks)} {name}-set genomes, {epochs} epochs from scratch)")
    print(f"{'edges':>8} {'scratch@0':>10} {'scratch@end':>12} {'predicted@0':>12} {'worth (epochs)':>15} "
          f"{'predicted@end':>14} {'epochs to reach':>16} {'eff. rank: predicted':>21} {'init':>18}")
    for r in rows:
        reach = "never" if r["epochs_to_reach"] is None else str(r["epochs_to_reach"])
        ranks = [" ".join(f"{v:.0f}" for v in r[k]) for k in ("effective_rank_predicted", "effective_rank_init")]
        print(f"{r['edges']:>8} {r['scratch'][0]:>10.3f} {r['scratch_final']:>12.3f} {r['predicted'][0]:>12.3f} "
              f"{r['start_worth_epochs']:>15} {r['predicted'][-1]:>14.3f} {reach:>16} {ranks[0]:>21} {ranks[1]:>18}")
    print(f"reached the from-scratch final accuracy within {epochs // 2} epochs: {within} of {len(picks)}")

    half = epochs // 2
    budget = []
    for g in picks:
        full = curve(g, data, epochs, None, scheduler="cosine")[0][-1]
        pred = curve(g, data, half, est.initialize(g), scheduler="cosine")[0][-1]
        short = curve(g, data, half, None, scheduler="cosine")[0][-1]
        budget.append({"edges": g.n_edges, "scratch_full": full, "predicted_half": pred, "scratch_half": short})
    section["cosine_half_budget"] = {"genomes": budget,
                                     "predicted_reached": sum(b["predicted_half"] >= b["scratch_full"] for b in budget),
                                     "scratch_half_reached": sum(b["scratch_half"] >= b["scratch_full"] for b in budget)}
    print(f"\nretrained as verify does (Adam 3e-3, cosine to zero): {half} epochs against {epochs} from scratch")
    print(f"{'edges':>8} {f'scratch {epochs}':>11} {f'predicted {half}':>12} {f'scratch {half}':>10}")
    for b in budget:
        print(f"{b['edges']:>8} {b['scratch_full']:>11.3f} {b['predicted_half']:>12.3f} {b['scratch_half']:>10.3f}")
    cb = section["cosine_half_budget"]
    print(f"reached the {epochs}-epoch from-scratch final in {half} epochs: predicted {cb['predicted_reached']} "
          f"of {len(picks)}, from scratch {cb['scratch_half_reached']}")
    return section, picks, epoch_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hypernet-steps", type=int, default=12000, help="steps of the hypernet ranking.py trains")
    ap.add_argument("--genomes", type=int, default=10, help="genomes per section")
    ap.add_argument("--epochs", type=int, default=10, help="from-scratch epochs of the initializer section")
    ap.add_argument("--update-steps", type=int, default=1000,
                    help="population-guided hypernet steps on each set before the updated initializer sections")
    ap.add_argument("--variant-genomes", type=int, default=3, help="largest initializer genomes that try other starts")
    common.add_data_root(ap)
    args = ap.parse_args()
    from hypernet.estimator import HypernetEstimator

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    data = ranking_sets.data_module(args.data_root)
    data.setup("fit")
    ckpt, train_s = ranking.hypernet_checkpoint(data, args.hypernet_steps)
    est = HypernetEstimator(data, str(ckpt), batch=16)
    readout = HypernetEstimator(data, str(ckpt), batch=16, readout=READOUT)  # as configs/search/mnist-t10k-hypernet.yaml
    x, y = data.tensors("val")
    x_fit, y_fit = (t[:READOUT] for t in data.tensors("train"))
    doc = ranking_sets.load()
    broad = [Genome.from_dict(e["genome"]) for e in doc["broad"]]
    out: dict = {"hypernet_steps": args.hypernet_steps, "hypernet_train_seconds": train_s}

    # Beyond the grid: same density law, grid 2x wider and one level deeper.
    grid = ranking_sets.grid(data)
    wide = SearchSpace(grid.input_shape, grid.n_outputs, levels=grid.levels + 1, width=2 * grid.width)
    rows = {}
    for label, space in (("training grid", grid), ("2x wider, +1 level", wide)):
        rng = np.random.default_rng(1)
        genomes = [random_genome(space, rng, density=float(np.exp(rng.uniform(np.log(0.01), np.log(0.1)))))
                   for _ in range(args.genomes)]
        pred = [e.score for e in est.estimate(genomes)]
        pred_ro = [e.score for e in readout.estimate(genomes)]
        nets = [SparseNet(g, torch.Generator().manual_seed(i)) for i, g in enumerate(genomes)]
        rand = [accuracy(net, x, y) for net in nets]
        for net in nets:  # the same readout on random hidden weights: what the predicted features add
            net.set_weights(ridge_readout(net.plan, net.weights(), x_fit, y_fit))
        rand_ro = [accuracy(net, x, y) for net in nets]
        rows[label] = {"levels": space.levels, "width": space.width, "mean_edges": float(np.mean([g.n_edges for g in genomes])),
                       "predicted_acc": float(np.mean(pred)), "predicted_min": float(np.min(pred)),
                       "random_init_acc": float(np.mean(rand)), "finite": bool(np.all(np.isfinite(pred))),
                       "predicted_readout_acc": float(np.mean(pred_ro)), "random_init_readout_acc": float(np.mean(rand_ro))}
    out["beyond_grid"] = rows
    print(f"\nbeyond the grid ({args.genomes} random genomes each; chance 0.10)")
    print(f"{'grid':>20} {'levels':>6} {'width':>6} {'edges':>8} {'predicted':>10} {'min':>6} {'random init':>12} "
          f"{'+readout: predicted':>20} {'random init':>12}")
    for label, r in rows.items():
        print(f"{label:>20} {r['levels']:>6} {r['width']:>6} {r['mean_edges']:>8.0f} {r['predicted_acc']:>10.3f} "
              f"{r['predicted_min']:>6.3f} {r['random_init_acc']:>12.3f} {r['predicted_readout_acc']:>20.3f} "
              f"{r['random_init_readout_acc']:>12.3f}")

    # Initializer: genomes spread over the broad set's sizes, then over the lineage set's (the
    # genomes a search makes, which verify retrains).
    out["initializer"], picks, epoch_s = initializer(doc, "broad", data, est, args.genomes, args.epochs)
    out["initializer_lineage"], _, _ = initializer(doc, "lineage", data, est, args.genomes, args.epochs)
    init_rows = out["initializer"]["genomes"]
    # As a search leaves it: the hypernet first trained on the set's genomes (the population-guided
    # update of a search with update_steps, as ranking.py's hypernet+population), which is the
    # hypernet `verify --init estimator` starts a search's candidates from.
    for name in ("broad", "lineage"):
        guided = HypernetEstimator(data, str(ckpt), batch=16, update_steps=args.update_steps, genomes_per_step=4,
                                   lr=3e-3)
        start = time.perf_counter()
        guided.update([Genome.from_dict(e["genome"]) for e in ranking_sets.with_truth(doc, name)])
        seconds = time.perf_counter() - start
        out[f"initializer_{name}_updated"], _, _ = initializer(
            doc, name, data, guided, args.genomes, args.epochs,
            f" after {args.update_steps} update steps on the set ({seconds:.0f} s)")
        out[f"initializer_{name}_updated"].update(update_steps=args.update_steps, update_seconds=seconds)

    # Other starts on the largest genomes, and the noise of the from-scratch final there.
    variants = ("lr 1e-3", "lr 6e-3", "hidden levels x 0.5", "LayerNorm affine reset", "+ 0.6 x fresh init",
                "fresh output level")
    lrs = {"lr 1e-3": 1e-3, "lr 6e-3": 6e-3}
    var_rows = []
    for g, r in list(zip(picks, init_rows))[-args.variant_genomes:]:
        row = {"edges": g.n_edges, "scratch_final": r["scratch_final"], "predicted": r["epochs_to_reach"],
               "scratch_final_seeds_1_2": [curve(g, data, args.epochs, None, seed=s)[0][-1] for s in (1, 2)]}
        for name in variants:
            start = est.initialize(g) if name in lrs else variant_start(est.initialize(g), g, name)
            acc, _ = curve(g, data, args.epochs, start, lr=lrs.get(name, 3e-3))
            row[name] = {"curve": acc, "epochs_to_reach": next((e for e, a in enumerate(acc) if a >= r["scratch_final"]), None)}
        var_rows.append(row)
    out["initializer"]["variants"] = var_rows
    print(f"\nother starts on the {len(var_rows)} largest: epochs to reach the from-scratch final (seed 0; seeds 1, 2 end at)")
    print(f"{'edges':>8} {'final':>6} {'seeds 1, 2':>12} {'predicted':>10} " + " ".join(f"{v:>22}" for v in variants))
    for row in var_rows:
        cells = ["never" if x is None else str(x) for x in [row["predicted"]] + [row[v]["epochs_to_reach"] for v in variants]]
        seeds = ", ".join(f"{a:.3f}" for a in row["scratch_final_seeds_1_2"])
        print(f"{row['edges']:>8} {row['scratch_final']:>6.3f} {seeds:>12} {cells[0]:>10} " + " ".join(f"{c:>22}" for c in cells[1:]))

    # Speed: batched against one by one, and against one epoch of standalone training.
    genomes = broad[:32]
    timings = {}
    for key, e, batch in ((16, est, 16), (1, est, 1), ("readout", readout, 16)):
        e.batch = batch
        e.estimate(genomes[:batch])  # warm up
        runs = []
        for _ in range(3):  # the best of three: a shared machine only ever adds time
            start = time.perf_counter()
            e.estimate(genomes)
            runs.append((time.perf_counter() - start) / len(genomes))
        timings[key] = min(runs)
    epoch = float(np.mean(epoch_s))
    out["speed"] = {"seconds_per_genome_batched": timings[16], "seconds_per_genome_single": timings[1],
                    "seconds_per_genome_readout": timings["readout"], "epoch_vs_readout": epoch / timings["readout"],
                    "batch": 16, "epoch_seconds": epoch, "batched_vs_single": timings[1] / timings[16],
                    "epoch_vs_batched": epoch / timings[16]}
    print(f"\nspeed ({len(genomes)} broad-set genomes, 2,000 validation images)")
    print(f"batched (16): {timings[16] * 1e3:.1f} ms/genome ({1 / timings[16]:.0f} genomes/s); one by one: "
          f"{timings[1] * 1e3:.1f} ms/genome ({timings[1] / timings[16]:.2f}x); one standalone epoch: {epoch:.2f} s "
          f"= {epoch / timings[16]:.0f}x a batched estimate; with the readout ({READOUT} examples) "
          f"{timings['readout'] * 1e3:.1f} ms/genome = {epoch / timings['readout']:.0f}x")
    common.write_results("predicted_weights", out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
