import json
from pathlib import Path

import pytest
import yaml

from evolution.__main__ import main as cli
from evolution.sweep import load_sweep, trials
from evolution.tracking import WandbSettings, read_offline_run
from evolution.verify import verify

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
TINY = ["--config", str(REPO / "configs/search/digits.yaml"), "--population", "5", "--children", "2",
        "--estimator.init_args.steps", "8", "--search.width", "32", "--search.progress", "false"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):  # W&B's own logs too, not in ~/.cache
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


def test_search_and_verify_log_to_one_offline_run(tmp_path):
    run = tmp_path / "run"
    assert cli(["search", *TINY, "--iterations", "2", "--run_dir", str(run), "--search.wandb.project", "neuronas-test",
                "--search.wandb.tags", "[test]"]) == 0
    rec = read_offline_run(run / "wandb", wait=60)
    rows = [h for h in rec["history"] if "hypervolume" in h]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for key in ("best_error", "front_size", "population/mean_error", "population/mean_flops", "estimate_seconds"):
        assert all(key in r for r in rows)
    front = json.loads((run / "front.json").read_text())
    assert [c["id"] for c in rec["summary"]["front"]] == [c["id"] for c in front["front"]]
    assert rows[-1]["hypervolume"] == pytest.approx(front["hypervolume"][-1])
    run_id = (run / "wandb_run_id").read_text()
    verify(str(run), top_k=2, epochs=1, progress=False)
    again = read_offline_run(run / "wandb", wait=60)
    assert any(any(k.startswith("verify/candidates") for k in h) for h in again["history"])
    assert (run / "wandb_run_id").read_text() == run_id
    folders = list((run / "wandb").glob("offline-run-*"))
    assert folders and all(f.name.endswith(f"-{run_id}") for f in folders)  # verify resumed the search's run


def test_fit_with_the_wandb_logger_writes_metrics(tmp_path):
    rc = cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--config",
              str(REPO / "configs/logging/wandb.yaml"), "--trainer.max_epochs", "2", "--trainer.default_root_dir",
              str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    assert rc == 0
    import wandb

    wandb.finish()  # Lightning leaves the run open until the process exits; the test process goes on
    rec = read_offline_run(tmp_path / "wandb", wait=60)  # W&B's service may still be writing the file
    assert rec["finished"]
    keys = set().union(*rec["history"])
    assert {"train_loss", "val_acc", "val_loss", "test_acc"} <= keys
    # The resolved config, not only the model's hyperparameters.
    assert rec["config"]["data"]["class_path"] == "evolution.data.DigitsDataModule"
    assert rec["config"]["trainer"]["max_epochs"] == 2
    # The file caught while W&B still writes it (cut anywhere in its first 90 %, well before the exit
    # record at its end): every prefix reads without error, none as finished.
    data = next((tmp_path / "wandb").rglob("run-*.wandb")).read_bytes()
    partial = tmp_path / "partial" / "run-x.wandb"
    partial.parent.mkdir()
    for cut in range(7, len(data) * 9 // 10, max(1, len(data) // 40)):
        partial.write_bytes(data[:cut])
        assert not read_offline_run(partial.parent)["finished"]


def test_wandb_settings_fail_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(tmp_path / "r"), "--search.wandb.project", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "W&B: no API key" in err[0]
    with pytest.raises(ValueError, match="wandb mode 'sometimes'"):
        WandbSettings(project="x", mode="sometimes")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(tmp_path / "d"), "--search.wandb.project", "x"]) == 0
    assert not list((tmp_path / "d").rglob("run-*.wandb"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_configs_parse(path):
    sweep = load_sweep(path)
    assert {"method", "metric", "parameters", "command"} <= set(sweep) and "${args}" in sweep["command"]
    drawn = trials(sweep, 3)
    assert len(drawn) == 3 and all(set(t) == set(sweep["parameters"]) for t in drawn)


def _resolved(trial_dir: Path) -> dict:
    path = next(p for p in sorted(trial_dir.rglob("config.yaml")))
    return yaml.safe_load(path.read_text())


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("path, extra", [
    (REPO / "configs/sweeps/search.yaml", "--iterations 1 --search.width 32 --search.progress false"),
    (REPO / "configs/sweeps/supernet.yaml", "--trainer.max_epochs 1 --trainer.limit_train_batches 2 "
                                           "--trainer.limit_val_batches 1 --model.width 16 --trainer.enable_progress_bar false"),
], ids=["search", "supernet"])
def test_local_driver_runs_two_trials_with_the_sampled_values(tmp_path, path, extra, monkeypatch):
    monkeypatch.chdir(REPO)  # the sweep commands name configs relative to the repository
    assert cli(["sweep", str(path), "--count", "2", "--trials_dir", str(tmp_path), "--extra", extra]) == 0
    sweep = load_sweep(path)
    for k in range(2):
        values = json.loads((tmp_path / f"trial-{k}.json").read_text())["values"]
        cfg = _resolved(tmp_path / f"trial-{k}")
        for name, value in values.items():
            assert _get(cfg, name) == pytest.approx(value) if isinstance(value, float) else _get(cfg, name) == value
        assert set(values) == set(sweep["parameters"])
        if "fit" in sweep["command"]:  # each trial keeps its own checkpoints, none in the config's dirpath
            assert (tmp_path / f"trial-{k}" / "checkpoints" / "last.ckpt").exists()
            assert _get(cfg, "checkpoint.dirpath") == str(tmp_path / f"trial-{k}" / "checkpoints")


def test_sweep_distributions_are_drawn_as_wandb_defines_them(tmp_path):
    doc = {"method": "random", "command": ["python", "${args}"], "parameters": {
        "a": {"min": -9.2, "max": -4.6, "distribution": "log_uniform"},  # natural logs of 1e-4 .. 1e-2
        "b": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
        "c": {"min": 0.0, "max": 10.0, "distribution": "q_uniform", "q": 2.5},
        "d": {"values": ["x", "y"], "probabilities": [0.0, 1.0]}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    drawn = trials(load_sweep(path), 50)
    assert all(1e-4 <= t["a"] <= 1.01e-2 and 1e-4 <= t["b"] <= 1e-2 for t in drawn)
    assert all(t["c"] in (0.0, 2.5, 5.0, 7.5, 10.0) for t in drawn) and {t["d"] for t in drawn} == {"y"}
    doc["parameters"]["e"] = {"min": 0.0, "max": 1.0, "distribution": "normal"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="parameter 'e': distribution 'normal' is not drawn here"):
        load_sweep(path)


def test_a_self_hosted_login_counts_as_a_key(tmp_path, monkeypatch):
    from evolution.tracking import _has_api_key

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine wandb.example.org\n  login user\n  password abc\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert not _has_api_key()  # logged in elsewhere, not to api.wandb.ai
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert _has_api_key()


def test_fit_with_the_wandb_logger_and_no_key_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    rc = cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--config",
              str(REPO / "configs/logging/wandb.yaml"), "--trainer.max_epochs", "1", "--trainer.default_root_dir",
              str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "W&B: no API key" in err[0]


def test_the_mode_wandb_offline_saved_counts_where_no_env_sets_one(monkeypatch):
    from types import SimpleNamespace

    from wandb.sdk import wandb_setup

    from evolution.tracking import effective_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb_setup, "singleton", lambda: SimpleNamespace(settings=SimpleNamespace(mode="offline")))
    assert effective_mode() == "offline"  # `wandb offline` writes wandb's settings, not the environment
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert effective_mode() == "disabled"
