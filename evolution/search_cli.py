"""``python -m evolution search``: the command line of the search loop (``evolution.search``).

Settings at the top level (``--search.*``, with the short flags the README promises), the data and the
estimator by class path; ``--resume RUN_DIR`` reads the run's config.yaml. The run directory is locked
before anything is written in it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from evolution import rundir
from evolution.device import add_device_arguments, deterministic, placed
from evolution.estimators import Estimator
from evolution.search import Search, SearchSettings
from evolution.train_estimator import rank_check_truth


def build_parser():
    """The ``search`` command's parser: settings at the top, ``data`` and ``estimator`` by class path."""
    import lightning.pytorch as pl
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="python -m evolution search", exit_on_error=False,
                            description="Estimate-driven neuron-level search (NSGA-II ranking, aging).")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (configs/search/*.yaml)")
    parser.add_argument("--resume", type=str | None, default=None,
                        help="resume the search in this run directory (its config.yaml is read when --config is not given)")
    parser.add_class_arguments(SearchSettings, "search", fail_untyped=True)
    parser.add_subclass_arguments(pl.LightningDataModule, "data", required=True)
    parser.add_subclass_arguments(Estimator, "estimator", required=True)
    parser.link_arguments("data", "estimator.init_args.data", apply_on="instantiate")
    add_device_arguments(parser)
    return parser


def main(args: list[str] | None = None) -> None:
    """``python -m evolution search --config configs/search/digits.yaml [--search.iterations N] [--resume DIR]``"""
    from evolution.cli import check_config_files, instantiate

    args = list(sys.argv[1:] if args is None else args)
    # The short flags the README promises, spelled as the nested keys the parser knows.
    short = {"--run_dir", "--seed", "--iterations", "--population", "--children"}
    args = [("--search." + a[2:]) if a.split("=")[0] in short else a for a in args]
    args = [p for a in args for p in (a.split("=", 1) if a.startswith("--resume=") else [a])]
    if "--resume" in args:
        i = args.index("--resume")
        if i + 1 == len(args) or args[i + 1].startswith("--") or not args[i + 1]:
            raise ValueError("--resume needs the run directory of the search to continue: --resume RUN_DIR")
    if "--resume" in args and not any(a.startswith("--config") for a in args):
        run_dir = Path(args[args.index("--resume") + 1])
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"run directory {run_dir} has no config.yaml to resume from")
        args = ["--config", str(run_dir / "config.yaml")] + args
        check_config_files(args)
    parser = build_parser()
    cfg = parser.parse_args(args)
    if cfg.resume:
        cfg.search.run_dir = cfg.resume
    elif os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        # Under `wandb agent` every trial gets its own run directory.
        cfg.search.run_dir = str(Path(cfg.search.run_dir) / os.environ["WANDB_RUN_ID"])
    plain = json.loads(parser.dump(cfg, format="json"))
    init = instantiate(parser, placed(cfg))
    settings = init.search if isinstance(init.search, SearchSettings) else SearchSettings(**vars(init.search))
    search = Search(settings, init.data, init.estimator, config={"data": plain["data"], "estimator": plain["estimator"]},
                    rank_truth=rank_check_truth(init.data, settings))
    with rundir.locked(search.dir):  # before config.yaml: a second process must not touch the directory
        if not cfg.resume and search.exists():
            raise ValueError(f"run directory {search.dir} already holds a search; resume it with --resume "
                             f"{search.dir} or choose another --run_dir")
        if not cfg.resume:
            (search.dir / "config.yaml").write_text(parser.dump(cfg, skip_check=True).replace("resume: null\n", ""))
        with deterministic(cfg.deterministic):
            finished = search.run(resume=bool(cfg.resume))
        if not finished:
            raise KeyboardInterrupt
    best = min(search.archive, key=lambda c: 1 - c.score)
    print(f"search finished: {search.iteration} iterations, front of {len(search.archive)}, hypervolume "
          f"{search.hv[-1]:.4f}, best error {1 - best.score:.4f} ({best.flops} FLOPs); files in {search.dir}")
