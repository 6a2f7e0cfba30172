"""Cycler files → capacity per cycle → capacity retention, rate retention and coulombic efficiency.

Readers (text exports, detected from the header, or named with ``fmt``):

==================  ==============================================================================
format              what identifies it (column names; case and spacing do not matter)
==================  ==============================================================================
``battery_archive``  batteryarchive.org ``*_timeseries.csv``: ``Cycle_Index``, ``Charge_Capacity (Ah)``,
                    ``Discharge_Capacity (Ah)``, no data-point column; or its ``*_cycle_data.csv`` (one
                    row per cycle, with ``Min_Voltage (V)``)
``arbin``           Arbin MITS CSV: ``Data_Point`` / ``Data Point``, ``Cycle_Index``,
                    ``Charge_Capacity`` or ``Charge Capacity (Ah)``
``maccor``          Maccor text export: ``Cyc#`` or ``Cycle C``, ``Amp-hr`` or ``Capacity`` with a
                    ``State`` (C/D) column, or separate charge / discharge capacity columns
``neware``          Neware BTS CSV: ``Cycle Index`` / ``Cycle ID`` with ``Chg. Cap.(Ah)`` /
                    ``DChg. Cap.(Ah)`` or ``Capacitance_Chg(mAh)`` / ``Capacitance_DChg(mAh)``
``biologic``        EC-Lab / BT-Lab text export (``.mpt``, ``.txt``, ``.csv``): ``cycle number``,
                    ``Q charge/mA.h``, ``Q discharge/mA.h``
==================  ==============================================================================

BioLogic's binary ``.mpr`` (GCPL, MB) is read through galvani (GPL-3, an optional extra:
``pip install -e ".[mpr]"``; :func:`surrogate.ingest.formats.load_mpr`), as format ``biologic``: the
cycle is EC-Lab's ``cycle number`` when the file has one, else ``half cycle`` // 2 + 1 (a charge and a
discharge per cycle); ``Q charge/discharge/mA.h`` (EC-Lab's per-half-cycle counter, positive on charge,
negative on discharge) is split by its sign; ``Ns`` is the step. Without galvani the file is refused
with the install command.

Every reader produces the same frame: ``cycle_index`` (int), ``step_index`` (int, or a single step
when the file has none), ``charge_capacity_ah`` and ``discharge_capacity_ah`` (Ah). Files may be
gzip-compressed (``.gz``). The column mappings were written from the instruments' manuals and from
BEEP's conversion schemas (TRI-AMDD/beep, Apache-2.0), used as a reference.

Reduction (:func:`reduce_cycles`): the file is cut into segments, runs of rows with one cycle and one
step; each segment's charge (discharge) capacity is the rise of its counter, from zero when the counter
was reset at the segment's start and from its previous end when it carried on, so counters that reset
every step, every cycle or never all give the same result; a cycle's capacity is the sum over its
segments. Per cycle:

* ``coulombic_efficiency`` = discharge / charge capacity;
* ``capacity_retention`` = discharge capacity / that of the reference cycle (the first complete
  cycle, or a stated one);
* ``flag``: ``incomplete`` (no discharge, or less than :data:`INCOMPLETE_EFFICIENCY` of its charge:
  e.g. the last cycle of a stopped test), ``counter_reset``
  (a capacity counter went backwards inside one step: the cycler was paused and resumed, so the
  cycle's capacity cannot be trusted) or ``outlier`` (its discharge capacity departs from the
  median of its neighbours by more than :data:`OUTLIER_MADS` robust deviations and by more than
  :data:`OUTLIER_MIN_FRACTION` of the reference capacity). Flagged cycles are kept in the table and
  left out of the retentions.

**Retention above 1.** A real cell often gives a little more than its reference cycle while it settles
(retention 1.0002 to 1.0023 in the real files of tests/data/raw/cycling). Such cycles are kept as
measured, neither flagged nor clipped, and :func:`reduce_cycles` (and :func:`rate_retention` for a step
above the 0.1 C step) warns with a :class:`RetentionAboveOneWarning` naming the file, the cycles and the
largest value. The schema accepts a fraction up to 1 +
:data:`~surrogate.targets.FRACTION_ABOVE_ONE_TOLERANCE` (1.01) and refuses more.

A cycle counter that goes *down* (``87`` then ``1``: two files joined, or a restarted test) is an
error naming the file and the line; so are a missing column, a non-number and a truncated row.

Rate retention (:func:`rate_retention`): consecutive blocks of cycles at stated C-rates
(:class:`RateStep`); each step's capacity is the mean discharge capacity of its unflagged cycles;
rate retention = that over the 0.1 C step's (the paper's definition; :data:`REFERENCE_C_RATE`).
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from surrogate.design import REFERENCE_C_RATE
from surrogate.errors import InputError
from surrogate.ingest.formats import MPR_MAGIC, load_mpr
from surrogate.targets import FRACTION_ABOVE_ONE_TOLERANCE

CYCLE = "cycle_index"
STEP = "step_index"
CHARGE_AH = "charge_capacity_ah"
DISCHARGE_AH = "discharge_capacity_ah"

FORMATS: tuple[str, ...] = ("battery_archive", "arbin", "maccor", "neware", "biologic")
"""Cycler formats :func:`read_cycler` reads."""

OUTLIER_MADS = 6.0
"""A cycle is an outlier when it departs from the line through its neighbours by more than this many robust SDs."""
OUTLIER_MIN_FRACTION = 0.02
"""... and by more than this fraction of the reference capacity (readings that are merely noisy stay)."""
OUTLIER_WINDOW = 5
"""Neighbours on each side that make a cycle's local line."""
INCOMPLETE_EFFICIENCY = 0.1
"""A cycle that gave back less than this fraction of its charge never finished its discharge."""
COUNTER_TOLERANCE = 1e-9
"""Ah a capacity counter may go backwards within a step (rounding) before it counts as a reset."""

_HEAD_LINES = 200
"""Lines read to find the header (EC-Lab headers run to ~100 lines)."""


@dataclass(frozen=True)
class _Column:
    """A canonical column: the header names it may have in one format, each with its scale to Ah / count."""

    canonical: str
    names: tuple[tuple[str, float], ...]
    required: bool = True


def _names(*pairs: str | tuple[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple((p, 1.0) if isinstance(p, str) else p for p in pairs)


@dataclass(frozen=True)
class CyclerFormat:
    """One instrument's text export: the columns it names, and how a capacity is split by state."""

    name: str
    display: str
    columns: tuple[_Column, ...]
    state_column: tuple[str, ...] = ()
    """Maccor-style files: one capacity column whose meaning (charge/discharge) the state column gives."""
    capacity_column: tuple[tuple[str, float], ...] = ()
    current_column: tuple[str, ...] = ()
    """Without a state column, the sign of the current tells charge (> 0) from discharge (< 0)."""


_FORMATS: dict[str, CyclerFormat] = {
    "battery_archive": CyclerFormat(
        "battery_archive",
        "battery-archive CSV",
        (
            _Column(CYCLE, _names("Cycle_Index")),
            _Column(CHARGE_AH, _names("Charge_Capacity (Ah)")),
            _Column(DISCHARGE_AH, _names("Discharge_Capacity (Ah)")),
        ),
    ),
    "arbin": CyclerFormat(
        "arbin",
        "Arbin CSV",
        (
            _Column(CYCLE, _names("Cycle_Index", "Cycle Index")),
            _Column(STEP, _names("Step_Index", "Step Index"), required=False),
            _Column(CHARGE_AH, _names("Charge_Capacity", "Charge_Capacity(Ah)", "Charge Capacity (Ah)")),
            _Column(DISCHARGE_AH, _names("Discharge_Capacity", "Discharge_Capacity(Ah)", "Discharge Capacity (Ah)")),
        ),
    ),
    "maccor": CyclerFormat(
        "maccor",
        "Maccor text export",
        (
            _Column(CYCLE, _names("Cyc#", "Cycle C", "Cycle")),
            _Column(STEP, _names("Step"), required=False),
        ),
        state_column=("State", "Md"),
        capacity_column=_names("Amp-hr", "Capacity", "Cap. [Ah]", "Capacity (Ah)"),
        current_column=("Amps", "Current", "Current [A]", "Current (A)"),
    ),
    "neware": CyclerFormat(
        "neware",
        "Neware CSV",
        (
            _Column(CYCLE, _names("Cycle Index", "Cycle ID")),
            _Column(STEP, _names("Step Index", "Step ID"), required=False),
            _Column(CHARGE_AH, _names("Chg. Cap.(Ah)", ("Chg. Cap.(mAh)", 1e-3), ("Capacitance_Chg(mAh)", 1e-3))),
            _Column(DISCHARGE_AH, _names("DChg. Cap.(Ah)", ("DChg. Cap.(mAh)", 1e-3), ("Capacitance_DChg(mAh)", 1e-3))),
        ),
    ),
    "biologic": CyclerFormat(
        "biologic",
        "BioLogic EC-Lab text export",
        (
            _Column(CYCLE, _names("cycle number")),
            _Column(STEP, _names("Ns"), required=False),
            _Column(CHARGE_AH, _names(("Q charge/mA.h", 1e-3), ("Q charge/mAh", 1e-3))),
            _Column(DISCHARGE_AH, _names(("Q discharge/mA.h", 1e-3), ("Q discharge/mAh", 1e-3))),
        ),
    ),
}

_BATTERY_ARCHIVE_CYCLE_DATA = ("min_voltage (v)", "max_voltage (v)")
_DATA_POINT = ("data_point", "data point")


@dataclass
class CyclerData:
    """A cycler file read into the canonical columns (see the module docstring), with where it came from.

    ``line`` holds each row's 1-based line in the file (for messages). ``per_cycle``: the file holds
    one row per cycle (battery-archive ``cycle_data``) rather than a time series.
    """

    path: Path
    format: str
    frame: pd.DataFrame
    per_cycle: bool = False


# ------------------------------------------------------------------ reading
def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "")).strip().lower()


def _open_text(path: Path) -> str:
    """The file's text: gzip by suffix; UTF-8 (with or without BOM) or else Latin-1 (EC-Lab writes cp1252)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path.name}: cannot be read ({exc})") from None
    if b"\x00" in raw[:4096]:
        raise InputError(
            f"{path.name}: a binary file (e.g. BioLogic .mpr, Arbin .res, Neware .nda); export it as text "
            f"(CSV or .mpt/.txt) from the instrument's software"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter))


def _delimiter(line: str) -> str:
    if "\t" in line:
        return "\t"
    return ";" if line.count(";") > line.count(",") else ","


def _find_header(lines: list[str]) -> tuple[int, str, dict[str, int], str] | None:
    """(index of the header line, delimiter, {column key: position}, format) of the first line naming a format."""
    nb_header = None
    for line in lines[:10]:
        match = re.match(r"\s*Nb header lines\s*:\s*(\d+)", line)
        if match:
            nb_header = int(match.group(1)) - 1
    candidates = (
        [nb_header] if nb_header is not None and nb_header < len(lines) else range(min(len(lines), _HEAD_LINES))
    )
    for index in candidates:
        line = lines[index]
        delimiter = _delimiter(line)
        positions = {}
        for position, name in enumerate(_split(line, delimiter)):
            positions.setdefault(_key(name), position)
        fmt = _detect(positions)
        if fmt is not None:
            return index, delimiter, positions, fmt
    return None


def _has(positions: dict[str, int], column: _Column) -> bool:
    return any(_key(name) in positions for name, _ in column.names)


def _detect(positions: dict[str, int]) -> str | None:
    for name in ("biologic", "neware", "maccor", "battery_archive", "arbin"):
        spec = _FORMATS[name]
        if not all(_has(positions, c) for c in spec.columns if c.required):
            continue
        if spec.capacity_column and not any(_key(n) in positions for n, _ in spec.capacity_column):
            continue
        has_point = any(k in positions for k in _DATA_POINT)
        if name == "battery_archive" and has_point:
            continue
        if name == "arbin" and not has_point:
            continue
        return name
    return None


def detect_format(path: str | Path) -> str | None:
    """The cycler format of ``path`` from its header (None when it is none of :data:`FORMATS`)."""
    if _is_mpr(Path(path)):
        names = load_mpr(path).data.dtype.names or ()
        return "biologic" if _mpr_capacity_columns(names) else None
    lines = _open_text(Path(path)).splitlines()
    found = _find_header(lines)
    return found[3] if found else None


def _number(text: str, decimal_comma: bool) -> float:
    text = text.strip()
    if decimal_comma:
        text = text.replace(",", ".")
    if text.upper() in ("", "N/A", "NAN"):
        return math.nan
    return float(text)


def read_cycler(path: str | Path, fmt: str | None = None) -> CyclerData:
    """Read a cycler text export into the canonical columns; ``fmt`` forces a format (else detected).

    Raises :class:`InputError` naming the file (and line) for: an unknown or binary format, a format
    that does not match ``fmt``, a missing column, a non-number or a truncated row in a used column,
    no data rows, and a cycle counter that goes down (a reset).
    """
    path = Path(path)
    if fmt is not None and fmt not in _FORMATS:
        raise InputError(f"{path.name}: unknown cycler format {fmt!r}; known: {', '.join(FORMATS)}")
    if _is_mpr(path):
        if fmt not in (None, "biologic"):
            raise InputError(f"{path.name}: the manifest says format {fmt!r}, but it is a BioLogic .mpr file")
        return _checked(path, "biologic", _read_mpr_frame(path))
    lines = _open_text(path).splitlines()
    found = _find_header(lines)
    if found is None:
        looks_eis = any("freq" in line.lower() and "z" in line.lower() for line in lines[:_HEAD_LINES])
        kind = " It looks like an impedance spectrum: list it as an EIS file." if looks_eis else ""
        raise InputError(
            f"{path.name}: not a cycler file this reader knows: no header with a cycle column and charge / "
            f"discharge capacity columns of {', '.join(FORMATS)} in its first {_HEAD_LINES} lines.{kind}"
        )
    header_index, delimiter, positions, detected = found
    if fmt is not None and fmt != detected:
        raise InputError(f"{path.name}: the manifest says format {fmt!r}, but its header is that of {detected!r}")
    spec = _FORMATS[detected]
    per_cycle = detected == "battery_archive" and all(k in positions for k in _BATTERY_ARCHIVE_CYCLE_DATA)
    per_cycle = per_cycle and "current (a)" not in positions
    layout = _layout(path, spec, positions, header_index, decimal_comma=delimiter != ",")
    frame = _data_rows(path, lines[header_index + 1 :], header_index + 1, delimiter, layout)
    if frame.empty:
        raise InputError(f"{path.name}: a {spec.display} header but no data rows")
    return _checked(path, detected, frame, per_cycle)


@dataclass(frozen=True)
class _Layout:
    """Where a text export keeps what the reader uses: (field position, scale) of each canonical column, the
    single capacity column with the state or current column that splits it, and the last field a row needs."""

    used: dict[str, tuple[int, float]]
    state_position: int | None
    capacity: tuple[int, float] | None
    current_position: int | None
    decimal_comma: bool

    @property
    def needed(self) -> int:
        positions = [p for p, _ in self.used.values()]
        positions += [p for p in (self.state_position, self.current_position) if p is not None]
        return max(positions + [self.capacity[0] if self.capacity else 0])


def _layout(
    path: Path, spec: CyclerFormat, positions: dict[str, int], header_index: int, decimal_comma: bool
) -> _Layout:
    used: dict[str, tuple[int, float]] = {}
    for column in spec.columns:
        for name, scale in column.names:
            if _key(name) in positions:
                used[column.canonical] = (positions[_key(name)], scale)
                break
    state_position = next((positions[_key(n)] for n in spec.state_column if _key(n) in positions), None)
    capacity = next(((positions[_key(n)], s) for n, s in spec.capacity_column if _key(n) in positions), None)
    current_position = next((positions[_key(n)] for n in spec.current_column if _key(n) in positions), None)
    if spec.capacity_column and state_position is None and current_position is None:
        raise InputError(
            f"{path.name}: line {header_index + 1}: a {spec.display} with one capacity column needs a State "
            "column (C = charge, D = discharge) or a current column to tell charge from discharge"
        )
    return _Layout(used, state_position, capacity, current_position, decimal_comma)


def _row_values(fields: list[str], layout: _Layout) -> dict[str, float]:
    """One data row's canonical values; ValueError when a used field is not a number."""
    values = {name: _number(fields[pos], layout.decimal_comma) * scale for name, (pos, scale) in layout.used.items()}
    if layout.capacity is not None:
        amount = _number(fields[layout.capacity[0]], layout.decimal_comma) * layout.capacity[1]
        if layout.state_position is not None:
            state = fields[layout.state_position].strip().upper()[:1]
        else:
            current = _number(fields[layout.current_position], layout.decimal_comma)
            state = "C" if current > 0 else "D" if current < 0 else "R"
        values[CHARGE_AH] = amount if state == "C" else math.nan
        values[DISCHARGE_AH] = amount if state == "D" else math.nan
    return values


def _data_rows(path: Path, lines: list[str], first_index: int, delimiter: str, layout: _Layout) -> pd.DataFrame:
    """The data lines (``lines[0]`` is file line ``first_index + 1``) as canonical columns plus ``line``."""
    rows: dict[str, list[float]] = {name: [] for name in (CYCLE, STEP, CHARGE_AH, DISCHARGE_AH)}
    line_numbers: list[int] = []
    needed = layout.needed
    for index, line in enumerate(lines, start=first_index):
        if not line.strip():
            continue
        fields = _split(line, delimiter)
        if len(fields) <= needed:
            raise InputError(
                f"{path.name}: line {index + 1}: {len(fields)} field(s), but the header puts a needed column at "
                f"field {needed + 1}: the file is truncated or the row is broken"
            )
        try:
            values = _row_values(fields, layout)
        except ValueError:
            positions_used = {name: pos for name, (pos, _) in layout.used.items()}
            if layout.capacity is not None:
                positions_used["capacity"] = layout.capacity[0]
            bad = next(n for n, pos in positions_used.items() if not _is_number(fields[pos], layout.decimal_comma))
            shown = fields[positions_used[bad]].strip()[:40]
            raise InputError(f"{path.name}: line {index + 1}: column {bad!r}: {shown!r} is not a number") from None
        for name in rows:
            rows[name].append(values.get(name, 0.0 if name == STEP else math.nan))
        line_numbers.append(index + 1)
    frame = pd.DataFrame(rows)
    frame["line"] = line_numbers
    return frame


def _checked(path: Path, detected: str, frame: pd.DataFrame, per_cycle: bool = False) -> CyclerData:
    """The frame of a file after the checks every format shares: whole cycle numbers that never go down."""
    cycles = frame[CYCLE]
    if cycles.isna().any():
        first = int(frame.loc[cycles.isna(), "line"].iloc[0])
        raise InputError(f"{path.name}: line {first}: column {CYCLE!r} is empty; every row needs its cycle number")
    if (cycles != np.round(cycles)).any():
        first = int(frame.loc[cycles != np.round(cycles), "line"].iloc[0])
        raise InputError(f"{path.name}: line {first}: the cycle number is not a whole number")
    drops = np.flatnonzero(np.diff(cycles.to_numpy()) < 0)
    if drops.size:
        at = drops[0] + 1
        raise InputError(
            f"{path.name}: line {int(frame['line'].iloc[at])}: the cycle counter resets from "
            f"{int(cycles.iloc[at - 1])} to {int(cycles.iloc[at])} (a restarted test or two files joined); "
            "split the file there, or renumber the cycles, and list each part in the manifest"
        )
    frame[CYCLE] = cycles.astype(int)
    frame[STEP] = frame[STEP].fillna(0).astype(int)
    return CyclerData(path=path, format=detected, frame=frame, per_cycle=per_cycle)


def _is_mpr(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(MPR_MAGIC)) == MPR_MAGIC
    except OSError:
        return False


def _mpr_capacity_columns(names: tuple[str, ...]) -> bool:
    return ("Q charge/discharge/mA.h" in names or {"Q charge/mA.h", "Q discharge/mA.h"} <= set(names)) and (
        "cycle number" in names or "half cycle" in names
    )


def _read_mpr_frame(path: Path) -> pd.DataFrame:
    """An EC-Lab .mpr cycling file (GCPL, MB) as the canonical frame; ``line`` is the record number (from 1)."""
    data = load_mpr(path).data
    names = tuple(data.dtype.names or ())
    if not _mpr_capacity_columns(names):
        kind = " It looks like an impedance spectrum: list it as an EIS file." if "freq/Hz" in names else ""
        raise InputError(
            f"{path.name}: a BioLogic .mpr file without the cycling columns ('cycle number' or 'half cycle', and "
            f"'Q charge/discharge/mA.h'); it has {', '.join(repr(n) for n in names[:8])}.{kind}"
        )
    if "Q charge/mA.h" in names and "Q discharge/mA.h" in names:
        charge = np.asarray(data["Q charge/mA.h"], dtype=float) * 1e-3
        discharge = np.asarray(data["Q discharge/mA.h"], dtype=float) * 1e-3
    else:
        q_ah = np.asarray(data["Q charge/discharge/mA.h"], dtype=float) * 1e-3
        charge = np.where(q_ah > 0, q_ah, np.nan)
        discharge = np.where(q_ah < 0, -q_ah, np.nan)
    if "cycle number" in names:
        cycle = np.asarray(data["cycle number"], dtype=float)
    else:
        cycle = np.asarray(data["half cycle"], dtype=float) // 2 + 1
    step = np.asarray(data["Ns"], dtype=float) if "Ns" in names else np.zeros(cycle.size)
    if cycle.size == 0:
        raise InputError(f"{path.name}: a BioLogic .mpr file with no data points")
    frame = pd.DataFrame({CYCLE: cycle, STEP: step, CHARGE_AH: charge, DISCHARGE_AH: discharge})
    frame["line"] = np.arange(1, cycle.size + 1)
    return frame


def _is_number(text: str, decimal_comma: bool) -> bool:
    try:
        _number(text, decimal_comma)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ reduction
class RetentionAboveOneWarning(UserWarning):
    """A kept retention above 1: the cell gave more than its reference (module docstring)."""


def _warn_above_one(name: str, what: str, labels: list[str], values: np.ndarray, against: str) -> None:
    """Warn that ``what`` is above 1 at ``labels`` (cycles or steps), kept as measured."""
    if not labels:
        return
    largest = int(np.argmax(values))
    shown = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
    limit = 1 + FRACTION_ABOVE_ONE_TOLERANCE
    verdict = "kept as measured" if values[largest] <= limit else f"above {limit:g}, which the schema refuses"
    warnings.warn(
        f"{name}: {what} above 1 at {shown} (largest {values[largest]:.6g}, at {labels[largest]}): the cell gave "
        f"more than {against}; {verdict}",
        RetentionAboveOneWarning,
        stacklevel=3,
    )


@dataclass
class CycleTable:
    """Per-cycle results of one file: a frame with one row per cycle (see :func:`reduce_cycles`)."""

    source: CyclerData
    frame: pd.DataFrame
    reference_cycle: int | None

    def good(self) -> pd.DataFrame:
        """The unflagged cycles."""
        return self.frame[self.frame["flag"] == ""]

    def flagged(self) -> pd.DataFrame:
        return self.frame[self.frame["flag"] != ""]


def _segment_rise(values: np.ndarray, previous_end: float) -> tuple[float, float, bool]:
    """(rise, end value, went backwards) of a capacity counter over one segment of rows.

    The counter's magnitude is used (some cyclers sign the discharge capacity). When the segment starts
    at or above where the counter ended before, the counter carried on and the rise is measured from that
    end; when it starts below, the counter was reset and the rise is measured from zero.
    """
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 0.0, previous_end, False
    went_back = bool(np.any(np.diff(finite) < -COUNTER_TOLERANCE))
    base = previous_end if finite[0] >= previous_end - COUNTER_TOLERANCE else 0.0
    return float(finite.max() - base), float(finite[-1]), went_back


def reduce_cycles(data: CyclerData, reference_cycle: int | None = None) -> CycleTable:
    """Capacity per cycle (Ah), coulombic efficiency, capacity retention and flags (module docstring).

    ``reference_cycle``: the cycle retention is measured against (default: the first complete,
    unflagged cycle; None in the result when no cycle is complete, and every retention is NaN). A
    stated reference cycle that is absent or flagged is an :class:`InputError`.
    Columns: ``cycle_index``, ``charge_capacity_ah``, ``discharge_capacity_ah``,
    ``coulombic_efficiency``, ``capacity_retention`` (NaN on flagged cycles), ``flag``, ``first_line``.
    """
    frame = data.frame
    name = data.path.name
    if data.per_cycle:
        table = pd.DataFrame(
            {
                CYCLE: frame[CYCLE].to_numpy(),
                CHARGE_AH: frame[CHARGE_AH].abs().fillna(0.0).to_numpy(),
                DISCHARGE_AH: frame[DISCHARGE_AH].abs().fillna(0.0).to_numpy(),
                "counter_reset": False,
                "first_line": frame["line"].to_numpy(),
            }
        )
        if table[CYCLE].duplicated().any():
            cycle = int(table.loc[table[CYCLE].duplicated(), CYCLE].iloc[0])
            raise InputError(f"{name}: cycle {cycle} appears twice in a one-row-per-cycle file")
    else:
        change = (frame[CYCLE].diff() != 0) | (frame[STEP].diff() != 0)
        segment = change.cumsum().to_numpy()
        records = []
        charge_end = discharge_end = 0.0
        for _, part in frame.groupby(segment, sort=False):
            charge, charge_end, charge_back = _segment_rise(part[CHARGE_AH].to_numpy(float), charge_end)
            discharge, discharge_end, discharge_back = _segment_rise(part[DISCHARGE_AH].to_numpy(float), discharge_end)
            records.append(
                (int(part[CYCLE].iloc[0]), charge, discharge, charge_back or discharge_back, int(part["line"].iloc[0]))
            )
        segments = pd.DataFrame(records, columns=[CYCLE, CHARGE_AH, DISCHARGE_AH, "counter_reset", "first_line"])
        table = segments.groupby(CYCLE, sort=True).agg(
            {CHARGE_AH: "sum", DISCHARGE_AH: "sum", "counter_reset": "any", "first_line": "min"}
        )
        table = table.reset_index()
    charge = table[CHARGE_AH].to_numpy(float)
    discharge = table[DISCHARGE_AH].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["coulombic_efficiency"] = np.where(charge > 0, discharge / charge, np.nan)
    flags = np.full(len(table), "", dtype=object)
    flags[(discharge <= 0) | (discharge < INCOMPLETE_EFFICIENCY * charge)] = "incomplete"
    flags[(flags == "") & table["counter_reset"].to_numpy(bool)] = "counter_reset"
    candidates = flags == ""
    if reference_cycle is None:
        reference = int(table[CYCLE].to_numpy()[candidates][0]) if candidates.any() else None
    else:
        reference = int(reference_cycle)
        where = table[CYCLE].to_numpy() == reference
        if not where.any():
            raise InputError(f"{name}: reference cycle {reference} is not in the file (cycles {_span(table[CYCLE])})")
        if not candidates[where][0]:
            raise InputError(f"{name}: reference cycle {reference} is {flags[where][0]}; state another reference cycle")
    if reference is None:
        reference_capacity = math.nan
    else:
        reference_capacity = float(discharge[table[CYCLE].to_numpy() == reference][0])
        flags[_outliers(discharge, candidates, reference_capacity) & candidates] = "outlier"
        if flags[table[CYCLE].to_numpy() == reference][0] == "outlier":
            raise InputError(
                f"{name}: the reference cycle {reference} is an outlier (its discharge capacity departs from its "
                "neighbours'); state another reference cycle"
            )
    table["flag"] = flags
    table["capacity_retention"] = np.where(flags == "", discharge / reference_capacity, np.nan)
    if reference is not None:
        above = (table[CYCLE].to_numpy() > reference) & (table["capacity_retention"].to_numpy() > 1)
        _warn_above_one(
            name,
            "capacity retention",
            [f"cycle {int(c)}" for c in table[CYCLE].to_numpy()[above]],
            table["capacity_retention"].to_numpy()[above],
            f"reference cycle {reference}",
        )
    columns = [CYCLE, CHARGE_AH, DISCHARGE_AH, "coulombic_efficiency", "capacity_retention", "flag", "first_line"]
    return CycleTable(source=data, frame=table[columns].reset_index(drop=True), reference_cycle=reference)


def _span(series: pd.Series) -> str:
    return f"{int(series.min())} to {int(series.max())}"


def _outliers(discharge: np.ndarray, candidates: np.ndarray, reference: float) -> np.ndarray:
    """Cycles whose capacity departs from a line through their candidate neighbours (module docstring)."""
    out = np.zeros(discharge.size, dtype=bool)
    index = np.flatnonzero(candidates)
    if index.size < 2 * OUTLIER_WINDOW:
        return out
    values = discharge[index]
    residual = np.empty(values.size)
    for i in range(values.size):
        low, high = max(0, i - OUTLIER_WINDOW), min(values.size, i + OUTLIER_WINDOW + 1)
        neighbours = np.delete(values[low:high], i - low)
        positions = np.delete(np.arange(low, high, dtype=float), i - low)
        slope, intercept = np.polyfit(positions, neighbours, 1)
        residual[i] = values[i] - (slope * i + intercept)
    scale = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    bad = (np.abs(residual) > OUTLIER_MADS * max(scale, 1e-12)) & (np.abs(residual) > OUTLIER_MIN_FRACTION * reference)
    out[index[bad]] = True
    return out


# ------------------------------------------------------------------ rate steps
@dataclass(frozen=True)
class RateStep:
    """``cycles`` consecutive cycles at ``c_rate`` (C) in a rate-capability test."""

    c_rate: float
    cycles: int


def parse_rate_steps(text: str) -> tuple[RateStep, ...]:
    """``"0.1:5 1:5 5:5"`` (C-rate:cycles, separated by spaces, commas or semicolons) → rate steps.

    Raises :class:`InputError` for a malformed step, a C-rate <= 0, a count < 1, or no 0.1 C step.
    """
    steps = []
    for item in re.split(r"[\s,;]+", str(text).strip()):
        if not item:
            continue
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*[cC]?\s*[:x×]\s*(\d+)", item)
        if not match:
            raise InputError(f"c_rate_steps: {item!r} is not C-rate:cycles (e.g. 0.1:5 for five cycles at 0.1 C)")
        c_rate, cycles = float(match.group(1)), int(match.group(2))
        if c_rate <= 0 or cycles < 1:
            raise InputError(f"c_rate_steps: {item!r}: need a C-rate > 0 and at least one cycle")
        steps.append(RateStep(c_rate, cycles))
    if not steps:
        raise InputError("c_rate_steps: empty; give the steps as C-rate:cycles, e.g. '0.1:5 1:5 5:5'")
    if not any(math.isclose(s.c_rate, REFERENCE_C_RATE) for s in steps):
        raise InputError(
            f"c_rate_steps: no {REFERENCE_C_RATE:g} C step; rate retention is capacity over the "
            f"{REFERENCE_C_RATE:g} C capacity, so the test needs one"
        )
    return tuple(steps)


def rate_retention(table: CycleTable, steps: tuple[RateStep, ...], first_cycle: int | None = None) -> pd.DataFrame:
    """Rate retention per C-rate: mean discharge capacity of a step's unflagged cycles over the 0.1 C step's.

    The steps follow one another from ``first_cycle`` (default: the file's first cycle). Returns a
    frame with ``c_rate``, ``cycles_used``, ``discharge_capacity_ah``, ``rate_retention``, ``first_cycle``.
    A repeated C-rate (a 0.1 C recovery step at the end) is reported as its own step. Raises
    :class:`InputError` when the file has fewer cycles than the steps need or a step has no usable cycle.
    """
    name = table.source.path.name
    cycles = table.frame[CYCLE].to_numpy()
    start = int(cycles.min()) if first_cycle is None else int(first_cycle)
    total = sum(s.cycles for s in steps)
    if start + total - 1 > cycles.max():
        raise InputError(
            f"{name}: the C-rate steps need cycles {start} to {start + total - 1}, the file has {_span(table.frame[CYCLE])}"
        )
    good = table.frame["flag"].to_numpy() == ""
    discharge = table.frame[DISCHARGE_AH].to_numpy(float)
    records = []
    cycle = start
    for step in steps:
        in_step = (cycles >= cycle) & (cycles < cycle + step.cycles) & good
        if not in_step.any():
            raise InputError(
                f"{name}: the {step.c_rate:g} C step (cycles {cycle} to {cycle + step.cycles - 1}) has no usable cycle"
            )
        records.append((step.c_rate, int(in_step.sum()), float(discharge[in_step].mean()), cycle))
        cycle += step.cycles
    result = pd.DataFrame(records, columns=["c_rate", "cycles_used", DISCHARGE_AH, "first_cycle"])
    reference = result.loc[np.isclose(result["c_rate"], REFERENCE_C_RATE), DISCHARGE_AH].iloc[0]
    result["rate_retention"] = result[DISCHARGE_AH] / reference
    above = ~np.isclose(result["c_rate"], REFERENCE_C_RATE) & (result["rate_retention"].to_numpy() > 1)
    _warn_above_one(
        name,
        "rate retention",
        [f"the {c:g} C step" for c in result["c_rate"][above]],
        result["rate_retention"].to_numpy()[above],
        f"its {REFERENCE_C_RATE:g} C step",
    )
    return result


__all__ = [
    "FORMATS",
    "CycleTable",
    "CyclerData",
    "RateStep",
    "RetentionAboveOneWarning",
    "detect_format",
    "parse_rate_steps",
    "rate_retention",
    "read_cycler",
    "reduce_cycles",
]
