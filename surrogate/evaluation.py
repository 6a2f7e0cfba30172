"""Grouped cross-validation of the model families and the choice of a champion per target.

Training data per target (:func:`training_xy`): the rows of a validated
measurement frame that carry the target, minus the *normalisation rows* —
``rate_retention`` at c_rate ≤ 0.1 C and ``capacity_retention`` at cycle 1 are
1 by definition (the reference the retention is relative to): they carry no
information and sit at the logit clip (logit 0.999 ≈ 6.9) where they would
dominate natural-space errors.

Splits (:func:`split_plans`) follow how the science generalises; each holds out
a whole group (scikit-learn ``LeaveOneGroupOut``):

==================  ===============  ============================================================  =========
target              split            held-out group                                                selects
==================  ===============  ============================================================  =========
conductivity        ``anneal_state``  one anneal temperature (a new film recipe)                    yes
conductivity        ``test_temp``     one test temperature (a new operating point)                  yes
rate_retention      ``c_rate``        one C-rate, every buffer (interpolating the rate curve)       yes
rate_retention      ``buffer``        one buffer's whole curve (a buffer never made)                no
capacity_retention  ``cycle_block``   every curve cut into 10 blocks of consecutive cycles, block    yes
                                      k held out with k+5 (5 folds): filling gaps in cycle life
                                      while consecutive cycles of one cell stay together
capacity_retention  ``curve``         one buffer × protocol curve (e.g. the whole 1000-cycle test)  no
capacity_retention  ``forward``       forward chaining: train on every curve's first 40/60/80% of    yes
                                      cycles, score the rest of it (a forecast to the end of life)
==================  ===============  ============================================================  =========

The splits are *declared* with each target (:attr:`surrogate.targets.Target.cv_plan`); this module
only knows how to cut each kind of grouping. A cycle-block score measures filling gaps in a curve, not
forecasting its end, so fade is chosen on both: the champion's score is the mean of its cycle-block and
its forward-chaining RMSE. Forward chaining (:data:`FORWARD`) cuts every curve at 40%, 60% and 80% of its
cycles and scores each cut on the *whole remaining horizon*, so a family that only extends the last few
cycles well but drifts away towards the end of life does not win; the out-of-fold forecasts of the three
cuts are pooled (a late cycle is forecast from every cut). The previous scheme (cuts at 60/80%, scored on
the next 20% only) is :data:`FORWARD_BASELINE`, for benchmarks. When the curves are too short to chain
forward the split is skipped and the cycle blocks choose alone; ties go to the physics law, the fallback.
The ``forecast`` entry of the selection report gives every family's forecast scores, pooled, per cut and
per protocol (the 1000-cycle ``long`` protocol separately from the 100-cycle ``standard`` one), and the
family that forecasts best.

Small data: when no selecting split can be scored (for example a conductivity set of one film at four
temperatures: one anneal state, and leaving a temperature out leaves too few rows), the target's physics
law is fitted to all rows without model selection, and the report says so (``selection_skipped``); for
conductivity it carries Ea ± SE per anneal state in both the σ·T and the σ form.

"selects" marks splits whose score enters champion selection. Leaving a
buffer or a whole curve out asks for a buffer/protocol the model has no data
for; every design the contract allows has data in the embedded set, so those
splits are reported (they show how a family behaves off its data, and whether
its intervals admit it) but do not choose the champion. A split with fewer
than 2 groups is skipped with the reason.

Every model is a :func:`~surrogate.models.registry.make_model`: the family
wrapped in the shared fresh-sample variance model, fitted with the rows'
``sample_id`` so that replicate films or cells give the between-sample
variance (see :class:`~surrogate.models.features.FreshSampleRegressor`).

Champion rule (:func:`choose_champion`, used by :func:`select_champions`,
the one orchestration path that ``surrogate train`` calls): the family with
the lowest *score*, the mean over a target's selecting splits of the pooled
out-of-fold RMSE in natural space (log10 σ decades; logit retention), among
the families whose intervals are usable: mean CV coverage over the selecting
splits at least ``level`` − :data:`COVERAGE_SLACK` (0.70 for 90% intervals;
if no family qualifies, all are eligible). Families whose score is within
:data:`TIE_TOLERANCE` (1%) of the best are tied — a difference that small is
not resolvable by CV on this little data — and a tie goes to the simplest
family in registry order (physics, gp, trees, torch), so the physics baseline
wins ties.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.model_selection import LeaveOneGroupOut

from surrogate.dataset import to_csv_text
from surrogate.design import (
    BUFFER,
    CAPACITY_RETENTION,
    CYCLES,
    DEFAULT_MATERIAL,
    MATERIAL,
    PROTOCOL,
)
from surrogate.errors import InputError
from surrogate.materials import CATALOGUE, declare_carried, entries_in
from surrogate.models.base import DEFAULT_LEVEL, FEATURES, TARGET_SPACES, Surrogate, TrainingDomain
from surrogate.models.features import CATEGORICAL_COLUMNS
from surrogate.models.registry import FAMILIES, family, make_model
from surrogate.parameters import check_level
from surrogate.targets import TARGETS as TARGET_DECLARATIONS
from surrogate.targets import SplitSpec, get_target, target_names

SELECTION_METRIC = "rmse_natural"
"""Metric (pooled over a split's out-of-fold predictions) whose mean over selecting splits ranks families."""
TIE_TOLERANCE = 0.01
"""Relative score difference below which two families are tied (the simpler one wins)."""
COVERAGE_SLACK = 0.2
"""A family is eligible as champion when its mean CV coverage is at least level − this."""
CYCLE_BLOCKS = 10
CYCLE_FOLDS = 5
SELECTION_RULE = (
    "lowest mean over the target's selecting splits of pooled out-of-fold RMSE in natural space "
    f"(log10 σ; logit retention) among families with mean CV interval coverage ≥ level − {COVERAGE_SLACK:g} "
    f"(all if none); scores within {TIE_TOLERANCE:.0%} of the best are ties, won by the simplest family in the "
    "order physics, gp, trees, torch"
)
SUMMARY_METRICS = ("rmse_natural", "mae_natural", "r2_natural", "coverage", "rmse_units", "mae_units")
"""CV metrics summarised per family and target: the mean over the target's selecting splits of each pooled metric."""
SAMPLE_ID = "sample_id"


# ------------------------------------------------------------------ data
def training_xy(data: pd.DataFrame, target: str) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Features, natural-space target and metadata of the rows of ``data`` that carry ``target``.

    ``data`` is a validated measurement frame (:func:`surrogate.schema.validate_frame`). Returns
    ``X`` (the target's :data:`FEATURES` columns, plus ``material`` when a row is not the paper's LLTO film), ``y`` (log10 σ or logit retention) and the rows'
    full records (``sample_id`` and every other column), all with a fresh 0..n-1 index. Rows
    without the target, with a missing feature, or at the normalisation point (see the module
    docstring) are dropped.
    """
    declaration = get_target(target)
    columns = list(FEATURES[target])
    missing = [c for c in columns + [target] if c not in data.columns]
    if missing:
        raise InputError(f"data: missing column(s) {missing} needed for {target}")
    rows = data[data[target].notna()]
    rows = rows[rows[columns].notna().all(axis=1)]
    if declaration.reference is not None:  # rows at the reference are 1 by definition: no information
        reference = declaration.reference
        rows = rows[rows[reference.column].astype(float) > reference.value]
    rows = rows.reset_index(drop=True)
    if MATERIAL in rows.columns and (rows[MATERIAL].astype(str) != DEFAULT_MATERIAL).any():
        columns = columns + [MATERIAL]  # optional: models read what was measured (absent: the paper's LLTO film)
    X = rows[columns].copy()
    for column in columns:
        if column not in CATEGORICAL_COLUMNS:
            X[column] = X[column].astype(float)
    y = TARGET_SPACES[target].forward(rows[target].to_numpy(dtype=float))
    return X, y, rows


def sample_ids(meta: pd.DataFrame) -> np.ndarray | None:
    """The film / cell id of each row of ``meta`` (a missing id: the row is its own sample); None without the column."""
    if SAMPLE_ID not in meta.columns:
        return None
    ids = meta[SAMPLE_ID].astype(object)
    missing = ids.isna().to_numpy()
    values = ids.astype(str).to_numpy(dtype=object)
    values[missing] = [f"row-{i}" for i in np.flatnonzero(missing)]
    return values


def fit_model(
    family_name: str, target: str, X: pd.DataFrame, y: np.ndarray, meta: pd.DataFrame, params: dict[str, Any]
) -> Any:
    """A fitted :func:`~surrogate.models.registry.make_model` of ``family_name`` (the rows' sample ids passed on)."""
    return make_model(family_name, target, **params).fit(X, y, sample_ids=sample_ids(meta))


# ------------------------------------------------------------------ splits
@dataclass
class SplitPlan:
    """One grouped CV scheme: ``groups`` labels each row; ``selects`` says whether it enters champion selection."""

    name: str
    description: str
    groups: np.ndarray
    selects: bool
    skipped: str | None = None
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None
    """Explicit (train, test) row positions (forward chaining); None: leave one group out."""
    fold_names: list[str] | None = None
    """The label of each explicit fold (forward chaining: its cut point)."""


def _curve_labels(meta: pd.DataFrame) -> np.ndarray:
    return (meta[BUFFER].astype(str) + "/" + meta[PROTOCOL].astype(str)).to_numpy()


def _cycle_blocks(meta: pd.DataFrame) -> np.ndarray:
    """Fold 0..4 of each row: each curve (sample, buffer, protocol) cut in 10 cycle blocks, block k → fold k mod 5."""
    keys = _curve_labels(meta)
    if "sample_id" in meta.columns:
        keys = keys + "/" + meta["sample_id"].astype(str).to_numpy()
    folds = np.zeros(len(meta), dtype=int)
    cycles = meta[CYCLES].astype(float).to_numpy()
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        order = idx[np.argsort(cycles[idx], kind="stable")]
        block = np.arange(order.size) * CYCLE_BLOCKS // order.size
        folds[order] = block % CYCLE_FOLDS
    return folds


@dataclass(frozen=True)
class ForwardScheme:
    """How forward chaining cuts each curve: train on every curve's first ``cut`` share of cycles, score
    the cycles after it up to ``cut + horizon`` (``horizon`` None: to the end of the curve)."""

    cuts: tuple[float, ...]
    horizon: float | None = None

    def describe(self) -> str:
        cuts = "/".join(f"{c:.0%}" for c in self.cuts)
        scored = "the rest of the curve" if self.horizon is None else f"the next {self.horizon:.0%}"
        return f"train on each curve's first {cuts} of cycles, score {scored}"


FORWARD = ForwardScheme(cuts=(0.4, 0.6, 0.8), horizon=None)
"""Forward chaining as selection uses it: three cut points, each scored on the whole remaining horizon (a
forecast to the end of life is what the user asks for, not only the next few cycles)."""
FORWARD_BASELINE = ForwardScheme(cuts=(0.6, 0.8), horizon=0.2)
"""The previous scheme (two cuts, the next 20% only), kept so benchmarks can compare against it."""


def _forward_folds(
    meta: pd.DataFrame, scheme: ForwardScheme = FORWARD
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """(last fold scoring each row, -1 = never scored; folds as (train, test) positions; each fold's cut label).

    Each curve (buffer, protocol and sample) is ordered by cycles; a row's share is its rank's midpoint over
    the curve's rows, so a cut at 0.4 trains on the first 40% of every curve's rows. With the whole remaining
    horizon the folds overlap (a late row is scored from every cut), so ``labels`` holds only the last.
    """
    keys = _curve_labels(meta)
    if "sample_id" in meta.columns:
        keys = keys + "/" + meta["sample_id"].astype(str).to_numpy()
    share = np.zeros(len(meta))
    cycles = meta[CYCLES].astype(float).to_numpy()
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        order = idx[np.argsort(cycles[idx], kind="stable")]
        share[order] = (np.arange(order.size) + 0.5) / order.size
    labels = np.full(len(meta), -1)
    folds, names = [], []
    for k, cut in enumerate(scheme.cuts):
        end = np.inf if scheme.horizon is None else cut + scheme.horizon
        train = np.flatnonzero(share < cut)
        test = np.flatnonzero((share >= cut) & (share < end))
        if train.size and test.size:
            folds.append((train, test))
            names.append(f"cut {cut:.0%}")
            labels[test] = k
    return labels, folds, names


def _plan(spec: SplitSpec, X: pd.DataFrame, meta: pd.DataFrame, forward: ForwardScheme = FORWARD) -> SplitPlan:
    """The rows' groups (or folds) of one declared split; ``forward`` cuts a forward-chaining split."""
    if spec.grouping == "column":
        values = X[spec.column].to_numpy()
        groups = values.astype(str) if spec.column in CATEGORICAL_COLUMNS else values
        return SplitPlan(spec.name, spec.description, groups, spec.selects)
    if spec.grouping == "curve":
        return SplitPlan(spec.name, spec.description, _curve_labels(meta), spec.selects)
    if spec.grouping == "cycle_blocks":
        return SplitPlan(spec.name, spec.description, _cycle_blocks(meta), spec.selects)
    if spec.grouping == "forward":
        labels, folds, names = _forward_folds(meta, forward)
        description = f"forward chaining: {forward.describe()} (a forecast, not an interpolation)"
        return SplitPlan(spec.name, description, labels, spec.selects, folds=folds, fold_names=names)
    raise InputError(f"split {spec.name!r}: unknown grouping {spec.grouping!r}")  # Target validates this


def split_plans(X: pd.DataFrame, meta: pd.DataFrame, target: str, forward: ForwardScheme = FORWARD) -> list[SplitPlan]:
    """The grouped CV splits of ``target`` as declared (see the module docstring), each with its groups or a skip
    reason; a forward-chaining split is cut by ``forward`` (default :data:`FORWARD`)."""
    plans = [_plan(spec, X, meta, forward) for spec in get_target(target).cv_plan]
    for plan in plans:
        if plan.folds is not None:
            if len(plan.folds) < 1:
                plan.skipped = "too few rows per curve to chain forward"
            continue
        n_groups = np.unique(plan.groups).size
        if n_groups < 2:
            plan.skipped = f"only {n_groups} group(s) of {plan.name} in the data; a grouped split needs ≥ 2"
    return plans


# ------------------------------------------------------------------ metrics
def _r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    if y.size < 2 or np.var(y) == 0:
        return None
    return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - np.mean(y)) ** 2))


def score_predictions(
    target: str, y: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = DEFAULT_LEVEL
) -> dict[str, Any]:
    """RMSE, MAE, R² in natural space (``*_natural``) and, for retentions, in contract units (``*_units``,
    fraction); ``coverage`` of the central ``level`` interval and its mean width (natural space)."""
    y, mean, std = (np.asarray(a, dtype=float) for a in (y, mean, std))
    z = norm.ppf(0.5 + level / 2.0)
    err = mean - y
    out: dict[str, Any] = {
        "n": int(y.size),
        "rmse_natural": float(np.sqrt(np.mean(err**2))),
        "mae_natural": float(np.mean(np.abs(err))),
        "r2_natural": _r2(y, mean),
        "coverage": float(np.mean(np.abs(err) <= z * std)),
        "interval_width_natural": float(np.mean(2 * z * std)),
    }
    if get_target(target).value_kind == "fraction":
        space = TARGET_SPACES[target]
        yu, mu = space.inverse(y), space.inverse(mean)
        out["rmse_units"] = float(np.sqrt(np.mean((mu - yu) ** 2)))
        out["mae_units"] = float(np.mean(np.abs(mu - yu)))
        out["r2_units"] = _r2(yu, mu)
        out["interval_width_units"] = float(np.mean(space.inverse(mean + z * std) - space.inverse(mean - z * std)))
    return out


# ------------------------------------------------------------------ cross-validation
@dataclass
class CVResult:
    """Cross-validation of one family on one target.

    ``splits`` maps split name → {description, selects, n_groups, folds (per-fold metrics or skip
    reason), overall (metrics pooled over out-of-fold predictions), skipped}. ``score`` is the
    selection score (None when nothing could be scored); ``skipped`` the reason the family was
    not evaluated at all. ``predictions`` maps split name → out-of-fold predictions (the rows'
    metadata plus ``fold``, ``y``, ``mean``, ``std`` in natural space) for plots; not in :meth:`to_dict`.
    """

    family: str
    target: str
    level: float
    n_rows: int
    params: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    score: float | None = None
    coverage: float | None = None
    fit_seconds: float = 0.0
    skipped: str | None = None
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no predictions)."""
        return {
            "family": self.family,
            "target": self.target,
            "level": self.level,
            "n_rows": self.n_rows,
            "params": _plain(self.params),
            "selection_metric": SELECTION_METRIC,
            "score": self.score,
            "coverage": self.coverage,
            "fit_seconds": round(self.fit_seconds, 3),
            "skipped": self.skipped,
            "splits": _plain(self.splits),
        }


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays → Python, recursively (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_level(level: float) -> float:
    return check_level(level)  # one declaration of the allowed levels (surrogate.parameters.LEVEL_BOUNDS)


def _run_folds(
    plan: SplitPlan,
    entry: dict[str, Any],
    family_name: str,
    min_rows: int,
    target: str,
    X: pd.DataFrame,
    y: np.ndarray,
    meta: pd.DataFrame,
    params: dict[str, Any],
    level: float,
) -> list[pd.DataFrame]:
    """Fit and score every fold of ``plan`` (each fold's record goes to ``entry["folds"]``); the out-of-fold
    predictions of the folds that could be fitted."""
    parts = []
    folds = plan.folds if plan.folds is not None else LeaveOneGroupOut().split(X, y, plan.groups)
    for fold, (train, test) in enumerate(folds):
        group = plan.fold_names[fold] if plan.fold_names is not None else _plain(plan.groups[test[0]])
        record: dict[str, Any] = {"fold": fold, "group": group, "n_train": int(train.size), "n_test": int(test.size)}
        entry["folds"].append(record)
        if train.size < min_rows:
            record["skipped"] = f"{train.size} training rows; {family_name} needs ≥ {min_rows}"
            continue
        try:
            model = fit_model(family_name, target, X.iloc[train], y[train], meta.iloc[train], params)
            mean, std = model.predict(X.iloc[test], return_std=True)
        except InputError as exc:
            record["skipped"] = f"fit refused the fold's data: {exc}"
            continue
        record.update(score_predictions(target, y[test], mean, std, level))
        parts.append(meta.iloc[test].assign(fold=fold, y=y[test], mean=mean, std=std))
    return parts


def _score_split(plan: SplitPlan, entry: dict[str, Any], target: str, oof: pd.DataFrame, level: float) -> None:
    """The split's overall scores from its out-of-fold predictions; forecasts also per cut and per protocol."""
    entry["overall"] = score_predictions(target, oof["y"], oof["mean"], oof["std"], level)
    if plan.fold_names is not None:  # forecasts: each cut point apart
        entry["by_cut"] = {
            name: score_predictions(target, part["y"], part["mean"], part["std"], level)
            for name, part in zip(
                plan.fold_names, (oof[oof["fold"] == k] for k in range(len(plan.fold_names))), strict=True
            )
            if len(part)
        }
    if plan.folds is not None and PROTOCOL in oof.columns:  # forecasts: each protocol's curves apart
        entry["by_protocol"] = {
            str(protocol): score_predictions(target, part["y"], part["mean"], part["std"], level)
            for protocol, part in oof.groupby(PROTOCOL, sort=True)
        }


def cross_validate(
    family_name: str,
    target: str,
    data: pd.DataFrame,
    level: float = DEFAULT_LEVEL,
    params: dict[str, Any] | None = None,
    forward: ForwardScheme = FORWARD,
    splits: tuple[str, ...] | None = None,
) -> CVResult:
    """Grouped CV of ``family_name`` on ``target`` over every split of :func:`split_plans`.

    ``forward`` cuts the forward-chaining split (default :data:`FORWARD`; :data:`FORWARD_BASELINE` is the
    previous scheme). Forecast folds are reported per cut (``by_cut``) and per protocol (``by_protocol``).
    ``splits``: the names of the splits to run (default: every declared split); the others are left out.

    Returns a :class:`CVResult`; when the target has fewer rows than the family's ``min_rows`` it
    is returned with ``skipped`` set (no exception). A fold whose training part is too small, or
    whose fit refuses the data (:class:`InputError`), is recorded with its reason; other
    exceptions propagate.
    """
    spec = family(family_name)
    level = _check_level(level)
    params = dict(params or {})
    X, y, meta = training_xy(data, target)
    result = CVResult(family_name, target, level, len(y), params)
    if len(y) < spec.min_rows:
        result.skipped = f"{len(y)} training rows for {target}; {family_name} needs ≥ {spec.min_rows}"
        return result
    start = time.perf_counter()
    selecting: list[float] = []
    coverages: list[float] = []
    for plan in split_plans(X, meta, target, forward):
        if splits is not None and plan.name not in splits:
            continue
        entry: dict[str, Any] = {
            "description": plan.description,
            "selects": plan.selects,
            "n_groups": int(len(plan.folds) if plan.folds is not None else np.unique(plan.groups).size),
            "folds": [],
            "overall": None,
            "skipped": plan.skipped,
        }
        result.splits[plan.name] = entry
        if plan.skipped:
            continue
        parts = _run_folds(plan, entry, family_name, spec.min_rows, target, X, y, meta, params, level)
        if not parts:
            entry["skipped"] = "no fold could be fitted"
            continue
        oof = pd.concat(parts)
        result.predictions[plan.name] = oof
        _score_split(plan, entry, target, oof, level)
        if plan.selects:
            selecting.append(entry["overall"][SELECTION_METRIC])
            coverages.append(entry["overall"]["coverage"])
    result.fit_seconds = time.perf_counter() - start
    result.score = float(np.mean(selecting)) if selecting else None
    result.coverage = float(np.mean(coverages)) if coverages else None
    if result.score is None and result.skipped is None:
        refusals = [
            f["skipped"]
            for entry in result.splits.values()
            for f in entry["folds"]
            if "fit refused" in f.get("skipped", "")
        ]
        why = f": {refusals[0]}" if refusals else " (too few groups or rows)"
        result.skipped = f"no selecting split could be scored{why}"
    return result


# ------------------------------------------------------------------ champions
def data_hash(data: pd.DataFrame) -> str:
    """sha256 of the frame's canonical CSV text (the format the embedded data set is stored in)."""
    return hashlib.sha256(to_csv_text(data).encode("utf-8")).hexdigest()


def cv_summary(cv: CVResult) -> dict[str, float | None]:
    """Mean over the selecting splits of each pooled CV metric of :data:`SUMMARY_METRICS` (None when missing).

    Keys drop the ``_natural`` suffix (``rmse``, ``mae``, ``r2``, ``coverage``, ``rmse_units``, ``mae_units``);
    ``score`` is the selection score.
    """
    overall = [s["overall"] for s in cv.splits.values() if s["selects"] and s["overall"]]
    out: dict[str, float | None] = {}
    for metric in SUMMARY_METRICS:
        values = [o[metric] for o in overall if o.get(metric) is not None]
        out[metric.replace("_natural", "")] = float(np.mean(values)) if values else None
    out["score"] = cv.score
    return out


def _cv_job(
    name: str,
    target: str,
    data: pd.DataFrame,
    level: float,
    params: dict[str, Any],
    declared: dict[str, list[dict[str, Any]]] | None = None,
) -> CVResult:
    """CV of one family on one target; an exception becomes a skipped result with the error as reason.

    ``declared``: the catalogue entries the data uses beyond the packaged defaults (:func:`entries_in`). A worker
    process starts with the defaults only, so the job declares them first (a no-op where they are known) and
    forgets them after, so that a reused worker never holds another job's declarations.
    """
    before = CATALOGUE.snapshot()
    added = []
    try:
        added = declare_carried(declared, "the training data's materials")
        return cross_validate(name, target, data, level=level, params=params)
    except Exception as exc:  # noqa: BLE001 - a failing family is reported and skipped, never fatal
        cv = CVResult(name, target, level, len(training_xy(data, target)[1]), dict(params))
        cv.skipped = f"{type(exc).__name__}: {exc}"
        return cv
    finally:
        if added:
            CATALOGUE.restore(before)


def cross_validate_families(
    data: pd.DataFrame,
    families: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
    params: dict[str, dict[str, dict[str, Any]]] | None = None,
    progress: bool = True,
    n_jobs: int | None = None,
) -> dict[str, dict[str, CVResult]]:
    """:func:`cross_validate` of every family on every target: target → family → :class:`CVResult`.

    ``params`` maps target → family → hyper-parameters (missing: the family's defaults). The family ×
    target jobs run in ``n_jobs`` worker processes (default: 1 for a single family, else every core, at
    most 2). A family that raises is kept as a skipped result with the error as its reason.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    names = check_families(families)
    level = _check_level(level)
    params = params or {}
    if n_jobs is None:  # one family's three jobs do not pay for starting worker processes
        n_jobs = 1 if len(names) == 1 else min(2, os.cpu_count() or 1)
    # The slowest jobs first, so two workers finish together.
    jobs = sorted(
        ((n, t) for t in target_names() for n in names),
        key=lambda j: (j[1] != CAPACITY_RETENTION, j[0] == "physics"),
    )
    declared = entries_in(data)  # worker processes know only the packaged defaults: the jobs carry the rest
    if n_jobs == 1:
        outcomes = (_cv_job(n, t, data, level, params.get(t, {}).get(n, {}), declared) for n, t in jobs)
    else:
        outcomes = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_cv_job)(n, t, data, level, params.get(t, {}).get(n, {}), declared) for n, t in jobs
        )
    results: dict[str, dict[str, CVResult]] = {t: {} for t in target_names()}
    for cv in tqdm(outcomes, total=len(jobs), desc="cross-validating", unit="model", disable=not progress):
        results[cv.target][cv.family] = cv
    return {t: {n: results[t][n] for n in names} for t in target_names()}


def _eligible(coverages: dict[str, float], names: list[str], level: float) -> list[str]:
    return [n for n in names if coverages.get(n, 1.0) >= level - COVERAGE_SLACK]


def choose_champion(
    scores: dict[str, float], coverages: dict[str, float] | None = None, level: float = DEFAULT_LEVEL
) -> str:
    """The champion among ``{family: score}`` by :data:`SELECTION_RULE` (eligible by coverage, lowest score,
    ties → simplest family). ``coverages`` maps family → mean CV coverage (missing: eligible)."""
    if not scores:
        raise InputError("no family could be scored")
    coverages = coverages or {}
    eligible = {n: scores[n] for n in _eligible(coverages, list(scores), level)}
    scores = eligible or scores
    best = min(scores.values())
    tied = [name for name, score in scores.items() if score <= best * (1.0 + TIE_TOLERANCE) + 1e-12]
    order = list(FAMILIES)
    return min(tied, key=lambda name: order.index(name) if name in order else len(order))


def check_families(families: list[str] | None) -> list[str]:
    """The family names asked for (default every family), de-duplicated; :class:`InputError` for an unknown one."""
    names = list(FAMILIES) if families is None else list(dict.fromkeys(families))
    if not names:
        raise InputError(f"families: give at least one model family ({', '.join(FAMILIES)})")
    for name in names:
        family(name)
    return names


def _cv_scheme(by_family: dict[str, CVResult]) -> str:
    any_cv = next((cv for cv in by_family.values() if cv.splits), None)
    if any_cv is None:
        return "-"
    return "; ".join(
        f"{name}: {entry['description']}" + ("" if entry["selects"] else " (reported, not used to select)")
        for name, entry in any_cv.splits.items()
    )


@dataclass
class Selection:
    """What :func:`select_champions` produced.

    ``surrogate``: the champions refitted on all rows; ``report``: JSON-ready, per target ``rows``,
    ``cv_scheme``, ``champion``, ``champion_reason``, ``eligible``, ``summary`` (family → :func:`cv_summary`),
    ``skipped_families`` (family → reason), ``families`` (family → :meth:`CVResult.to_dict`),
    ``params`` and ``sample_variance`` of the champion, ``refit_seconds``; ``results``: target →
    family → :class:`CVResult` with the out-of-fold predictions (for plots); ``champions``: target →
    family; ``params``: target → the champion's hyper-parameters.
    """

    surrogate: Surrogate
    report: dict[str, Any]
    results: dict[str, dict[str, CVResult]]
    champions: dict[str, str]
    params: dict[str, dict[str, Any]]


def select_champions(
    data: pd.DataFrame,
    families: list[str] | None = None,
    level: float = DEFAULT_LEVEL,
    progress: bool = True,
    params: dict[str, dict[str, dict[str, Any]]] | None = None,
    n_jobs: int | None = None,
) -> Selection:
    """Cross-validate every family on every target, pick a champion per target, refit it on all rows.

    ``params`` maps target → family → hyper-parameters (e.g. Optuna's best; missing: defaults), used
    in CV and in the refit. The champion follows :data:`SELECTION_RULE` (:func:`choose_champion`).
    Targets without any usable family are left out of the surrogate, with the reasons in the report;
    raises :class:`InputError` when no target can be modelled.
    """
    names = check_families(families)
    level = _check_level(level)
    params = params or {}
    started = time.perf_counter()
    results = cross_validate_families(data, names, level, params, progress=progress, n_jobs=n_jobs)
    report: dict[str, Any] = {
        "level": level,
        "selection_metric": SELECTION_METRIC,
        "selection_rule": SELECTION_RULE,
        "data_sha256": data_hash(data),
        "targets": {},
    }
    models, domains, champions, chosen_params, summaries, variances, rows = {}, {}, {}, {}, {}, {}, {}
    for target in target_names():
        X, y, meta = training_xy(data, target)
        by_family = results[target]
        rows[target] = int(len(y))
        scored = {n: cv for n, cv in by_family.items() if cv.score is not None and cv.skipped is None}
        entry: dict[str, Any] = {
            "rows": int(len(y)),
            "cv_scheme": _cv_scheme(by_family),
            "champion": None,
            "summary": {n: cv_summary(cv) for n, cv in scored.items()},
            "skipped_families": {n: cv.skipped for n, cv in by_family.items() if cv.skipped is not None},
            "families": {n: cv.to_dict() for n, cv in by_family.items()},
        }
        report["targets"][target] = entry
        forecast = _forecast_entry(by_family)
        if forecast is not None:
            entry["forecast"] = forecast
        if not scored:
            try:
                model, note, extra = _small_data_fallback(target, X, y, meta, params.get(target, {}).get("physics", {}))
            except InputError as exc:
                entry["skipped"] = (
                    f"no family could be cross-validated on this target, and {exc}" if len(y) else "no rows"
                )
                continue
            models[target], domains[target], champions[target] = model, TrainingDomain.from_frame(X), "physics"
            chosen_params[target] = {}
            entry.update(champion="physics", selection_skipped=note, **extra)
            entry["sample_variance"] = variances[target] = model.sample_variance_.to_dict()
            summaries[target] = {"score": None, "selection_skipped": note}
            continue
        scores = {n: float(cv.score) for n, cv in scored.items()}
        coverages = {n: cv.coverage for n, cv in scored.items() if cv.coverage is not None}
        champion = choose_champion(scores, coverages, level)
        eligible = _eligible(coverages, list(scores), level)
        entry["eligible"] = eligible or list(scores)
        entry["champion_reason"] = (
            f"lowest CV score {scores[champion]:.4g} (tie margin {TIE_TOLERANCE:.0%}, simplest wins) among "
            + (
                f"families with CV coverage ≥ {level - COVERAGE_SLACK:.2f}: {', '.join(eligible)}"
                if eligible
                else f"all families (none reached CV coverage {level - COVERAGE_SLACK:.2f})"
            )
        )
        champion_params = dict(params.get(target, {}).get(champion, {}))
        refit_start = time.perf_counter()
        models[target] = fit_model(champion, target, X, y, meta, champion_params)
        entry["refit_seconds"] = round(time.perf_counter() - refit_start, 3)
        entry["champion"] = champion
        entry["params"] = _plain(champion_params)
        entry["sample_variance"] = models[target].sample_variance_.to_dict()
        domains[target] = TrainingDomain.from_frame(X)
        champions[target] = champion
        chosen_params[target] = champion_params
        summaries[target] = entry["summary"][champion]
        variances[target] = entry["sample_variance"]
    report["total_seconds"] = round(time.perf_counter() - started, 3)
    if not models:
        lines = ["data: no target could be modelled, every model family was skipped:"]
        for target, entry in report["targets"].items():
            reasons = "; ".join(f"{f}: {r}" for f, r in entry["skipped_families"].items()) or "no rows"
            lines.append(f"  {target} ({entry['rows']} training rows): {reasons}")
            if entry["rows"] and entry.get("skipped"):
                lines.append(f"    then: {entry['skipped']}")
        raise InputError("\n".join(lines))
    info = {
        "families": champions,
        "params": _plain(chosen_params),
        "cv_scores": summaries,
        "sample_variance": variances,
        "selection_metric": SELECTION_METRIC,
        "selection_rule": SELECTION_RULE,
        "level": level,
        "data_sha256": report["data_sha256"],
        "rows": rows,
    }
    surrogate = Surrogate(models=models, domains=domains, info=info)
    return Selection(surrogate, report, results, champions, chosen_params)


def fit_surrogate(
    data: pd.DataFrame, families: dict[str, str], params: dict[str, dict[str, Any]] | None = None
) -> Surrogate:
    """Fit the given family per target on all rows, without CV (fast refits, e.g. in campaigns).

    ``families`` maps target → family name; ``params`` optionally maps target → that family's
    hyper-parameters. Raises :class:`InputError` for an unknown target or family, or a target
    with fewer rows than the family needs.
    """
    params = params or {}
    if not families:
        raise InputError("families: give at least one target → family")
    unknown = [t for t in list(families) + list(params) if t not in TARGET_DECLARATIONS]
    if unknown:
        raise InputError(f"unknown target(s) {sorted(set(unknown))}; allowed are {', '.join(TARGET_DECLARATIONS)}")
    models, domains = {}, {}
    rows = {}
    for target, name in families.items():
        spec = family(name)
        X, y, meta = training_xy(data, target)
        if len(y) < spec.min_rows:
            raise InputError(f"{target}: {len(y)} training rows; the {name} family needs ≥ {spec.min_rows}")
        models[target] = fit_model(name, target, X, y, meta, params.get(target, {}))
        domains[target] = TrainingDomain.from_frame(X)
        rows[target] = int(len(y))
    info = {"families": dict(families), "params": params, "data_sha256": data_hash(data), "rows": rows}
    return Surrogate(models=models, domains=domains, info=info)


# ------------------------------------------------------------------ small data and forecasts
SMALL_DATA_NOTE = (
    "model selection was skipped: the data has too few groups or rows for cross-validation, so the target's "
    "physics law was fitted to all rows (its interval comes from the fit's residuals and parameter covariance)"
)


def _small_data_fallback(
    target: str, X: pd.DataFrame, y: np.ndarray, meta: pd.DataFrame, params: dict[str, Any]
) -> tuple[Any, str, dict[str, Any]]:
    """The physics law fitted to all rows when no family could be cross-validated.

    Returns (model, note, extra report entries); for conductivity the extra entries hold Ea ± SE per anneal
    state in both Arrhenius forms (``activation_energies``). Raises :class:`InputError` saying why the law
    cannot be fitted (no law declared, fewer than 3 rows, or the fit refuses the rows: e.g. a single test
    temperature per anneal state, or several materials).
    """
    if get_target(target).physics_law is None:
        raise InputError(f"{target} declares no physics law to fit without model selection")
    if len(y) < 3:
        raise InputError(f"its physics law needs ≥ 3 rows, not {len(y)}")
    try:
        model = fit_model("physics", target, X, y, meta, params)
    except InputError as exc:
        raise InputError(f"its physics law cannot be fitted to all rows either: {exc}") from None
    extra: dict[str, Any] = {}
    if get_target(target).physics_law == "arrhenius":
        table = model.estimator_.activation_energies()
        extra["activation_energies"] = [
            {
                "anneal_temp_c": float(row.anneal_temp_c),
                "n_temperatures": int(row.n_temperatures),
                "sigma_T_form": {"ea_ev": float(row.ea_ev), "ea_se_ev": float(row.ea_se_ev)},
                "sigma_form": {"ea_ev": float(row.ea_sigma_ev), "ea_se_ev": _finite_or_none(row.ea_sigma_se_ev)},
                "note": "Arrhenius fits: σ·T = A exp(−Ea/kT) and σ = A' exp(−Ea/kT); the forms differ by about kT",
            }
            for row in table.itertuples(index=False)
        ]
    return model, SMALL_DATA_NOTE, extra


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _forecast_entry(by_family: dict[str, CVResult]) -> dict[str, Any] | None:
    """The forward-chaining (forecast) scores of every family, and which forecasts best (physics on ties)."""
    scores, by_protocol, by_cut = {}, {}, {}
    for name, cv in by_family.items():
        entry = cv.splits.get("forward")
        if entry and entry.get("overall"):
            scores[name] = entry["overall"]
            by_protocol[name] = entry.get("by_protocol", {})
            by_cut[name] = entry.get("by_cut", {})
    if not scores:
        return None
    rmse = {n: o["rmse_natural"] for n, o in scores.items()}
    best = choose_champion(rmse)
    return {
        "split": "forward",
        "selects": True,
        "best_family": best,
        "fallback": "physics",
        "families": _plain(scores),
        "by_protocol": _plain(by_protocol),
        "by_cut": _plain(by_cut),
        "note": f"forecast: {FORWARD.describe()}; the cuts' forecasts are pooled and their RMSE enters champion "
        "selection beside the cycle blocks; the physics law is the fallback (ties, and curves too short to "
        "chain forward)",
    }


@dataclass(frozen=True)
class TargetOutlook:
    """What training will do with one target of a data set, decided before any run (``data validate`` says it).

    ``plan``: ``"select"`` (cross-validation chooses a champion; ``reason`` names the splits that cannot be
    scored, or is empty), ``"fallback"`` (the physics law fitted to all rows without model selection; ``reason``
    says why), ``"none"`` (no model can be trained; ``reason`` says why). ``rows``: training rows of the target.
    """

    target: str
    rows: int
    plan: str
    reason: str = ""


def _unscorable_splits(X: pd.DataFrame, meta: pd.DataFrame, target: str, smallest: int) -> tuple[int, list[SplitPlan]]:
    """(number of selecting splits, those that cannot be scored: too few groups, or too few rows left to train)."""
    plans = [p for p in split_plans(X, meta, target) if p.selects]
    for plan in plans:
        if plan.skipped or plan.folds is not None:
            continue
        _, counts = np.unique(plan.groups, return_counts=True)
        largest_train = len(meta) - int(counts.min())
        if largest_train < smallest:
            plan.skipped = (
                f"leaving one {plan.name} out leaves at most {largest_train} training rows; "
                f"the smallest model family needs ≥ {smallest}"
            )
    return len(plans), [p for p in plans if p.skipped]


def target_outlook(data: pd.DataFrame, target: str, families: list[str] | None = None) -> TargetOutlook | None:
    """The :class:`TargetOutlook` of ``target`` in a validated frame (None: the data has no value of it).

    The small-data fallback is tried for real (the physics law is cheap to fit on the few rows it applies to),
    so what this says is what :func:`select_champions` does.
    """
    if target not in data.columns or not data[target].notna().any():
        return None
    try:
        X, y, meta = training_xy(data, target)
    except InputError as exc:  # e.g. a column the target's features need
        return TargetOutlook(target, 0, "none", str(exc))
    smallest = min(FAMILIES[name].min_rows for name in check_families(families))
    if len(y) < smallest:
        why = f"{len(y)} training row(s); cross-validation needs ≥ {smallest}"
    else:
        n_plans, short = _unscorable_splits(X, meta, target, smallest)
        if len(short) < n_plans:
            names = ", ".join(p.name for p in short)
            return TargetOutlook(target, len(y), "select", f"split(s) {names} cannot be scored" if short else "")
        reasons = "; ".join(f"{p.name}: {p.skipped}" for p in short) or "no selecting split is declared"
        why = f"too few groups for cross-validation ({reasons})"
    try:
        _small_data_fallback(target, X, y, meta, {})
    except InputError as exc:
        return TargetOutlook(target, len(y), "none", f"{why}, and {exc}")
    return TargetOutlook(target, len(y), "fallback", why)


def cv_readiness(data: pd.DataFrame, families: list[str] | None = None) -> list[str]:
    """Warnings, ahead of training, for targets with too few rows or groups for cross-validation.

    ``data`` is a validated measurement frame. One warning per target that has values but whose selecting
    splits cannot all be scored, saying what training will do instead (:func:`target_outlook`), and, when no
    target can be trained, the reason ``surrogate train`` will give (:func:`training_refusal`).
    """
    refusal = training_refusal(data, families)
    if refusal is not None:
        return [f"surrogate train will refuse this file: {refusal}"]
    warnings = []
    for target in target_names():
        outlook = target_outlook(data, target, families)
        if outlook is None or not outlook.reason:
            continue
        if outlook.plan == "select":
            warnings.append(f"{target}: {outlook.reason} (too few groups); selection uses the others")
        elif outlook.plan == "fallback":
            warnings.append(
                f"{target}: {outlook.reason}, so its physics law will be fitted to all rows without model selection"
            )
        else:
            warnings.append(f"{target}: no model can be trained for it: {outlook.reason}")
    return warnings


def training_refusal(data: pd.DataFrame, families: list[str] | None = None) -> str | None:
    """Why ``surrogate train`` refuses ``data`` before any run (no target can be trained), or None.

    One text for ``train`` (its exit-2 message) and ``data validate`` (its warning), from :func:`target_outlook`.
    """
    outlooks = [o for o in (target_outlook(data, t, families) for t in target_names()) if o is not None]
    if any(o.plan != "none" for o in outlooks):
        return None
    if not outlooks:
        return "no row carries a target value"
    return "no target can be trained: " + "; ".join(f"{o.target}: {o.reason}" for o in outlooks)
