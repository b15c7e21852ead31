"""What every benchmark shares: where data and results live, how results are written, the ranking sets.

- Data: ``--data-root`` (``add_data_root``), by default ``../shared/data`` beside the repository
  (mnist-t10k is ``DATA_ROOT / "mnist-t10k"``); every benchmark takes it, so one runs from a clean
  clone wherever the data is.
- Results: ``benchmarks/results/NAME.json``, a small summary (``write_results``; nested entries
  written one per line, so a reader can scan it), ``NAME.raw.json.gz`` for raw estimates too large
  to read (``read_results`` merges them back), and ``NAME.md`` with the table a reader needs.
- The estimator cache: ``runs/benchmarks/`` (``CACHE``) holds trained estimators and work files.
  ``ranking.py`` trains the supernets and the hypernet there; ``predicted_weights.py`` and
  ``inherited_init.py`` reuse them (same settings, same file), ``search_cost.py`` keeps its arms there.
  Delete it to retrain from scratch.
- The ranking sets (``ranking_sets.py`` builds them): ``load_ranking_sets`` and ``with_truth``.

Run a benchmark as a module from the repository root: ``python -m benchmarks.NAME``.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA_ROOT = REPO.parent / "shared" / "data"
CACHE = REPO / "runs" / "benchmarks"
RANKING_SETS = RESULTS / "ranking_sets.json.gz"
RANKING_SETS_ISO = RESULTS / "ranking_sets_iso.json.gz"  # the iso-cost set: its own file, changed apart
MAX_LINES = 1500  # a results summary longer than this is not read: its raw part belongs in NAME.raw.json.gz


def add_data_root(ap: argparse.ArgumentParser) -> None:
    """``--data-root``: the folder holding the offline data sets (``mnist-t10k/``)."""
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT,
                    help=f"folder of the offline data sets, e.g. its mnist-t10k/ (default {DATA_ROOT})")


def mnist_t10k(data_root: str | Path = DATA_ROOT) -> Path:
    """The mnist-t10k folder under ``data_root``; one line naming the flag when it is missing."""
    path = Path(data_root) / "mnist-t10k"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; point --data-root at the folder holding mnist-t10k/")
    return path


def to_json(doc, indent: int = 1, inline_depth: int = 2) -> str:
    """``doc`` as JSON with objects and lists below ``inline_depth`` each on one line: a results
    file stays short enough to read (an entry per line) and still diffs line by line."""
    def emit(x, depth: int) -> str:
        if depth >= inline_depth or not isinstance(x, (dict, list)) or not x:
            return json.dumps(x, separators=(", ", ": "))
        pad, inner = " " * indent * depth, " " * indent * (depth + 1)
        if isinstance(x, dict):
            body = [f"{inner}{json.dumps(str(k))}: {emit(v, depth + 1)}" for k, v in x.items()]
            return "{\n" + ",\n".join(body) + f"\n{pad}}}"
        return "[\n" + ",\n".join(f"{inner}{emit(v, depth + 1)}" for v in x) + f"\n{pad}]"

    return emit(doc, 0) + "\n"


def summary_page(name: str, summary: dict) -> str:
    """A plain ``NAME.md``: the script, and every number of the summary by its key (lists left out)."""
    rows = []

    def walk(x, key: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif not isinstance(x, list):
            rows.append(f"| `{key}` | {x:.4g} |" if isinstance(x, float) else f"| `{key}` | {x} |")

    walk(summary, "")
    return "\n".join([f"# {name}", "", f"Made by `python -m benchmarks.{name.split('_cuda')[0]}` "
                      f"(`benchmarks/results/{name}.json`; lists of rows are in the JSON).", "",
                      "| key | value |", "|---|---|", *rows]) + "\n"


def summary_json(summary: dict) -> str:
    """JSON as deep as a reader can scan it, as flat as keeps the summary under ``MAX_LINES``."""
    text = to_json(summary, inline_depth=2)
    for depth in range(8, 2, -1):
        deeper = to_json(summary, inline_depth=depth)
        if deeper.count("\n") <= MAX_LINES:
            return deeper
    return text


def write_results(name: str, summary: dict, raw: dict | None = None, page: str | None = None,
                  results: Path = RESULTS) -> Path:
    """Write ``NAME.json`` (``summary``), ``NAME.raw.json.gz`` (``raw``, when given) and ``NAME.md``
    (``page``, else ``summary_page``) under ``results``; returns the JSON's path."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    if raw is not None:
        _atomic(results / f"{name}.raw.json.gz", gzip.compress(json.dumps(raw, separators=(",", ":")).encode(), 9, mtime=0))
    _atomic(path, summary_json(summary).encode())
    _atomic(results / f"{name}.md", (summary_page(name, summary) if page is None else page).encode())
    return path


def read_results(name: str, results: Path = RESULTS) -> dict:
    """``NAME.json`` with ``NAME.raw.json.gz``'s keys merged in ({} when there is none yet)."""
    path = results / f"{name}.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    raw = results / f"{name}.raw.json.gz"
    if raw.is_file():
        doc.update(json.loads(gzip.decompress(raw.read_bytes())))
    return doc


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- the ranking sets ------------------------------------------------------------------------
def pack_genome(genome: dict) -> dict:
    """Edges as row-to-row differences in int16, base64: a third of the gzipped JSON lists' size."""
    if "edges" not in genome:
        return genome
    e = np.asarray(genome["edges"], dtype=np.int64).reshape(-1, 2)
    delta = np.diff(e, axis=0, prepend=np.zeros((1, 2), dtype=np.int64)).astype(np.int16)
    return {**{k: v for k, v in genome.items() if k != "edges"}, "edges_delta_int16": base64.b64encode(delta.tobytes()).decode()}


def unpack_genome(genome: dict) -> dict:
    """``pack_genome`` undone (a genome saved unpacked is returned as it is)."""
    if "edges_delta_int16" not in genome:
        return genome
    delta = np.frombuffer(base64.b64decode(genome["edges_delta_int16"]), dtype=np.int16).reshape(-1, 2)
    edges = np.cumsum(delta.astype(np.int64), axis=0)
    return {**{k: v for k, v in genome.items() if k != "edges_delta_int16"}, "edges": edges.tolist()}


def genome_sha256(genome: dict) -> str:
    """A digest of a genome dict's content (any packing), to check a regenerated genome against."""
    g = unpack_genome(genome)
    return hashlib.sha256(json.dumps(g, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _iso_genomes(part: dict) -> list[dict]:
    """The iso set's entries with their genomes drawn again (``ranking_sets.iso_set`` is deterministic;
    the file keeps each genome's level, index and digest, not its edges, which are megabytes) and
    checked against the digests."""
    from benchmarks.ranking_sets import ISO_LEVELS, iso_set
    from evolution.genome import SearchSpace

    entries = part["iso"]
    per_level = 1 + max(e["index"] for e in entries)
    print(f"drawing the iso set's {len(entries)} genomes again (several minutes)", flush=True)
    fresh = iso_set(SearchSpace.from_dict(part["space"]), per_level)
    out = []
    for e in entries:
        g = fresh[ISO_LEVELS.index(e["level"]) * per_level + e["index"]]["genome"]
        if genome_sha256(g) != e["genome_sha256"]:
            raise SystemExit(f"error: iso genome {e['index']} of level {e['level']} is not what iso_set draws now; "
                             "the iso set must be rebuilt (python -m benchmarks.ranking_sets --iso N into a new file)")
        out.append({**{k: v for k, v in e.items() if k not in ("genome_sha256", "index")}, "genome": g})
    return out


def load_ranking_sets(path: Path = RANKING_SETS, iso: Path | None = RANKING_SETS_ISO) -> dict:
    """The saved sets: ``{"broad": [...], "lineage": [...], "iso": [...]}``, each entry with genome and
    truth; ``iso=None``: without the iso set (whose genomes take minutes to draw again)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; build it with python -m benchmarks.ranking_sets")
    doc = json.loads(gzip.decompress(path.read_bytes()))
    if iso is not None and iso.exists():
        part = json.loads(gzip.decompress(iso.read_bytes()))
        doc["iso"] = _iso_genomes(part) if part["iso"] and "genome" not in part["iso"][0] else part["iso"]
    for name in ("broad", "lineage", "iso"):
        for entry in doc.get(name, []):
            entry["genome"] = unpack_genome(entry["genome"])
    return doc


def _iso_part(entries: list[dict]) -> dict:
    """The iso set as saved: per entry its level, index within the level (entries of a level are in
    index order), digest and truth; the grid once."""
    from benchmarks.pairwise import level_index

    out = [{**{k: v for k, v in e.items() if k != "genome"}, "index": int(i), "genome_sha256": _digest(e["genome"])}
           for e, i in zip(entries, level_index([e["level"] for e in entries]))]
    return {"space": entries[0]["genome"]["space"] if entries else None, "iso": out}


# id of a genome dict -> (that dict, its digest): a set being trained is saved after every seed, and
# the digests of its large genomes would otherwise be taken each time. The dict is held here, so its id
# is not reused; the sets' genome dicts are never changed in place (a changed genome is a new dict).
_DIGESTS: dict[int, tuple[dict, str]] = {}


def _digest(genome: dict) -> str:
    if id(genome) not in _DIGESTS:
        _DIGESTS[id(genome)] = (genome, genome_sha256(genome))
    return _DIGESTS[id(genome)][1]


def save_ranking_sets(doc: dict, path: Path = RANKING_SETS, iso: Path = RANKING_SETS_ISO, only: str | None = None) -> None:
    """Write the sets: broad and lineage (genomes packed) to ``path``, the iso set as digests to ``iso``;
    a file whose content is unchanged is not rewritten. ``only="iso"``: the iso file alone (the other
    part, megabytes to encode, is left as it is: the caller changed only the iso set)."""
    if only not in (None, "iso"):
        raise ValueError(f"save_ranking_sets: only={only!r}: expected None or 'iso'")
    if only == "iso":
        doc = {"iso": doc["iso"]}
        path = None
    packed = {**doc, **{name: [{**e, "genome": pack_genome(e["genome"])} for e in doc[name]]
                        for name in ("broad", "lineage") if name in doc}}
    iso_part = _iso_part(packed.pop("iso")) if "iso" in packed else None
    for file, part in ((path, packed), (iso, iso_part)):
        if file is None or part is None or file.exists() and json.loads(gzip.decompress(file.read_bytes())) == json.loads(json.dumps(part)):
            continue  # unchanged: the file (and its gzip timestamp) stays as it is
        _atomic(file, gzip.compress(json.dumps(part, separators=(",", ":")).encode(), 9))


def with_truth(doc: dict, name: str) -> list[dict]:
    """The entries of set ``name`` whose ground truth has both seeds (a set being built has fewer)."""
    return [e for e in doc.get(name, []) if len(e.get("acc", [])) >= 2]
