"""How validation time grows with the number of columns of a CSV file (issue 18, finding 9).

For each width (schema columns plus unknown ``x<i>`` columns, ``--rows`` distinct valid rows), the time
of :func:`surrogate.schema.validation_report` on the file, best of ``--repeat``:

- **now**: the current reader and validator, up to :data:`surrogate.schema.MAX_COLUMNS`; above it the
  time to refuse the file (it must stay small however wide the header is);
- **ddca1da**: the reader and validator as they were at ddca1da (loaded from git in the same run; skipped
  when git or the commit is not available), the baseline.

Run::

    python benchmarks/validation_width.py
    python benchmarks/validation_width.py --widths 100 200 --repeat 1   # smoke test

Writes benchmarks/results/validation_width.{json,md}. Timings depend on the machine; compare the ratios
of one run (a doubling of the width should about double a linear time and quadruple a quadratic one).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from surrogate import schema  # noqa: E402

BASELINE_COMMIT = "ddca1da"
SCHEMA_COLUMNS = ("buffer", "anneal_temp_c", "test_temp_c", "conductivity_s_cm")


def baseline_schema() -> ModuleType | None:
    """``surrogate/schema.py`` as of :data:`BASELINE_COMMIT`, imported as a separate module (None if unavailable)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:surrogate/schema.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("schema_at_ddca1da", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{BASELINE_COMMIT}:surrogate/schema.py", "exec"), module.__dict__)  # noqa: S102
    return module


def write_wide_csv(folder: Path, n_columns: int, n_rows: int) -> Path:
    """A valid table of ``n_rows`` distinct rows: the four schema columns, then unknown columns up to ``n_columns``."""
    header = list(SCHEMA_COLUMNS) + [f"x{i}" for i in range(n_columns - len(SCHEMA_COLUMNS))]
    lines = [",".join(header)]
    for row in range(n_rows):
        lines.append(",".join(["sio2", "400", "25", f"{1e-5 * (row + 1):.6g}"] + ["1"] * (len(header) - 4)))
    path = folder / f"wide_{n_columns}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def best_time_s(module: ModuleType, path: Path, repeat: int) -> tuple[float, dict[str, Any]]:
    """Best wall time (s) of ``module.validation_report(path)`` and its last report."""
    best = float("inf")
    report: dict[str, Any] = {}
    for _ in range(repeat):
        start = time.perf_counter()
        report = module.validation_report(path)
        best = min(best, time.perf_counter() - start)
    return best, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[125, 250, 500, 1000, 2000, 100_000])
    parser.add_argument("--rows", type=int, default=20, help="data rows per file (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument(
        "--baseline-max-width", type=int, default=2000, help="widest file given to the ddca1da baseline (default 2000)"
    )
    args = parser.parse_args()
    baseline = baseline_schema()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for width in args.widths:
            path = write_wide_csv(Path(folder), width, args.rows)
            now_s, report = best_time_s(schema, path, args.repeat)
            row: dict[str, Any] = {
                "columns": width,
                "now_s": round(now_s, 4),
                "now_outcome": "valid" if report["ok"] else report["problems"][0]["reason"][:80],
                "ddca1da_s": None,
            }
            if baseline is not None and width <= args.baseline_max_width:
                old_s, old_report = best_time_s(baseline, path, args.repeat)
                row["ddca1da_s"] = round(old_s, 4)
                row["ddca1da_outcome"] = "valid" if old_report["ok"] else old_report["problems"][0]["reason"][:80]
            rows.append(row)
            print(json.dumps(row), flush=True)
    for previous, row in zip(rows, rows[1:], strict=False):
        for key in ("now_s", "ddca1da_s"):
            outcome = key.replace("_s", "_outcome")
            both_valid = previous.get(outcome) == row.get(outcome) == "valid"  # a refusal is no validation time
            if both_valid and row["columns"] == 2 * previous["columns"]:
                row[f"{key[:-2]}_ratio_to_half_width"] = round(row[key] / previous[key], 2)
    result = {
        "benchmark": "validation_width",
        "rows_per_file": args.rows,
        "repeat": args.repeat,
        "max_columns": schema.MAX_COLUMNS,
        "baseline": BASELINE_COMMIT if baseline is not None else None,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validation_width.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Validation time against the number of columns",
        "",
        f"`python benchmarks/validation_width.py`: `validation_report` on a CSV of {args.rows} valid rows, "
        f"best of {args.repeat}; the column limit is {schema.MAX_COLUMNS:,}. Baseline: the reader and validator "
        f"at {BASELINE_COMMIT}, in the same run. Ratios compare a width with half of it (2 = linear, 4 = quadratic).",
        "",
        "| columns | now, s | ratio | ddca1da, s | ratio | now: outcome |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        old = "" if row["ddca1da_s"] is None else f"{row['ddca1da_s']:.3f}"
        lines.append(
            f"| {row['columns']:,} | {row['now_s']:.3f} | {row.get('now_ratio_to_half_width', '')} | {old} | "
            f"{row.get('ddca1da_ratio_to_half_width', '')} | {row['now_outcome']} |"
        )
    (RESULTS / "validation_width.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
