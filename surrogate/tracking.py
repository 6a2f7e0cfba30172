"""The MLflow stores and the registered champion: the one place that knows where runs and models live.

Tracking URI: the setting ``tracking_uri`` (``MLFLOW_TRACKING_URI``, a settings file, see
:mod:`surrogate.settings`), else ``sqlite:///mlruns/mlflow.db`` relative to the working directory; the
registry is ``registry_uri`` (default: the tracking URI). With a local store, artifacts of experiments created
here go under ``./mlruns`` (the file store is refused by MLflow 3, so metadata lives in SQLite); with an
``mlflow server`` (``http://…``) the server decides where artifacts go (``--artifacts-destination``). The champion :class:`~surrogate.models.base.Surrogate` is logged
as a pyfunc model (:class:`SurrogatePyfunc`), registered as
:data:`REGISTERED_MODEL_NAME` with alias :data:`CHAMPION_ALIAS`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
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

from surrogate.design import ANNEAL_TEMP_C, BUFFER, C_RATE, CYCLES, MATERIAL, PROTOCOL, TEST_TEMP_C
from surrogate.errors import InputError
from surrogate.materials import declare_carried
from surrogate.models.base import DEFAULT_LEVEL, SURROGATE_FORMAT, Surrogate
from surrogate.settings import DEFAULT_TRACKING_URI, get_settings, mask_url
from surrogate.targets import target_names

ARTIFACT_ROOT = Path("mlruns")
"""Artifacts directory, relative to the working directory (as the contract's ``mlruns/``)."""
DEFAULT_EXPERIMENT = "llto-surrogate"
REGISTERED_MODEL_NAME = "llto-surrogate"
CHAMPION_ALIAS = "champion"
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"
LOCAL_UI = "http://127.0.0.1:5000"
"""Address of ``surrogate ui`` (the MLflow UI on a local store)."""
NO_MODEL_MESSAGE = "no trained model: run `surrogate train` first"
CHAMPION_METRIC_PREFIX = "champion"
"""Legacy run metrics ``champion.<target>.<metric>`` (runs before 0.2); now see :func:`cv_metric_name`."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""MLflow's experiment-type tag; :data:`EXPERIMENT_KIND` marks model training, not GenAI development."""
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"
"""The tag the MLflow UI shows as a run's description (markdown)."""
ML_VIEW_QUERY = "workflowType=machine_learning"
"""URL query that makes the MLflow 3.17 UI show the model-training view (its default is the GenAI view)."""

_CODE_DIR = Path(__file__).resolve().parent
"""The ``surrogate`` package, logged with every model (``code_paths``) so it loads outside this repository."""

_BUNDLE_ARTIFACT = "surrogate"
_PIP_PACKAGES = ("mlflow", "scikit-learn", "torch", "pandas", "numpy", "scipy", "joblib", "cloudpickle")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# With an MLflow server MLflow writes "View run … at: <url>" on stdout at each run's end, which breaks `--json`
# (one JSON document on stdout, nothing else): the CLI prints the run's UI link itself.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def tracking_uri() -> str:
    """The tracking URI in force: the ``tracking_uri`` setting (``MLFLOW_TRACKING_URI``) or the local SQLite store."""
    return get_settings().tracking_uri


def shown_tracking_uri() -> str:
    """The tracking URI as it may be printed or answered: a password in it is masked."""
    return mask_url(tracking_uri()) or DEFAULT_TRACKING_URI


def registry_uri() -> str:
    """The model registry URI in force: the ``registry_uri`` setting (``MLFLOW_REGISTRY_URI``), else the tracking URI."""
    return get_settings().resolved_registry_uri


def ui_base() -> str:
    """Where the MLflow UI of the tracking store is: the server itself for ``http(s)://``, else ``surrogate ui``'s."""
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI


def _export_credentials() -> None:
    """Hand basic-auth credentials from the settings file to MLflow's client (it reads only its environment)."""
    settings = get_settings()
    if settings.tracking_username and not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.tracking_username
    if settings.tracking_password is not None and not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.tracking_password.get_secret_value()


def _is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def configure_mlflow(experiment: str | None = None) -> str:
    """Point MLflow at the project's store; with ``experiment``, create the store and select that experiment.

    Without ``experiment`` (readers) nothing is created on disk. A new experiment gets its
    artifact location under ``./mlruns/<name>`` and the tag ``mlflow.experimentKind`` =
    ``custom_model_development`` (model training, not GenAI). The DB and experiment are
    created here, before any parallel use (concurrent first use of a fresh SQLite DB
    breaks). Returns the tracking URI.
    """
    uri = tracking_uri()
    _export_credentials()
    if experiment is not None and not experiment.strip():
        raise InputError("experiment: the experiment name must not be empty")
    if experiment is not None:
        if _is_local(uri):
            ARTIFACT_ROOT.mkdir(parents=True, exist_ok=True)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if get_settings().registry_uri:  # only when configured: MLflow exports it to os.environ, where every later
        mlflow.set_registry_uri(registry_uri())  # process (and this one's settings) would read it as configured
    if experiment is not None:
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            location = (ARTIFACT_ROOT / experiment).resolve().as_uri() if _is_local(uri) else None
            mlflow.create_experiment(
                experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        elif found.lifecycle_stage == "deleted":
            raise InputError(
                f"experiment: {experiment!r} was deleted; restore it in the MLflow UI or pick another name"
            )
        elif EXPERIMENT_KIND_TAG not in found.tags:  # created by an older version: mark it as model training
            mlflow.MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        mlflow.set_experiment(experiment)
    return uri


def store_exists() -> bool:
    """Whether the tracking store can hold anything: a remote store, or a local SQLite file that exists.

    Read-only commands check this first, so that they never create ``./mlruns/mlflow.db``.
    """
    uri = tracking_uri()
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def experiment_url(ui_base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI address of an experiment (or one of its runs), in the model-training view."""
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{ui_base.rstrip('/')}/{path}?{ML_VIEW_QUERY}"


# ---------------------------------------------------------------------- metric names
_METRIC_NAMES: dict[str, dict[str, str]] = {
    "log10": {
        "rmse": "rmse_log10_decades",
        "mae": "mae_log10_decades",
        "r2": "r2_log10",
        "coverage": "interval_coverage",
    },
    "logit": {
        "rmse_units": "rmse_fraction",
        "mae_units": "mae_fraction",
        "rmse": "rmse_logit",
        "mae": "mae_logit",
        "r2": "r2_logit",
        "coverage": "interval_coverage",
    },
}
"""Summary key of :func:`surrogate.evaluation.cv_summary` → metric name with its unit, per modelling space.

``score`` is left out: it is the RMSE in the modelling space again."""


def cv_metric_names(target: str) -> dict[str, str]:
    """``{summary key: metric name}`` of ``target`` (e.g. ``rmse`` → ``rmse_log10_decades`` for conductivity)."""
    from surrogate.models.base import TARGET_SPACES

    return _METRIC_NAMES[TARGET_SPACES[target].name]


def cv_metric_name(target: str, key: str) -> str:
    """The run metric of CV summary ``key`` for ``target``: ``cv/<target>/<metric with unit>``."""
    return f"cv/{target}/{cv_metric_names(target)[key]}"


def cv_metrics(target: str, summary: dict[str, Any]) -> dict[str, float]:
    """The CV summary of one family on ``target`` as run metrics (None values left out)."""
    names = cv_metric_names(target)
    return {f"cv/{target}/{name}": float(summary[key]) for key, name in names.items() if summary.get(key) is not None}


# ---------------------------------------------------------------------- descriptions
def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def coverage_warnings(surrogate: Surrogate, level: float) -> dict[str, str]:
    """Target → warning, for each champion whose mean CV coverage is below the interval ``level``."""
    warnings = {}
    for target in surrogate.targets:
        coverage = (surrogate.info.get("cv_scores") or {}).get(target, {}).get("coverage")
        if coverage is not None and coverage < level:
            warnings[target] = (
                f"CV coverage {coverage:.0%} is below the {level:.0%} interval level: the {target} intervals "
                "are too narrow for designs left out of training: treat them as optimistic"
            )
    return warnings


def _error_in_units(target: str, scores: dict[str, Any]) -> str:
    """The champion's CV error in physical units: a factor on σ (S/cm), or retention points (fraction)."""
    if target == "conductivity_s_cm":
        rmse = scores.get("rmse")
        if rmse is None:
            return "-"
        return f"×/÷ {10**rmse:.3g} on σ in S/cm (RMSE {rmse:.3g} decades of log10 σ)"
    rmse = scores.get("rmse_units")
    return "-" if rmse is None else f"± {rmse:.3f} (fraction; RMSE, {rmse * 100:.1f} percentage points)"


def cv_note(family: str, target: str, summary: dict[str, Any], level: float) -> str:
    """One line for a family's CV run: its error in physical units and its interval coverage."""
    coverage = summary.get("coverage")
    text = f"{family} on {target}: CV error {_error_in_units(target, summary)}; coverage of {level:.0%} intervals "
    text += _percent(coverage)
    if coverage is not None and coverage < level:
        text += f" ⚠ below {level:.0%}"
    return text


def champion_description(
    surrogate: Surrogate,
    level: float,
    kept: dict[str, str] | None = None,
    version: str | None = None,
) -> str:
    """Summary of a champion for MLflow descriptions: per target family, error in physical units, CV coverage
    (with a warning below ``level``), and which targets were kept from an earlier version.

    No ``**bold**``: the version list shows the first lines as plain text. The table is markdown (rendered on
    the version's page)."""
    from surrogate.design import TARGET_UNITS

    info = surrogate.info
    kept = kept or {}
    scores = info.get("cv_scores") or {}
    title = f"{REGISTERED_MODEL_NAME}{' version ' + version if version else ''}"
    source = info.get("data_source") or "?"
    warnings = coverage_warnings(surrogate, level)
    lines = [f"{title}: a champion model per target, chosen by grouped cross-validation (CV)."]
    lines += [f"⚠ Warning: {text}." for text in warnings.values()]  # first: the UI shows 3 lines folded
    lines.append(f"Data: {source}, sha256 {str(info.get('data_hash') or info.get('data_sha256') or '?')[:12]}.")
    if info.get("reconstruction"):
        lines.append("The data is a reconstruction from Tan et al. 2021 by the virtual lab, not measurements.")
    lines += [
        "",
        f"| target (unit) | champion | CV error, physical units | CV coverage of {level:.0%} intervals |",
        "|---|---|---|---|",
    ]
    for target in surrogate.targets:
        family = (info.get("families") or {}).get(target, "?")
        if target in kept:
            family += f" (kept from {kept[target]})"
        coverage = _percent((scores.get(target) or {}).get("coverage"))
        if target in warnings:
            coverage = f"⚠ {coverage} (below {level:.0%})"
        lines.append(
            f"| {target} ({TARGET_UNITS[target]}) | {family} | {_error_in_units(target, scores.get(target) or {})} "
            f"| {coverage} |"
        )
    missing = [t for t in target_names() if t not in surrogate.targets]
    if missing:
        lines += ["", f"No model for: {', '.join(missing)} (too few rows of them in the training data)."]
    if kept:
        lines += [
            "",
            "Kept from the earlier champion (the training file lacked them or had too few rows): "
            + ", ".join(f"{t} ← {source}" for t, source in kept.items())
            + ".",
        ]
    return "\n".join(lines)


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
        declare_carried(self.surrogate.info.get("catalogue"))  # the buffers and materials it was trained on

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        level = float((params or {}).get("level", DEFAULT_LEVEL))
        return self.surrogate.predict(pd.DataFrame(model_input), level=level)


def model_signature(targets: tuple[str, ...] | None = None) -> ModelSignature:
    """Input: design columns (``c_rate``, ``cycles``, ``protocol``, ``material`` optional); output: the contract columns."""
    inputs = Schema(
        [
            ColSpec("string", BUFFER),
            ColSpec("double", ANNEAL_TEMP_C),
            ColSpec("double", TEST_TEMP_C),
            ColSpec("double", C_RATE, required=False),
            ColSpec("double", CYCLES, required=False),
            ColSpec("string", PROTOCOL, required=False),
            ColSpec("string", MATERIAL, required=False),
        ]
    )
    targets = target_names() if targets is None else targets
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


def log_surrogate(
    surrogate: Surrogate,
    name: str = "model",
    register: bool = True,
    description: str | Callable[[str], str] | None = None,
    version_tags: dict[str, str] | None = None,
    promote: bool = True,
) -> tuple[str, str | None]:
    """Log ``surrogate`` as a pyfunc model in the active run; register it and set the champion alias.

    The ``surrogate`` package goes with the model (``code_paths``), so it loads where this
    repository is not installed. ``description`` (markdown, or a function of the new version
    number returning it) becomes the model version's and the registered model's description
    (:func:`describe_version`); ``version_tags`` tag the model version.
    ``promote`` false registers the version without moving the champion alias (nor the registered model's
    description). Returns ``(model_uri, registered_version)`` (version ``None`` when ``register`` is false).
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
                code_paths=[str(_CODE_DIR)],
                registered_model_name=REGISTERED_MODEL_NAME if register else None,
            )
        finally:
            pyfunc_logger.setLevel(level)
    version = None
    if register:
        client = mlflow.MlflowClient()
        version = str(info.registered_model_version)
        if promote:
            client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
        for key, value in (version_tags or {}).items():
            client.set_model_version_tag(REGISTERED_MODEL_NAME, version, key, str(value)[:5000])
        if description is not None:
            text = description(version) if callable(description) else description
            if promote:
                describe_version(version, text)
            else:
                client.update_model_version(REGISTERED_MODEL_NAME, version, description=text)
    return info.model_uri, version


def describe_version(version: str, description: str) -> None:
    """Set the description of model version ``version`` and, pointing to it, of the registered model."""
    client = mlflow.MlflowClient()
    client.update_model_version(REGISTERED_MODEL_NAME, version, description=description)
    client.update_registered_model(
        REGISTERED_MODEL_NAME,
        description=(
            "Surrogates of sputtered LLTO thin-film batteries (conductivity in S/cm, rate and capacity "
            f"retention as fractions), each with an interval. Alias @{CHAMPION_ALIAS} is the model the "
            f"service and the CLI use; it is version {version}:\n\n{description}"
        ),
    )


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
            raise InputError(f"{NO_MODEL_MESSAGE} (no model at {uri} in {shown_tracking_uri()})") from None
        raise InputError(f"model: cannot load {uri!r} from {shown_tracking_uri()}: {_first_line(exc)}") from None


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
    declare_carried(surrogate.info.get("catalogue"), f"model {model_uri or CHAMPION_URI}: its materials")
    return surrogate


def _cv_scores(metrics: dict[str, float], target: str) -> dict[str, float]:
    """The champion's CV summary of ``target`` from run metrics (``cv/<target>/...``, or legacy ``champion.*``)."""
    scores = {
        key: metrics[f"cv/{target}/{name}"]
        for key, name in cv_metric_names(target).items()
        if f"cv/{target}/{name}" in metrics
    }
    if not scores:  # a run logged before metric names carried units
        prefix = f"{CHAMPION_METRIC_PREFIX}.{target}."
        scores = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    return scores


def champion_version() -> str:
    """The version ``@champion`` names now (one registry call); :class:`InputError` when there is none."""
    _require_store()
    configure_mlflow()
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        raise InputError(f"{NO_MODEL_MESSAGE} (no {CHAMPION_URI} in {shown_tracking_uri()})") from None
    return str(found.version)


def champion_info(version: str | None = None) -> dict[str, Any]:
    """What the registered champion (or model ``version``) is: name, version, run id, data hash, families, CV scores.

    A target kept from an earlier champion (``surrogate train --missing-targets keep``) reports the
    CV scores of the run that trained it. Raises :class:`InputError` when no model is registered.
    """
    _require_store()
    configure_mlflow()
    client = mlflow.MlflowClient()
    try:
        if version is None:
            found = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
        else:
            found = client.get_model_version(REGISTERED_MODEL_NAME, str(version))
    except MlflowException:
        raise InputError(NO_MODEL_MESSAGE) from None
    run = client.get_run(found.run_id) if found.run_id else None
    tags = run.data.tags if run else {}
    metrics = run.data.metrics if run else {}
    families = {t: tags[f"champion.{t}"] for t in target_names() if tags.get(f"champion.{t}", "none") != "none"}
    cv: dict[str, dict[str, float]] = {}
    kept: dict[str, str] = {}
    for target in families:
        source_run = tags.get(f"kept_run.{target}")
        if source_run:
            kept[target] = tags.get(f"kept.{target}", source_run)
            try:
                cv[target] = _cv_scores(client.get_run(source_run).data.metrics, target)
            except MlflowException:  # the earlier run was deleted
                continue
        else:
            cv[target] = _cv_scores(metrics, target)
    return {
        "name": REGISTERED_MODEL_NAME,
        "alias": CHAMPION_ALIAS,
        "version": str(found.version),
        "model_uri": f"models:/{REGISTERED_MODEL_NAME}/{found.version}",
        "run_id": found.run_id,
        "experiment_id": run.info.experiment_id if run else None,
        "created": pd.Timestamp(found.creation_timestamp, unit="ms", tz="UTC").isoformat(),
        "data_hash": tags.get("data_hash"),
        "data_source": tags.get("data_source"),
        "level": float(run.data.params["level"]) if run and "level" in run.data.params else None,
        "families": families,
        "kept": kept,
        "cv_scores": {t: v for t, v in cv.items() if v},
        "tracking_uri": shown_tracking_uri(),
    }


def current_champion() -> tuple[str, Surrogate] | None:
    """The registered champion's version and :class:`Surrogate`, or None when there is none (read-only).

    Creates no store. A champion of an older bundle format, which cannot be served anyway, counts as none.
    """
    if not store_exists():
        return None
    configure_mlflow()
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        return None
    try:
        surrogate = load_champion(f"models:/{REGISTERED_MODEL_NAME}/{version.version}")
    except InputError:
        return None
    return str(version.version), surrogate


def require_targets(
    surrogate: Surrogate, needed: list[str] | tuple[str, ...], model_uri: str | None, what: str
) -> None:
    """Raise :class:`InputError` naming the targets ``what`` needs that the model has no model for."""
    from surrogate.design import TARGET_UNITS

    missing = [t for t in dict.fromkeys(needed) if t not in surrogate.targets]
    if not missing:
        return
    uri = model_uri or CHAMPION_URI
    has = ", ".join(surrogate.targets) or "none"
    raise InputError(
        f"model: {uri} has no model for {', '.join(f'{t} ({TARGET_UNITS[t]})' for t in missing)}, which {what} "
        f"needs (it has: {has}). It was trained on data without enough rows of "
        f"{'that target' if len(missing) == 1 else 'those targets'}. Use a model version that has "
        f"{'it' if len(missing) == 1 else 'them'} (e.g. --model models:/{REGISTERED_MODEL_NAME}/<version>; "
        "`surrogate ui` lists the versions), or train on data that has them: surrogate train --data FILE"
    )


def _require_store() -> None:
    """Reading needs an existing store: a missing local SQLite file means nothing was trained (and is not created)."""
    if not store_exists():
        raise InputError(f"{NO_MODEL_MESSAGE} (no MLflow store at {shown_tracking_uri()})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
