"""``python -m evolution convert FILE``: re-save an older checkpoint or search state as plain data.

Every command loads files with ``torch.load(weights_only=True)``, which refuses a file holding other
Python objects (a crafted file could run code while loading). A file an older version wrote with
numpy values in it is converted here: it is loaded allowing numpy's arrays, scalars and dtypes
besides (still no code runs), numpy arrays become tensors, numpy scalars numbers; a file holding
anything else is refused. The original is kept beside it as ``FILE.orig``.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evolution import checkpoints
from evolution.rundir import atomic_write

PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def plain(value: Any, where: str = "") -> Any:
    """``value`` made of tensors, numbers, strings and plain containers; ``ValueError`` naming the
    first thing that cannot be."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {plain(k, where): plain(v, f"{where}/{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = [plain(v, f"{where}/{i}") for i, v in enumerate(value)]
        return items if isinstance(value, (list, set)) else tuple(items)
    raise ValueError(f"{where or 'the file'} holds a {type(value).__module__}.{type(value).__name__}, which has no "
                     "plain form; it cannot be converted")


def _numpy_globals() -> list:
    # The functions numpy arrays and scalars pickle by, found as pickle finds them (their module moved
    # between numpy 1 and 2).
    reconstruct, scalar = np.ndarray(0).__reduce__()[0], np.float64(0).__reduce__()[0]
    return [reconstruct, scalar, np.ndarray, np.dtype, *{type(np.dtype(t)) for t in set(np.sctypeDict.values())}]


def convert(path: str, out: str | None = None) -> Path:
    """Load ``path`` trusting it, write its plain form to ``out`` (default: in place, the original
    kept as ``PATH.orig``), and check that it loads with ``weights_only=True``.

    Args:
        path: the checkpoint or ``state.pt`` to convert.
        out: where to write the converted file.
    """
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:
        if checkpoints.unsafe(err):
            raise ValueError(f"{src} holds objects other than numpy values and plain data; it cannot be converted "
                             "safely (loading it could run code)") from None
        raise ValueError(f"{src} cannot be read: {str(err).splitlines()[0][:200] if str(err) else type(err).__name__}") \
            from None
    try:
        converted = plain(obj)
    except ValueError as err:
        raise ValueError(f"{src}: {err}") from None
    buf = io.BytesIO()
    torch.save(converted, buf)
    dest = Path(out) if out else src
    if dest == src:
        src.replace(src.with_name(src.name + ".orig"))
    atomic_write(dest, buf.getvalue())
    checkpoints.read(dest, "converted file")
    return dest


def main(args: list[str] | None = None) -> None:
    from jsonargparse import CLI

    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0].startswith("-") and args[0] not in ("-h", "--help"):
        raise ValueError("convert needs a file: python -m evolution convert FILE [--out OUT]")
    dest = CLI(convert, args=args, exit_on_error=False)
    print(f"wrote {dest}: it loads with weights_only=True")
