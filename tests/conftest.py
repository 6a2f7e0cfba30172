"""Shared test setup: no telemetry, stores in temporary folders, never the user's ./mlruns."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture
def tmp_stores(tmp_path, monkeypatch):
    """MLflow tracking, artifacts and Optuna storage under a temporary folder; returns that folder."""
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("SURROGATE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path
