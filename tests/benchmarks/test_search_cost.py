"""benchmarks/search_cost.py: the figures on hand-made fronts, and the tiny preset end to end."""
import json

import pytest

from benchmarks import search_cost, search_cost_report as report


def test_speedup_is_the_reference_curves_cpu_to_reach_the_target_over_the_arms():
    curve = [(10.0, 0.5), (20.0, 0.8), (40.0, 0.9)]
    assert report.speedup(curve, 0.8, 2.0) == 10.0      # train-full needed 20 s, the arm 2 s
    assert report.speedup(curve, 0.85, 4.0) == 10.0     # first reached at 40 s
    assert report.speedup(curve, 0.95, 4.0) is None     # never reached


def test_dominates_dense_counts_weakly_dominated_ladder_points():
    front = [(0.90, 1_000), (0.95, 10_000)]             # (test accuracy, FLOPs)
    dense = [(0.90, 1_000), (0.89, 5_000), (0.96, 9_000), (0.97, 50_000)]
    # (0.90, 1k): equal, weakly dominated; (0.89, 5k): dominated; (0.96, 9k): more accurate, cheaper than
    # the 10k point; (0.97, 50k): more accurate than any front point.
    assert report.dominates_dense(front, dense) == 0.5


def test_retrained_hv_is_over_test_error_and_log10_flops():
    assert report.retrained_hv([(0.9, 100)], [1.0, 3.0]) == pytest.approx(0.9 * 1.0)
    assert report.retrained_hv([(0.9, 100), (0.5, 10)], [1.0, 3.0]) == pytest.approx(0.9 * 1 + 0.5 * 1)
    assert report.best_at([(0.9, 100), (0.95, 2_000)], 1_000) == 0.9
    assert report.best_at([(0.9, 5_000)], 1_000) is None


def test_paired_wins_compare_arms_seed_by_seed_and_skip_unfinished_seeds():
    section = {"arms": {
        "a": {"seeds": [{"seed": 0, "retrained_hv": 3.0}, {"seed": 1, "retrained_hv": 2.0},
                        {"seed": 2, "retrained_hv": 5.0}]},
        "b": {"seeds": [{"seed": 0, "retrained_hv": 2.5}, {"seed": 1, "retrained_hv": 2.5},
                        {"seed": 2, "error": "boom"}]}}}
    assert report.paired_wins(section, "a", "b") == (1, 2)
    assert report.paired_wins(section, "b", "a") == (1, 2)
    assert report.paired_wins(section, "a", "a") is None
    assert report.paired_wins(section, "a", "missing") is None


def test_an_arm_with_a_misspelt_key_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text("digits: {estimator: truth, budget_factr: 10}\n"
                                       "mnist-t10k: {estimator: truth, fit: {model: {class_path: x}, max_epoch: 2}}\n"
                                       "tiny: {estimator: truth, fit: [max_epochs]}\n")
    monkeypatch.setattr(search_cost, "ARMS", tmp_path)
    monkeypatch.setattr(search_cost, "REPO", tmp_path)
    with pytest.raises(ValueError, match=r"bad.yaml \[digits\]: unknown keys budget_factr \(expected"):
        search_cost.load_arm("bad", "digits")
    with pytest.raises(ValueError, match=r"unknown keys fit.max_epoch "):
        search_cost.load_arm("bad", "mnist-t10k")
    with pytest.raises(ValueError, match=r"\[tiny\]: fit must be a mapping"):
        search_cost.load_arm("bad", "tiny")


def test_bad_preset_or_arm_is_one_line_and_exit_2(tmp_path, capsys):
    assert search_cost.main(["--preset", "nope", "--work", str(tmp_path)]) == 2
    assert "preset 'nope'" in capsys.readouterr().err
    assert search_cost.main(["--preset", "tiny", "--arms", "nope", "--work", str(tmp_path)]) == 2
    assert "arm 'nope'" in capsys.readouterr().err
    assert search_cost.main(["--preset", "tiny", "--data", "[1, 2]", "--work", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    missing = tmp_path / "no-data"
    assert search_cost.main(["--preset", "mnist-t10k", "--seed", "0", "--data-root", str(missing),
                             "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"IDX data folder {missing / 'mnist-t10k'} does not exist" in err
    for data, reason in [('{"class_path": "evolution.data.Nope"}', "has no attribute 'Nope'"),
                         ('{"class_path": "evolution.data.DigitsDataModule", "init_args": {"nope": 1}}',
                          "Option 'nope' is not accepted"),
                         ('{"class_path": "evolution.data.DigitsDataModule", "init_args": {"batch_size": "x"}}',
                          "Got value: x")]:
        assert search_cost.main(["--preset", "tiny", "--seed", "0", "--data", data, "--work", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, err


def test_a_bug_inside_a_data_module_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "search_cost_probe_data.py").write_text(
        "import lightning.pytorch as pl\n\n"
        "class Buggy(pl.LightningDataModule):\n"
        "    def __init__(self, seed: int = 0):\n"
        "        super().__init__()\n"
        "        raise TypeError('a bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Exception) as caught:
        search_cost.build_data({"class_path": "search_cost_probe_data.Buggy"}, 0, tmp_path)
    err = caught.value
    while err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, TypeError) and str(err) == "a bug"
    assert not str(caught.value).startswith("data search_cost_probe_data.Buggy")  # not passed off as bad input


def test_tiny_preset_writes_every_key_and_resumes_an_arm_exactly(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    args = ["--preset", "tiny", "--budget", "0.4", "--work", str(work), "--results", str(results)]
    assert search_cost.main(args) == 0
    doc = json.loads((results / "search_cost.json").read_text())
    assert doc["default_arm"] == report.DEFAULT_ARM
    sec = doc["presets"]["tiny"]
    assert sec["reference_point"] == [1.0, 6.0]
    assert set(sec["arms"]) == {"train-low", "random", "train-full"}
    for name, arm in sec["arms"].items():
        assert set(report.KEYS) | {"wins_vs_random"} <= set(arm["mean"]), name
        assert len(arm["seeds"]) == 1 and set(report.KEYS) <= set(arm["seeds"][0])
    low = sec["arms"]["train-low"]["mean"]
    assert low["wins_vs_random"] in (0.0, 1.0) and low["hv_ratio_vs_train_full"] > 0
    assert sec["dense"]["seeds"][0]["points"] and sec["anytime"]["0"]
    assert (results / "search_cost.md").read_text().count("| train-low |") == 1
    assert (results / "search_cost.png").stat().st_size > 0
    # A rerun skips finished arms; an arm whose result is lost replays its saved estimates to the same figures.
    first = json.loads((work / "tiny" / "train-low" / "seed0" / "result.json").read_text())
    (work / "tiny" / "train-low" / "seed0" / "result.json").unlink()
    assert search_cost.main(args) == 0
    again = json.loads((work / "tiny" / "train-low" / "seed0" / "result.json").read_text())
    assert again["points"] == first["points"] and again["iterations"] == first["iterations"]


def test_a_killed_arm_resumes_where_it_stopped(tmp_path, monkeypatch):
    """Interrupted after a few candidates, the rerun replays their estimates: its history starts as an
    uninterrupted run's does (same seed, same genomes, same scores)."""
    args = ["--preset", "tiny", "--arms", "train-low", "--budget", "1.5"]
    assert search_cost.main(args + ["--work", str(tmp_path / "a"), "--results", str(tmp_path / "ra")]) == 0
    calls = {"n": 0}
    real = search_cost.Metered.estimate

    def dying(self, genomes, parents=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, genomes, parents)

    monkeypatch.setattr(search_cost.Metered, "estimate", dying)
    work_b = ["--work", str(tmp_path / "b"), "--results", str(tmp_path / "rb")]
    with pytest.raises(KeyboardInterrupt):
        search_cost.main(args + work_b)
    monkeypatch.setattr(search_cost.Metered, "estimate", real)
    assert search_cost.main(args + work_b) == 0
    def hist(w):
        lines = (tmp_path / w / "tiny" / "train-low" / "seed0" / "search" / "history.jsonl").read_text().splitlines()
        return [{k: r[k] for k in ("id", "parent", "mutation", "score", "flops")} for r in map(json.loads, lines)]

    a, b = hist("a"), hist("b")
    n = min(len(a), len(b))
    assert n >= 6 and a[:n] == b[:n]


def test_an_iteration_saved_before_its_ledger_row_is_charged_on_resume(tmp_path, monkeypatch):
    """Killed after the search saved iteration 2 but before the benchmark's ledger row for it: the
    rerun writes that row and charges its estimates' CPU-seconds, so no iteration is free."""
    args = ["--preset", "tiny", "--arms", "train-low", "--budget", "4", "--work", str(tmp_path / "w"),
            "--results", str(tmp_path / "r")]
    real = search_cost.Search.step

    def dying(self):
        real(self)
        if self.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(search_cost.Search, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        search_cost.main(args)
    monkeypatch.setattr(search_cost.Search, "step", real)
    assert search_cost.main(args) == 0
    arm = tmp_path / "w" / "tiny" / "train-low" / "seed0"
    rows = [json.loads(l) for l in (arm / "iterations.jsonl").read_text().splitlines()]
    iters = [r for r in rows if "iteration" in r]
    assert [r["iteration"] for r in iters] == list(range(len(iters))) and len(iters) > 3
    est = [json.loads(l) for l in (arm / "estimates.jsonl").read_text().splitlines()]
    charged = iters[2]["cpu"] - iters[1]["cpu"]
    assert charged >= sum(r["cpu"] for r in est if r["iteration"] == 2) - 1e-9 > 0


def _check_spec(spec: dict, where: str) -> None:
    """``spec``'s class imports and takes its settings; nested estimator specs likewise. The estimators
    that take ``**kwargs`` (predictor, halving, curve) hand them to their ``TrainEstimator``."""
    from inspect import Parameter, signature

    from evolution.cli import import_class
    from evolution.train_estimator import TrainEstimator

    params = dict(signature(import_class(spec["class_path"])).parameters)
    if any(p.kind is Parameter.VAR_KEYWORD for p in params.values()):
        params.update(signature(TrainEstimator).parameters)
    for key, value in (spec.get("init_args") or {}).items():
        assert key in params, f"{where}: {spec['class_path']} takes no {key!r}"
        for inner in (value if isinstance(value, list) else [value]):
            if isinstance(inner, dict) and "class_path" in inner:
                _check_spec(inner, f"{where} {key}")


def test_every_arm_file_builds_for_its_presets():
    """A typo in an arm's YAML fails here, not minutes into a benchmark run."""
    import yaml

    names = sorted(p.stem for p in search_cost.ARMS.glob("*.yaml"))
    assert "predictor-gbr-bag-refit-hv-supernet" in names
    for name in names:
        presets = list(yaml.safe_load((search_cost.ARMS / f"{name}.yaml").read_text()))
        assert presets and set(presets) <= set(search_cost.PRESETS), f"{name}: sections {presets}"
        for preset in presets:
            arm = search_cost.load_arm(name, preset)
            if arm.get("estimator") != "truth":
                _check_spec(arm["estimator"], f"{name} {preset}")
            if arm.get("fit"):
                _check_spec(arm["fit"]["model"], f"{name} {preset} fit")
