"""Helpers of the reliability probes: a tiny search config, a code-running payload, run files."""
import json
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "configs/search/digits.yaml"), "--population", "5", "--children", "2",
        "--estimator.init_args.steps", "8", "--search.width", "32", "--search.progress", "false"]


class Payload:
    """Pickles to a call that creates ``marker``: a file holding it runs code if loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def records(run: Path) -> list[dict]:
    """History without wall-clock seconds (the one field that differs between identical runs)."""
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in (run / "history.jsonl").read_text().splitlines()]


def front(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((run / "front.json").read_text())["front"]]


