"""The virtual lab's raw files: EIS spectra and cycler files that reduce to a data set's rows.

:func:`write_raw_lab` turns the rows of a data set (by default the embedded one, a reconstruction of
Tan et al. 2021 by the virtual lab, not measurements) into the files an instrument would have written,
plus the manifest that describes them, so that ``surrogate data ingest`` reduces them back to the rows:

* each ``conductivity`` row becomes an impedance spectrum of the paper's circuit R0-p(R1,CPE1)
  (:func:`surrogate.ingest.eis.simulate_spectrum`), with
  R1 = thickness / (σ · area) for the stated film geometry (:data:`THICKNESS_NM`,
  :data:`DIAMETER_MM`), a series resistance :data:`SERIES_RESISTANCE_OHM` and a CPE whose arc peaks at
  :data:`ARC_PEAK_HZ`, sampled from 1 MHz to 0.1 Hz at 10 points per decade, with seeded complex
  Gaussian noise of :data:`EIS_NOISE_FRACTION` of \\|Z\\| on each part. Written as a BioLogic EC-Lab
  ``.mpt`` (tab-separated, CRLF, ``Nb header lines``) or a CSV (``freq/Hz,Re(Z)/Ohm,-Im(Z)/Ohm``);
* each ``rate`` sample becomes a battery-archive time series (``*_timeseries.csv``) with
  :data:`CYCLES_PER_RATE_STEP` cycles at each of its C-rates, the discharge capacity of each cycle
  being the nominal capacity times the row's rate retention;
* each ``cycling`` sample becomes a battery-archive time series with one cycle per row, the discharge
  capacity being the nominal capacity times the row's capacity retention.

The cycler files carry no noise of their own: the retentions in the data set are already noisy
readings. Coulombic efficiency is :data:`COULOMBIC_EFFICIENCY` on every cycle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
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
from surrogate.errors import InputError
from surrogate.ingest.manifest import DEFAULT_CIRCUIT, write_manifest
from surrogate.schema import EXPERIMENT, SAMPLE_ID

THICKNESS_NM = 350.0
"""Film thickness the lab states (the paper: 300-400 nm)."""
DIAMETER_MM = 3.5
"""Electrode diameter the lab states (the paper: 3-4 mm)."""
SERIES_RESISTANCE_OHM = 0.5
"""R0: leads and contacts."""
CPE_EXPONENT = 0.85
ARC_PEAK_HZ = 1.0e4
"""Frequency of the bulk arc's apex: the CPE is chosen per film so that it lies inside the sweep."""
FREQUENCIES_HZ = np.logspace(6, -1, 71)
EIS_NOISE_FRACTION = 0.002
"""Standard deviation of the noise on Re(Z) and on Im(Z), as a fraction of |Z| at that frequency."""
NOMINAL_CAPACITY_AH = 3.0e-5
"""A thin-film cell of 3.5 mm diameter: about 30 µAh (the paper's 3 µA is about 0.1 C)."""
COULOMBIC_EFFICIENCY = 0.998
CYCLES_PER_RATE_STEP = 5
POINTS_PER_HALF_CYCLE = 4
EIS_FORMATS: tuple[str, ...] = ("mpt", "csv")

BATTERY_ARCHIVE_HEADER = (
    "Date_Time",
    "Test_Time (s)",
    "Cycle_Index",
    "Current (A)",
    "Voltage (V)",
    "Charge_Capacity (Ah)",
    "Discharge_Capacity (Ah)",
    "Charge_Energy (Wh)",
    "Discharge_Energy (Wh)",
    "Environment_Temperature (C)",
    "Cell_Temperature (C)",
)
"""The published header of batteryarchive.org time-series files."""

_NOTE = "written by the virtual lab (an emulation calibrated to Tan et al. 2021), not measured"


def electrode_area_mm2(diameter_mm: float = DIAMETER_MM) -> float:
    """Area (mm²) of a round electrode of ``diameter_mm``."""
    return math.pi * diameter_mm**2 / 4.0


def bulk_resistance_ohm(sigma_s_cm: float, thickness_nm: float = THICKNESS_NM, area_mm2: float | None = None) -> float:
    """R_bulk (ohm) of a film of conductivity σ (S/cm): thickness / (σ · area)."""
    area_cm2 = (electrode_area_mm2() if area_mm2 is None else area_mm2) * 1e-2
    return thickness_nm * 1e-7 / (sigma_s_cm * area_cm2)


def film_spectrum(sigma_s_cm: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, Z in ohm) of a film of conductivity σ, with noise from ``seed`` (None: noise-free)."""
    from surrogate.ingest.eis import PAPER_CIRCUIT, simulate_spectrum

    r1 = bulk_resistance_ohm(sigma_s_cm)
    q = (1.0 / (2.0 * np.pi * ARC_PEAK_HZ)) ** CPE_EXPONENT / r1
    noise = EIS_NOISE_FRACTION if seed is not None else 0.0
    spectrum = simulate_spectrum(
        PAPER_CIRCUIT, [SERIES_RESISTANCE_OHM, r1, q, CPE_EXPONENT], FREQUENCIES_HZ, noise_fraction=noise, seed=seed
    )
    return spectrum.frequency_hz, spectrum.z_real_ohm + 1j * spectrum.z_imag_ohm


def write_mpt(path: Path, frequency_hz: np.ndarray, z_ohm: np.ndarray, comment: str = _NOTE) -> Path:
    """A minimal EC-Lab ``.mpt`` PEIS file: CRLF lines, ``Nb header lines``, tab-separated columns."""
    columns = ["freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm", "|Z|/Ohm", "Phase(Z)/deg", "time/s", "cycle number"]
    header = ["EC-Lab ASCII FILE", "Nb header lines : 6", "", "Potentio Electrochemical Impedance Spectroscopy"]
    header += [f"Comments : {comment}", "\t".join(columns)]
    lines = header[:]
    for i, (f, z) in enumerate(zip(frequency_hz, z_ohm, strict=True)):
        phase = math.degrees(math.atan2(z.imag, z.real))
        values = [f, z.real, -z.imag, abs(z), phase, float(i), 1.0]
        lines.append("\t".join(f"{v:.9E}" for v in values))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return path


def write_eis_csv(path: Path, frequency_hz: np.ndarray, z_ohm: np.ndarray) -> Path:
    """A spectrum as CSV: ``freq/Hz,Re(Z)/Ohm,-Im(Z)/Ohm`` (EC-Lab's column names), one row per frequency."""
    frame = pd.DataFrame({"freq/Hz": frequency_hz, "Re(Z)/Ohm": z_ohm.real, "-Im(Z)/Ohm": -z_ohm.imag})
    path.write_text(frame.to_csv(index=False, float_format="%.9E", lineterminator="\n"), encoding="utf-8")
    return path


def write_battery_archive(
    path: Path,
    discharge_ah: np.ndarray,
    c_rates: np.ndarray,
    test_temp_c: float = 25.0,
    coulombic_efficiency: float = COULOMBIC_EFFICIENCY,
) -> Path:
    """A battery-archive time series: per cycle a charge then a discharge at its C-rate; counters reset per cycle.

    ``discharge_ah[i]`` is cycle i+1's discharge capacity (Ah) and ``c_rates[i]`` its C-rate (C).
    """
    discharge_ah = np.asarray(discharge_ah, dtype=float)
    c_rates = np.asarray(c_rates, dtype=float)
    start = pd.Timestamp("2021-04-12 09:00:00")
    fractions = np.linspace(0.0, 1.0, POINTS_PER_HALF_CYCLE)
    lines = [",".join(BATTERY_ARCHIVE_HEADER)]
    seconds = 0.0
    for cycle, (q_discharge, c_rate) in enumerate(zip(discharge_ah, c_rates, strict=True), start=1):
        q_charge = q_discharge / coulombic_efficiency
        current = c_rate * NOMINAL_CAPACITY_AH
        for kind, q_total, sign in (("charge", q_charge, 1.0), ("discharge", q_discharge, -1.0)):
            duration = q_total / current * 3600.0
            for fraction in fractions:
                time_s = seconds + fraction * duration
                voltage = 3.2 + fraction if kind == "charge" else 4.2 - fraction
                charged = q_charge * fraction if kind == "charge" else q_charge
                discharged = q_discharge * fraction if kind == "discharge" else 0.0
                stamp = (start + pd.Timedelta(seconds=time_s)).strftime("%Y-%m-%d %H:%M:%S")
                lines.append(
                    f"{stamp},{time_s:.3f},{cycle},{sign * current:.6E},{voltage:.4f},{charged:.9E},"
                    f"{discharged:.9E},{charged * 3.7:.9E},{discharged * 3.7:.9E},{test_temp_c:g},{test_temp_c:g}"
                )
            seconds += duration + 60.0
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _design_fields(row: pd.Series) -> dict[str, Any]:
    fields = {
        SAMPLE_ID: str(row[SAMPLE_ID]),
        BUFFER: str(row[BUFFER]),
        ANNEAL_TEMP_C: float(row[ANNEAL_TEMP_C]),
        TEST_TEMP_C: float(row[TEST_TEMP_C]),
    }
    if MATERIAL in row.index and isinstance(row[MATERIAL], str) and row[MATERIAL]:
        fields[MATERIAL] = row[MATERIAL]
    return fields


def _write_cycling(out: Path, sample: str, rows: pd.DataFrame) -> dict[str, Any]:
    """One sample's cycle-life rows as a battery-archive time series under ``out/cycling``; its manifest entry."""
    rows = rows.sort_values(CYCLES)
    cycles = rows[CYCLES].to_numpy(int)
    if not np.array_equal(cycles, np.arange(1, len(rows) + 1)):
        raise InputError(f"data: sample {sample}: cycling rows must be cycles 1, 2, ... without gaps")
    c_rate = _number(rows[C_RATE].iloc[0]) if C_RATE in rows else None
    c_rates = np.full(len(rows), c_rate or 0.1)
    discharge = rows[CAPACITY_RETENTION].to_numpy(float) * NOMINAL_CAPACITY_AH
    name = f"{sample}_timeseries.csv"
    write_battery_archive(out / "cycling" / name, discharge, c_rates, float(rows[TEST_TEMP_C].iloc[0]))
    entry = {"file": f"cycling/{name}", EXPERIMENT: "cycling", **_design_fields(rows.iloc[0])}
    entry[PROTOCOL] = (
        str(rows[PROTOCOL].iloc[0]) if PROTOCOL in rows and pd.notna(rows[PROTOCOL].iloc[0]) else "standard"
    )
    if c_rate is not None:
        entry[C_RATE] = c_rate
    return entry


def write_raw_lab(
    out_dir: str | Path,
    data: pd.DataFrame | None = None,
    seed: int = 0,
    eis_format: str = "mpt",
    samples: list[str] | None = None,
) -> Path:
    """Write the raw files of ``data`` (default: the embedded data set) and their manifest; returns the manifest.

    ``data`` has the schema's columns with ``experiment`` and ``sample_id`` on every row. ``samples``
    keeps only those sample ids. ``eis_format``: ``mpt`` or ``csv``. Files go to ``out_dir/eis`` and
    ``out_dir/cycling``; the manifest is ``out_dir/manifest.yaml``. Raises :class:`InputError` for an
    unknown format or sample, or rows without ``experiment`` / ``sample_id``.
    """
    if eis_format not in EIS_FORMATS:
        raise InputError(f"eis_format: {eis_format!r} is not one of {', '.join(EIS_FORMATS)}")
    if data is None:
        from surrogate.dataset import load_default_dataset

        data = load_default_dataset()
    for column in (EXPERIMENT, SAMPLE_ID):
        if column not in data.columns or data[column].isna().any():
            raise InputError(f"data: every row needs {column!r} to become a raw file")
    if samples:
        unknown = sorted(set(samples) - set(data[SAMPLE_ID]))
        if unknown:
            raise InputError(
                f"samples: {', '.join(unknown)} not in the data (known: {', '.join(sorted(set(data[SAMPLE_ID])))})"
            )
        data = data[data[SAMPLE_ID].isin(samples)]
    out = Path(out_dir)
    (out / "eis").mkdir(parents=True, exist_ok=True)
    (out / "cycling").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries: list[dict[str, Any]] = []
    films = data[data[EXPERIMENT] == "conductivity"]
    for _, row in films.iterrows():
        frequency, z = film_spectrum(float(row[CONDUCTIVITY]), int(rng.integers(2**32)))
        name = f"{row[SAMPLE_ID]}_{float(row[TEST_TEMP_C]):g}C.{eis_format}"
        writer = write_mpt if eis_format == "mpt" else write_eis_csv
        writer(out / "eis" / name, frequency, z)
        entries.append({"file": f"eis/{name}", EXPERIMENT: "conductivity", **_design_fields(row)})
    for sample, rows in data[data[EXPERIMENT] == "rate"].groupby(SAMPLE_ID, sort=True):
        rows = rows.sort_values(C_RATE)
        c_rates = np.repeat(rows[C_RATE].to_numpy(float), CYCLES_PER_RATE_STEP)
        discharge = np.repeat(rows[RATE_RETENTION].to_numpy(float), CYCLES_PER_RATE_STEP) * NOMINAL_CAPACITY_AH
        name = f"{sample}_timeseries.csv"
        write_battery_archive(out / "cycling" / name, discharge, c_rates, float(rows[TEST_TEMP_C].iloc[0]))
        steps = " ".join(f"{c:g}:{CYCLES_PER_RATE_STEP}" for c in rows[C_RATE])
        entries.append(
            {"file": f"cycling/{name}", EXPERIMENT: "rate", **_design_fields(rows.iloc[0]), "c_rate_steps": steps}
        )
    for sample, rows in data[data[EXPERIMENT] == "cycling"].groupby(SAMPLE_ID, sort=True):
        entries.append(_write_cycling(out, str(sample), rows))
    if not entries:
        raise InputError("data: no conductivity, rate or cycling rows to write")
    defaults = {"thickness_nm": THICKNESS_NM, "diameter_mm": DIAMETER_MM, "circuit": DEFAULT_CIRCUIT}
    return write_manifest(entries, out / "manifest.yaml", defaults=defaults)
