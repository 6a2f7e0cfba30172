"""The virtual lab: paper facts, determinism, noise, the embedded data set and the lab CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogate import physics
from surrogate.cli import main
from surrogate.dataset import build_default_dataset, default_dataset_path, to_csv_text, write_default_dataset
from surrogate.errors import InputError
from surrogate.facts import all_hold, check_facts, load_facts
from surrogate.lab import VirtualLab
from surrogate.schema import load_measurements


def test_every_fact_that_can_hold_holds():
    results = {r.fact["id"]: r for r in check_facts()}
    assert all_hold(list(results.values()))
    assert results["sigma_300c_25c"].value == pytest.approx(9.56e-6, rel=0.10)
    assert results["sigma_300c_120c"].value == pytest.approx(7.78e-5, rel=0.10)
    for buffer, paper in {"none": 0.54, "llto_ncm": 0.71, "sio2": 0.76, "lipon": 0.79}.items():
        assert abs(results[f"retention_100_{buffer}"].value - paper) <= 0.02
    assert abs(results["rate_30c_none"].value - 0.10) <= 0.02
    assert abs(results["rate_30c_sio2"].value - 0.30) <= 0.02
    assert abs(results["long_retention_500"].value - 0.65) <= 0.02
    assert abs(results["long_retention_1000"].value - 0.277) <= 0.02
    assert results["long_knee_after_900"].ok


def test_activation_energy_contradiction_is_reported_not_hidden():
    results = {r.fact["id"]: r for r in check_facts()}
    assert results["ea_300c"].status == "contradiction"
    for fact_id in ("ea_as_deposited", "ea_400c"):  # no number of their own contradicts them: tied to ea_300c
        assert results[fact_id].status == "tied" and results[fact_id].fact["tied_to"] == "ea_300c"
    for fact_id in ("ea_as_deposited", "ea_300c", "ea_400c"):
        result = results[fact_id]
        assert result.ok is False  # 0.33 / 0.35 eV are not reproduced within a tight tolerance
        assert "contradict" in result.fact["note"].lower()
    assert "0.22 eV" in results["ea_300c"].fact["note"] and "0.25 eV" in results["ea_300c"].fact["note"]
    ea = results["ea_ordering"].value
    assert ea[0] == pytest.approx(ea[1], abs=0.005) and ea[2] > ea[1]
    assert results["ea_300c"].value == pytest.approx(0.2523, abs=0.002)


def test_facts_table_has_quote_section_and_unit_for_every_entry():
    facts = load_facts()
    assert len(facts) >= 40
    for fact in facts:
        for key in ("id", "quantity", "value", "unit", "kind", "section", "quote"):
            assert key in fact, (fact["id"], key)
        if fact.get("contradiction"):
            assert fact.get("note"), fact["id"]


def test_transition_is_smooth_and_defined_to_500c():
    anneal = np.linspace(25, 500, 400)
    sigma = physics.conductivity_s_cm(anneal, 25.0)
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    assert np.max(np.abs(np.diff(np.log(sigma)))) < 0.05  # no jumps
    assert anneal[np.argmax(sigma)] == pytest.approx(300, abs=5)
    assert physics.crystalline_fraction(350.0) == pytest.approx(0.5)


def test_cells_depend_on_temperature_and_film():
    hot, cold = physics.rate_retention("sio2", 300, [80.0, 25.0], 30)
    assert hot > cold
    good_film, crystalline_film = physics.rate_retention("sio2", [300.0, 400.0], 25, 30)
    assert good_film > crystalline_film
    fade_hot, fade_cold = physics.capacity_retention("sio2", [80.0, 25.0], 100)
    assert fade_hot < fade_cold


def test_parameters_name_their_source():
    rows = physics.PARAMETERS.table()
    assert {r["source"] for r in rows} == {"paper", "assumption"}
    assert all(r["reason"] for r in rows)
    assumed = {r["name"] for r in rows if r["source"] == "assumption"}
    assert {"interface_ea_ev", "fade_ea_ev", "rate_30c_llto_ncm", "rate_30c_lipon"} <= assumed


def test_seeded_measurements_are_reproducible_and_noisy():
    design = dict(buffer="SiO2", anneal_temp_c=300, test_temp_c=60, c_rate=10, cycles=50)
    assert VirtualLab(seed=7).measure(**design) == VirtualLab(seed=7).measure(**design)
    assert VirtualLab(seed=7).measure(**design) != VirtualLab(seed=8).measure(**design)
    truth = VirtualLab(noise=False).truth(**design)
    lab = VirtualLab(seed=3)
    sigma = np.array([lab.measure(**design)["conductivity_s_cm"] for _ in range(400)])
    spread = np.std(np.log(sigma / truth["conductivity_s_cm"]))
    assert 0.04 < spread < 0.08  # film geometry (0.05) and EIS fit (0.03) in quadrature ≈ 0.058


def test_lab_rejects_bad_designs_with_the_field_named():
    with pytest.raises(InputError, match="buffer"):
        VirtualLab().measure("graphene", 300, 25)
    with pytest.raises(InputError, match="test_temp_c"):
        VirtualLab().measure("sio2", 300, 900)
    with pytest.raises(InputError, match="cycles"):
        VirtualLab().measure("sio2", 300, 25, cycles=0)


def test_embedded_dataset_regenerates_bit_for_bit(tmp_path):
    packaged = default_dataset_path().read_bytes()
    assert to_csv_text(build_default_dataset()).encode() == packaged
    out = write_default_dataset(tmp_path / "copy.csv")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(packaged).digest()


def test_embedded_dataset_follows_the_papers_design_and_says_what_it_is():
    data = load_measurements(default_dataset_path())
    assert len(data) == 54 + 24 + 400 + 1000
    films = data[data["experiment"] == "conductivity"]
    assert sorted(films["anneal_temp_c"].unique()) == [25, 300, 400]
    assert films.groupby("anneal_temp_c")["sample_id"].nunique().eq(3).all()
    long = data[(data["protocol"] == "long")]
    assert set(long["buffer"]) == {"sio2"} and long["cycles"].max() == 1000
    assert data["source"].str.contains("not measured").all()


def test_cli_facts_json_shape(capsys):
    assert main(["lab", "facts", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["all_hold"] is True
    entry = next(f for f in document["facts"] if f["id"] == "ea_300c")
    assert {"id", "quantity", "conditions", "unit", "paper", "lab", "ok", "note"} <= set(entry)
    assert entry["ok"] is False and "contradict" in entry["note"].lower()


def test_cli_measure_json_and_errors(capsys):
    args = ["lab", "measure", "--buffer", "LiPON", "--anneal-temp-c", "300", "--test-temp-c", "25"]
    assert main([*args, "--seed", "1", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert {"conductivity_s_cm", "rate_retention", "capacity_retention"} <= set(values)
    assert "not a measurement" in values["note"] and values["design"]["buffer"] == "lipon"
    assert main([*args, "--no-noise", "--json", "--cycles", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["capacity_retention"] == pytest.approx(0.79, abs=1e-6)
    assert main(["lab", "measure", "--buffer", "nope", "--anneal-temp-c", "300", "--test-temp-c", "25"]) == 2
    captured = capsys.readouterr()
    assert "allowed ids" in captured.err and captured.out == ""
    assert main(["lab", "measure", "--buffer", "sio2", "--anneal-temp-c", "abc", "--test-temp-c", "25"]) == 2


def test_lab_frame_matches_single_measurements():
    frame = pd.DataFrame(
        {
            "buffer": ["none", "sio2"],
            "anneal_temp_c": [25.0, 400.0],
            "test_temp_c": [25.0, 100.0],
            "c_rate": [5.0, 20.0],
            "cycles": [10.0, 300.0],
            "protocol": ["standard", "long"],
        }
    )
    measured = VirtualLab(noise=False).measure_frame(frame)
    for i, row in frame.iterrows():
        truth = VirtualLab(noise=False).truth(**row.to_dict())
        for key, value in truth.items():
            assert measured.loc[i, key] == pytest.approx(value)


# ---------------------------------------------------------------------- per-buffer numbers through the catalogue
@pytest.fixture
def restored_catalogue():
    from surrogate.materials import CATALOGUE

    state = CATALOGUE.snapshot()
    yield CATALOGUE
    CATALOGUE.restore(state)


def test_lab_reads_per_buffer_numbers_through_the_catalogue(restored_catalogue) -> None:
    from surrogate.materials import use_materials

    assert physics.PARAMETERS.buffer_value("sio2", "rate_30c") == physics.PARAMETERS.value("rate_30c_sio2")
    use_materials(
        {
            "buffers": [
                {
                    "id": "li3po4",
                    "descriptors": {
                        "class": "phosphate",
                        "conducts_li": True,
                        "thickness_nm": 10,
                        "log10_ionic_s_cm": -7,
                        "electronic_insulator": True,
                    },
                    "lab": {"rate_30c": 0.25, "retention_100": 0.78},
                },
                {
                    "id": "nolab",
                    "descriptors": {
                        "class": "oxide",
                        "conducts_li": False,
                        "thickness_nm": 5,
                        "log10_ionic_s_cm": -9,
                        "electronic_insulator": True,
                    },
                },
            ]
        }
    )
    truth = VirtualLab(noise=False).truth("Li3PO4", 300, 25, c_rate=30, cycles=100)
    assert truth["rate_retention"] == pytest.approx(0.25, abs=1e-6)
    assert truth["capacity_retention"] == pytest.approx(0.78, abs=1e-6)
    assert VirtualLab(noise=False).truth("sio2", 300, 25, c_rate=30)["rate_retention"] == pytest.approx(0.30, abs=1e-6)
    with pytest.raises(InputError, match="the virtual lab has no numbers for 'nolab'"):
        VirtualLab().measure("nolab", 300, 25)


def test_lab_cli_takes_a_materials_file(tmp_path, capsys) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "materials.yaml"
    from surrogate.materials import CATALOGUE

    state = CATALOGUE.snapshot()
    try:
        args = ["lab", "measure", "--buffer", "Al2O3", "--anneal-temp-c", "300", "--test-temp-c", "25"]
        assert main([*args, "--no-noise", "--json", "--materials", str(example)]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["design"]["buffer"] == "al2o3" and document["rate_retention"] == pytest.approx(0.27, abs=1e-6)
        assert main(["lab", "params", "--json", "--materials", str(example)]) == 0
        names = {row["name"] for row in json.loads(capsys.readouterr().out)["parameters"]}
        assert {"rate_30c[al2o3]", "retention_100[al2o3]"} <= names
    finally:
        CATALOGUE.restore(state)


def test_lab_bounds_for_c_rate_and_cycles_are_the_declared_ones() -> None:
    from surrogate.parameters import NUMERIC_PARAMETERS

    assert physics.lab_domain_problems(300, 25, 500, 2000, "standard") == []  # inside the declared bounds
    problems = physics.lab_domain_problems(300, 25, NUMERIC_PARAMETERS["c_rate"].high * 2, 10**7, "standard")
    assert [p.split(":")[0] for p in problems] == ["c_rate", "cycles"]
