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
    from evolution.cli import guarded

    return guarded(_command(command), rest)


if __name__ == "__main__":
    sys.exit(main())
