"""What a search finds per CPU-second: every estimator as an arm of the same search, against
training every candidate, random search and dense MLP ladders.

Each arm is a real ``Search`` (same grid, seeds and settings) whose estimator is named by an arm file
``benchmarks/arms/NAME.yaml`` (one section per preset: ``estimator`` and optionally ``fit``, the
LightningModule trained first, its cost counted; ``sampler: random`` draws children from the initial
sampler instead of mutating; ``budget_factor`` scales the budget). ``train-full`` is the truth recipe
itself: every candidate trained as the truth retrains (``TrainEstimator``, Adam, cosine to 0, the
preset's epochs and batch), so its archive after each iteration draws the reference anytime curve.
Every arm runs until its process CPU-seconds (``time.process_time``, torch on one thread) reach the
preset's budget; then its estimated front and top 10 are retrained by the same recipe (seeded per
genome, cached per seed: a genome is trained once) and scored on the held-out test split.

    python -m benchmarks.search_cost --preset digits            # 5 seeds; resumable: rerun to continue
    python -m benchmarks.search_cost --preset mnist-t10k --seeds 3 --arms train-low,supernet
    python -m benchmarks.search_cost --preset digits --data '{"class_path": "evolution.data.CSVDataModule",
        "init_args": {"path": "my.csv"}}'                       # any DataModule, the preset's settings

Writes ``benchmarks/results/search_cost.json`` (+ ``.md``, ``.png``); work files under
``runs/benchmarks/search_cost/`` (a finished arm is not rerun; a killed one loses its candidate in flight).
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import sys
import time
import traceback
from pathlib import Path

import torch
import yaml

from benchmarks import common, search_cost_report as report
from benchmarks.metering import Ledger, Metered, Truth
from evolution import cost, seeds
from evolution.cli import bad_input, instantiate, one_line
from evolution.estimators import build_estimator
from evolution.genome import Genome
from evolution.sampling import random_genome
from evolution.search import Search, SearchSettings

REPO = Path(__file__).resolve().parents[1]
ARMS = Path(__file__).parent / "arms"
ARM_KEYS = {"estimator", "fit", "budget_factor", "sampler"}
FIT_KEYS = {"model", "max_epochs", "max_steps"}
LADDER = [2, 4, 8, 16, 32, 64, 128, 256, 512]
DIGITS = {"class_path": "evolution.data.DigitsDataModule", "init_args": {"batch_size": 64}}
PRESETS: dict[str, dict] = {
    "digits": {"data": DIGITS, "seeds": 5, "budget": 30.0, "epochs": 20, "batch_size": 64,
               "search": {"levels": 2, "width": 64, "density": 0.2, "population": 16, "children": 8,
                          "init": ["random", "mlp:32", "random", "mlp:16"]},
               "reference_point": [1.0, 6.0],
               "dense": [f"mlp:{w}" for w in LADDER] + [f"mlp:{w},{w}" for w in LADDER[:-1]]
               + ["conv:4x3", "conv:8x3", "conv:8x3s2,mlp:32"],
               "arms": ["train-low", "supernet", "hypernet", "random", "random-supernet", "train-full"]},
    "mnist-t10k": {"data": {"class_path": "evolution.data.IDXDataModule",
                            "init_args": {"root": "mnist-t10k", "batch_size": 128, "val_fraction": 0.1,
                                          "test_fraction": 0.1}},
                   "seeds": 3, "budget": 60.0, "epochs": 5, "batch_size": 128,
                   "search": {"levels": 3, "width": 256, "density": 0.05, "population": 16, "children": 8,
                              "init": ["random"]},
                   "reference_point": [1.0, 7.0],
                   "dense": [f"mlp:{w}" for w in LADDER] + [f"mlp:{w},{w}" for w in LADDER[:-2]]
                   + ["conv:4x5s2", "conv:8x5s2,mlp:64"],
                   "arms": ["train-low", "supernet", "hypernet", "random", "train-full"]},
    # The test suite's preset: every stage, seconds of work.
    "tiny": {"data": DIGITS, "seeds": 1, "budget": 1.5, "epochs": 1, "batch_size": 64,
             "search": {"levels": 1, "width": 16, "density": 0.3, "population": 4, "children": 2,
                        "init": ["random", "mlp:4"]},
             "reference_point": [1.0, 6.0], "dense": ["mlp:2", "mlp:8"],
             "arms": ["train-low", "random", "train-full"]},
}
TOP_K = 10


class RandomSearch(Search):
    """The initial sampler alone: each iteration draws ``children`` random genomes (same estimator,
    archive and files as the evolutionary search)."""

    def step(self) -> None:
        from evolution.mutations import Inheritance

        self.iteration += 1
        kids = [random_genome(self.space, self.rng, density=self.s.density) for _ in range(self.s.children)]
        cands = self._estimate(kids, [None] * len(kids), [Inheritance("random")] * len(kids))
        self._finish_iteration(cands)


def load_arm(name: str, preset: str) -> dict:
    path = ARMS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ARMS.glob("*.yaml")))
        raise ValueError(f"arm {name!r}: no {path.relative_to(REPO)} (arms: {known})")
    doc = yaml.safe_load(path.read_text()) or {}
    section = doc.get(preset) or doc.get("digits" if preset == "tiny" else preset)
    if not isinstance(section, dict):
        raise ValueError(f"arm {name!r}: {path.relative_to(REPO)} has no section for preset {preset!r}")
    fit = section.get("fit")
    if fit is not None and not isinstance(fit, dict):
        raise ValueError(f"arm {name!r}: {path.relative_to(REPO)} [{preset}]: fit must be a mapping ({', '.join(sorted(FIT_KEYS))})")
    # a misspelt key would otherwise be ignored and the arm run as another
    unknown = sorted(set(section) - ARM_KEYS) + sorted(f"fit.{k}" for k in set(fit or {}) - FIT_KEYS)
    if unknown:
        raise ValueError(f"arm {name!r}: {path.relative_to(REPO)} [{preset}]: unknown keys {', '.join(unknown)} "
                         f"(expected {', '.join(sorted(ARM_KEYS))}; fit: {', '.join(sorted(FIT_KEYS))})")
    return section


def build_data(spec: dict, seed: int, data_root: Path):
    """The preset's DataModule for ``seed``; bad data settings (a misspelt class or argument, a folder
    that is not there) are a one-line ``ValueError``, a bug inside the DataModule keeps its traceback."""
    from jsonargparse import ArgumentError, ArgumentParser
    import lightning.pytorch as pl

    args = dict(spec.get("init_args") or {}, seed=seed)
    if "root" in args and not Path(args["root"]).is_absolute():
        args["root"] = str(data_root / args["root"])
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    try:
        cfg = parser.parse_object({"data": {"class_path": spec["class_path"], "init_args": args}})
        return instantiate(parser, cfg).data
    except (ValueError, OSError, ArgumentError) as err:
        if not bad_input(err):
            raise
        raise ValueError(f"data {spec['class_path']}: {one_line(err)}") from err


def fit(spec: dict, data, ckpt: Path, seed: int) -> None:
    """Train the arm's LightningModule (a supernet, a hypernet) on the CPU; its checkpoint goes to ``ckpt``."""
    import logging

    import lightning.pytorch as pl

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    pl.seed_everything(seed, verbose=False)
    model_spec = _with_seed({**spec["model"], "init_args": dict(spec["model"].get("init_args") or {})}, seed)
    model = _class(model_spec["class_path"])(**model_spec["init_args"], input_shape=tuple(data.input_shape),
                                             num_classes=data.num_classes)
    limits = {k: spec[k] for k in ("max_epochs", "max_steps") if k in spec}
    trainer = pl.Trainer(**limits, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(ckpt)


def _class(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_arm(name: str, preset: str, cfg: dict, seed: int, data, truth: Truth, out: Path, budget: float,
            execution: dict | None = None) -> dict:
    """One arm on one seed, resumed from ``out``; returns its result (also written to result.json).
    ``execution``: SearchSettings' executor fields, for arms whose estimator trains candidates."""
    arm = load_arm(name, preset)
    budget = budget * float(arm.get("budget_factor", 1.0))
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "iterations.jsonl")
    fit_cpu = 0.0
    ckpt = out / "estimator.ckpt"
    if arm.get("fit"):
        done = [r for r in ledger.rows if r.get("fit")]
        if done and ckpt.is_file():
            fit_cpu = done[0]["cpu"]
        else:
            start = time.process_time()
            fit(arm["fit"], data, ckpt, seed)
            fit_cpu = time.process_time() - start
            ledger.add({"fit": True, "cpu": fit_cpu})
    if arm.get("estimator") == "truth":
        inner, metered_truth = truth, truth
    else:
        spec = dict(arm["estimator"])
        spec["init_args"] = dict(spec.get("init_args") or {})
        inner = build_estimator(spec, data, str(ckpt) if arm.get("fit") else None, f"arm {name}", seed=seed)
        metered_truth = None
    est = Metered(inner, out / "estimates.jsonl", metered_truth)
    # Only an arm whose estimator trains candidates itself takes the executor (the truth trains in process).
    execution = execution if hasattr(inner, "use_executor") and not isinstance(inner, Truth) else None
    settings = SearchSettings(run_dir=str(out / "search"), seed=seed, iterations=10**6, progress=False,
                              **(execution or {}),
                              objectives=("error", "flops"), **cfg["search"])
    search = (RandomSearch if arm.get("sampler") == "random" else Search)(settings, data, est)
    start = time.process_time()
    saved = -1
    if search.exists():
        search.load()
        saved = search.iteration
    # Iterations a kill left unsaved are run again (their estimates replay from estimates.jsonl).
    ledger.keep(lambda r: "iteration" not in r or r["iteration"] <= saved)
    iters = [r for r in ledger.rows if "iteration" in r]
    base = iters[-1]["cpu"] if iters else fit_cpu
    # A kill after the search saved an iteration but before its ledger row: charge its estimates' CPU
    # (the search loop's own share of that iteration is lost, a few per cent of it).
    last = iters[-1]["iteration"] if iters else -1
    base += sum(r["cpu"] for r in est.log.rows if last < r["iteration"] <= saved)

    def spent() -> float:
        return base + time.process_time() - start + est.replayed + est.remote

    def record() -> None:
        ok = _ok_records(search)
        top = [r["id"] for r in sorted(ok, key=lambda r: (-r["score"], r["id"]))[:TOP_K]]
        ledger.add({"iteration": search.iteration, "cpu": spent(), "archive": [c.id for c in search.archive],
                    "top": top, "hv_estimated": search.hv[-1]})

    if saved > last:
        record()
    if not search.exists():
        search.dir.mkdir(parents=True, exist_ok=True)
        (search.dir / "history.jsonl").write_bytes(b"")
        est.iteration = 0
        search.start()
        record()
    while spent() < budget:
        est.iteration = search.iteration + 1
        search.step()
        record()
    return finish(name, search, truth, ledger, out)


def _with_seed(spec: dict, seed: int) -> dict:
    """The class seeded by the run's seed where it takes one."""
    from inspect import signature

    if "seed" in signature(_class(spec["class_path"])).parameters:
        spec = {**spec, "init_args": {**spec["init_args"], "seed": seed}}
    return spec


def _ok_records(search: Search) -> list[dict]:
    lines = (search.dir / "history.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["error"] is None]


def finish(name: str, search: Search, truth: Truth, ledger: Ledger, out: Path) -> dict:
    """Retrain the final front and top 10 by the truth recipe; the arm's result."""
    records = {r["id"]: r for r in _ok_records(search)}
    iters = [r for r in ledger.rows if "iteration" in r]
    last = iters[-1]
    chosen = sorted(set(last["archive"]) | set(last["top"]))
    points = []
    for cid in chosen:
        g = Genome.load(search.dir / "genomes" / f"{cid}.json")
        t = truth.truth(g)
        points.append({"id": cid, "estimate": records[cid]["score"], "flops": records[cid]["flops"],
                       "val": t["val"], "test": t["test"], "on_front": cid in last["archive"]})
    fit_cpu = next((r["cpu"] for r in ledger.rows if r.get("fit")), 0.0)
    result = {"arm": name, "cpu_seconds": last["cpu"], "fit_cpu_seconds": fit_cpu, "iterations": search.iteration,
              "candidates": search.next_id, "points": points}
    if hasattr(getattr(search.estimator, "inner", None), "report"):  # e.g. early stopping's steps saved
        result["estimator_report"] = search.estimator.inner.report()
    if name == "train-full":  # its estimates are the truth: the anytime curve is free
        curve = []
        for r in iters:
            pts = [truth.truth(Genome.load(search.dir / "genomes" / f"{c}.json")) for c in set(r["archive"]) | set(r["top"])]
            fl = [records[c]["flops"] for c in set(r["archive"]) | set(r["top"])]
            curve.append([r["cpu"], [[p["test"], f] for p, f in zip(pts, fl)]])
        result["curve_points"] = curve
    (out / "result.json").write_text(json.dumps(result))
    return result


def dense_points(specs: list[str], data, truth: Truth) -> list[dict]:
    rows = []
    for spec in specs:
        space = seeds.space_for_spec(spec, tuple(data.input_shape), data.num_classes)
        g = seeds.build(spec, space)
        t = truth.truth(g)
        rows.append({"name": spec, "flops": cost.flops(g).total, "val": t["val"], "test": t["test"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.search_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits", help=f"one of {', '.join(PRESETS)}")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the preset's)")
    ap.add_argument("--seed", type=int, default=None, help="run this one seed only (several processes may each take one)")
    ap.add_argument("--arms", default=None, help="comma-separated arm names (default: the preset's)")
    ap.add_argument("--budget", type=float, default=None, help="CPU-seconds per arm (default: the preset's)")
    ap.add_argument("--data", default=None, help="a DataModule as YAML/JSON {class_path, init_args} (or a file)")
    ap.add_argument("--data-root", default=str(common.DATA_ROOT), help="root of relative data paths")
    ap.add_argument("--work", default=str(common.CACHE / "search_cost"), help="work files")
    ap.add_argument("--results", default=str(common.RESULTS), help="where the results go")
    ap.add_argument("--report-only", action="store_true", help="rebuild the JSON / page from finished arms")
    ap.add_argument("--executor", default="local", choices=("local", "ray"),
                    help="where arms whose estimator trains candidates (train-low, ...) train them; their "
                    "tasks' CPU-seconds are counted (train-full's truth trains in this process)")
    ap.add_argument("--ray-address", default=None, help="Ray cluster for --executor ray (default: a local Ray)")
    ap.add_argument("--profile", action="store_true", help="write each arm's cProfile (by cumulative time) to "
                    "WORK/PRESET/ARM/seedK/profile.txt")
    args = ap.parse_args(argv)
    try:
        cfg, arms, key = configure(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # CPU-seconds of one thread: the same meter for every arm
    # Profiled arms run slower inside their budget: kept apart from the published results.
    work = Path(args.work) / ("profile" if args.profile else "") / key
    n_seeds = args.seeds or cfg["seeds"]
    todo = [] if args.report_only else [args.seed] if args.seed is not None else range(n_seeds)
    for seed in todo:
        try:
            data = build_data(cfg["data"], seed, Path(args.data_root))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        truth = Truth(data, cfg["epochs"], cfg["batch_size"], seed, _cache(work, seed))
        for name in arms:
            out = work / name / f"seed{seed}"
            if (out / "result.json").is_file():
                continue
            t = time.perf_counter()
            try:
                prof = cProfile.Profile() if args.profile else None
                res = (prof.runcall if prof else _call)(run_arm, name, args.preset, cfg,
                                                         seed, data, truth, out, args.budget or cfg["budget"],
                                                         {"executor": args.executor, "ray_address": args.ray_address})
                if prof:
                    with open(out / "profile.txt", "w") as f:
                        pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
                print(f"[{key} seed {seed}] {name}: {res['iterations']} iterations, {res['candidates']} candidates, "
                      f"{res['cpu_seconds']:.1f} CPU-s ({time.perf_counter() - t:.0f} s wall)", flush=True)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # recorded, the benchmark goes on; a rerun retries it
                msg = f"{type(err).__name__}: {err}"
                (out / "error.json").write_text(json.dumps({"error": msg, "traceback": traceback.format_exc()}))
                print(f"[{key} seed {seed}] {name}: failed: {msg}", file=sys.stderr, flush=True)
        dense = dense_points(cfg["dense"], data, truth)
        (work / f"dense-seed{seed}.json").write_text(json.dumps(dense))
    doc = report.collect(work, key, cfg, arms, n_seeds)
    flags = list(argv if argv is not None else sys.argv[1:])
    if "--seed" in flags:  # the page names the command for all seeds (--seed K splits them over processes)
        i = flags.index("--seed")
        del flags[i:i + 2]
    results = work / "results" if args.profile else Path(args.results)
    report.write(doc, key, results, " ".join(["python -m benchmarks.search_cost"] + flags))
    return 0


def _call(fn, *args):
    return fn(*args)


def _cache(work: Path, seed: int) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    return work / f"truth-seed{seed}.jsonl"


def configure(args) -> tuple[dict, list[str], str]:
    """The preset's settings with the flags applied; one line (ValueError) for a bad name or spec."""
    if args.preset not in PRESETS:
        raise ValueError(f"preset {args.preset!r}: expected one of {', '.join(PRESETS)}")
    cfg = json.loads(json.dumps(PRESETS[args.preset]))
    key = args.preset
    if args.data:
        text = Path(args.data).read_text() if Path(args.data).is_file() else args.data
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"--data is not YAML/JSON: {str(err).splitlines()[0]}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str):
            raise ValueError("--data: expected {class_path: ..., init_args: {...}}")
        cfg["data"] = spec
        # Named by the class and a hash of the whole spec and preset: two CSVs never share work or truths.
        digest = hashlib.sha1(json.dumps([args.preset, spec], sort_keys=True).encode()).hexdigest()[:8]
        key = f"{spec['class_path'].rsplit('.', 1)[-1]}-{digest}"
    arms = args.arms.split(",") if args.arms else cfg["arms"]
    for name in arms:
        load_arm(name, args.preset)
    if args.seeds is not None and args.seeds < 1 or args.budget is not None and args.budget <= 0:
        raise ValueError("--seeds and --budget must be positive")
    return cfg, arms, key


if __name__ == "__main__":
    sys.exit(main())
