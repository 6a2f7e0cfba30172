"""``surrogate run``: the main job on the embedded default data, one stage after another."""

from __future__ import annotations

import argparse
import sys

from surrogate.cli import EXIT_INTERNAL, EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    parser = subparsers.add_parser(
        "run",
        help="the main job: rebuild and check the embedded data, check the paper's facts",
        description=(
            "Run the main job on the embedded default data (a reconstruction of Tan et al. 2021 by the virtual "
            "lab, not measurements): regenerate the data set and confirm it is bit-for-bit the packaged one, "
            "then check every fact of the paper against the lab."
        ),
    )
    parser.set_defaults(func=_run)


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _run(args: argparse.Namespace) -> int:
    from surrogate.cli import main as cli_main
    from surrogate.dataset import build_default_dataset, default_dataset_path, to_csv_text

    _stage("embedded data set (reconstruction from the paper by the virtual lab, not measurements)")
    packaged = default_dataset_path()
    same = to_csv_text(build_default_dataset()).encode() == packaged.read_bytes()
    print(f"{packaged}: {'regenerates bit for bit' if same else 'DIFFERS from a fresh build'}")
    if not same:
        print("run `surrogate data build` to rewrite it", file=sys.stderr)
        return EXIT_INTERNAL

    _stage("the paper's facts against the noise-free lab")
    code = cli_main(["lab", "facts"])
    return EXIT_OK if code == EXIT_OK else code
