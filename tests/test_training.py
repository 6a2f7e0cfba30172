"""Training orchestration, MLflow tracking and registry, tuning, and the train/predict/facts CLI (temporary stores)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from surrogate.cli import main
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION, TARGETS
from surrogate.errors import DataValidationError, InputError
from surrogate.tracking import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, champion_info, load_champion, load_pyfunc

BAD_DATA = Path(__file__).parent / "data" / "bad" / "many_problems.csv"
FAST_FAMILIES = "physics"


def _runs(status: str | None = None) -> pd.DataFrame:
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    runs = mlflow.search_runs(experiment_ids=experiments) if experiments else pd.DataFrame()
    if status is not None and not runs.empty:
        runs = runs[runs["status"] == status]
    return runs


def _train_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code = main(["train", "--models", FAST_FAMILIES, "--json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_train_end_to_end_tracks_registers_and_predicts(tmp_stores, capsys):
    document = _train_json(capsys)
    assert document["data"]["reconstruction"] is True
    assert set(document["targets"]) == set(TARGETS)
    for entry in document["targets"].values():
        assert entry["champion"] == "physics"
        assert {"rmse", "mae", "r2", "coverage"} <= set(entry["families"]["physics"])
    assert [row["anneal_temp_c"] for row in document["activation_energies"]] == [25.0, 300.0, 400.0]
    assert all(0.1 < row["ea_ev"] < 0.5 and 0 < row["ea_se_ev"] < 0.05 for row in document["activation_energies"])
    assert document["train_time_s"] > 0

    client = mlflow.MlflowClient()
    run = client.get_run(document["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_hash"] == document["data"]["hash"]
    assert (
        "coverage" in run.data.tags["selection_rule"] and document["selection_rule"] == run.data.tags["selection_rule"]
    )
    for target in TARGETS:
        assert document["targets"][target]["champion_reason"].startswith("lowest CV score")
        assert document["targets"][target]["sample_variance"]["source"] in ("replicates", "prior")
    metrics = run.data.metrics
    for target in TARGETS:
        assert f"champion.{target}.rmse" in metrics
        assert f"cv.physics.{target}.coverage" in metrics
    assert "ea_ev.anneal_300c" in metrics and "train_time_s" in metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    for name in ("arrhenius", "rate_retention", "capacity_fade", "parity_conductivity_s_cm_anneal_state"):
        assert f"plots/{name}.png" in artifacts
    assert any(p.startswith("plots/residuals_") for p in artifacts)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cv_report.json", "activation_energies.csv"} <= top
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest == document["data"]["hash"][:16]
    children = _runs()
    children = children[children["tags.mlflow.parentRunId"] == run.info.run_id]
    assert len(children) == len(TARGETS)  # one nested CV run per family × target
    assert "metrics.anneal_state.rmse_natural" in children.columns

    version = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    assert version.run_id == run.info.run_id
    info = champion_info()
    assert info["version"] == str(version.version) and info["data_hash"] == document["data"]["hash"]
    assert set(info["cv_scores"]) == set(TARGETS) and "rmse" in info["cv_scores"][CONDUCTIVITY]

    # the loaded pyfunc answers exactly like the in-memory surrogate
    designs = pd.DataFrame(
        {
            "buffer": ["none", "sio2", "LiPON", "llto_ncm"],
            "anneal_temp_c": [25.0, 300.0, 350.0, 400.0],
            "test_temp_c": [25.0, 60.0, 25.0, 120.0],
            "c_rate": [30.0, 5.0, 10.0, 1.0],
            "cycles": [100.0, 500.0, 50.0, 10.0],
            "protocol": ["standard", "long", "standard", "standard"],
        }
    )
    surrogate = load_champion()
    expected = surrogate.predict(designs, level=0.8)
    got = load_pyfunc().predict(designs, params={"level": 0.8})
    numeric = [c for c in expected.columns if c.endswith(("_mean", "_lower", "_upper"))]
    np.testing.assert_allclose(got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-12)
    assert got["extrapolation"].tolist() == expected["extrapolation"].tolist()
    assert [list(r) for r in got["extrapolation_reasons"]] == expected["extrapolation_reasons"].tolist()
    # optional columns may be left out of the pyfunc input
    minimal = load_pyfunc().predict(designs[["buffer", "anneal_temp_c", "test_temp_c"]])
    assert len(minimal) == len(designs)

    # surrogate predict --json: per target mean/lower/upper, extrapolation flagged at 100 °C for the cells
    args = ["predict", "--buffer", "SiO2", "--anneal-temp-c", "300", "--test-temp-c", "100", "--json"]
    assert main(args) == 0
    answer = json.loads(capsys.readouterr().out)
    prediction = answer["predictions"][0]
    assert prediction["design"]["buffer"] == "sio2"
    for target in TARGETS:
        values = prediction[target]
        assert values["lower"] <= values["mean"] <= values["upper"]
    assert prediction["extrapolation"] is True
    assert any(r.startswith(f"{RATE_RETENTION}: test_temp_c=100") for r in prediction["extrapolation_reasons"])
    assert answer["notice"] and answer["model"]["reconstruction"] is True

    args = ["predict", "--buffer", "none", "--anneal-temp-c", "300", "--test-temp-c", "25", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["extrapolation"] is False

    assert main(["predict", "--buffer", "none", "--anneal-temp-c", "300", "--test-temp-c", "100"]) == 0
    text = capsys.readouterr().out
    assert "EXTRAPOLATION" in text and "not measurements" in text

    # the paper's facts, checked against the champion's means
    code = main(["facts", "--json"])
    facts = json.loads(capsys.readouterr().out)
    assert code == (0 if facts["all_hold"] else 1)
    by_id = {f["id"]: f for f in facts["facts"]}
    assert by_id["structure_amorphous_crystalline"]["status"] == "skipped"  # lab physics only
    assert isinstance(by_id["ea_300c"]["model"], float)


def test_bad_data_is_reported_row_by_row_and_starts_no_run(tmp_stores, capsys):
    code = main(["train", "--data", str(BAD_DATA), "--models", FAST_FAMILIES])
    err = capsys.readouterr().err
    assert code == 2
    assert "row 1" in err and "problem(s)" in err
    mlflow.set_tracking_uri(f"sqlite:///{tmp_stores / 'mlruns' / 'mlflow.db'}")
    assert _runs("RUNNING").empty
    from training.train import train

    with pytest.raises(DataValidationError):
        train(BAD_DATA, families=["physics"], progress=False)
    assert _runs().empty


def test_failure_inside_the_run_marks_it_failed(tmp_stores, monkeypatch):
    import training.train
    from training.train import train

    def broken(*args, **kwargs):
        raise RuntimeError("refit exploded")

    monkeypatch.setattr(training.train, "select_champions", broken)
    with pytest.raises(RuntimeError, match="refit exploded"):
        train(None, families=["physics"], progress=False)
    runs = _runs()
    parents = runs[runs["tags.kind"] == "train"]
    assert parents["status"].tolist() == ["FAILED"]
    assert _runs("RUNNING").empty


def test_predict_without_a_model_says_train_first(tmp_stores, capsys):
    assert main(["predict", "--buffer", "none", "--anneal-temp-c", "300", "--test-temp-c", "25"]) == 2
    assert "run `surrogate train` first" in capsys.readouterr().err
    with pytest.raises(InputError, match="surrogate train"):
        champion_info()


def test_predict_rejects_bad_design(tmp_stores, capsys):
    args = ["predict", "--buffer", "none", "--anneal-temp-c", "300", "--test-temp-c", "25", "--c-rate", "-1"]
    assert main(args) == 2
    assert "--c-rate" in capsys.readouterr().err
    assert main(["train", "--models", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_tune_creates_nested_trial_runs(tmp_stores, capsys):
    args = ["tune", "--trials", "2", "--family", "physics", "--target", CAPACITY_RETENTION, "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    (study,) = result["studies"]
    assert study["skipped"] is None and study["best_value"] > 0 and "knee" in study["best_params"]
    runs = _runs()
    trials = runs[runs["tags.mlflow.parentRunId"] == result["run_id"]]
    assert len(trials) == 2
    assert set(trials["tags.kind"]) == {"tune-trial"} and "params.knee" in trials.columns
    assert (runs.loc[runs["run_id"] == result["run_id"], "status"] == "FINISHED").all()
    assert main(["tune", "--trials", "2", "--family", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.server
def test_ui_serves_the_project_store(tmp_stores):
    """`surrogate ui` starts the MLflow UI on the project's store; it answers /health and lists the experiment."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.create_experiment("ui-check")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen(
        [sys.executable, "-m", "surrogate.cli", "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert ui.poll() is None, f"surrogate ui exited early: {ui.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "the MLflow UI did not answer /health within 90 s"
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {e["name"] for e in json.load(response)["experiments"]}
        assert "ui-check" in names
    finally:
        ui.terminate()
        try:
            ui.wait(timeout=20)
        except subprocess.TimeoutExpired:
            ui.kill()
