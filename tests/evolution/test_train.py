import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evolution import seeds
from evolution.__main__ import main as cli
from evolution.data import DigitsDataModule
from evolution.estimators import Parent, TrainEstimator
from evolution.mutations import add_edges
from evolution.train import GenomeModule

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _command(path: Path):
    kind = path.relative_to(REPO / "configs").parts[0]
    if kind == "oneshot":
        from oneshot.__main__ import main as oneshot_cli

        return oneshot_cli, ["fit"]
    if kind == "hypernet":
        from hypernet.__main__ import main as hypernet_cli

        return hypernet_cli, ["fit"]
    return cli, {"train": ["train", "fit"], "search": ["search"], "run": ["run"]}[kind]


@pytest.mark.parametrize("path", [c for c in CONFIGS if c.parts[-2] not in ("sweeps", "logging")],
                         ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_parses(path, capsys):
    main, command = _command(path)
    with pytest.raises(SystemExit) as done:
        main([*command, "--config", str(path), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"].startswith("evolution.data.")
    if command[-1] == "fit":  # named, so metrics.csv is written whether or not tensorboard is installed
        assert printed["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
        assert (printed["checkpoint"]["monitor"], printed["checkpoint"]["mode"]) == ("val_loss", "min")


def test_train_digits_mlp64_reaches_95_percent(tmp_path, capsys):
    rc = cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--trainer.default_root_dir",
              str(tmp_path), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "20"])
    assert rc == 0
    metrics = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()
    header = metrics[0].split(",")
    test_acc = [float(l.split(",")[header.index("test_acc")]) for l in metrics[1:] if l.split(",")[header.index("test_acc")]]
    assert test_acc and test_acc[-1] >= 0.95
    assert {"train_loss", "val_loss", "val_acc", "test_acc"} <= set(header)
    best = next(tmp_path.rglob("best-*.ckpt"))
    module = GenomeModule.from_checkpoint(best)
    x, y = DigitsDataModule().tensors("test")
    with torch.no_grad():
        assert (module(x).argmax(1) == y).float().mean() >= 0.95


def _written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("extra, message", [
    (["--model.genome", "{{bad}}"], "not valid JSON"),
    (["--model.genome", "mlp:0"], "sizes must be positive"),
    (["--model.lr", "fast"], 'Parser key "model.lr": Expected a <class \'float\'>'),
    (["--data", "evolution.data.IDXDataModule", "--data.root", "/nonexistent/mnist"], "IDX data folder /nonexistent/mnist does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, extra, message):
    rc = cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--trainer.default_root_dir",
              str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "out").exists() or not _written(tmp_path / "out")


def test_genome_file_must_match_the_data(tmp_path, capsys):
    space = seeds.space_for_spec("mlp:8", (1, 28, 28), 10)
    seeds.build("mlp:8", space).save(tmp_path / "g.json")
    rc = cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--model.genome", str(tmp_path / "g.json"),
              "--trainer.default_root_dir", str(tmp_path / "out")])
    assert rc == 2
    assert "has 784 inputs and 10 outputs; the data has 64 inputs and 10 classes" in capsys.readouterr().err
    (tmp_path / "t.json").write_text(json.dumps({"format": "neuronas.genome", "version": 1})[:-5])
    assert cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--model.genome",
                str(tmp_path / "t.json"), "--trainer.default_root_dir", str(tmp_path / "out")]) == 2
    assert "t.json: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_csv_without_target_column(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    rc = cli(["train", "fit", "--data", "evolution.data.CSVDataModule", "--data.path", str(tmp_path / "d.csv"),
              "--trainer.default_root_dir", str(tmp_path / "out")])
    assert rc == 2 and "no target column 'label' (columns: a, b, y)" in capsys.readouterr().err


def test_train_estimator_scores_and_reports_divergence():
    data = DigitsDataModule()
    space = seeds.space_for_spec("mlp:32", data.input_shape, data.num_classes)
    g = seeds.build("mlp:32", space)
    good, = TrainEstimator(data, steps=60).estimate([g])
    assert good.ok and good.score > 0.8 and good.seconds > 0
    again, = TrainEstimator(data, steps=60).estimate([g])
    assert again.score == good.score  # seeded by the genome: same genome, same estimate


    class Poisoned:  # a train split whose loss is not finite, as a diverging run's becomes
        def tensors(self, split):
            x, y = data.tensors(split)
            return (x * float("inf"), y) if split == "train" else (x, y)

    bad, = TrainEstimator(Poisoned(), steps=30).estimate([g])
    assert not bad.ok and bad.error == "training diverged at step 0: loss is nan; lower the learning rate"
    # one step at an absurd rate: the loss before it was fine, the net after it is not
    blown, = TrainEstimator(data, steps=1, lr=1e30).estimate([g])
    assert not blown.ok and blown.error == "training diverged after its last step: its outputs are not finite; " \
                                          "lower the learning rate"


def test_lamarckian_first_phase_keeps_inherited_weights():
    data = DigitsDataModule()
    space = seeds.space_for_spec("mlp:32", data.input_shape, data.num_classes)
    g = seeds.build("mlp:32", space)
    parent, = TrainEstimator(data, steps=40, keep_state=True).estimate([g])
    child, how = add_edges(g, np.random.default_rng(0))
    est = TrainEstimator(data, steps=5, warm_start=True, new_edge_steps=5)
    out, = est.estimate([child], [Parent(parent.state, how)])
    shared = np.isin(space.edge_id(*child.edges.T), space.edge_id(*g.edges.T))
    lookup = dict(zip(space.edge_id(*g.edges.T).tolist(), parent.state["edge"].tolist()))
    kept = out.state["edge"][torch.as_tensor(shared)]
    assert torch.allclose(kept, torch.tensor([lookup[i] for i in space.edge_id(*child.edges[shared].T).tolist()]))
    assert (out.state["edge"][torch.as_tensor(~shared)] != 0).any()  # the new edges did train
    assert out.score >= parent.score - 0.05


def test_grid_overrides_keep_a_conv_spec_s_channels():
    from evolution.train import resolve_genome

    g = resolve_genome("conv:8x3,mlp:64", (1, 8, 8), 10, levels=3)
    assert g.space.levels == 3 and g.space.channels == 8 and g.space.lattice == (8, 8)
    for grid in ({"width": 0}, {"levels": 0}, {"width": -4}):  # 0 was taken for unset and trained the spec's grid
        with pytest.raises(ValueError, match="expected at least 1 each"):
            resolve_genome("mlp:64", (1, 8, 8), 10, **grid)


def test_cosine_over_steps_when_the_run_is_bounded_by_max_steps():
    import lightning.pytorch as pl

    data = DigitsDataModule()
    g = seeds.build("mlp:16", seeds.space_for_spec("mlp:16", data.input_shape, data.num_classes))
    module = GenomeModule(g.to_json(), data.input_shape, data.num_classes, lr=1e-2, scheduler="cosine")
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(max_epochs=-1, max_steps=30, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=[Record()], accelerator="cpu")
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    # 30 steps span 3 epochs of 12 batches: annealed once over the steps, never back up per epoch.
    assert len(lrs) == 30 and lrs[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 1e-4
    # A checkpoint from when the schedule was a CosineAnnealingLR still resumes.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    old.step()
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    sched.load_state_dict(old.state_dict())
    assert sched.last_epoch == 1


def test_population_draws_fit_a_small_train_split():
    from evolution.estimators import population_steps

    data = DigitsDataModule(train_size=50)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    (_, x, y), = population_steps(opt, 0.1, 1, np.random.default_rng(0), [None, None], 2,
                                  data.tensors("train"), batch_size=128)
    assert len(y) == 50 == len(x)


def test_fit_keeps_the_epoch_of_lowest_val_loss_and_writes_metrics_csv_with_tensorboard_around(tmp_path, monkeypatch):
    # sklearn's wine (178 rows, 27 for validation): validation accuracy reaches 1.0 within a few
    # epochs while the loss goes on falling; the first epoch at full accuracy is not the best network.
    import csv

    from lightning.pytorch.trainer.connectors.logger_connector import logger_connector
    from sklearn.datasets import load_wine

    # Lightning's own default logger would be TensorBoard here (and write no metrics.csv).
    monkeypatch.setattr(logger_connector, "_TENSORBOARD_AVAILABLE", True)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as Lightning's import leaves it
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    wine = load_wine()
    with open(tmp_path / "wine.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(wine.data.shape[1])] + ["label"])
        w.writerows(list(x) + [y] for x, y in zip(wine.data, wine.target))
    assert cli(["train", "fit", "--data", "evolution.data.CSVDataModule", "--data.path", str(tmp_path / "wine.csv"),
                "--data.batch_size", "32", "--model.genome", "mlp:32", "--trainer.max_epochs", "30",
                "--trainer.default_root_dir", str(tmp_path / "out"), "--trainer.enable_progress_bar", "false",
                "--test_after_fit", "false"]) == 0
    with open(tmp_path / "out/lightning_logs/version_0/metrics.csv") as f:
        val = [r for r in csv.DictReader(f) if r["val_loss"]]
    losses, accs = [float(r["val_loss"]) for r in val], [float(r["val_acc"]) for r in val]
    first_at_best_acc = accs.index(max(accs))
    lowest_loss = losses.index(min(losses))
    assert first_at_best_acc < lowest_loss  # the case the monitor decides
    best = next((tmp_path / "out").rglob("best-*.ckpt"))
    assert best.name.startswith(f"best-epoch={int(val[lowest_loss]['epoch'])}-")
    # the fit's Adam steps asked the cached CUDA count, not NVML, where this machine has no GPU
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if torch.cuda.is_available() else "0")
