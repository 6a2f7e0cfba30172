"""What training and tuning share: loading the data, and ending an MLflow run that failed or was stopped."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, which it mirrors
    """SIGTERM arrived during :func:`train`: the run is ended KILLED and the worker processes stopped."""


def load_data(data_path: Path | str | None) -> tuple[pd.DataFrame, str, bool]:
    """The validated measurement frame, a description of its source, and whether it is the paper reconstruction.

    ``None`` means the embedded data set. Raises :class:`~surrogate.errors.DataValidationError`
    (every problem, row by row) for a bad file.
    """
    from surrogate.dataset import SOURCE, default_dataset_path, load_default_dataset
    from surrogate.schema import load_measurements

    if data_path is None:
        data = load_default_dataset()
        return data, f"embedded data set {default_dataset_path().name}", True
    path = Path(data_path)
    data = load_measurements(path)
    reconstruction = "source" in data.columns and bool((data["source"] == SOURCE).all())
    return data, str(path), reconstruction


def fail_run(exc: BaseException) -> None:
    """End the active run FAILED (KILLED for SIGTERM or Ctrl-C) with the reason as tag ``error``.

    Never leaves a run RUNNING.
    """
    killed = isinstance(exc, (Terminated, KeyboardInterrupt))
    try:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
    finally:
        mlflow.end_run("KILLED" if killed else "FAILED")
