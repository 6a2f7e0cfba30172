"""The bad-input cases of issue 16 (item 6), each as a manifest and its files, for the CLI and HTTP tests.

Every case is one manifest entry (row 1) and the files it names. ``expect`` holds the column the problem
names and substrings of its reason: the file (or the field) and why. The CLI test
(tests/test_ingest_pipeline.py) writes the case to a folder and runs ``surrogate data ingest`` (exit 2,
nothing written); the HTTP test (tests/test_service_ingest.py) uploads it to ``POST /ingest`` (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAW = Path(__file__).parent / "data" / "raw"
FREQUENCY_HZ = np.logspace(6, 0, 61)

FILM = {
    "experiment": "conductivity",
    "sample_id": "film-1",
    "buffer": "none",
    "anneal_temp_c": 300,
    "test_temp_c": 25,
    "thickness_nm": 350,
    "diameter_mm": 3.5,
}
CELL = {"experiment": "cycling", "sample_id": "cell-1", "buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25}


@dataclass(frozen=True)
class BadInput:
    """One bad-input case: the manifest entry, the files (name → bytes), and what the message must say."""

    entry: dict
    files: dict[str, bytes]
    column: str
    reason_parts: tuple[str, ...]
    no_fit: bool = False
    """Make every least-squares fit fail (the non-convergence case): the test patches the fit."""


def _spectrum_csv(z: np.ndarray) -> bytes:
    rows = [f"{f:.9e},{v.real:.9e},{v.imag:.9e}" for f, v in zip(FREQUENCY_HZ, z, strict=True)]
    return ("freq/Hz,Re(Z)/Ohm,Im(Z)/Ohm\n" + "\n".join(rows) + "\n").encode()


def _paper_circuit(r_bulk_ohm: np.ndarray | float) -> np.ndarray:
    """R0-p(R1,CPE1) with R0 = 50 ohm, Q = 1e-9, n = 0.85 at :data:`FREQUENCY_HZ` (R1 may vary per point)."""
    omega = 2 * np.pi * FREQUENCY_HZ
    cpe_admittance = 1e-9 * (1j * omega) ** 0.85
    return 50.0 + 1.0 / (1.0 / np.asarray(r_bulk_ohm, dtype=float) + cpe_admittance)


def _counter_reset(cycler_file: bytes) -> bytes:
    lines = cycler_file.decode().splitlines()
    return ("\n".join([*lines, lines[1]]) + "\n").encode()  # cycle 1 again after the last cycle


CASES = (
    "fails_kramers_kronig",
    "fit_outside_physical_bounds",
    "fit_does_not_converge",
    "unknown_format",
    "missing_thickness",
    "missing_area",
    "truncated_file",
    "cycle_counter_resets",
    "cycler_file_as_spectrum",
    "cycling_mpr_as_spectrum",
)
"""The names of the cases :func:`bad_inputs` makes (for ``pytest.mark.parametrize``)."""


def bad_inputs(cycler_file: bytes) -> dict[str, BadInput]:
    """Every case, by name; ``cycler_file`` is a good battery-archive time series (the virtual lab's)."""
    drifted = _paper_circuit(np.where(np.arange(FREQUENCY_HZ.size) < FREQUENCY_HZ.size // 2, 2000.0, 3000.0))
    gamry = (RAW / "eis" / "exampleDataGamry.DTA").read_bytes().decode("latin-1").splitlines()
    gamry[-1] = "\t".join(gamry[-1].split("\t")[:4])  # the copy stopped mid-row
    truncated_lines = len(gamry)
    return {
        "fails_kramers_kronig": BadInput(
            {**FILM, "file": "drifted.csv"},
            {"drifted.csv": _spectrum_csv(drifted)},
            "file",
            ("drifted.csv: ", "fails the Kramers-Kronig (lin-KK) test"),
        ),
        "fit_outside_physical_bounds": BadInput(
            {**FILM, "file": "li_ion.csv"},
            {"li_ion.csv": (RAW / "eis" / "exampleData.csv").read_bytes()},
            "file",
            ("li_ion.csv: ", "the R0-p(R1,CPE1) fit is not acceptable", "exceeds 5%"),
        ),
        "fit_does_not_converge": BadInput(
            {**FILM, "file": "film.csv"},
            {"film.csv": _spectrum_csv(_paper_circuit(2000.0))},
            "file",
            ("film.csv: ", "fit did not converge from any of 6 starting points"),
            no_fit=True,
        ),
        "unknown_format": BadInput(
            {**FILM, "file": "notes.txt"},
            {"notes.txt": b"Sample 7, annealed at 400 C\nlooked fine\n"},
            "file",
            ("notes.txt: ", "unknown format"),
        ),
        "missing_thickness": BadInput(
            {**{k: v for k, v in FILM.items() if k != "thickness_nm"}, "file": "film.csv"},
            {"film.csv": _spectrum_csv(_paper_circuit(2000.0))},
            "thickness_nm",
            ("missing", "thickness"),
        ),
        "missing_area": BadInput(
            {**{k: v for k, v in FILM.items() if k != "diameter_mm"}, "file": "film.csv"},
            {"film.csv": _spectrum_csv(_paper_circuit(2000.0))},
            "area_mm2",
            ("area_mm2 or diameter_mm: missing",),
        ),
        "truncated_file": BadInput(
            {**FILM, "file": "cut.DTA"},
            {"cut.DTA": "\n".join(gamry).encode("latin-1")},
            "file",
            ("cut.DTA: ", f"line {truncated_lines}: ", "truncated"),
        ),
        "cycle_counter_resets": BadInput(
            {**CELL, "file": "joined_timeseries.csv"},
            {"joined_timeseries.csv": _counter_reset(cycler_file)},
            "file",
            ("joined_timeseries.csv: line ", "the cycle counter resets from"),
        ),
        "cycler_file_as_spectrum": BadInput(
            {**FILM, "file": "cell_timeseries.csv"},
            {"cell_timeseries.csv": cycler_file},
            "file",
            ("cell_timeseries.csv: ", "a battery_archive cycler file, listed as an EIS spectrum"),
        ),
        "cycling_mpr_as_spectrum": BadInput(
            {**FILM, "file": "gcpl.mpr"},
            {"gcpl.mpr": (RAW / "cycling" / "gcpl.issue_149.mpr").read_bytes()},
            "file",
            ("gcpl.mpr: ", "a biologic cycler file, listed as an EIS spectrum"),
        ),
    }


def fail_every_fit(*_args, **_kwargs):
    """Stands in for ``scipy.optimize.least_squares`` in the non-convergence case."""
    raise ValueError("Residuals are not finite in the initial point.")
