"""The packages use each other only through public names."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("evolution", "oneshot", "hypernet", "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[str]:
    """``module: name`` for each import of a private module or name in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            if any(_private(p) for p in node.module.split(".")) or any(_private(n) for n in names):
                found.append(f"{node.module}: {', '.join(names)}")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if any(_private(p) for p in a.name.split("."))]
    return found


def test_the_scan_finds_private_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from jsonargparse._util import import_object\nfrom evolution.network import _long\n"
                   "import torch._dynamo\nfrom __future__ import annotations\n")
    assert private_imports(bad) == ["jsonargparse._util: import_object", "evolution.network: _long", "torch._dynamo"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_imports(package):
    found = {str(p.relative_to(REPO)): private_imports(p) for p in sorted((REPO / package).rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize("plugin", ("oneshot", "hypernet"))
def test_plugins_take_the_cli_helpers_from_evolution_cli(plugin):
    text = "\n".join(p.read_text() for p in (REPO / plugin).rglob("*.py"))
    assert "evolution.__main__" not in text and "from evolution.cli import guarded, module_cli" in text


def test_the_estimators_helpers_come_from_their_own_room_not_the_hub():
    # evolution.estimators re-exports them for old imports; the packages take them from evolution.scoring.
    moved = {"finite", "population_steps"}
    found = []
    for path in sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "evolution.estimators":
                found += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name in moved]
    assert found == []
