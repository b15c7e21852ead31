"""Where estimators and searches run, and the switch that makes a CUDA run repeatable.

``auto`` picks the GPU when torch sees one, as Lightning's ``accelerator: auto`` does; on a machine
without one everything stays on the CPU and gives today's results. A GPU's scatter / index_add
kernels accumulate in a varying order, so a run that must repeat bit for bit asks for
``deterministic`` (``torch.use_deterministic_algorithms`` with the cuBLAS workspace setting it needs).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

ACCELERATORS = ("auto", "cpu", "cuda", "gpu")


def cheap_cuda_probe() -> None:
    """Make ``torch.cuda.is_available()`` cheap on a machine without a GPU.

    Lightning's import sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking never poisons a fork on
    a GPU machine; each ask then loads NVML afresh, and Adam asks at every step (its graph-capture
    health check), which on a CUDA build of torch without a GPU is a large share of a small network's
    step. Where the machine has no GPU at all there is nothing a fork could poison, so the CUDA
    runtime's count, cached after its first call, answers instead. Nothing changes where a GPU is
    seen, or where ``CUDA_VISIBLE_DEVICES`` is set (it may hide a GPU the process is given later).
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and "CUDA_VISIBLE_DEVICES" not in os.environ \
            and not torch.cuda.is_available():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ``"auto"``: ``cuda`` when available, else ``cpu``."""
    cheap_cuda_probe()
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "gpu":
        device = "cuda"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: torch sees no CUDA device here (use auto or cpu)")
    return resolved


def accelerator_device(accelerator: str) -> str:
    """The estimator ``device`` of a Lightning-style ``accelerator`` (``auto``, ``cpu``, ``cuda``/``gpu``)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator {accelerator!r}: expected one of {', '.join(ACCELERATORS)}")
    return str(resolve_device(accelerator))


@contextlib.contextmanager
def deterministic(on: bool = True) -> Iterator[None]:
    """Within the block, torch refuses nondeterministic kernels (CUDA's atomic scatter and index_add
    take their deterministic paths); the previous setting is restored after it."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    # cuBLAS reuses workspace buffers in a varying order unless told their size (CUDA >= 10.2).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        if env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def add_device_arguments(parser) -> None:
    """``--accelerator`` and ``--deterministic`` on a jsonargparse parser (``search``, ``run``)."""
    parser.add_argument("--accelerator", type=str, default="auto",
                        help="where the estimator (and a run's fits) run: auto (a GPU when torch sees one), cpu or "
                             "cuda; an estimator whose device is auto follows it")
    parser.add_argument("--deterministic", type=bool, default=False,
                        help="deterministic kernels only (torch.use_deterministic_algorithms): same seed, same "
                             "result on a GPU too, at some speed")


def placed(cfg, key: str = "estimator"):
    """A copy of the parsed ``cfg`` whose ``key`` class, when it takes a ``device`` left at ``auto``,
    gets the device of ``cfg.accelerator`` (the saved config keeps ``auto``)."""
    device = accelerator_device(cfg.accelerator)
    cfg = cfg.clone()
    args = cfg[key].get("init_args") if cfg.get(key) is not None else None
    if args is not None and args.get("device") == "auto":
        args["device"] = device
    return cfg
