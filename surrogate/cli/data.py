"""``surrogate data``: check measurement tables and build the packaged data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from surrogate.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, add_json_flag, print_json
from surrogate.design import ANNEAL_TEMP_C, TEST_TEMP_C
from surrogate.errors import DataValidationError, Problem
from surrogate.materials import add_materials_argument, load_catalogue
from surrogate.schema import COLUMNS, load_measurements, target_columns, validation_report

_SCHEMA_HELP = (
    "A measurement table has one row per measurement. Required columns: buffer (any alias, e.g. SiO2, "
    "LiPON, LLTO/NCM, bare), anneal_temp_c (°C, 25 = as-deposited), test_temp_c (°C). Targets, at least "
    "one per row: conductivity_s_cm (S/cm, > 0), rate_retention (fraction 0-1, needs c_rate > 0), "
    "capacity_retention (fraction 0-1, needs integer cycles >= 1). Optional: protocol (standard|long, "
    "blank = standard), material (what was measured; blank = llto_film, the paper's film), experiment, "
    "sample_id, source. Other columns are kept with a warning. Buffers and materials declared in a "
    "--materials file are accepted. "
    f"All known columns: {', '.join(COLUMNS)}."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group (``validate``, ``build``)."""
    group = subparsers.add_parser(
        "data",
        help="check measurement tables and build the packaged data set",
        description="Check measurement tables (CSV or Parquet) against the schema and build the packaged data set.",
    )
    commands = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda args: _usage(group))

    validate = commands.add_parser(
        "validate",
        help="check a CSV or Parquet measurement table and list every problem",
        description=(
            "Check a CSV or Parquet measurement table against the schema. A valid file prints a short summary "
            "(rows, targets, buffers, temperature ranges) and exits 0; otherwise every problem is printed on "
            "stderr, one per line, with its 1-based data row (row 1 is the first row after the header) and "
            "column, and the exit code is 2. " + _SCHEMA_HELP
        ),
    )
    validate.add_argument("file", metavar="FILE", help="the table to check (.csv or .parquet)")
    add_materials_argument(validate)
    add_json_flag(validate)
    validate.set_defaults(func=_validate)

    build = commands.add_parser(
        "build",
        help="write the packaged data set (reconstructed from the paper) to a file",
        description=(
            "Write the default data set (a reconstruction from Tan et al., Nanomaterials 2021, 11, 989, not "
            "measurements) to a CSV file, check it, and print where it went and how many rows it has."
        ),
    )
    build.add_argument(
        "--out",
        metavar="PATH",
        type=Path,
        default=None,
        help="where to write the CSV file; default: the data file packaged with surrogate",
    )
    add_materials_argument(build)
    add_json_flag(build)
    build.set_defaults(func=_build)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


def _span(values: list[float] | None) -> str:
    if not values:
        return "none"
    low, high = values
    return f"{low:g} °C" if low == high else f"{low:g} to {high:g} °C"


def _validate(args: argparse.Namespace) -> int:
    load_catalogue(args)
    return print_validation(args.file, args.json)


def training_warnings(path: str | Path) -> list[str]:
    """Warnings ahead of training (too few rows or groups for cross-validation) of a valid file."""
    from surrogate.evaluation import cv_readiness  # lazy: pulls in the model families

    return cv_readiness(load_measurements(path))


def print_validation(path: str | Path, as_json: bool = False) -> int:
    """Check ``path`` and print the report (a summary, or every problem on stderr); returns the exit code.

    A valid file's report also warns ahead of training when a target has too few rows or groups for
    cross-validation.
    """
    report = validation_report(path)
    if report["ok"]:
        report["warnings"] = list(report["warnings"]) + training_warnings(path)
    code = EXIT_OK if report["ok"] else EXIT_BAD_INPUT
    if as_json:
        print_json(report)
        return code
    source = report["source"]
    for warning in report["warnings"]:
        print(f"{source}: warning: {warning}", file=sys.stderr)
    if not report["ok"]:
        for item in report["problems"]:
            print(f"{source}: {Problem(**item)}", file=sys.stderr)
        print(f"{source}: {len(report['problems'])} problem(s); the file is not valid", file=sys.stderr)
        return code
    print(_summary(report))
    return code


def _summary(report: dict[str, Any]) -> str:
    counts = report["counts"]
    targets = ", ".join(f"{t} ({counts[t]})" for t in target_columns() if counts.get(t)) or "none"
    lines = [
        f"{report['source']}: valid, {report['rows']} row(s)",
        f"  targets: {targets}",
        f"  buffers: {', '.join(report['buffers']) or 'none'}",
        f"  materials: {', '.join(report.get('materials') or []) or 'none'}",
        f"  {ANNEAL_TEMP_C}: {_span(report['ranges'][ANNEAL_TEMP_C])}",
        f"  {TEST_TEMP_C}: {_span(report['ranges'][TEST_TEMP_C])}",
    ]
    return "\n".join(lines)


def _build(args: argparse.Namespace) -> int:
    out: Path | None = args.out
    if out is not None and out.suffix.lower() != ".csv":
        print(
            f"surrogate data build: --out {out}: the data set is written as CSV; give a .csv file name", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    from surrogate.dataset import write_default_dataset  # lazy: pulls in the data-set builder only here

    load_catalogue(args)
    try:
        path = Path(write_default_dataset(out))
    except OSError as exc:
        print(f"surrogate data build: --out {out}: cannot write there ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        frame = load_measurements(path)
    except DataValidationError as exc:
        print(f"surrogate data build: internal error: the built data set fails validation\n{exc}", file=sys.stderr)
        return EXIT_INTERNAL
    counts = {t: int(frame[t].notna().sum()) for t in target_columns()}
    if args.json:
        print_json({"path": str(path), "rows": len(frame), "counts": counts})
    else:
        print(f"wrote {len(frame)} rows to {path}")
    return EXIT_OK
