"""The sample measurements in ``examples/``: regenerated here from the virtual lab, valid, and trainable.

``examples/measurements.csv`` is what a user's own file looks like: one row per measurement, three
films for conductivity, two cells for rate capability and cycling, buffer names as people write them
("SiO2"). Its values come from the virtual lab (seed 7), so they are NOT measurements;
:func:`sample_measurements` makes the file, and the first test checks it is exactly that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "measurements.csv"
SOURCE = "example made by the virtual lab with seed 7 (not measured)"
COLUMNS = [
    "experiment", "sample_id", "buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles", "protocol",
    "conductivity_s_cm", "rate_retention", "capacity_retention", "source",
]  # fmt: skip


def sample_measurements() -> str:
    """The CSV text of ``examples/measurements.csv`` (values rounded to 4 significant digits)."""
    from surrogate.lab import VirtualLab

    rows = []
    for film, anneal in (("film-A", 25.0), ("film-B", 300.0), ("film-C", 350.0)):
        for temp in (25.0, 40.0, 60.0, 80.0):
            rows.append(("conductivity", film, "none", anneal, temp, None, None))
    for cell, buffer in (("cell-1", "sio2"), ("cell-2", "none")):
        for rate in (0.1, 1.0, 5.0, 10.0, 20.0, 30.0):
            rows.append(("rate", cell, buffer, 300.0, 25.0, rate, None))
    for cell, buffer in (("cell-1", "sio2"), ("cell-2", "none")):
        for cycle in (1, 10, 20, 40, 60, 80, 100):
            rows.append(("cycling", cell, buffer, 300.0, 25.0, None, cycle))
    frame = pd.DataFrame(
        rows, columns=["experiment", "sample_id", "buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles"]
    )
    designs = frame.assign(
        c_rate=frame["c_rate"].fillna(0.1), cycles=frame["cycles"].fillna(1).astype(int), protocol="standard"
    )[["buffer", "anneal_temp_c", "test_temp_c", "c_rate", "cycles", "protocol"]]
    measured = VirtualLab(seed=7).measure_frame(designs, sample_ids=frame["sample_id"])
    out = frame.assign(protocol=None, conductivity_s_cm=None, rate_retention=None, capacity_retention=None)
    target = {"conductivity": "conductivity_s_cm", "rate": "rate_retention", "cycling": "capacity_retention"}
    for i, kind in enumerate(frame["experiment"]):
        out.at[i, target[kind]] = f"{measured[target[kind]].iloc[i]:.4g}"
        if kind == "cycling":
            out.at[i, "protocol"] = "standard"
    out["buffer"] = out["buffer"].map({"sio2": "SiO2", "none": "none"})
    out["cycles"] = out["cycles"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    out["source"] = SOURCE
    return out[COLUMNS].to_csv(index=False, lineterminator="\n")


def test_the_sample_file_is_the_virtual_labs_output():
    assert EXAMPLE.read_text(encoding="utf-8") == sample_measurements()


def test_the_sample_file_validates(capsys):
    from surrogate.cli import main

    assert main(["data", "validate", str(EXAMPLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["rows"] == 38


def test_the_sample_file_has_enough_rows_to_train_every_target():
    from surrogate.schema import load_measurements
    from training.train import trainable_targets

    data = load_measurements(EXAMPLE)
    rows = trainable_targets(data, ["physics", "gp", "trees", "torch"])
    assert set(rows) == {"conductivity_s_cm", "rate_retention", "capacity_retention"}
    assert min(rows.values()) >= 10
