"""``surrogate run``: the main job on the embedded default data, one stage after another."""

from __future__ import annotations

import argparse
import sys

from surrogate.cli import EXIT_INTERNAL, EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    parser = subparsers.add_parser(
        "run",
        help="the main job: check the embedded data and the paper's facts, train, search the design space",
        description=(
            "Run the main job on the embedded default data (a reconstruction of Tan et al. 2021 by the virtual "
            "lab, not measurements): (1) regenerate the data set and confirm it is bit-for-bit the packaged one, "
            "(2) check every fact of the paper against the lab, (3) train the surrogates, log them to MLflow and "
            "register the champion, (4) check the paper's facts against the champion, (5) search the design space "
            "for the Pareto front of conductivity, rate retention at 30 C and capacity retention after 100 cycles."
        ),
    )
    parser.add_argument("--models", default=None, help="comma-separated model families to train (default: all of them)")
    parser.add_argument("--trials", type=int, default=200, help="Optuna trials of the Pareto search (default 200)")
    parser.set_defaults(func=_run)


def _stage(number: int, title: str) -> None:
    print(f"\n== {number}. {title}", flush=True)


def _run(args: argparse.Namespace) -> int:
    from surrogate.cli import main as cli_main
    from surrogate.dataset import build_default_dataset, default_dataset_path, to_csv_text

    _stage(1, "embedded data set (reconstruction from the paper by the virtual lab, not measurements)")
    packaged = default_dataset_path()
    same = to_csv_text(build_default_dataset()).encode() == packaged.read_bytes()
    print(f"{packaged}: {'regenerates bit for bit' if same else 'DIFFERS from a fresh build'}")
    if not same:
        print("run `surrogate data build` to rewrite it", file=sys.stderr)
        return EXIT_INTERNAL

    steps = [
        (2, "the paper's facts against the noise-free lab", ["lab", "facts"]),
        (
            3,
            "train the surrogates (MLflow: sqlite:///mlruns/mlflow.db, artifacts in mlruns/)",
            ["train"] + (["--models", args.models] if args.models else []),
        ),
        (4, "the paper's facts against the trained champion", ["facts"]),
        (5, "Pareto search on the champion", ["search", "--pareto", "--trials", str(args.trials)]),
    ]
    for number, title, argv in steps:
        _stage(number, title)
        code = cli_main(argv)
        if code != EXIT_OK:
            print(f"surrogate run: stage {number} ({' '.join(argv)}) ended with exit code {code}", file=sys.stderr)
            return code
    print(
        "\nNext: `surrogate ui` opens the MLflow UI on ./mlruns (open the address it prints: it shows the "
        "model-training view; MLflow 3.17 otherwise starts on its GenAI view); `surrogate serve` starts the HTTP "
        "service; `surrogate campaign create NAME --objective ...` starts a design-of-experiments campaign."
    )
    return EXIT_OK
