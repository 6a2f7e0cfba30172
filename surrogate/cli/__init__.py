"""The ``surrogate`` command line: one console script, one subcommand group per module.

Each module in this package exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` on each parser. ``func(args)`` returns the exit
code. Exit codes follow CONTRACT.md: 0 success, 2 bad input or bad data (the
reasons on stderr), 1 internal failure, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from surrogate.errors import InputError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): 128 + 2, the shell's convention for a process ended by that signal."""

# Subcommand modules, in the order `surrogate --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("run", "lab", "data", "train", "search", "serve", "dashboard", "config")


class UsageError(Exception):
    """Bad input from the user: printed on stderr, exit code 2."""


def print_json(document: Any) -> None:
    """Write one JSON document on stdout (the only thing ``--json`` prints there)."""
    json.dump(document, sys.stdout, indent=2, allow_nan=False, default=str)
    sys.stdout.write("\n")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add the contract's ``--json`` flag to a results-printing command."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout and nothing else")


def non_negative_int(text: str) -> int:
    """argparse type for seeds and counts: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give a whole number >= 0")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on bad usage, as the contract wants
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = _Parser(
        prog="surrogate",
        description=(
            "Surrogate models, a paper-calibrated virtual lab and design-of-experiments search for "
            "sputtered LLTO thin-film batteries (Tan et al., Nanomaterials 2021, 11, 989). "
            "The embedded data set is a reconstruction from that paper, not measurements."
        ),
    )
    from surrogate import __version__

    parser.add_argument("--version", action="version", version=f"surrogate {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"surrogate.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``surrogate`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or bad usage (2): return the code instead of leaving the process
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if hasattr(args, "materials"):  # every command that reads data or a space takes --materials FILE
            from surrogate.materials import load_catalogue

            load_catalogue(args)
        return int(func(args) or EXIT_OK)
    except (UsageError, InputError) as exc:
        print(f"surrogate {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
