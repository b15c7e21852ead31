"""Trust the files: loaders refuse code, one writer per run directory, iterations commit whole,
damaged primary files refused by every command alike."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from probes import REPO, TINY, Payload, front, records
from evolution.__main__ import main as cli

UNSAFE = "holds Python objects other than tensors, numbers, strings and plain containers"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_pickled_payload_is_refused_by_every_loader_and_never_runs(copy, tmp_path, capsys):
    marker = tmp_path / "ran"
    state = torch.load(copy / "state.pt", weights_only=True)
    torch.save({**state, "extra": Payload(marker)}, copy / "state.pt")
    assert cli(["search", "--resume", str(copy), "--iterations", "4"]) == 2
    assert f"search state {copy / 'state.pt'} {UNSAFE}" in _one_line(capsys)
    assert cli(["verify", str(copy), "--top_k", "0", "--epochs", "1"]) == 2
    assert UNSAFE in _one_line(capsys) and not (copy / "verify.json").exists()
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "extra": Payload(marker)}, evil)
    from evolution.data import DigitsDataModule
    from hypernet.estimator import HypernetEstimator
    from oneshot.estimator import SupernetEstimator

    for cls, what in ((SupernetEstimator, "supernet checkpoint"), (HypernetEstimator, "hypernet checkpoint")):
        with pytest.raises(ValueError, match=f"{what} {evil} {UNSAFE}"):
            cls(DigitsDataModule(), str(evil))
    # a search given that checkpoint, verify's --initializer, export's model.ckpt, and train's --ckpt_path
    assert cli(["search", "--config", str(REPO / "configs/search/digits-supernet.yaml"), "--search.width", "16",
                "--estimator.init_args.checkpoint", str(evil), "--iterations", "1", "--search.progress", "false",
                "--run_dir", str(tmp_path / "s")]) == 2
    assert UNSAFE in _one_line(capsys)
    fresh = tmp_path / "fresh"
    assert cli(["search", *TINY, "--iterations", "0", "--run_dir", str(fresh)]) == 0
    assert cli(["verify", str(fresh), "--top_k", "1", "--initializer", "hypernet.estimator.HypernetEstimator",
                "--initializer.checkpoint", str(evil)]) == 2
    assert UNSAFE in _one_line(capsys)
    cand = tmp_path / "cand"
    cand.mkdir()
    (cand / "model.ckpt").write_bytes(evil.read_bytes())
    assert cli(["export", str(cand)]) == 2
    assert UNSAFE in _one_line(capsys)
    assert cli(["train", "test", "--config", str(REPO / "configs/train/digits.yaml"), "--ckpt_path", str(evil),
                "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert UNSAFE in _one_line(capsys)
    assert cli(["convert", str(evil)]) == 2  # numpy values convert; code does not
    assert "cannot be converted safely" in _one_line(capsys)
    assert not marker.exists()


def _search(run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "evolution", "search", *TINY, "--run_dir", str(run), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holder(run: Path, proc: subprocess.Popen) -> None:
    lock = run / ".lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)


def test_a_second_process_on_a_run_directory_is_refused_and_the_first_finishes_intact(tmp_path, capsys):
    alone, run = tmp_path / "alone", tmp_path / "run"
    assert cli(["search", *TINY, "--iterations", "4", "--run_dir", str(alone)]) == 0
    first = _search(run, "--iterations", "4")
    _holder(run, first)
    assert cli(["search", *TINY, "--iterations", "4", "--seed", "1", "--run_dir", str(run)]) == 2
    assert f"run directory {run} is in use by process {first.pid}" in _one_line(capsys)
    assert cli(["verify", str(run), "--top_k", "1"]) == 2
    assert f"in use by process {first.pid}" in _one_line(capsys)
    assert first.wait(300) == 0, first.communicate()
    assert records(run) == records(alone) and front(run) == front(alone)
    # two resumes at once: one refused, the other ends with the rows of one search
    a = _search(run, "--resume", str(run), "--iterations", "6")
    _holder(run, a)
    assert cli(["search", "--resume", str(run), "--iterations", "6"]) == 2
    assert f"in use by process {a.pid}" in _one_line(capsys)
    assert a.wait(300) == 0
    assert len(records(run)) == 5 + 6 * 2 and len({r["id"] for r in records(run)}) == 17


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(copy, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (copy / ".lock").write_text(str(dead.pid))
    assert cli(["search", "--resume", str(copy), "--iterations", "4"]) == 0
    err = capsys.readouterr().err
    assert f"taking over the lock of run directory {copy} from process {dead.pid}, which is no longer running" in err
    assert (copy / ".lock").read_text() == ""  # released: no PID left behind


def test_derived_files_are_rebuilt_from_the_state_on_resume_and_verify(finished, copy, tmp_path):
    """A kill between the state and the front (the order before) left the front an iteration behind;
    a truncated front or a deleted genome is damage to derived files: all rebuilt from the state."""
    whole_front = (finished / "front.json").read_bytes()
    stale = json.loads(whole_front)
    stale["front"], stale["iteration"] = stale["front"][:1], 2
    (copy / "front.json").write_text(json.dumps(stale))
    assert cli(["search", "--resume", str(copy), "--iterations", "3"]) == 0  # at the final iteration
    assert (copy / "front.json").read_bytes() == whole_front
    (copy / "front.json").write_bytes(whole_front[:100])
    ids = [r["id"] for r in json.loads(whole_front)["front"]]
    (copy / "genomes" / f"{ids[0]}.json").unlink()
    assert cli(["verify", str(copy), "--top_k", "0", "--epochs", "1"]) == 0
    assert (copy / "front.json").read_bytes() == whole_front
    assert (copy / "genomes" / f"{ids[0]}.json").read_bytes() == (finished / "genomes" / f"{ids[0]}.json").read_bytes()
    doc = json.loads((copy / "verify.json").read_text())
    assert sorted(c["id"] for c in doc["candidates"] if c["on_front"]) == sorted(ids)


@pytest.mark.parametrize("damage", ["cut state", "cut history", "garbage state"])
def test_a_damaged_primary_file_is_refused_alike_by_every_command(copy, capsys, damage):
    hist, state = copy / "history.jsonl", copy / "state.pt"
    if damage == "cut history":
        hist.write_bytes(hist.read_bytes()[: hist.stat().st_size // 2])
        message = "was cut or replaced"
    elif damage == "cut state":
        state.write_bytes(state.read_bytes()[:3000])
        message = f"search state {state} cannot be read"
    else:
        torch.save({"not": "a state"}, state)
        message = f"search state {state} is not a neuronas search state"
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert cli(["search", "--resume", str(copy), "--iterations", "4"]) == 2
    assert message in _one_line(capsys)
    assert cli(["verify", str(copy), "--top_k", "2", "--epochs", "1"]) == 2
    assert message in _one_line(capsys)
    after = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != ".lock"}  # nothing changed
