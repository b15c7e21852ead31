"""Verify a search: retrain its best candidates standalone and check the estimator's ranking.

Picks the top-k candidates by estimate plus the estimated Pareto front of a run directory, retrains
each as a standalone ``SparseNet`` with Lightning (``GenomeModule``), and writes ``verify.json``
(per candidate: estimate, retrained validation and test accuracy, FLOPs, parameters, edges,
seconds; Kendall tau, Spearman and precision@k between estimate and truth) and ``verify.png``.
Finished candidates are kept: a stopped verify resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from evolution import rundir
from evolution.cli import instantiate
from evolution.estimators import Initializer, build_estimator, restore_estimator
from evolution.executor import Failed, LocalExecutor, RayExecutor, make_executor
from evolution.genome import Genome
from evolution.rundir import RunDir
from evolution.train import GenomeModule

INITS = ("scratch", "inherited", "estimator")


def load_data(run_dir: Path):
    """The DataModule a search ran on, from its ``config.yaml``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    cfg = parser.parse_object({"data": rundir.read_config(run_dir).get("data")})
    return instantiate(parser, cfg).data


def candidates(run_dir: Path, top_k: int, state: dict | None = None) -> list[dict]:
    """History records of the top-k by estimate and of the estimated front (ids ascending), as the
    search state's last committed iteration has them."""
    files = RunDir(run_dir)
    state = files.read_state() if state is None else state
    ok = [r for r in files.records(state) if r["error"] is None]
    front = {d["id"] for d in state["archive"]}
    best = {r["id"] for r in sorted(ok, key=lambda r: (-r["score"], r["id"]))[:top_k]}
    chosen = [dict(r, on_front=r["id"] in front, in_top_k=r["id"] in best) for r in ok if r["id"] in best | front]
    for r in chosen:
        if not (run_dir / "genomes" / f"{r['id']}.json").is_file():
            raise FileNotFoundError(f"candidate {r['id']}: {run_dir}/genomes/{r['id']}.json is missing; "
                                    "the run directory is incomplete")
    return chosen


def _inherited_state(state: dict, cid: int) -> dict | None:
    for c in state["population"] + state["archive"]:
        if c["id"] == cid and c.get("state") is not None:
            return c["state"]
    return None


def search_estimator(run_dir: Path, data, state: dict | None = None) -> Initializer:
    """The search's estimator as the search left it, to start networks from its predictions: built
    from ``config.yaml``, with what it learned while searching (a hypernet's population updates) from
    the search state (``state``, else read from ``state.pt``). A search of ``python -m evolution
    run`` gets the checkpoint that run trained."""
    from evolution.cli import import_class

    path = run_dir / "config.yaml"
    cfg = rundir.read_config(run_dir)
    spec = cfg.get("estimator")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{path} names no estimator (class_path); is it a search's run directory?")
    if not hasattr(import_class(spec["class_path"]), "initialize"):
        raise ValueError(f"the search's estimator {spec['class_path']} cannot start networks from its predictions "
                         "(it has no initialize); use --init scratch or inherited")
    ckpt = None
    if isinstance(cfg.get("fit"), dict):  # a run's search: its estimator's checkpoint is the run's, not in init_args
        ckpt = cfg["fit"].get("checkpoint") or str(run_dir.parent / "estimator.ckpt")
    est = build_estimator(spec, data, ckpt, str(path))
    state = RunDir(run_dir).read_state() if state is None else state
    restore_estimator(est, state.get("estimator"), run_dir / "state.pt")
    return est


def retrain(genome: Genome, data, out_dir: Path, epochs: int, lr: float, seed: int, accelerator: str,
            state: dict | None = None, initializer: Initializer | None = None) -> dict:
    """Standalone training of one genome; its checkpoint goes to ``out_dir/model.ckpt``."""
    pl.seed_everything(seed, verbose=False)
    module = GenomeModule(genome.to_json(), data.input_shape, data.num_classes, lr=lr, scheduler="cosine", seed=seed)
    if state is not None:
        module.net.load_keyed(state)
    if initializer is not None:
        module.net.set_weights(initializer.initialize(genome).weights())
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator=accelerator, devices=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(validation_step|weights_only|LeafSpec).*")
        trainer.fit(module, train_dataloaders=data.train_dataloader())
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    genome.save(out_dir / "genome.json")
    trainer.save_checkpoint(out_dir / "model.ckpt")
    module.eval()
    acc = {}
    with torch.no_grad():
        for split in ("val", "test"):
            x, y = data.tensors(split)
            acc[split] = float((module(x.to(module.device)).argmax(1).cpu() == y).float().mean())
    return {"val_acc": acc["val"], "test_acc": acc["test"], "train_seconds": seconds}


def _retrain_job(shared: tuple, job: tuple) -> dict:
    data, epochs, lr, seed, accelerator, initializer = shared
    genome, out_dir, state = job
    return retrain(genome, data, out_dir, epochs, lr, seed, accelerator, state, initializer)


def rank_figures(est: np.ndarray, truth: np.ndarray, k: int) -> dict:
    """Kendall tau, Spearman and precision@k of estimates against retrained accuracies."""
    if len(est) < 2:
        return {"kendall_tau": float("nan"), "spearman": float("nan"), "precision_at_k": float("nan")}
    k = min(k, len(est))
    top_e, top_t = set(np.argsort(-est)[:k].tolist()), set(np.argsort(-truth)[:k].tolist())
    return {"kendall_tau": float(kendalltau(est, truth)[0]), "spearman": float(spearmanr(est, truth)[0]),
            "precision_at_k": len(top_e & top_t) / k if k else float("nan")}


def verify(run_dir: str, top_k: int = 10, epochs: int = 20, lr: float = 3e-3, init: str = "scratch", seed: int = 0,
           accelerator: str = "cpu", progress: bool = True, initializer: Initializer | None = None,
           executor: str = "local", ray_address: str | None = None, ray_cpus: float = 1, ray_gpus: float = 0,
           ray_retries: int = 1) -> dict:
    """Retrain the top-k and the front of ``run_dir`` (resumable); returns and writes ``verify.json``.

    Args:
        run_dir: a search's run directory.
        top_k: candidates taken by estimate (the estimated front is added).
        epochs: standalone training epochs per candidate (Adam, cosine schedule).
        lr: learning rate.
        init: ``scratch``, ``inherited`` (the weights the search's estimator trained, where kept) or
            ``estimator`` (the predictions of the search's estimator as the search left it, e.g. a
            hypernet after its population updates: ``search_estimator``); with ``initializer``
            given, ``predicted``. Starting from an estimator's own weights retrains faster but
            leans the truth towards that estimator: ``scratch`` checks its ranking without bias.
        initializer: starts each network from predicted weights, chosen by class_path, e.g.
            ``hypernet.estimator.HypernetEstimator`` with ``init_args: {checkpoint: ...}``.
        seed: training seed.
        accelerator: Lightning accelerator.
        progress: print a line per candidate.
        executor: ``local`` retrains the candidates one after another; ``ray`` as Ray tasks (the
            same figures: each is seeded by ``seed`` alone), written to verify.json as each finishes.
            Across machines the run directory must be on a shared file system. A candidate whose
            retraining fails on every try stops verify (those done are kept; a rerun resumes).
        ray_address, ray_cpus, ray_gpus, ray_retries: as ``SearchSettings``'.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # a line per candidate is enough
    if top_k < 0 or epochs < 0:
        raise ValueError(f"top_k {top_k}, epochs {epochs}: expected >= 0 (top_k 0 verifies the estimated front only)")
    if epochs == 0 and init == "scratch" and initializer is None:  # untrained random networks verify nothing
        raise ValueError("epochs 0 with init scratch would score untrained networks; give epochs >= 1 (epochs 0 "
                         "only scores the weights of --init inherited, estimator or an --initializer)")
    if initializer is not None:
        init = "predicted"
    elif init not in INITS:
        raise ValueError(f"init {init!r}: expected one of {', '.join(INITS)}")
    run = Path(run_dir)
    with rundir.locked(run):
        return _verify(run, top_k, epochs, lr, init, seed, accelerator, progress, initializer,
                       make_executor(executor, ray_address, ray_cpus, ray_gpus, ray_retries))


def _verify(run: Path, top_k: int, epochs: int, lr: float, init: str, seed: int, accelerator: str, progress: bool,
            initializer: Initializer | None, ex: LocalExecutor | RayExecutor) -> dict:
    files = RunDir(run)
    search_state = files.read_state()  # a damaged state or a cut history is refused here, as resume refuses it
    files.rebuild(search_state)  # the derived files (front, genomes) as the state has them
    chosen = candidates(run, top_k, search_state)
    data = load_data(run)
    out = run / "verify.json"
    settings = {"top_k": top_k, "epochs": epochs, "lr": lr, "init": init, "seed": seed}
    if initializer is not None:  # candidates retrained from two initializers do not belong in one verify.json
        settings["initializer"] = f"{type(initializer).__module__}.{type(initializer).__name__}"
        if getattr(initializer, "path", None) is not None:  # by content: a checkpoint retrained in place differs
            digest = hashlib.sha1(Path(initializer.path).read_bytes()).hexdigest()[:16]
            settings["initializer_checkpoint"] = f"{Path(initializer.path).resolve()} sha1:{digest}"
    if init == "estimator":
        # The estimator keeps learning if the search resumes: candidates retrained from another
        # iteration's estimator do not belong in one verify.json.
        settings["estimator_iteration"] = search_state["iteration"]
    doc = json.loads(out.read_text()) if out.is_file() else {}
    if doc and doc.get("settings") != settings:
        raise ValueError(f"{out} was made with other settings {doc.get('settings')}; move it away to verify anew")
    # Retrained candidates the current choice leaves out (the search went on and they fell off the
    # front or out of the top-k) are kept apart, not counted, and reused if chosen again.
    done = {c["id"]: c for c in doc.get("candidates", []) + doc.get("former_candidates", [])}
    if init == "estimator" and any(r["id"] not in done for r in chosen):
        initializer = search_estimator(run, data, search_state)
    if hasattr(initializer, "check_data"):  # predictions for another dataset's inputs would mean nothing
        initializer.check_data(data)
    todo = [r for r in chosen if r["id"] not in done]
    jobs = [(Genome.load(run / "genomes" / f"{r['id']}.json"), run / "verify" / str(r["id"]),
             _inherited_state(search_state, r["id"]) if init == "inherited" else None) for r in todo]
    for i, res in ex.imap(_retrain_job, (data, epochs, lr, seed, accelerator, initializer), jobs):
        r, state = todo[i], jobs[i][2]
        if isinstance(res, Failed):
            raise RuntimeError(f"retraining candidate {r['id']} failed: {res.error}")
        done[r["id"]] = {"id": r["id"], "estimate": r["score"], **res, "flops": r["flops"], "params": r["params"],
                         "edges": r["edges"], "estimate_seconds": r["seconds"], "on_front": r["on_front"],
                         "in_top_k": r["in_top_k"], "inherited": state is not None}
        doc = _write(out, run, settings, chosen, done, top_k)
        if progress:
            n = sum(c["id"] in done for c in chosen)
            print(f"[{n}/{len(chosen)}] candidate {r['id']}: estimate {r['score']:.4f}, retrained "
                  f"val {res['val_acc']:.4f} test {res['test_acc']:.4f} ({res['train_seconds']:.1f} s)", flush=True)
    doc = _write(out, run, settings, chosen, done, top_k)  # the flags of the current choice, also when none trained
    from evolution.plots import plot_verify

    plot_verify(doc["candidates"], run / "verify.png")
    _log_to_wandb(run, doc)
    return doc


def _write(out: Path, run: Path, settings: dict, chosen: list[dict], done: dict[int, dict], top_k: int) -> dict:
    """``verify.json`` (atomically): the chosen candidates retrained so far, their front and top-k
    flags as the search stands now, their rank figures, and the retrained ones no longer chosen."""
    ids = {r["id"] for r in chosen}
    cands = [{**done[r["id"]], "on_front": r["on_front"], "in_top_k": r["in_top_k"]} for r in chosen if r["id"] in done]
    former = [{**c, "on_front": False, "in_top_k": False} for i, c in sorted(done.items()) if i not in ids]
    est, truth = np.array([c["estimate"] for c in cands]), np.array([c["val_acc"] for c in cands])
    doc = {"run_dir": str(run), "settings": settings, **rank_figures(est, truth, top_k), "candidates": cands,
           **({"former_candidates": former} if former else {})}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out)
    return doc


def _log_to_wandb(run: Path, doc: dict) -> None:
    """Into the search's own W&B run, when the search logged to W&B."""
    from evolution.tracking import Tracker, WandbSettings

    wb = (rundir.read_config(run).get("search") or {}).get("wandb") or {}
    settings = WandbSettings(**{k: (tuple(v) if k == "tags" else v) for k, v in wb.items()})
    if settings.project is None:
        return
    tracker = Tracker(settings, run, job="verify")
    tracker.log_verify(doc, run / "verify.png")
    tracker.close()


def main(args: list[str] | None = None) -> None:
    """``python -m evolution verify RUN_DIR [--top_k 10] [--epochs 20]``"""
    import sys

    from jsonargparse import CLI

    args = list(sys.argv[1:] if args is None else args)
    if "--run_dir" in args:  # RUN_DIR may also be given as --run_dir RUN_DIR
        i = args.index("--run_dir")
        args = args[i + 1:i + 2] + args[:i] + args[i + 2:]
    args = ["--top_k" if a == "--top-k" else a for a in args]
    if not args or args[0].startswith("-") and args[0] not in ("-h", "--help"):
        raise ValueError("verify needs a run directory: python -m evolution verify RUN_DIR [--top_k 10]")
    doc = CLI(verify, args=args, exit_on_error=False)
    print(f"verified {len(doc['candidates'])} candidates: Kendall tau {doc['kendall_tau']:.3f}, Spearman "
          f"{doc['spearman']:.3f}, precision@{doc['settings']['top_k']} {doc['precision_at_k']:.2f}; "
          f"{doc['run_dir']}/verify.json, verify.png")
