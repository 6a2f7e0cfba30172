"""The ingest manifest: one entry per raw file, saying what was measured and on what.

A manifest is a CSV file (one row per raw file) or a YAML file::

    defaults:            # optional: values every entry takes unless it gives its own
      buffer: none
      anneal_temp_c: 300
      thickness_nm: 300-400
      diameter_mm: 3.5
    files:
      - {file: film1_25C.mpt, experiment: conductivity, sample_id: film-1, test_temp_c: 25}
      - {file: cell1_rate.csv, experiment: rate, sample_id: cell-1, test_temp_c: 25,
         c_rate_steps: "0.1:5 1:5 5:5 10:5 20:5 30:5"}

Fields (the design fields are the schema's, :mod:`surrogate.schema`, so the rows come out as the
product reads them):

=====================  =====================================================================
field                  meaning
=====================  =====================================================================
``file``               required: the raw file, relative to the manifest's folder
``experiment``         required: ``conductivity`` (an EIS spectrum), ``rate`` or ``cycling``
                       (a cycler file)
``sample_id``          the film or cell (default: the file's name without its suffix)
``buffer``             required: any alias of a buffer (``none`` for a bare film)
``material``           what was measured (default: the paper's LLTO film)
``anneal_temp_c``      required, °C (25 = as-deposited)
``test_temp_c``        required, °C
``thickness_nm``       conductivity: film thickness, nm: a value (``350``) or a range (``300-400``)
``area_mm2``           conductivity: electrode area, mm² (value or range) ...
``diameter_mm``        ... or electrode diameter, mm (value or range); give one of the two
``circuit``            conductivity: equivalent circuit (default the paper's ``R0-p(R1,CPE1)``)
``sweep``              conductivity: which sweep of an EC-Lab file that holds several (its
                       ``cycle number``); one entry per sweep
``c_rate_steps``       rate: the steps, C-rate:cycles in order (``0.1:5 1:5 5:5``); must hold 0.1 C
``first_cycle``        rate: the cycle the first step starts at (default: the file's first)
``c_rate``             cycling: the C-rate the cell was cycled at (optional)
``protocol``           cycling: ``standard`` or ``long`` (default ``standard``)
``reference_cycle``    cycling: the cycle retention is measured against (default: the first
                       complete one); it becomes ``cycles`` = 1 in the rows
``format``             rate / cycling: the cycler format, when detection from the header is not wanted
``trial``              the campaign suggestion this file answers (its trial number): copied to the
                       rows' ``trial`` column, which ``surrogate campaign observe`` matches
=====================  =====================================================================

:func:`load_manifest` checks every entry and raises one :class:`~surrogate.errors.DataValidationError`
listing every problem (entry number, field, reason): a missing thickness or area, a file that is not
there, an unknown buffer, a temperature out of range, an unknown field.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from surrogate import parameters
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    DEFAULT_PROTOCOL,
    MATERIAL,
    PROTOCOL,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_material,
    canonical_protocol,
)
from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.ingest.cycling import FORMATS, RateStep, parse_rate_steps
from surrogate.schema import EXPERIMENT, EXPERIMENTS, SAMPLE_ID, read_table

FILE = "file"
THICKNESS_NM = "thickness_nm"
AREA_MM2 = "area_mm2"
DIAMETER_MM = "diameter_mm"
CIRCUIT = "circuit"
C_RATE_STEPS = "c_rate_steps"
FIRST_CYCLE = "first_cycle"
REFERENCE_CYCLE = "reference_cycle"
FORMAT = "format"
TRIAL = "trial"
SWEEP = "sweep"

DEFAULT_CIRCUIT = "R0-p(R1,CPE1)"
"""The paper's equivalent circuit: a series resistance and the film's bulk resistance parallel to a CPE."""

FIELDS: tuple[str, ...] = (
    FILE,
    EXPERIMENT,
    SAMPLE_ID,
    BUFFER,
    MATERIAL,
    ANNEAL_TEMP_C,
    TEST_TEMP_C,
    THICKNESS_NM,
    AREA_MM2,
    DIAMETER_MM,
    CIRCUIT,
    SWEEP,
    C_RATE_STEPS,
    FIRST_CYCLE,
    C_RATE,
    PROTOCOL,
    REFERENCE_CYCLE,
    FORMAT,
    TRIAL,
)
"""Every manifest field, in the order of a CSV manifest's columns."""

THICKNESS_BOUNDS_NM = (1.0, 1.0e7)
"""A film of 1 nm to a pellet of 1 cm."""
AREA_BOUNDS_MM2 = (1.0e-4, 1.0e4)
DIAMETER_BOUNDS_MM = (1.0e-2, 100.0)


@dataclass(frozen=True)
class ManifestEntry:
    """One raw file and what it measured. Ranges are ``(low, high)``; a single value has low == high."""

    row: int
    file: Path
    experiment: str
    sample_id: str
    buffer: str
    material: str
    anneal_temp_c: float
    test_temp_c: float
    thickness_nm: tuple[float, float] | None = None
    area_mm2: tuple[float, float] | None = None
    circuit: str = DEFAULT_CIRCUIT
    sweep: int | None = None
    c_rate_steps: tuple[RateStep, ...] = ()
    first_cycle: int | None = None
    c_rate: float | None = None
    protocol: str = DEFAULT_PROTOCOL
    reference_cycle: int | None = None
    format: str | None = None
    trial: int | None = None

    @property
    def is_spectrum(self) -> bool:
        return self.experiment == "conductivity"


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: its path and entries (in file order)."""

    path: Path
    entries: tuple[ManifestEntry, ...]


# ------------------------------------------------------------------ reading
def _read_entries(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame, _ = read_table(path)
        records = []
        for record in frame.to_dict(orient="records"):
            records.append({str(k).strip().lower(): v for k, v in record.items()})
        return records
    if suffix not in (".yaml", ".yml"):
        raise InputError(f"{path.name}: a manifest is a .csv, .yaml or .yml file, not {suffix or '(no suffix)'!r}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(document, list):
        defaults, files = {}, document
    elif isinstance(document, dict) and isinstance(document.get("files"), list):
        defaults, files = document.get("defaults") or {}, document["files"]
        unknown = set(document) - {"defaults", "files"}
        if unknown or not isinstance(defaults, dict):
            raise InputError(f"{path.name}: a manifest has 'defaults' (a mapping) and 'files' (a list), nothing else")
    else:
        raise InputError(f"{path.name}: a YAML manifest is a list of entries, or a mapping with a 'files' list")
    records = []
    for number, entry in enumerate(files, start=1):
        if not isinstance(entry, dict):
            raise InputError(f"{path.name}: entry {number}: not a mapping of field: value")
        records.append({str(k).strip().lower(): v for k, v in {**defaults, **entry}.items()})
    return records


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(str(value).strip()) if isinstance(value, str) else float(value)


def _range(value: Any, field: str, bounds: tuple[float, float], unit: str) -> tuple[float, float]:
    """A value or a ``low-high`` range (``300-400``, ``[300, 400]``) within ``bounds``; ValueError with a reason."""
    if isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[0-9.eE+]+\s*(-|–|to)\s*[0-9.eE+]+\s*", value):
        parts = re.split(r"\s*(?:-|–|to)\s*", value.strip())
    else:
        parts = [value]
    try:
        numbers = [_number(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number or a low-high range ({unit})") from None
    if len(numbers) not in (1, 2) or not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"{value!r} is not a number or a low-high range ({unit})")
    low, high = numbers[0], numbers[-1]
    if low > high:
        raise ValueError(f"range {value!r}: low is above high")
    if low < bounds[0] or high > bounds[1]:
        raise ValueError(f"{value!r} is outside the plausible {bounds[0]:g} to {bounds[1]:g} {unit}")
    return low, high


def _whole(value: Any) -> int:
    number = _number(value)
    if not float(number).is_integer() or number < 0:
        raise ValueError(value)
    return int(number)


class _EntryCheck:
    """The checks of one manifest entry, one method per field or group of fields; each adds its problems to
    ``found`` and returns the checked value (None when missing or refused)."""

    def __init__(self, record: dict[str, Any], row: int) -> None:
        self.record = record
        self.row = row
        self.get = {k: (None if _blank(v) else v) for k, v in record.items()}
        self.found: list[Problem] = []

    def problem(self, field: str | None, reason: str) -> None:
        self.found.append(Problem(self.row, field, reason))

    def unknown_fields(self) -> None:
        for key in self.record:
            if key not in FIELDS:
                close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(FIELDS)}"
                self.problem(key, f"unknown field {key!r}{hint}")

    def file(self, folder: Path) -> Path | None:
        if self.get.get(FILE) is None:
            self.problem(FILE, "missing: every entry names its raw file")
            return None
        file_path = (folder / str(self.get[FILE]).strip()).resolve()
        if not file_path.is_file():
            self.problem(FILE, f"{self.get[FILE]}: no such file (looked in {folder})")
        return file_path

    def experiment(self) -> str:
        experiment = str(self.get.get(EXPERIMENT) or "").strip().lower()
        if not experiment:
            self.problem(EXPERIMENT, f"missing: say what the file measured ({', '.join(EXPERIMENTS)})")
        elif experiment not in EXPERIMENTS:
            self.problem(EXPERIMENT, f"{self.get[EXPERIMENT]!r} is not one of {', '.join(EXPERIMENTS)}")
        return experiment

    def buffer(self) -> str | None:
        if self.get.get(BUFFER) is None:
            self.problem(BUFFER, "missing: the buffer layer ('none' for a bare film)")
            return None
        try:
            return canonical_buffer(self.get[BUFFER])
        except InputError as exc:
            self.problem(BUFFER, str(exc))
            return None

    def material(self) -> str | None:
        try:
            return canonical_material(self.get.get(MATERIAL))
        except InputError as exc:
            self.problem(MATERIAL, str(exc))
            return None

    def temperatures(self, material: str | None) -> dict[str, float]:
        temps: dict[str, float] = {}
        for column in (ANNEAL_TEMP_C, TEST_TEMP_C):
            if self.get.get(column) is None:
                self.problem(column, "missing (°C)")
                continue
            try:
                value = _number(self.get[column])
            except (TypeError, ValueError):
                self.problem(column, f"{self.get[column]!r} is not a number (°C)")
                continue
            why = parameters.value_problem(column, value, material=material)
            if why:
                self.problem(column, why)
            else:
                temps[column] = value
        return temps

    def thickness(self) -> tuple[float, float] | None:
        if self.get.get(THICKNESS_NM) is None:
            self.problem(THICKNESS_NM, "missing: σ = thickness / (R_bulk · area) needs the film thickness (nm)")
            return None
        try:
            return _range(self.get[THICKNESS_NM], THICKNESS_NM, THICKNESS_BOUNDS_NM, "nm")
        except ValueError as exc:
            self.problem(THICKNESS_NM, str(exc))
            return None

    def area(self) -> tuple[float, float] | None:
        """The electrode area (mm²), given as an area or a diameter (mm), not both."""
        has_area, has_diameter = self.get.get(AREA_MM2) is not None, self.get.get(DIAMETER_MM) is not None
        if has_area == has_diameter:
            reason = "give one of them, not both" if has_area else "missing: σ needs the electrode area"
            self.problem(AREA_MM2, f"{AREA_MM2} or {DIAMETER_MM}: {reason}")
            return None
        try:
            if has_area:
                return _range(self.get[AREA_MM2], AREA_MM2, AREA_BOUNDS_MM2, "mm²")
            low, high = _range(self.get[DIAMETER_MM], DIAMETER_MM, DIAMETER_BOUNDS_MM, "mm")
            return (math.pi * low**2 / 4.0, math.pi * high**2 / 4.0)
        except ValueError as exc:
            self.problem(AREA_MM2 if has_area else DIAMETER_MM, str(exc))
            return None

    def rate_steps(self) -> tuple[RateStep, ...]:
        if self.get.get(C_RATE_STEPS) is None:
            self.problem(C_RATE_STEPS, "missing: a rate test needs its steps as C-rate:cycles, e.g. '0.1:5 1:5 5:5'")
            return ()
        try:
            return parse_rate_steps(str(self.get[C_RATE_STEPS]))
        except InputError as exc:
            self.problem(C_RATE_STEPS, str(exc).removeprefix(f"{C_RATE_STEPS}: "))
            return ()

    def integers(self) -> dict[str, int | None]:
        integers: dict[str, int | None] = {}
        for column in (FIRST_CYCLE, REFERENCE_CYCLE, TRIAL, SWEEP):
            integers[column] = None
            if self.get.get(column) is not None:
                try:
                    integers[column] = _whole(self.get[column])
                except (TypeError, ValueError):
                    what = {TRIAL: "a trial number", SWEEP: "a sweep number"}.get(column, "a cycle number")
                    self.problem(column, f"{self.get[column]!r} is not {what} (a whole number >= 0)")
        return integers

    def c_rate(self) -> float | None:
        if self.get.get(C_RATE) is None:
            return None
        try:
            c_rate = _number(self.get[C_RATE])
        except (TypeError, ValueError):
            self.problem(C_RATE, f"{self.get[C_RATE]!r} is not a number (C)")
            return None
        why = parameters.value_problem(C_RATE, c_rate)
        if why:
            self.problem(C_RATE, why)
        return c_rate

    def protocol(self) -> str:
        if self.get.get(PROTOCOL) is None:
            return DEFAULT_PROTOCOL
        try:
            return canonical_protocol(self.get[PROTOCOL])
        except InputError as exc:
            self.problem(PROTOCOL, str(exc))
            return DEFAULT_PROTOCOL

    def format(self, experiment: str) -> str | None:
        if self.get.get(FORMAT) is None:
            return None
        fmt = str(self.get[FORMAT]).strip().lower()
        if experiment in ("rate", "cycling") and fmt not in FORMATS:
            self.problem(FORMAT, f"{fmt!r} is not a cycler format this reader knows ({', '.join(FORMATS)})")
        return fmt


def _check_entry(record: dict[str, Any], row: int, folder: Path, problems: list[Problem]) -> ManifestEntry | None:
    """One entry, or None after adding its problems to ``problems``."""
    check = _EntryCheck(record, row)
    check.unknown_fields()
    file_path = check.file(folder)
    experiment = check.experiment()
    buffer = check.buffer()
    material = check.material()
    temps = check.temperatures(material)
    thickness = check.thickness() if experiment == "conductivity" else None
    area = check.area() if experiment == "conductivity" else None
    steps = check.rate_steps() if experiment == "rate" else ()
    integers = check.integers()
    c_rate = check.c_rate()
    protocol = check.protocol()
    fmt = check.format(experiment)
    problems.extend(check.found)
    if check.found or file_path is None or buffer is None or material is None:
        return None
    return ManifestEntry(
        row=row,
        file=file_path,
        experiment=experiment,
        sample_id=str(check.get.get(SAMPLE_ID) or file_path.name.split(".")[0]).strip(),
        buffer=buffer,
        material=material,
        anneal_temp_c=temps[ANNEAL_TEMP_C],
        test_temp_c=temps[TEST_TEMP_C],
        thickness_nm=thickness,
        area_mm2=area,
        circuit=str(check.get.get(CIRCUIT) or DEFAULT_CIRCUIT).strip(),
        sweep=integers[SWEEP],
        c_rate_steps=steps,
        first_cycle=integers[FIRST_CYCLE],
        c_rate=c_rate,
        protocol=protocol,
        reference_cycle=integers[REFERENCE_CYCLE],
        format=fmt,
        trial=integers[TRIAL],
    )


def listed_files(path: str | Path) -> list[tuple[int, Any]]:
    """Each entry's number (from 1, as :func:`load_manifest` counts) and its ``file`` value as written, unchecked.

    For callers that must vet the names before any file is looked up (the service's upload); None when missing.
    """
    return [(row, record.get(FILE)) for row, record in enumerate(_read_entries(Path(path)), start=1)]


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest (CSV or YAML); raises :class:`DataValidationError` listing every problem.

    Problems name the entry (the CSV's data row, or the YAML entry's number, both from 1), the field
    and the reason. A file listed twice (the same sweep of it, for a file of several sweeps) is a problem too.
    """
    path = Path(path)
    records = _read_entries(path)
    if not records:
        raise InputError(f"{path.name}: the manifest lists no files")
    folder = path.resolve().parent
    problems: list[Problem] = []
    entries = []
    seen: dict[tuple[Path, int | None], int] = {}
    for row, record in enumerate(records, start=1):
        entry = _check_entry(record, row, folder, problems)
        if entry is None:
            continue
        key = (entry.file, entry.sweep)
        if key in seen:
            what = entry.file.name if entry.sweep is None else f"{entry.file.name} sweep {entry.sweep}"
            problems.append(Problem(row, FILE, f"{what} is listed already (entry {seen[key]})"))
            continue
        seen[key] = row
        entries.append(entry)
    if problems:
        raise DataValidationError(problems, path.name)
    return Manifest(path=path, entries=tuple(entries))


def write_manifest(entries: list[dict[str, Any]], path: str | Path, defaults: dict[str, Any] | None = None) -> Path:
    """Write a YAML manifest (``defaults`` and ``files``) and return its path; values are written as given."""
    path = Path(path)
    document: dict[str, Any] = {"defaults": defaults or {}, "files": entries}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
