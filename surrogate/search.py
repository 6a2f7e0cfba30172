"""Optuna search of the design space on a fitted :class:`~surrogate.models.base.Surrogate`.

One or several :class:`~surrogate.objectives.Objective` (several: a Pareto front) are maximised over
``buffer``, ``anneal_temp_c`` (°C) and ``test_temp_c`` (°C). The space's bounds are the search
ranges; its user constraints (``max_anneal_temp_c``, ``min_test_temp_c``, ``max_test_temp_c``) go
through ``trial.set_constraint`` (value <= 0 is feasible), so infeasible designs are known to the
sampler rather than silently clipped. The study lives in Optuna storage (:mod:`surrogate.storage`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from surrogate.design import ANNEAL_TEMP_C, BUFFER, TEST_TEMP_C, DesignSpace
from surrogate.errors import InputError
from surrogate.models.base import DEFAULT_LEVEL, Surrogate
from surrogate.objectives import Objective

STUDY_PREFIX = "search-"
"""Name prefix of search studies (campaigns use their own names); the study user attr ``kind`` is ``search``."""
STUDY_KIND = "search"
SUPPORTED = "best supported by the data"
SUPPORTED_HELP = "the best designs among those inside the model's training data (no extrapolation)"
PROMISING = "most promising to test next"
PROMISING_HELP = "the best designs anywhere in the space, extrapolations included: worth a measurement, not yet known"
HYPERVOLUME_REFERENCE_S_CM = 1e-8
"""Conductivity reference of :func:`hypervolume` (S/cm): a film below it is useless as an electrolyte."""


@dataclass
class SearchResult:
    """The best designs (single objective) or the feasible Pareto set (several), with predictions.

    ``trials`` holds every completed trial (design, objective scores, ``feasible``, ``extrapolation``)
    for plots; ``duration_s`` is the wall time of the optimisation (s).
    """

    study_name: str
    storage: str
    objectives: list[Objective]
    designs: pd.DataFrame
    n_trials: int
    n_feasible: int
    level: float
    trials: pd.DataFrame | None = None
    duration_s: float | None = None
    provenance: str | None = None
    """What the model was trained on, from its own info (e.g. the embedded reconstruction or a user's file)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "study_name": self.study_name,
            "storage": self.storage,
            "objectives": [o.to_dict() | {"name": o.name, "unit": o.unit} for o in self.objectives],
            "n_trials": self.n_trials,
            "n_feasible": self.n_feasible,
            "level": self.level,
            "designs": json.loads(self.designs.to_json(orient="records")),
            "fronts": {SUPPORTED: SUPPORTED_HELP, PROMISING: PROMISING_HELP},
            "note": self.provenance or model_provenance(None),
        }
        if len(self.objectives) > 1:
            out["hypervolume"] = hypervolume(self)
        return out


def _hypervolume_axis(objective: Objective, values: np.ndarray) -> np.ndarray:
    """An objective's scores on the hypervolume's axis: decades above 1e-8 S/cm, or the fraction itself."""
    values = np.asarray(values, dtype=float)
    if objective.unit == "S/cm":
        return np.log10(np.maximum(values, HYPERVOLUME_REFERENCE_S_CM) / HYPERVOLUME_REFERENCE_S_CM)
    return np.maximum(values, 0.0)


def hypervolume(result: SearchResult) -> float:
    """Hypervolume dominated by the result's designs (a Pareto search's quality: larger is better).

    Axes: a conductivity objective in decades of σ above :data:`HYPERVOLUME_REFERENCE_S_CM`, a
    retention (or product of retentions) as its fraction; the reference point is 0 on every axis.
    So with conductivity, rate and capacity retention the unit is "decades × fraction × fraction".
    """
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    points = np.column_stack([_hypervolume_axis(o, result.designs[o.name].to_numpy()) for o in result.objectives])
    if len(points) == 0:
        return 0.0
    # BoTorch's hypervolume is for maximisation, with the reference point at the origin.
    y = torch.as_tensor(points, dtype=torch.double)
    return float(Hypervolume(torch.zeros(points.shape[1], dtype=torch.double)).compute(y[is_non_dominated(y)]))


def model_provenance(surrogate: Surrogate | None) -> str:
    """A sentence on what the designs' predictions rest on, from the model's own training info."""
    from surrogate.dataset import trained_on_embedded_data

    info = surrogate.info if surrogate is not None else {}
    source = info.get("data_source")
    if trained_on_embedded_data(info):
        return (
            "predictions of a surrogate trained on a reconstruction of Tan et al. 2021 by the virtual lab "
            "(not measurements)"
        )
    return f"predictions of a surrogate trained on {source} (not measurements)"


def hypervolume_unit(objectives: list[Objective]) -> str:
    """The unit of :func:`hypervolume` for these objectives (e.g. ``decades × fraction × fraction``)."""
    return " × ".join("decades" if o.unit == "S/cm" else "fraction" for o in objectives)


def constraint_values(space: DesignSpace, design: dict[str, Any]) -> dict[str, float]:
    """The user constraints of ``space`` as Optuna constraint values (°C; <= 0 feasible)."""
    values = {}
    if space.max_anneal_temp_c is not None:
        values["max_anneal_temp_c"] = design[ANNEAL_TEMP_C] - space.max_anneal_temp_c
    if space.min_test_temp_c is not None:
        values["min_test_temp_c"] = space.min_test_temp_c - design[TEST_TEMP_C]
    if space.max_test_temp_c is not None:
        values["max_test_temp_c"] = design[TEST_TEMP_C] - space.max_test_temp_c
    return values


def evaluate(
    surrogate: Surrogate, objectives: list[Objective], designs: pd.DataFrame, level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """Per design: each objective's score, mean, lower, upper, and ``extrapolation`` (any objective's)."""
    out = designs.reset_index(drop=True).copy()
    extrapolation = np.zeros(len(out), dtype=bool)
    reasons: list[set[str]] = [set() for _ in range(len(out))]
    for objective in objectives:
        full = objective.full_designs(out)
        predictions = surrogate.predict(full, level=level)
        interval = objective.interval(predictions)
        out[f"{objective.name}"] = objective.score(predictions)
        for stat in ("mean", "lower", "upper"):
            out[f"{objective.name}_{stat}"] = interval[stat].to_numpy()
        extrapolation |= predictions["extrapolation"].to_numpy(bool)
        for i, why in enumerate(predictions["extrapolation_reasons"]):
            reasons[i].update(why)
    out["extrapolation"] = extrapolation
    out["extrapolation_reasons"] = [sorted(r) for r in reasons]
    return out


def check_search(
    surrogate: Surrogate, objectives: list[Objective], space: DesignSpace, n_trials: int, seed: int
) -> None:
    """Raise :class:`InputError` for a search that cannot run (checked before anything is written)."""
    if not objectives:
        raise InputError("objective: give at least one")
    if not 1 <= n_trials <= 100_000:
        raise InputError(f"n_trials: {n_trials} must be from 1 to 100000")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: {seed!r} must be a whole number >= 0")
    for objective in objectives:
        objective.check_space(space)
    missing = sorted({t for o in objectives for t in o.targets} - set(surrogate.targets))
    if missing:
        raise InputError(
            f"model: has no model for {', '.join(missing)}, which the objective(s) "
            f"{', '.join(o.name for o in objectives)} need (it has: {', '.join(surrogate.targets) or 'none'}); "
            "use a model that has them, or train one on data that has them (surrogate train --data FILE)"
        )


def _search_study(
    store: optuna.storages.BaseStorage,
    study_name: str,
    objectives: list[Objective],
    space: DesignSpace,
    seed: int,
    model_label: str | None,
) -> optuna.Study:
    """The search's study (resumed when ``study_name`` exists with the same objectives), labelled for
    optuna-dashboard: user attrs ``kind``, ``objectives``, ``units``, ``space``, ``model``; metric names."""
    names = [o.name for o in objectives]
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        directions=["maximize"] * len(objectives),
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )
    previous = study.user_attrs.get("objectives")
    if previous is not None and previous != names:
        raise InputError(f"study {study_name!r} exists with other objectives ({previous}); pick another name")
    if study.user_attrs.get("kind", STUDY_KIND) != STUDY_KIND:
        raise InputError(f"study {study_name!r} is a {study.user_attrs['kind']}, not a search; pick another name")
    study.set_user_attr("kind", STUDY_KIND)
    study.set_user_attr("objectives", names)
    study.set_user_attr("units", [o.unit for o in objectives])
    study.set_user_attr("space", space.to_dict())
    if model_label:
        study.set_user_attr("model", model_label)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard shows
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{o.name} ({o.unit})" for o in objectives])
    return study


def _front_rows(
    study: optuna.Study, feasible: list[optuna.trial.FrozenTrial], objectives: list[Objective], top: int
) -> list[dict[str, Any]]:
    """The designs of both fronts, each labelled (``front``), a design on both listed once, as supported;
    one objective: the ``top`` best of each; several: the Pareto sets."""
    supported = [t for t in feasible if not t.user_attrs.get("extrapolation", False)]
    if len(objectives) == 1:
        fronts = [
            (SUPPORTED, sorted(supported, key=lambda t: t.values[0], reverse=True)),
            (PROMISING, sorted(feasible, key=lambda t: t.values[0], reverse=True)),
        ]
    else:
        best = {t.number for t in study.best_trials}  # Optuna's Pareto front (feasible trials only)
        fronts = [(SUPPORTED, _pareto(supported)), (PROMISING, [t for t in _pareto(feasible) if t.number in best])]
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int]] = set()
    for label, chosen in fronts:
        shown = 0
        for trial in chosen:
            design = {BUFFER: trial.params[BUFFER], ANNEAL_TEMP_C: trial.params[ANNEAL_TEMP_C]}
            design[TEST_TEMP_C] = trial.params.get(TEST_TEMP_C, objectives[0].test_temp_c)
            key = (design[BUFFER], round(design[ANNEAL_TEMP_C]), round(design[TEST_TEMP_C]))
            if key in seen:
                continue
            seen.add(key)
            rows.append(design | {"trial": trial.number, "front": label})
            shown += 1
            if len(objectives) == 1 and shown >= top:
                break
    return rows


def run_search(
    surrogate: Surrogate,
    objectives: list[Objective],
    space: DesignSpace | None = None,
    n_trials: int = 200,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    top: int = 10,
    show_progress: bool = True,
    model_label: str | None = None,
) -> SearchResult:
    """Maximise ``objectives`` over ``space`` on ``surrogate`` with Optuna (TPE; constraints honoured).

    Returns two labelled fronts (column ``front``): :data:`SUPPORTED`, the ``top`` best feasible designs
    (one objective) or the Pareto set (several) among trials inside the training data, and
    :data:`PROMISING`, the same over every feasible trial (Optuna's ``study.best_trials``), extrapolations
    included; a design on both is listed once, as supported.
    An existing ``study_name`` in ``storage`` is resumed when its objectives match. The study is
    labelled for optuna-dashboard: user attrs ``kind`` = ``search``, ``objectives``, ``units``, ``model``
    (``model_label``, e.g. the model version), and metric names with units.
    """
    space = space or DesignSpace()
    check_search(surrogate, objectives, space, n_trials, seed)
    from surrogate.storage import get_storage, resolve_storage_url

    store = storage if isinstance(storage, optuna.storages.BaseStorage) else get_storage(storage)
    storage_label = "in-memory" if isinstance(storage, optuna.storages.BaseStorage) else resolve_storage_url(storage)
    names = [o.name for o in objectives]
    study_name = study_name or f"{STUDY_PREFIX}{'+'.join(names)}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}"
    study = _search_study(store, study_name, objectives, space, seed, model_label)
    free_temp = any(o.test_temp_c is None for o in objectives)

    def objective_fn(trial: optuna.Trial) -> list[float]:
        design = {
            BUFFER: trial.suggest_categorical(BUFFER, list(space.buffers)),
            ANNEAL_TEMP_C: trial.suggest_float(ANNEAL_TEMP_C, *space.anneal_temp_c),
            TEST_TEMP_C: trial.suggest_float(TEST_TEMP_C, *space.test_temp_c)
            if free_temp
            else objectives[0].test_temp_c,
        }
        for key, value in constraint_values(space, design).items():
            trial.set_constraint(key, float(value))
        row = evaluate(surrogate, objectives, pd.DataFrame([design]), level).iloc[0]
        trial.set_user_attr("extrapolation", bool(row["extrapolation"]))
        return [float(row[name]) for name in names]

    if not study.trials:  # a new study starts at the designs the data supports, so that front is never empty
        for design in supported_designs(surrogate, objectives, space, free_temp):
            study.enqueue_trial(design)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    study.optimize(objective_fn, n_trials=n_trials, show_progress_bar=show_progress)
    duration = time.perf_counter() - started
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    feasible = [t for t in complete if all(v <= 0 for v in t.constraints.values())]
    if not feasible:
        raise InputError("search: no feasible design found; loosen the constraints or run more trials")
    rows = _front_rows(study, feasible, objectives, top)
    designs = evaluate(surrogate, objectives, pd.DataFrame(rows), level)
    trials = pd.DataFrame(
        [
            {
                "trial": t.number,
                BUFFER: t.params[BUFFER],
                ANNEAL_TEMP_C: t.params[ANNEAL_TEMP_C],
                TEST_TEMP_C: t.params.get(TEST_TEMP_C, objectives[0].test_temp_c),
                **dict(zip(names, t.values, strict=True)),
                "feasible": all(v <= 0 for v in t.constraints.values()),
                "extrapolation": bool(t.user_attrs.get("extrapolation", False)),
            }
            for t in complete
        ]
    )
    return SearchResult(
        study_name,
        storage_label,
        objectives,
        designs,
        len(complete),
        len(feasible),
        level,
        trials,
        duration,
        model_provenance(surrogate),
    )


def supported_designs(
    surrogate: Surrogate, objectives: list[Objective], space: DesignSpace, free_temp: bool = True
) -> list[dict[str, Any]]:
    """Per buffer of ``space``, one design inside every objective target's training domain (midpoint of the
    intersected anneal and operating-temperature ranges, °C), when such a design exists within the space's bounds.

    Trained cells often sit at one anneal and one operating temperature, a point a continuous sampler never
    hits; enqueuing these makes the :data:`SUPPORTED` front reachable.
    """
    targets = sorted({t for o in objectives for t in o.targets})
    out = []
    for buffer in space.buffers:
        low = {ANNEAL_TEMP_C: space.anneal_temp_c[0], TEST_TEMP_C: space.test_temp_c[0]}
        high = {ANNEAL_TEMP_C: space.anneal_temp_c[1], TEST_TEMP_C: space.test_temp_c[1]}
        found = True
        for target in targets:
            domain = surrogate.domains[target]
            regions = [
                ranges
                for key, ranges in domain.regions.items()
                if BUFFER not in domain.categorical or key[domain.categorical.index(BUFFER)] == buffer
            ]
            if not regions:
                found = False
                break
            ranges = regions[0]
            for column in (ANNEAL_TEMP_C, TEST_TEMP_C):
                if column in ranges:
                    low[column] = max(low[column], ranges[column][0])
                    high[column] = min(high[column], ranges[column][1])
        if not found or any(low[c] > high[c] for c in low):
            continue
        design = {BUFFER: buffer, ANNEAL_TEMP_C: (low[ANNEAL_TEMP_C] + high[ANNEAL_TEMP_C]) / 2}
        if free_temp:
            design[TEST_TEMP_C] = (low[TEST_TEMP_C] + high[TEST_TEMP_C]) / 2
        out.append(design)
    return out


def _pareto(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials no other trial dominates (all objectives maximised), sorted by the first objective."""
    values = np.array([t.values for t in trials])
    keep = []
    for i, v in enumerate(values):
        dominated = np.any(np.all(values >= v, axis=1) & np.any(values > v, axis=1))
        if not dominated:
            keep.append(trials[i])
    return sorted(keep, key=lambda t: t.values[0], reverse=True)


def pareto_figure(result: SearchResult):
    """The search's figure (see :func:`surrogate.plots.pareto_figure`); kept here for existing callers."""
    from surrogate.plots import pareto_figure as figure

    return figure(result)
