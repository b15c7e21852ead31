"""Bad input as a hostile or unlucky user gives it: one line naming the problem, exit 2; data errors
named as data errors; a blown-up candidate flagged, not scored."""

import pytest

from evolution.__main__ import main as cli
from oneshot.__main__ import main as oneshot_cli
from probes import REPO, TINY


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_checkpoint_of_another_grid_or_genome_never_replaces_the_flags(tmp_path, capsys):
    common = ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1"]
    assert oneshot_cli(["fit", "--config", str(REPO / "configs/oneshot/digits.yaml"), *common, "--model.width", "16",
                        "--checkpoint.dirpath", str(tmp_path / "s"), "--trainer.max_epochs", "1",
                        "--trainer.limit_train_batches", "1"]) == 0
    last = tmp_path / "s" / "last.ckpt"
    assert oneshot_cli(["fit", "--config", str(REPO / "configs/oneshot/digits.yaml"), *common, "--model.width", "32",
                        "--trainer.max_epochs", "2", "--ckpt_path", str(last)]) == 2
    assert f"checkpoint {last} was trained with model.width 16, the flags give 32" in _one_line(capsys)
    train = ["--config", str(REPO / "configs/train/digits.yaml"), *common, "--test_after_fit", "false"]
    assert cli(["train", "fit", *train, "--model.genome", "mlp:16", "--checkpoint.dirpath", str(tmp_path / "t"),
                "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]) == 0
    assert cli(["train", "test", *train[:-2], "--model.genome", "mlp:32", "--ckpt_path",
                str(tmp_path / "t" / "last.ckpt")]) == 2
    assert "was trained with model.genome 'mlp:16', the flags give 'mlp:32'" in _one_line(capsys)


def test_non_finite_csv_cells_are_named_as_data_errors(tmp_path, capsys):
    from evolution.data import CSVDataModule

    for cell in ("nan", "inf", "-inf"):
        path = tmp_path / f"{cell}.csv"
        path.write_text("a,b,label\n" + "".join(f"{i},{i + 1},{i % 2}\n" for i in range(9)).replace("4,5,0", f"4,{cell},0"))
        with pytest.raises(ValueError, match=f"{path}: feature column 'b' holds '{cell}' \\(line 6, 1 such cells"):
            CSVDataModule(str(path))
    assert cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--data",
                "evolution.data.CSVDataModule", "--data.path", str(path), "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert "feature column 'b' holds '-inf'" in _one_line(capsys)


def test_a_stray_label_string_is_warned_with_its_count(tmp_path):
    from evolution.data import CSVDataModule

    path = tmp_path / "stray.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(20)) + "7,three\n8,thre\n")
    with pytest.warns(UserWarning, match="2 labels of column 'label' are not numbers like the others "
                                         "\\(first 'three' on line 22\\)"):
        data = CSVDataModule(str(path))
    assert data.num_classes == 5  # kept (the user may mean it), but not without a word


@pytest.mark.parametrize("command", [["search", *TINY[2:]], ["train", "fit"], ["verify", "RUN"], ["search", "--resume", "RUN"]])
def test_a_binary_config_is_one_line_naming_it(tmp_path, capsys, command, copy):
    binary = copy / "config.yaml"  # a run's own config.yaml for verify and --resume, else --config
    binary.write_bytes(bytes(range(256)) * 4)
    args = [str(copy) if a == "RUN" else a for a in command]
    if command[0] != "verify" and "--resume" not in command:
        args += ["--config", str(binary)]
    rc = cli(args)
    err = _one_line(capsys)
    assert rc == 2 and str(binary) in err and ("not a text YAML file" in err or "not a YAML text file" in err), err


def test_bad_config_values_are_one_line(tmp_path, capsys, finished):
    assert cli(["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--trainer.max_epochs", "-5",
                "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert "max_epochs` must be a non-negative integer or -1. You passed in -5" in _one_line(capsys)
    assert cli(["verify", str(finished), "--epochs", "0"]) == 2
    assert "epochs 0 with init scratch would score untrained networks" in _one_line(capsys)
    assert not (finished / "verify.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--data", "evolution.data.Nope"], "Parser key \"data\": module 'evolution.data' has no attribute 'Nope'"),
    (["--data", "evolution.data.DigitsDataModule", "--data.batch_size", "x"],
     "Parser key \"data.batch_size\": Expected a <class 'int'>. Got value: x"),
    (["--data", "evolution.data.DigitsDataModule", "--estimator", "evolution.estimators.TrainEstimator",
      "--estimator.stepz", "3"], "Parser key \"estimator\": Option 'stepz' is not accepted")])
def test_a_misspelt_class_or_argument_names_the_key_and_the_reason_alone(tmp_path, capsys, args, message):
    assert cli(["search", "--search.run_dir", str(tmp_path / "run"), *args]) == 2
    assert _one_line(capsys) == f"error: {message}"  # not jsonargparse's union alternatives
    assert not (tmp_path / "run").exists()


def test_a_bug_inside_a_class_a_config_builds_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    # One class raises a bug, one a missing package: only the second is the user's to fix.
    (tmp_path / "cli_probe_data.py").write_text(
        "import lightning.pytorch as pl\n\n"
        "class Buggy(pl.LightningDataModule):\n"
        "    def __init__(self, seed: int = 0):\n"
        "        super().__init__()\n"
        "        raise TypeError('a bug')\n\n"
        "class NeedsPackage(pl.LightningDataModule):\n"
        "    def __init__(self, seed: int = 0):\n"
        "        super().__init__()\n"
        "        raise ModuleNotFoundError(\"No module named 'somepackage'\")\n\n"
        "class BadImport(pl.LightningDataModule):\n"
        "    def __init__(self, seed: int = 0):\n"
        "        super().__init__()\n"
        "        raise ImportError(\"cannot import name 'Typo'\")\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["search", "--estimator", "evolution.estimators.TrainEstimator", "--search.run_dir", str(tmp_path / "run")]
    with pytest.raises(ValueError) as caught:  # jsonargparse's wrapper, not passed off as bad input (exit 2)
        cli(args + ["--data", "cli_probe_data.Buggy"])
    cause = caught.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, TypeError) and str(cause) == "a bug"
    with pytest.raises(ValueError):  # a misspelt name in an import is a bug too, not a missing package
        cli(args + ["--data", "cli_probe_data.BadImport"])
    assert cli(args + ["--data", "cli_probe_data.NeedsPackage"]) == 2
    assert "No module named 'somepackage'" in _one_line(capsys)
    assert cli(args + ["--data", "evolution.data.IDXDataModule", "--data.root", str(tmp_path / "none")]) == 2
    assert f"IDX data folder {tmp_path / 'none'} does not exist" in _one_line(capsys)  # bad input stays one line


def test_a_setting_of_several_types_lists_each_reason_and_a_lightning_refusal_is_one_line(tmp_path, capsys):
    train = ["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--trainer.logger", "false",
             "--trainer.default_root_dir", str(tmp_path)]
    assert cli(train + ["--seed_everything", "x"]) == 2  # a bool or an int: not only the first
    assert _one_line(capsys) == ("error: Parser key \"seed_everything\": Expected a <class 'bool'> / "
                                 "Expected a <class 'int'> (got x)")
    assert cli(train + ["--trainer.callbacks", "nope.Callback"]) == 2  # a class, not the list jsonargparse tried first
    assert _one_line(capsys) == ("error: Parser key \"trainer.callbacks\": Problem with given class_path "
                                 "'nope.Callback': No module named 'nope'")
    early = ["--trainer.callbacks+", "lightning.pytorch.callbacks.EarlyStopping", "--trainer.callbacks.monitor", "v"]
    assert cli(train + early + ["--trainer.callbacks.patience", "x"]) == 2  # the key path into the class
    assert _one_line(capsys) == "error: Parser key \"trainer.callbacks.patience\": Expected a <class 'int'>. Got value: x"
    assert cli(train + early + ["--trainer.callbacks.mode", "foo"]) == 2
    assert _one_line(capsys) == "error: `mode` can be min, max, got foo"  # Lightning's MisconfigurationException
    cpu = ["--trainer.accelerator", "cpu"]
    assert cli(train + cpu + ["--trainer.devices", "x"]) == 2  # Lightning's TypeError, raised in its own code
    line = _one_line(capsys)
    assert line.startswith("error: trainer: `devices` selected with") and "should be an int > 0" in line


def test_a_type_error_raised_outside_lightning_while_building_the_trainer_keeps_its_traceback(tmp_path, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    from evolution.train import LoggerSaveConfigCallback

    train = ["train", "fit", "--config", str(REPO / "configs/train/digits.yaml"), "--trainer.logger", "false",
             "--trainer.default_root_dir", str(tmp_path)]
    with monkeypatch.context() as m:
        def bug(self, config, callbacks):
            raise TypeError("a bug")

        m.setattr(LightningCLI, "_instantiate_trainer", bug)
        with pytest.raises(TypeError, match="a bug"):
            cli(train)
    # our callback called by Lightning with arguments it does not take: Python raises that TypeError in
    # Lightning's frame, yet it is our bug, not the user's input
    monkeypatch.setattr(LoggerSaveConfigCallback, "__init__", lambda self, parser, config: None)
    with pytest.raises(TypeError, match="overwrite"):
        cli(train)


def test_a_candidate_whose_training_blew_up_is_flagged_not_scored():
    from evolution import seeds
    from evolution.data import DigitsDataModule
    from evolution.estimators import TrainEstimator

    data = DigitsDataModule()
    g = seeds.build("mlp:32", seeds.space_for_spec("mlp:32", (64,), 10))
    fine, blown = (TrainEstimator(data, steps=60, batch_size=64, lr=lr).estimate([g])[0] for lr in (3e-3, 1e6))
    assert fine.ok and fine.score > 0.5
    assert not blown.ok and "training diverged: the loss rose from" in blown.error and blown.score != blown.score
