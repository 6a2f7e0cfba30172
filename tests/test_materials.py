"""The materials catalogue: a fifth buffer from a materials file and data only, no Python edited.

End to end: declare Al2O3 in a YAML file (examples/materials.yaml), emulate its cells with the virtual lab,
validate the data (CLI), train (CLI), predict (CLI, and the library call the service uses), search and run a
campaign over a space listing it. Then the vocabulary rules: a model refuses a buffer it never saw (one-hot)
or predicts it from descriptors, flagged; the model carries its materials; old estimators still work.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogate import materials
from surrogate.cli import main
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    MATERIAL,
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
    DesignSpace,
    canonical_buffer,
)
from surrogate.errors import InputError
from surrogate.lab import VirtualLab
from surrogate.materials import CATALOGUE, read_materials_file, use_materials
from surrogate.schema import SAMPLE_ID, validate_frame

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "materials.yaml"


@pytest.fixture
def catalogue():
    """The process catalogue, restored after the test (declared materials would otherwise stay)."""
    state = CATALOGUE.snapshot()
    yield CATALOGUE
    CATALOGUE.restore(state)


def _new_buffer_rows(buffer: str, seed: int = 1, rates=(0.5, 1, 2, 5, 10, 20, 30), cycles=range(2, 101, 7)):
    """Emulated rate and cycling rows of one new-buffer cell each (the lab reads the buffer's catalogue numbers)."""
    rate = pd.DataFrame({C_RATE: list(rates)}).assign(
        **{BUFFER: buffer, ANNEAL_TEMP_C: 300.0, TEST_TEMP_C: 25.0, CYCLES: 50, PROTOCOL: "standard"}
    )
    cycling = pd.DataFrame({CYCLES: list(cycles)}).assign(
        **{BUFFER: buffer, ANNEAL_TEMP_C: 300.0, TEST_TEMP_C: 25.0, C_RATE: 0.1, PROTOCOL: "standard"}
    )
    lab = VirtualLab(seed=seed)
    rate = lab.measure_frame(rate, sample_ids=pd.Series("cell-r", index=rate.index))
    cycling = lab.measure_frame(cycling, sample_ids=pd.Series("cell-c", index=cycling.index))
    rate = rate.drop(columns=[CONDUCTIVITY, CAPACITY_RETENTION]).assign(
        experiment="rate", **{SAMPLE_ID: f"rate-{buffer}"}
    )
    rate[CYCLES] = np.nan
    cycling = cycling.drop(columns=[CONDUCTIVITY, RATE_RETENTION]).assign(
        experiment="cycling", **{SAMPLE_ID: f"cycle-{buffer}"}
    )
    cycling[C_RATE] = np.nan
    return pd.concat([rate, cycling], ignore_index=True)


@pytest.fixture
def fifth_buffer_file(tmp_path, catalogue) -> Path:
    """The embedded data plus an Al2O3 rate cell and cycling cell, written as a CSV (Al2O3 declared meanwhile)."""
    from surrogate.dataset import build_default_dataset

    use_materials(EXAMPLE)
    data = pd.concat([build_default_dataset(), _new_buffer_rows("al2o3")], ignore_index=True)
    path = tmp_path / "with_al2o3.csv"
    data.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ the catalogue itself
def test_defaults_are_the_papers_four_buffers_and_the_llto_film() -> None:
    assert BUFFERS == ("none", "llto_ncm", "sio2", "lipon")
    assert materials.DEFAULT_MATERIAL == "llto_film" and "llto_bulk" in materials.material_ids()
    sio2 = CATALOGUE.get("SiO₂")
    assert sio2.descriptors.material_class == "oxide" and sio2.descriptors.electronic_insulator
    assert canonical_buffer("no") == "none"  # a YAML boolean trap, quoted in the packaged file


def test_example_file_declares_two_buffers_with_literature_descriptors(catalogue) -> None:
    entries = read_materials_file(EXAMPLE)
    assert [e.id for e in entries] == ["al2o3", "linbo3"]
    assert all("literature" in e.source for e in entries)
    with pytest.raises(InputError, match="unknown buffer 'Al2O3'"):
        canonical_buffer("Al2O3")
    new = use_materials(EXAMPLE)
    assert [m.id for m in new] == ["al2o3", "linbo3"] and canonical_buffer("Al₂O₃") == "al2o3"
    assert use_materials(EXAMPLE) == []  # declaring the same again is harmless
    assert materials.buffer_ids()[:4] == BUFFERS  # append-only: the defaults keep their codes


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ({"buffers": [{"id": "x1", "descriptors": {"class": "metal"}}]}, "unknown descriptor|missing descriptor"),
        (
            {
                "buffers": [
                    {
                        "id": "x1",
                        "descriptors": {
                            "class": "metal",
                            "conducts_li": True,
                            "thickness_nm": 1,
                            "log10_ionic_s_cm": -5,
                            "electronic_insulator": True,
                        },
                    }
                ]
            },
            "class: 'metal' is not one of",
        ),
        ({"buffers": [{"id": "Bad Id"}]}, "lower-case letters"),
        ({"layers": []}, "unknown section"),
        (
            {
                "buffers": [
                    {
                        "id": "sio2",
                        "descriptors": {
                            "class": "oxide",
                            "conducts_li": True,
                            "thickness_nm": 1,
                            "log10_ionic_s_cm": -5,
                            "electronic_insulator": True,
                        },
                    }
                ]
            },
            "already declared with other values",
        ),
    ],
)
def test_a_bad_materials_file_is_a_clear_input_error(catalogue, document, text) -> None:
    with pytest.raises(InputError, match=text):
        use_materials(document)


def test_bad_materials_file_on_the_cli_exits_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("buffers: [{id: x}]\n", encoding="utf-8")
    good = Path(__file__).parent / "data" / "good" / "measurements.csv"
    assert main(["data", "validate", str(good), "--materials", str(bad)]) == 2
    assert "descriptors" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end: validate, train, predict
@pytest.mark.slow
@pytest.mark.server
def test_fifth_buffer_end_to_end_with_a_materials_file_and_data_only(
    fifth_buffer_file, tmp_stores, monkeypatch, capsys
) -> None:
    # validate: unknown without the file, valid with it
    CATALOGUE.restore(_defaults_state())
    assert main(["data", "validate", str(fifth_buffer_file)]) == 2
    assert "unknown buffer 'al2o3'" in capsys.readouterr().err
    assert main(["data", "validate", str(fifth_buffer_file), "--materials", str(EXAMPLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "al2o3" in report["buffers"] and report["ok"]

    # train: a command without --materials reads SURROGATE_MATERIALS
    monkeypatch.setenv(materials.MATERIALS_ENV, str(EXAMPLE))
    materials._declare_environment()
    assert main(["train", "--data", str(fifth_buffer_file), "--models", "physics,trees", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["targets"][RATE_RETENTION]["champion"] in ("physics", "trees")

    # predict in a process that has never seen the file: the model carries its vocabulary
    monkeypatch.delenv(materials.MATERIALS_ENV)
    CATALOGUE.restore(_defaults_state())
    args = ["predict", "--buffer", "Al2O3", "--anneal-temp-c", "300", "--test-temp-c", "25", "--c-rate", "10"]
    assert main([*args, "--cycles", "80", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    entry = predicted["predictions"][0] if "predictions" in predicted else predicted
    entry = entry[0] if isinstance(entry, list) else entry
    assert entry["design"]["buffer"] == "al2o3"
    truth = VirtualLab(noise=False).truth("al2o3", 300, 25, c_rate=10, cycles=80)
    assert abs(entry[RATE_RETENTION]["mean"] - truth[RATE_RETENTION]) < 0.05
    assert entry[RATE_RETENTION]["lower"] <= truth[RATE_RETENTION] <= entry[RATE_RETENTION]["upper"]
    assert not entry["extrapolation"]

    # the library call the HTTP service makes
    from surrogate.tracking import load_champion

    surrogate = load_champion()
    out = surrogate.predict([{"buffer": "al2o3", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10}])
    assert 0 < out.loc[0, f"{RATE_RETENTION}_mean"] < 1 and not out.loc[0, "extrapolation"]

    # search over a space listing the new buffer
    from surrogate.objectives import Objective
    from surrogate.search import run_search

    space = DesignSpace(buffers=("sio2", "al2o3"), test_temp_c=(25.0, 25.0), anneal_temp_c=(300.0, 300.0))
    result = run_search(surrogate, [Objective("rate_retention", c_rate=10)], space, n_trials=20, show_progress=False)
    assert {d["buffer"] for d in result.to_dict()["designs"]} <= {"sio2", "al2o3"}

    # the same from the command line, with --materials: search, and a campaign that suggests the new buffer
    space_file = tmp_stores / "space.yaml"
    space_file.write_text("buffers: [sio2, Al2O3]\ntest_temp_c: [25, 25]\nanneal_temp_c: [300, 300]\n")
    CATALOGUE.restore(_defaults_state())
    search = ["search", "--objective", "rate_retention", "--c-rate", "10", "--space", str(space_file), "--trials", "20"]
    # the champion carries Al2O3's catalogue entry, so the space reads without the file
    assert main([*search, "--json"]) == 0
    assert {d["buffer"] for d in json.loads(capsys.readouterr().out)["designs"]} <= {"sio2", "al2o3"}
    CATALOGUE.restore(_defaults_state())
    assert main([*search, "--materials", str(EXAMPLE), "--json"]) == 0
    assert {d["buffer"] for d in json.loads(capsys.readouterr().out)["designs"]} <= {"sio2", "al2o3"}
    create = ["campaign", "create", "al", "--objective", "rate_retention", "--c-rate", "10", "--space", str(space_file)]
    assert main([*create, "--materials", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["campaign", "suggest", "al", "--n", "2", "--materials", str(EXAMPLE), "--json"]) == 0
    suggested = json.loads(capsys.readouterr().out)
    assert "al2o3" in {s["buffer"] for s in suggested["suggestions"]}

    # over HTTP: a real `surrogate serve` that was given no materials file answers for the new buffer
    from test_service_server import _free_port, start_server, stop_server, wait_for_answer

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != materials.MATERIALS_ENV}
    env["BENTOML_HOME"] = str(tmp_stores / "bentoml")
    command = [str(Path(sys.executable).parent / "surrogate"), "serve", "--port", str(port), "--workers", "1"]
    process = start_server(command, env, tmp_stores, tmp_stores / "server.log")
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/readyz", process, tmp_stores / "server.log", want=200)
        body = {"designs": [{"buffer": "Al2O3", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
            prediction = json.loads(answer.read())["predictions"][0]
    finally:
        stop_server(process)
    assert prediction["design"]["buffer"] == "al2o3" and not prediction["extrapolation"]
    assert abs(prediction[RATE_RETENTION]["mean"] - entry[RATE_RETENTION]["mean"]) < 1e-9


def _defaults_state():
    """A snapshot holding only the packaged entries (what a fresh process knows)."""
    entries = {
        k: {i: m for i, m in v.items() if i in materials.DEFAULT_BUFFERS + materials.DEFAULT_MATERIALS}
        for k, v in CATALOGUE.snapshot()[0].items()
    }
    aliases = {k: {a: i for a, i in v.items() if i in entries[k]} for k, v in CATALOGUE.snapshot()[1].items()}
    return entries, aliases


# ------------------------------------------------------------------ campaigns over the new buffer
def test_campaign_accepts_a_space_and_observations_with_the_new_buffer(catalogue, tmp_path) -> None:
    from surrogate.campaign import Campaign
    from surrogate.objectives import Objective

    use_materials(EXAMPLE)
    space = DesignSpace(buffers=["SiO2", "Al2O3"])
    assert space.buffers == ("sio2", "al2o3")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    campaign = Campaign.create("films", Objective("rate_retention", c_rate=10), space, storage=storage)
    observed = pd.DataFrame(
        [{"buffer": "al2o3", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10, "rate_retention": 0.5}]
    )
    summary = campaign.observe(observed)
    assert summary  # recorded: the observation was validated with the catalogue
    assert DesignSpace.from_dict(space.to_dict()) == space


def test_campaign_suggests_the_new_buffer(catalogue, tmp_path) -> None:
    from surrogate.campaign import Campaign
    from surrogate.objectives import Objective

    use_materials(EXAMPLE)
    space = DesignSpace(buffers=["SiO2", "Al2O3"], test_temp_c=(25.0, 60.0))
    campaign = Campaign.create(
        "al2o3", Objective("rate_retention", c_rate=10), space, storage=f"sqlite:///{tmp_path / 'o.db'}"
    )
    campaign.observe(
        pd.DataFrame(
            [
                {"buffer": b, "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10, "rate_retention": r}
                for b, r in (("sio2", 0.45), ("al2o3", 0.55))
            ]
        )
    )
    suggestions = campaign.suggest(4)
    assert "al2o3" in {s.design["buffer"] for s in suggestions}


# ------------------------------------------------------------------ vocabulary rules
def _fit(family: str, data: pd.DataFrame, target: str = RATE_RETENTION, **params):
    from surrogate.evaluation import training_xy
    from surrogate.models.registry import make_model

    X, y, meta = training_xy(data, target)
    return make_model(family, target, **params).fit(X, y)


@pytest.fixture
def paper_data():
    from surrogate.dataset import load_default_dataset

    return load_default_dataset()


def test_estimators_store_the_vocabulary_they_learned(paper_data) -> None:
    without_lipon = paper_data[paper_data[BUFFER] != "lipon"]
    for family in ("gp", "trees"):
        model = _fit(family, without_lipon).estimator_
        assert model.categories_[BUFFER] == ("none", "llto_ncm", "sio2")
        assert model.vocabulary_.encoding == "onehot"


def test_one_hot_model_refuses_a_buffer_it_never_saw_naming_the_known_ones(paper_data) -> None:
    """handle_unknown='error' refuses, naming the known buffers; the default ('population') answers with the
    mixture over the trained buffers, no sharper than the spread between them."""
    from surrogate.models.base import design_batch

    without_lipon = paper_data[paper_data[BUFFER] != "lipon"]
    design = design_batch([{"buffer": "lipon", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10}])
    strict = _fit("trees", without_lipon, handle_unknown="error")
    with pytest.raises(InputError, match="lipon not in this model's training data; it knows none, llto_ncm, sio2"):
        strict.predict_batch(design, return_std=True)
    mean, std = _fit("trees", without_lipon).predict_batch(design, return_std=True)
    members = [
        strict.predict_batch(
            design_batch([{"buffer": b, "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10}]), return_std=True
        )[0][0]
        for b in ("none", "llto_ncm", "sio2")
    ]
    assert mean[0] == pytest.approx(np.mean(members))
    assert std[0] >= np.std(members)


def test_descriptor_model_predicts_an_unseen_buffer_flagged_as_extrapolation(paper_data, catalogue) -> None:
    from surrogate.evaluation import training_xy
    from surrogate.models.base import Surrogate, TrainingDomain

    use_materials(EXAMPLE)
    X, y, meta = training_xy(paper_data, RATE_RETENTION)
    model = _fit("gp", paper_data, encoding="descriptors")
    assert "buffer_log10_ionic_s_cm" in model.estimator_.vocabulary_.feature_names(RATE_RETENTION)
    surrogate = Surrogate({RATE_RETENTION: model}, {RATE_RETENTION: TrainingDomain.from_frame(X)})
    out = surrogate.predict([{"buffer": "al2o3", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10}])
    assert 0 < out.loc[0, f"{RATE_RETENTION}_mean"] < 1
    assert out.loc[0, "extrapolation"]
    assert any("buffer=al2o3" in r for r in out.loc[0, "extrapolation_reasons"])


def test_a_pickled_model_declares_its_materials_in_a_fresh_catalogue(fifth_buffer_file, catalogue) -> None:
    data = validate_frame(pd.read_csv(fifth_buffer_file))
    model = _fit("trees", data)
    blob = pickle.dumps(model)
    CATALOGUE.restore(_defaults_state())
    with pytest.raises(InputError):
        canonical_buffer("al2o3")
    loaded = pickle.loads(blob)
    assert canonical_buffer("Al2O3") == "al2o3"
    assert "al2o3" in loaded.estimator_.categories_[BUFFER]


def test_an_estimator_fitted_before_vocabularies_still_predicts(paper_data) -> None:
    """An old-format estimator (no ``vocabulary_``) encodes as it was fitted: one-hot over the paper's buffers."""
    from surrogate.models.base import design_batch

    model = _fit("gp", paper_data)
    designs = design_batch([{"buffer": b, "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10} for b in BUFFERS])
    before = model.predict_batch(designs, return_std=True)
    old = pickle.loads(pickle.dumps(model))
    del old.estimator_.__dict__["vocabulary_"]  # what a model pickled before this change looks like
    after = old.predict_batch(designs, return_std=True)
    np.testing.assert_allclose(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1])


# ------------------------------------------------------------------ material identity
def test_material_column_defaults_to_the_film_and_bounds_follow_the_material() -> None:
    raw = pd.DataFrame(
        {
            "buffer": ["none", "none", "none"],
            "anneal_temp_c": [300, 1350, 1350],
            "test_temp_c": [25, 25, 25],
            "conductivity_s_cm": [1e-5, 1e-3, 1e-3],
            "material": ["", "LLTO pellet", "llto_film"],
        }
    )
    with pytest.raises(InputError) as info:
        validate_frame(raw)
    problems = info.value.problems
    assert [(p.row, p.column) for p in problems] == [(3, ANNEAL_TEMP_C)]  # 1,350 °C: a pellet yes, a film no
    frame = validate_frame(raw.iloc[:2])
    assert frame[MATERIAL].tolist() == ["llto_film", "llto_bulk"]


def test_a_design_space_for_bulk_pellets_accepts_sintering_temperatures() -> None:
    with pytest.raises(InputError, match="anneal"):
        DesignSpace(anneal_temp_c=(25.0, 1400.0))
    space = DesignSpace(anneal_temp_c=(1000.0, 1400.0), material="LLTO pellet", name="pellets")
    assert (
        space.material == "llto_bulk"
        and space.violations({"buffer": "none", "anneal_temp_c": 1350, "test_temp_c": 25, "material": "llto_bulk"})
        == []
    )
    assert space.violations({"buffer": "none", "anneal_temp_c": 1350, "test_temp_c": 25})  # the film: another material


def test_a_prediction_for_a_material_the_model_never_saw_is_refused_or_flagged(paper_data) -> None:
    from surrogate.evaluation import fit_surrogate

    surrogate = fit_surrogate(paper_data, {CONDUCTIVITY: "physics"})
    out = surrogate.predict([{"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 25, "material": "llto_bulk"}])
    assert out.loc[0, "extrapolation"]
    assert "material=llto_bulk: no training data for this material" in out.loc[0, "extrapolation_reasons"][0]
    gp = fit_surrogate(paper_data, {CONDUCTIVITY: "gp"})
    with pytest.raises(InputError, match="material: llto_bulk not in this model's training data"):
        gp.predict([{"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 25, "material": "llto_bulk"}])


def test_a_bundle_saved_before_this_change_loads_and_predicts_the_same(catalogue) -> None:
    """tests/data/models/: a Surrogate (physics, gp, physics) fitted and saved by the code before vocabularies."""
    import joblib

    folder = Path(__file__).parent / "data" / "models"
    old = joblib.load(folder / "surrogate_before_vocabularies.joblib")
    expected = pd.read_csv(folder / "surrogate_before_vocabularies.expected.csv")
    designs = [
        {"buffer": b, "anneal_temp_c": 300, "test_temp_c": 40, "c_rate": 10, "cycles": 80}
        for b in ("none", "llto_ncm", "sio2", "lipon")
    ]
    out = old.predict(designs)
    # The fitted models answer exactly as before. Interval bounds at flagged designs (cells at 40 °C, trained at
    # 25 °C) follow the current extrapolation variance, which grows with the distance from the data, so only
    # the unflagged target's bounds are compared exactly.
    exact = [c for c in expected.columns if c.endswith("_mean") or c.startswith("conductivity_s_cm")]
    for column in exact:
        np.testing.assert_allclose(out[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-9)
    assert out["extrapolation"].tolist() == expected["extrapolation"].tolist()
    for target in ("rate_retention", "capacity_retention"):
        lower, mean, upper = (out[f"{target}_{part}"].to_numpy(float) for part in ("lower", "mean", "upper"))
        assert np.all((lower < mean) & (mean < upper))
    use_materials(EXAMPLE)
    # A buffer the old bundle never saw gets today's one policy (handle_unknown='population'): an answer, flagged.
    unseen = old.predict([{"buffer": "al2o3", "anneal_temp_c": 300, "test_temp_c": 40, "c_rate": 10}])
    assert unseen.loc[0, "extrapolation"]
    assert any("buffer=al2o3" in reason for reason in unseen.loc[0, "extrapolation_reasons"])
    with pytest.raises(InputError, match="material: llto_bulk not in this model's training data; it knows llto_film"):
        old.predict([{"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 40, "material": "llto_bulk"}])


# ------------------------------------------------------------------ a literature table of compositions (issue 17)
LITERATURE = Path(__file__).parent / "data" / "literature"
"""perovskites.yaml declares five perovskite compositions as materials; perovskites.csv has their room-temperature
conductivities, two of them at 0-100 °C too; perovskites_rt.csv the room-temperature rows only; llto_bulk.csv
rows of the packaged bulk pellet only. Literature-like orders of magnitude, not quotations or measurements."""


@pytest.fixture
def literature(tmp_path) -> tuple[Path, dict[str, str]]:
    """A scratch folder with the literature fixtures, and an environment with its own stores and no materials."""
    from conftest import store_env

    for path in LITERATURE.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != materials.MATERIALS_ENV}
    env.update(store_env(tmp_path), OMP_NUM_THREADS="1")
    return tmp_path, env


def _warnings(document: dict) -> str:
    return "\n".join(document["warnings"])


@pytest.mark.slow
def test_a_literature_table_trains_with_its_materials_in_worker_processes(literature) -> None:
    """`train --materials F` cross-validates in worker processes that were never given F; plots use the data."""
    from test_user_path import run

    folder, env = literature
    report = json.loads(
        run(folder, env, "data", "validate", "perovskites.csv", "--materials", "perovskites.yaml", "--json")
    )
    assert report["ok"] and "refuse" not in _warnings(report)
    command = ("train", "--data", "perovskites.csv", "--models", "physics,trees", "--materials", "perovskites.yaml")
    trained = json.loads(run(folder, env, *command, "--json"))
    conductivity = trained["targets"][CONDUCTIVITY]
    assert conductivity["champion"] == "trees"  # scored in the workers: they knew the declared compositions
    assert "unknown material" not in json.dumps(conductivity["skipped"])
    assert "one material at a time" in conductivity["skipped"]["physics"]  # the law's own limit, said
    import mlflow

    plots = mlflow.MlflowClient(trained["tracking_uri"]).list_artifacts(trained["run_id"], "plots")
    assert "plots/arrhenius.png" in {p.path for p in plots}  # drawn for the compositions, not the film


@pytest.mark.slow
def test_bulk_pellet_data_trains_whichever_family_wins(literature) -> None:
    """Rows of llto_bulk only: the champion (gp here) and the plots are asked about llto_bulk, never the film."""
    from test_user_path import run

    folder, env = literature
    trained = json.loads(run(folder, env, "train", "--data", "llto_bulk.csv", "--models", "physics,gp", "--json"))
    assert trained["targets"][CONDUCTIVITY]["champion"] == "gp"
    answer = json.loads(
        run(
            folder,
            env,
            "predict",
            "--buffer",
            "none",
            "--anneal-temp-c",
            "1250",
            "--test-temp-c",
            "25",
            "--material",
            "llto_bulk",
            "--json",
        )
    )["predictions"][0]
    assert 1e-4 < answer[CONDUCTIVITY]["mean"] < 3e-3  # the pellets' 6e-4 S/cm at 25 °C, not the film's 1e-5


@pytest.mark.slow
def test_room_temperature_rows_train_or_are_refused_by_validate_with_trains_reason(literature) -> None:
    """Room-temperature rows: what `data validate` says is what `train` does, with the same words."""
    from test_user_path import run

    folder, env = literature
    # five compositions at four sintering temperatures: cross-validation by sintering temperature works
    report = json.loads(
        run(folder, env, "data", "validate", "perovskites_rt.csv", "--materials", "perovskites.yaml", "--json")
    )
    assert report["ok"] and "refuse" not in _warnings(report) and "test_temp cannot be scored" in _warnings(report)
    trained = json.loads(
        run(folder, env, "train", "--data", "perovskites_rt.csv", "--materials", "perovskites.yaml", "--json")
    )  # every family, as validate assumes
    assert trained["targets"][CONDUCTIVITY]["champion"] is not None

    # one sintering temperature, one test temperature: nothing can be cross-validated and no Arrhenius law fitted
    one = pd.read_csv(folder / "perovskites_rt.csv").assign(anneal_temp_c=1300.0, material="llto_034")
    one.assign(sample_id=[f"pellet-{i}" for i in range(len(one))]).to_csv(folder / "one_temperature.csv", index=False)
    report = json.loads(
        run(folder, env, "data", "validate", "one_temperature.csv", "--materials", "perovskites.yaml", "--json")
    )
    (warning,) = [w for w in report["warnings"] if "will refuse" in w]
    reason = warning.split("surrogate train will refuse this file: ", 1)[1]
    assert "an Arrhenius fit needs measurements at ≥ 2 test temperatures" in reason
    fresh = folder / "fresh"
    fresh.mkdir()
    (fresh / "one_temperature.csv").write_bytes((folder / "one_temperature.csv").read_bytes())
    (fresh / "perovskites.yaml").write_bytes((folder / "perovskites.yaml").read_bytes())
    from conftest import store_env

    done = subprocess_run(
        fresh, {**env, **store_env(fresh)}, "train", "--data", "one_temperature.csv", "--materials", "perovskites.yaml"
    )
    assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in fresh.iterdir()) == ["one_temperature.csv", "perovskites.yaml"]  # nothing written


def subprocess_run(folder: Path, env: dict[str, str], *args: str):
    """``surrogate ARGS`` in a fresh process in ``folder``, whatever its exit code."""
    import subprocess

    from test_user_path import SURROGATE

    return subprocess.run([SURROGATE, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
