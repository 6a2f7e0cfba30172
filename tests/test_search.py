"""Search on a surrogate: single and multi objective with constraints, risk-aware lower bound."""

from __future__ import annotations

import optuna
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.design import DesignSpace
from surrogate.errors import InputError
from surrogate.evaluation import fit_surrogate
from surrogate.objectives import Objective, pareto_objectives
from surrogate.search import PROMISING, STUDY_PREFIX, SUPPORTED, hypervolume, pareto_figure, run_search


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
    for label in (SUPPORTED, PROMISING):
        assert result.designs.loc[result.designs["front"] == label, name].is_monotonic_decreasing
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
    supported = result.designs[result.designs["front"] == SUPPORTED]
    values = supported[names].to_numpy()
    for i, v in enumerate(values):
        assert not SPACE.violations(supported.iloc[i].to_dict())
        assert not ((values >= v).all(axis=1) & (values > v).any(axis=1)).any()
    assert pareto_figure(result) is not None


def test_the_default_risk_aware_front_holds_designs_the_data_supports(surrogate):
    """Issue 15: on the embedded data the default front never returns only extrapolations."""
    result = run_search(
        surrogate,
        pareto_objectives("lower"),
        DesignSpace(),
        n_trials=60,
        storage=optuna.storages.InMemoryStorage(),
        show_progress=False,
    )
    supported = result.designs[result.designs["front"] == SUPPORTED]
    assert len(supported) >= 1
    assert not supported["extrapolation"].any()
    assert set(result.designs["front"]) <= {SUPPORTED, PROMISING}
    assert "reconstruction" in result.provenance
    assert result.to_dict()["hypervolume"] > 0


def test_the_note_names_the_users_data_not_the_paper(surrogate):
    from surrogate.evaluation import fit_surrogate
    from surrogate.search import model_provenance

    mine = fit_surrogate(load_default_dataset(), {"rate_retention": "physics"})
    mine.info.update({"data_source": "my_cells.csv", "reconstruction": False})
    assert "my_cells.csv" in model_provenance(mine) and "reconstruction" not in model_provenance(mine)


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


def test_search_studies_are_labelled_and_the_pareto_figure_shows_every_trial(surrogate):
    storage = optuna.storages.InMemoryStorage()
    result = run_search(
        surrogate, pareto_objectives(), SPACE, n_trials=12, storage=storage, show_progress=False, model_label="m/1"
    )
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    assert result.study_name.startswith(STUDY_PREFIX)
    assert study.user_attrs["kind"] == "search" and study.user_attrs["model"] == "m/1"
    assert study.metric_names[0] == "conductivity (S/cm)"
    assert len(result.trials) == 12 and set(result.trials.columns) >= {"feasible", "extrapolation", "conductivity"}
    assert result.duration_s > 0
    assert hypervolume(result) > 0 and result.to_dict()["hypervolume"] == hypervolume(result)
    figure = pareto_figure(result)
    axis = figure.axes[0]
    assert "S/cm" in axis.get_xlabel() and axis.get_xscale() == "log"
    labels = {t.get_text() for t in axis.texts}
    assert len(labels) == len(result.designs)  # every design labelled "buffer anneal/test °C"
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "all 12 trials" in legend
    if result.designs["extrapolation"].any():
        assert any("extrapolation" in text for text in legend)


def test_a_study_of_another_kind_is_not_taken_over(surrogate):
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="films", storage=storage).set_user_attr("kind", "campaign")
    with pytest.raises(InputError, match="not a search"):
        run_search(
            surrogate, [Objective("conductivity")], n_trials=2, storage=storage, study_name="films", show_progress=False
        )


def test_search_run_records_model_version_duration_and_a_meaningful_metric(copy_trained_store, capsys):
    import json

    import mlflow

    from surrogate.cli import main

    assert main(["search", "--pareto", "--trials", "6", "--json"]) == 0
    pareto = json.loads(capsys.readouterr().out)
    assert main(["search", "--objective", "rate_retention", "--trials", "4", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    client = mlflow.MlflowClient()
    run = client.get_run(pareto["mlflow_run_id"])
    assert run.data.params["model_version"] == "1" and run.data.tags["model_uri"] == "models:/llto-surrogate/1"
    assert pareto["hypervolume"] > 0
    assert run.data.metrics["search/hypervolume"] == pytest.approx(pareto["hypervolume"])
    assert "best_score" not in run.data.metrics
    assert run.info.end_time - run.info.start_time >= 1000 * run.data.metrics["time/search_s"] * 0.99
    assert "hypervolume" in run.data.tags["mlflow.note.content"]
    run = client.get_run(single["mlflow_run_id"])
    best = max(d["rate_retention@30C[lower]"] for d in single["designs"])  # risk-aware by default
    assert run.data.metrics["search/best_rate_retention_lower_fraction"] == pytest.approx(best)
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
