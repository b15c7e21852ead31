"""A tiny finished search shared by the reliability probes."""
import shutil
from pathlib import Path

import pytest

from evolution.__main__ import main as cli
from probes import TINY

@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A 3-iteration search, not to be changed (copy it)."""
    run = tmp_path_factory.mktemp("reliability") / "run"
    assert cli(["search", *TINY, "--iterations", "3", "--run_dir", str(run)]) == 0
    return run


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run
