"""The MLflow stores and the registered champion: the one place that knows where runs and models live.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlruns/mlflow.db``
relative to the working directory; artifacts of experiments created here go
under ``./mlruns`` (the file store is refused by MLflow 3, so metadata lives
in SQLite). The champion :class:`~surrogate.models.base.Surrogate` is logged
as a pyfunc model (:class:`SurrogatePyfunc`), registered as
:data:`REGISTERED_MODEL_NAME` with alias :data:`CHAMPION_ALIAS`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from surrogate.design import ANNEAL_TEMP_C, BUFFER, C_RATE, CYCLES, PROTOCOL, TARGETS, TEST_TEMP_C
from surrogate.errors import InputError
from surrogate.models.base import DEFAULT_LEVEL, SURROGATE_FORMAT, Surrogate

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
ARTIFACT_ROOT = Path("mlruns")
"""Artifacts directory, relative to the working directory (as the contract's ``mlruns/``)."""
DEFAULT_EXPERIMENT = "llto-surrogate"
REGISTERED_MODEL_NAME = "llto-surrogate"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"
NO_MODEL_MESSAGE = "no trained model: run `surrogate train` first"
CHAMPION_METRIC_PREFIX = "champion"
"""Run metrics ``champion.<target>.<metric>`` hold the CV scores of each target's champion family."""

_BUNDLE_ARTIFACT = "surrogate"
_PIP_PACKAGES = ("mlflow", "scikit-learn", "torch", "pandas", "numpy", "scipy", "joblib", "cloudpickle")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def configure_mlflow(experiment: str | None = None) -> str:
    """Point MLflow at the project's store (creating ``./mlruns`` and the DB); optionally select ``experiment``.

    A new experiment gets its artifact location under ``./mlruns/<name>``. The DB
    and experiment are created here, before any parallel use (concurrent first
    use of a fresh SQLite DB breaks). Returns the tracking URI.
    """
    uri = tracking_uri()
    if _is_local(uri):
        ARTIFACT_ROOT.mkdir(parents=True, exist_ok=True)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment is not None:
        if not experiment.strip():
            raise InputError("experiment: the experiment name must not be empty")
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            location = (ARTIFACT_ROOT / experiment).resolve().as_uri() if _is_local(uri) else None
            mlflow.create_experiment(experiment, artifact_location=location)
        elif found.lifecycle_stage == "deleted":
            raise InputError(
                f"experiment: {experiment!r} was deleted; restore it in the MLflow UI or pick another name"
            )
        mlflow.set_experiment(experiment)
    return uri


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (given explicitly: inferring them costs ~7 s per model)."""
    requirements = []
    for package in _PIP_PACKAGES:
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return requirements


class SurrogatePyfunc(PythonModel):
    """MLflow pyfunc wrapper of a :class:`Surrogate`: a DataFrame of designs in, the contract columns out.

    Output columns: ``<target>_mean``, ``_lower``, ``_upper`` (contract units: S/cm,
    fractions) per target, ``extrapolation`` and ``extrapolation_reasons``. The
    interval level is the ``level`` parameter (default 0.9).
    """

    def __init__(self, surrogate: Surrogate | None = None) -> None:
        self.surrogate = surrogate

    def load_context(self, context: Any) -> None:
        self.surrogate = joblib.load(context.artifacts[_BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        level = float((params or {}).get("level", DEFAULT_LEVEL))
        return self.surrogate.predict(pd.DataFrame(model_input), level=level)


def model_signature(targets: tuple[str, ...] = TARGETS) -> ModelSignature:
    """Input: design columns (``c_rate``, ``cycles``, ``protocol`` optional); output: the contract columns."""
    inputs = Schema(
        [
            ColSpec("string", BUFFER),
            ColSpec("double", ANNEAL_TEMP_C),
            ColSpec("double", TEST_TEMP_C),
            ColSpec("double", C_RATE, required=False),
            ColSpec("double", CYCLES, required=False),
            ColSpec("string", PROTOCOL, required=False),
        ]
    )
    columns = [ColSpec("double", f"{t}_{part}") for t in targets for part in ("mean", "lower", "upper")]
    columns += [ColSpec("boolean", "extrapolation"), ColSpec(Array("string"), "extrapolation_reasons")]
    params = ParamSchema([ParamSpec("level", "double", DEFAULT_LEVEL)])
    return ModelSignature(inputs=inputs, outputs=Schema(columns), params=params)


def input_example() -> pd.DataFrame:
    """Two designs inside the paper's ranges (the model's input example)."""
    return pd.DataFrame(
        {
            BUFFER: ["none", "sio2"],
            ANNEAL_TEMP_C: [300.0, 300.0],
            TEST_TEMP_C: [25.0, 25.0],
            C_RATE: [30.0, 10.0],
            CYCLES: [100.0, 100.0],
            PROTOCOL: ["standard", "standard"],
        }
    )


def log_surrogate(surrogate: Surrogate, name: str = "model", register: bool = True) -> tuple[str, str | None]:
    """Log ``surrogate`` as a pyfunc model in the active run; register it and set the champion alias.

    Returns ``(model_uri, registered_version)`` (version ``None`` when ``register`` is false).
    """
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "surrogate.joblib"
        joblib.dump(surrogate, bundle)
        # The wrapper class is pickled on purpose (it holds no state; the bundle is an artifact): silence the warning.
        pyfunc_logger.setLevel(logging.ERROR)
        try:
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=SurrogatePyfunc(),
                artifacts={_BUNDLE_ARTIFACT: str(bundle)},
                signature=model_signature(surrogate.targets),
                input_example=input_example(),
                pip_requirements=pip_requirements(),
                registered_model_name=REGISTERED_MODEL_NAME if register else None,
            )
        finally:
            pyfunc_logger.setLevel(level)
    version = None
    if register:
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    return info.model_uri, version


def load_pyfunc(model_uri: str | None = None) -> mlflow.pyfunc.PyFuncModel:
    """The champion (or ``model_uri``) as an MLflow pyfunc model; :class:`InputError` when there is none."""
    uri = model_uri or CHAMPION_URI
    if uri.startswith(("models:", "runs:")):  # registry and run URIs need the tracking store; paths do not
        _require_store()
        configure_mlflow()
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        if model_uri is None:
            raise InputError(f"{NO_MODEL_MESSAGE} (no model at {uri} in {tracking_uri()})") from None
        raise InputError(f"model: cannot load {uri!r} from {tracking_uri()}: {_first_line(exc)}") from None


def load_champion(model_uri: str | None = None) -> Surrogate:
    """The champion :class:`Surrogate` (default ``models:/llto-surrogate@champion``), with intervals and extrapolation.

    Raises :class:`InputError` ("no trained model: run `surrogate train` first") when none is registered.
    """
    surrogate = load_pyfunc(model_uri).unwrap_python_model().surrogate
    if getattr(surrogate, "format_version", 1) != SURROGATE_FORMAT:
        raise InputError(
            f"model: {model_uri or CHAMPION_URI} was trained by an older version of this package "
            f"(bundle format {getattr(surrogate, 'format_version', 1)}, expected {SURROGATE_FORMAT}); "
            "run `surrogate train` again"
        )
    return surrogate


def champion_info() -> dict[str, Any]:
    """What the registered champion is: name, version, run id, data hash, families and CV scores per target.

    Raises :class:`InputError` when no model is registered.
    """
    _require_store()
    configure_mlflow()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        raise InputError(NO_MODEL_MESSAGE) from None
    run = client.get_run(version.run_id) if version.run_id else None
    tags = run.data.tags if run else {}
    metrics = run.data.metrics if run else {}
    cv: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == CHAMPION_METRIC_PREFIX and parts[1] in TARGETS:
            cv.setdefault(parts[1], {})[parts[2]] = value
    return {
        "name": REGISTERED_MODEL_NAME,
        "alias": CHAMPION_ALIAS,
        "version": str(version.version),
        "model_uri": f"models:/{REGISTERED_MODEL_NAME}/{version.version}",
        "run_id": version.run_id,
        "experiment_id": run.info.experiment_id if run else None,
        "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC").isoformat(),
        "data_hash": tags.get("data_hash"),
        "data_source": tags.get("data_source"),
        "level": float(run.data.params["level"]) if run and "level" in run.data.params else None,
        "families": {t: tags[f"champion.{t}"] for t in TARGETS if f"champion.{t}" in tags},
        "cv_scores": cv,
        "tracking_uri": tracking_uri(),
    }


def _require_store() -> None:
    """Reading needs an existing store: a missing local SQLite file means nothing was trained (and is not created)."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise InputError(f"{NO_MODEL_MESSAGE} (no MLflow store at {uri})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
