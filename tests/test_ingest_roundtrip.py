"""Round trip: virtual-lab raw files → `ingest` → rows that reproduce the embedded data set (issue 16).

The embedded data set is a reconstruction of Tan et al. 2021 by the virtual lab, not measurements; the
raw files are the lab's too. The subset: one film's six spectra as BioLogic .mpt, another's as CSV, a
rate test, a 100-cycle test and the 1000-cycle test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.facts import arrhenius_ea_ev
from surrogate.ingest.pipeline import arrhenius_by_sample, ingest
from surrogate.lab_raw import write_raw_lab

pytestmark = pytest.mark.slow  # 12 spectra fitted with multi-start: about 10-30 s on 2 cores

SIGMA_RELATIVE = 0.01
EA_EV = 0.005
RETENTION = 0.005


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("roundtrip")
    mpt = write_raw_lab(folder / "mpt", samples=["film-300c-2", "rate-lipon", "cycle-llto_ncm", "long-sio2"], seed=3)
    csv = write_raw_lab(folder / "csv", samples=["film-asdep-1"], eis_format="csv", seed=4)
    results = [ingest(mpt), ingest(csv)]
    rows = pd.concat([r.rows for r in results], ignore_index=True)
    ea = pd.concat([arrhenius_by_sample(r) for r in results], ignore_index=True)
    return rows, ea


def _matched(rows: pd.DataFrame, experiment: str, value: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    embedded = load_default_dataset()
    keys = ["sample_id", "test_temp_c", "c_rate", "cycles"]
    left = embedded[embedded["experiment"] == experiment].copy()
    right = rows[rows["experiment"] == experiment].copy()
    for frame in (left, right):
        frame["cycles"] = frame["cycles"].astype(float)
    merged = left.merge(right, on=keys, suffixes=("_embedded", "_ingested"))
    assert len(merged) == len(right) > 0
    return merged[f"{value}_embedded"].to_numpy(float), merged[f"{value}_ingested"].to_numpy(float)


def test_conductivity_within_one_percent(round_trip):
    rows, _ = round_trip
    embedded, ingested = _matched(rows, "conductivity", "conductivity_s_cm")
    assert embedded.size == 12
    assert np.max(np.abs(ingested / embedded - 1.0)) < SIGMA_RELATIVE


def test_activation_energy_within_five_mev(round_trip):
    _, ea = round_trip
    embedded = load_default_dataset()
    assert set(ea["sample_id"]) == {"film-300c-2", "film-asdep-1"}
    for row in ea.itertuples():
        film = embedded[embedded["sample_id"] == row.sample_id]
        expected = arrhenius_ea_ev(film["test_temp_c"].to_numpy(float), film["conductivity_s_cm"].to_numpy(float))
        assert abs(row.activation_energy_ev - expected) < EA_EV


@pytest.mark.parametrize(
    ("experiment", "column", "count"), [("rate", "rate_retention", 6), ("cycling", "capacity_retention", 1100)]
)
def test_retention_within_half_a_point(round_trip, experiment, column, count):
    rows, _ = round_trip
    embedded, ingested = _matched(rows, experiment, column)
    assert embedded.size == count
    assert np.max(np.abs(ingested - embedded)) < RETENTION
