"""Where independent candidate jobs run: in this process (``local``) or as Ray tasks (``ray``).

A job is ``fn(shared, item)``: ``shared`` (the data, an initializer's weights) is the same for every
item and goes to Ray's object store once; each item is one candidate. Results come back in the
items' order, so a search or verify reads them exactly as it would locally. Jobs must seed
themselves from their item (``TrainEstimator`` seeds from the genome), never from the worker, so a
Ray run gives the local run's figures. A job that raises is retried ``retries`` times (on Ray), then
comes back as a ``Failed`` holding its error, for the caller to record as that candidate's error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence


@dataclass
class Failed:
    """A job that raised on every try: its error, one line."""
    error: str


class LocalExecutor:
    """Runs the jobs one after another in this process (the default)."""

    name = "local"

    def imap(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(index, result) of each item as it finishes: here, in order."""
        for i, item in enumerate(items):
            try:
                yield i, fn(shared, item)
            except Exception as err:  # recorded as the candidate's error, as a Ray task's would be
                yield i, Failed(f"{type(err).__name__}: {err}")

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]) -> list[Any]:
        """The results in the items' order."""
        return [r for _, r in sorted(self.imap(fn, shared, items), key=lambda t: t[0])]


class RayExecutor:
    """Runs the jobs as Ray tasks, each with ``num_cpus`` / ``num_gpus``.

    Args:
        address: a running cluster (``ray start --head`` prints it; ``auto`` finds the local one);
            None starts a local Ray for this process, with ``local_cpus`` CPUs (default: all).
        num_cpus: CPUs each task reserves (its torch threads are set to match).
        num_gpus: GPUs (or a fraction) each task reserves.
        retries: times a task that raised (or whose worker died) is run again before it is recorded
            as failed.
        local_cpus: CPUs of the local Ray started when ``address`` is None.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0, retries: int = 1,
                 local_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("executor 'ray' needs Ray: pip install 'neuronas[ray]'") from None
        if num_cpus <= 0 or num_gpus < 0 or retries < 0:
            raise ValueError(f"ray executor: num_cpus {num_cpus}, num_gpus {num_gpus}, retries {retries}: expected "
                             "num_cpus > 0, num_gpus >= 0, retries >= 0")
        self.ray = ray
        self.num_cpus, self.num_gpus, self.retries = num_cpus, num_gpus, retries
        if not ray.is_initialized():
            # The workers import this checkout's packages by the same path as this process.
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH"))
                                                             if p)}}
            kw = dict(address=address, runtime_env=env, log_to_driver=False, include_dashboard=False)
            if address is None:
                kw["num_cpus"] = local_cpus
            ray.init(**kw)
        self._task = ray.remote(_run_task)
        self._shared: tuple[Any, Any] | None = None

    def _put(self, shared: Any):
        """The shared object's reference, put once while the caller keeps handing the same object."""
        if self._shared is None or self._shared[0] is not shared:  # held, so its id cannot be reused
            self._shared = (shared, self.ray.put(shared))
        return self._shared[1]

    def imap(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(index, result) of each item as its task finishes (all submitted at once)."""
        ref = self._put(shared)
        task = self._task.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.retries,
                                  retry_exceptions=True)
        threads = max(1, int(self.num_cpus))
        # The reference inside a list: Ray leaves it unresolved, so a worker deserialises it once (below).
        index = {task.remote(fn, [ref], item, threads): i for i, item in enumerate(items)}
        pending = list(index)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            yield index[ready[0]], self._get(ready[0])

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]) -> list[Any]:
        """The results in the items' order."""
        return [r for _, r in sorted(self.imap(fn, shared, items), key=lambda t: t[0])]

    def _get(self, ref) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            return Failed(f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}")
        except self.ray.exceptions.RayError as err:  # a worker that died on every try
            return Failed(f"{type(err).__name__}: {str(err).strip().splitlines()[0]}")

    def shutdown(self) -> None:
        self.ray.shutdown()


# In a worker: the last shared object, by its reference's id (kept until another arrives or Ray stops).
_HELD: dict[str, Any] = {}


def _run_task(fn: Callable[[Any, Any], Any], shared: list, item: Any, threads: int) -> Any:
    import ray
    import torch

    # A shared object holding a data split takes tens of milliseconds to deserialise: once per worker,
    # not once per task. Its tasks then share one copy, as the candidates of a local run do.
    key = shared[0].hex()
    if key not in _HELD:
        _HELD.clear()
        _HELD[key] = ray.get(shared[0])
    torch.set_num_threads(threads)  # one task per reserved CPU, not every task on every core
    return fn(_HELD[key], item)


def make_executor(kind: str = "local", address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                  retries: int = 1) -> LocalExecutor | RayExecutor:
    """The executor a ``--*.executor`` flag names; one-line ValueError for an unknown one or a missing Ray."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, num_cpus, num_gpus, retries)
    raise ValueError(f"executor {kind!r}: expected 'local' or 'ray'")
