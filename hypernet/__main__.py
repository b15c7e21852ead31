"""``python -m hypernet {fit,validate} --config configs/hypernet/digits.yaml``: train the hypernetwork."""
from __future__ import annotations

import sys
from functools import partial

from evolution.cli import guarded, module_cli
from hypernet.module import HypernetModule


def main(argv: list[str] | None = None) -> int:
    return guarded(partial(module_cli, HypernetModule), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
