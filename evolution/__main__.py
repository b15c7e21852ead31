"""``python -m evolution COMMAND ...``: the neuronas command line."""
from __future__ import annotations

import sys

USAGE = """usage: python -m evolution COMMAND [ARGS]

commands:
  train    train one genome's standalone network (LightningCLI: fit / validate / test)
"""


def _train(args: list[str]) -> None:
    from evolution.train import main

    main(args)


COMMANDS = {"train": _train}


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
    from jsonargparse import ArgumentError

    try:
        COMMANDS[command](rest)
    except (ValueError, FileNotFoundError, ArgumentError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


def _one_line(err: BaseException) -> str:
    # jsonargparse nests the cause of a failed instantiation or a type error in the message; the
    # innermost line names the problem.
    while err.__cause__ is not None and isinstance(err.__cause__, (ValueError, FileNotFoundError)):
        err = err.__cause__
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    return lines[0] if lines else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
