import os

import pytest
import torch

from evolution.device import accelerator_device, cheap_cuda_probe, deterministic, resolve_device


def test_auto_is_the_cpu_without_cuda_and_bad_devices_are_one_line():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want and accelerator_device("auto") == want
    assert resolve_device("cpu") == torch.device("cpu") and accelerator_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device 'tpu9'"):
        resolve_device("tpu9")
    with pytest.raises(ValueError, match="accelerator 'mps2': expected one of auto, cpu, cuda, gpu"):
        accelerator_device("mps2")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")


def test_deterministic_switches_on_inside_and_restores(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_search_hands_its_accelerator_to_an_estimator_left_at_auto():
    from pathlib import Path

    from evolution.device import placed
    from evolution.search_cli import build_parser

    config = str(Path(__file__).resolve().parents[2] / "configs/search/digits.yaml")
    parser = build_parser()
    cfg = parser.parse_args(["--config", config, "--accelerator", "cpu"])
    assert cfg.estimator.init_args.device == "auto" and cfg.deterministic is False
    assert placed(cfg).estimator.init_args.device == "cpu" and cfg.estimator.init_args.device == "auto"
    pinned = parser.parse_args(["--config", config, "--estimator.init_args.device", "cpu", "--deterministic", "true"])
    assert placed(pinned).estimator.init_args.device == "cpu" and pinned.deterministic is True
    with pytest.raises(ValueError, match="accelerator 'tpu'"):
        placed(parser.parse_args(["--config", config, "--accelerator", "tpu"]))


def test_the_cuda_probe_skips_nvml_only_on_a_machine_without_a_gpu(monkeypatch):
    import lightning.fabric  # noqa: F401  (it sets the variable on import)

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    seen = torch.cuda.is_available()
    resolve_device("cpu")
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if seen else "0")
    assert torch.cuda.is_available() == seen  # the answer is the same, only cheaper
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a GPU may be hidden now and handed over later
    cheap_cuda_probe()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine: forks stay safe
    cheap_cuda_probe()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
