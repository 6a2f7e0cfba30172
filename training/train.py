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

import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from surrogate.design import ANNEAL_TEMP_C, BUFFER, CONDUCTIVITY, CYCLES
from surrogate.errors import InputError
from surrogate.evaluation import (
    CVResult,
    Selection,
    check_families,
    data_hash,
    select_champions,
    target_outlook,
    training_refusal,
)
from surrogate.materials import entries_in
from surrogate.models.base import DEFAULT_LEVEL, TARGET_SPACES, Surrogate
from surrogate.targets import PAPER_TARGETS, target_names
from surrogate.tracking import (
    CHAMPION_ALIAS,
    DEFAULT_EXPERIMENT,
    NOTE_TAG,
    REGISTERED_MODEL_NAME,
    champion_description,
    configure_mlflow,
    coverage_warnings,
    current_champion,
    cv_metrics,
    cv_note,
    log_surrogate,
)
from training.runs import (  # noqa: F401 - re-exported: training.train.load_data etc.
    Terminated,
    fail_run,
    load_data,
    mark_runs_of_dead_processes,
    process_tags,
    workers_die_with_parent,
)
from training.tune import tune_all


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
    kept: dict[str, str] = field(default_factory=dict)
    """Target → the earlier model version whose model of that target this one keeps."""
    experiment_id: str | None = None
    promoted: bool = True
    """Whether this version became ``@champion``."""
    promotion: str = ""
    """Why it did or did not (see :func:`promotion_decision`)."""

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
                    "alias": CHAMPION_ALIAS if self.promoted else None,
                    "promoted": self.promoted,
                    "promotion": self.promotion,
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
                "kept": self.kept,
                "coverage_warnings": coverage_warnings(self.surrogate, self.level),
                "experiment_id": self.experiment_id,
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
def _mlflow_dataset(data: pd.DataFrame, data_path: Path | str | None, digest: str) -> Any:
    """The training data as an MLflow dataset: source = the file, digest = the first 16 hex of its sha256."""
    from surrogate.dataset import default_dataset_path

    path = default_dataset_path() if data_path is None else Path(data_path)
    frame = data.astype({CYCLES: float})  # nullable integers would make MLflow warn about missing values
    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow warns, harmlessly
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(
            frame, source=str(path.resolve()), name=data_label(data_path), digest=digest[:16]
        )


def data_label(data_path: Path | str | None) -> str:
    """A short name of the training data for run and dataset names: the file's name, or the embedded set's."""
    return "embedded reconstruction (Tan et al. 2021)" if data_path is None else Path(data_path).name


def run_name(data_path: Path | str | None, rows: int, current: tuple[str, Surrogate] | None, tune: int) -> str:
    """The training run's name: its data and the champion it is measured against, e.g.
    ``train my_cells.csv (60 rows) vs champion v3``."""
    against = f"vs champion v{current[0]}" if current is not None else "first champion"
    return f"train {data_label(data_path)} ({rows} rows) {against}" + (f", tuned {tune} trials" if tune else "")


# ---------------------------------------------------------------------- logging
def _split_metric_name(target: str, key: str) -> str | None:
    """Per-split metric ``key`` (``rmse_natural``, ``coverage``, ``rmse_units`` …) with its unit in the name."""
    space = TARGET_SPACES[target].name
    natural = "log10_decades" if space == "log10" else "logit"
    names = {
        "rmse_natural": f"rmse_{natural}",
        "mae_natural": f"mae_{natural}",
        "r2_natural": f"r2_{space}",
        "interval_width_natural": f"interval_width_{natural}",
        "coverage": "interval_coverage",
        "rmse_units": "rmse_fraction",
        "mae_units": "mae_fraction",
        "r2_units": "r2_fraction",
        "interval_width_units": "interval_width_fraction",
        "n": "n_rows",
    }
    return names.get(key)


def _log_cv_run(cv: CVResult) -> None:
    """One nested run per family × target: its CV summary under the same names as the parent's champion
    metrics (``cv/<target>/...``, so the UI compares families), per split (``split/<split>/...``) and per
    fold (step = fold)."""
    from surrogate.evaluation import cv_summary

    with mlflow.start_run(run_name=f"cv-{cv.family}-{cv.target}", nested=True):
        mlflow.set_tags({"kind": "cv", "family": cv.family, "target": cv.target})
        if cv.params:
            mlflow.log_params(cv.params)
        mlflow.log_params({"n_rows": cv.n_rows, "level": cv.level})
        if cv.skipped:
            mlflow.set_tag("skipped", cv.skipped)
            mlflow.set_tag(NOTE_TAG, f"{cv.family} on {cv.target}: skipped, {cv.skipped}")
        metrics: dict[str, float] = {"time/fit_s": cv.fit_seconds}
        if cv.score is not None:
            summary = cv_summary(cv)
            metrics.update(cv_metrics(cv.target, summary))
            mlflow.set_tag(NOTE_TAG, cv_note(cv.family, cv.target, summary, cv.level))
        for split, entry in cv.splits.items():
            for key, value in (entry["overall"] or {}).items():
                name = _split_metric_name(cv.target, key)
                if name is not None and isinstance(value, (int, float)):
                    metrics[f"split/{split}/{name}"] = float(value)
            for fold in entry["folds"]:
                for key in ("rmse_natural", "mae_natural", "coverage", "rmse_units"):
                    if fold.get(key) is not None:
                        name = _split_metric_name(cv.target, key)
                        mlflow.log_metric(f"split/{split}/fold/{name}", float(fold[key]), step=int(fold["fold"]))
        mlflow.log_metrics(metrics)
        mlflow.log_dict(cv.to_dict(), "cv_result.json")


def _forecast_metrics(target: str, forecast: dict[str, Any]) -> dict[str, float]:
    """``forecast/<target>/<family>[/<protocol>]/<score>`` of a forward-chaining report entry."""
    metrics: dict[str, float] = {}
    for family, overall in forecast["families"].items():
        if overall.get("rmse_natural") is not None:
            metrics[f"forecast/{target}/{family}/rmse_natural"] = float(overall["rmse_natural"])
        for protocol, scores in forecast.get("by_protocol", {}).get(family, {}).items():
            for key in ("rmse_natural", "rmse_units", "coverage"):
                if scores.get(key) is not None:
                    metrics[f"forecast/{target}/{family}/{protocol}/{key}"] = float(scores[key])
    return metrics


def _log_report_metrics(report: dict[str, Any], level: float) -> None:
    """The champion's CV metrics per target (``cv/<target>/...``), rows, sample spread; champion tags."""
    metrics: dict[str, float] = {}
    for target, entry in report["targets"].items():
        metrics[f"rows/{target}"] = float(entry["rows"])
        champion = entry["champion"]
        if entry.get("selection_skipped"):  # too little data: the physics law alone, no CV score to log
            mlflow.set_tag(f"selection_skipped.{target}", entry["selection_skipped"][:5000])
        forecast = entry.get("forecast")
        if forecast:  # forward chaining: trained on early cycles, scored on the next 20% (selects with the rest)
            mlflow.set_tag(f"forecast_best.{target}", forecast["best_family"])
            metrics.update(_forecast_metrics(target, forecast))
        summary = entry["summary"].get(champion) if champion is not None else None
        if summary is not None:
            metrics.update(cv_metrics(target, summary))
            coverage = summary.get("coverage")
            if coverage is not None and coverage < level:
                mlflow.set_tag(
                    f"warning.{target}", f"CV coverage {coverage:.0%} is below the {level:.0%} interval level"
                )
        for family, reason in entry["skipped_families"].items():
            mlflow.set_tag(f"skipped.{family}.{target}", reason[:5000])
        mlflow.set_tag(f"champion.{target}", champion or "none")
        if entry.get("champion_reason"):
            mlflow.set_tag(f"champion_reason.{target}", entry["champion_reason"][:5000])
        variance = entry.get("sample_variance")
        if variance:
            space = "log10_decades" if TARGET_SPACES[target].name == "log10" else "logit"
            metrics[f"sample_spread/{target}/sd_{space}"] = float(np.sqrt(variance["between_variance"]))
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
    columns = [ANNEAL_TEMP_C, "ea_ev", "ea_se_ev", "ea_sigma_ev", "ea_sigma_se_ev", "n_temperatures"]
    return table[[c for c in columns if c in table.columns]].reset_index(drop=True)


def _log_activation_energies(table: pd.DataFrame) -> None:
    for row in table.itertuples(index=False):
        state = f"anneal_{getattr(row, ANNEAL_TEMP_C):g}c"
        mlflow.log_metrics({f"arrhenius/{state}/ea_ev": row.ea_ev, f"arrhenius/{state}/ea_se_ev": row.ea_se_ev})
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


# ---------------------------------------------------------------------- promotion
SMALL_DATA_FRACTION = 0.5
"""Data with fewer rows than this fraction of the champion's does not replace it without ``promote``."""


def covered_buffers(surrogate: Surrogate) -> set[str]:
    """Buffers a surrogate was trained on: ``info["buffers"]``, or (older bundles) its training domains."""
    if surrogate.info.get("buffers") is not None:
        return set(surrogate.info["buffers"])
    buffers: set[str] = set()
    for domain in surrogate.domains.values():
        if BUFFER in domain.categorical:
            position = domain.categorical.index(BUFFER)
            buffers.update(key[position] for key in domain.regions)
    return buffers


def promotion_problems(data: pd.DataFrame, champion: Surrogate) -> list[str]:
    """Why new training ``data`` should not replace ``champion`` unasked: much smaller data
    (:data:`SMALL_DATA_FRACTION` of its rows), or no rows of buffers it covers (empty: none)."""
    problems = []
    rows = sum((champion.info.get("rows") or {}).values())
    if rows and len(data) < SMALL_DATA_FRACTION * rows:
        problems.append(f"{len(data)} rows against the champion's {rows} training rows")
    new_buffers = set(data[BUFFER].dropna()) if BUFFER in data.columns else set()
    lacking = sorted(covered_buffers(champion) - new_buffers)
    if lacking:
        problems.append(f"no rows of buffer(s) {', '.join(lacking)} that the champion covers")
    return problems


def promotion_decision(data: pd.DataFrame, current: tuple[str, Surrogate] | None, promote: bool) -> tuple[bool, str]:
    """(whether the new version becomes ``@champion``, why): it does unless the data is much smaller than the
    champion's (:data:`SMALL_DATA_FRACTION`) or lacks buffers the champion covers, and ``promote`` is false."""
    if current is None:
        return True, "no champion yet: this version is the champion"
    version, champion = current
    if promote:
        return True, f"--promote: this version replaces version {version} as champion"
    problems = promotion_problems(data, champion)
    if problems:
        return False, (
            f"NOT promoted: version {version} stays champion ({'; '.join(problems)}). Use it with --model "
            f"models:/{REGISTERED_MODEL_NAME}/<version>, or train again with --promote to make it the champion"
        )
    return True, f"this version replaces version {version} as champion"


def champion_validation_rows(champion: Surrogate) -> tuple[pd.DataFrame | None, str]:
    """The champion's own validation split: the rows it was cross-validated on, re-read from its data source.

    Returns (the validated frame, its description), or (None, why not) when the source is gone or no longer
    the data the champion was trained on (its sha256 differs from the champion's ``data_hash``).
    """
    info = champion.info
    source = str(info.get("data_source") or "")
    try:
        data, described, _ = load_data(None if source.startswith("embedded data set") else source)
    except (InputError, OSError) as exc:
        return None, f"its training data {source or '(unknown)'} cannot be read again ({exc})"
    if info.get("data_hash") and data_hash(data) != info["data_hash"]:
        return None, f"its training data {described} has changed since it was trained"
    return data, described


def _held_out(champion_rows: pd.DataFrame, new_data: pd.DataFrame) -> pd.DataFrame:
    """The champion's rows that are not rows of the new training data (same values in every shared column)."""
    shared = [c for c in champion_rows.columns if c in new_data.columns]
    seen = set(new_data[shared].astype(str).itertuples(index=False, name=None))
    rows = champion_rows[shared].astype(str).itertuples(index=False, name=None)
    return champion_rows[[row not in seen for row in rows]].reset_index(drop=True)


def compare_on_champion_split(
    surrogate: Surrogate, data: pd.DataFrame, current: tuple[str, Surrogate], kept: dict[str, str]
) -> tuple[bool, str]:
    """(whether the new version is better on the champion's own validation split, the figures that say so).

    The champion's training rows (:func:`champion_validation_rows`), less those the new data also has, are
    predicted by the new version; per target its RMSE in natural space (log10 σ decades, logit retention) must
    be below the champion's own out-of-fold CV RMSE on them (``info["cv_scores"]``), for every target the
    champion models. A target the new version lacks, keeps from the champion, or cannot predict (a buffer it
    never saw), or a champion target without a CV score (the small-data fallback), means not better.
    """
    from surrogate.evaluation import training_xy

    version, champion = current
    rows, described = champion_validation_rows(champion)
    if rows is None:
        return False, f"cannot compare on version {version}'s validation split: {described}"
    rows = _held_out(rows, data)
    figures, worse = [], []
    for target in champion.targets:
        champion_rmse = ((champion.info.get("cv_scores") or {}).get(target) or {}).get("rmse")
        if target not in surrogate.targets or target in kept:
            worse.append(f"{target}: no model of its own")
            continue
        if champion_rmse is None:
            worse.append(f"{target}: version {version} has no CV score to compare with")
            continue
        X, y, _ = training_xy(rows, target)
        if not len(y):
            continue
        try:
            mean = np.asarray(surrogate.models[target].predict(X), dtype=float)
        except InputError as exc:
            worse.append(f"{target}: cannot predict its rows ({exc})")
            continue
        rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
        text = f"{target} RMSE {rmse:.3g} on {len(y)} held-out rows against its CV RMSE {champion_rmse:.3g}"
        (figures if rmse < champion_rmse else worse).append(text)
    if not figures and not worse:
        return False, f"version {version}'s validation split ({described}) has no row the new data lacks"
    if worse:
        return False, f"not better on version {version}'s validation split ({described}): " + "; ".join(worse)
    return True, f"better on version {version}'s validation split ({described}): " + "; ".join(figures)


def final_promotion(
    promotion: tuple[bool, str],
    surrogate: Surrogate,
    data: pd.DataFrame,
    current: tuple[str, Surrogate] | None,
    kept: dict[str, str],
) -> tuple[bool, str]:
    """:func:`promotion_decision`, then for a version it holds back the second route: it becomes ``@champion``
    when it is better on the champion's own validation split (:func:`compare_on_champion_split`)."""
    if promotion[0] or current is None:
        return promotion
    better, why = compare_on_champion_split(surrogate, data, current, kept)
    if better:
        held_back = "; ".join(promotion_problems(data, current[1]))
        return True, f"this version replaces version {current[0]} as champion although {held_back}: it is {why}"
    return False, f"{promotion[1]}. It is {why}"


# ---------------------------------------------------------------------- train
MISSING_TARGET_POLICIES = ("refuse", "keep", "drop")
"""What :func:`train` does when the registered champion models a target the new data cannot train:
``refuse`` (InputError before anything is written), ``keep`` (the new version keeps the earlier
champion's model of that target, and says so), ``drop`` (the new version has no model for it)."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while training (main thread only), so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _TERMINATION.set()  # kept: a raise inside a GC or weakref callback is printed and swallowed by Python
        raise Terminated(f"terminated by signal {signum}")

    _TERMINATION.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
        check_terminated()
    finally:
        signal.signal(signal.SIGTERM, previous)


_TERMINATION = threading.Event()
"""Set by the SIGTERM handler of :func:`_sigterm_raises`, so a Terminated that Python swallowed is not lost."""


def check_terminated() -> None:
    """Raise :class:`Terminated` if SIGTERM arrived during training (called before anything is registered)."""
    if _TERMINATION.is_set():
        raise Terminated("terminated by signal 15")


def stop_worker_processes() -> None:
    """Kill joblib's loky worker processes (cross-validation runs in them), if any were started."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


def trainable_targets(data: pd.DataFrame, families: list[str]) -> dict[str, int]:
    """Target → training rows, for the targets training can model: by cross-validated selection among
    ``families``, or by the small-data fallback (:func:`surrogate.evaluation.target_outlook`)."""
    outlooks = (target_outlook(data, target, families) for target in target_names())
    return {o.target: o.rows for o in outlooks if o is not None and o.plan != "none"}


def _missing_message(version: str, lacking: dict[str, int], source: str, families: list[str]) -> str:
    from surrogate.models.registry import FAMILIES

    needed = min(FAMILIES[name].min_rows for name in families)
    what = ", ".join(f"{t} ({n} training rows)" for t, n in lacking.items())
    targets = ", ".join(lacking)
    return (
        f"data: the current champion {REGISTERED_MODEL_NAME} version {version} has a model for {targets}, but "
        f"{source} has too few rows to train one: {what}; at least {needed} are needed. Nothing was written. "
        f"To proceed, choose one: add those measurements to the file; or --missing-targets keep (the new "
        f"version keeps version {version}'s model for {targets}, and says so); or --missing-targets drop (the new "
        f"champion has no model for {targets})."
    )


def _keep_earlier(
    surrogate: Surrogate, earlier: Surrogate, targets: list[str], version: str
) -> tuple[Surrogate, dict[str, str]]:
    """``surrogate`` plus ``earlier``'s models of ``targets``; info per target copied; returns (merged, kept)."""
    earlier_kept = earlier.info.get("kept") or {}  # a model the earlier version itself kept keeps its origin
    earlier_runs = earlier.info.get("kept_run_ids") or {}
    kept = {t: earlier_kept.get(t, f"{REGISTERED_MODEL_NAME} version {version}") for t in targets}
    models = dict(surrogate.models)
    domains = dict(surrogate.domains)
    info = dict(surrogate.info)
    for target in targets:
        models[target] = earlier.models[target]
        domains[target] = earlier.domains[target]
    for key in ("families", "params", "cv_scores", "sample_variance", "rows"):
        merged = dict(info.get(key) or {})
        merged.update({t: earlier.info[key][t] for t in targets if t in (earlier.info.get(key) or {})})
        info[key] = merged
    info["kept"] = kept
    info["kept_run_ids"] = {t: earlier_runs.get(t, earlier.info.get("run_id")) for t in targets}
    ordered = {t: models[t] for t in target_names() if t in models}
    return Surrogate(models=ordered, domains=domains, info=info), kept


def train(
    data_path: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    families: list[str] | None = None,
    tune_trials: int = 0,
    level: float = DEFAULT_LEVEL,
    progress: bool = True,
    register: bool = True,
    missing_targets: str = "refuse",
    promote: bool = False,
) -> TrainResult:
    """Train, select and register the champion surrogate; everything tracked in one MLflow run.

    ``data_path`` None = the embedded data set (a reconstruction from the paper).
    ``families`` defaults to every family of :data:`surrogate.models.registry.FAMILIES`;
    ``tune_trials`` > 0 first tunes each family × target with that many Optuna trials
    (nested runs) and cross-validates with the best parameters. ``level`` is the
    central interval level (0.9 = 90 %). ``missing_targets`` (:data:`MISSING_TARGET_POLICIES`)
    says what happens when the registered champion models a target this data cannot train.
    The new version becomes ``@champion`` unless its data is much smaller than the champion's or lacks
    buffers the champion covers (:func:`promotion_decision`); ``promote`` makes it the champion anyway.

    Checked before anything is written (no run, no store): bad data
    (:class:`~surrogate.errors.DataValidationError`), bad arguments, no trainable target,
    and missing targets under ``refuse`` (:class:`InputError`). A failure during the run marks
    it FAILED (KILLED on SIGTERM or Ctrl-C, after stopping the worker processes) and
    re-raises. ``train_time_s`` is wall time from loading the data to registration.
    """
    start = time.perf_counter()
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level: {level} must be between 0 and 1 (e.g. 0.9 for a 90% interval)")
    if tune_trials < 0:
        raise InputError(f"tune: {tune_trials} trials; give 0 (no tuning) or more")
    if missing_targets not in MISSING_TARGET_POLICIES:
        raise InputError(f"missing-targets: {missing_targets!r}; choose one of {', '.join(MISSING_TARGET_POLICIES)}")
    names = check_families(families)
    data, source, reconstruction = load_data(data_path)
    refusal = training_refusal(data, names)  # the reason `data validate` gives too
    if refusal is not None:
        raise InputError(f"data: {source}: {refusal}. Nothing was written")
    trainable = trainable_targets(data, names)
    current = current_champion() if register else None
    lacking: dict[str, int] = {}
    if current is not None:
        from surrogate.evaluation import training_xy

        lacking = {t: len(training_xy(data, t)[1]) for t in current[1].targets if t not in trainable}
        if lacking and missing_targets == "refuse":
            raise InputError(_missing_message(current[0], lacking, source, names))
    digest = data_hash(data)
    with _sigterm_raises():
        return _train_run(
            data,
            data_path,
            source,
            reconstruction,
            digest,
            experiment,
            names,
            tune_trials,
            level,
            progress,
            register,
            missing_targets,
            current,
            start,
            promotion_decision(data, current, promote),
        )


def _train_run(
    data: pd.DataFrame,
    data_path: Path | None,
    source: str,
    reconstruction: bool,
    digest: str,
    experiment: str,
    names: list[str],
    tune_trials: int,
    level: float,
    progress: bool,
    register: bool,
    missing_targets: str,
    current: tuple[str, Surrogate] | None,
    start: float,
    promotion: tuple[bool, str] = (True, ""),
) -> TrainResult:
    """The MLflow run of :func:`train` (its checks done): tune, select, log, register."""
    uri = configure_mlflow(experiment)
    mark_runs_of_dead_processes(experiment)  # runs a kill -9 left RUNNING on this host are ended KILLED first
    note = "data: reconstruction from Tan et al. 2021, not measurements" if reconstruction else f"data: {source}"
    run = mlflow.start_run(run_name=run_name(data_path, len(data), current, tune_trials))
    try:
        _log_run_start(data, data_path, source, reconstruction, digest, names, tune_trials, level, missing_targets)
        with workers_die_with_parent():  # loky workers end with this process, even after kill -9 of it
            tuned = _tuned_params(data, tune_trials, names, level, progress)
            # Worker processes know the targets declared on import only: a register_target() one is fitted here.
            in_process = any(t not in PAPER_TARGETS for t in target_names())
            selection = select_champions(
                data, names, level, progress=progress, params=tuned, n_jobs=1 if in_process else None
            )
        surrogate, report = selection.surrogate, selection.report
        for by_family in selection.results.values():
            for cv in by_family.values():
                _log_cv_run(cv)
        _log_report_metrics(report, level)
        surrogate.info.update(
            {
                "data_source": source,
                "data_hash": digest,
                "reconstruction": reconstruction,
                "run_id": run.info.run_id,
                "catalogue": entries_in(data),  # declared again wherever the model is loaded: no file needed
                "buffers": sorted(set(data[BUFFER].dropna())) if BUFFER in data.columns else [],
            }
        )
        if surrogate.info["catalogue"]:
            mlflow.log_dict(surrogate.info["catalogue"], "materials.yaml")
        surrogate, kept = _lost_targets(surrogate, current, missing_targets)
        ea = activation_energies(data)
        if ea is not None:
            _log_activation_energies(ea)
            report["activation_energies"] = ea.to_dict("records")
        report["kept"] = kept
        mlflow.log_dict(report, "cv_report.json")
        _log_plots(data, selection, ea, level, note)
        promotion = final_promotion(promotion, surrogate, data, current, kept)
        mlflow.set_tag(NOTE_TAG, champion_description(surrogate, level, kept))
        check_terminated()  # never register after a SIGTERM, even one whose exception Python swallowed
        model_uri, version = log_surrogate(
            surrogate,
            register=register,
            description=lambda number: champion_description(surrogate, level, kept, number),
            version_tags=_version_tags(surrogate, level, kept, digest, reconstruction),
            promote=promotion[0],
        )
        mlflow.set_tag("promotion", promotion[1])
        if version is not None:
            mlflow.set_tag(NOTE_TAG, champion_description(surrogate, level, kept, version))
        elapsed = time.perf_counter() - start
        mlflow.log_metric("time/train_s", elapsed)
    except BaseException as exc:
        fail_run(exc)
        if isinstance(exc, (Terminated, KeyboardInterrupt)):
            stop_worker_processes()
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
        kept=kept,
        experiment_id=run.info.experiment_id,
        promoted=promotion[0],
        promotion=promotion[1],
    )


def _log_run_start(
    data: pd.DataFrame,
    data_path: Path | None,
    source: str,
    reconstruction: bool,
    digest: str,
    names: list[str],
    tune_trials: int,
    level: float,
    missing_targets: str,
) -> None:
    """The tags (with this process's host and pid), parameters and input dataset of a new training run."""
    mlflow.set_tags(
        {
            "kind": "train",
            "data_source": source,
            "data_hash": digest,
            "reconstruction": str(reconstruction).lower(),
            NOTE_TAG: f"Training on {source} ({len(data)} rows): running.",
            **process_tags(),
        }
    )
    mlflow.log_params(
        {
            "families": ",".join(names),
            "tune_trials": tune_trials,
            "level": level,
            "rows": len(data),
            "missing_targets": missing_targets,
        }
    )
    mlflow.log_input(_mlflow_dataset(data, data_path, digest), context="training")


def _tuned_params(
    data: pd.DataFrame, tune_trials: int, names: list[str], level: float, progress: bool
) -> dict[str, dict[str, dict[str, Any]]]:
    """Target → family → best parameters of ``tune_trials`` Optuna trials each (empty without tuning); logged."""
    tuned: dict[str, dict[str, dict[str, Any]]] = {}
    if not tune_trials:
        return tuned
    for study in tune_all(data, tune_trials, names, level=level, progress=progress):
        if study.skipped is None:
            tuned.setdefault(study.target, {})[study.family] = study.best_params
    mlflow.log_dict(tuned, "tuned_params.json")
    return tuned


def _lost_targets(
    surrogate: Surrogate, current: tuple[str, Surrogate] | None, missing_targets: str
) -> tuple[Surrogate, dict[str, str]]:
    """Apply ``missing_targets`` to the champion's targets this run could not train; (surrogate, kept)."""
    kept: dict[str, str] = {}
    if current is None:
        return surrogate, kept
    lost = [t for t in current[1].targets if t not in surrogate.targets]
    if lost and missing_targets == "refuse":  # every family failed on a target the checks let through
        raise InputError(
            f"data: no model family could be trained for {', '.join(lost)}, which the current champion "
            f"(version {current[0]}) has; this run is marked FAILED and the champion is unchanged. "
            "Use --missing-targets keep or drop to register the other targets."
        )
    if lost and missing_targets == "keep":
        surrogate, kept = _keep_earlier(surrogate, current[1], lost, current[0])
        for target, origin in kept.items():
            mlflow.set_tags(
                {
                    f"champion.{target}": surrogate.info["families"][target],
                    f"kept.{target}": origin,
                    f"kept_run.{target}": surrogate.info["kept_run_ids"][target] or "",
                }
            )
    if lost and missing_targets == "drop":
        mlflow.set_tag("dropped", ", ".join(lost))
    return surrogate, kept


def _version_tags(
    surrogate: Surrogate, level: float, kept: dict[str, str], digest: str, reconstruction: bool
) -> dict[str, str]:
    """Model-version tags: family per target, kept targets, coverage warnings, data hash, reconstruction."""
    tags = {f"champion.{t}": surrogate.info["families"][t] for t in surrogate.targets}
    tags.update({f"kept.{t}": origin for t, origin in kept.items()})
    tags.update({f"warning.{t}": text for t, text in coverage_warnings(surrogate, level).items()})
    tags.update({"data_hash": digest, "reconstruction": str(reconstruction).lower(), "level": f"{level:g}"})
    return tags
