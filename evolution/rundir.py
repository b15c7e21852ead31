"""A search's run directory: its files, how an iteration is committed, and who may write it.

``state.pt`` (primary) counts the finished iterations and the valid bytes of ``history.jsonl``
(primary, append-only); ``front.json`` and ``genomes/ID.json`` are derived. An iteration commits in
one order: genomes, history lines, front, and last the state that counts them, so a kill at any
moment leaves either the previous iteration or the new one, never a mix; ``rebuild`` rewrites the
derived files from the state on every resume and verify. A damaged primary file is refused in one
line by every command; a damaged derived file is rebuilt.

One process writes a run directory at a time: ``locked`` holds an OS file lock on ``RUN_DIR/.lock``
(which names the holder's PID) for the whole command.
"""
from __future__ import annotations

import fcntl
import io
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from evolution import checkpoints
from evolution.genome import Genome

STATE, HISTORY, FRONT, LOCK = "state.pt", "history.jsonl", "front.json", ".lock"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a kill leaves either the old file or the new one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: a rename never loses its file
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def record(fields: dict, edges: int, hidden: int) -> dict:
    """A candidate's ``history.jsonl`` line, given its genome's edge and hidden-neuron counts (its
    genome is in ``genomes/ID.json``)."""
    return {"id": fields["id"], "parent": fields["parent"], "mutation": fields["mutation"],
            "iteration": fields["iteration"], "score": fields["score"], "flops": fields["flops"],
            "params": fields["params"], "latency": fields["latency"], "edges": edges,
            "hidden": hidden, "seconds": fields["seconds"], "error": fields["error"]}


def _sizes(text: str) -> tuple[int, int]:
    """A genome's edge and hidden-neuron counts from its JSON."""
    g = Genome.from_json(text)
    return g.n_edges, len(g.hidden)


def front_doc(state: dict, known: dict[str, tuple[int, int]] | None = None) -> dict:
    """``front.json``'s content, made from a search state alone (its archive, hypervolumes, grid).
    ``known``: genome text -> its counts, from the last call; left holding this archive's (every
    iteration writes the whole archive's front, mostly of genomes it wrote before)."""
    archive = sorted(state["archive"], key=lambda d: d["flops"])
    sizes = {d["genome"]: (known or {}).get(d["genome"]) or _sizes(d["genome"]) for d in archive}
    if known is not None:
        known.clear()
        known.update(sizes)
    front = [{**record(d, *sizes[d["genome"]]), "genome": f"genomes/{d['id']}.json"} for d in archive]
    ident = state["identity"]
    return {"iteration": state["iteration"], "objectives": list(ident["settings"]["objectives"]),
            "hypervolume": state["hv"], "space": ident["space"], "front": front}


def difference(old: dict | None, new: dict) -> str:
    """The settings that differ between a saved state's identity and a search's, named by config key."""
    if old is None:  # saved before states kept their settings
        return "its settings differ"

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    old, new = flat(old), flat(new)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = ", ".join(f"{k.removeprefix('settings.').removeprefix('config.')} was {old.get(k)!r}, now "
                      f"{new.get(k)!r}" for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "") if keys else "its settings differ"


# --- one writer ----------------------------------------------------------------------------------
class RunDirInUse(ValueError):
    """Another live process holds the run directory's lock."""


_held: dict[str, list] = {}  # resolved run directory -> [open lock file, depth]: one process nests freely


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def acquire(run_dir: str | Path) -> None:
    """Take ``RUN_DIR/.lock`` for this process (again, if it holds it already); one line naming the
    holder's PID when another process does. A lock left by a dead process is taken over with a warning."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _held:
        _held[key][1] += 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunDirInUse(f"run directory {run_dir} is in use by process {holder} ({run_dir / LOCK}); wait for it "
                          "to finish or stop it: two processes writing one run directory would corrupt it") from None
    f.seek(0)
    old = f.read().strip()
    if old.isdigit() and int(old) != os.getpid():
        why = "no longer running" if not _alive(int(old)) else "not holding it"
        print(f"warning: taking over the lock of run directory {run_dir} from process {old}, which is {why} "
              "(killed?)", file=sys.stderr)
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _held[key] = [f, 1]


def release(run_dir: str | Path) -> None:
    """Give the lock back (the file stays, emptied: a PID left in it means its holder was killed)."""
    key = str(Path(run_dir).resolve())
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        f = entry[0]
        f.seek(0)
        f.truncate()
        f.flush()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()
        del _held[key]


@contextmanager
def locked(*run_dirs: str | Path) -> Iterator[None]:
    """Hold the locks of ``run_dirs`` for the block."""
    taken = []
    try:
        for d in run_dirs:
            acquire(d)
            taken.append(d)
        yield
    finally:
        for d in reversed(taken):
            release(d)


def read_config(run_dir: str | Path) -> dict:
    """The run directory's ``config.yaml`` as a dict; one line naming it when it is missing or not YAML text."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"run directory {run_dir} has no config.yaml; is it a search's run directory?")
    try:
        cfg = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path} is not a YAML text file ({type(err).__name__}); the run directory is damaged") \
            from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} holds no settings; the run directory is damaged")
    return cfg


# --- the files -----------------------------------------------------------------------------------
def _check_line(line: str) -> float:
    """The iteration of a ``rank_check.jsonl`` line; infinite (dropped on resume) for a line a kill cut."""
    try:
        return json.loads(line).get("iteration", 0)
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class RunDir:
    """The files of one search's run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.state_path, self.history = self.path / STATE, self.path / HISTORY
        self.front, self.genomes = self.path / FRONT, self.path / "genomes"
        self._sizes: dict[str, tuple[int, int]] = {}  # the last front's genome texts -> counts (front_doc)

    def exists(self) -> bool:
        return self.state_path.is_file()

    def start(self) -> None:
        """An empty history for a new search."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.history.write_bytes(b"")

    def read_state(self) -> dict:
        """The state of the last committed iteration (tensors and plain values only), its history whole."""
        if not self.state_path.is_file():
            raise FileNotFoundError(f"run directory {self.path} has no finished search iteration ({STATE} missing); "
                                    "run or resume the search first")
        state = checkpoints.read(self.state_path, "search state")
        keys = {"fingerprint", "iteration", "history_bytes", "archive", "population", "hv"}
        if not isinstance(state, dict) or not keys <= state.keys():
            raise ValueError(f"search state {self.state_path} is not a neuronas search state")
        if not self.history.is_file():
            raise FileNotFoundError(f"{self.history} is missing; restore it or start the search in another --run_dir")
        size = self.history.stat().st_size
        if size < state["history_bytes"]:
            # Padding it back would put NUL bytes where candidates were: refuse, keep the files as they are.
            raise ValueError(f"{self.history} holds {size} bytes but the search state counts {state['history_bytes']}: "
                             "it was cut or replaced; restore it or start the search in another --run_dir")
        return state

    def records(self, state: dict) -> list[dict]:
        """The history lines the state counts (a line a kill left after them is not committed)."""
        with open(self.history, "rb") as f:
            text = f.read(state["history_bytes"]).decode(errors="replace")
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.history}, line {n} is not valid JSON ({err.msg}); the run directory "
                                 "is damaged") from None
            if not isinstance(r, dict) or not {"id", "score", "error"} <= r.keys():
                raise ValueError(f"{self.history}: record {n} is not a candidate (expected id, score and error); "
                                 "the run directory is damaged")
            out.append(r)
        return out

    def commit(self, state: dict, genomes: list[tuple[int, str]], lines: list[dict]) -> None:
        """One iteration: its genomes (id, JSON text), history lines and front, then the state that counts them."""
        self.genomes.mkdir(parents=True, exist_ok=True)
        for cid, text in genomes:  # every candidate's genome, so verify can retrain any of them
            atomic_write(self.genomes / f"{cid}.json", text.encode())
        with open(self.history, "ab") as f:
            f.write("".join(json.dumps(r) + "\n" for r in lines).encode())
            f.flush()
            os.fsync(f.fileno())
        state = {**state, "history_bytes": self.history.stat().st_size}
        atomic_write(self.front, json.dumps(front_doc(state, self._sizes), indent=1).encode())
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.state_path, buf.getvalue())

    def rebuild(self, state: dict) -> None:
        """Rewrite the derived files from the state: the front, and the genomes of the population and
        archive where missing or damaged; cut the history and rank checks back to the state."""
        with open(self.history, "r+b") as f:
            f.truncate(state["history_bytes"])
        self.genomes.mkdir(parents=True, exist_ok=True)
        for d in state["population"] + state["archive"]:
            path = self.genomes / f"{d['id']}.json"
            if not path.is_file() or path.read_bytes() != d["genome"].encode():
                atomic_write(path, d["genome"].encode())
        doc = json.dumps(front_doc(state, self._sizes), indent=1).encode()
        if not self.front.is_file() or self.front.read_bytes() != doc:
            atomic_write(self.front, doc)
        log = self.path / "rank_check.jsonl"
        if log.is_file():  # a check logged by an iteration that was not committed is made again on resume
            lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
            kept = [l for l in lines if _check_line(l) <= state["iteration"]]
            if len(kept) < len(lines):
                log.write_text("".join(l + "\n" for l in kept))
