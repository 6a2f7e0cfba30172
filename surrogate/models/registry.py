"""The model families by name: how to build one for a target, how Optuna tunes it, how much data it needs.

``FAMILIES[name].make(target, **params)`` returns an unfitted scikit-learn
regressor for one target (see :mod:`surrogate.models.base` for the API);
:func:`make_model` wraps it in the shared fresh-sample variance model
(:class:`~surrogate.models.features.FreshSampleRegressor`), which is what
cross-validation, champion refits and campaigns fit;
``suggest_params(trial, target)`` draws that family's hyper-parameters from an
Optuna trial; a family is skipped for a target with fewer than ``min_rows``
training rows. The family modules are imported only when a model is made
(torch is slow to import).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from surrogate.errors import InputError
from surrogate.laws import LAWS
from surrogate.models.features import FreshSampleRegressor, check_target
from surrogate.targets import get_target

if TYPE_CHECKING:  # pragma: no cover
    import optuna


@dataclass(frozen=True)
class FamilySpec:
    """One model family: ``make(target, **params)``, ``suggest_params(trial, target)``, ``min_rows``, ``description``."""

    name: str
    make: Callable[..., Any]
    suggest_params: Callable[[optuna.Trial, str], dict[str, Any]]
    min_rows: int
    description: str


# ------------------------------------------------------------------ physics
def _make_physics(target: str, **params: Any) -> Any:
    from surrogate.models.physics_baseline import PhysicsBaseline

    return PhysicsBaseline(target=check_target(target), **params)


def _suggest_physics(trial: optuna.Trial, target: str) -> dict[str, Any]:
    law = LAWS.get(get_target(target).physics_law or "")
    if law is not None and law.knee:  # a law with an optional knee (fade)
        return {"knee": trial.suggest_categorical("knee", ["auto", "never", "always"])}
    return {}


# ------------------------------------------------------------------ gaussian process
def _make_gp(target: str, **params: Any) -> Any:
    from surrogate.models.gp import GPSurrogate

    return GPSurrogate(target=check_target(target), **params)


def _suggest_gp(trial: optuna.Trial, target: str) -> dict[str, Any]:
    return {
        "max_points": trial.suggest_int("max_points", 100, 400, step=50),
        "n_restarts_optimizer": trial.suggest_int("n_restarts_optimizer", 0, 3),
        "linear_trend": trial.suggest_categorical("linear_trend", [True, False]),
    }


# ------------------------------------------------------------------ trees
def _make_trees(target: str, **params: Any) -> Any:
    from surrogate.models.trees import ForestSurrogate

    return ForestSurrogate(target=check_target(target), **params)


def _suggest_trees(trial: optuna.Trial, target: str) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 10),
        "max_features": trial.suggest_float("max_features", 0.3, 1.0),
    }


# ------------------------------------------------------------------ torch deep ensemble
def _make_torch(target: str, **params: Any) -> Any:
    from surrogate.models.torch_ensemble import DeepEnsemble

    return DeepEnsemble(target=check_target(target), **params)


def _suggest_torch(trial: optuna.Trial, target: str) -> dict[str, Any]:
    return {
        "hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
        "n_layers": trial.suggest_int("n_layers", 1, 3),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 3e-2, log=True),
        "epochs": trial.suggest_int("epochs", 200, 800, step=100),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    }


# ------------------------------------------------------------------ physics prior + GP discrepancy
def _make_physics_gp(target: str, **params: Any) -> Any:
    from surrogate.models.physics_gp import PhysicsPriorGP

    return PhysicsPriorGP(target=check_target(target), **params)


def _suggest_physics_gp(trial: optuna.Trial, target: str) -> dict[str, Any]:
    return {
        "max_points": trial.suggest_int("max_points", 100, 400, step=50),
        "features": trial.suggest_categorical("features", ["smooth", "narrow"]),
    }


FAMILIES: dict[str, FamilySpec] = {
    "physics": FamilySpec(
        "physics",
        _make_physics,
        _suggest_physics,
        min_rows=4,
        description="physics baseline: Arrhenius (σT) per anneal state, resistance-limited rate law per buffer, "
        "early-drop + linear + knee fade law per buffer and protocol; parameters fitted by least squares",
    ),
    "gp": FamilySpec(
        "gp",
        _make_gp,
        _suggest_gp,
        min_rows=6,
        description="Gaussian process on physics-aware features (1000/T, log C-rate, log cycles, one-hot or "
        "descriptor-encoded buffer), ARD RBF + linear trend + white noise, stratified subsample of at most "
        "max_points rows",
    ),
    "trees": FamilySpec(
        "trees",
        _make_trees,
        _suggest_trees,
        min_rows=10,
        description="random forest on the shared features; interval from the spread of the trees plus "
        "out-of-bag residual noise",
    ),
    "torch": FamilySpec(
        "torch",
        _make_torch,
        _suggest_torch,
        min_rows=12,
        description="deep ensemble of small MLPs (torch, CPU) with Gaussian mean+variance heads; "
        "interval from the mixture of members; stratified subsample of at most max_rows rows",
    ),
    "physics_gp": FamilySpec(
        "physics_gp",
        _make_physics_gp,
        _suggest_physics_gp,
        # As the physics law it contains: cross-validating on fewer rows would score the prior, not a fit. (The
        # campaign suggester fits the family directly, from the first observation on.)
        min_rows=4,
        description="physics law as a prior mean with uncertain parameters plus a GP discrepancy over every input "
        "(the campaign suggester's model); stratified subsample of at most max_points rows",
    ),
}
"""Every model family by name, in order of simplicity (ties in champion selection go to the earlier one)."""


def family(name: str) -> FamilySpec:
    """The :class:`FamilySpec` called ``name``, or :class:`InputError` listing the families."""
    if name not in FAMILIES:
        raise InputError(f"model family {name!r} is unknown; allowed are {', '.join(FAMILIES)}")
    return FAMILIES[name]


BETWEEN_SAMPLE_PARAM = "between_sample_sd"
"""Parameter name (any family) routed to :class:`FreshSampleRegressor` rather than to the family's estimator."""


def make_model(name: str, target: str, **params: Any) -> FreshSampleRegressor:
    """An unfitted model of family ``name`` for ``target`` that predicts fresh samples.

    ``params`` are the family's hyper-parameters, plus optionally ``between_sample_sd`` (natural space;
    the prior between-sample spread used when the data has no replicates). Fit it with
    ``fit(X, y, sample_ids=...)``.
    """
    params = dict(params)
    between_sample_sd = params.pop(BETWEEN_SAMPLE_PARAM, None)
    return FreshSampleRegressor(family(name).make(target, **params), between_sample_sd=between_sample_sd)
