"""Export a trained network: a ``torch.export`` program (or ONNX with the ``onnx`` extra).

The exported program runs the masked-dense kernel (static shapes, no sparse tensors), so it loads
and runs with plain PyTorch, without neuronas:

    import torch
    net = torch.export.load("model.pt2").module()
    logits = net(torch.rand(8, 64))      # inputs flattened, as the DataModule gives them
"""
from __future__ import annotations

from pathlib import Path

import torch

from evolution.train import GenomeModule

FORMATS = ("torch", "onnx")


def load_candidate(candidate_dir: Path) -> GenomeModule:
    """The trained module of a verified candidate directory (``model.ckpt`` with its genome)."""
    ckpt = candidate_dir / "model.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"candidate directory {candidate_dir} has no model.ckpt; verify the run first "
                                "(python -m evolution verify RUN_DIR) or pass a verify/ID directory")
    return GenomeModule.from_checkpoint(ckpt)


def export(candidate_dir: str, format: str = "torch", batch: int = 8, out: str | None = None) -> Path:  # noqa: A002
    """Write ``model.pt2`` (torch) or ``model.onnx`` beside the checkpoint and check that it predicts
    what the ``SparseNet`` predicts (max |delta logit| <= 1e-5), with a dynamic batch size.

    Args:
        candidate_dir: a ``verify/ID`` directory (``model.ckpt``, ``genome.json``).
        format: ``torch`` (torch.export) or ``onnx`` (needs the ``onnx`` extra).
        batch: example batch size used to trace.
        out: output file (default: beside the checkpoint).
    """
    if format not in FORMATS:
        raise ValueError(f"export format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ValueError("ONNX export needs the onnx extra: pip install 'neuronas[onnx]'") from None
    cdir = Path(candidate_dir)
    net = load_candidate(cdir).net.eval()
    net.mode = "dense"  # the exported graph has static shapes and no sparse tensors
    x = torch.rand(batch, net.plan.n_inputs)
    dim = torch.export.Dim("batch", min=1, max=1 << 16)
    path = Path(out) if out else cdir / ("model.pt2" if format == "torch" else "model.onnx")
    with torch.no_grad():
        expected = net(x)
    if format == "torch":
        program = torch.export.export(net, (x,), dynamic_shapes=({0: dim},))
        torch.export.save(program, path)
        got = torch.export.load(path).module()(x)
    else:
        torch.onnx.export(net, (x,), path, dynamic_shapes=({0: dim},), dynamo=True)
        got = _onnx_run(path, x)
    err = float((got.detach() - expected).abs().max())
    if not err <= 1e-5:  # NaN logits fail too
        raise ValueError(f"exported {format} program differs from the network by {err:.2e} (> 1e-5)")
    return path


def _onnx_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime as ort
    except ImportError:  # no runtime to check with: trust the exporter's own check
        import onnx

        onnx.checker.check_model(str(path))
        return torch.full((len(x), 1), float("nan"))
    sess = ort.InferenceSession(str(path))
    return torch.as_tensor(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def main(args: list[str] | None = None) -> None:
    """``python -m evolution export CANDIDATE_DIR [--format torch|onnx]``"""
    import sys

    from jsonargparse import CLI

    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0].startswith("-") and args[0] not in ("-h", "--help"):
        raise ValueError("export needs a candidate directory: python -m evolution export RUN_DIR/verify/ID")
    path = CLI(export, args=args, exit_on_error=False)
    print(f"wrote {path} (same logits as the network within 1e-5)")
