"""Weights & Biases logging of searches and verifications; never a burden when W&B is absent.

A search with ``wandb.project`` set logs per iteration (hypervolume, best error, front size,
population statistics, estimate seconds, the online rank tau when measured), the front as a
``wandb.Table`` with an error-vs-FLOPs scatter, the final front in the run summary and the front's
genomes as an artifact. The run id is kept in the run directory, so a resumed search and its
``verify`` log into the same W&B run. ``mode: offline`` (or ``WANDB_MODE=offline``) needs no
login and no network.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class WandbSettings:
    """W&B logging of a search (off unless ``project`` is set).

    Args:
        project: W&B project; None: no W&B.
        entity: W&B entity (user or team).
        mode: online, offline (no network, sync later with ``wandb sync``) or disabled;
            ``WANDB_MODE`` in the environment wins.
        tags: run tags.
        name: run name (default: W&B's).
    """

    project: str | None = None
    entity: str | None = None
    mode: str = "online"
    tags: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"wandb mode {self.mode!r}: expected one of {', '.join(MODES)}")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    # `wandb login` writes the key to .netrc under the server's host (a self-hosted one with --host).
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and host in netrc.read_text(errors="ignore")


def effective_mode() -> str:
    """W&B's mode where no config sets one: ``WANDB_MODE``, else what ``wandb offline`` / ``online`` /
    ``disabled`` saved in wandb's settings."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    from wandb.sdk import wandb_setup

    return str(wandb_setup.singleton().settings.mode)


def require_key(mode: str) -> None:
    """One line, before anything runs, when W&B would run online without an API key (wandb would
    otherwise fail deep inside the run, or prompt for a key in a terminal)."""
    if mode == "online" and not _has_api_key():
        raise ValueError("W&B: no API key; run `wandb login`, set WANDB_API_KEY, or use wandb mode offline")


class Tracker:
    """One W&B run per run directory (or nothing, when ``settings.project`` is None)."""

    def __init__(self, settings: WandbSettings, run_dir: Path, config: dict | None = None, job: str = "search") -> None:
        self.run = None
        if settings.project is None:
            return
        import wandb

        mode = os.environ.get("WANDB_MODE", settings.mode)
        require_key(mode)
        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        try:
            self.run = wandb.init(project=settings.project, entity=settings.entity, mode=mode, tags=list(settings.tags),
                                  name=settings.name, dir=str(run_dir), config=config, id=run_id, resume="allow",
                                  job_type=job, settings=wandb.Settings(init_timeout=60, silent=True))
        except Exception as err:  # a wrong project or entity, no network: say so in one line
            raise ValueError(f"W&B: could not start a run in project {settings.project!r}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        if self.run is not None and run_id is None:
            id_file.write_text(self.run.id)

    def log_iteration(self, search) -> None:
        if self.run is None:
            return
        import wandb

        pop = search.population
        new = [c for c in pop if c.iteration == search.iteration]
        row = {
            "iteration": search.iteration,
            "hypervolume": search.hv[-1],
            "best_error": min(1 - c.score for c in search.archive),
            "front_size": len(search.archive),
            "population/mean_error": float(np.mean([1 - c.score for c in pop])),
            "population/mean_flops": float(np.mean([c.flops for c in pop])),
            "population/mean_edges": float(np.mean([c.genome.n_edges for c in pop])),
            "estimate_seconds": float(np.mean([c.seconds for c in new])) if new else 0.0,
        }
        if search.checks:
            row["rank_check_tau"] = search.last_check_tau
        table = wandb.Table(columns=["id", "error", "flops", "params", "edges"],
                            data=[[c.id, 1 - c.score, c.flops, c.params, c.genome.n_edges] for c in search.archive])
        row["front"] = table
        row["front_scatter"] = wandb.plot.scatter(table, "flops", "error", title="estimated front: error vs FLOPs")
        self.run.log(row, step=search.iteration)

    def finish_search(self, search) -> None:
        if self.run is None:
            return
        import wandb

        self.run.summary["front"] = [c.record() for c in sorted(search.archive, key=lambda c: c.flops)]
        self.run.summary["hypervolume"] = search.hv[-1]
        art = wandb.Artifact(f"front-{self.run.id}", type="genomes", description="the estimated front's genomes")
        for c in search.archive:
            art.add_file(str(search.dir / "genomes" / f"{c.id}.json"))
        self.run.log_artifact(art)

    def log_verify(self, doc: dict, png: Path) -> None:
        if self.run is None:
            return
        import wandb

        keys = ["id", "estimate", "val_acc", "test_acc", "flops", "params", "edges", "on_front"]
        table = wandb.Table(columns=keys, data=[[c[k] for k in keys] for c in doc["candidates"]])
        self.run.log({"verify/candidates": table, "verify/plot": wandb.Image(str(png))})
        for k in ("kendall_tau", "spearman", "precision_at_k"):
            self.run.summary[f"verify/{k}"] = doc[k]

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def read_offline_run(run_path: Path, wait: float = 0.0) -> dict:
    """History rows, summary and config of an offline W&B run (its ``run-*.wandb`` files), for tests
    and for looking at a run without syncing it: ``{"history": [dict], "summary": dict, "config": dict,
    "finished": bool}``. W&B writes the file from a service process, which may still be writing after
    ``wandb.finish()`` returns: ``wait`` polls up to that many seconds until every file holds its exit record."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + wait
    while True:
        try:
            out = _read_offline(run_path)
        except DecodeError:  # a record caught mid-write; a finished file never raises this
            if time.monotonic() >= deadline:
                raise
            out = {"finished": False}
        if out["finished"] or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def _read_offline(run_path: Path) -> dict:
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_path).rglob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no offline W&B run (run-*.wandb) under {run_path}")
    history, summary, config, exits = [], {}, {}, 0
    for f in files:
        data, pos, block, pending = f.read_bytes(), 7, 32768, b""
        while pos + 7 <= len(data):
            if block - pos % block < 7:  # a block's tail too short for a header is padding
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind == 0 or len(payload) < length:  # padding, or a record still being written
                break
            pending = payload if kind in (1, 2) else pending + payload
            if kind not in (1, 4):
                continue
            rec = pb.Record()
            rec.ParseFromString(pending)
            which = rec.WhichOneof("record_type")
            if which == "history":
                history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
            elif which == "summary":
                for i in rec.summary.update:
                    if i.key:
                        summary[i.key] = json.loads(i.value_json)
            elif which == "config":
                for i in rec.config.update:
                    if i.key:
                        config[i.key] = json.loads(i.value_json)
            elif which == "exit":
                exits += 1
    return {"history": history, "summary": summary, "config": config, "finished": exits >= len(files)}
