"""``python -m evolution sweep CONFIG --count N``: run a W&B sweep config without the W&B service.

The same YAML that ``wandb sweep`` takes (``method``, ``parameters``, ``command``): grid and random
methods are sampled here (``bayes`` needs the service and falls back to random, with a warning),
each trial runs the sweep's ``command`` with ``${args}`` as ``--key=value`` and logs to W&B in
whatever mode the environment sets (``WANDB_MODE=offline`` works with no login). Each trial gets
its own output directory, ``TRIALS_DIR/trial-K``.
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import yaml

METHODS = ("grid", "random", "bayes")
# W&B's distributions over min/max that this driver draws from (log_uniform: min/max are natural
# logs; *_values: the values themselves; q_*: rounded to multiples of q, default 1).
DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values")


def load_sweep(path: str | Path) -> dict:
    """A sweep YAML, checked for the keys a driver needs; ``ValueError`` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    sweep = yaml.safe_load(path.read_text())
    if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict) or not sweep.get("command"):
        raise ValueError(f"{path}: a sweep config needs 'parameters' (a mapping) and 'command' (a list)")
    if sweep.get("method", "random") not in METHODS:
        raise ValueError(f"{path}: method {sweep.get('method')!r}: expected one of {', '.join(METHODS)}")
    for name, spec in sweep["parameters"].items():
        if not isinstance(spec, dict) or not ({"values", "value"} & set(spec) or {"min", "max"} <= set(spec)):
            raise ValueError(f"{path}: parameter {name!r} needs 'values', 'value' or 'min'/'max'")
        dist = spec.get("distribution", "categorical" if "values" in spec else "uniform")
        if "values" not in spec and "value" not in spec and dist not in DISTRIBUTIONS:
            raise ValueError(f"{path}: parameter {name!r}: distribution {dist!r} is not drawn here; "
                             f"expected one of {', '.join(DISTRIBUTIONS)}, or 'values'")
        if "probabilities" in spec and len(spec["probabilities"]) != len(spec.get("values", [])):
            raise ValueError(f"{path}: parameter {name!r}: one probability per value expected")
    return sweep


def _draw(spec: dict, rng: np.random.Generator):
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        if "probabilities" not in spec:
            return spec["values"][int(rng.integers(len(spec["values"])))]
        p = np.asarray(spec["probabilities"], dtype=float)
        return spec["values"][int(rng.choice(len(p), p=p / p.sum()))]
    lo, hi, dist = spec["min"], spec["max"], spec.get("distribution", "uniform")
    if dist == "int_uniform" or (isinstance(lo, int) and isinstance(hi, int) and dist == "uniform"):
        return int(rng.integers(lo, hi + 1))
    if dist == "log_uniform":
        return float(np.exp(rng.uniform(lo, hi)))
    if dist in ("log_uniform_values", "q_log_uniform_values"):
        x = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    else:
        x = float(rng.uniform(lo, hi))
    if dist.startswith("q_"):
        q = spec.get("q", 1)
        x = round(x / q) * q
    return x


def trials(sweep: dict, count: int, seed: int = 0) -> list[dict]:
    """Parameter sets: the grid in order (first ``count``), or ``count`` random draws."""
    params = sweep["parameters"]
    method = sweep.get("method", "random")
    if method == "bayes":
        warnings.warn("bayes sweeps need the W&B service; sampling at random instead", stacklevel=2)
        method = "random"
    if method == "grid":
        if any("values" not in p and "value" not in p for p in params.values()):
            raise ValueError("a grid sweep needs 'values' (or 'value') for every parameter")
        axes = [p["values"] if "values" in p else [p["value"]] for p in params.values()]
        return [dict(zip(params, combo)) for combo in itertools.product(*axes)][:count]
    rng = np.random.default_rng(seed)
    return [{k: _draw(p, rng) for k, p in params.items()} for _ in range(count)]


def command_for(sweep: dict, values: dict, out_dir: Path) -> list[str]:
    """The trial's argv: W&B's macros expanded, plus its own output directory."""
    args = [f"--{k}={json.dumps(v) if isinstance(v, (bool, list, dict)) else v}" for k, v in values.items()]
    argv: list[str] = []
    for part in sweep["command"]:
        if part == "${env}":
            continue
        if part in ("${interpreter}", "python", "python3"):
            argv.append(sys.executable)
        elif part == "${args}":
            argv += args
        elif part == "${args_no_hyphens}":
            argv += [a[2:] for a in args]
        elif part == "${program}":
            argv.append(sweep.get("program", ""))
        else:
            argv.append(str(part))
    if "search" in argv:
        argv += ["--run_dir", str(out_dir)]
    else:  # a fit: its checkpoints too, or every trial would write into the config's own dirpath
        # (this overrides a checkpoint.dirpath the sweep itself sets: trials must not share one)
        argv += ["--trainer.default_root_dir", str(out_dir), "--checkpoint.dirpath", str(out_dir / "checkpoints")]
        if any(str(a).endswith("logging/wandb.yaml") for a in argv):  # the W&B logger's files too
            argv += ["--trainer.logger.init_args.save_dir", str(out_dir)]
    return argv


def sweep(sweep_config: str, count: int = 4, trials_dir: str = "runs/sweeps", seed: int = 0, extra: str = "") -> list[int]:
    """Run ``count`` trials of a sweep config locally; returns their exit codes.

    Args:
        sweep_config: a W&B sweep YAML (configs/sweeps/*.yaml).
        count: trials to run (a grid stops after its last combination).
        trials_dir: trial K writes into TRIALS_DIR/trial-K (a search's run_dir, a fit's root dir).
        seed: seeds the random draws.
        extra: more arguments for every trial, e.g. "--trainer.max_epochs 1".
    """
    cfg = load_sweep(sweep_config)
    root = Path(trials_dir)
    codes = []
    for k, values in enumerate(trials(cfg, count, seed)):
        out = root / f"trial-{k}"
        argv = command_for(cfg, values, out) + shlex.split(extra)
        print(f"[{k + 1}/{count}] {' '.join(f'{a}={b}' for a, b in values.items())}", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        (root / f"trial-{k}.json").write_text(json.dumps({"values": values, "argv": argv}, indent=1))
        codes.append(subprocess.run(argv, env={**os.environ}).returncode)
        if codes[-1]:
            print(f"trial {k} failed with exit code {codes[-1]}", file=sys.stderr)
    return codes


def main(args: list[str] | None = None) -> None:
    from jsonargparse import CLI

    codes = CLI(sweep, args=list(sys.argv[1:] if args is None else args), exit_on_error=False)
    print(f"{len(codes)} trials, {sum(c == 0 for c in codes)} succeeded")
    if any(codes):
        raise ValueError(f"{sum(c != 0 for c in codes)} of {len(codes)} trials failed")
