import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evolution.__main__ import main as cli
from evolution.export import export
from evolution.train import GenomeModule
from evolution.verify import verify

REPO = Path(__file__).resolve().parents[2]
SEARCH = ["search", "--config", str(REPO / "configs/search/digits.yaml"), "--population", "5", "--children", "2",
          "--iterations", "1", "--estimator.init_args.steps", "10", "--search.width", "32", "--search.progress", "false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("verify") / "run"
    assert cli([*SEARCH, "--run_dir", str(run)]) == 0
    verify(str(run), top_k=3, epochs=1, progress=False)
    return run


def test_verify_writes_fields_and_resumes_without_retraining(run_dir, monkeypatch):
    doc = json.loads((run_dir / "verify.json").read_text())
    assert {"kendall_tau", "spearman", "precision_at_k", "candidates", "settings"} <= set(doc)
    front = {c["id"] for c in json.loads((run_dir / "front.json").read_text())["front"]}
    ids = {c["id"] for c in doc["candidates"]}
    assert front <= ids and len(ids) >= 3
    for c in doc["candidates"]:
        assert {"estimate", "val_acc", "test_acc", "flops", "params", "edges", "train_seconds"} <= set(c)
        assert 0 <= c["val_acc"] <= 1 and (run_dir / "verify" / str(c["id"]) / "model.ckpt").is_file()
    assert (run_dir / "verify.png").stat().st_size > 1000
    import evolution.verify as v

    monkeypatch.setattr(v, "retrain", lambda *a, **k: pytest.fail("a finished candidate was retrained"))
    again = verify(str(run_dir), top_k=3, epochs=1, progress=False)
    assert again["candidates"] == doc["candidates"]


def test_export_round_trip(run_dir):
    cand = next(p for p in (run_dir / "verify").iterdir() if (p / "model.ckpt").is_file())
    path = export(str(cand), "torch")
    net = GenomeModule.from_checkpoint(cand / "model.ckpt").net.eval()
    program = torch.export.load(path).module()
    for batch in (1, 7, 300):
        x = torch.rand(batch, 64)
        with torch.no_grad():
            assert (program(x) - net(x)).abs().max() <= 1e-5


def test_export_onnx_without_the_extra_says_how_to_fix(run_dir, monkeypatch, capsys):
    cand = next(p for p in (run_dir / "verify").iterdir() if (p / "model.ckpt").is_file())
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name in ("onnx", "onnxscript") else real(name, *a, **k))
    assert cli(["export", str(cand), "--format", "onnx"]) == 2
    assert "ONNX export needs the onnx extra: pip install 'neuronas[onnx]'" in capsys.readouterr().err
    assert not (cand / "model.onnx").exists()


def test_bad_run_and_candidate_dirs_are_one_line(tmp_path, capsys, run_dir):
    (tmp_path / "empty").mkdir()
    assert cli(["verify", str(tmp_path / "empty")]) == 2
    assert "has no finished search iteration" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "empty")]) == 2
    assert "has no model.ckpt; verify the run first" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "empty"), "--format", "tflite"]) == 2
    assert "export format 'tflite'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("front.json", "history.jsonl", "config.yaml"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    assert cli(["verify", str(broken), "--top_k", "2"]) == 2  # the derived files alone are no search
    assert "has no finished search iteration (state.pt missing)" in capsys.readouterr().err
    (broken / "state.pt").write_bytes((run_dir / "state.pt").read_bytes())
    hist = (run_dir / "history.jsonl").read_bytes()
    (broken / "history.jsonl").write_bytes(hist.replace(b'{"id": 3', b'5\n{"id": 3'))
    assert cli(["verify", str(broken), "--top_k", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 4 is not valid JSON" in err[0] or "record 4 is not a candidate" in err[0], err
    assert not (broken / "verify.json").exists()


def test_run_pipeline_end_to_end(tmp_path, capsys):
    rc = cli(["run", "--config", str(REPO / "configs/run/digits.yaml"), "--run_dir", str(tmp_path),
              "--fit.max_epochs", "1", "--search.iterations", "1",
              "--search.population", "5", "--search.children", "2", "--verify.top_k", "2", "--verify.epochs", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "retrained front" in out and "mlp:" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"best", "dense", "kendall_tau"} <= set(summary)
    # The dense MLPs nearest in FLOPs to the retrained front, each printed in the table in FLOPs order.
    front_flops = [int(line.split()[3]) for line in out.splitlines() if line.strip() and line.split()[0].isdigit()
                   and len(line.split()) >= 7]
    names = [d["name"] for d in summary["dense"]]
    assert 1 <= len(names) <= 4 and all(f" {n} " in out for n in names)
    ladder = {w: d["flops"] for w, d in ((int(d["name"][4:]), d) for d in summary["dense"])}
    assert all(min(abs(__import__("math").log(f / d)) for d in ladder.values()) < 1.5 for f in front_flops)
    assert (tmp_path / "search" / "verify" / str(summary["best"]["id"]) / "model.pt2").is_file()
    assert (tmp_path / "estimator.ckpt").is_file()
    # Retrained from the run's supernet as its search left it (the checkpoint the run trained, then
    # the search's population updates): with no epochs, each candidate keeps its inherited function.
    from evolution.data import DigitsDataModule
    from evolution.genome import Genome
    from evolution.verify import search_estimator

    search = tmp_path / "search"
    (search / "verify.json").rename(search / "verify.scratch.json")
    doc = verify(str(search), top_k=2, epochs=0, init="estimator", progress=False)
    est = search_estimator(search, DigitsDataModule())
    state = torch.load(search / "state.pt", weights_only=False)["estimator"]["supernet"]
    assert all(torch.equal(v, state[k]) for k, v in est.supernet.state_dict().items())
    from oneshot.estimator import SupernetEstimator

    as_trained = SupernetEstimator(DigitsDataModule(), str(tmp_path / "estimator.ckpt")).supernet.state_dict()
    assert any(not torch.equal(v, as_trained[k]) for k, v in state.items())  # the search's updates moved it
    x, y = DigitsDataModule().tensors("val")
    for c in doc["candidates"]:
        net = est.initialize(Genome.load(search / "genomes" / f"{c['id']}.json")).eval()
        with torch.no_grad():
            assert c["val_acc"] == pytest.approx(float((net(x).argmax(1) == y).float().mean()))
    # Rerun on another search's settings: refused before anything of the first run is replaced.
    config = (search / "config.yaml").read_bytes()
    assert cli(["run", "--config", str(REPO / "configs/run/digits.yaml"), "--run_dir", str(tmp_path),
                "--fit.max_epochs", "1", "--search.iterations", "1", "--search.seed", "7"]) == 2
    assert "holds a different search" in capsys.readouterr().err
    assert (search / "config.yaml").read_bytes() == config


def test_export_onnx_matches(run_dir, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    # A copy: the shared candidate folder must stay without model.onnx for the test that checks that.
    cand = shutil.copytree(next(p for p in (run_dir / "verify").iterdir() if (p / "model.ckpt").is_file()),
                           tmp_path / "candidate")
    path = export(str(cand), "onnx")
    sess = ort.InferenceSession(str(path))
    x = torch.rand(5, 64)
    got = torch.as_tensor(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        assert (got - GenomeModule.from_checkpoint(cand / "model.ckpt").net.eval()(x)).abs().max() <= 1e-5


class ConstantInitializer:
    """Starts every network from one fixed draw (seed 123), so an untrained retrain shows it."""

    def initialize(self, genome):
        from evolution.network import SparseNet

        return SparseNet(genome, torch.Generator().manual_seed(123))


def test_verify_can_start_from_predicted_weights(run_dir, tmp_path):

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "verify.json").unlink()
    doc = verify(str(run), top_k=2, epochs=0, initializer=ConstantInitializer(), progress=False)
    assert doc["settings"]["init"] == "predicted"
    assert doc["settings"]["initializer"].endswith(".ConstantInitializer")

    class OtherInitializer(ConstantInitializer):
        pass

    with pytest.raises(ValueError, match="made with other settings"):  # two initializers' results never mix
        verify(str(run), top_k=2, epochs=0, initializer=OtherInitializer(), progress=False)

    class FromFile(ConstantInitializer):  # a checkpoint-backed initializer, retrained in place
        path = run / "init.ckpt"

    (run / "verify.json").unlink()
    FromFile.path.write_bytes(b"first")
    verify(str(run), top_k=2, epochs=0, initializer=FromFile(), progress=False)
    FromFile.path.write_bytes(b"second")
    with pytest.raises(ValueError, match="made with other settings"):
        verify(str(run), top_k=2, epochs=0, initializer=FromFile(), progress=False)
    from evolution.data import DigitsDataModule
    from evolution.genome import Genome

    x, y = DigitsDataModule().tensors("val")
    for c in doc["candidates"]:
        net = ConstantInitializer().initialize(Genome.load(run / "genomes" / f"{c['id']}.json")).eval()
        with torch.no_grad():
            assert c["val_acc"] == pytest.approx(float((net(x).argmax(1) == y).float().mean()))


def test_verify_follows_the_search_as_it_goes_on(run_dir, tmp_path, monkeypatch):
    """After a resumed search moves its front, verify counts and flags what is chosen now; the
    retrained candidates it no longer chooses are kept apart, never retrained."""
    import evolution.verify as v

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    first = json.loads((run / "verify.json").read_text())
    chosen = v.candidates(run, 3)
    assert len(chosen) >= 3
    dropped, kept = chosen[0], [dict(r) for r in chosen[1:]]
    kept[0]["on_front"] = not kept[0]["on_front"]  # as if the front had moved
    monkeypatch.setattr(v, "candidates", lambda run_dir, top_k, state=None: kept)
    monkeypatch.setattr(v, "retrain", lambda *a, **k: pytest.fail("a finished candidate was retrained"))
    doc = verify(str(run), top_k=3, epochs=1, progress=False)
    assert [c["id"] for c in doc["candidates"]] == [r["id"] for r in kept]
    assert [c["on_front"] for c in doc["candidates"]] == [r["on_front"] for r in kept]
    assert [c["id"] for c in doc["former_candidates"]] == [dropped["id"]]
    by_id = {c["id"]: c for c in first["candidates"]}
    assert all(c["val_acc"] == by_id[c["id"]]["val_acc"] for c in doc["candidates"])
    expected = v.rank_figures(np.array([c["estimate"] for c in doc["candidates"]]),
                              np.array([c["val_acc"] for c in doc["candidates"]]), 3)
    assert doc["kendall_tau"] == pytest.approx(expected["kendall_tau"], nan_ok=True)
    # Chosen again, it comes back from former_candidates without retraining.
    monkeypatch.setattr(v, "candidates", lambda run_dir, top_k, state=None: chosen)
    again = verify(str(run), top_k=3, epochs=1, progress=False)
    assert [c["id"] for c in again["candidates"]] == [r["id"] for r in chosen] and "former_candidates" not in again


def test_precision_at_zero_and_bad_top_k(run_dir):
    from evolution.verify import rank_figures

    assert np.isnan(rank_figures(np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]), 0)["precision_at_k"])
    with pytest.raises(ValueError, match="top_k -1, epochs 1: expected >= 0"):
        verify(str(run_dir), top_k=-1, epochs=1, progress=False)
