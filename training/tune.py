"""Optuna tuning of each model family's hyper-parameters on the grouped cross-validation score.

The objective of a (family, target) study is the family's grouped-CV RMSE in
the target's modelling space (log10 σ; logit of a retention), the same
number :func:`surrogate.evaluation.cross_validate` reports. Every trial is a
nested MLflow run (parameters and CV metrics) under the active run, or under
a parent ``tune`` run that :func:`tune` opens.

The (family, target) studies are independent, so :func:`tune_all` runs them through joblib: ``backend="loky"``
with ``n_jobs`` local processes (1, the default: one after the other in this process), or ``backend="dask"``
on the Dask scheduler at ``address`` (``tcp://host:8786``; its workers need the project installed and the same
settings: tracking server, credentials). A study in another process logs its trials under the parent run by
its id (``parent_run_id``), so the MLflow tree is the same as in the serial run, and so are the results
(each study is seeded by ``seed`` alone).
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

BACKENDS: tuple[str, ...] = ("loky", "dask")
"""joblib backends of :func:`tune_all`."""
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
    parent_run_id: str | None = None,
) -> StudyResult:
    """Tune one family for one target with ``n_trials`` Optuna trials, each a nested MLflow run.

    The trials nest under ``parent_run_id`` (default: the active MLflow run; one of the two is needed). A
    trial whose parameters make the fit fail is recorded as failed and does not stop the study.
    """
    from surrogate.evaluation import cross_validate, cv_summary
    from surrogate.models.registry import FAMILIES

    if parent_run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("tune_family needs an active MLflow run or parent_run_id")
        parent_run_id = active.info.run_id
    client = mlflow.MlflowClient()
    reason = _skip_reason(family, target, data)
    if reason is not None:
        client.set_tag(parent_run_id, f"tune.skipped.{family}.{target}", reason)
        return StudyResult(family, target, n_trials, skipped=reason)
    spec = FAMILIES[family]

    def objective(trial: optuna.Trial) -> float:
        params = spec.suggest_params(trial, target)
        if not params:  # the family has no hyper-parameters for this target: one trial says all
            trial.study.stop()
        name = f"trial-{trial.number}-{family}-{target}"
        with mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_run_id):
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
        client.set_tag(parent_run_id, f"tune.skipped.{family}.{target}", reason)
        return StudyResult(family, target, n_trials, skipped=reason)
    best = study.best_trial
    client.log_metric(parent_run_id, f"tune.{family}.{target}.best_{SCORE}", best.value)
    client.log_dict(parent_run_id, best.params, f"tuning/{family}.{target}.best_params.json")
    return StudyResult(family, target, n_trials, float(best.value), dict(best.params))


def tune_all(
    data: pd.DataFrame,
    n_trials: int,
    families: list[str] | None = None,
    targets: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    progress: bool = True,
    backend: str = "loky",
    address: str | None = None,
    n_jobs: int = 1,
) -> list[StudyResult]:
    """Tune every (family, target) pair inside the active MLflow run, through joblib (module docstring);
    see :func:`tune_family`. The results come in (target, family) order whatever the backend."""
    from joblib import Parallel, delayed, parallel_config

    from surrogate.models.registry import FAMILIES

    families = _check(families, list(FAMILIES), "family")
    targets = _check(targets, list(TARGETS), "target")
    check_backend(backend, address, n_jobs)
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("tune_all needs an active MLflow run")
    pairs = [(family, target) for target in targets for family in families]
    if backend == "loky" and n_jobs == 1:  # in this process, with progress bars
        return [
            tune_family(family, target, data, n_trials, level=level, seed=seed, progress=progress)
            for family, target in pairs
        ]
    experiment = mlflow.get_experiment(active.info.experiment_id).name
    jobs = [
        delayed(_tune_elsewhere)(family, target, data, n_trials, level, seed, active.info.run_id, experiment)
        for family, target in pairs
    ]
    if backend == "loky":
        return list(Parallel(n_jobs=n_jobs, backend="loky")(jobs))
    from dask.distributed import Client, LocalCluster

    cluster = None if address else LocalCluster(n_workers=n_jobs, threads_per_worker=1, dashboard_address=None)
    client = Client(address) if address else Client(cluster)
    try:
        with parallel_config(backend="dask"):
            return list(Parallel(n_jobs=-1)(jobs))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def check_backend(backend: str, address: str | None, n_jobs: int) -> None:
    """An :class:`InputError` for a backend, address or job count that cannot work, naming the option."""
    if backend not in BACKENDS:
        raise InputError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if address is not None and backend != "dask":
        raise InputError("address: a Dask scheduler address needs --backend dask")
    if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise InputError(f"address: {address!r} is not a Dask scheduler address (tcp://host:8786)")
    if n_jobs < 1:
        raise InputError(f"n_jobs: {n_jobs} must be 1 or more")


def _tune_elsewhere(
    family: str,
    target: str,
    data: pd.DataFrame,
    n_trials: int,
    level: float,
    seed: int,
    parent_run_id: str,
    experiment: str,
) -> StudyResult:
    """One study in a joblib worker (another process, maybe another machine): the project's MLflow settings,
    the parent's experiment, the trials under ``parent_run_id``."""
    configure_mlflow(experiment)
    return tune_family(
        family, target, data, n_trials, level=level, seed=seed, progress=False, parent_run_id=parent_run_id
    )


def tune(
    data_path: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    families: list[str] | None = None,
    targets: list[str] | None = None,
    n_trials: int = 20,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    progress: bool = True,
    backend: str = "loky",
    address: str | None = None,
    n_jobs: int = 1,
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
    check_backend(backend, address, n_jobs)
    data, source, _ = load_data(data_path)
    configure_mlflow(experiment)
    start = time.perf_counter()
    run = mlflow.start_run(run_name="tune")
    try:
        mlflow.set_tags({"kind": "tune", "data_source": source})
        mlflow.log_params({"n_trials": n_trials, "families": ",".join(families), "targets": ",".join(targets)})
        mlflow.set_tags({"tune.backend": backend, "tune.address": address or "local", "tune.n_jobs": n_jobs})
        studies = tune_all(
            data,
            n_trials,
            families,
            targets,
            level=level,
            seed=seed,
            progress=progress,
            backend=backend,
            address=address,
            n_jobs=n_jobs,
        )
        elapsed = time.perf_counter() - start
        mlflow.log_metric("tune_time_s", elapsed)
    except BaseException as exc:
        fail_run(exc)
        raise
    mlflow.end_run("FINISHED")
    return TuneResult(studies, n_trials, run.info.run_id, experiment, elapsed)
