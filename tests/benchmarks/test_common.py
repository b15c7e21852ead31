"""benchmarks as a package: one data root, results as small summaries plus raw files, pages drawn from JSON."""
import ast
import gzip
import json
import sys
from pathlib import Path

import pytest

from benchmarks import common, figures

BENCHMARKS = Path(common.__file__).parent
MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")
READS_DATA = ["dense_parity", "inherited_init", "predicted_weights", "ranking", "ranking_sets", "readout_solve",
              "sampling", "search_vs_random", "search_cost"]


def test_to_json_keeps_the_content_and_puts_deep_entries_on_one_line():
    doc = {"a": 1, "estimators": {"x": {"tau": 0.5, "seconds": [1, 2]}, "y": {}}, "rows": [[1, 2], {"k": None}]}
    text = common.to_json(doc, inline_depth=2)
    assert json.loads(text) == doc
    assert '  "x": {"tau": 0.5, "seconds": [1, 2]},' in text.splitlines()


def test_results_split_into_a_summary_and_raw_estimates_and_merge_back(tmp_path):
    summary = {"estimators": {"edges": {"kendall_tau": 0.9}}}
    raw = {"estimates": {"edges": {"broad": [3.0, 1.0, 2.0]}}}
    path = common.write_results("toy", summary, raw=raw, page="# toy\n", results=tmp_path)
    assert json.loads(path.read_text()) == summary
    assert json.loads(gzip.decompress((tmp_path / "toy.raw.json.gz").read_bytes())) == raw
    assert (tmp_path / "toy.md").read_text() == "# toy\n"
    assert common.read_results("toy", tmp_path) == {**summary, **raw}
    assert common.read_results("missing", tmp_path) == {}


def test_a_long_summary_is_written_flatter_to_stay_short(tmp_path, monkeypatch):
    doc = {"rows": [{"a": i, "b": [i, i]} for i in range(20)]}
    deep = common.write_results("long", doc, results=tmp_path).read_text()
    assert deep == common.to_json(doc, inline_depth=8) and deep.count("\n") > 100
    monkeypatch.setattr(common, "MAX_LINES", 30)
    flat = common.write_results("long", doc, results=tmp_path).read_text()
    assert json.loads(flat) == doc and flat.count("\n") == 24  # a row per line


def test_every_results_summary_is_short():
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        assert path.read_text().count("\n") < 2000, path.name


def test_the_ranking_page_and_picture_come_from_the_saved_json(tmp_path):
    sets = common.load_ranking_sets(iso=None)
    doc = common.read_results("ranking")
    assert "estimates" in doc and "estimates" not in json.loads((BENCHMARKS / "results/ranking.json").read_text())
    n = len(common.with_truth(sets, "broad"))
    assert len(doc["estimates"]["edges"]["broad"]) == n
    page = figures.ranking_page({k: v for k, v in doc.items() if k != "estimates"})
    assert "python -m benchmarks.ranking" in page and "| `edges` |" in page
    figures.ranking_figure(doc, sets, tmp_path / "r.png", names=["edges", "scratch50"])
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_the_kernel_page_and_picture_come_from_the_saved_json(tmp_path):
    doc = json.loads((BENCHMARKS / "results/kernel.json").read_text())
    page = figures.kernel_page(doc)
    assert "python -m benchmarks.kernel" in page and f"| {doc['rows'][0]['density']:.2f} |" in page
    figures.kernel_figure(doc, tmp_path / "k.png")
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("module", MODULES)
def test_benchmarks_import_each_other_as_a_package(module):
    tree = ast.parse((BENCHMARKS / f"{module}.py").read_text())
    bare = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name in MODULES]
    bare += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module in MODULES]
    assert bare == []
    if module != "common":  # the data root is said once
        assert '"shared"' not in (BENCHMARKS / f"{module}.py").read_text()


@pytest.mark.parametrize("module", READS_DATA)
def test_benchmarks_that_read_data_take_data_root(module, monkeypatch, capsys):
    import importlib

    main = importlib.import_module(f"benchmarks.{module}").main
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as done:
        main(["--help"]) if module == "search_cost" else main()
    assert done.value.code == 0 and "--data-root" in capsys.readouterr().out


def test_a_missing_data_root_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="point --data-root at the folder holding mnist-t10k/"):
        common.mnist_t10k(tmp_path)


def test_a_summary_page_lists_every_number_by_its_key(tmp_path):
    path = common.write_results("toy_speed", {"ratio": 1.23456, "by": {"a": {"ms": 2}}, "rows": [1, 2]},
                                results=tmp_path)
    page = path.with_suffix(".md").read_text()
    assert "`python -m benchmarks.toy_speed`" in page
    assert "| `ratio` | 1.235 |" in page and "| `by.a.ms` | 2 |" in page and "rows`" not in page


def test_raw_files_are_byte_stable(tmp_path, monkeypatch):
    # gzip stamps the time into its header unless told not to: a rewrite of the same estimates
    # would show as a changed file.
    def written(now: float) -> bytes:
        monkeypatch.setattr(gzip.time, "time", lambda: now)
        common.write_results("r", {}, raw={"x": [1]}, results=tmp_path)
        return (tmp_path / "r.raw.json.gz").read_bytes()

    assert written(1e9) == written(2e9)


def test_the_iso_set_is_saved_as_digests_and_drawn_again_exactly(tmp_path):
    from benchmarks.ranking_sets import iso_set
    from evolution.genome import SearchSpace

    space = json.loads(gzip.decompress(common.RANKING_SETS_ISO.read_bytes()))["space"]
    entries = [{**e, "acc": [0.5, 0.6]} for e in iso_set(SearchSpace.from_dict(space), 1)]
    iso = tmp_path / "iso.json.gz"
    common.save_ranking_sets({"broad": [], "iso": entries}, path=tmp_path / "sets.json.gz", iso=iso)
    saved = json.loads(gzip.decompress(iso.read_bytes()))
    assert "genome" not in saved["iso"][0] and len(iso.read_bytes()) < 2000
    assert common.load_ranking_sets(tmp_path / "sets.json.gz", iso)["iso"] == json.loads(json.dumps(entries))
    main = (tmp_path / "sets.json.gz").read_bytes()
    entries[0]["acc"].append(0.7)  # a seed trained: only the iso file is written again
    common.save_ranking_sets({"broad": [{"genome": {}, "acc": [1.0]}], "iso": entries}, path=tmp_path / "sets.json.gz",
                             iso=iso, only="iso")
    assert (tmp_path / "sets.json.gz").read_bytes() == main
    with pytest.raises(ValueError, match="only='broad': expected None or 'iso'"):
        common.save_ranking_sets({"iso": entries}, path=tmp_path / "x.json.gz", iso=iso, only="broad")
    assert json.loads(gzip.decompress(iso.read_bytes()))["iso"][0]["acc"] == [0.5, 0.6, 0.7]
    saved["iso"][1]["genome_sha256"] = "0" * 64
    iso.write_bytes(gzip.compress(json.dumps(saved).encode()))
    with pytest.raises(SystemExit, match="iso genome 0 of level 20000 is not what iso_set draws now"):
        common.load_ranking_sets(tmp_path / "sets.json.gz", iso)
