"""kill -9 at random moments: a search, a fit and a verify, each killed and restarted (resumed) until
it finishes, end with the files of an uninterrupted run. A few kills each in CI; more with
``NEURONAS_KILLS=N`` (``NEURONAS_KILL_SEED`` picks the moments)."""
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from probes import REPO, TINY, front, records

KILLS = int(os.environ.get("NEURONAS_KILLS", "2"))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def _run(args: list[str]) -> float:
    """Run to the end; its wall time."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - start


def _killed_until_done(args, seconds: float, seed: int, reset) -> None:
    """Start ``args()`` (which looks at the files to resume), kill -9 it at a random moment of a run's
    ``seconds``, until KILLS kills have landed on a running process; then let it finish. A run that
    ends before its kill (the machine got faster) is ``reset`` and the kills come sooner."""
    rng = random.Random(int(os.environ.get("NEURONAS_KILL_SEED", "0")) * 1000 + seed)
    hits, scale, seen = 0, 1.0, []
    while hits < KILLS:
        proc = subprocess.Popen([sys.executable, "-m", *args()], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.25, 0.6) * seconds * scale
        time.sleep(delay)
        running = proc.poll() is None
        proc.kill()
        _, err = proc.communicate()
        seen.append((round(delay, 1), proc.returncode))
        assert proc.returncode in (0, -9), err[-2000:]  # finished, or killed
        if running:
            hits += 1
        else:
            reset()
            scale /= 2
            assert len(seen) < KILLS + 6, seen
    _run(args())


def test_search_killed_at_random_moments_ends_as_if_never_stopped(tmp_path):
    whole, run = tmp_path / "whole", tmp_path / "run"
    seconds = _run(["evolution", "search", *TINY, "--iterations", "6", "--run_dir", str(whole)])
    _killed_until_done(lambda: ["evolution", "search", "--resume", str(run)] if (run / "state.pt").is_file()
                       else ["evolution", "search", *TINY, "--iterations", "6", "--run_dir", str(run)], seconds, 1,
                       lambda: shutil.rmtree(run, ignore_errors=True))
    assert records(run) == records(whole) and front(run) == front(whole)
    assert sorted(p.name for p in (run / "genomes").iterdir()) == sorted(p.name for p in (whole / "genomes").iterdir())
    for p in (whole / "genomes").iterdir():
        assert (run / "genomes" / p.name).read_bytes() == p.read_bytes()


def test_fit_killed_at_random_moments_ends_with_the_uninterrupted_weights(tmp_path):
    def fit(out: Path) -> list[str]:
        last = out / "ckpt" / "last.ckpt"
        return ["oneshot", "fit", "--config", str(REPO / "configs/oneshot/digits.yaml"), "--model.width", "16",
                "--trainer.default_root_dir", str(out), "--checkpoint.dirpath", str(out / "ckpt"),
                "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--trainer.max_epochs", "6",
                "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1",
                *(["--ckpt_path", str(last)] if last.is_file() else [])]

    seconds = _run(fit(tmp_path / "whole"))
    _killed_until_done(lambda: fit(tmp_path / "run"), seconds, 2,
                       lambda: shutil.rmtree(tmp_path / "run", ignore_errors=True))
    whole, run = (torch.load(p / "ckpt" / "last.ckpt", weights_only=True) for p in (tmp_path / "whole", tmp_path / "run"))
    assert run["global_step"] == whole["global_step"] == 36 and run["sampler_rng"] == whole["sampler_rng"]
    for k, v in whole["state_dict"].items():
        assert torch.allclose(run["state_dict"][k], v, atol=1e-6, rtol=0), k


def test_verify_killed_at_random_moments_ends_with_the_uninterrupted_results(finished, tmp_path):
    for name in ("whole", "run"):
        shutil.copytree(finished, tmp_path / name)
    args = lambda name: ["evolution", "verify", str(tmp_path / name), "--top_k", "3", "--epochs", "2"]  # noqa: E731
    seconds = _run(args("whole"))
    def reset() -> None:
        shutil.rmtree(tmp_path / "run" / "verify", ignore_errors=True)
        (tmp_path / "run" / "verify.json").unlink(missing_ok=True)

    _killed_until_done(lambda: args("run"), seconds, 3, reset)

    def results(name: str) -> list[dict]:
        doc = json.loads((tmp_path / name / "verify.json").read_text())
        return [{k: v for k, v in c.items() if k != "train_seconds"} for c in doc["candidates"]]

    assert results("run") == results("whole") and len(results("whole")) >= 3
