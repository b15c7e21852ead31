"""Parallel execution: candidates and verify's retraining as Ray tasks, the supernet fit under DDP.

On digits (a 2-level x 64 grid): verify of 8 candidates retrained for ``--verify-epochs`` each, in this
process and on a local Ray with 1 and with 2 workers (one CPU and one torch thread each; the median of
``--verify-rounds`` runs each); one ``train-full`` search generation (8 children, each trained
``--train-epochs`` epochs by the verify recipe as ``TrainEstimator``) on 1 and 2 workers; and the
supernet fit's epoch time under Lightning DDP with 2 CPU processes (gloo) against 1.
Ray's per-task overhead (``ray_task_overhead_fraction``) is measured on one-epoch tasks: 8 genomes of
the mnist-t10k grid (3 levels x 256), each trained one epoch on its 8,000 training images, on 1 Ray
worker and in process, ``--rounds`` times with the side going first alternating; the median of each
round's Ray time over its in-process time, less one. The same for verify's digits tasks is
``ray_verify_overhead_fraction``.
Wall-clock seconds, the variants back to back in one run.
Writes ``benchmarks/results/parallel.json`` and ``parallel.md``.

    python -m benchmarks.parallel [--verify-epochs 20] [--train-epochs 20] [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

DDP_SCRIPT = """
import json, sys, time, torch, lightning.pytorch as pl
from evolution.data import DigitsDataModule
from oneshot.module import SupernetModule

devices, epochs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
pl.seed_everything(0)
data = DigitsDataModule(seed=0, batch_size=64)
data.setup()
model = SupernetModule(data.input_shape, data.num_classes, levels=2, width=64, sampler="sandwich",
                       density=(0.05, 0.5), genomes_per_step=4, seed=0)
times = []

class Clock(pl.Callback):
    def on_train_epoch_start(self, trainer, module):
        self.t = time.perf_counter()
    def on_train_epoch_end(self, trainer, module):
        times.append(time.perf_counter() - self.t)

trainer = pl.Trainer(strategy="ddp" if devices > 1 else "auto", devices=devices, accelerator="cpu", max_epochs=epochs,
                     logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     limit_val_batches=0, callbacks=[Clock()])
trainer.fit(model, data)
if trainer.global_rank == 0:
    open(out, "w").write(json.dumps(times))
"""


def _search_dir(root: Path) -> Path:
    """A digits search's initial population of 8 candidates (configs/search/digits.yaml), for verify."""
    from evolution.__main__ import main as cli

    run = root / "search"
    assert cli(["search", "--config", str(REPO / "configs/search/digits.yaml"), "--population", "8", "--iterations",
                "0", "--estimator.init_args.steps", "20", "--search.progress", "false", "--run_dir", str(run)]) == 0
    return run


def _ray(cpus: int):
    import ray

    from evolution.executor import RayExecutor

    ray.shutdown()
    ex = RayExecutor(num_cpus=1, retries=0, local_cpus=cpus)
    ex.map(_warm, None, list(range(cpus)))  # workers started and torch imported before the clock
    return ex


def _warm(_, i: int) -> int:
    import evolution.verify  # noqa: F401  (what the tasks import)

    return i


def _verify(run: Path, root: Path, name: str, epochs: int, executor: str) -> float:
    from evolution.verify import verify

    copy = root / name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("verify*", ".lock"))
    t = time.perf_counter()
    doc = verify(str(copy), top_k=8, epochs=epochs, progress=False, executor=executor)
    assert len(doc["candidates"]) >= 8, len(doc["candidates"])
    return time.perf_counter() - t


def _train_estimator(data, epochs: int, batch_size: int, executor=None):
    """The verify recipe as a ``TrainEstimator``, its candidates on ``executor`` (None: in this process)."""
    from evolution.estimators import TrainEstimator

    est = TrainEstimator(data, epochs=epochs, batch_size=batch_size, schedule="cosine")
    if executor is not None:
        est.use_executor(executor)
    return est


def _generation(est, grid: tuple[int, int] = (2, 64), density: tuple[float, float] = (0.1, 0.3)) -> float:
    """Seconds ``est`` takes to estimate 8 genomes of ``grid`` (the same 8 on every call)."""
    from evolution.genome import SearchSpace
    from evolution.sampling import GenomeSampler

    data = est.data
    space = SearchSpace(tuple(data.input_shape), data.num_classes, *grid)
    genomes = GenomeSampler(space, "uniform", density, (0.5, 1.0), 0).sample(np.random.default_rng(1), 8)
    t = time.perf_counter()
    out = est.estimate(genomes)
    assert all(e.ok for e in out), [e.error for e in out]
    return time.perf_counter() - t


def _ddp(devices: int, epochs: int, root: Path) -> float:
    script, out = root / "ddp.py", root / f"ddp{devices}.txt"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(script), str(devices), str(epochs), str(out)], env=env, check=True,
                   capture_output=True)
    times = json.loads(out.read_text())
    return float(np.median(times[1:]))  # the first epoch pays start-up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.parallel", description=__doc__.splitlines()[0])
    ap.add_argument("--verify-epochs", type=int, default=20, help="verify's own default")
    ap.add_argument("--train-epochs", type=int, default=20)
    ap.add_argument("--ddp-epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=11, help="rounds of the one-epoch tasks (in process and on Ray)")
    ap.add_argument("--verify-rounds", type=int, default=3, help="verify runs per variant (their median)")
    ap.add_argument("--results", default=str(RESULTS))
    common.add_data_root(ap)
    args = ap.parse_args(argv)
    import ray

    from evolution.data import DigitsDataModule, IDXDataModule

    torch.set_num_threads(1)  # as each Ray task runs: the in-process column is one worker without Ray
    data = DigitsDataModule(seed=0, batch_size=64)
    data.setup()
    mnist = IDXDataModule(str(common.mnist_t10k(args.data_root)), seed=0, batch_size=128, val_fraction=0.1,
                          test_fraction=0.1)
    mnist.setup()
    root = Path(tempfile.mkdtemp(prefix="parallel-"))
    try:
        run = _search_dir(root)
        def verify_median(name: str, executor: str) -> float:  # a shared 2-core host: medians of --verify-rounds
            return float(np.median([_verify(run, root, f"{name}-{r}", args.verify_epochs, executor)
                                    for r in range(args.verify_rounds)]))

        t = {"verify_local": verify_median("v-local", "local"),
             "generation_local": _generation(_train_estimator(data, args.train_epochs, 64))}
        for cpus in (1, 2):
            ex = _ray(cpus)
            t[f"verify_ray{cpus}"] = verify_median(f"v-ray{cpus}", "ray")
            t[f"generation_ray{cpus}"] = _generation(_train_estimator(data, args.train_epochs, 64, ex))
            if cpus == 1:  # one estimator per side, kept (put in Ray's store once, as in a search)
                ests = [_train_estimator(mnist, 1, 128), _train_estimator(mnist, 1, 128, ex)]

                def one_round(r: int) -> tuple[float, float]:  # (in process, on Ray); the side that goes first alternates
                    secs = {i: _generation(ests[i], (3, 256), (0.02, 0.1)) for i in ((0, 1) if r % 2 == 0 else (1, 0))}
                    return secs[0], secs[1]

                rounds = [one_round(r) for r in range(args.rounds)]
                t["one_epoch_local"], t["one_epoch_ray1"] = (float(np.median(c)) for c in zip(*rounds))
                overhead = [b / a - 1 for a, b in rounds]  # paired: each round's two sides ran back to back
                overhead_s = [(b - a) / 8 for a, b in rounds]
            ray.shutdown()
        t["ddp_epoch_1"] = _ddp(1, args.ddp_epochs, root)
        t["ddp_epoch_2"] = _ddp(2, args.ddp_epochs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    doc = {"ray_speedup_2_workers": t["verify_ray1"] / t["verify_ray2"],
           "ray_generation_speedup_2_workers": t["generation_ray1"] / t["generation_ray2"],
           "ray_task_overhead_fraction": float(np.median(overhead)),
           "ray_task_overhead_fraction_rounds": [round(o, 4) for o in overhead],
           "ray_task_overhead_seconds": float(np.median(overhead_s)),
           "ray_verify_overhead_fraction": t["verify_ray1"] / t["verify_local"] - 1,
           "ddp_epoch_time_ratio": t["ddp_epoch_2"] / t["ddp_epoch_1"],
           "seconds": {k: round(v, 3) for k, v in t.items()},
           "settings": {"verify_candidates": 8, "verify_epochs": args.verify_epochs, "generation_children": 8,
                        "rounds": args.rounds, "verify_rounds": args.verify_rounds,
                        "one_epoch_task": "mnist-t10k, 3 x 256 grid, density 0.02-0.1, 1 epoch of 8,000, batch 128",
                        "train_epochs": args.train_epochs, "ddp_epochs": args.ddp_epochs, "cpus": os.cpu_count(),
                        "ray": ray.__version__, "torch": torch.__version__}}
    rows = [("verify, 8 candidates", "ray_speedup_2_workers", t["verify_local"], t["verify_ray1"], t["verify_ray2"]),
            ("train-full generation, 8 children", "ray_generation_speedup_2_workers", t["generation_local"],
             t["generation_ray1"], t["generation_ray2"])]
    lines = ["# Parallel execution: Ray workers and DDP", "",
             f"Made by `benchmarks/parallel.py` (`benchmarks/results/parallel.json`); {time.strftime('%Y-%m-%d')}, "
             f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, one torch thread per worker.", "",
             "| job | in process (s) | Ray, 1 worker (s) | Ray, 2 workers (s) | speed-up 2 vs 1 worker |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} | {doc[key]:.2f} (`{key}`) |" for name, key, a, b, c in rows]
    lines += ["", f"Ray's overhead on a one-epoch task (a genome of the mnist-t10k grid trained one epoch on 8,000 "
              f"images, {t['one_epoch_local'] / 8:.2f} s in process; the median over {args.rounds} rounds of 8 tasks a side, "
              "each round's Ray time over its in-process time, the side going first alternating): "
              f"{100 * doc['ray_task_overhead_fraction']:.1f} % (`ray_task_overhead_fraction`), "
              f"{1000 * doc['ray_task_overhead_seconds']:.0f} ms per task (`ray_task_overhead_seconds`); on verify's {args.verify_epochs}-epoch digits task "
              f"({t['verify_local'] / 8:.2f} s in process, the verify job's own start-up included): "
              f"{100 * doc['ray_verify_overhead_fraction']:.1f} % (`ray_verify_overhead_fraction`).",
              f"Supernet fit epoch under DDP, 2 processes against 1: {t['ddp_epoch_2']:.2f} s / {t['ddp_epoch_1']:.2f} s "
              f"= {doc['ddp_epoch_time_ratio']:.2f} (`ddp_epoch_time_ratio`; each process trains the same genomes on "
              "half of each epoch's batches).", ""]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parallel.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "parallel.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
