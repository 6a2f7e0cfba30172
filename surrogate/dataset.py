"""The embedded default data set: the paper's own experimental design run through the virtual lab.

It is a *reconstruction* from Tan et al. (Nanomaterials 2021, 11, 989), not
measurements: the design (which films, temperatures, cells, rates and cycles)
is the paper's, the values come from :class:`surrogate.lab.VirtualLab` with
seeded noise. ``surrogate data build`` regenerates the packaged CSV bit for bit.
See docs/data-card.md.
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
)
from surrogate.lab import VirtualLab
from surrogate.schema import EXPERIMENT, SAMPLE_ID
from surrogate.schema import SOURCE as SOURCE_COLUMN

DEFAULT_SEED = 20210412
"""Seed of the embedded data set (the paper's publication date)."""
DATASET_FILENAME = "llto_tan2021_reconstruction.csv"
SOURCE = "reconstruction of Tan et al. 2021 by the virtual lab (not measured)"

ANNEAL_STATES_C = (25.0, 300.0, 400.0)
"""As-deposited, 300 °C and 400 °C films (Sec. 2)."""
EIS_TEMPS_C = (25.0, 40.0, 60.0, 80.0, 100.0, 120.0)
"""25 to 120 °C 'with an interval of 20 °C' (Fig. 1g)."""
FILMS_PER_ANNEAL = 3
"""Replicate films per anneal state (an assumption: the paper does not give its replicate count)."""
RATE_C = (0.1, 1.0, 5.0, 10.0, 20.0, 30.0)
"""C-rates of the rate test, after 50 formation cycles (Sec. 3.3.1)."""
CELL_ANNEAL_C = 300.0
CELL_TEST_TEMP_C = 25.0
STANDARD_CYCLES = 100
LONG_CYCLES = 1000

COLUMNS = (
    EXPERIMENT,
    SAMPLE_ID,
    BUFFER,
    ANNEAL_TEMP_C,
    TEST_TEMP_C,
    C_RATE,
    CYCLES,
    PROTOCOL,
    CONDUCTIVITY,
    RATE_RETENTION,
    CAPACITY_RETENTION,
    SOURCE_COLUMN,
)


def paper_design() -> pd.DataFrame:
    """The paper's experiments as rows of designs (no measured values), with ``experiment`` and ``sample_id``."""
    rows = []
    for anneal in ANNEAL_STATES_C:
        label = "asdep" if anneal == 25.0 else f"{anneal:.0f}c"
        for film in range(1, FILMS_PER_ANNEAL + 1):
            for temp in EIS_TEMPS_C:
                rows.append(("conductivity", f"film-{label}-{film}", "none", anneal, temp, np.nan, np.nan, "standard"))
    for buffer in BUFFERS:
        for rate in RATE_C:
            rows.append(("rate", f"rate-{buffer}", buffer, CELL_ANNEAL_C, CELL_TEST_TEMP_C, rate, 50, "standard"))
    for buffer in BUFFERS:
        for cycle in range(1, STANDARD_CYCLES + 1):
            rows.append(("cycling", f"cycle-{buffer}", buffer, CELL_ANNEAL_C, CELL_TEST_TEMP_C, 0.1, cycle, "standard"))
    for cycle in range(1, LONG_CYCLES + 1):
        rows.append(("cycling", "long-sio2", "sio2", CELL_ANNEAL_C, CELL_TEST_TEMP_C, np.nan, cycle, "long"))
    columns = [EXPERIMENT, SAMPLE_ID, BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL]
    return pd.DataFrame(rows, columns=columns)


def build_default_dataset(seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Run :func:`paper_design` through the noisy virtual lab; keep each row's own target only."""
    design = paper_design()
    lab_input = design.assign(**{C_RATE: design[C_RATE].fillna(0.1), CYCLES: design[CYCLES].fillna(1)})
    measured = VirtualLab(seed=seed, noise=True).measure_frame(lab_input, sample_ids=design[SAMPLE_ID])
    frame = design.copy()
    kind = frame[EXPERIMENT]
    frame[CONDUCTIVITY] = measured[CONDUCTIVITY].where(kind == "conductivity")
    frame[RATE_RETENTION] = measured[RATE_RETENTION].where(kind == "rate")
    frame[CAPACITY_RETENTION] = measured[CAPACITY_RETENTION].where(kind == "cycling")
    # Conditions that do not apply to a row stay empty: a film has no C-rate, a rate test's cycle count
    # is the 50 formation cycles before it, a cycling row's C-rate is fixed by its protocol.
    frame.loc[kind != "rate", C_RATE] = np.nan
    frame.loc[kind == "rate", CYCLES] = np.nan
    frame.loc[kind == "conductivity", CYCLES] = np.nan
    frame[CYCLES] = frame[CYCLES].astype("Int64")
    frame[SOURCE_COLUMN] = SOURCE
    return frame[list(COLUMNS)]


def default_dataset_path() -> Path:
    """Where the packaged CSV lives."""
    return Path(str(resources.files("surrogate") / "data" / DATASET_FILENAME))


def to_csv_text(frame: pd.DataFrame) -> str:
    """The CSV text the data set is stored as (fixed float format, so it regenerates bit for bit)."""
    return frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def write_default_dataset(path: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """Regenerate the embedded data set and write it atomically to ``path`` (default: the packaged file)."""
    target = Path(path) if path is not None else default_dataset_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = to_csv_text(build_default_dataset(seed))
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".csv")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_default_dataset() -> pd.DataFrame:
    """The embedded data set, validated like any user's file."""
    from surrogate.schema import load_measurements

    return load_measurements(default_dataset_path())
