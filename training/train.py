"""Train the surrogates: grouped CV of every family per target, the champion per target, all of it in MLflow.

:func:`train` loads the data (the embedded reconstruction, or a user's file,
validated before any run starts), optionally tunes each family with Optuna
(:mod:`training.tune`), then hands the data to
:func:`surrogate.evaluation.select_champions` — the one orchestration path:
grouped CV of every family on every target, the champion per target by
:data:`surrogate.evaluation.SELECTION_RULE`, refit on all rows — and logs in
ONE parent run: parameters, the selection rule, metrics, one nested run per
family × target with per-split and per-fold metrics, the data set with its
hash, plots, activation energies per anneal state, the CV report and the
champion as a registered pyfunc model (``llto-surrogate@champion``). A
failure marks the run FAILED and re-raises.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from surrogate.design import ANNEAL_TEMP_C, CONDUCTIVITY, CYCLES
from surrogate.errors import InputError
from surrogate.evaluation import CVResult, Selection, check_families, data_hash, select_champions
from surrogate.models.base import DEFAULT_LEVEL, TARGET_SPACES, Surrogate
from surrogate.tracking import (
    CHAMPION_ALIAS,
    CHAMPION_METRIC_PREFIX,
    DEFAULT_EXPERIMENT,
    REGISTERED_MODEL_NAME,
    configure_mlflow,
    log_surrogate,
)


@dataclass
class TrainResult:
    """What :func:`train` produced: the champion, its scores, where it is tracked, how long it took (s)."""

    surrogate: Surrogate
    report: dict[str, Any]
    activation_energies: pd.DataFrame | None
    run_id: str
    experiment: str
    tracking_uri: str
    model_uri: str
    registered_version: str | None
    data_source: str
    data_hash: str
    rows: int
    reconstruction: bool
    level: float
    train_time_s: float
    tuned_params: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def champions(self) -> dict[str, str]:
        """Target → champion family."""
        return dict(self.surrogate.info["families"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``surrogate train --json`` prints)."""
        targets = {}
        for target, entry in self.report["targets"].items():
            targets[target] = {
                "space": TARGET_SPACES[target].label,
                "rows": entry["rows"],
                "cv_scheme": entry["cv_scheme"],
                "champion": entry["champion"],
                "champion_reason": entry.get("champion_reason"),
                "families": entry["summary"],
                "skipped": entry["skipped_families"],
                "sample_variance": entry.get("sample_variance"),
            }
        ea = [] if self.activation_energies is None else self.activation_energies.to_dict("records")
        return _json_ready(
            {
                "run_id": self.run_id,
                "experiment": self.experiment,
                "tracking_uri": self.tracking_uri,
                "model_uri": self.model_uri,
                "registered_model": {
                    "name": REGISTERED_MODEL_NAME,
                    "version": self.registered_version,
                    "alias": CHAMPION_ALIAS,
                },
                "data": {
                    "source": self.data_source,
                    "rows": self.rows,
                    "hash": self.data_hash,
                    "reconstruction": self.reconstruction,
                },
                "level": self.level,
                "selection_rule": self.report["selection_rule"],
                "targets": targets,
                "activation_energies": [{k: float(v) for k, v in row.items()} for row in ea],
                "tuned_params": self.tuned_params,
                "train_time_s": round(self.train_time_s, 2),
            }
        )


def _json_ready(value: Any) -> Any:
    """Numpy scalars → Python; NaN and infinities → None (JSON has neither), recursively."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------- data
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


def _mlflow_dataset(data: pd.DataFrame, data_path: Path | str | None, digest: str) -> Any:
    """The training data as an MLflow dataset: source = the file, digest = the first 16 hex of its sha256."""
    from surrogate.dataset import default_dataset_path

    path = default_dataset_path() if data_path is None else Path(data_path)
    frame = data.astype({CYCLES: float})  # nullable integers would make MLflow warn about missing values
    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow warns, harmlessly
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(frame, source=str(path.resolve()), name="measurements", digest=digest[:16])


# ---------------------------------------------------------------------- logging
def _log_cv_run(cv: CVResult) -> None:
    """One nested run per family × target: params, pooled metrics per split, per-fold metrics (step = fold)."""
    with mlflow.start_run(run_name=f"cv-{cv.family}-{cv.target}", nested=True):
        mlflow.set_tags({"kind": "cv", "family": cv.family, "target": cv.target})
        if cv.params:
            mlflow.log_params(cv.params)
        mlflow.log_params({"n_rows": cv.n_rows, "level": cv.level})
        if cv.skipped:
            mlflow.set_tag("skipped", cv.skipped)
        metrics: dict[str, float] = {"fit_seconds": cv.fit_seconds}
        if cv.score is not None:
            metrics["score"] = cv.score
        for split, entry in cv.splits.items():
            for key, value in (entry["overall"] or {}).items():
                if isinstance(value, (int, float)) and value is not None:
                    metrics[f"{split}.{key}"] = float(value)
            for fold in entry["folds"]:
                for key in ("rmse_natural", "mae_natural", "coverage", "rmse_units"):
                    if fold.get(key) is not None:
                        mlflow.log_metric(f"{split}.fold.{key}", float(fold[key]), step=int(fold["fold"]))
        mlflow.log_metrics(metrics)
        mlflow.log_dict(cv.to_dict(), "cv_result.json")


def _log_report_metrics(report: dict[str, Any]) -> None:
    metrics: dict[str, float] = {}
    for target, entry in report["targets"].items():
        for family, summary in entry["summary"].items():
            for metric, value in summary.items():
                if value is not None:
                    metrics[f"cv.{family}.{target}.{metric}"] = float(value)
                    if family == entry["champion"]:
                        metrics[f"{CHAMPION_METRIC_PREFIX}.{target}.{metric}"] = float(value)
        for family, reason in entry["skipped_families"].items():
            mlflow.set_tag(f"skipped.{family}.{target}", reason[:5000])
        mlflow.set_tag(f"champion.{target}", entry["champion"] or "none")
        if entry.get("champion_reason"):
            mlflow.set_tag(f"champion_reason.{target}", entry["champion_reason"][:5000])
        variance = entry.get("sample_variance")
        if variance:
            metrics[f"between_sample_sd.{target}"] = float(np.sqrt(variance["between_variance"]))
            mlflow.set_tag(f"between_sample_source.{target}", variance["source"])
    mlflow.set_tag("selection_rule", report["selection_rule"])
    mlflow.log_metrics(metrics)


def activation_energies(data: pd.DataFrame) -> pd.DataFrame | None:
    """Ea ± SE (eV) per anneal state from the physics baseline fitted to all conductivity rows (None if too few)."""
    from surrogate.evaluation import training_xy
    from surrogate.models.physics_baseline import PhysicsBaseline
    from surrogate.models.registry import FAMILIES

    X, y, _ = training_xy(data, CONDUCTIVITY)
    if len(y) < FAMILIES["physics"].min_rows:
        return None
    try:
        table = PhysicsBaseline(CONDUCTIVITY).fit(X, y).activation_energies()
    except InputError:  # e.g. an anneal state measured at a single temperature
        return None
    return table[[ANNEAL_TEMP_C, "ea_ev", "ea_se_ev"]].reset_index(drop=True)


def _log_activation_energies(table: pd.DataFrame) -> None:
    for row in table.itertuples(index=False):
        state = f"{getattr(row, ANNEAL_TEMP_C):g}c"
        mlflow.log_metrics({f"ea_ev.anneal_{state}": row.ea_ev, f"ea_se_ev.anneal_{state}": row.ea_se_ev})
    mlflow.log_table(table, "activation_energies.json")
    mlflow.log_text(table.to_csv(index=False), "activation_energies.csv")


def _log_plots(data: pd.DataFrame, selection: Selection, ea: pd.DataFrame | None, level: float, note: str) -> None:
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from surrogate import plots

    surrogate = selection.surrogate
    z = norm.ppf(0.5 + level / 2.0)
    figures = {}
    for target, champion in selection.champions.items():
        cv = selection.results[target][champion]
        space = TARGET_SPACES[target]
        for split, entry in cv.splits.items():
            if not entry["selects"] or split not in cv.predictions:
                continue
            oof = cv.predictions[split]
            y, mean, std = (oof[c].to_numpy(float) for c in ("y", "mean", "std"))
            kind = f"out-of-fold, {champion}, CV {entry['description']}"
            figures[f"plots/parity_{target}_{split}.png"] = plots.parity_figure(
                target,
                space.inverse(y),
                space.inverse(mean),
                space.inverse(mean - z * std),
                space.inverse(mean + z * std),
                level=level,
                note=note,
                kind=kind,
            )
            figures[f"plots/residuals_{target}_{split}.png"] = plots.residuals_figure(
                target, space.inverse(y), space.inverse(mean), note=note, kind=kind
            )
    if CONDUCTIVITY in surrogate.targets:
        figures["plots/arrhenius.png"] = plots.arrhenius_figure(data, surrogate, ea, level=level, note=note)
    if "rate_retention" in surrogate.targets:
        figures["plots/rate_retention.png"] = plots.rate_figure(data, surrogate, level=level, note=note)
    if "capacity_retention" in surrogate.targets:
        figures["plots/capacity_fade.png"] = plots.fade_figure(data, surrogate, level=level, note=note)
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)


# ---------------------------------------------------------------------- train
def fail_run(exc: BaseException) -> None:
    """Mark the active run FAILED with the reason as tag ``error`` (never leave it RUNNING)."""
    try:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
    finally:
        mlflow.end_run("FAILED")


def train(
    data_path: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    families: list[str] | None = None,
    tune_trials: int = 0,
    level: float = DEFAULT_LEVEL,
    progress: bool = True,
    register: bool = True,
) -> TrainResult:
    """Train, select and register the champion surrogate; everything tracked in one MLflow run.

    ``data_path`` None = the embedded data set (a reconstruction from the paper).
    ``families`` defaults to every family of :data:`surrogate.models.registry.FAMILIES`;
    ``tune_trials`` > 0 first tunes each family × target with that many Optuna trials
    (nested runs) and cross-validates with the best parameters. ``level`` is the
    central interval level (0.9 = 90 %). Bad data raises
    :class:`~surrogate.errors.DataValidationError` before any run starts; bad
    arguments raise :class:`InputError`; any failure during the run marks it FAILED
    and re-raises. ``train_time_s`` is wall time from loading the data to registration.
    """
    start = time.perf_counter()
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level: {level} must be between 0 and 1 (e.g. 0.9 for a 90% interval)")
    if tune_trials < 0:
        raise InputError(f"tune: {tune_trials} trials; give 0 (no tuning) or more")
    names = check_families(families)
    data, source, reconstruction = load_data(data_path)
    digest = data_hash(data)
    uri = configure_mlflow(experiment)
    note = "data: reconstruction from Tan et al. 2021, not measurements" if reconstruction else f"data: {source}"
    run = mlflow.start_run(run_name="train" + (f"-tune{tune_trials}" if tune_trials else ""))
    try:
        mlflow.set_tags(
            {
                "kind": "train",
                "data_source": source,
                "data_hash": digest,
                "reconstruction": str(reconstruction).lower(),
            }
        )
        mlflow.log_params({"families": ",".join(names), "tune_trials": tune_trials, "level": level, "rows": len(data)})
        mlflow.log_input(_mlflow_dataset(data, data_path, digest), context="training")

        tuned: dict[str, dict[str, dict[str, Any]]] = {}
        if tune_trials:
            from training.tune import tune_all

            studies = tune_all(data, tune_trials, names, level=level, progress=progress)
            for study in studies:
                if study.skipped is None:
                    tuned.setdefault(study.target, {})[study.family] = study.best_params
            mlflow.log_dict(tuned, "tuned_params.json")

        selection = select_champions(data, names, level, progress=progress, params=tuned)
        surrogate, report = selection.surrogate, selection.report
        for by_family in selection.results.values():
            for cv in by_family.values():
                _log_cv_run(cv)
        _log_report_metrics(report)
        surrogate.info.update(
            {
                "data_source": source,
                "data_hash": digest,
                "reconstruction": reconstruction,
                "run_id": run.info.run_id,
            }
        )
        ea = activation_energies(data)
        if ea is not None:
            _log_activation_energies(ea)
            report["activation_energies"] = ea.to_dict("records")
        mlflow.log_dict(report, "cv_report.json")
        _log_plots(data, selection, ea, level, note)
        model_uri, version = log_surrogate(surrogate, register=register)
        elapsed = time.perf_counter() - start
        mlflow.log_metric("train_time_s", elapsed)
    except BaseException as exc:
        fail_run(exc)
        raise
    mlflow.end_run("FINISHED")
    return TrainResult(
        surrogate=surrogate,
        report=report,
        activation_energies=ea,
        run_id=run.info.run_id,
        experiment=experiment,
        tracking_uri=uri,
        model_uri=model_uri,
        registered_version=version,
        data_source=source,
        data_hash=digest,
        rows=len(data),
        reconstruction=reconstruction,
        level=level,
        train_time_s=elapsed,
        tuned_params=tuned,
    )
