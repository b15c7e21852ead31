"""``python -m oneshot {fit,validate} --config configs/oneshot/digits.yaml``: train the supernet."""
from __future__ import annotations

import sys
from functools import partial

from evolution.cli import guarded, module_cli
from oneshot.module import SupernetModule


def main(argv: list[str] | None = None) -> int:
    return guarded(partial(module_cli, SupernetModule), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
