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
from surrogate.schema import COLUMNS, EXPERIMENT, load_measurements, target_columns, validation_report

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
    """Add the ``data`` command group (``validate``, ``build``, ``ingest``)."""
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

    ingest = commands.add_parser(
        "ingest",
        help="reduce raw instrument files (EIS spectra, cycler exports) listed in a manifest to measurement rows",
        description=(
            "Reduce the raw files a manifest (YAML or CSV) lists to measurement rows: EIS spectra (BioLogic .mpt, "
            "Gamry .DTA, ZView .z, CSV) to conductivity by an equivalent-circuit fit, cycler exports "
            "(battery-archive, Arbin, Maccor, Neware, BioLogic) to rate retention per C-rate and capacity "
            "retention per cycle. BioLogic .mpr files (spectra and cycling) need the optional galvani package "
            '(GPL-3): pip install -e ".[mpr]". '
            "Every row carries its provenance (file and sha256, format, reduction method, "
            "circuit, fit quality, time). Each ingest is an MLflow run with the Nyquist, Arrhenius and capacity "
            "plots and the rows as a dataset. Bad input (a missing thickness or area, an unknown format, a "
            "truncated file, a cycle counter that resets, a spectrum that fails Kramers-Kronig, a fit that does "
            "not converge) is listed on stderr, file by file, with exit code 2, and nothing is written. "
            "See docs/ingest.md."
        ),
    )
    ingest.add_argument("manifest", metavar="MANIFEST", type=Path, help="the manifest (.yaml, .yml or .csv)")
    ingest.add_argument(
        "--out", metavar="PATH", type=Path, required=True, help="where to write the rows (.csv or .parquet)"
    )
    ingest.add_argument("--experiment", default=None, help="MLflow experiment of the run (default llto-ingest)")
    ingest.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    add_materials_argument(ingest)
    add_json_flag(ingest)
    ingest.set_defaults(func=_ingest)


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


def _ingest(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from surrogate.ingest.pipeline import ingest, source_digest, staged_rows

    load_catalogue(args)
    out: Path = args.out
    if out.suffix.lower() not in (".csv", ".parquet"):
        print(f"surrogate data ingest: --out {out}: give a .csv or .parquet file name", file=sys.stderr)
        return EXIT_BAD_INPUT
    if out.resolve() == args.manifest.resolve():
        print(f"surrogate data ingest: --out {out} is the manifest itself", file=sys.stderr)
        return EXIT_BAD_INPUT

    def progress(entries):
        return tqdm(entries, desc="ingest", unit="file", file=sys.stderr, disable=True if args.json else None)

    try:
        result = ingest(args.manifest, progress=progress)
    except DataValidationError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"{exc.source}: {len(exc.problems)} problem(s); nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    run: dict[str, Any] = {}
    with staged_rows(result.rows, out):
        if not args.no_track:
            from surrogate.ingest.report import INGEST_EXPERIMENT, log_ingest_run

            run = log_ingest_run(result, out.name, experiment=args.experiment or INGEST_EXPERIMENT)
    counts = result.rows[EXPERIMENT].value_counts().to_dict()
    document = {
        "out": str(out),
        "rows": len(result.rows),
        "counts": {kind: int(n) for kind, n in counts.items()},
        "files": result.sources,
        "source_digest_sha256": source_digest(result.sources),
        "warnings": result.warnings,
        "mlflow": run or None,
    }
    if args.json:
        print_json(document)
        return EXIT_OK
    for warning in result.warnings:
        print(f"{args.manifest.name}: warning: {warning}", file=sys.stderr)
    kinds = ", ".join(f"{kind} {n}" for kind, n in document["counts"].items())
    print(f"wrote {len(result.rows)} rows ({kinds}) from {len(result.sources)} files to {out}")
    if run:
        print(f"MLflow run {run['run_id']} (experiment {args.experiment or 'llto-ingest'}); `surrogate ui` shows it")
    return EXIT_OK
