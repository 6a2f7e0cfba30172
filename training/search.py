"""Run a design-space search with MLflow logging: parameters, the best designs table and a Pareto plot."""

from __future__ import annotations

from typing import Any

from surrogate.design import DesignSpace
from surrogate.models.base import DEFAULT_LEVEL
from surrogate.objectives import Objective
from surrogate.search import SearchResult, pareto_figure, run_search

EXPERIMENT = "design-search"


def search_and_log(
    objectives: list[Objective],
    space: DesignSpace | None = None,
    model_uri: str | None = None,
    n_trials: int = 200,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    show_progress: bool = True,
) -> tuple[SearchResult, str]:
    """Load the champion (or ``model_uri``), search, and log everything to MLflow; returns (result, run id).

    Raises :class:`InputError` when no model is trained ("run `surrogate train` first").
    """
    import mlflow

    from surrogate.tracking import configure_mlflow, load_champion

    surrogate = load_champion(model_uri)
    space = space or DesignSpace()
    result = run_search(
        surrogate, objectives, space, n_trials, storage, study_name, seed, level, show_progress=show_progress
    )
    configure_mlflow(EXPERIMENT)
    params: dict[str, Any] = {
        "objectives": ";".join(o.name for o in objectives),
        "n_trials": n_trials,
        "seed": seed,
        "level": level,
        "model_uri": model_uri or "champion",
        "study_name": result.study_name,
        "storage": result.storage.split("@")[-1],
        "space": space.name,
        **{f"space.{k}": v for k, v in space.to_dict().items() if k not in ("notes", "name")},
    }
    with mlflow.start_run(run_name=result.study_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metric("n_feasible", result.n_feasible)
        first = objectives[0].name
        mlflow.log_metric("best_score", float(result.designs[first].max()))
        table = result.designs.assign(extrapolation_reasons=result.designs["extrapolation_reasons"].map("; ".join))
        mlflow.log_table(table, artifact_file="best_designs.json")
        fig = pareto_figure(result)
        mlflow.log_figure(fig, "plots/pareto.png")
        import matplotlib.pyplot as plt

        plt.close(fig)
        mlflow.set_tag("note", "predictions of a surrogate trained on a reconstruction of the paper, not measurements")
    return result, run.info.run_id
