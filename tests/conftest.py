"""Shared test setup: no telemetry, stores in temporary folders, never the user's ./mlruns.

Heavy modules (mlflow, torch, the service) are imported inside the tests and fixtures that need
them, not here, so that collecting the suite stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

TEST_ARTIFACTS_ENV = "SURROGATE_TEST_ARTIFACTS"


@pytest.fixture(scope="session")
def test_artifacts() -> Path:
    """Where tests keep screenshots and other artifacts: ``$SURROGATE_TEST_ARTIFACTS`` or ``tests/artifacts``."""
    path = Path(os.environ.get(TEST_ARTIFACTS_ENV) or Path(__file__).parent / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_env(folder: Path) -> dict[str, str]:
    """Environment variables that put MLflow and Optuna stores under ``folder``."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        # mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI to os.environ; an earlier test's would win here
        "MLFLOW_REGISTRY_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        "SURROGATE_HOME": str(folder),
    }


def _use_store(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the environment (and MLflow's process-wide client settings, if loaded) at ``folder``'s stores."""
    env = store_env(folder)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(folder)
    if "mlflow" in sys.modules:  # an earlier test may have pointed MLflow's global client elsewhere
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])


@pytest.fixture
def tmp_stores(tmp_path, monkeypatch):
    """MLflow tracking, artifacts and Optuna storage under a temporary folder; returns that folder."""
    (tmp_path / "mlruns").mkdir()
    _use_store(tmp_path, monkeypatch)
    return tmp_path


@contextlib.contextmanager
def _in_store(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    with mock.patch.dict(os.environ, store_env(folder)):
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """One store with a physics-only champion (version 1) on the embedded data, trained once per session.

    Returns ``(folder, the JSON document of `surrogate train --json`)``. Tests that only read it use
    :func:`use_trained_store`; tests that write copy it (:func:`copy_trained_store`).
    """
    from surrogate.cli import main

    folder = tmp_path_factory.mktemp("trained")
    (folder / "mlruns").mkdir()
    out = io.StringIO()
    with _in_store(folder), contextlib.redirect_stdout(out):
        code = main(["train", "--models", "physics", "--json"])
    assert code == 0, out.getvalue()[-2000:]
    return folder, json.loads(out.getvalue())


@pytest.fixture
def use_trained_store(trained_store, monkeypatch) -> tuple[Path, dict[str, Any]]:
    """The session's trained store as this test's stores (read it; use :func:`copy_trained_store` to write)."""
    folder, document = trained_store
    _use_store(folder, monkeypatch)
    return folder, document


@pytest.fixture
def copy_trained_store(trained_store, tmp_path, monkeypatch) -> tuple[Path, dict[str, Any]]:
    """A private copy of the session's trained store, as this test's stores (free to write)."""
    folder, document = trained_store
    copy = tmp_path / "store"
    shutil.copytree(folder, copy)
    _use_store(copy, monkeypatch)
    return copy, document


# ------------------------------------------------------------------ browser tests
CHROMIUM_PATH = Path(os.environ.get("SURROGATE_TEST_CHROMIUM", "/usr/bin/chromium"))
"""Debian's chromium, which Playwright drives (its own download does not work here); ``SURROGATE_TEST_CHROMIUM``
names another binary (tests only: e.g. a missing one, to check that browser tests skip and say why)."""


BROWSER_TIMEOUT_MS = 120_000
"""How long a page may take to load or show an element (Playwright's own default is 30 s, too short at load 10): a
liveness limit on a busy machine, not a budget. Set on every page with ``page.set_default_timeout``."""


def running_in_ci() -> bool:
    """``CI`` is set to a true value (CI=true): tests that need a tool must run and fail, never skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _browser_missing() -> str | None:
    import importlib.util

    if not CHROMIUM_PATH.exists():
        return f"{CHROMIUM_PATH} is not installed (apt-get install chromium); with CI=true this test runs and fails"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (bash scripts/setup.sh); with CI=true this test runs and fails"
    return None


needs_chromium = pytest.mark.skipif(
    _browser_missing() is not None and not running_in_ci(), reason=_browser_missing() or "chromium is installed"
)
"""Mark for browser tests: skipped, saying why, without chromium or playwright; run (and fail) with CI=true."""


@functools.cache
def surrogate_asgi_app():
    """The service's ASGI app, built once per process: a second ``Surrogate.to_asgi()`` in one process registers
    BentoML's Prometheus metrics twice (DuplicateTimeseries). Tests that need another model loader patch
    ``serving.service.load_surrogate`` before they open a TestClient (the loader runs at lifespan start)."""
    import serving.service as service

    return service.Surrogate.to_asgi()


# ------------------------------------------------------------------ scheduling over xdist workers
DURATIONS_PATH = Path(__file__).parent / "durations.json"
"""CPU seconds per test file, measured by ``benchmarks/suite_time.py --write-durations`` (a hint for ordering)."""


def _file_cpu_s() -> dict[str, float]:
    """The measured CPU seconds per test file (``tests/durations.json``); empty when it is missing or unreadable."""
    try:
        return {str(name): float(value) for name, value in json.loads(DURATIONS_PATH.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the test files heaviest first (by tests/durations.json), keeping each file's own order.

    With ``--dist loadfile`` a file runs in one worker; xdist hands out files in this order, so the longest files
    start first and the short ones fill the gaps at the end (longest-processing-time-first scheduling).
    """
    cpu_s = _file_cpu_s()
    if cpu_s:
        items.sort(key=lambda item: -cpu_s.get(item.nodeid.split("::", 1)[0], 0.0))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the files handed out in collection order (heaviest first), not by test count."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # xdist would reorder the files by their number of tests
    return LoadFileScheduling(config, log)
