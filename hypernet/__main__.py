"""``python -m hypernet {fit,validate} --config configs/hypernet/digits.yaml``: train the hypernetwork."""
from __future__ import annotations

import sys

import lightning.pytorch as pl

from evolution.__main__ import guarded
from evolution.train import DataShapeCLI, LoggerSaveConfigCallback
from hypernet.module import HypernetModule


def cli(args: list[str]) -> None:
    DataShapeCLI(HypernetModule, pl.LightningDataModule, subclass_mode_data=True, args=args,
                 parser_kwargs={"exit_on_error": False}, save_config_callback=LoggerSaveConfigCallback,
                 save_config_kwargs={"overwrite": True})


def main(argv: list[str] | None = None) -> int:
    return guarded(cli, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
