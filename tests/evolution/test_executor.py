import json
import shutil
import sys
from pathlib import Path

import pytest

from evolution.__main__ import main as cli
from evolution.executor import Failed, LocalExecutor, make_executor
from evolution.search import Search, SearchSettings
from evolution.verify import verify

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "configs/search/digits.yaml"), "--population", "6", "--children", "3",
        "--estimator.init_args.steps", "8", "--search.width", "32", "--search.progress", "false"]


def _records(run: Path) -> list[dict]:
    lines = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in lines]


def _job(shared, item):
    if item == "bad":
        raise RuntimeError("this candidate breaks")
    return shared + item


def test_local_executor_keeps_order_and_records_a_job_that_raises():
    out = LocalExecutor().map(_job, "x", ["a", "bad", "c"])
    assert out[0] == "xa" and out[2] == "xc"
    assert isinstance(out[1], Failed) and out[1].error == "RuntimeError: this candidate breaks"


def test_unknown_executor_or_missing_ray_is_one_line(monkeypatch):
    with pytest.raises(ValueError, match="executor 'dask': expected 'local' or 'ray'"):
        make_executor("dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ValueError, match=r"pip install 'neuronas\[ray\]'"):
        make_executor("ray")


def test_an_estimator_that_scores_in_process_refuses_ray(tmp_path):
    from evolution.data import DigitsDataModule

    class Fixed:
        def estimate(self, genomes, parents=None):
            raise AssertionError("never reached")

    data = DigitsDataModule()
    data.setup()
    with pytest.raises(ValueError, match="executor 'ray': Fixed scores in this process"):
        Search(SearchSettings(run_dir=str(tmp_path), executor="ray"), data, Fixed())


def test_ray_search_matches_local_and_a_failing_task_is_retried_then_recorded(tmp_path):
    ray = pytest.importorskip("ray")
    from evolution.executor import RayExecutor

    ex = RayExecutor(num_cpus=1, retries=2, local_cpus=2)
    try:
        # A task that raises on its first try succeeds on the retry; one that always raises is recorded.
        marker = tmp_path / "tries"

        def flaky(shared, item):
            if item == "always":
                raise RuntimeError("broken for good")
            with open(marker, "a") as f:
                f.write("x")
            if marker.read_text() == "x":
                raise RuntimeError("transient")
            return shared + item

        out = ex.map(flaky, "ok-", ["once", "always"])
        assert out[0] == "ok-once" and marker.read_text() == "xx"
        assert isinstance(out[1], Failed) and "broken for good" in out[1].error

        # The shared object is deserialised once per worker (2 here), not once per task.
        unpickled = tmp_path / "unpickled"

        class Counted:
            def __init__(self):
                self.payload = list(range(100))  # a state, so unpickling calls __setstate__

            def __setstate__(self, state):
                self.__dict__.update(state)
                with open(unpickled, "a") as f:
                    f.write("u")

        counted = Counted()
        # each task reads the object it was handed: the cached copy is the one put
        assert ex.map(lambda shared, i: shared.payload[-1 - i], counted, list(range(8))) == list(range(99, 91, -1))
        assert ex.map(lambda shared, i: -shared.payload[i], counted, list(range(8))) == [-i for i in range(8)]
        assert 1 <= len(unpickled.read_text()) <= 2

        # The same search on Ray tasks and in this process: the same history for the same seed.
        local, remote = tmp_path / "local", tmp_path / "ray"
        assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(local)]) == 0
        assert cli(["search", *TINY, "--iterations", "1", "--run_dir", str(remote), "--search.executor", "ray"]) == 0
        assert _records(remote) == _records(local) and len(_records(local)) == 6 + 3

        # verify's retraining as Ray tasks: the same figures as one after another here.
        shutil.copytree(local, tmp_path / "local2")
        figures = []
        for run, how in ((local, "local"), (tmp_path / "local2", "ray")):
            doc = verify(str(run), top_k=2, epochs=1, progress=False, executor=how)
            figures.append(sorted((c["id"], c["val_acc"], c["test_acc"]) for c in doc["candidates"]))
        assert figures[0] == figures[1] and len(figures[0]) >= 2
    finally:
        ray.shutdown()
