"""What every neuronas command shares: bad input as one line and exit code 2 (``guarded``), the fit
CLI of a LightningModule (``module_cli``, used by the supernet's and the hypernet's ``fit``), and
the class a config's ``class_path`` names (``import_class``). Plugins import this module, never
``evolution.__main__``."""
from __future__ import annotations

import importlib
import sys


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
        if not bad_input(err):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
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


def innermost(err: BaseException) -> BaseException:
    """The first cause in ``err``'s chain (jsonargparse wraps the reason a class gave when it was built)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def bad_input(err: BaseException) -> bool:
    """Whether ``err`` is the user's bad input (one line, exit 2) rather than a bug (a traceback).

    jsonargparse wraps whatever a class raises while it is built in a ValueError: it is bad input when
    the class's own error is (a bad value, a missing file, a logger's package that is not installed; a
    misspelt name in an import is a bug)."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    kinds = (ValueError, OSError, ModuleNotFoundError, ArgumentError, MisconfigurationException)
    return isinstance(err, kinds) and (not isinstance(err, ValueError) or isinstance(innermost(err), kinds))


UNION = "Does not validate against any of the Union subtypes"
MISMATCH = ("Expected a ", "Not a valid subclass")  # an alternative whose type did not match the value at all


def _union_errors(text: str) -> tuple[list[str], str] | None:
    """The alternatives' reasons in a jsonargparse Union error, one line each, and the value given
    (None if ``text`` is not one)."""
    lines = text.strip().splitlines()
    if not lines or lines[0] != UNION or "Errors:" not in lines:
        return None
    items: list[str] = []
    given = ""
    for line in lines[lines.index("Errors:") + 1:]:
        if line.startswith("Given value: "):
            given = line[len("Given value: "):].strip()
        if line.startswith("Given value"):
            continue
        if line.startswith("  - "):
            items.append(line[4:].strip())
        elif items:
            items[-1] += " " + line.strip()
    return [i for i in dict.fromkeys(items) if i != "Expected a <class 'NoneType'>"], given


def one_line(err: BaseException, limit: int = 400) -> str:
    """``err`` as one line of at most ``limit`` characters."""
    def flat(e: BaseException) -> str:
        return " ".join(l.strip() for l in str(e).splitlines() if l.strip()) or type(e).__name__

    # jsonargparse nests its reasons ("Parser key ...:", Union alternatives, the class's own error),
    # each the cause of the one above: name the keys it passed through and the innermost reason. Of a
    # Union it chains only the first alternative, which may not be the one the value was meant for.
    chain = [err]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    keys: list[str] = []
    reason, followed = None, False
    for e in chain:
        head = str(e).strip().splitlines()[:1]
        if head and head[0].startswith('Parser key "') and head[0].endswith('":') and head[0][12:-2] not in keys[-1:]:
            keys.append(head[0][12:-2])
        union = _union_errors(str(e))
        if union is None or len(union[0]) < 2:
            continue
        items, given = union
        meant = [i for i in items if not i.startswith(MISMATCH)]  # alternatives that got past the type
        if any(flat(chain[-1]) in i for i in meant):
            followed = True  # the chain goes on into one of those: follow it for its keys and reason
            continue
        reason = " / ".join(meant or items) + (f" (got {given})" if not meant and given else "")
        break
    if reason is None and (keys or followed) and len(chain) > 1:
        reason = flat(chain[-1])
    if reason is not None:
        text = f'Parser key "{".".join(keys)}": {reason}' if keys else reason
    else:  # a failed instantiation: the innermost ValueError, missing file or missing package names it
        while err.__cause__ is not None and isinstance(err.__cause__, (ValueError, OSError, ImportError)):
            err = err.__cause__
        text = flat(err)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def import_class(class_path: str):
    """The object a dotted ``class_path`` (``oneshot.estimator.SupernetEstimator``) names; a
    ``ValueError`` naming it when there is none."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"class_path {class_path!r} names nothing importable ({err})") from None


def module_cli(module, args: list[str]) -> None:
    """LightningCLI (fit / validate / test) of a LightningModule that takes the data's ``input_shape``
    and ``num_classes``: the supernet's and the hypernet's commands."""
    import lightning.pytorch as pl

    from evolution.train import DataShapeCLI, LoggerSaveConfigCallback

    DataShapeCLI(module, pl.LightningDataModule, subclass_mode_data=True, args=args,
                 parser_kwargs={"exit_on_error": False}, save_config_callback=LoggerSaveConfigCallback,
                 save_config_kwargs={"overwrite": True})


def instantiate(parser, cfg):
    """``parser``'s classes built from ``cfg``: jsonargparse's ``instantiate`` where it has one (>= 4.49),
    else ``instantiate_classes`` (its older name, deprecated since)."""
    build = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return build(cfg)
