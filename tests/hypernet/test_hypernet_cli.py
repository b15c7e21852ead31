import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evolution.__main__ import main as evolution_cli
from hypernet.__main__ import main as cli
from evolution.data import DigitsDataModule
from hypernet.estimator import HypernetEstimator
from hypernet.module import HypernetModule

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "configs/hypernet/digits.yaml")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """``python -m hypernet fit`` for 6 steps on a 2 x 16 digits grid, into a temporary folder."""
    root = tmp_path_factory.mktemp("fit")
    assert cli(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(root), "--checkpoint.dirpath",
                str(root / "ckpt"), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "-1",
                "--trainer.max_steps", "6", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                "--trainer.check_val_every_n_epoch", "1", "--model.width", "16", "--model.hidden", "16"]) == 0
    return root


@pytest.mark.parametrize("config", ["digits.yaml", "mnist-t10k.yaml"])
def test_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as done:
        cli(["fit", "--config", str(REPO / "configs/hypernet" / config), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["lr"] > 0 and printed["data"]["class_path"].startswith("evolution.data.")


def test_fit_writes_metrics_and_a_resumable_checkpoint(fitted):
    ckpt = fitted / "ckpt" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)
    assert state["global_step"] == 6
    header = next(fitted.rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    assert {"train_loss", "val_loss", "val_acc"} <= set(header)
    # The sampler's stream resumes where it stopped, not at its seed.
    module = HypernetModule.load_from_checkpoint(ckpt, weights_only=False)
    assert module.rng.bit_generator.state == state["sampler_rng"]
    assert module.rng.bit_generator.state != np.random.default_rng(0).bit_generator.state


def test_validate_reports_the_panel(fitted, capsys):
    assert cli(["validate", "--config", DIGITS, "--trainer.default_root_dir", str(fitted), "--trainer.logger", "false",
                "--checkpoint.dirpath", str(fitted / "ckpt"),
                "--trainer.enable_progress_bar", "false", "--model.width", "16", "--model.hidden", "16",
                "--ckpt_path", str(fitted / "ckpt" / "last.ckpt")]) == 0
    out = capsys.readouterr().out
    assert "val_acc" in out and "val_acc_panel4" in out


def test_bad_settings_end_in_one_line(tmp_path, capsys):
    assert cli(["fit", "--config", DIGITS, "--model.sampler", "bogus", "--trainer.default_root_dir", str(tmp_path),
                "--checkpoint.dirpath", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sampler 'bogus'" in err[0]


def _other_data(fitted: Path, tmp_path: Path) -> Path:
    """The fitted checkpoint as one trained on 28 x 28 images would be: the GNN's weights do not depend
    on the input count, so only its recorded data shape tells them apart."""
    ckpt = torch.load(fitted / "ckpt" / "last.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["input_shape"] = (1, 28, 28)
    torch.save(ckpt, tmp_path / "mnist.ckpt")
    return tmp_path / "mnist.ckpt"


def test_foreign_checkpoints_end_in_one_line(fitted, tmp_path, capsys):
    def validate(ckpt: Path) -> str:
        assert cli(["validate", "--config", DIGITS, "--trainer.logger", "false", "--trainer.default_root_dir",
                    str(tmp_path), "--trainer.enable_progress_bar", "false", "--model.width", "16", "--model.hidden",
                    "16", "--ckpt_path", str(ckpt)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    other = _other_data(fitted, tmp_path)
    assert f"checkpoint {other} was trained with input_shape (1, 28, 28); this HypernetModule has (1, 8, 8)" in validate(other)
    with pytest.raises(ValueError, match=r"trained on input shape \(1, 28, 28\) with 10 classes; the data has \(1, 8, 8\)"):
        HypernetEstimator(None, str(other)).check_data(DigitsDataModule())
    from oneshot.__main__ import main as oneshot_cli

    assert oneshot_cli(["fit", "--config", str(REPO / "configs/oneshot/digits.yaml"), "--trainer.default_root_dir",
                        str(tmp_path), "--checkpoint.dirpath", str(tmp_path / "sup"), "--trainer.enable_progress_bar",
                        "false", "--model.width", "16", "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                        "1", "--trainer.limit_val_batches", "1"]) == 0
    supernet = tmp_path / "sup" / "last.ckpt"
    assert f"checkpoint {supernet} is not a HypernetModule checkpoint: it was trained with distill, " in validate(supernet)
    with pytest.raises(ValueError, match=f"hypernet checkpoint {supernet} is not a HypernetModule checkpoint"):
        HypernetEstimator(DigitsDataModule(), str(supernet))
    from oneshot.estimator import SupernetEstimator

    with pytest.raises(ValueError, match="is not a SupernetModule checkpoint"):
        SupernetEstimator(DigitsDataModule(), str(fitted / "ckpt" / "last.ckpt"))


def test_verify_retrains_from_hypernet_predictions(fitted, tmp_path):
    run = tmp_path / "run"
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits.yaml"), "--population", "4",
                          "--children", "2", "--iterations", "1", "--estimator.init_args.steps", "5", "--search.width",
                          "32", "--search.progress", "false", "--run_dir", str(run)]) == 0
    assert evolution_cli(["verify", str(run), "--top_k", "2", "--epochs", "1", "--initializer",
                          "hypernet.estimator.HypernetEstimator", "--initializer.init_args.checkpoint",
                          str(fitted / "ckpt" / "last.ckpt")]) == 0
    doc = json.loads((run / "verify.json").read_text())
    assert doc["settings"]["init"] == "predicted" and doc["candidates"]
    # a hypernet of another dataset would predict weights for these genomes too: refused before any training
    assert evolution_cli(["verify", str(run), "--top_k", "2", "--epochs", "1", "--initializer",
                          "hypernet.estimator.HypernetEstimator", "--initializer.init_args.checkpoint",
                          str(_other_data(fitted, tmp_path))]) == 2
    assert json.loads((run / "verify.json").read_text()) == doc


def test_verify_starts_from_the_search_estimator_as_the_search_left_it(fitted, tmp_path):
    from evolution.data import DigitsDataModule
    from evolution.genome import Genome
    from evolution.verify import search_estimator, verify

    run, ckpt = tmp_path / "run", str(fitted / "ckpt" / "last.ckpt")
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits-hypernet.yaml"), "--population", "4",
                          "--children", "2", "--iterations", "1", "--estimator.init_args.checkpoint", ckpt,
                          "--estimator.init_args.update_steps", "3", "--search.width", "32", "--search.progress",
                          "false", "--run_dir", str(run)]) == 0
    data = DigitsDataModule()
    est = search_estimator(run, data)
    updated = torch.load(run / "state.pt", weights_only=False)["estimator"]["hypernet"]
    as_trained = HypernetEstimator(data, ckpt).module.model.state_dict()
    # the hypernet of the search's last update, not the checkpoint it started from
    for k, v in est.module.model.state_dict().items():
        assert torch.equal(v, updated[k])
    assert any(not torch.equal(v, as_trained[k]) for k, v in updated.items())
    doc = verify(str(run), top_k=2, epochs=0, init="estimator", progress=False)
    assert doc["settings"]["init"] == "estimator" and doc["candidates"]
    x, y = data.tensors("val")
    for c in doc["candidates"]:  # no epochs: the retrained accuracy is that of the predicted start
        net = est.initialize(Genome.load(run / "genomes" / f"{c['id']}.json")).eval()
        with torch.no_grad():
            assert c["val_acc"] == pytest.approx(float((net(x).argmax(1) == y).float().mean()))
    # finished: resumed without building the estimator again
    import evolution.verify as v

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(v, "search_estimator", lambda *a, **k: pytest.fail("built the estimator for nothing"))
        assert verify(str(run), top_k=2, epochs=0, init="estimator", progress=False)["candidates"] == doc["candidates"]
    # the search resumed (its estimator learned more): the old verify.json is not continued with it
    state = torch.load(run / "state.pt", weights_only=False)
    torch.save({**state, "iteration": state["iteration"] + 1}, run / "state.pt")
    with pytest.raises(ValueError, match="verify.json was made with other settings .*'estimator_iteration': 1"):
        verify(str(run), top_k=2, epochs=0, init="estimator", progress=False)
    # an estimator that predicts no weights cannot start them: one line, before any training
    plain = tmp_path / "plain"
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits.yaml"), "--population", "4",
                          "--children", "2", "--iterations", "1", "--estimator.init_args.steps", "2", "--search.width",
                          "32", "--search.progress", "false", "--run_dir", str(plain)]) == 0
    with pytest.raises(ValueError, match="estimator evolution.estimators.TrainEstimator cannot start networks from its "
                                         "predictions"):
        verify(str(plain), top_k=2, epochs=0, init="estimator", progress=False)
    assert not (plain / "verify.json").exists()
    (plain / "config.yaml").write_text(yaml.safe_dump({"data": yaml.safe_load((plain / "config.yaml").read_text())["data"]}))
    with pytest.raises(ValueError, match="config.yaml names no estimator"):
        verify(str(plain), top_k=2, epochs=0, init="estimator", progress=False)


def test_search_config_uses_the_fitted_checkpoint_path():
    search = yaml.safe_load((REPO / "configs/search/digits-hypernet.yaml").read_text())
    fit = yaml.safe_load(Path(DIGITS).read_text())
    assert search["estimator"]["init_args"]["checkpoint"] == f"{fit['checkpoint']['dirpath']}/last.ckpt"
    assert (search["search"]["levels"], search["search"]["width"]) == (fit["model"]["levels"], fit["model"]["width"])


def test_search_with_the_hypernet_estimator_runs_and_records_scores(fitted, tmp_path):
    run = tmp_path / "run"
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits-hypernet.yaml"),
                          "--estimator.init_args.checkpoint", str(fitted / "ckpt" / "last.ckpt"), "--population", "6",
                          "--children", "3", "--iterations", "2", "--search.width", "16", "--search.progress", "false",
                          "--run_dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 2 * 3 and all(r["error"] is None and 0.0 <= r["score"] <= 1.0 for r in rows)
    assert len({r["score"] for r in rows}) > 1  # genomes get different estimates


def test_population_guided_hypernet_search_resumes_as_if_never_stopped(fitted, tmp_path):
    """The hypernet trains on each iteration's population; a resumed search continues that hypernet."""
    def search(run: Path, iterations: int, *extra: str) -> list:
        args = ["--config", str(REPO / "configs/search/digits-hypernet.yaml"), "--estimator.init_args.checkpoint",
                str(fitted / "ckpt" / "last.ckpt"), "--estimator.init_args.update_steps", "3", "--population", "6",
                "--children", "3", "--search.width", "16", "--search.progress", "false"]
        assert evolution_cli(["search", *args, *extra, "--iterations", str(iterations), "--run_dir", str(run)]) == 0
        return history(run)

    def history(run: Path) -> list:
        return [(r["id"], r["parent"], r["score"]) for r in map(json.loads, (run / "history.jsonl").read_text().splitlines())]

    whole = search(tmp_path / "whole", 3)
    search(tmp_path / "cut", 1)
    assert evolution_cli(["search", "--resume", str(tmp_path / "cut"), "--iterations", "3",
                          "--search.progress", "false"]) == 0
    assert history(tmp_path / "cut") == whole
    frozen = search(tmp_path / "frozen", 3, "--estimator.init_args.update_steps", "0")
    assert frozen[:6] == whole[:6] and frozen != whole  # same first population; updates change later scores


def test_a_search_whose_estimator_updates_diverge_stops_with_one_line(fitted, tmp_path, capsys):
    """Before, a NaN hypernet scored every child at chance and the search ended 'finished'."""
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits-hypernet.yaml"),
                          "--estimator.init_args.checkpoint", str(fitted / "ckpt" / "last.ckpt"),
                          "--estimator.init_args.update_steps", "5", "--estimator.init_args.lr", "1e30",
                          "--population", "6", "--children", "3", "--iterations", "2", "--search.width", "16",
                          "--search.progress", "false", "--run_dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: hypernet update diverged at step "), err
    assert not (tmp_path / "run" / "state.pt").exists()  # nothing trained on NaN weights was saved
