"""The README and docs/ point at things that exist."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_configs_and_benchmarks_named_exist(page):
    text = page.read_text()
    links = [l for l in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in l]
    missing = [l for l in links if not (page.parent / l).exists()]
    missing += [c for c in re.findall(r"configs/[\w/.-]+\.yaml", text) if not (REPO / c).is_file()]
    missing += [m for m in re.findall(r"python -m benchmarks\.([a-z_]+)", text)
                if not (REPO / "benchmarks" / f"{m}.py").is_file()]
    assert missing == []


def test_the_readme_is_a_guide():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 200
    # the CI runs the test command line (.ci/run greps it); "Which estimator" opens with the search_cost table
    assert re.search(r"^python3 -m venv .* pytest ", text, re.M)
    assert "## Which estimator\nWhat a search finds per CPU-second" in text and "search_cost.md" in text
