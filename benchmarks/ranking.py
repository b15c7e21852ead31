"""How well do cheap estimators rank genomes? Kendall tau and friends on two ranking sets.

The sets and their ground truth come from ``benchmarks/ranking_sets.py`` (broad: random genomes;
lineage: genomes of a real search). For each estimator and set: Kendall tau, Spearman, top-10 tau
(tau among the 10 best by truth), precision@10, size-controlled tau (tau of the residuals after
regressing estimate and truth on log #params: does it know anything beyond size?), correlation with
#edges, tau within each depth and the depth bias (are deeper genomes ranked below their truth?),
and seconds per genome, always beside the baselines #edges and 50 steps from scratch (and 20, at
the cost of the estimators trained at a search's cadence), the seed-vs-seed noise ceiling (with
``ranking_sets.py --seeds 4`` also two 2-seed truths against each other, and every entry's tau
against the 4-seed mean, ``*_4seeds``; the truth stays the mean of seeds 0 and 1), and
``init+readout`` (a random init with the output level refitted in closed form: what the ``+readout``
entries would score without any trained hidden weights).
Estimator entries: ``supernet_<variant>`` (inherited weights) and ``hypernet`` (predicted weights),
each also ``+population`` (trained on the set first: an upper bound; ``+populationN`` with N steps
instead of ``--update-steps``), ``+cadence`` (trained as a
search trains it), ``+readout`` (output level refitted in closed form) and ``+finetune50``. The
hypernet is trained as ``configs/hypernet/mnist-t10k.yaml`` sets it up (through the readout); the
``+rotrain`` supernet variants are trained through it too, the ``+skip`` ones also on genomes with
edges across levels (``GenomeSampler(skip=(0, 0.5))``), as a search's mutations add them.
Writes ``benchmarks/results/ranking.json`` (figures), ``ranking.raw.json.gz`` (estimates), ``ranking.md`` and
``ranking.png``; trained estimators are cached under ``runs/benchmarks/`` (``benchmarks.common``).

    python -m benchmarks.ranking [--data-root ../shared/data] [--variants uniform,fair+rotrain] [--steps 1500] [--update-steps 1000] [--hypernet-steps 12000] [--hypernet-update-steps 1000]
    python -m benchmarks.ranking --rescore   # recompute the metrics of the saved estimates only
    python -m benchmarks.ranking --variants none --hypernet-steps 0 --extra-hypernet NAME=CKPT   # one more hypernet
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from scipy.stats import rankdata

from evolution import cost
from evolution.estimators import TrainEstimator
from evolution.genome import Genome
from evolution.network import SparseNet
from evolution.readout import ridge_readout

from benchmarks import common, ranking_sets
from benchmarks.rank_metrics import entry_metrics, ranked_last

OUT = common.RESULTS / "ranking.json"  # the summary; the raw estimates in ranking.raw.json.gz
KINDS = ("baselines", "inherited", "readout", "population", "cadence", "finetune")  # what --only chooses among
REPO, CACHE = common.REPO, common.CACHE


def at_search_cadence(est, genomes: list[Genome], children: int = 8, population: int = 16) -> tuple[np.ndarray, float]:
    """Scores of an estimator trained at a search's cadence, and seconds per genome: genomes arrive
    ``children`` at a time and, as a search scores its children before the update that trains on its
    population, each batch is scored after one ``est.update`` on the ``population`` genomes before it
    (the first batch with the estimator as trained), never on itself or later genomes
    (``+population``, which trains on the whole set first, is its upper bound)."""
    start, scores = time.perf_counter(), []
    for i in range(0, len(genomes), children):
        if i:
            est.update(genomes[max(0, i - population):i])
        scores += [e.score for e in est.estimate(genomes[i:i + children])]
    return np.array(scores), (time.perf_counter() - start) / len(scores)


def scored(est, genomes: list[Genome], update: bool = False) -> tuple[np.ndarray, float]:
    """Scores of an estimator and seconds per genome; with ``update``, after one ``est.update`` on
    the genomes themselves (population-guided upper bound), its cost shared among them."""
    start = time.perf_counter()
    if update:
        est.update(genomes)
    scores = [e.score for e in est.estimate(genomes)]
    return np.array(scores), (time.perf_counter() - start) / len(scores)


@torch.no_grad()
def init_readout(data, genomes: list[Genome], examples: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Validation accuracy of each genome at ``SparseNet``'s random init (seeded) with its output level
    refitted on the first ``examples`` training examples (``ridge_readout``, as the ``+readout``
    estimators refit theirs), and seconds per genome: the control for what trained hidden weights add."""
    data.setup("fit")
    x_fit, y_fit = (t[:examples] for t in data.tensors("train"))
    x, y = data.tensors("val")
    start, scores = time.perf_counter(), []
    for g in genomes:
        net = SparseNet(g, torch.Generator().manual_seed(seed)).eval()
        net.set_weights(ridge_readout(net.plan, net.weights(), x_fit, y_fit))
        scores.append(float((net(x).argmax(1) == y).float().mean()))
    return np.array(scores), (time.perf_counter() - start) / len(genomes)


def rebatched(data, batch_size: int):
    """The same IDX data and split, in batches of ``batch_size``."""
    from evolution.data import IDXDataModule

    return IDXDataModule(data.root, seed=data.seed, batch_size=batch_size, val_fraction=data.val_fraction,
                         test_fraction=data.test_fraction)


def supernet_variant(name: str, data, steps: int, sampler: str, distill: bool, few_shot: bool = False,
                     readout: int = 0, skip: tuple[float, float] = (0.0, 0.0), seed: int = 0):
    """Train a supernet on the mnist-t10k grid with Lightning for ``steps`` steps; its checkpoint path.
    ``readout``: train through the closed-form readout (``SupernetModule(readout=...)``), on batches
    of 128 + ``readout`` examples."""
    from oneshot.module import SupernetModule

    pl.seed_everything(seed, verbose=False)
    module = SupernetModule(data.input_shape, data.num_classes, levels=3, width=256, sampler=sampler,
                            density=(0.003, 0.3), genomes_per_step=4, distill=distill, few_shot=few_shot, lr=3e-3,
                            readout=readout, skip=skip, seed=seed)
    if readout:
        data = rebatched(data, data.batch_size + readout)
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    path = Path(tempfile.mkdtemp()) / f"{name}.ckpt"
    trainer.save_checkpoint(path)
    return path, time.perf_counter() - start


def hypernet_checkpoint(data, steps: int, seed: int = 0) -> tuple[Path, float]:
    """A hypernet trained with Lightning for ``steps`` steps on the mnist-t10k grid, as
    ``configs/hypernet/mnist-t10k.yaml`` sets it up (model and batch size); cached under
    ``runs/benchmarks``. A cached shorter run of the same config is continued from its checkpoint
    (optimizer and sampler state included), not restarted. Its path and total training seconds."""
    from hypernet.module import HypernetModule

    config = yaml.safe_load((REPO / "configs" / "hypernet" / "mnist-t10k.yaml").read_text())
    model, batch_size = config["model"], config["data"]["init_args"]["batch_size"]
    # Keyed by the config too, so an edited config trains a new hypernet (the batch size only
    # where it is not the default 128, so earlier checkpoints keep their keys).
    keyed = model if batch_size == 128 else {**model, "batch_size": batch_size}
    key = hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]
    path = CACHE / f"hypernet-{steps}-seed{seed}-{key}.ckpt"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["train_seconds"]
    shorter = sorted((int(p.name.split("-")[1]), p) for p in CACHE.glob(f"hypernet-*-seed{seed}-{key}.ckpt")
                     if int(p.name.split("-")[1]) < steps and p.with_suffix(".json").exists())
    resume, before = None, 0.0
    if shorter:
        resume = shorter[-1][1]
        before = json.loads(resume.with_suffix(".json").read_text())["train_seconds"]
    data = rebatched(data, batch_size)
    module = HypernetModule(data.input_shape, data.num_classes, **{**model, "seed": seed})
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data.train_dataloader(), ckpt_path=resume)
    seconds = before + time.perf_counter() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    meta.write_text(json.dumps({"steps": steps, "seed": seed, "train_seconds": seconds, "model": model,
                                "batch_size": batch_size, "continued_from": None if resume is None else resume.name}))
    return path, seconds


def rescore(sets: dict) -> None:
    """Recompute the metrics of every saved estimate (after a metric was added), keeping its seconds."""
    doc = common.read_results("ranking")
    for key, by_set in doc["estimates"].items():
        for name, est in by_set.items():
            s = sets[name]
            m = entry_metrics(key, np.asarray(est, dtype=float), s)
            doc["estimators"][key].update(m if name == "broad" else {f"lineage_{k}": v for k, v in m.items()})
    alias_supernet(doc["estimators"])
    save(doc)
    for name in sets:
        print(f"\n{name} set")
        table(doc["estimators"], name)
    print(f"rescored {OUT}")


def save(doc: dict) -> None:
    """``ranking.json`` (every figure), ``ranking.raw.json.gz`` (the estimates), ``ranking.md`` and
    ``ranking.png`` (``benchmarks.figures``)."""
    from benchmarks import figures

    summary = {k: v for k, v in doc.items() if k != "estimates"}
    common.write_results("ranking", summary, raw={"estimates": doc.get("estimates", {})},
                         page=figures.ranking_page(summary))
    figures.ranking_figure(doc, common.load_ranking_sets(), common.RESULTS / "ranking.png")


def alias_supernet(results: dict[str, dict]) -> None:
    """The issue's ``supernet`` entry: the sandwich-trained variant's figures."""
    if "supernet_sandwich" in results:
        results["supernet"] = dict(results["supernet_sandwich"])


def table(results: dict[str, dict], name: str) -> None:
    """Print one set's figures, an estimator per row."""
    keys = ["kendall_tau", "spearman", "top10_tau", "precision_at_10", "size_controlled_tau", "within_depth_tau",
            "depth_bias", "seconds_per_genome", "kendall_tau_4seeds"]
    pre = "" if name == "broad" else "lineage_"
    print(f"{'estimator':>40} " + " ".join(f"{k.replace('_', ' ')[:12]:>12}" for k in keys))
    for est_name, r in results.items():
        print(f"{est_name:>40} " + " ".join(f"{r.get(pre + k, float('nan')):>12.3f}" for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500, help="supernet training steps per variant")
    ap.add_argument("--variants", default="uniform,sandwich,sandwich+distill,nested,fair,sandwich+fewshot",
                    help="comma-separated supernet variants (sampler[+distill][+fewshot][+rotrain][+skip]) to train, "
                         "or none; rotrain: trained through the readout on 512 examples a step; skip: also on genomes "
                         "with edges across levels")
    ap.add_argument("--update-steps", type=int, default=1000, help="population-guided supernet steps on each set")
    ap.add_argument("--update-lr", type=float, default=1e-2, help="their peak learning rate (cosine to 0)")
    ap.add_argument("--update-sweep", type=lambda t: [int(n) for n in t.split(",") if n], default=[],
                    help="also population-guided updates of these step counts (entries +populationN), e.g. 100,250,500")
    ap.add_argument("--cadence-lr", type=float, default=3e-2,
                    help="peak learning rate of the supernet's 40-step updates at a search's cadence (+cadence)")
    ap.add_argument("--hypernet-steps", type=int, default=12000, help="hypernet training steps (0: no hypernet)")
    ap.add_argument("--hypernet-update-steps", type=int, default=1000,
                    help="population-guided hypernet steps on each set")
    ap.add_argument("--hypernet-update-lr", type=float, default=3e-3, help="their peak learning rate (cosine to 0)")
    ap.add_argument("--readout", type=int, default=2000,
                    help="training examples of the closed-form output refit of the +readout entries")
    ap.add_argument("--extra-hypernet", action="append", default=[], metavar="NAME=CKPT",
                    help="also score this hypernet checkpoint, frozen and with the readout, as entries NAME and NAME+readout")
    ap.add_argument("--only", type=lambda t: set(t.split(",")), default=set(KINDS),
                    help=f"measure only these kinds of entry, of {','.join(KINDS)} (the others keep their saved figures)")
    ap.add_argument("--rescore", action="store_true",
                    help="only recompute every metric from the estimates saved in ranking.json (no training)")
    common.add_data_root(ap)
    args = ap.parse_args()
    if args.only - set(KINDS):
        ap.error(f"--only {','.join(sorted(args.only - set(KINDS)))}: expected some of {','.join(KINDS)}")
    doc = ranking_sets.load()
    data = ranking_sets.data_module(args.data_root)
    sets = {}
    for name in ("broad", "lineage"):
        entries = ranking_sets.with_truth(doc, name)
        if len(entries) < 12:
            print(f"{name} set: only {len(entries)} genomes have their ground truth yet; skipped")
            continue
        genomes = [Genome.from_dict(e["genome"]) for e in entries]
        accs = np.array([e["acc"][:2] for e in entries])
        # Seeds 2 and 3 (ranking_sets.py --seeds 4), where every genome has them: a second opinion.
        accs4 = np.array([e["acc"][:4] for e in entries]) if all(len(e["acc"]) >= 4 for e in entries) else None
        sets[name] = {"genomes": genomes, "truth": accs.mean(1), "seeds": accs, "seeds4": accs4,
                      "truth4": None if accs4 is None else accs4.mean(1),
                      "params": np.array([cost.parameters(g) for g in genomes], dtype=float),
                      "edges": np.array([g.n_edges for g in genomes], dtype=float),
                      "depth": np.array([len(g.levels_present()) for g in genomes]),
                      "epoch_seconds": float(np.mean([np.mean(e["epoch_seconds"][:2]) for e in entries]))}
    results: dict[str, dict] = {}
    estimates: dict[str, dict[str, list[float]]] = {}
    if args.rescore:
        rescore(sets)
        return

    def record(key: str, name: str, est: np.ndarray, seconds: float, prior: bool = False) -> None:
        s = sets[name]
        est = np.asarray(est, dtype=float)
        m = entry_metrics(key, est, s)
        m["seconds_per_genome"] = seconds
        entry = results.setdefault(key, {})
        entry.update(m if name == "broad" else {f"lineage_{k}": v for k, v in m.items()})
        estimates.setdefault(key, {})[name] = [v if np.isfinite(v) else None for v in est.tolist()]
        if prior:
            # Size prior: the mean of the estimate's rank and the parameter count's rank. Accuracy
            # on random genomes is mostly size (the notes); does the estimator add to it?
            ranks = (rankdata(ranked_last(est)) + rankdata(s["params"])) / 2
            record(f"{key}+sizeprior", name, ranks, seconds)

    want = args.only.__contains__
    for name, s in sets.items():
        if not want("baselines"):
            break
        record("seed_vs_seed", name, s["seeds"][:, 0], s["epoch_seconds"] * doc["epochs"])
        record("edges", name, s["edges"], 0.0)
        # scratch20: the same at the cost of the estimators trained at a search's cadence (+cadence).
        for steps in (50, 20):
            est = TrainEstimator(data, steps=steps, batch_size=128, lr=3e-3, seed=0)
            record(f"scratch{steps}", name, *scored(est, s["genomes"]), prior=steps == 50)
        record("init+readout", name, *init_readout(data, s["genomes"], args.readout))

    from oneshot.estimator import SupernetEstimator

    variants = [] if args.variants == "none" else args.variants.split(",")
    for v in variants:
        sampler, flags = v.split("+")[0], set(v.split("+")[1:])
        ckpt, train_s = supernet_variant(v, data, args.steps, sampler, "distill" in flags, "fewshot" in flags,
                                         512 if "rotrain" in flags else 0, (0.0, 0.5) if "skip" in flags else (0.0, 0.0))
        for name, s in sets.items():
            if want("inherited"):
                est = SupernetEstimator(data, str(ckpt))
                record(f"supernet_{v}", name, *scored(est, s["genomes"]), prior=True)
            if want("readout"):  # inherited hidden levels, output level refitted in closed form (ridge_readout)
                est = SupernetEstimator(data, str(ckpt), readout=args.readout)
                record(f"supernet_{v}+readout", name, *scored(est, s["genomes"]))
            if want("population"):
                # Upper bound: the bank also trains on the set's own genomes (as a search trains it on
                # the population it then scores).
                est = SupernetEstimator(data, str(ckpt), update_steps=args.update_steps, genomes_per_step=4,
                                        lr=args.update_lr)
                record(f"supernet_{v}+population", name, *scored(est, s["genomes"], update=True), prior=True)
                for n in args.update_sweep:  # the same at fewer steps: its cost against its ranking
                    est = SupernetEstimator(data, str(ckpt), update_steps=n, genomes_per_step=4, lr=args.update_lr)
                    record(f"supernet_{v}+population{n}", name, *scored(est, s["genomes"], update=True))
            for readout in (0, args.readout) if want("cadence") else ():
                est = SupernetEstimator(data, str(ckpt), update_steps=40, genomes_per_step=4, lr=args.cadence_lr,
                                        readout=readout)
                record(f"supernet_{v}+cadence" + ("+readout" if readout else ""), name,
                       *at_search_cadence(est, s["genomes"]))
            if want("finetune"):
                ft = SupernetEstimator(data, str(ckpt), finetune_steps=50)
                record(f"supernet_{v}+finetune50", name, *scored(ft, s["genomes"]), prior=True)
        results.setdefault(f"supernet_{v}", {})["train_seconds"] = train_s
        print(f"trained supernet {v}: {args.steps} steps in {train_s:.0f} s", flush=True)

    if args.hypernet_steps:
        from hypernet.estimator import HypernetEstimator

        ckpt, train_s = hypernet_checkpoint(data, args.hypernet_steps)
        print(f"hypernet: {args.hypernet_steps} steps, trained in {train_s:.0f} s", flush=True)
        for name, s in sets.items():
            est = HypernetEstimator(data, str(ckpt), batch=16)
            if want("inherited"):
                record("hypernet", name, *scored(est, s["genomes"]), prior=True)
            if want("readout"):
                readout = HypernetEstimator(data, str(ckpt), batch=16, readout=args.readout)
                record("hypernet+readout", name, *scored(readout, s["genomes"]))
            if want("population"):  # as the supernet's: the hypernet also trains on the set's own genomes
                guided = HypernetEstimator(data, str(ckpt), batch=16, update_steps=args.hypernet_update_steps,
                                           genomes_per_step=4, lr=args.hypernet_update_lr)
                record("hypernet+population", name, *scored(guided, s["genomes"], update=True), prior=True)
            for readout in (0, args.readout) if want("cadence") else ():
                guided = HypernetEstimator(data, str(ckpt), batch=16, update_steps=40, genomes_per_step=4,
                                           lr=args.hypernet_update_lr, readout=readout)
                record("hypernet+cadence" + ("+readout" if readout else ""), name,
                       *at_search_cadence(guided, s["genomes"]))
            if want("finetune"):  # predict, then the same 50 steps as the scratch baseline
                ft = TrainEstimator(data, steps=50, batch_size=128, lr=3e-3, seed=0, initializer=est)
                record("hypernet+finetune50", name, *scored(ft, s["genomes"]), prior=True)
        results.setdefault("hypernet", {}).update(train_seconds=train_s, train_steps=args.hypernet_steps)
    for extra in args.extra_hypernet:
        from hypernet.estimator import HypernetEstimator

        key, ckpt = extra.split("=", 1)
        for name, s in sets.items():
            record(key, name, *scored(HypernetEstimator(data, ckpt, batch=16), s["genomes"]))
            record(f"{key}+readout", name, *scored(HypernetEstimator(data, ckpt, batch=16, readout=args.readout), s["genomes"]))

    for name in sets:
        print(f"\n{name} set: {len(sets[name]['truth'])} genomes, truth {doc['epochs']} epochs x 2 seeds "
              f"({sets[name]['epoch_seconds']:.2f} s/epoch)")
        table(results, name)
    if OUT.exists():  # keep the entries (and the figures of entries) this run did not measure again
        old = common.read_results("ranking")
        results = {**old.get("estimators", {}), **{k: {**old.get("estimators", {}).get(k, {}), **v} for k, v in results.items()}}
        estimates = {**old.get("estimates", {}), **{k: {**old.get("estimates", {}).get(k, {}), **v} for k, v in estimates.items()}}
    alias_supernet(results)
    out = {"n_genomes": len(sets["broad"]["truth"]), "n_lineage": len(sets.get("lineage", {}).get("truth", [])),
           "epoch_seconds": sets["broad"]["epoch_seconds"], "supernet_steps": args.steps,
           "population_update": {"supernet_steps": args.update_steps, "supernet_lr": args.update_lr,
                                 "cadence": "8 genomes a batch, each scored after 40 steps on the 16 before it",
                                 "supernet_cadence_lr": args.cadence_lr, "hypernet_cadence_lr": args.hypernet_update_lr,
                                 "hypernet_steps": args.hypernet_update_steps,
                                 "hypernet_lr": args.hypernet_update_lr, "schedule": "cosine per update"},
           "readout_examples": args.readout,
           "estimators": results,
           "estimates": estimates}
    save(out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
