"""Training orchestration, MLflow tracking and registry, tuning, and the train/predict/facts CLI (temporary stores)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from surrogate.cli import main
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION, TARGETS
from surrogate.errors import DataValidationError, InputError
from surrogate.tracking import (
    CHAMPION_ALIAS,
    EXPERIMENT_KIND_TAG,
    REGISTERED_MODEL_NAME,
    champion_info,
    load_champion,
    load_pyfunc,
)

BAD_DATA = Path(__file__).parent / "data" / "bad" / "many_problems.csv"
FAST_FAMILIES = "physics"


def _runs(status: str | None = None) -> pd.DataFrame:
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # this test's store, not the last one used
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


def test_train_end_to_end_tracks_registers_and_predicts(use_trained_store, capsys):
    _, document = use_trained_store
    assert document["data"]["reconstruction"] is True
    assert set(document["targets"]) == set(TARGETS)
    for entry in document["targets"].values():
        assert entry["champion"] == "physics"
        assert {"rmse", "mae", "r2", "coverage"} <= set(entry["families"]["physics"])
    assert [row["anneal_temp_c"] for row in document["activation_energies"]] == [25.0, 300.0, 400.0]
    assert all(0.1 < row["ea_ev"] < 0.5 and 0 < row["ea_se_ev"] < 0.05 for row in document["activation_energies"])
    assert document["train_time_s"] > 0 and document["kept"] == {}

    client = mlflow.MlflowClient()
    run = client.get_run(document["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_hash"] == document["data"]["hash"]
    assert (
        "coverage" in run.data.tags["selection_rule"] and document["selection_rule"] == run.data.tags["selection_rule"]
    )
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"  # model training, not GenAI
    for target in TARGETS:
        assert document["targets"][target]["champion_reason"].startswith("lowest CV score")
        assert document["targets"][target]["sample_variance"]["source"] in ("replicates", "prior")
    # metrics: grouped by target, units in the names, no champion.* copy of a cv.* value
    metrics = run.data.metrics
    assert not [k for k in metrics if k.startswith(("champion.", "cv."))]
    assert "cv/conductivity_s_cm/rmse_log10_decades" in metrics and "cv/conductivity_s_cm/interval_coverage" in metrics
    for target in (RATE_RETENTION, CAPACITY_RETENTION):
        assert 0 < metrics[f"cv/{target}/rmse_fraction"] < 0.05 and f"cv/{target}/rmse_logit" in metrics
    assert metrics["cv/conductivity_s_cm/rmse_log10_decades"] == pytest.approx(
        document["targets"][CONDUCTIVITY]["families"]["physics"]["rmse"]
    )
    assert "arrhenius/anneal_300c/ea_ev" in metrics and "time/train_s" in metrics
    # fade forecasts (forward chaining, which takes part in selection): pooled and per protocol
    assert run.data.tags[f"forecast_best.{CAPACITY_RETENTION}"] == "physics"
    for protocol in ("long", "standard"):
        assert 0 < metrics[f"forecast/{CAPACITY_RETENTION}/physics/{protocol}/rmse_units"] < 0.2
        assert 0 < metrics[f"forecast/{CAPACITY_RETENTION}/physics/{protocol}/coverage"] <= 1
    # the description: champion per target in physical units, a warning where CV coverage is below the level
    note = run.data.tags["mlflow.note.content"]
    assert "S/cm" in note and "fraction" in note and "reconstruction" in note
    coverage = document["targets"][CONDUCTIVITY]["families"]["physics"]["coverage"]
    assert (coverage < 0.9) == ("⚠" in note) == (CONDUCTIVITY in document["coverage_warnings"])
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
    assert "metrics.split/anneal_state/rmse_log10_decades" in children.columns
    assert "metrics.cv/rate_retention/rmse_fraction" in children.columns  # the same names as the parent's

    version = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    assert version.run_id == run.info.run_id
    assert "S/cm" in version.description and version.tags[f"champion.{CONDUCTIVITY}"] == "physics"
    assert "@champion" in client.get_registered_model(REGISTERED_MODEL_NAME).description
    info = champion_info()
    assert info["version"] == str(version.version) and info["data_hash"] == document["data"]["hash"]
    assert set(info["cv_scores"]) == set(TARGETS) and "rmse" in info["cv_scores"][CONDUCTIVITY]
    assert info["cv_scores"][RATE_RETENTION]["rmse_units"] == pytest.approx(
        document["targets"][RATE_RETENTION]["families"]["physics"]["rmse_units"]
    )

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
    assert code == 0  # FAIL rows are the report, not an error
    by_id = {f["id"]: f for f in facts["facts"]}
    assert by_id["structure_amorphous_crystalline"]["status"] == "skipped"  # lab physics only
    assert isinstance(by_id["ea_300c"]["model"], float)


def test_bad_data_is_reported_row_by_row_and_starts_no_run(tmp_stores, capsys):
    code = main(["train", "--data", str(BAD_DATA), "--models", FAST_FAMILIES])
    err = capsys.readouterr().err
    assert code == 2
    assert "row 1" in err and "problem(s)" in err
    from training.train import train

    with pytest.raises(DataValidationError):
        train(BAD_DATA, families=["physics"], progress=False)
    assert not (tmp_stores / "mlruns" / "mlflow.db").exists()  # exit 2 writes nothing, not even the store


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


# ------------------------------------------------------------------ never lose a good model
def _without(target: str, folder: Path) -> Path:
    """The embedded data without any ``target`` rows, as a measurements CSV in ``folder``."""
    from surrogate.dataset import load_default_dataset

    data = load_default_dataset()
    path = folder / f"no_{target}.csv"
    data[data[target].isna()].drop(columns=[target]).to_csv(path, index=False)
    return path


def test_training_without_a_champion_target_is_refused_and_writes_nothing(copy_trained_store, capsys):
    folder, _ = copy_trained_store
    before = len(_runs())
    partial = _without(CAPACITY_RETENTION, folder)
    assert main(["train", "--data", str(partial), "--models", FAST_FAMILIES]) == 2
    err = capsys.readouterr().err
    assert "version 1 has a model for capacity_retention" in err and "0 training rows" in err
    assert "--missing-targets keep" in err and "Nothing was written" in err
    assert len(_runs()) == before
    assert champion_info()["version"] == "1"


def test_keep_carries_the_earlier_champions_model_and_says_so(copy_trained_store, capsys):
    folder, first = copy_trained_store
    partial = _without(CAPACITY_RETENTION, folder)
    document = _train_json(capsys, "--data", str(partial), "--missing-targets", "keep", "--promote")
    assert document["kept"] == {CAPACITY_RETENTION: f"{REGISTERED_MODEL_NAME} version 1"}
    assert document["registered_model"]["version"] == "2"
    champion = load_champion()
    assert set(champion.targets) == set(TARGETS)
    assert champion.info["families"][CAPACITY_RETENTION] == "physics"
    design = pd.DataFrame([{"buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "cycles": 300}])
    earlier = load_champion(f"models:/{REGISTERED_MODEL_NAME}/1").predict(design)
    np.testing.assert_allclose(champion.predict(design)["capacity_retention_mean"], earlier["capacity_retention_mean"])
    client = mlflow.MlflowClient()
    version = client.get_model_version(REGISTERED_MODEL_NAME, "2")
    assert "kept from llto-surrogate version 1" in version.description
    assert version.tags[f"kept.{CAPACITY_RETENTION}"] == f"{REGISTERED_MODEL_NAME} version 1"
    assert "kept from" in client.get_run(document["run_id"]).data.tags["mlflow.note.content"]
    info = champion_info()
    assert info["kept"] == {CAPACITY_RETENTION: f"{REGISTERED_MODEL_NAME} version 1"}
    assert info["cv_scores"][CAPACITY_RETENTION]["rmse"] == pytest.approx(
        first["targets"][CAPACITY_RETENTION]["families"]["physics"]["rmse"]
    )
    from surrogate.cli.train import format_train_report

    assert f"{CAPACITY_RETENTION}: the model of {REGISTERED_MODEL_NAME} version 1" in format_train_report(document)


def test_partial_model_facts_and_search_explain_what_is_missing(copy_trained_store, capsys):
    folder, _ = copy_trained_store
    partial = _without(CAPACITY_RETENTION, folder)
    document = _train_json(capsys, "--data", str(partial), "--missing-targets", "drop", "--promote")
    assert (
        document["registered_model"]["version"] == "2"
        and CAPACITY_RETENTION not in document["targets"]
        or (document["targets"][CAPACITY_RETENTION]["champion"] is None)
    )
    for argv in (
        ["facts"],
        ["facts", "--model", f"models:/{REGISTERED_MODEL_NAME}/2"],
        ["search", "--objective", "rate_x_capacity", "--trials", "2"],
        ["search", "--pareto", "--trials", "2", "--model", f"models:/{REGISTERED_MODEL_NAME}/2"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "has no model for capacity_retention" in err and "Traceback" not in err, err
        assert "--model models:/llto-surrogate/<version>" in err
    # the earlier, complete version still answers
    assert main(["facts", "--model", f"models:/{REGISTERED_MODEL_NAME}/1", "--json"]) in (0, 1)
    capsys.readouterr()


def test_read_only_commands_create_no_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("SURROGATE_HOME", str(tmp_path / ".surrogate"))
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["predict", "--buffer", "none", "--anneal-temp-c", "300", "--test-temp-c", "25"],
        ["facts"],
        ["search", "--pareto", "--trials", "2"],
        ["ui", "--port", "5999"],
    ):
        assert main(argv) == 2, argv
        assert "surrogate train" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the logged model outside the repository
_LOAD_OUTSIDE = """
import importlib.util, sys
# drop the checkout from the path, but not the venv's site-packages (a venv may live inside the checkout)
sys.path[:] = [p for p in sys.path if not p.startswith(sys.argv[2]) or p.startswith(sys.prefix)]
def _editable(finder):  # setuptools' editable-install finder (a class whose module is __editable___..._finder)
    return "editable" in f"{getattr(finder, '__module__', '')} {getattr(finder, '__name__', '')}".lower()
sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
assert importlib.util.find_spec("surrogate") is None, "the project is still importable"
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
row = model.predict(pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [300.0], "test_temp_c": [25.0]})).iloc[0]
import surrogate
print(float(row["conductivity_s_cm_mean"]), surrogate.__file__)
"""


def test_logged_model_loads_where_the_project_is_not_importable(use_trained_store, tmp_path):
    """The model's artifacts carry the `surrogate` package: a python that cannot import the project loads it."""
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"))
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    script = tmp_path / "load.py"
    script.write_text(_LOAD_OUTSIDE)
    repo = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(copy), repo],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    value, where = done.stdout.split()
    expected = (
        load_champion()
        .predict_means(pd.DataFrame({"buffer": ["sio2"], "anneal_temp_c": [300.0], "test_temp_c": [25.0]}))[
            CONDUCTIVITY
        ]
        .iloc[0]
    )
    assert float(value) == pytest.approx(expected, rel=1e-9)
    assert where.startswith(str(copy / "code" / "surrogate"))


# ------------------------------------------------------------------ SIGTERM and exit 2, for real
def _store_env(folder: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}", "SURROGATE_HOME": str(folder)}


def _store_runs(folder: Path) -> pd.DataFrame:
    import sqlite3

    with sqlite3.connect(folder / "mlruns" / "mlflow.db") as db:
        return pd.read_sql("select run_uuid, status, name from runs", db)


def _start_train(folder: Path, models: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "surrogate.cli", "train", "--models", models, "--json"],
        cwd=folder,
        env=os.environ | _store_env(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_train_leaves_no_worker_processes_and_the_next_train_marks_its_run_killed(tmp_path):
    """Issue 18, finding 8: before, the loky workers outlived a kill -9 (65 min, 760 MB) and the run stayed RUNNING."""
    import psutil

    (tmp_path / "mlruns").mkdir()
    train = _start_train(tmp_path, "physics,trees")
    parent = psutil.Process(train.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 900  # liveness limit only
        while not workers:  # wait until cross-validation runs in worker processes
            assert train.poll() is None, train.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no worker process ever started"
            workers = [p for p in parent.children(recursive=True) if "python" in p.name().lower()]
            time.sleep(0.5)
        time.sleep(1.0)  # let the worker's initializer start its parent watch
        workers = parent.children(recursive=True)
        train.send_signal(signal.SIGKILL)
        train.communicate(timeout=60)
    finally:
        if train.poll() is None:
            train.kill()
    gone, alive = psutil.wait_procs(workers, timeout=60)
    for process in alive:
        process.kill()
    assert not alive, f"worker processes outlived kill -9 of train: {[p.pid for p in alive]}"
    runs = _store_runs(tmp_path)
    killed_run = runs.loc[runs["name"].str.startswith("train "), "run_uuid"].tolist()
    assert runs.loc[runs["run_uuid"].isin(killed_run), "status"].tolist() == ["RUNNING"]  # nobody could end it

    again = _start_train(tmp_path, "physics")
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    import mlflow

    client = mlflow.tracking.MlflowClient(_store_env(tmp_path)["MLFLOW_TRACKING_URI"])
    old = client.get_run(killed_run[0])
    assert old.info.status == "KILLED"
    assert f"process {train.pid}" in old.data.tags["ended_by"] and "kill -9" in old.data.tags["ended_by"]
    assert old.data.tags["pid"] == str(train.pid) and old.data.tags["host"]
    assert "RUNNING" not in set(_store_runs(tmp_path)["status"])  # its nested runs were ended with it


def test_a_running_run_of_a_live_process_or_another_host_is_left_alone(tmp_stores):
    import mlflow

    from training.runs import mark_runs_of_dead_processes, process_tags

    mlflow.set_experiment("left-alone")
    with mlflow.start_run() as live:  # this process: alive
        mlflow.set_tags(process_tags())
    mlflow.tracking.MlflowClient().update_run(live.info.run_id, "RUNNING")
    other = mlflow.start_run()
    mlflow.set_tags({**process_tags(), "host": "another-host", "pid": "999999999"})
    mlflow.end_run()
    mlflow.tracking.MlflowClient().update_run(other.info.run_id, "RUNNING")
    gone = mlflow.start_run()
    mlflow.set_tags({**process_tags(), "pid": "999999999"})  # no such process on this host
    mlflow.end_run()
    mlflow.tracking.MlflowClient().update_run(gone.info.run_id, "RUNNING")
    assert mark_runs_of_dead_processes("left-alone") == [gone.info.run_id]
    client = mlflow.tracking.MlflowClient()
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"
    assert client.get_run(gone.info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_and_leaves_no_worker_processes(tmp_path):
    import psutil

    (tmp_path / "mlruns").mkdir()
    env = os.environ | _store_env(tmp_path)
    train = subprocess.Popen(
        [sys.executable, "-m", "surrogate.cli", "train", "--models", "physics,trees", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(train.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 900  # liveness limit only
        while not workers:  # wait until cross-validation runs in worker processes
            assert train.poll() is None, train.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no worker process ever started"
            workers = [p for p in parent.children(recursive=True) if "python" in p.name().lower()]
            time.sleep(0.5)
        workers = parent.children(recursive=True)
        train.send_signal(signal.SIGTERM)
        _, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 143, err[-3000:]
    assert "terminated" in err and "Traceback" not in err
    runs = _store_runs(tmp_path)
    assert "RUNNING" not in set(runs["status"])
    assert runs.loc[runs["name"].str.startswith("train "), "status"].tolist() == ["KILLED"]
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"worker processes left behind: {[p.pid for p in alive]}"


@pytest.mark.slow
def test_exit_2_writes_no_run_and_no_store(tmp_path):
    env = os.environ | _store_env(tmp_path)
    for data in (BAD_DATA, Path(__file__).parent / "data" / "good" / "with_extra_column.csv"):
        done = subprocess.run(
            [sys.executable, "-m", "surrogate.cli", "train", "--data", str(data), "--models", "physics"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_small_data_registers_a_version_without_replacing_the_champion_unless_promoted(copy_trained_store, capsys):
    """38 rows of 2 buffers do not silently replace a champion trained on 1,478 rows of 4 (issue 17)."""
    from surrogate.tracking import champion_info

    small = Path(__file__).resolve().parents[1] / "examples" / "measurements.csv"
    assert main(["train", "--data", str(small), "--models", "physics"]) == 0
    text = capsys.readouterr().out
    assert "version 2, not the champion" in text and "version 1 stays champion" in text
    assert "lipon" in text and "--promote" in text
    assert champion_info()["version"] == "1"
    assert main(["facts", "--json"]) == 0  # the champion still answers the paper's facts
    capsys.readouterr()
    document = _train_json(capsys, "--data", str(small), "--promote")
    assert document["registered_model"]["promoted"] and champion_info()["version"] == "3"
    code = main(["facts", "--json"])
    facts = json.loads(capsys.readouterr().out)
    assert code == 0 and not facts["all_hold"]  # FAIL rows reported, exit 0: they are the answer, not an error


# ------------------------------------------------------------------ promotion on the champion's own validation split
def _conductivity_tables(folder: Path) -> None:
    """champion.csv: the embedded conductivity rows (9 films, 54 rows); better.csv: one film per anneal state of
    another virtual-lab run (18 rows); worse.csv: 18 rows of that run without the 400 °C films."""
    from surrogate.dataset import build_default_dataset, load_default_dataset

    embedded = load_default_dataset()
    embedded[embedded[CONDUCTIVITY].notna()].to_csv(folder / "champion.csv", index=False)
    other = build_default_dataset(seed=11)
    other = other[other[CONDUCTIVITY].notna()]
    other[other["sample_id"].str.endswith("-1")].to_csv(folder / "better.csv", index=False)
    other[other["anneal_temp_c"] < 350].iloc[:18].to_csv(folder / "worse.csv", index=False)


@pytest.mark.slow
def test_small_data_becomes_champion_only_when_better_on_the_champions_own_validation_split(tmp_path) -> None:
    """18 rows against 54 are held back, unless they predict the champion's rows better than its own CV did."""
    from conftest import store_env
    from test_user_path import run

    _conductivity_tables(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "SURROGATE_MATERIALS"} | store_env(tmp_path)
    train = ("train", "--models", "physics", "--json", "--data")
    first = json.loads(run(tmp_path, env, *train, "champion.csv"))["registered_model"]
    assert first["promoted"] and first["version"] == "1"

    # 18 rows without the 400 °C films: held back, and not better on the champion's rows (the words a user reads)
    text = run(tmp_path, env, "train", "--models", "physics", "--data", "worse.csv")
    assert "version 2, not the champion" in text and "version 1 stays champion" in text
    assert "18 rows against the champion's 54" in text and "not better on version 1's validation split" in text

    # 18 rows, one film per anneal state: better on the champion's rows than its own CV, so promoted
    better = json.loads(run(tmp_path, env, *train, "better.csv"))["registered_model"]
    assert better["promoted"] and better["alias"] == CHAMPION_ALIAS and better["version"] == "3", better["promotion"]
    assert "replaces version 1 as champion although 18 rows against the champion's 54" in better["promotion"]
    assert "better on version 1's validation split" in better["promotion"]
    assert "conductivity_s_cm RMSE" in better["promotion"]


def test_a_champion_whose_data_is_gone_is_not_compared_and_says_why(tmp_path) -> None:
    from surrogate.models.base import Surrogate
    from training.train import compare_on_champion_split

    champion = Surrogate(models={}, domains={}, info={"data_source": str(tmp_path / "gone.csv"), "data_hash": "x"})
    better, why = compare_on_champion_split(champion, pd.DataFrame(), ("1", champion), {})
    assert not better and "gone.csv" in why and "cannot be read again" in why


def test_the_champions_rows_that_the_new_data_also_has_are_not_held_out() -> None:
    from surrogate.dataset import load_default_dataset
    from training.train import _held_out

    champion_rows = load_default_dataset()
    assert _held_out(champion_rows, champion_rows).empty
    assert len(_held_out(champion_rows, champion_rows.iloc[:100])) == len(champion_rows) - 100


# ------------------------------------------------------------------ validate and train agree
def _table(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    from surrogate.schema import validate_frame

    frame = pd.DataFrame(rows, columns=["buffer", "anneal_temp_c", "test_temp_c", CONDUCTIVITY])
    return validate_frame(frame)


def test_three_temperatures_of_one_film_are_trained_by_the_physics_law_as_validate_says() -> None:
    from surrogate.evaluation import cv_readiness, select_champions, target_outlook, training_refusal

    data = _table([("none", 300.0, t, s) for t, s in ((25.0, 1e-5), (50.0, 2e-5), (80.0, 4e-5))])
    outlook = target_outlook(data, CONDUCTIVITY)
    assert outlook.plan == "fallback" and training_refusal(data) is None
    assert any("physics law will be fitted" in w for w in cv_readiness(data))
    selection = select_champions(data, ["physics"], progress=False, n_jobs=1)
    assert selection.champions == {CONDUCTIVITY: "physics"}
    assert selection.report["targets"][CONDUCTIVITY]["selection_skipped"]


def test_one_temperature_is_refused_by_validate_and_train_with_the_same_reason(tmp_stores, capsys) -> None:
    from surrogate.evaluation import cv_readiness, target_outlook, training_refusal

    data = _table([("none", anneal, 25.0, 1e-5 * (1 + i)) for i, anneal in enumerate((300.0, 300.0, 300.0, 300.0))])
    assert target_outlook(data, CONDUCTIVITY).plan == "none"
    reason = training_refusal(data)
    assert "an Arrhenius fit needs measurements at ≥ 2 test temperatures" in reason
    assert cv_readiness(data) == [f"surrogate train will refuse this file: {reason}"]
    path = tmp_stores / "room_temperature.csv"
    data.to_csv(path, index=False)
    assert main(["data", "validate", str(path)]) == 0
    assert reason in capsys.readouterr().err
    assert main(["train", "--data", str(path), "--models", "physics"]) == 2
    assert reason in capsys.readouterr().err and _runs().empty


def test_a_sigterm_whose_exception_python_swallows_still_ends_training():
    """A SIGTERM handled inside a weakref callback (as SQLAlchemy's, seen in CI) raises where Python ignores it."""
    import weakref

    from training.train import Terminated, _sigterm_raises

    class Thing:
        pass

    def kill_me(_ref: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecode inside the callback: the handler runs (and raises) here
            pass

    with pytest.raises(Terminated), _sigterm_raises():
        thing = Thing()
        ref = weakref.ref(thing, kill_me)
        del thing  # the callback runs, the Terminated raised in it is "ignored" by Python
        assert ref() is None
