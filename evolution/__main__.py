"""``python -m evolution COMMAND ...``: the neuronas command line."""
from __future__ import annotations

import sys

USAGE = """usage: python -m evolution COMMAND [ARGS]

commands:
  run      the main job: train the estimator, search, verify, export (--config configs/run/digits.yaml)
  train    train one genome's standalone network (LightningCLI: fit / validate / test)
  search   estimate-driven neuron-level search (--config configs/search/*.yaml, --resume RUN_DIR)
  verify   retrain a search's best candidates and check the estimator's ranking (RUN_DIR --top_k 10)
  export   export a verified candidate (RUN_DIR/verify/ID) with torch.export or ONNX
  sweep    run a W&B sweep config locally (CONFIG --count N), logging each trial to W&B
  convert  re-save a trusted older checkpoint or search state as plain data (FILE)
"""


# Each command is the ``main(args)`` of its module, imported only when asked for (torch and
# Lightning take seconds to import).
COMMANDS = {name: f"evolution.{name}" for name in ("run", "train", "search", "verify", "export", "sweep", "convert")}


def _command(name: str):
    import importlib

    return importlib.import_module(COMMANDS[name]).main


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input ends in one line on stderr and exit code 2, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return guarded(_command(command), rest)


def guarded(command, args: list[str]) -> int:
    """Run ``command(args)``; print bad input as one line and return 2, divergence 1, Ctrl-C 130."""
    import logging
    import warnings

    from jsonargparse import ArgumentError

    # Our CLIs pass their own argument lists to LightningCLI on purpose; the seed is in the config.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    for name in ("lightning.fabric.utilities.seed", "lightning.pytorch.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        check_config_files(args)
        command(args)
    except (ValueError, FileNotFoundError, ArgumentError, MisconfigurationException) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def check_config_files(args: list[str]) -> None:
    """One line naming a ``--config`` file that is not UTF-8 text (a parser would only name the codec)."""
    from pathlib import Path

    for i, a in enumerate(args):
        path = a.split("=", 1)[1] if a.startswith("--config=") else args[i + 1] if a == "--config" and i + 1 < len(args) \
            else None
        if path and Path(path).is_file():
            try:
                Path(path).read_bytes().decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"config file {path} is not a text YAML file (byte {err.start} is not UTF-8); "
                                 "give a YAML config") from None


def _one_line(err: BaseException, limit: int = 400) -> str:
    # jsonargparse spreads a type error over several lines ("Parser key ...:", then the reason):
    # fold them into one, and name the innermost cause of a failed instantiation.
    while err.__cause__ is not None and isinstance(err.__cause__, (ValueError, FileNotFoundError)):
        err = err.__cause__
    text = " ".join(l.strip() for l in str(err).splitlines() if l.strip()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
