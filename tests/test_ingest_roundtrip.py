"""Round trip: virtual-lab raw files → `ingest` → rows that reproduce the embedded data set (issue 16).

The embedded data set is a reconstruction of Tan et al. 2021 by the virtual lab, not measurements; the
raw files are the lab's too.

- In one process (``ingest()``): one film's six spectra as BioLogic .mpt, another's as CSV, a rate test,
  a 100-cycle test and the 1000-cycle test.
- As a user runs it, one fresh ``surrogate`` process per step: ``lab raw`` (every sample) → ``data ingest``
  → ``train``; the model trained on the rows predicts what the model trained on the embedded set predicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import store_env

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


# ------------------------------------------------------------------ the whole path, as a user runs it
SURROGATE = str(Path(sys.executable).parent / "surrogate")

PREDICT_EMBEDDED_DESIGNS = """\
import sys
from surrogate.dataset import load_default_dataset
from surrogate.tracking import load_champion
designs = load_default_dataset()[["buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles", "protocol"]]
load_champion().predict(designs).to_csv(sys.argv[1], index=False)
"""
"""The champion's predictions at every design of the embedded data set (a fresh process reads the store)."""


def _run(folder: Path, *command: str) -> str:
    """``command`` in a fresh process in ``folder``, with that folder's own MLflow store; its stdout."""
    env = {**os.environ, **store_env(folder), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def _train_and_predict(folder: Path, data: str) -> tuple[dict, pd.DataFrame]:
    trained = json.loads(_run(folder, SURROGATE, "train", "--data", data, "--models", "physics", "--json"))
    _run(folder, sys.executable, "-c", PREDICT_EMBEDDED_DESIGNS, "predictions.csv")
    return trained, pd.read_csv(folder / "predictions.csv")


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory) -> dict[str, tuple[dict, pd.DataFrame, Path]]:
    """(train JSON, predictions, folder) of the physics model trained on the rows ingested from every raw file
    the lab writes, and of the same model trained on the embedded set.

    Each step is its own ``surrogate`` process, as a user types it: ``lab raw`` (all 54 spectra, 4 rate
    tests, 5 cycling tests), ``data ingest`` (with its MLflow run), ``train``; then the champion predicts
    every design of the embedded set. The same ``train`` on ``data build``'s copy of the embedded set, in a
    store of its own, is the reference.
    """
    ingested = tmp_path_factory.mktemp("ingested")
    (ingested / "mlruns").mkdir()
    _run(ingested, SURROGATE, "lab", "raw", "--out", "raw")
    _run(ingested, SURROGATE, "data", "ingest", "raw/manifest.yaml", "--out", "rows.csv")
    embedded = tmp_path_factory.mktemp("embedded")
    (embedded / "mlruns").mkdir()
    _run(embedded, SURROGATE, "data", "build", "--out", "embedded.csv")
    return {
        "ingested": (*_train_and_predict(ingested, "rows.csv"), ingested),
        "embedded": (*_train_and_predict(embedded, "embedded.csv"), embedded),
    }


def test_cli_rows_of_every_raw_file_reproduce_the_embedded_set(trained_twice):
    folder = trained_twice["ingested"][2]
    rows = pd.read_csv(folder / "rows.csv")
    embedded = load_default_dataset()
    assert rows["experiment"].value_counts().to_dict() == embedded["experiment"].value_counts().to_dict()
    for experiment, column, close in (
        ("conductivity", "conductivity_s_cm", lambda a, b: np.abs(a / b - 1.0) < SIGMA_RELATIVE),
        ("rate", "rate_retention", lambda a, b: np.abs(a - b) < RETENTION),
        ("cycling", "capacity_retention", lambda a, b: np.abs(a - b) < RETENTION),
    ):
        expected, ingested = _matched(rows, experiment, column)
        assert expected.size == int((embedded["experiment"] == experiment).sum())
        assert close(ingested, expected).all(), experiment


def test_model_trained_on_ingested_rows_reproduces_the_model_of_the_embedded_set(trained_twice):
    """σ within 1%, Ea within 5 meV, retentions within 0.005, at every design of the embedded set."""
    ingested_run, ingested = trained_twice["ingested"][:2]
    embedded_run, embedded = trained_twice["embedded"][:2]
    assert len(ingested) == len(embedded) == len(load_default_dataset())
    sigma = ingested["conductivity_s_cm_mean"] / embedded["conductivity_s_cm_mean"]
    assert np.max(np.abs(sigma - 1.0)) < SIGMA_RELATIVE
    for target in ("rate_retention_mean", "capacity_retention_mean"):
        assert np.nanmax(np.abs(ingested[target] - embedded[target])) < RETENTION, target
    ea_ingested = {row["anneal_temp_c"]: row["ea_ev"] for row in ingested_run["activation_energies"]}
    ea_embedded = {row["anneal_temp_c"]: row["ea_ev"] for row in embedded_run["activation_energies"]}
    assert set(ea_ingested) == set(ea_embedded) == {25.0, 300.0, 400.0}
    for anneal, ea in ea_embedded.items():
        assert abs(ea_ingested[anneal] - ea) < EA_EV, anneal
