import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from evolution.__main__ import main as cli
from evolution.data import DigitsDataModule
from evolution.estimators import Estimate, TrainEstimator
from evolution.search import Search, SearchSettings
from evolution.train_estimator import rank_check_truth

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "configs/search/digits.yaml"), "--population", "6", "--children", "3",
        "--estimator.init_args.steps", "8", "--search.width", "32", "--search.progress", "false"]


def _records(run: Path) -> list[dict]:
    """History without wall-clock seconds (the one field that differs between identical runs)."""
    lines = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in lines]


def _front(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((run / "front.json").read_text())["front"]]


def test_search_writes_its_files_and_improves_its_front(tmp_path):
    assert cli(["search", *TINY, "--iterations", "4", "--run_dir", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    recs = _records(run)
    assert len(recs) == 6 + 4 * 3
    assert {r["iteration"] for r in recs} == {0, 1, 2, 3, 4}
    assert all(r["parent"] is not None for r in recs if r["iteration"] > 0)
    front = json.loads((run / "front.json").read_text())
    hv = front["hypervolume"]
    assert len(hv) == 5 and all(b >= a for a, b in zip(hv, hv[1:]))  # an all-time archive never loses volume
    assert hv[-1] > hv[0]  # and four iterations of children added to it
    for c in front["front"]:
        assert (run / c["genome"]).is_file()
    assert (run / "front.png").stat().st_size > 1000 and (run / "config.yaml").is_file()


def test_same_seed_same_history(tmp_path):
    for name in ("a", "b"):  # deterministic: on a GPU (accelerator auto) too
        assert cli(["search", *TINY, "--iterations", "2", "--deterministic", "true", "--run_dir", str(tmp_path / name)]) == 0
    assert not torch.are_deterministic_algorithms_enabled()  # the switch is the search's, not the process's
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert cli(["search", *TINY, "--iterations", "2", "--seed", "1", "--run_dir", str(tmp_path / "c")]) == 0
    assert _records(tmp_path / "a") != _records(tmp_path / "c")


def _subprocess_env() -> dict[str, str]:
    """The environment of a child ``python -m evolution``: this checkout first on the path, and the
    caller's PYTHONPATH kept after it (an interpreter whose packages come from PYTHONPATH, as on a
    machine set up without a virtualenv, otherwise starts a child that cannot import torch)."""
    kept = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO)] + ([kept] if kept else []))}


def _died(proc: subprocess.Popen) -> str:
    """What a child that exited early said on stderr, for the assertion message."""
    err = proc.stderr.read() if proc.stderr else ""
    return f"the search subprocess exited {proc.returncode} early; its stderr:\n{err[-4000:]}"


def test_subprocess_env_keeps_the_callers_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/site-packages")
    assert _subprocess_env()["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/somewhere/site-packages"]
    monkeypatch.delenv("PYTHONPATH")
    assert _subprocess_env()["PYTHONPATH"] == str(REPO)


def test_killed_search_resumes_as_if_never_stopped(tmp_path):
    args = [*TINY, "--iterations", "6"]
    assert cli(["search", *args, "--run_dir", str(tmp_path / "whole")]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "evolution", "search", *args, "--run_dir", str(tmp_path / "cut")],
                            cwd=REPO, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    state = tmp_path / "cut" / "state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) >= 6 + 2 * 3:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        assert proc.returncode == 0, _died(proc)
        pytest.fail("the search finished before it could be killed; give it more iterations")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert len(_records(tmp_path / "cut")) < len(_records(tmp_path / "whole"))
    assert cli(["search", "--resume", str(tmp_path / "cut"), "--search.progress", "false"]) == 0
    assert _records(tmp_path / "cut") == _records(tmp_path / "whole")
    assert _front(tmp_path / "cut") == _front(tmp_path / "whole")


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "evolution", "search", *TINY, "--iterations", "200", "--run_dir", str(run)],
                            cwd=REPO, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "state.pt").exists():
        assert proc.poll() is None, _died(proc)
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"exit {proc.returncode}, expected 130; the subprocess's stderr:\n{err[-4000:]}"
    assert "is saved; resume with --resume" in err and "Traceback" not in err
    saved = json.loads((run / "front.json").read_text())["iteration"]
    on_disk = torch.load(run / "state.pt", weights_only=False)["iteration"]
    assert f"interrupted; iteration {on_disk} is saved" in err  # not the one it interrupted
    # The interrupted run's config asked for 200 iterations; the resumed one may set another budget.
    assert cli(["search", "--resume", str(run), "--iterations", str(saved + 1), "--search.progress", "false"]) == 0
    recs = _records(run)
    assert max(r["iteration"] for r in recs) == saved + 1
    assert [r["id"] for r in recs] == list(range(len(recs)))  # no candidate lost or written twice


def test_three_objectives(tmp_path):
    assert cli(["search", *TINY, "--iterations", "2", "--search.objectives", "[error, flops, params]",
                "--run_dir", str(tmp_path)]) == 0
    front = json.loads((tmp_path / "front.json").read_text())
    assert front["objectives"] == ["error", "flops", "params"] and front["hypervolume"][-1] > 0


def test_default_reference_point_follows_the_objectives_names(tmp_path):
    from evolution import nsga2

    data = DigitsDataModule()
    s = SearchSettings(run_dir=str(tmp_path), iterations=1, population=6, children=3, width=16, progress=False,
                       objectives=("flops", "error"))
    search = Search(s, data, TrainEstimator(data, steps=5))
    search.run()
    front = np.array(search.fronts[-1])
    assert search.hv[-1] == pytest.approx(nsga2.hypervolume(front, np.array([2.0, 1.0])))  # error's is 1


class FlakyEstimator:
    """Fails every third genome, as a diverging or crashing candidate would."""

    def __init__(self, data) -> None:
        self.inner = TrainEstimator(data, steps=5)
        self.calls = 0

    def estimate(self, genomes, parents=None):
        out = []
        for g in genomes:
            self.calls += 1
            out.append(Estimate(float("nan"), 0.0, "diverged at step 3") if self.calls % 3 == 0
                       else self.inner.estimate([g])[0])
        return out


def test_failed_candidates_are_recorded_and_never_selected(tmp_path):
    data = DigitsDataModule()
    s = SearchSettings(run_dir=str(tmp_path), iterations=3, population=6, children=3, width=16, progress=False)
    search = Search(s, data, FlakyEstimator(data))
    search.run()
    recs = _records(tmp_path)
    failed = {r["id"] for r in recs if r["error"]}
    assert failed and all(r["error"] == "diverged at step 3" for r in recs if r["id"] in failed)
    assert not failed & {r["parent"] for r in recs}
    assert not failed & {c.id for c in search.population + search.archive}


@pytest.mark.parametrize("extra, message", [
    (["--estimator.class_path", "evolution.estimators.NoSuchEstimator"], "estimator"),
    (["--search.objectives", "[error, beauty]"], "objectives ['error', 'beauty']: expected two or three of"),
    (["--search.population", "abc"], 'Parser key "search.population"'),
    (["--search.ref_point", "[1.0]"], "ref_point [1.0]: expected one value per objective (error, flops)"),
    (["--search.levels", "0"], "levels 0, width 32: a search needs levels >= 1 and width >= 1"),
    (["--search.init", "[mlp:8, foo:3]"], "genome spec 'foo:3': unknown layer kind 'foo'"),
    (["--search.init", "[nope.json]"], "genome file nope.json does not exist"),
    (["--search.init", "[]"], "init []: expected at least one source of initial genomes"),
])
def test_bad_config_is_one_line(tmp_path, capsys, extra, message):
    assert cli(["search", *TINY, "--run_dir", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_a_search_whose_every_candidate_diverges_exits_1(tmp_path, capsys):
    assert cli(["search", *TINY, "--estimator.init_args.lr", "1e30", "--run_dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every initial genome failed to estimate; first error: training diverged" in err[0]


def test_run_dir_of_another_search_is_refused(tmp_path, capsys):
    run = str(tmp_path / "r")
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", run]) == 0
    before = (tmp_path / "r" / "history.jsonl").read_bytes()
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", run]) == 2
    assert "already holds a search; resume it with --resume" in capsys.readouterr().err
    assert cli(["search", *TINY, "--iterations", "2", "--seed", "5", "--resume", run]) == 2
    assert "holds a different search: seed was 0, now 5; resume with the same config" in capsys.readouterr().err
    assert (tmp_path / "r" / "history.jsonl").read_bytes() == before
    assert cli(["search", "--resume", str(tmp_path / "nothing")]) == 2
    assert "has no config.yaml" in capsys.readouterr().err
    assert cli(["search", "--resume"]) == 2
    assert "--resume needs the run directory" in capsys.readouterr().err
    assert cli(["search", "--resume=", *TINY]) == 2  # would otherwise start a new search
    assert "--resume needs the run directory" in capsys.readouterr().err


def test_resume_refuses_damaged_files_in_one_line_and_keeps_them(tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(run)]) == 0
    hist, state = run / "history.jsonl", run / "state.pt"
    whole_hist, whole_state = hist.read_bytes(), state.read_bytes()
    hist.write_bytes(whole_hist[:100])  # cut below what the state counts: padding it back would write NULs
    assert cli(["search", "--resume", str(run), "--iterations", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{hist} holds 100 bytes but the search state counts {len(whole_hist)}" in err[0]
    assert hist.read_bytes() == whole_hist[:100]
    hist.write_bytes(whole_hist)
    state.write_bytes(whole_state[: len(whole_state) // 2])
    assert cli(["search", "--resume", str(run), "--iterations", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"search state {state} cannot be read" in err[0]
    state.write_bytes(whole_state)
    assert cli(["search", f"--resume={run}", "--iterations", "2"]) == 0  # both spellings of the flag
    assert len(_records(run)) == 6 + 2 * 3


class ContrarianEstimator:
    """Scores genomes upside down (fewer edges look better): a misleading estimator."""

    def estimate(self, genomes, parents=None):
        return [Estimate(1.0 / (1 + g.n_edges), 0.0) for g in genomes]


def test_online_rank_check_warns_about_a_misleading_estimator(tmp_path, capsys):
    s = SearchSettings(run_dir=str(tmp_path), iterations=2, population=8, children=3, width=32, progress=False,
                       rank_check_every=1, rank_check_size=4, rank_check_steps=40, init=("mlp:32", "mlp:4", "mlp:16", "mlp:2"))
    data = DigitsDataModule()
    with pytest.raises(ValueError, match="rank_check_every needs a rank_truth"):
        Search(s, data, ContrarianEstimator())
    Search(s, data, ContrarianEstimator(), rank_truth=rank_check_truth(data, s)).run()
    lines = [json.loads(l) for l in (tmp_path / "rank_check.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [1, 2] and lines[-1]["checked"] >= 6
    assert lines[-1]["kendall_tau"] < 0
    assert "it may be misleading the search" in capsys.readouterr().err
    # Killed after iteration 3 logged its check but before its state was saved: resumed, the check
    # is made once more, not logged twice.
    with open(tmp_path / "rank_check.jsonl", "a") as f:
        f.write(json.dumps({"iteration": 3, "checked": 99, "kendall_tau": 0.0}) + "\n")
        f.write('{"iteration": 3, "chec')  # and the kill cut its next line
    s3 = dataclasses.replace(s, iterations=3)
    assert Search(s3, data, ContrarianEstimator(), rank_truth=rank_check_truth(data, s3)).run(resume=True)
    lines = [json.loads(l) for l in (tmp_path / "rank_check.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [1, 2, 3] and lines[-1]["checked"] != 99


class SpyEstimator:
    """Keeps the Parent records the search hands over (a Lamarckian estimator's input)."""

    def __init__(self, data) -> None:
        self.inner = TrainEstimator(data, steps=3, keep_state=True)
        self.parents = []
        self.states = []  # the trained weights it handed back, one per estimate

    def estimate(self, genomes, parents=None):
        self.parents += list(parents or [])
        out = self.inner.estimate(genomes, parents)
        self.states += [e.state for e in out]
        return out


def test_lamarckian_estimators_get_the_whole_inheritance(tmp_path):
    from evolution.mutations import MutationRates

    data = DigitsDataModule()
    only_dup = MutationRates(add_neurons=0, add_edges=0, remove_edges=0, remove_level=0, duplicate_neuron=1, tie_weights=0)
    s = SearchSettings(run_dir=str(tmp_path), iterations=1, population=4, children=3, width=32, progress=False,
                       rates=only_dup, init=("mlp:8",))
    spy = SpyEstimator(data)
    Search(s, data, spy).run()
    given = [p for p in spy.parents if p is not None]
    assert given and all(p.how.mutation == "duplicate_neuron" and len(p.how.duplicated) == 1 for p in given)
    for p in given:  # the state is a parent's trained weights, holding the neuron the child duplicated
        assert any(torch.equal(p.state["edges"], t["edges"]) and torch.equal(p.state["edge"], t["edge"])
                   for t in spy.states[:4])
        assert p.how.duplicated[0][0] in p.state["hidden"].tolist()


def test_a_resume_does_not_need_the_initial_genome_files_again(tmp_path, monkeypatch):
    import shutil

    assert cli(["search", *TINY, "--iterations", "0", "--run_dir", str(tmp_path / "first")]) == 0
    (tmp_path / "a").mkdir()
    shutil.copy(tmp_path / "first" / "genomes" / "0.json", tmp_path / "a" / "g.json")
    monkeypatch.chdir(tmp_path / "a")  # init names the file relative to where the search started
    run = str(tmp_path / "run")
    assert cli(["search", *TINY, "--iterations", "0", "--search.init", "[g.json, random]", "--run_dir", run]) == 0
    assert json.loads((tmp_path / "run" / "genomes" / "0.json").read_text()) == \
        json.loads((tmp_path / "a" / "g.json").read_text())
    monkeypatch.chdir(tmp_path)
    assert cli(["search", "--resume", run, "--search.iterations", "1"]) == 0


def test_the_genome_texts_a_search_keeps_are_those_it_saves_again(tmp_path):
    # Each genome is encoded once and kept while it is in the population or the archive; what the
    # files hold is what encoding it afresh gives.
    data = DigitsDataModule()
    s = SearchSettings(run_dir=str(tmp_path), iterations=3, population=4, children=3, width=32, progress=False)
    search = Search(s, data, TrainEstimator(data, steps=3))
    search.run()
    kept = {c.id: c for c in search.population + search.archive}
    assert set(search._texts) == set(kept)
    assert all(search._texts[i] == c.genome.to_json() for i, c in kept.items())
    for r in json.loads((tmp_path / "front.json").read_text())["front"]:
        g = kept[r["id"]].genome
        assert (r["edges"], r["hidden"]) == (g.n_edges, len(g.hidden))
        assert (tmp_path / r["genome"]).read_text() == g.to_json()


def test_a_state_saved_with_fronts_as_lists_resumes_to_the_same_search(tmp_path):
    # States are saved with each front as a float64 tensor; those saved before held lists of floats.
    assert cli(["search", *TINY, "--iterations", "3", "--run_dir", str(tmp_path / "whole")]) == 0
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(tmp_path / "old")]) == 0
    path = tmp_path / "old" / "state.pt"
    state = torch.load(path, weights_only=True)
    assert all(torch.is_tensor(f) and f.dtype == torch.float64 for f in state["fronts"])
    torch.save({**state, "fronts": [f.tolist() for f in state["fronts"]]}, path)  # as written before
    assert cli(["search", "--resume", str(tmp_path / "old"), "--search.iterations", "3"]) == 0
    assert _records(tmp_path / "old") == _records(tmp_path / "whole")
    assert _front(tmp_path / "old") == _front(tmp_path / "whole")
    whole, old = (torch.load(tmp_path / d / "state.pt", weights_only=True)["fronts"] for d in ("whole", "old"))
    assert len(whole) == len(old) == 4 and all(torch.equal(a, b) for a, b in zip(whole, old))
