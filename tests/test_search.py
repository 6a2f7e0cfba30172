"""Search on a surrogate: single and multi objective with constraints, risk-aware lower bound."""

from __future__ import annotations

import optuna
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.design import DesignSpace
from surrogate.evaluation import fit_surrogate
from surrogate.objectives import Objective, pareto_objectives
from surrogate.search import pareto_figure, run_search


@pytest.fixture(scope="module")
def surrogate():
    return fit_surrogate(
        load_default_dataset(), {t: "physics" for t in ("conductivity_s_cm", "rate_retention", "capacity_retention")}
    )


SPACE = DesignSpace(max_anneal_temp_c=350.0, min_test_temp_c=40.0)


def test_single_objective_with_constraints_is_feasible(surrogate):
    result = run_search(
        surrogate,
        [Objective("rate_retention", c_rate=10)],
        SPACE,
        n_trials=40,
        storage=optuna.storages.InMemoryStorage(),
        show_progress=False,
    )
    assert len(result.designs) >= 1
    for row in result.designs.to_dict("records"):
        assert not SPACE.violations(row)
    name = result.objectives[0].name
    assert (result.designs[f"{name}_lower"] <= result.designs[f"{name}_mean"]).all()
    assert result.designs[name].is_monotonic_decreasing
    assert "extrapolation" in result.designs


def test_multi_objective_pareto_set_is_feasible_and_non_dominated(surrogate):
    result = run_search(
        surrogate,
        pareto_objectives(),
        SPACE,
        n_trials=40,
        storage=optuna.storages.InMemoryStorage(),
        show_progress=False,
    )
    names = [o.name for o in result.objectives]
    values = result.designs[names].to_numpy()
    for i, v in enumerate(values):
        assert not SPACE.violations(result.designs.iloc[i].to_dict())
        assert not ((values >= v).all(axis=1) & (values > v).any(axis=1)).any()
    assert pareto_figure(result) is not None


def test_risk_aware_scores_the_lower_bound(surrogate):
    result = run_search(
        surrogate,
        [Objective("capacity_retention", cycles=300, statistic="lower")],
        n_trials=20,
        storage=optuna.storages.InMemoryStorage(),
        show_progress=False,
    )
    name = result.objectives[0].name
    assert (result.designs[name] == result.designs[f"{name}_lower"]).all()
    assert (result.designs[name] < result.designs[f"{name}_mean"]).all()


def test_search_without_a_champion_is_a_clear_input_error(tmp_stores):
    from surrogate.cli import main

    assert main(["search", "--objective", "conductivity", "--trials", "2"]) == 2
