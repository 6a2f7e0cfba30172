"""The tabular data schema: one place that says what a measurement table looks like.

A measurement table is *tidy*: one row per measurement. Every row names the
design it was measured on and carries at least one target value:

========================  ==========================================================
column                    meaning
========================  ==========================================================
``buffer``                required; any alias of a buffer id (see
                          :func:`surrogate.design.canonical_buffer`); output is the
                          canonical id (``none``, ``llto_ncm``, ``sio2``, ``lipon``)
``anneal_temp_c``         required; anneal temperature of the LLTO film, °C
                          (25 = as-deposited, not annealed)
``test_temp_c``           required; temperature of the measurement, °C
``c_rate``                C, > 0; required on rows that carry ``rate_retention``
``cycles``                integer >= 1; required on rows that carry
                          ``capacity_retention``
``protocol``              ``standard`` or ``long``; blank or absent means ``standard``
``material``              optional; what was measured (a catalogue material id or
                          alias); blank or absent means ``llto_film``, the paper's
                          sputtered LLTO film. Temperatures are checked against the
                          row's material's plausible ranges
``conductivity_s_cm``     target: ionic conductivity, S/cm, > 0
``rate_retention``        target: capacity at ``c_rate`` over capacity at 0.1 C,
                          fraction 0-1
``capacity_retention``    target: capacity after ``cycles`` cycles over the initial
                          capacity, fraction 0-1
``experiment``            metadata: ``conductivity``, ``rate`` or ``cycling``
``sample_id``             metadata: film / cell id, groups replicates
``source``                metadata: where the row came from
provenance columns        metadata written by ``surrogate data ingest``
                          (:data:`PROVENANCE_COLUMNS`): kept as they are, no warning
========================  ==========================================================

Columns outside the schema are kept as they are and reported as warnings; no
free-text cell may start like a spreadsheet formula (:func:`formula_problem`). A
table has at most :data:`MAX_COLUMNS` columns. CSV files are read strictly
(:func:`read_table`): UTF-8 or UTF-16 with a byte-order mark; a row with another
number of values than the header, a quote left open and a repeated header name are
errors naming the file's line, and nothing of such a file is used. The
target columns are the declared targets (:mod:`surrogate.targets`, including any
registered at run time); the buffers and materials are the catalogue's
(:mod:`surrogate.materials`, including any declared in a materials file).

:func:`check_frame` applies readable rules one after the other (column mapping,
structure, numbers, categories, per-row conditions, metadata, formula-like text, duplicates); each
rule adds :class:`~surrogate.errors.Problem` entries, so every problem is found
in one pass.

:func:`validate_frame` turns a raw table into the canonical frame or raises a
:class:`~surrogate.errors.DataValidationError` that lists *every* problem at
once; :func:`load_measurements` reads CSV or Parquet and validates;
:func:`validation_report` is the JSON-ready summary the CLI prints.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from surrogate import parameters, targets
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CYCLES,
    DEFAULT_MATERIAL,
    DEFAULT_PROTOCOL,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    TARGETS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_material,
    canonical_protocol,
)
from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.materials import CATALOGUE, MATERIAL_KIND, buffer_ids

# -------------------------------------------------------------------- columns
EXPERIMENT = "experiment"
SAMPLE_ID = "sample_id"
SOURCE = "source"

EXPERIMENTS: tuple[str, ...] = ("conductivity", "rate", "cycling")
"""Allowed values of the optional ``experiment`` column (others are kept, with a warning)."""

REQUIRED_COLUMNS: tuple[str, ...] = (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C)
"""Columns every table must have; every row must have a value in each."""

CONDITION_COLUMNS: tuple[str, ...] = (C_RATE, CYCLES, PROTOCOL)
"""Measurement conditions: ``c_rate`` (C), ``cycles`` (count), ``protocol``."""

TARGET_COLUMNS: tuple[str, ...] = TARGETS
"""The paper's targets; :func:`target_columns` gives every declared target (including run-time ones)."""

METADATA_COLUMNS: tuple[str, ...] = (EXPERIMENT, SAMPLE_ID, SOURCE)
"""Optional free-text columns, kept as they are (as strings)."""

PROVENANCE_COLUMNS: tuple[str, ...] = (
    "source_file",
    "source_sha256",
    "instrument_format",
    "reduction_method",
    "circuit",
    "fit_rmse_ohm",
    "conductivity_std_s_cm",
    "created_at",
)
"""Columns ``surrogate data ingest`` adds to every row (file and sha256, format, reduction, circuit, fit
quality, σ's standard uncertainty in S/cm, time): kept as unknown columns, without a warning."""

OPTIONAL_CATEGORY_COLUMNS: tuple[str, ...] = (MATERIAL,)
"""Optional categorical columns: ``material`` (blank or absent: the paper's LLTO film)."""

COLUMNS: tuple[str, ...] = (
    REQUIRED_COLUMNS + CONDITION_COLUMNS + TARGET_COLUMNS + METADATA_COLUMNS + OPTIONAL_CATEGORY_COLUMNS
)
"""Every schema column with the paper's targets, in the order of the canonical frame (see :func:`schema_columns`)."""

FLOAT_COLUMNS: tuple[str, ...] = (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE) + TARGET_COLUMNS
"""Columns stored as float64 in the canonical frame (``cycles`` is nullable Int64)."""

RETENTION_COLUMNS: tuple[str, ...] = (RATE_RETENTION, CAPACITY_RETENTION)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""File types :func:`load_measurements` reads."""

DESIGN_NUMBER_COLUMNS: tuple[str, ...] = (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES)

MAX_COLUMNS = 1_000
"""Most columns a measurement table may have (schema and unknown columns together).

The schema has a dozen or so columns; a wider table is refused with :class:`InputError` before any
per-column work, so a hostile header (10⁶ columns) costs only its reading. Below the limit,
validation time grows linearly with the number of columns (``benchmarks/validation_width.py``).
"""


def target_columns() -> tuple[str, ...]:
    """Every declared target column (the paper's three, then any registered at run time)."""
    return targets.target_names()


def schema_columns() -> tuple[str, ...]:
    """Every schema column now, in the order of the canonical frame (unknown columns follow)."""
    return REQUIRED_COLUMNS + CONDITION_COLUMNS + target_columns() + METADATA_COLUMNS + OPTIONAL_CATEGORY_COLUMNS


def _fraction_columns() -> tuple[str, ...]:
    return tuple(t.name for t in targets.TARGETS.values() if t.value_kind == "fraction")


# Physical / plausibility limits, °C (declared in surrogate.parameters and the materials catalogue).
ABSOLUTE_ZERO_C = parameters.ABSOLUTE_ZERO_C
TEST_TEMP_PLAUSIBLE_C: tuple[float, float] = CATALOGUE.get(DEFAULT_MATERIAL, MATERIAL_KIND).test_temp_c or (
    -100.0,
    200.0,
)
"""Operating temperatures outside this range are not plausible for the paper's film (its catalogue entry)."""
ANNEAL_TEMP_PLAUSIBLE_C: tuple[float, float] = CATALOGUE.get(DEFAULT_MATERIAL, MATERIAL_KIND).anneal_temp_c or (
    0.0,
    1200.0,
)
"""Anneal temperatures outside this range are not plausible for the paper's film (as-deposited is 25)."""


def _unit(column: str) -> str:
    if column in parameters.NUMERIC_PARAMETERS:
        return parameters.NUMERIC_PARAMETERS[column].unit
    if column in targets.TARGETS:
        return targets.TARGETS[column].unit
    return ""


_MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_PERCENT = re.compile(r"^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*%$")


# -------------------------------------------------------------------- results
@dataclass
class ValidationResult:
    """Everything a validation found: the canonical frame (invalid cells are NaN), problems, warnings."""

    frame: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = "data"

    @property
    def ok(self) -> bool:
        return not self.problems


def _fmt(value: float) -> str:
    return f"{value:g}"


def _is_missing_scalar(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _parse_number(value: Any, column: str) -> tuple[str, float | None, str | None]:
    """Parse one cell of a numeric column: ("missing", None, None), ("ok", x, None) or ("bad", None, reason)."""
    unit = _unit(column)
    if _is_missing_scalar(value):
        return "missing", None, None
    if isinstance(value, (bool, np.bool_)):
        return "bad", None, f"not a number: {value!r} ({unit} expected)"
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return _finite(float(value), str(value))
        except OverflowError:
            return "bad", None, f"{value} is far too large ({unit} expected)"
    text = str(value).strip()
    if text.lower() in _MISSING_TOKENS:
        return "missing", None, None
    percent = _PERCENT.match(text)
    if percent and column in _fraction_columns():
        number = float(percent.group(1))
        return "bad", None, f"{text!r} looks like a percentage; give {_fmt(number / 100)} (a fraction 0-1 is expected)"
    if "_" not in text:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return _finite(number, repr(text))
    hint = "; use a decimal point, not a comma" if _DECIMAL_COMMA.match(text) else ""
    return "bad", None, f"not a number: {text!r} ({unit} expected){hint}"


def _finite(number: float, shown: str) -> tuple[str, float | None, str | None]:
    if math.isnan(number):
        return "missing", None, None
    if math.isinf(number):
        return "bad", None, f"infinite value {shown} is not a measurement"
    return "ok", number, None


def _is_missing_text(value: Any) -> bool:
    return _is_missing_scalar(value) or (isinstance(value, str) and not value.strip())


# ------------------------------------------------------------- value checks
def value_problem(column: str, value: float, material: str | None = None) -> str | None:
    """Why ``value`` is not plausible for ``column`` (None when it is): the checks every input path shares.

    Design parameters are checked by :func:`surrogate.parameters.value_problem` (temperatures against the
    plausible ranges of ``material``, default the paper's LLTO film); targets by their declaration
    (:meth:`surrogate.targets.Target.value_problem`).
    """
    if column in targets.TARGETS:
        return targets.TARGETS[column].value_problem(value)
    return parameters.value_problem(column, value, material=material)


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return f"{shown}, ... ({len(rows)} rows)" if len(rows) > 10 else shown


# ------------------------------------------------------------------ the rules
@dataclass
class _Table:
    """What the rules of :func:`check_frame` share: the raw columns by schema name, parsed values, findings."""

    n_rows: int
    columns: dict[str, pd.Series] = field(default_factory=dict)
    extra: dict[str, pd.Series] = field(default_factory=dict)
    values: dict[str, list[float | None]] = field(default_factory=dict)
    present: dict[str, list[bool]] = field(default_factory=dict)
    categories: dict[str, list[str | None]] = field(default_factory=dict)
    metadata: dict[str, list[Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_width(n_columns: int, source: str = "data") -> None:
    """Raise :class:`InputError` when a table has more than :data:`MAX_COLUMNS` columns."""
    if n_columns > MAX_COLUMNS:
        raise InputError(
            f"{source}: {n_columns:,} columns; a measurement table may have at most {MAX_COLUMNS:,} "
            "(one column per quantity: see `surrogate data validate --help` for the schema)"
        )


def _rule_map_columns(df: pd.DataFrame, table: _Table) -> None:
    """Schema columns by name (stripped, any case); unknown ones kept; duplicate headers reported."""
    known = set(schema_columns())
    seen_count: dict[str, int] = {}
    for position, label in enumerate(df.columns):
        series = df.iloc[:, position].reset_index(drop=True)
        raw = str(label)
        name = raw.strip().lower()
        if name in known:
            seen_count[name] = seen_count.get(name, 0) + 1
            if seen_count[name] > 1:
                continue
            if raw != name:
                table.warnings.append(f"column {raw!r} read as {name!r}")
            table.columns[name] = series
        elif raw in table.extra:
            table.problems.append(Problem(None, raw, f"column {raw!r} appears more than once in the header"))
        else:
            table.extra[raw] = series
    for name, count in seen_count.items():
        if count > 1:
            table.problems.append(
                Problem(None, name, f"column {name!r} appears {count} times in the header; keep one of them")
            )


def _rule_structure(df: pd.DataFrame, table: _Table) -> None:
    """An empty table, a semicolon header, missing required columns, no target column."""
    if not len(df.columns):
        table.problems.append(Problem(None, None, "the data is empty: no header and no rows"))
    elif table.n_rows == 0:
        table.problems.append(Problem(None, None, "no data rows: the table has a header but no measurements"))
    semicolons = len(df.columns) == 1 and not table.columns and ";" in str(df.columns[0])
    if semicolons:
        table.problems.append(Problem(None, None, "the header looks semicolon-separated; a CSV file must use commas"))
    elif len(df.columns):
        for name in REQUIRED_COLUMNS:
            if name not in table.columns:
                close = difflib.get_close_matches(name, list(table.extra), n=1, cutoff=0.6)
                hint = f"; there is a column {close[0]!r}: did you mean {name!r}?" if close else ""
                unit = f" ({_unit(name)})" if _unit(name) else ""
                table.problems.append(Problem(None, name, f"required column {name!r}{unit} is missing{hint}"))
        if not any(t in table.columns for t in target_columns()):
            table.problems.append(
                Problem(None, None, f"no target column: give at least one of {', '.join(target_columns())}")
            )
    for raw in table.extra:
        if raw not in PROVENANCE_COLUMNS:
            table.warnings.append(f"unknown column {raw!r} kept as is (not part of the schema)")


def _rule_numbers(table: _Table) -> None:
    """Parse every numeric cell (design numbers and targets); a bad cell is a problem and stays missing."""
    for name in DESIGN_NUMBER_COLUMNS + target_columns():
        parsed: list[float | None] = [None] * table.n_rows
        given = [False] * table.n_rows
        if name in table.columns:
            for i, cell in enumerate(table.columns[name].tolist()):
                status, number, reason = _parse_number(cell, name)
                given[i] = status != "missing"
                if status == "bad":
                    table.problems.append(Problem(i + 1, name, reason or "invalid value"))
                elif status == "missing" and name in REQUIRED_COLUMNS:
                    table.problems.append(
                        Problem(i + 1, name, f"missing value (blank or NaN) in required column {name!r}")
                    )
                elif status == "ok":
                    parsed[i] = number
        table.values[name] = parsed
        table.present[name] = given


def _canonical_cells(table: _Table, column: str, canon: Any, default: str | None, required: bool) -> None:
    cells: list[str | None] = [default] * table.n_rows
    if column in table.columns:
        for i, cell in enumerate(table.columns[column].tolist()):
            if _is_missing_text(cell):
                if required:
                    cells[i] = None
                    table.problems.append(
                        Problem(
                            i + 1,
                            column,
                            f"missing value in required column {column!r} (one of {', '.join(buffer_ids())})",
                        )
                    )
                continue
            try:
                cells[i] = canon(cell.strip() if isinstance(cell, str) else cell)
            except InputError as exc:
                cells[i] = None
                table.problems.append(Problem(i + 1, column, str(exc)))
    table.categories[column] = cells


def _rule_categories(table: _Table) -> None:
    """``buffer`` (required), ``protocol`` (default standard) and ``material`` (default the LLTO film)."""
    _canonical_cells(table, BUFFER, canonical_buffer, None, required=True)
    _canonical_cells(table, PROTOCOL, canonical_protocol, DEFAULT_PROTOCOL, required=False)
    _canonical_cells(table, MATERIAL, canonical_material, DEFAULT_MATERIAL, required=False)


def _rule_ranges(table: _Table) -> None:
    """Each parsed number against its declaration: design numbers against the row's material's ranges."""
    materials = table.categories[MATERIAL]
    for name in DESIGN_NUMBER_COLUMNS + target_columns():
        parsed = table.values[name]
        for i, number in enumerate(parsed):
            if number is None:
                continue
            reason = value_problem(name, number, material=materials[i] or DEFAULT_MATERIAL)
            if reason:
                table.problems.append(Problem(i + 1, name, reason))
                parsed[i] = None
                continue
            hint = parameters.value_warning(name, number)
            if hint:
                table.warnings.append(f"row {i + 1}: {name}: {hint}")


def _rule_conditions(table: _Table) -> None:
    """Every row carries a target; a target's declared conditions (c_rate, cycles) are given where it is."""
    present_targets = [t for t in target_columns() if t in table.columns]
    if present_targets:
        for i in range(table.n_rows):
            if not any(table.present[t][i] for t in target_columns()):
                table.problems.append(
                    Problem(i + 1, None, f"no target value: give at least one of {', '.join(present_targets)}")
                )
    for target in present_targets:
        rows = [i + 1 for i in range(table.n_rows) if table.present[target][i]]
        if not rows:
            continue
        for condition in targets.TARGETS[target].conditions:
            column = condition.column
            if column not in table.columns:
                table.problems.append(
                    Problem(
                        None,
                        column,
                        f"column {column!r} ({condition.what}) is required when {target!r} is given "
                        f"(rows {_rows_text(rows)})",
                    )
                )
                continue
            for row in rows:
                if not table.present[column][row - 1]:
                    table.problems.append(
                        Problem(row, column, f"{column} is required on rows with {target} ({condition.what})")
                    )


def _rule_metadata(table: _Table) -> None:
    """Free-text metadata as strings; an unusual ``experiment`` value is a warning."""
    for name in METADATA_COLUMNS:
        if name in table.columns:
            cells = [
                None if _is_missing_text(c) else (c.strip() if isinstance(c, str) else str(c))
                for c in table.columns[name]
            ]
        else:
            cells = [None] * table.n_rows
        table.metadata[name] = cells
    for i, cell in enumerate(table.metadata[EXPERIMENT]):
        if cell is not None and cell not in EXPERIMENTS:
            table.warnings.append(
                f"row {i + 1}: experiment {cell!r} is not one of {', '.join(EXPERIMENTS)} (kept as is)"
            )


FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@")
"""First characters with which a spreadsheet reads a cell as a formula (OWASP "CSV injection")."""


def formula_problem(text: str) -> str | None:
    """Why ``text`` would run as a spreadsheet formula (None when it would not).

    A text starting with ``=`` or ``@``, or with ``+`` / ``-`` when it is not a number (``-5`` is fine, a
    lone ``-`` placeholder too), is read by Excel or LibreOffice as a formula when the data is exported
    and opened again (``=cmd|' /C calc'!A0`` starts a program).
    """
    stripped = text.lstrip()
    if not stripped or stripped[0] not in FORMULA_PREFIXES:
        return None
    if stripped[0] in "+-":
        if not stripped.strip("+-"):
            return None
        try:
            float(stripped)
        except ValueError:
            pass
        else:
            return None
    return (
        f"text {stripped[:20]!r} starts with {stripped[0]!r}, which a spreadsheet runs as a formula; "
        "remove or replace the leading character"
    )


def _rule_formulas(table: _Table) -> None:
    """No free-text cell (metadata and unknown columns) may start like a spreadsheet formula."""
    text_columns = {name: table.columns[name] for name in METADATA_COLUMNS if name in table.columns} | table.extra
    for name, series in text_columns.items():
        for i, cell in enumerate(series.tolist()):
            if isinstance(cell, str):
                reason = formula_problem(cell)
                if reason:
                    table.problems.append(Problem(i + 1, name, reason))


def _canonical_frame(table: _Table) -> pd.DataFrame:
    values = table.values
    frame = pd.DataFrame(
        {
            BUFFER: pd.Series(table.categories[BUFFER], dtype="str"),
            ANNEAL_TEMP_C: pd.Series(values[ANNEAL_TEMP_C], dtype="float64"),
            TEST_TEMP_C: pd.Series(values[TEST_TEMP_C], dtype="float64"),
            C_RATE: pd.Series(values[C_RATE], dtype="float64"),
            CYCLES: pd.Series([None if v is None else int(v) for v in values[CYCLES]], dtype="Int64"),
            PROTOCOL: pd.Series(table.categories[PROTOCOL], dtype="str"),
            **{t: pd.Series(values[t], dtype="float64") for t in target_columns()},
            **{m: pd.Series(table.metadata[m], dtype="str") for m in METADATA_COLUMNS},
            MATERIAL: pd.Series(table.categories[MATERIAL], dtype="str"),
        },
        index=pd.RangeIndex(table.n_rows),
    )
    if table.extra:  # one concatenation: inserting column by column is quadratic in the number of columns
        extra = pd.DataFrame(table.extra, index=frame.index)
        frame = pd.concat([frame, extra], axis=1)
    return frame


def _rule_duplicates(frame: pd.DataFrame, table: _Table) -> None:
    """Exact duplicates (after canonicalisation), among rows without other problems."""
    bad_rows = {p.row for p in table.problems if p.row is not None}
    first_seen: dict[tuple[Any, ...], int] = {}
    for i, record in enumerate(frame.itertuples(index=False, name=None)):
        if i + 1 in bad_rows:
            continue
        key = tuple(None if _is_missing_scalar(v) else v for v in record)
        try:
            hash(key)
        except TypeError:  # unhashable cells (lists in a Parquet column): compare their text
            key = tuple(repr(v) for v in key)
        if key in first_seen:
            table.problems.append(Problem(i + 1, None, f"exact duplicate of row {first_seen[key]}"))
        else:
            first_seen[key] = i + 1


# ------------------------------------------------------------------ validate
def check_frame(
    df: pd.DataFrame, source: str = "data", extra_problems: list[Problem] | None = None
) -> ValidationResult:
    """Validate ``df`` without raising: the canonical frame plus every problem and warning.

    The frame has the layout :func:`validate_frame` documents; cells that failed
    validation are missing (NaN / <NA>). ``extra_problems`` (for example from the
    file reader) are reported first. Row numbers are 1-based data rows. A table
    wider than :data:`MAX_COLUMNS` raises :class:`InputError` (see :func:`check_width`).
    """
    check_width(len(df.columns), source)
    table = _Table(n_rows=len(df), problems=list(extra_problems or []))
    _rule_map_columns(df, table)
    _rule_structure(df, table)
    _rule_numbers(table)
    _rule_categories(table)
    _rule_ranges(table)
    _rule_conditions(table)
    _rule_metadata(table)
    _rule_formulas(table)
    frame = _canonical_frame(table)
    _rule_duplicates(frame, table)
    problems = sorted(table.problems, key=lambda p: (p.row is not None, p.row or 0))
    return ValidationResult(frame=frame, problems=problems, warnings=table.warnings, source=source)


def validate_frame(df: pd.DataFrame, source: str = "data") -> pd.DataFrame:
    """Return the canonical measurement frame for ``df`` or raise listing every problem.

    The canonical frame has the columns of :data:`COLUMNS` in that order (absent
    ones filled with missing values), then any unknown columns as they were;
    rows keep their original order with a fresh 0-based index. ``buffer`` holds
    canonical ids, ``protocol`` is filled with ``standard`` where blank;
    temperatures (°C), ``c_rate`` (C) and targets (S/cm, fractions 0-1) are
    float64, ``cycles`` is nullable Int64; metadata columns are strings.
    Warnings (unknown columns and the like) are in ``frame.attrs["warnings"]``.

    Raises :class:`DataValidationError` (a subclass of :class:`InputError`)
    whose ``problems`` name every problem: 1-based data row (row 1 is the first
    row after a CSV header), column and reason. ``source`` names the data in
    the message (a file name, for example).
    """
    result = check_frame(df, source)
    if result.problems:
        raise DataValidationError(result.problems, source)
    result.frame.attrs["warnings"] = list(result.warnings)
    return result.frame


# ---------------------------------------------------------------------- files
_UTF16_BOMS: tuple[bytes, ...] = (b"\xff\xfe", b"\xfe\xff")


def _decode_csv(path: Path, data: bytes) -> str:
    """The text of a CSV file: UTF-8 (with or without BOM) or UTF-16 with its byte-order mark."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path.name}: starts like UTF-16 text but cannot be decoded (byte {exc.start}); save it as 'CSV UTF-8'"
            ) from None
    if b"\x00" in data:
        raise InputError(f"{path.name}: not a CSV text file (it contains binary data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path.name}: cannot be read as UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'"
        ) from None


def _header_problems(header: list[str], line: int) -> list[Problem]:
    """Column names given more than once (schema names compared in any case), reported by the reader.

    A duplicate header is refused before any frame is built, so no path (validate, observe) meets a
    frame with two columns of one name (pandas warns, then drops one of them, when such a frame is
    turned into records).
    """
    known = set(schema_columns())
    counts: dict[str, int] = {}
    for name in header:
        key = name.lower() if name.lower() in known else name
        counts[key] = counts.get(key, 0) + 1
    return [
        Problem(None, key, f"line {line}: column {key!r} appears {count} times in the header; keep one of them")
        for key, count in counts.items()
        if count > 1
    ]


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a CSV strictly: every data row must have exactly the header's number of values, on one line.

    A row with fewer values than the header, or more (other than trailing blank cells, as spreadsheets
    write them), a quoted value that runs over a line break, and a quote left open at the end of the
    file are errors naming the file's line (1-based, the header is line 1) and the data row: the rows
    are never padded, cut or merged, and a broken file yields no frame at all
    (:class:`DataValidationError`, or :class:`InputError` for an unclosed quote).
    """
    data = path.read_bytes()
    text = _decode_csv(path, data)
    if not text.strip():
        return pd.DataFrame(), []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, int, list[str]]] = []  # (first line, last line, values) of each non-blank record
    last_line = 0
    try:
        for record in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if any(c.strip() for c in record):
                records.append((first_line, last_line, record))
    except csv.Error as exc:
        raise InputError(
            f"{path.name}: malformed CSV from line {last_line + 1}: {exc} (is a quote left open?); nothing was read"
        ) from None
    if not records:
        return pd.DataFrame(), []
    header_first, header_last, header_record = records[0]
    header = [h.strip() for h in header_record]
    width = len(header)
    check_width(width, path.name)
    problems = _header_problems(header, header_first)
    if header_last != header_first:
        problems.append(
            Problem(None, None, f"line {header_first}: the header runs over lines {header_first}-{header_last}")
        )
    rows: list[list[str]] = []
    for number, (first_line, line, record) in enumerate(records[1:], start=1):
        if line != first_line:
            problems.append(
                Problem(
                    number,
                    None,
                    f"line {first_line}: a quoted value runs over lines {first_line}-{line}; a quote is probably "
                    "not closed (values cannot contain line breaks)",
                )
            )
        elif len(record) < width or len(record) > width and any(c.strip() for c in record[width:]):
            problems.append(
                Problem(number, None, f"line {line}: {len(record)} values but the header has {width} columns")
            )
        rows.append(record[:width])
    if problems:
        raise DataValidationError(problems, path.name)
    frame = pd.DataFrame(rows, columns=range(width), dtype="str") if rows else pd.DataFrame(columns=range(width))
    frame.columns = header  # duplicate names are kept so the validator can report them
    return frame, problems


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(f"{path.name}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
    return frame.reset_index(drop=True)


def read_table(path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a CSV (every cell as text) or Parquet file without validating it.

    Returns the raw frame and problems found while reading (none today: a CSV
    whose rows do not match its header raises, see :func:`_read_csv`). Raises
    :class:`DataValidationError` listing every malformed CSV row (with its line),
    and :class:`InputError` for a missing file, an unsupported suffix or a file
    that cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{path.name}: unsupported file type {suffix or '(no suffix)'!r}; give a .csv or .parquet file"
        )
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        if suffix == ".csv":
            return _read_csv(path)
        frame = _read_parquet(path)
        check_width(len(frame.columns), path.name)
        return frame, []
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def load_measurements(path: str | Path) -> pd.DataFrame:
    """Read a measurement table from CSV or Parquet (by suffix) and validate it.

    Returns the canonical frame of :func:`validate_frame`. Raises
    :class:`InputError` for a missing file, another suffix or an unreadable
    file, and :class:`DataValidationError` (an InputError) listing every
    problem of a readable file, named by its file name.
    """
    path = Path(path)
    raw, read_problems = read_table(path)
    result = check_frame(raw, path.name, read_problems)
    if result.problems:
        raise DataValidationError(result.problems, path.name)
    result.frame.attrs["warnings"] = list(result.warnings)
    return result.frame


def _range(series: pd.Series) -> list[float] | None:
    finite = series.dropna()
    if finite.empty:
        return None
    return [float(finite.min()), float(finite.max())]


def validation_report(path: str | Path) -> dict[str, Any]:
    """Validate a file and describe the outcome as a JSON-ready dict (never raises for bad input).

    Keys: ``ok`` (bool), ``source`` (file name), ``rows`` (data rows read),
    ``counts`` (values per target column), ``buffers`` (canonical ids
    present), ``ranges`` (``[min, max]`` °C of ``anneal_temp_c`` and
    ``test_temp_c``, or null), ``problems`` (list of
    :meth:`Problem.to_dict`), ``warnings`` (list of strings). Counts, buffers
    and ranges cover only the cells that passed validation.
    """
    path = Path(path)
    try:
        raw, read_problems = read_table(path)
    except InputError as exc:
        if isinstance(exc, DataValidationError):
            problems = [p.to_dict() for p in exc.problems]
        else:
            reason = str(exc)
            for prefix in (f"{path}: ", f"{path.name}: "):
                reason = reason.removeprefix(prefix)
            problems = [Problem(None, None, reason).to_dict()]
        return {
            "ok": False,
            "source": path.name,
            "rows": 0,
            "counts": dict.fromkeys(target_columns(), 0),
            "buffers": [],
            "materials": [],
            "ranges": {ANNEAL_TEMP_C: None, TEST_TEMP_C: None},
            "problems": problems,
            "warnings": [],
        }
    result = check_frame(raw, path.name, read_problems)
    frame = result.frame
    return {
        "ok": result.ok,
        "source": path.name,
        "rows": len(frame),
        "counts": {t: int(frame[t].notna().sum()) for t in target_columns()},
        "buffers": [b for b in buffer_ids() if (frame[BUFFER] == b).any()],
        "materials": [m for m in CATALOGUE.ids(MATERIAL_KIND) if (frame[MATERIAL] == m).any()],
        "ranges": {name: _range(frame[name]) for name in (ANNEAL_TEMP_C, TEST_TEMP_C)},
        "problems": [p.to_dict() for p in result.problems],
        "warnings": list(result.warnings),
    }
