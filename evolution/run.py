"""The main job in one command: train the estimator, search, verify, export, compare with dense MLPs.

``python -m evolution run --config configs/run/digits.yaml``. Every step reuses what a previous run
left in the run directory (the estimator's checkpoint, the search state, verified candidates), so
a stopped run resumes. The core knows no estimator: the one to train is a LightningModule and the
one to search with an ``Estimator``, both chosen by ``class_path``.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import yaml

from evolution import cost, rundir
from evolution.cli import import_class
from evolution.device import add_device_arguments, deterministic, placed
from evolution.estimators import Estimator, build_estimator
from evolution.search import Search, SearchSettings
from evolution.verify import retrain, verify


def build_parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="python -m evolution run", exit_on_error=False,
                       description="Train the estimator, search, verify the best candidates, export the best.")
    p.add_argument("--config", action=ActionConfigFile, help="YAML config (configs/run/*.yaml)")
    p.add_argument("--run_dir", type=str, default="runs/run", help="where every file of the run goes")
    p.add_subclass_arguments(pl.LightningModule, "fit.model", required=False, skip={"input_shape", "num_classes"},
                             help="the estimator to train first (e.g. oneshot.module.SupernetModule); none: skip")
    p.add_argument("--fit.max_epochs", type=int, default=20, help="epochs to train it")
    p.add_argument("--fit.checkpoint", type=str | None, default=None,
                   help="its checkpoint (default RUN_DIR/estimator.ckpt; reused when present); handed to the estimator")
    p.add_class_arguments(SearchSettings, "search")
    p.add_subclass_arguments(pl.LightningDataModule, "data", required=True)
    p.add_subclass_arguments(Estimator, "estimator", required=True, skip={"data", "checkpoint"})
    p.add_argument("--verify.top_k", type=int, default=10, help="candidates retrained by estimate (plus the front)")
    p.add_argument("--verify.epochs", type=int, default=20, help="standalone training epochs per candidate")
    p.add_argument("--verify.lr", type=float, default=3e-3, help="learning rate of the retraining")
    add_device_arguments(p)
    return p


def _instantiate(spec, **extra):
    from jsonargparse import Namespace

    spec = spec.as_dict() if isinstance(spec, Namespace) else spec
    return import_class(spec["class_path"])(**{**(spec.get("init_args") or {}), **extra})


def _fit_estimator(cfg, data, ckpt: Path) -> None:
    """Train the configured LightningModule (a supernet, a hypernet) unless its checkpoint exists."""
    if cfg.fit.model is None or ckpt.is_file():
        return
    module = _instantiate(cfg.fit.model, input_shape=data.input_shape, num_classes=data.num_classes)
    trainer = pl.Trainer(max_epochs=cfg.fit.max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator=cfg.accelerator, devices=1,
                         deterministic=cfg.deterministic)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt)
    val = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k == "val_acc"}
    print(f"[1/4] trained {type(module).__name__} for {cfg.fit.max_epochs} epochs in "
          f"{time.perf_counter() - start:.0f} s {val}; {ckpt}", flush=True)


LADDER = (2, 4, 8, 16, 32, 64, 128, 256, 512)


def dense_ladder(front: list[dict], data, epochs: int, lr: float, out: Path, most: int = 4,
                 accelerator: str = "cpu") -> list[dict]:
    """The one-hidden-layer MLPs of the ladder (widths 2..512) nearest in FLOPs to the retrained front's
    candidates (at most ``most``, spread over the front), trained the same way: where the found
    networks stand against dense ones of their cost."""
    from evolution import seeds

    n_out = data.num_classes
    specs = {}
    for w in LADDER:
        space = seeds.space_for_spec(f"mlp:{w}", tuple(data.input_shape), n_out)
        g = seeds.build(f"mlp:{w}", space)
        specs[f"mlp:{w}"] = (g, cost.flops(g).total)
    near = []
    for c in sorted(front, key=lambda c: c["flops"]):
        name = min(specs, key=lambda n: abs(math.log(specs[n][1]) - math.log(max(c["flops"], 1))))
        if name not in near:
            near.append(name)
    if len(near) > most:  # spread: the cheapest, the dearest and evenly between
        near = [near[round(i * (len(near) - 1) / (most - 1))] for i in range(most)]
    rows = []
    for name in near:
        g, flops = specs[name]
        cache = out / name.replace(":", "-") / "result.json"  # a rerun of a finished run retrains nothing
        if cache.is_file() and json.loads(cache.read_text()).get("settings") == [epochs, lr]:
            res = json.loads(cache.read_text())["result"]
        else:
            res = retrain(g, data, cache.parent, epochs, lr, 0, accelerator)
            cache.write_text(json.dumps({"settings": [epochs, lr], "result": res}))
        rows.append({"name": name, **res, "flops": flops, "params": cost.parameters(g), "edges": g.n_edges})
    return rows


def run(args: list[str]) -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(val_dataloader|validation_step|weights_only|LeafSpec|num_workers).*")
    parser = build_parser()
    cfg = parser.parse_args(args)
    run_dir = Path(cfg.run_dir)
    with rundir.locked(run_dir, run_dir / "search"):  # one run per directory: its fit, search and verify
        _run(cfg, parser, run_dir)


def _run(cfg, parser, run_dir: Path) -> None:
    started = time.perf_counter()
    data = _instantiate(cfg.data)
    ckpt = Path(cfg.fit.checkpoint or run_dir / "estimator.ckpt")
    _fit_estimator(cfg, data, ckpt)
    # The estimator searched with is the one trained in step 1: it gets that checkpoint.
    estimator = build_estimator(placed(cfg).estimator.as_dict(), data, str(ckpt), "--estimator")
    search_dir = run_dir / "search"
    settings = SearchSettings(**{**cfg.search.as_dict(), "run_dir": str(search_dir), "progress": False})
    plain = json.loads(parser.dump(cfg, format="json", skip_check=True))
    from evolution.train_estimator import rank_check_truth

    search = Search(settings, data, estimator, config={"data": plain["data"], "estimator": plain["estimator"]},
                    rank_truth=rank_check_truth(data, settings))
    resume = search.exists()
    if resume:  # refuse another search's directory before its config.yaml is replaced
        search.saved_state()
    search_dir.mkdir(parents=True, exist_ok=True)
    (search_dir / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))
    t = time.perf_counter()
    with deterministic(cfg.deterministic):
        finished = search.run(resume=resume)
    if not finished:
        raise KeyboardInterrupt
    print(f"[2/4] searched {search.iteration} iterations ({search.next_id} candidates) in {time.perf_counter() - t:.0f} s;"
          f" estimated front of {len(search.archive)}, hypervolume {search.hv[-1]:.4f}", flush=True)
    t = time.perf_counter()
    doc = verify(str(search_dir), cfg.verify.top_k, cfg.verify.epochs, cfg.verify.lr, accelerator=cfg.accelerator,
                 progress=False)
    print(f"[3/4] verified {len(doc['candidates'])} candidates in {time.perf_counter() - t:.0f} s: Kendall tau "
          f"{doc['kendall_tau']:.3f}, Spearman {doc['spearman']:.3f}, precision@{cfg.verify.top_k} "
          f"{doc['precision_at_k']:.2f}", flush=True)
    front = [c for c in doc["candidates"] if c["on_front"]]
    best = max(front, key=lambda c: (c["val_acc"], -c["flops"]))
    from evolution.export import export

    exported = export(str(search_dir / "verify" / str(best["id"])), "torch")
    dense = dense_ladder(front, data, cfg.verify.epochs, cfg.verify.lr, run_dir / "baseline", accelerator=cfg.accelerator)
    from evolution.plots import plot_verify

    plot_verify(doc["candidates"], search_dir / "verify.png", dense)
    print(f"[4/4] exported candidate {best['id']} to {exported}; dense MLPs of the front's cost trained the same way")
    print(f"\nretrained front ({cfg.verify.epochs} epochs each) among the dense MLPs nearest in FLOPs")
    print(f"{'candidate':>10} {'val acc':>8} {'test acc':>8} {'FLOPs':>9} {'params':>8} {'edges':>7} {'estimate':>9}")
    rows = [(c["flops"], 0, c) for c in front] + [(d["flops"], 1, d) for d in dense]
    for _, is_dense, c in sorted(rows, key=lambda r: (r[0], r[1])):
        name = c["name"] if is_dense else c["id"]
        est = "" if is_dense else f"{c['estimate']:.4f}" + (" *" if c is best else "")
        print(f"{name:>10} {c['val_acc']:>8.4f} {c['test_acc']:>8.4f} {c['flops']:>9} {c['params']:>8} "
              f"{c['edges']:>7} {est:>9}")
    summary = {"best": best, "dense": dense, "kendall_tau": doc["kendall_tau"], "spearman": doc["spearman"],
               "precision_at_k": doc["precision_at_k"], "hypervolume": search.hv, "seconds": time.perf_counter() - started}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n* best: exported to {exported} (load it with torch.export.load(path).module())")
    print(f"files: {search_dir}/history.jsonl, front.json, front.png, verify.json, verify.png; {run_dir}/summary.json; "
          f"total {time.perf_counter() - started:.0f} s")


def main(args: list[str] | None = None) -> None:
    """``python -m evolution run --config configs/run/digits.yaml [--run_dir DIR]``"""
    run(list(sys.argv[1:] if args is None else args))
