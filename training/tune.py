"""Optuna tuning of each model family's hyper-parameters on the grouped cross-validation score.

The objective of a (family, target) study is the family's grouped-CV RMSE in
the target's modelling space (log10 σ; logit of a retention), the same
number :func:`surrogate.evaluation.cross_validate` reports. Every trial is a
nested MLflow run (parameters and CV metrics) under the active run, or under
a parent ``tune`` run that :func:`tune` opens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pandas as pd
from tqdm.auto import tqdm

from surrogate.design import TARGETS
from surrogate.errors import InputError
from surrogate.models.base import DEFAULT_LEVEL
from surrogate.tracking import DEFAULT_EXPERIMENT, configure_mlflow
from training.runs import fail_run, load_data

SCORE = "score"
"""What every study minimises: :attr:`CVResult.score`, the mean pooled out-of-fold RMSE (modelling space)."""


@dataclass
class StudyResult:
    """Outcome of one (family, target) study: best parameters and CV RMSE, or why it was skipped."""

    family: str
    target: str
    n_trials: int
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "target": self.target,
            "n_trials": self.n_trials,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "skipped": self.skipped,
        }


@dataclass
class TuneResult:
    """All studies of one :func:`tune` call and the MLflow run holding them."""

    studies: list[StudyResult]
    n_trials: int
    run_id: str | None
    experiment: str | None
    time_s: float

    def best_params(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{target: {family: params}}`` of every study that ran."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for study in self.studies:
            if study.skipped is None:
                out.setdefault(study.target, {})[study.family] = study.best_params
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "n_trials": self.n_trials,
            "time_s": round(self.time_s, 2),
            "studies": [s.to_dict() for s in self.studies],
        }


def _check(names: list[str] | None, allowed: list[str], what: str) -> list[str]:
    if names is None:
        return list(allowed)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise InputError(f"{what}: unknown {', '.join(map(repr, unknown))}; allowed are {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _skip_reason(family: str, target: str, data: pd.DataFrame) -> str | None:
    from surrogate.evaluation import training_xy
    from surrogate.models.registry import FAMILIES

    X, _, _ = training_xy(data, target)
    minimum = FAMILIES[family].min_rows
    if len(X) < minimum:
        return f"{len(X)} {target} rows, the {family} family needs at least {minimum}"
    return None


def tune_family(
    family: str,
    target: str,
    data: pd.DataFrame,
    n_trials: int,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    progress: bool = True,
) -> StudyResult:
    """Tune one family for one target with ``n_trials`` Optuna trials, each a nested MLflow run.

    Must be called inside an active MLflow run (the trials nest under it). A
    trial whose parameters make the fit fail is recorded as failed and does
    not stop the study.
    """
    from surrogate.evaluation import cross_validate, cv_summary
    from surrogate.models.registry import FAMILIES

    reason = _skip_reason(family, target, data)
    if reason is not None:
        mlflow.set_tag(f"tune.skipped.{family}.{target}", reason)
        return StudyResult(family, target, n_trials, skipped=reason)
    spec = FAMILIES[family]

    def objective(trial: optuna.Trial) -> float:
        params = spec.suggest_params(trial, target)
        if not params:  # the family has no hyper-parameters for this target: one trial says all
            trial.study.stop()
        with mlflow.start_run(run_name=f"trial-{trial.number}-{family}-{target}", nested=True):
            mlflow.set_tags({"kind": "tune-trial", "family": family, "target": target, "trial": trial.number})
            mlflow.log_params(params)
            try:
                cv = cross_validate(family, target, data, level=level, params=params)
            except Exception as exc:
                mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:500])
                raise optuna.TrialPruned(f"fit failed: {exc}") from None
            if cv.score is None:
                reason = cv.skipped or "no selecting split could be scored"
                mlflow.set_tag("error", reason)
                raise optuna.TrialPruned(reason)
            mlflow.log_metrics({f"cv.{k}": v for k, v in cv_summary(cv).items() if v is not None})
        return float(cv.score)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    bar = tqdm(total=n_trials, desc=f"tune {family}/{target}", disable=not progress, leave=False)
    study.optimize(objective, n_trials=n_trials, callbacks=[lambda s, t: bar.update(1)])
    bar.close()
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        reason = f"all {n_trials} trials failed"
        mlflow.set_tag(f"tune.skipped.{family}.{target}", reason)
        return StudyResult(family, target, n_trials, skipped=reason)
    best = study.best_trial
    mlflow.log_metric(f"tune.{family}.{target}.best_{SCORE}", best.value)
    mlflow.log_dict(best.params, f"tuning/{family}.{target}.best_params.json")
    return StudyResult(family, target, n_trials, float(best.value), dict(best.params))


def tune_all(
    data: pd.DataFrame,
    n_trials: int,
    families: list[str] | None = None,
    targets: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    progress: bool = True,
) -> list[StudyResult]:
    """Tune every (family, target) pair inside the active MLflow run; see :func:`tune_family`."""
    from surrogate.models.registry import FAMILIES

    families = _check(families, list(FAMILIES), "family")
    targets = _check(targets, list(TARGETS), "target")
    return [
        tune_family(family, target, data, n_trials, level=level, seed=seed, progress=progress)
        for target in targets
        for family in families
    ]


def tune(
    data_path: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    families: list[str] | None = None,
    targets: list[str] | None = None,
    n_trials: int = 20,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    progress: bool = True,
) -> TuneResult:
    """Tune families on a data set (embedded by default) in a parent MLflow run ``tune``; nothing is registered.

    Bad data raises :class:`~surrogate.errors.DataValidationError` before any
    run starts; a failure inside marks the run FAILED and re-raises.
    """
    from surrogate.models.registry import FAMILIES

    if n_trials < 1:
        raise InputError("trials: give 1 or more trials")
    families = _check(families, list(FAMILIES), "family")
    targets = _check(targets, list(TARGETS), "target")
    data, source, _ = load_data(data_path)
    configure_mlflow(experiment)
    start = time.perf_counter()
    run = mlflow.start_run(run_name="tune")
    try:
        mlflow.set_tags({"kind": "tune", "data_source": source})
        mlflow.log_params({"n_trials": n_trials, "families": ",".join(families), "targets": ",".join(targets)})
        studies = tune_all(data, n_trials, families, targets, level=level, seed=seed, progress=progress)
        elapsed = time.perf_counter() - start
        mlflow.log_metric("tune_time_s", elapsed)
    except BaseException as exc:
        fail_run(exc)
        raise
    mlflow.end_run("FINISHED")
    return TuneResult(studies, n_trials, run.info.run_id, experiment, elapsed)
