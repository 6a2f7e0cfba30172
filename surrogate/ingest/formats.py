"""Impedance spectra from instrument files: BioLogic ``.mpt`` and ``.mpr``, Gamry ``.DTA``, ZView/ZPlot ``.z``, CSV.

:func:`read_spectrum` detects the format from the file's content (its first lines), not from its
extension, and returns a :class:`Spectrum` in ohm and hertz with the sign convention of impedance.py:
``z_imag_ohm`` is Im(Z), negative for a capacitive arc.

Bad files raise :class:`~surrogate.errors.DataValidationError` (an ``InputError``: CLI exit 2, HTTP 400)
whose ``source`` is the file and whose problems name the **line of the file** (1-based, counting header
lines) and the reason: unknown format, truncated file, a cycler file given as a spectrum, a cell that is
not a number, a non-positive frequency, fewer than :data:`MIN_POINTS` points.

Formats (``Spectrum.source_format``):

- ``biologic-mpt``: EC-Lab / BT-Lab text export. Line 2 is ``Nb header lines : N``; line N is the column
  header; columns ``freq/Hz``, ``Re(Z)/Ohm``, ``-Im(Z)/Ohm`` (sign flipped on reading).
- ``gamry-dta``: Gamry Framework file (``EXPLAIN`` / ``TAG`` header). The ``ZCURVE TABLE`` line, then a
  column header (``Pt Time Freq Zreal Zimag ...``), a units line, and data until ``EXPERIMENTABORTED``
  or the end. Decimal commas are read as points.
- ``zview-z``: ZView / ZPlot ``ZPLOT2 ASCII`` file. A header line with ``Freq(Hz)`` and ``Z'(a)``,
  ``Z''(b)``, then data after ``End Comments`` (when present). ``Data Points: N`` in the header is the
  planned count (an aborted sweep has fewer rows), so it is not checked.
- ``biologic-mpr``: EC-Lab's binary file, read through galvani (GPL-3, an optional extra:
  ``pip install -e ".[mpr]"``; :func:`load_mpr`). Without galvani the file is refused with that command.
  The same columns as ``.mpt``.
- ``csv``: comma- (or tab-) separated, ``#`` comment lines ignored. Either three unnamed numeric columns
  (frequency in Hz, Z' in ohm, Z'' = Im(Z) in ohm, as impedance.py's ``readCSV`` and ``saveCSV``) or a
  header naming them; see :data:`CSV_COLUMNS` (case-insensitive). A column named ``-z''``,
  ``-im(z)/ohm`` or ``minus_z_imag_ohm`` holds -Im(Z) and is sign-flipped.

**Sweeps.** An EC-Lab file may hold several sweeps (a PEIS loop), numbered by its ``cycle number``
column. ``read_spectrum(path, sweep=N)`` reads sweep N; a file of several sweeps read without ``sweep``
is refused with their count (the manifest's ``sweep`` field says which one an entry is).

Why the parsing is ours: impedance.py 1.7.1's readers (``preprocessing.readBioLogic``, ``readGamry``,
``readZPlot``, ``readCSV``) read good files, and this module follows their column conventions, but they
report a bad file as a bare ``IndexError``/``ValueError``/``AssertionError`` with no line, accept a
truncated last row, fail on a trailing blank line, and ``readCSV`` turns a bad cell into NaN and cannot
take a header. A test (``test_reader_agrees_with_impedance_py``) checks that every fixture gives the same
numbers as impedance.py's own reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from surrogate.errors import DataValidationError, InputError, Problem

MIN_POINTS = 10
"""Fewest points a spectrum may have: a 6-parameter blocking circuit and Kramers-Kronig need more."""

FORMATS: dict[str, str] = {
    "biologic-mpt": "BioLogic EC-Lab/BT-Lab text export (.mpt)",
    "gamry-dta": "Gamry Framework (.DTA)",
    "biologic-mpr": 'BioLogic EC-Lab binary (.mpr; needs the optional galvani: pip install -e ".[mpr]")',
    "zview-z": "ZView/ZPlot ZPLOT2 ASCII (.z)",
    "csv": "CSV of frequency (Hz), Z' (ohm), Z'' = Im(Z) (ohm)",
}
"""Every format :func:`read_spectrum` reads, by its ``source_format`` name."""

CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "frequency_hz": ("frequency_hz", "frequency", "freq", "f", "freq/hz", "frequency/hz", "freq(hz)"),
    "z_real_ohm": ("z_real_ohm", "z_real", "zreal", "z'", "re(z)", "re(z)/ohm", "z'(a)"),
    "z_imag_ohm": ("z_imag_ohm", "z_imag", "zimag", "z''", "im(z)", "im(z)/ohm", "z''(b)"),
    "minus_z_imag_ohm": ("minus_z_imag_ohm", "-z_imag_ohm", "-z''", "-im(z)", "-im(z)/ohm", "-zimag"),
}
"""Accepted CSV header names (any case, surrounding spaces ignored) for each quantity."""

MPR_MAGIC = b"BIO-LOGIC MODULAR FILE"
"""The first bytes of an EC-Lab ``.mpr`` file."""

MPR_EXTRA = 'pip install -e ".[mpr]"'
"""How to install the optional .mpr reader (galvani, GPL-3)."""

SWEEP_COLUMN = "cycle number"
"""EC-Lab's column that numbers the sweeps of a PEIS/GEIS loop."""

_CYCLER_WORDS = (
    "capacity",
    "cycle_index",
    "step_index",
    "q charge",
    "q discharge",
    "(q-qo)",
    "ecell",
    "dq/de",
    "half cycle",
)
"""Header words that mark a cycler export (BioLogic GCPL, Arbin, Maccor, Neware, battery-archive)."""


@dataclass(frozen=True, eq=False)
class Spectrum:
    """One impedance spectrum: frequency (Hz), Re(Z) and Im(Z) (ohm, Im < 0 for a capacitive arc)."""

    frequency_hz: np.ndarray
    z_real_ohm: np.ndarray
    z_imag_ohm: np.ndarray
    source_format: str
    path: str

    @property
    def impedance_ohm(self) -> np.ndarray:
        """Complex impedance Z = Z' + j Z'' in ohm."""
        return self.z_real_ohm + 1j * self.z_imag_ohm

    def __len__(self) -> int:
        return int(self.frequency_hz.size)

    def band(self, min_hz: float | None = None, max_hz: float | None = None) -> Spectrum:
        """The points with ``min_hz <= f <= max_hz`` (either bound optional), e.g. to leave out a drifting
        low-frequency tail that fails Kramers-Kronig. Raises ``InputError`` when fewer than
        :data:`MIN_POINTS` remain."""
        keep = np.ones(self.frequency_hz.size, dtype=bool)
        if min_hz is not None:
            keep &= self.frequency_hz >= min_hz
        if max_hz is not None:
            keep &= self.frequency_hz <= max_hz
        if int(keep.sum()) < MIN_POINTS:
            raise InputError(
                f"{self.path}: only {int(keep.sum())} points between {min_hz} and {max_hz} Hz; "
                f"a spectrum needs at least {MIN_POINTS}"
            )
        return Spectrum(
            self.frequency_hz[keep], self.z_real_ohm[keep], self.z_imag_ohm[keep], self.source_format, self.path
        )


@dataclass
class _Table:
    """Where the numbers of one file are: data lines (0-based index, text), columns and how to split."""

    data: list[tuple[int, str]]
    split: Callable[[str], list[str]]
    columns: tuple[int, int, int]  # frequency, real, imaginary
    names: tuple[str, str, str]
    imag_sign: float = 1.0
    decimal_comma: bool = False
    sweep_column: int | None = None


def read_spectrum(path: str | Path, sweep: int | None = None) -> Spectrum:
    """Read the impedance spectrum in ``path`` (format detected from content); see the module docstring.

    ``sweep``: which sweep of a file that holds several (EC-Lab's ``cycle number``); needed for such a file.
    Raises :class:`~surrogate.errors.DataValidationError` naming the file, the line and the reason.
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: cannot read the file ({exc.strerror or exc})") from exc
    if raw.startswith(MPR_MAGIC):
        return _read_mpr_spectrum(path, sweep)
    if b"\x00" in raw[:4096]:
        _fail(source, None, f"unknown format: a binary file; readable formats are {_format_list()}")
    text = raw.decode("utf-8-sig") if _is_utf8(raw) else raw.decode("latin-1")
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        _fail(source, None, "the file is empty")
    source_format = detect_format(lines)
    if source_format is None:
        first = next(line.strip() for line in lines if line.strip())
        _fail(source, 1, f"unknown format (first line {first[:60]!r}); readable formats are {_format_list()}")
    locate = _LOCATORS[source_format]
    table = locate(lines, source)
    frequency, real, imag, sweeps = _parse_rows(table, source)
    keep = _sweep_rows(sweeps, frequency.size, sweep, source)
    _check_count(int(keep.sum()), source)
    return Spectrum(frequency[keep], real[keep], table.imag_sign * imag[keep], source_format, source)


def load_mpr(path: str | Path) -> Any:
    """galvani's ``BioLogic.MPRfile`` of an EC-Lab ``.mpr`` file.

    galvani is GPL-3 and an optional extra; without it this raises :class:`InputError` naming the file and
    the install command (:data:`MPR_EXTRA`). A file galvani cannot parse (a damaged or truncated file, or
    a newer EC-Lab version it does not know) is an ``InputError`` naming the file and galvani's reason.
    """
    path = Path(path)
    try:
        from galvani import BioLogic
    except ImportError:
        raise InputError(
            f"{path.name}: a BioLogic .mpr file; reading it needs the optional galvani package (GPL-3): "
            f"{MPR_EXTRA}, or export the file as .mpt text from EC-Lab"
        ) from None
    try:
        return BioLogic.MPRfile(str(path))
    except Exception as exc:  # galvani's parser fails in many ways on a damaged file (struct, ValueError, ...)
        raise InputError(
            f"{path.name}: galvani {version('galvani')} cannot read this .mpr file ({type(exc).__name__}: {exc}); "
            "it may be truncated or from a newer EC-Lab: export it as .mpt text from EC-Lab"
        ) from None


def _read_mpr_spectrum(path: Path, sweep: int | None) -> Spectrum:
    source = str(path)
    data = load_mpr(path).data
    names = tuple(data.dtype.names or ())
    wanted = ("freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm")
    if not all(name in names for name in wanted):
        _wrong_kind_or_missing(list(names), source, None, list(wanted))
    frequency, real, minus_imag = (np.asarray(data[name], dtype=float) for name in wanted)
    sweeps = np.asarray(data[SWEEP_COLUMN], dtype=float) if SWEEP_COLUMN in names else None
    problems = []
    for row, (f, zr, zi) in enumerate(zip(frequency, real, minus_imag, strict=True), start=1):
        if not (math.isfinite(f) and math.isfinite(zr) and math.isfinite(zi)):
            problems.append(Problem(row, None, "a point that is not a finite number"))
        elif f <= 0:
            problems.append(Problem(row, wanted[0], f"frequency {f} Hz: must be > 0"))
    if problems:
        raise DataValidationError(problems, source=source)
    keep = _sweep_rows(sweeps, frequency.size, sweep, source)
    _check_count(int(keep.sum()), source)
    return Spectrum(frequency[keep], real[keep], -minus_imag[keep], "biologic-mpr", source)


def _sweep_rows(sweeps: np.ndarray | None, count: int, sweep: int | None, source: str) -> np.ndarray:
    """Which of the ``count`` rows are sweep ``sweep`` (all of them when the file has one sweep and none is
    asked for); ``sweeps`` is the file's sweep column (None when it has none)."""
    if sweeps is None:
        if sweep not in (None, 1):
            _fail(source, None, f"sweep {sweep}: the file has one sweep (no {SWEEP_COLUMN!r} column)")
        return np.full(count, True)
    numbers = sorted({int(n) for n in sweeps})
    if sweep is None:
        if len(numbers) > 1:
            _fail(
                source,
                None,
                f"{len(numbers)} sweeps in one file ({SWEEP_COLUMN} {numbers[0]} to {numbers[-1]}); say which one "
                "each manifest entry is with 'sweep: N' (one entry per sweep)",
            )
        return np.full(sweeps.size, True)
    if sweep not in numbers:
        _fail(source, None, f"sweep {sweep}: not in the file ({SWEEP_COLUMN} {numbers[0]} to {numbers[-1]})")
    return sweeps == sweep


def detect_format(lines: list[str]) -> str | None:
    """The ``source_format`` of a file from its lines, or None when it is none of :data:`FORMATS`."""
    head = [line.strip() for line in lines[:5]]
    first = next((line for line in head if line), "")
    if first in ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE"):
        return "biologic-mpt"
    if first == "EXPLAIN" or any(line.startswith("TAG\t") or line.startswith("TAG ") for line in head):
        return "gamry-dta"
    if first.startswith("ZPLOT2 ASCII") or first.startswith("Freq(Hz)"):
        return "zview-z"
    content = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    if len(_split_csv(content)) >= 3:
        return "csv"
    return None


# ------------------------------------------------------------------ locators (one per format)
def _locate_mpt(lines: list[str], source: str) -> _Table:
    match = re.match(r"\s*Nb header lines\s*:\s*(\d+)", lines[1]) if len(lines) > 1 else None
    if match is None:
        _fail(source, 2, "expected 'Nb header lines : N' on line 2 of an EC-Lab file; the header is damaged")
    n_header = int(match.group(1))
    if n_header > len(lines):
        _fail(source, len(lines), f"the header declares {n_header} lines but the file has {len(lines)}: truncated")
    header = _split_tab(lines[n_header - 1])
    wanted = ("freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm")
    columns = _find_columns(header, wanted, source, n_header)
    data = list(enumerate(lines))[n_header:]
    stripped = [cell.strip() for cell in header]
    sweep_column = stripped.index(SWEEP_COLUMN) if SWEEP_COLUMN in stripped else None
    return _Table(data, _split_tab, columns, wanted, imag_sign=-1.0, sweep_column=sweep_column)


def _locate_dta(lines: list[str], source: str) -> _Table:
    start = next((i for i, line in enumerate(lines) if line.split()[:2] == ["ZCURVE", "TABLE"]), None)
    if start is None:
        tables = [line.split()[0] for line in lines if len(line.split()) > 1 and line.split()[1] == "TABLE"]
        kind = f" (it has the tables {', '.join(tables)})" if tables else ""
        _fail(source, None, f"a Gamry file without a ZCURVE table: not an impedance spectrum{kind}")
    if start + 2 >= len(lines):
        _fail(source, start + 1, "the file ends right after 'ZCURVE TABLE': truncated")
    header = lines[start + 1].split()
    wanted = ("Freq", "Zreal", "Zimag")
    columns = _find_columns(header, wanted, source, start + 2)
    end = next((i for i, line in enumerate(lines) if "EXPERIMENTABORTED" in line and i > start), len(lines))
    data = list(enumerate(lines))[start + 3 : end]
    return _Table(data, str.split, columns, wanted, decimal_comma=True)


def _locate_z(lines: list[str], source: str) -> _Table:
    head = next((i for i, line in enumerate(lines) if line.strip().startswith("Freq(Hz)")), None)
    if head is None:
        _fail(source, None, "a ZPlot/ZView file without a 'Freq(Hz)' column header: not a frequency sweep")
    header = _split_z(lines[head])
    wanted = ("Freq(Hz)", "Z'(a)", "Z''(b)")
    columns = _find_columns(header, wanted, source, head + 1)
    end_comments = next((i for i, line in enumerate(lines) if line.strip() == "End Comments"), None)
    first_data = (end_comments if end_comments is not None else head) + 1
    return _Table(list(enumerate(lines))[first_data:], _split_z, columns, wanted)


def _locate_csv(lines: list[str], source: str) -> _Table:
    content = [(i, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    header_index, header_line = content[0]
    header = [cell.strip() for cell in _split_csv(header_line)]
    if all(_is_number(cell) for cell in header[:3]):
        return _Table(content, _split_csv, (0, 1, 2), ("column 1", "column 2", "column 3"))
    lower = [cell.lower() for cell in header]
    found: dict[str, int] = {}
    for quantity, aliases in CSV_COLUMNS.items():
        for position, name in enumerate(lower):
            if name in aliases:
                found.setdefault(quantity, position)
    imag_key = "z_imag_ohm" if "z_imag_ohm" in found else "minus_z_imag_ohm"
    if "frequency_hz" not in found or "z_real_ohm" not in found or imag_key not in found:
        _wrong_kind_or_missing(header, source, header_index + 1, list(CSV_COLUMNS))
    columns = (found["frequency_hz"], found["z_real_ohm"], found[imag_key])
    names = tuple(header[c] for c in columns)
    sign = -1.0 if imag_key == "minus_z_imag_ohm" else 1.0
    return _Table(content[1:], _split_csv, columns, names, imag_sign=sign)  # type: ignore[arg-type]


_LOCATORS: dict[str, Callable[[list[str], str], _Table]] = {
    "biologic-mpt": _locate_mpt,
    "gamry-dta": _locate_dta,
    "zview-z": _locate_z,
    "csv": _locate_csv,
}


# ------------------------------------------------------------------ rows
def _row_numbers(table: _Table, cells: list[str], row: int, problems: list[Problem]) -> list[float] | None:
    """Frequency, Z' and Z'' of one data row; None after adding a problem for each cell that is not a number."""
    numbers = []
    for column, name in zip(table.columns, table.names, strict=True):
        cell = cells[column].strip()
        if table.decimal_comma:
            cell = cell.replace(",", ".")
        number = _to_float(cell)
        if number is None:
            problems.append(Problem(row, name, f"{cell!r} is not a finite number"))
        numbers.append(number)
    return None if None in numbers else numbers  # type: ignore[return-value]


def _parse_rows(table: _Table, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Every data row parsed and checked; every problem (line, column, reason) reported at once.

    Returns frequency, Z', Z'' as written, and the sweep number of each row (None without a sweep column).
    """
    data = list(table.data)
    while data and not data[-1][1].strip():  # trailing blank lines are harmless
        data.pop()
    problems: list[Problem] = []
    values: list[tuple[float, float, float]] = []
    sweeps: list[float] = []
    expected_fields = len(table.split(data[0][1])) if data else 0
    last_index = data[-1][0] if data else None
    for index, line in data:
        row = index + 1
        cells = table.split(line)
        if not line.strip():
            problems.append(Problem(row, None, "blank line inside the data"))
            continue
        needed = max(table.columns) if table.sweep_column is None else max(*table.columns, table.sweep_column)
        if len(cells) < expected_fields or len(cells) <= needed:
            truncated = index == last_index
            reason = f"{len(cells)} fields where the first data row has {expected_fields}"
            problems.append(Problem(row, None, reason + (": the file looks truncated" if truncated else "")))
            continue
        numbers = _row_numbers(table, cells, row, problems)
        if numbers is None:
            continue
        frequency, real, imag = numbers
        if frequency <= 0:  # type: ignore[operator]
            problems.append(Problem(row, table.names[0], f"frequency {frequency} Hz: must be > 0"))
            continue
        if table.sweep_column is not None:
            sweep = _to_float(cells[table.sweep_column].strip())
            if sweep is None:
                problems.append(Problem(row, SWEEP_COLUMN, f"{cells[table.sweep_column].strip()!r} is not a number"))
                continue
            sweeps.append(sweep)
        values.append((frequency, real, imag))  # type: ignore[arg-type]
    if problems:
        raise DataValidationError(problems, source=source)
    _check_count(len(values), source)
    array = np.asarray(values, dtype=float)
    return array[:, 0], array[:, 1], array[:, 2], (np.asarray(sweeps) if table.sweep_column is not None else None)


def _check_count(points: int, source: str) -> None:
    if points < MIN_POINTS:
        _fail(source, None, f"only {points} data points; a spectrum needs at least {MIN_POINTS} to fit a circuit")


# ------------------------------------------------------------------ helpers
def _find_columns(header: list[str], wanted: tuple[str, str, str], source: str, row: int) -> tuple[int, int, int]:
    stripped = [cell.strip() for cell in header]
    if all(name in stripped for name in wanted):
        return tuple(stripped.index(name) for name in wanted)  # type: ignore[return-value]
    _wrong_kind_or_missing(stripped, source, row, list(wanted))


def _wrong_kind_or_missing(header: list[str], source: str, row: int | None, wanted: list[str]) -> NoReturn:
    cycler = [cell for cell in header if any(word in cell.lower() for word in _CYCLER_WORDS)]
    if cycler:
        shown = ", ".join(repr(c) for c in cycler[:4])
        _fail(source, row, f"a cycler file (columns {shown}), not an impedance spectrum: give it as a cycling file")
    shown = ", ".join(repr(c) for c in header[:8])
    _fail(source, row, f"no impedance columns: expected {', '.join(repr(w) for w in wanted)}; the header has {shown}")


def _fail(source: str, row: int | None, reason: str) -> NoReturn:
    raise DataValidationError([Problem(row, None, reason)], source=source)


def _split_tab(line: str) -> list[str]:
    return line.rstrip("\r\n").rstrip("\t").split("\t")


def _split_z(line: str) -> list[str]:
    return [cell for cell in re.split(r"\t|, ", line.strip()) if cell != ""]


def _split_csv(line: str) -> list[str]:
    return line.strip().split("\t") if "\t" in line and "," not in line else line.strip().split(",")


def _to_float(cell: str) -> float | None:
    try:
        number = float(cell)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _is_number(cell: str) -> bool:
    return _to_float(cell.strip()) is not None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _format_list() -> str:
    return "; ".join(FORMATS.values())
