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
``conductivity_s_cm``     target: ionic conductivity, S/cm, > 0
``rate_retention``        target: capacity at ``c_rate`` over capacity at 0.1 C,
                          fraction 0-1
``capacity_retention``    target: capacity after ``cycles`` cycles over the initial
                          capacity, fraction 0-1
``experiment``            metadata: ``conductivity``, ``rate`` or ``cycling``
``sample_id``             metadata: film / cell id, groups replicates
``source``                metadata: where the row came from
========================  ==========================================================

Columns outside the schema are kept as they are and reported as warnings.

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

from surrogate.design import (
    ANNEAL_TEMP_C,
    AS_DEPOSITED_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOL,
    RATE_RETENTION,
    TARGET_UNITS,
    TARGETS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_protocol,
    unknown_buffer_message,
)
from surrogate.errors import DataValidationError, InputError, Problem

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
"""Measured targets; a table has at least one, a row carries at least one value."""

METADATA_COLUMNS: tuple[str, ...] = (EXPERIMENT, SAMPLE_ID, SOURCE)
"""Optional free-text columns, kept as they are (as strings)."""

COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + CONDITION_COLUMNS + TARGET_COLUMNS + METADATA_COLUMNS
"""Every schema column, in the order of the canonical frame (unknown columns follow)."""

FLOAT_COLUMNS: tuple[str, ...] = (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE) + TARGET_COLUMNS
"""Columns stored as float64 in the canonical frame (``cycles`` is nullable Int64)."""

RETENTION_COLUMNS: tuple[str, ...] = (RATE_RETENTION, CAPACITY_RETENTION)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""File types :func:`load_measurements` reads."""

# Physical / plausibility limits, °C.
ABSOLUTE_ZERO_C = -273.15
TEST_TEMP_PLAUSIBLE_C: tuple[float, float] = (-100.0, 200.0)
"""Operating temperatures outside this range are not plausible for these cells."""
ANNEAL_TEMP_PLAUSIBLE_C: tuple[float, float] = (0.0, 1200.0)
"""Anneal temperatures outside this range are not plausible (as-deposited is 25)."""

_UNITS: dict[str, str] = {
    ANNEAL_TEMP_C: "°C",
    TEST_TEMP_C: "°C",
    C_RATE: "C",
    CYCLES: "cycles",
    **TARGET_UNITS,
}

_PERCENT_LIKE = (1.5, 100.0)
"""Retention values in this range are reported as percentages; (1, 1.5] just as "above 1"."""
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
    unit = _UNITS.get(column, "")
    if _is_missing_scalar(value):
        return "missing", None, None
    if isinstance(value, (bool, np.bool_)):
        return "bad", None, f"not a number: {value!r} ({unit} expected)"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _finite(float(value), str(value))
    text = str(value).strip()
    if text.lower() in _MISSING_TOKENS:
        return "missing", None, None
    percent = _PERCENT.match(text)
    if percent and column in RETENTION_COLUMNS:
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


# ------------------------------------------------------------- column checks
def _check_test_temp(value: float) -> str | None:
    low, high = TEST_TEMP_PLAUSIBLE_C
    if value < ABSOLUTE_ZERO_C:
        return f"{_fmt(value)} °C is below absolute zero ({ABSOLUTE_ZERO_C} °C): physically impossible"
    if value >= 273.0:
        celsius = round(value + ABSOLUTE_ZERO_C, 2)
        if low <= celsius <= high:
            return f"{_fmt(value)} looks like kelvin; did you mean {_fmt(celsius)} °C? (test_temp_c is in °C)"
    if not low <= value <= high:
        return f"{_fmt(value)} °C is outside any plausible operating temperature ({_fmt(low)} to {_fmt(high)} °C)"
    return None


def _check_anneal_temp(value: float) -> str | None:
    low, high = ANNEAL_TEMP_PLAUSIBLE_C
    if value < ABSOLUTE_ZERO_C:
        return f"{_fmt(value)} °C is below absolute zero ({ABSOLUTE_ZERO_C} °C): physically impossible"
    offset = value + ABSOLUTE_ZERO_C
    if value >= -ABSOLUTE_ZERO_C and abs(offset - round(offset)) < 1e-6:
        celsius = round(offset)
        note = " (as-deposited)" if celsius == AS_DEPOSITED_C else ""
        return f"{_fmt(value)} looks like kelvin; did you mean {celsius} °C{note}? (anneal_temp_c is in °C)"
    if not low <= value <= high:
        return (
            f"{_fmt(value)} °C is not a plausible anneal temperature ({_fmt(low)} to {_fmt(high)} °C; "
            f"as-deposited is {_fmt(AS_DEPOSITED_C)})"
        )
    return None


def _check_conductivity(value: float) -> str | None:
    if value < 0:
        return f"negative conductivity {_fmt(value)} S/cm: conductivity must be > 0"
    if value == 0:
        return "zero conductivity: conductivity must be > 0 S/cm (leave the cell blank if not measured)"
    return None


def _check_retention(value: float) -> str | None:
    if value < 0:
        return f"negative retention {_fmt(value)}: a fraction 0-1 is expected"
    if _PERCENT_LIKE[0] < value <= _PERCENT_LIKE[1]:
        return f"{_fmt(value)} looks like a percentage; give {_fmt(value / 100)} (a fraction 0-1 is expected)"
    if value > 1:
        return f"{_fmt(value)} is above 1: a fraction 0-1 is expected"
    return None


def _check_c_rate(value: float) -> str | None:
    if value <= 0:
        return f"c_rate must be > 0 C; got {_fmt(value)}"
    return None


def _check_cycles(value: float) -> str | None:
    if not float(value).is_integer():
        return f"cycles must be a whole number of cycles; got {_fmt(value)}"
    if value < 1:
        return f"cycles must be >= 1; got {_fmt(value)}"
    return None


_RANGE_CHECKS = {
    ANNEAL_TEMP_C: _check_anneal_temp,
    TEST_TEMP_C: _check_test_temp,
    C_RATE: _check_c_rate,
    CYCLES: _check_cycles,
    CONDUCTIVITY: _check_conductivity,
    RATE_RETENTION: _check_retention,
    CAPACITY_RETENTION: _check_retention,
}


def value_problem(column: str, value: float) -> str | None:
    """Why ``value`` is not plausible for ``column`` (None when it is): the range checks every input path shares."""
    check = _RANGE_CHECKS.get(column)
    return check(value) if check is not None else None


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return f"{shown}, ... ({len(rows)} rows)" if len(rows) > 10 else shown


# ------------------------------------------------------------------ validate
def check_frame(
    df: pd.DataFrame, source: str = "data", extra_problems: list[Problem] | None = None
) -> ValidationResult:
    """Validate ``df`` without raising: the canonical frame plus every problem and warning.

    The frame has the layout :func:`validate_frame` documents; cells that failed
    validation are missing (NaN / <NA>). ``extra_problems`` (for example from the
    file reader) are reported first. Row numbers are 1-based data rows.
    """
    problems: list[Problem] = list(extra_problems or [])
    warnings: list[str] = []
    n_rows = len(df)

    # --- map the columns (strip / case-insensitive for schema names)
    columns: dict[str, pd.Series] = {}
    extra: dict[str, pd.Series] = {}
    seen_count: dict[str, int] = {}
    for position, label in enumerate(df.columns):
        series = df.iloc[:, position].reset_index(drop=True)
        raw = str(label)
        name = raw.strip().lower()
        if name in COLUMNS:
            seen_count[name] = seen_count.get(name, 0) + 1
            if seen_count[name] > 1:
                continue
            if raw != name:
                warnings.append(f"column {raw!r} read as {name!r}")
            columns[name] = series
        else:
            if raw in extra:
                problems.append(Problem(None, raw, f"column {raw!r} appears more than once in the header"))
                continue
            extra[raw] = series
    for name, count in seen_count.items():
        if count > 1:
            problems.append(
                Problem(None, name, f"column {name!r} appears {count} times in the header; keep one of them")
            )

    if not len(df.columns):
        problems.append(Problem(None, None, "the data is empty: no header and no rows"))
    elif n_rows == 0:
        problems.append(Problem(None, None, "no data rows: the table has a header but no measurements"))

    semicolons = len(df.columns) == 1 and not columns and ";" in str(df.columns[0])
    if semicolons:
        problems.append(Problem(None, None, "the header looks semicolon-separated; a CSV file must use commas"))
    elif len(df.columns):
        for name in REQUIRED_COLUMNS:
            if name not in columns:
                close = difflib.get_close_matches(name, list(extra), n=1, cutoff=0.6)
                hint = f"; there is a column {close[0]!r}: did you mean {name!r}?" if close else ""
                unit = f" ({_UNITS[name]})" if name in _UNITS else ""
                problems.append(Problem(None, name, f"required column {name!r}{unit} is missing{hint}"))
        if not any(t in columns for t in TARGET_COLUMNS):
            problems.append(Problem(None, None, f"no target column: give at least one of {', '.join(TARGET_COLUMNS)}"))
    for raw in extra:
        warnings.append(f"unknown column {raw!r} kept as is (not part of the schema)")

    # --- numeric columns, cell by cell
    values: dict[str, list[float | None]] = {}
    present: dict[str, list[bool]] = {}
    for name in FLOAT_COLUMNS + (CYCLES,):
        parsed: list[float | None] = [None] * n_rows
        given = [False] * n_rows
        if name in columns:
            for i, cell in enumerate(columns[name].tolist()):
                status, number, reason = _parse_number(cell, name)
                given[i] = status != "missing"
                if status == "bad":
                    problems.append(Problem(i + 1, name, reason or "invalid value"))
                    continue
                if status == "missing":
                    if name in REQUIRED_COLUMNS:
                        problems.append(
                            Problem(i + 1, name, f"missing value (blank or NaN) in required column {name!r}")
                        )
                    continue
                assert number is not None
                reason = _RANGE_CHECKS[name](number)
                if reason:
                    problems.append(Problem(i + 1, name, reason))
                    continue
                parsed[i] = number
        values[name] = parsed
        present[name] = given

    # --- buffer
    buffers: list[str | None] = [None] * n_rows
    if BUFFER in columns:
        for i, cell in enumerate(columns[BUFFER].tolist()):
            if _is_missing_text(cell):
                problems.append(
                    Problem(i + 1, BUFFER, f"missing value in required column 'buffer' (one of {', '.join(BUFFERS)})")
                )
                continue
            try:
                buffers[i] = canonical_buffer(cell.strip() if isinstance(cell, str) else cell)
            except InputError:
                problems.append(Problem(i + 1, BUFFER, unknown_buffer_message(cell)))

    # --- protocol
    protocols: list[str | None] = [DEFAULT_PROTOCOL] * n_rows
    if PROTOCOL in columns:
        for i, cell in enumerate(columns[PROTOCOL].tolist()):
            if _is_missing_text(cell):
                continue
            try:
                protocols[i] = canonical_protocol(cell)
            except InputError as exc:
                protocols[i] = None
                problems.append(Problem(i + 1, PROTOCOL, str(exc)))

    # --- per-row rules across columns
    target_columns_present = [t for t in TARGET_COLUMNS if t in columns]
    if target_columns_present:
        for i in range(n_rows):
            if not any(present[t][i] for t in TARGET_COLUMNS):
                problems.append(
                    Problem(i + 1, None, f"no target value: give at least one of {', '.join(target_columns_present)}")
                )
    for target, condition, what in (
        (RATE_RETENTION, C_RATE, "the C-rate the retention was measured at, > 0"),
        (CAPACITY_RETENTION, CYCLES, "the cycle count the retention was measured at, integer >= 1"),
    ):
        rows = [i + 1 for i in range(n_rows) if present[target][i]]
        if not rows:
            continue
        if condition not in columns:
            problems.append(
                Problem(
                    None,
                    condition,
                    f"column {condition!r} ({what}) is required when {target!r} is given (rows {_rows_text(rows)})",
                )
            )
            continue
        for row in rows:
            if not present[condition][row - 1]:
                problems.append(Problem(row, condition, f"{condition} is required on rows with {target} ({what})"))

    # --- metadata
    metadata: dict[str, list[Any]] = {}
    for name in METADATA_COLUMNS:
        if name in columns:
            cells = [
                None if _is_missing_text(c) else (c.strip() if isinstance(c, str) else str(c)) for c in columns[name]
            ]
        else:
            cells = [None] * n_rows
        metadata[name] = cells
    for i, cell in enumerate(metadata[EXPERIMENT]):
        if cell is not None and cell not in EXPERIMENTS:
            warnings.append(f"row {i + 1}: experiment {cell!r} is not one of {', '.join(EXPERIMENTS)} (kept as is)")

    # --- the canonical frame
    frame = pd.DataFrame(
        {
            BUFFER: pd.Series(buffers, dtype="str"),
            ANNEAL_TEMP_C: pd.Series(values[ANNEAL_TEMP_C], dtype="float64"),
            TEST_TEMP_C: pd.Series(values[TEST_TEMP_C], dtype="float64"),
            C_RATE: pd.Series(values[C_RATE], dtype="float64"),
            CYCLES: pd.Series([None if v is None else int(v) for v in values[CYCLES]], dtype="Int64"),
            PROTOCOL: pd.Series(protocols, dtype="str"),
            **{t: pd.Series(values[t], dtype="float64") for t in TARGET_COLUMNS},
            **{m: pd.Series(metadata[m], dtype="str") for m in METADATA_COLUMNS},
        },
        index=pd.RangeIndex(n_rows),
    )
    for raw, series in extra.items():
        frame[raw] = series

    # --- exact duplicates (after canonicalisation), among rows without other problems
    bad_rows = {p.row for p in problems if p.row is not None}
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
            problems.append(Problem(i + 1, None, f"exact duplicate of row {first_seen[key]}"))
        else:
            first_seen[key] = i + 1

    problems.sort(key=lambda p: (p.row is not None, p.row or 0))
    return ValidationResult(frame=frame, problems=problems, warnings=warnings, source=source)


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
def _read_csv(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    data = path.read_bytes()
    if not data.strip():
        return pd.DataFrame(), []
    if b"\x00" in data:
        raise InputError(f"{path.name}: not a CSV text file (it contains binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path.name}: cannot be read as UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'"
        ) from None
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise InputError(f"{path.name}: malformed CSV: {exc}") from None
    if not records:
        return pd.DataFrame(), []
    header = [h.strip() for h in records[0]]
    width = len(header)
    problems: list[Problem] = []
    rows = []
    for number, record in enumerate(records[1:], start=1):
        if len(record) > width:
            if any(c.strip() for c in record[width:]):
                problems.append(Problem(number, None, f"{len(record)} values but the header has {width} columns"))
            record = record[:width]
        rows.append(record + [""] * (width - len(record)))
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

    Returns the raw frame and problems found while reading (rows with too many
    values). Raises :class:`InputError` for a missing file, an unsupported
    suffix or a file that cannot be read.
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
        return _read_parquet(path), []
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
        reason = str(exc)
        for prefix in (f"{path}: ", f"{path.name}: "):
            reason = reason.removeprefix(prefix)
        return {
            "ok": False,
            "source": path.name,
            "rows": 0,
            "counts": dict.fromkeys(TARGET_COLUMNS, 0),
            "buffers": [],
            "ranges": {ANNEAL_TEMP_C: None, TEST_TEMP_C: None},
            "problems": [Problem(None, None, reason).to_dict()],
            "warnings": [],
        }
    result = check_frame(raw, path.name, read_problems)
    frame = result.frame
    return {
        "ok": result.ok,
        "source": path.name,
        "rows": len(frame),
        "counts": {t: int(frame[t].notna().sum()) for t in TARGET_COLUMNS},
        "buffers": [b for b in BUFFERS if (frame[BUFFER] == b).any()],
        "ranges": {name: _range(frame[name]) for name in (ANNEAL_TEMP_C, TEST_TEMP_C)},
        "problems": [p.to_dict() for p in result.problems],
        "warnings": list(result.warnings),
    }
