"""Optuna search of the design space on a fitted :class:`~surrogate.models.base.Surrogate`.

One or several :class:`~surrogate.objectives.Objective` (several: a Pareto front) are maximised over
``buffer``, ``anneal_temp_c`` (°C) and ``test_temp_c`` (°C). The space's bounds are the search
ranges; its user constraints (``max_anneal_temp_c``, ``min_test_temp_c``, ``max_test_temp_c``) go
through ``trial.set_constraint`` (value <= 0 is feasible), so infeasible designs are known to the
sampler rather than silently clipped. The study lives in Optuna storage (:mod:`surrogate.storage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from surrogate.design import ANNEAL_TEMP_C, BUFFER, TEST_TEMP_C, DesignSpace
from surrogate.errors import InputError
from surrogate.models.base import DEFAULT_LEVEL, Surrogate
from surrogate.objectives import Objective


@dataclass
class SearchResult:
    """The best designs (single objective) or the feasible Pareto set (several), with predictions."""

    study_name: str
    storage: str
    objectives: list[Objective]
    designs: pd.DataFrame
    n_trials: int
    n_feasible: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "objectives": [o.to_dict() | {"name": o.name, "unit": o.unit} for o in self.objectives],
            "n_trials": self.n_trials,
            "n_feasible": self.n_feasible,
            "level": self.level,
            "designs": json.loads(self.designs.to_json(orient="records")),
        }


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
) -> SearchResult:
    """Maximise ``objectives`` over ``space`` on ``surrogate`` with Optuna (TPE; constraints honoured).

    Returns the ``top`` best feasible designs (one objective) or the feasible Pareto set (several).
    An existing ``study_name`` in ``storage`` is resumed when its objectives match.
    """
    if not objectives:
        raise InputError("objective: give at least one")
    if not 1 <= n_trials <= 100_000:
        raise InputError(f"n_trials: {n_trials} must be from 1 to 100000")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: {seed!r} must be a whole number >= 0")
    space = space or DesignSpace()
    for objective in objectives:
        objective.check_space(space)
    missing = sorted({t for o in objectives for t in o.targets} - set(surrogate.targets))
    if missing:
        raise InputError(f"model: has no {', '.join(missing)} model; train one first (surrogate train)")
    from surrogate.storage import get_storage, resolve_storage_url

    store = storage if isinstance(storage, optuna.storages.BaseStorage) else get_storage(storage)
    storage_label = "in-memory" if isinstance(storage, optuna.storages.BaseStorage) else resolve_storage_url(storage)
    names = [o.name for o in objectives]
    study_name = study_name or f"search-{'+'.join(names)}-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}"
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        directions=["maximize"] * len(objectives),
        sampler=sampler,
        load_if_exists=True,
    )
    previous = study.user_attrs.get("objectives")
    if previous is not None and previous != names:
        raise InputError(f"study {study_name!r} exists with other objectives ({previous}); pick another name")
    study.set_user_attr("objectives", names)
    study.set_user_attr("space", space.to_dict())
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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective_fn, n_trials=n_trials, show_progress_bar=show_progress)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    feasible = [t for t in complete if all(v <= 0 for v in t.constraints.values())]
    if not feasible:
        raise InputError("search: no feasible design found; loosen the constraints or run more trials")
    if len(objectives) == 1:
        chosen = sorted(feasible, key=lambda t: t.values[0], reverse=True)
    else:
        chosen = [t for t in _pareto(feasible)]
    rows, seen = [], set()
    for trial in chosen:
        design = {BUFFER: trial.params[BUFFER], ANNEAL_TEMP_C: trial.params[ANNEAL_TEMP_C]}
        design[TEST_TEMP_C] = trial.params.get(TEST_TEMP_C, objectives[0].test_temp_c)
        key = (design[BUFFER], round(design[ANNEAL_TEMP_C]), round(design[TEST_TEMP_C]))
        if key in seen:
            continue
        seen.add(key)
        rows.append(design | {"trial": trial.number})
        if len(objectives) == 1 and len(rows) >= top:
            break
    designs = evaluate(surrogate, objectives, pd.DataFrame(rows), level)
    return SearchResult(study_name, storage_label, objectives, designs, len(complete), len(feasible), level)


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
    """A matplotlib figure: every pair of objectives of the result's designs (mean with interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [o.name for o in result.objectives]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]] or [(names[0], names[0])]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    frame = result.designs
    for ax, (x, y) in zip(axes[0], pairs, strict=True):
        for buffer, group in frame.groupby(BUFFER):
            ax.errorbar(
                group[f"{x}_mean"],
                group[f"{y}_mean"],
                xerr=[group[f"{x}_mean"] - group[f"{x}_lower"], group[f"{x}_upper"] - group[f"{x}_mean"]],
                yerr=[group[f"{y}_mean"] - group[f"{y}_lower"], group[f"{y}_upper"] - group[f"{y}_mean"]],
                fmt="o",
                label=buffer,
                alpha=0.7,
            )
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{'Pareto set' if len(names) > 1 else 'best designs'} (surrogate predictions, {result.level:.0%} intervals)"
    )
    fig.tight_layout()
    return fig
