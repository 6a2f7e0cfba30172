"""Manifest + raw files → the data-set rows the product reads, with provenance on every row.

:func:`ingest` reads every file of a manifest (:mod:`surrogate.ingest.manifest`) and reduces it:

* ``conductivity`` (an EIS spectrum): the equivalent circuit is fitted (:mod:`surrogate.ingest.eis`),
  and σ = thickness / (R_bulk · area) with its uncertainty (:mod:`surrogate.ingest.conductivity`):
  one row per spectrum;
* ``rate`` (a cycler file): the discharge capacity of each C-rate step over the 0.1 C step's
  (:func:`surrogate.ingest.cycling.rate_retention`): one row per step, ``cycles`` left empty as in
  the embedded data set;
* ``cycling`` (a cycler file): the discharge capacity of each cycle over the reference cycle's: one
  row per usable cycle, counted from the reference cycle (``cycles`` = 1). Cycles before the
  reference (formation) are left out; flagged cycles (outlier, counter reset, incomplete) are left
  out and listed in :attr:`IngestResult.warnings`.

Every row carries the schema's columns (:mod:`surrogate.schema`) and :data:`PROVENANCE_COLUMNS`: the
source file's name and sha256, its instrument format, the reduction method, the circuit and the fit
quality (RMSE of the fit, ohm; empty for cycler rows), and when the ingest ran (UTC, ISO 8601); and
``trial`` when the manifest says which campaign suggestion a file answers. The
rows are checked by the schema before anything is returned; every problem of every file is collected
and raised at once (:class:`~surrogate.errors.DataValidationError`, one problem per file, naming the
manifest entry). :func:`write_rows` writes atomically: nothing is written on failure.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
)
from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.ingest import cycling
from surrogate.ingest.conductivity import film_conductivity
from surrogate.ingest.manifest import FILE, TRIAL, Manifest, ManifestEntry, load_manifest
from surrogate.schema import EXPERIMENT, PROVENANCE_COLUMNS, SAMPLE_ID, SOURCE, check_frame

SOURCE_FILE, SOURCE_SHA256, INSTRUMENT_FORMAT, REDUCTION_METHOD, CIRCUIT, FIT_RMSE_OHM, CONDUCTIVITY_STD, CREATED_AT = (
    PROVENANCE_COLUMNS
)
"""The provenance columns, declared in :data:`surrogate.schema.PROVENANCE_COLUMNS`."""

ROW_COLUMNS: tuple[str, ...] = (
    EXPERIMENT,
    SAMPLE_ID,
    BUFFER,
    MATERIAL,
    ANNEAL_TEMP_C,
    TEST_TEMP_C,
    C_RATE,
    CYCLES,
    PROTOCOL,
    CONDUCTIVITY,
    RATE_RETENTION,
    CAPACITY_RETENTION,
    SOURCE,
    *PROVENANCE_COLUMNS,
)
"""The columns of :attr:`IngestResult.rows`, in order."""

CONDUCTIVITY_METHOD = "{fit}; sigma = thickness / (R_bulk * area)"
RATE_METHOD = "rate retention: mean discharge capacity of the C-rate step's cycles / that of the 0.1 C step"
CYCLING_METHOD = "capacity retention: discharge capacity of the cycle / that of reference cycle {reference}"


@dataclass
class SpectrumReduction:
    """One spectrum's reduction: the entry, the spectrum read, the fit and σ (S/cm, with its SD)."""

    entry: ManifestEntry
    spectrum: Any
    fit: Any
    sigma_s_cm: float
    sigma_std_s_cm: float


@dataclass
class CyclerReduction:
    """One cycler file's reduction: the entry, the per-cycle table and (rate tests) the per-step table."""

    entry: ManifestEntry
    table: cycling.CycleTable
    rate_steps: pd.DataFrame | None = None


@dataclass
class IngestResult:
    """Everything an ingest made: the rows, the reductions behind them, the sources and the warnings."""

    manifest: Manifest
    rows: pd.DataFrame
    spectra: list[SpectrumReduction] = field(default_factory=list)
    cyclers: list[CyclerReduction] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created_at: str = ""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _display_name(entry: ManifestEntry, manifest: Manifest) -> str:
    try:
        return str(entry.file.relative_to(manifest.path.resolve().parent))
    except ValueError:
        return entry.file.name


def _design(entry: ManifestEntry) -> dict[str, Any]:
    return {
        EXPERIMENT: entry.experiment,
        SAMPLE_ID: entry.sample_id,
        BUFFER: entry.buffer,
        MATERIAL: entry.material,
        ANNEAL_TEMP_C: entry.anneal_temp_c,
        TEST_TEMP_C: entry.test_temp_c,
        PROTOCOL: entry.protocol,
    }


def _reduce_spectrum(entry: ManifestEntry) -> tuple[SpectrumReduction, dict[str, Any], str]:
    from surrogate.ingest.eis import fit_spectrum  # the fitting stack (impedance.py) only when spectra come
    from surrogate.ingest.formats import read_spectrum

    try:
        cycler_format = cycling.detect_format(entry.file)
    except InputError:  # binary or unreadable as text: the spectrum reader decides (e.g. a BioLogic .mpr)
        cycler_format = None
    if cycler_format is not None:
        raise InputError(
            f"{entry.file.name}: a {cycler_format} cycler file, listed as an EIS spectrum (experiment "
            "conductivity); list it as experiment rate or cycling"
        )
    spectrum = read_spectrum(entry.file, sweep=entry.sweep)
    with warnings.catch_warnings():  # impedance.py warns on every prediction from given parameters
        warnings.filterwarnings("ignore", message="Simulating circuit based on initial parameters")
        fit = fit_spectrum(spectrum, circuit=entry.circuit)
    sigma = film_conductivity(fit.r_bulk_ohm, fit.r_bulk_stderr_ohm, entry.thickness_nm, entry.area_mm2)
    row = _design(entry) | {
        CONDUCTIVITY: sigma.sigma_s_per_cm,
        CONDUCTIVITY_STD: sigma.sigma_std_s_per_cm,
        REDUCTION_METHOD: CONDUCTIVITY_METHOD.format(fit=fit.method),
        CIRCUIT: fit.circuit,
        FIT_RMSE_OHM: fit.rmse_ohm,
    }
    reduction = SpectrumReduction(entry, spectrum, fit, sigma.sigma_s_per_cm, sigma.sigma_std_s_per_cm)
    return reduction, row, str(spectrum.source_format)


def _reduce_cycler(entry: ManifestEntry) -> tuple[CyclerReduction, list[dict[str, Any]], list[str]]:
    data = cycling.read_cycler(entry.file, fmt=entry.format)
    name = entry.file.name
    if entry.experiment == "rate":
        table = cycling.reduce_cycles(data)
        steps = cycling.rate_retention(table, entry.c_rate_steps, first_cycle=entry.first_cycle)
        rows = [
            _design(entry)
            | {C_RATE: float(step.c_rate), RATE_RETENTION: float(step.rate_retention), REDUCTION_METHOD: RATE_METHOD}
            for step in steps.itertuples()
        ]
        reduction = CyclerReduction(entry, table, steps)
    else:
        table = cycling.reduce_cycles(data, reference_cycle=entry.reference_cycle)
        if table.reference_cycle is None:
            raise InputError(f"{name}: no complete cycle, so no capacity retention")
        good = table.good()
        good = good[good[cycling.CYCLE] >= table.reference_cycle]
        method = CYCLING_METHOD.format(reference=table.reference_cycle)
        rows = [
            _design(entry)
            | {
                C_RATE: entry.c_rate if entry.c_rate is not None else math.nan,
                CYCLES: int(cycle - table.reference_cycle + 1),
                CAPACITY_RETENTION: float(retention),
                REDUCTION_METHOD: method,
            }
            for cycle, retention in zip(good[cycling.CYCLE], good["capacity_retention"], strict=True)
        ]
        reduction = CyclerReduction(entry, table)
    warnings = [
        f"{name}: cycle {int(cycle)} flagged {flag} (line {int(line)}); left out"
        for cycle, flag, line in zip(
            table.flagged()[cycling.CYCLE], table.flagged()["flag"], table.flagged()["first_line"], strict=True
        )
    ]
    return reduction, rows, warnings


def ingest(
    manifest_path: str | Path,
    progress: Callable[[Iterable[ManifestEntry]], Iterable[ManifestEntry]] | None = None,
) -> IngestResult:
    """Reduce every file of a manifest to rows (module docstring); writes nothing.

    ``progress`` wraps the entries (e.g. a tqdm bar). Raises :class:`DataValidationError` listing the
    problem of every file that failed (each naming its manifest entry and the file), or the schema's
    problems with the rows; :class:`InputError` for an unreadable manifest.
    """
    manifest = load_manifest(manifest_path)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    problems: list[Problem] = []
    result = IngestResult(manifest=manifest, rows=pd.DataFrame(columns=list(ROW_COLUMNS)), created_at=created_at)
    rows: list[dict[str, Any]] = []
    origins: list[tuple[int, str]] = []  # each row's manifest entry and file, to name them in the schema's problems
    entries: Iterable[ManifestEntry] = manifest.entries if progress is None else progress(manifest.entries)
    for entry in entries:
        display = _display_name(entry, manifest)
        try:
            digest = sha256_of(entry.file)
            if entry.is_spectrum:
                spectrum, row, fmt = _reduce_spectrum(entry)
                result.spectra.append(spectrum)
                new_rows = [row]
            else:
                reduction, new_rows, warnings = _reduce_cycler(entry)
                fmt = reduction.table.source.format
                result.cyclers.append(reduction)
                result.warnings.extend(warnings)
        except DataValidationError as exc:  # a reader's or a fit's problems, each naming a line of the file
            problems.extend(Problem(entry.row, FILE, f"{display}: {_where(p)}") for p in exc.problems)
            continue
        except InputError as exc:
            problems.append(Problem(entry.row, FILE, _without_prefix(str(exc), entry.file.name, display)))
            continue
        except OSError as exc:
            problems.append(Problem(entry.row, FILE, f"{display}: cannot be read ({exc.strerror or exc})"))
            continue
        provenance = {
            SOURCE: f"ingest of {display}" + (f" (sweep {entry.sweep})" if entry.sweep is not None else ""),
            SOURCE_FILE: display,
            SOURCE_SHA256: digest,
            INSTRUMENT_FORMAT: fmt,
            CREATED_AT: created_at,
        }
        if entry.trial is not None:
            provenance[TRIAL] = entry.trial
        rows.extend(row | provenance for row in new_rows)
        origins.extend((entry.row, display) for _ in new_rows)
        result.sources.append({"file": display, "sha256": digest, "format": fmt, "experiment": entry.experiment})
    if problems:
        raise DataValidationError(problems, manifest.path.name)
    with_trial = any(entry.trial is not None for entry in manifest.entries)
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS) + ([TRIAL] if with_trial else []))
    frame[CYCLES] = frame[CYCLES].astype("Int64")
    if with_trial:
        frame[TRIAL] = frame[TRIAL].astype("Int64")
    checked = check_frame(frame.astype(object).where(frame.notna(), None), f"rows of {manifest.path.name}")
    if checked.problems:
        raise DataValidationError(_row_problems(checked.problems, frame, origins), manifest.path.name)
    result.rows = frame
    return result


def _row_problems(problems: list[Problem], frame: pd.DataFrame, origins: list[tuple[int, str]]) -> list[Problem]:
    """The schema's problems with the reduced rows, each named by its manifest entry, file and cycle or C-rate.

    A capacity retention above 1 is the usual one: a real cell can give a little more than its reference
    cycle (the first complete one, by default) while it settles, and the schema takes fractions 0 to 1.
    """
    named = []
    for problem in problems:
        if problem.row is None or not 1 <= problem.row <= len(origins):
            named.append(problem)
            continue
        entry_row, display = origins[problem.row - 1]
        reduced = frame.iloc[problem.row - 1]
        where = ""
        if pd.notna(reduced[CYCLES]):
            where = f"cycles = {int(reduced[CYCLES])} (counted from the reference cycle): "
        elif pd.notna(reduced[C_RATE]) and reduced[EXPERIMENT] == "rate":
            where = f"the {float(reduced[C_RATE]):g} C step: "
        reason = f"{display}: {where}{problem.column or 'row'} {problem.reason}"
        if problem.column == CAPACITY_RETENTION and "above 1" in problem.reason:
            reason += "; the cell gave more than its reference cycle: state a later reference_cycle (its peak)"
        named.append(Problem(entry_row, FILE, reason))
    return named


def _where(problem: Problem) -> str:
    """A reader's problem as text: ``line 12, column 'z'': reason`` (the readers' rows are lines of the file),
    or just the reason when it is about the whole file."""
    where = []
    if problem.row is not None:
        where.append(f"line {problem.row}")
    if problem.column is not None:
        where.append(f"column {problem.column!r}")
    return f"{', '.join(where)}: {problem.reason}" if where else problem.reason


def _without_prefix(message: str, name: str, display: str) -> str:
    """An error about a file, named by its manifest path (``film/25C.mpt: ...``) once."""
    for prefix in (f"{name}: ", f"{display}: "):
        if message.startswith(prefix):
            return f"{display}: {message.removeprefix(prefix)}"
    return f"{display}: {message}"


def rows_csv_text(frame: pd.DataFrame) -> str:
    """The CSV text of ingested rows (the embedded data set's number format, more digits for σ)."""
    return frame.to_csv(index=False, float_format="%.8g", lineterminator="\n")


@contextmanager
def staged_rows(frame: pd.DataFrame, out: str | Path) -> Iterator[Path]:
    """Write rows to a temporary file beside ``out``; on leaving the block without error, rename it to ``out``.

    Whatever the block does (log an MLflow run) happens with the rows already written in full, and a
    failure inside it leaves ``out`` untouched. CSV, or Parquet by suffix.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"--out {out}: give a .csv or .parquet file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=suffix)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    tmp = Path(name)
    try:
        if suffix == ".csv":
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                stream.write(rows_csv_text(frame))
        else:
            os.close(handle)
            frame.astype({CYCLES: float}).to_parquet(tmp, index=False)
        os.chmod(tmp, 0o644)
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_rows(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write rows to ``out`` (CSV, or Parquet by suffix) atomically: a temporary file, then a rename."""
    with staged_rows(frame, out):
        pass
    return Path(out)


def source_digest(sources: list[dict[str, str]]) -> str:
    """One sha256 over every source file's name and sha256 (the digest of an ingest's inputs)."""
    digest = hashlib.sha256()
    for source in sorted(sources, key=lambda s: s["file"]):
        digest.update(f"{source['file']}\0{source['sha256']}\n".encode())
    return digest.hexdigest()


def arrhenius_by_sample(result: IngestResult) -> pd.DataFrame:
    """Activation energy (eV, σ·T form) of each sample measured at three or more temperatures."""
    from surrogate.facts import arrhenius_ea_ev

    rows = result.rows[result.rows[EXPERIMENT] == "conductivity"]
    records = []
    for (sample, anneal), group in rows.groupby([SAMPLE_ID, ANNEAL_TEMP_C], sort=True):
        if group[TEST_TEMP_C].nunique() >= 3:
            ea = arrhenius_ea_ev(group[TEST_TEMP_C].to_numpy(float), group[CONDUCTIVITY].to_numpy(float))
            records.append({SAMPLE_ID: sample, ANNEAL_TEMP_C: anneal, "activation_energy_ev": ea, "points": len(group)})
    return pd.DataFrame(records, columns=[SAMPLE_ID, ANNEAL_TEMP_C, "activation_energy_ev", "points"])
