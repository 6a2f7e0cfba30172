"""Run a design-space search with MLflow logging: the model version, the search's metric, designs and plots.

The MLflow run spans the search itself, so its duration is the search's. It records which
model version answered (param ``model_version``, tag ``model_uri``), and a metric that says
how good the result is: the hypervolume of the Pareto set for several objectives
(``search/hypervolume``, see :func:`surrogate.search.hypervolume`), the best score with its
unit in the name for one (e.g. ``search/best_rate_retention_fraction``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from surrogate.design import DesignSpace
from surrogate.models.base import DEFAULT_LEVEL
from surrogate.objectives import Objective
from surrogate.search import SearchResult, check_search, hypervolume, hypervolume_unit, run_search

EXPERIMENT = "design-search"


def best_metric_name(objective: Objective) -> str:
    """The run metric of a single-objective search: ``search/best_<kind>_<unit>`` (MLflow-safe)."""
    unit = "s_cm" if objective.unit == "S/cm" else "fraction"  # a retention, or a product of retentions
    statistic = "_lower" if objective.statistic == "lower" else ""
    return re.sub(r"[^A-Za-z0-9_./ -]", "_", f"search/best_{objective.kind}{statistic}_{unit}")


def resolve_model_version(model_uri: str | None) -> tuple[str, str | None]:
    """``(models:/llto-surrogate/N URI, N)`` of the champion or of ``model_uri`` (version None for a path)."""
    import mlflow

    from surrogate.tracking import CHAMPION_ALIAS, REGISTERED_MODEL_NAME

    if model_uri is None or model_uri.startswith(f"models:/{REGISTERED_MODEL_NAME}@"):
        alias = CHAMPION_ALIAS if model_uri is None else model_uri.split("@", 1)[1]
        version = mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL_NAME, alias).version
        return f"models:/{REGISTERED_MODEL_NAME}/{version}", str(version)
    match = re.fullmatch(r"models:/([^/@]+)/(\d+)", model_uri)
    if match:
        return model_uri, match.group(2)
    return model_uri, None


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

    Raises :class:`InputError` before anything is written when no model is trained ("run
    `surrogate train` first"), the model lacks a target the objectives need, or an argument is
    out of range. A study name that belongs to another search or a campaign, or a search that finds
    no feasible design, raises :class:`InputError` after the run started: that run ends FAILED.
    """
    import mlflow

    from surrogate.tracking import NOTE_TAG, configure_mlflow, load_champion, require_targets

    surrogate = load_champion(model_uri)
    require_targets(surrogate, [t for o in objectives for t in o.targets], model_uri, "this search")
    space = space or DesignSpace()
    check_search(surrogate, objectives, space, n_trials, seed)
    resolved_uri, version = resolve_model_version(model_uri)
    configure_mlflow(EXPERIMENT)
    params: dict[str, Any] = {
        "objectives": ";".join(o.name for o in objectives),
        "n_trials": n_trials,
        "seed": seed,
        "level": level,
        "model_uri": resolved_uri,
        "model_version": version or "-",
        "space": space.name,
        **{f"space.{k}": v for k, v in space.to_dict().items() if k not in ("notes", "name")},
    }
    started = time.perf_counter()
    with mlflow.start_run(run_name=study_name or "search") as run:
        mlflow.set_tags({"kind": "search", "model_uri": resolved_uri})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        result = run_search(
            surrogate,
            objectives,
            space,
            n_trials,
            storage,
            study_name,
            seed,
            level,
            show_progress=show_progress,
            model_label=resolved_uri,
        )
        mlflow.set_tags({"study_name": result.study_name, "storage": result.storage.split("@")[-1]})
        metrics = {
            "search/n_trials": result.n_trials,
            "search/n_feasible": result.n_feasible,
            "search/n_designs": len(result.designs),
            "search/n_extrapolated_designs": int(result.designs["extrapolation"].sum()),
        }
        if len(objectives) > 1:
            metrics["search/hypervolume"] = hypervolume(result)
            summary = (
                f"Pareto search of {len(result.designs)} designs over {', '.join(o.name for o in objectives)}; "
                f"hypervolume {metrics['search/hypervolume']:.4g} ({hypervolume_unit(objectives)}, reference "
                "1e-8 S/cm and 0)"
            )
        else:
            best = float(result.designs[objectives[0].name].max())
            metrics[best_metric_name(objectives[0])] = best
            summary = f"Best {objectives[0].name}: {best:.4g} {objectives[0].unit}"
        table = result.designs.assign(extrapolation_reasons=result.designs["extrapolation_reasons"].map("; ".join))
        mlflow.log_table(table, artifact_file="best_designs.json")
        from surrogate import plots

        fig = plots.pareto_figure(result)
        mlflow.log_figure(fig, "plots/pareto.png")
        metrics["time/search_s"] = time.perf_counter() - started
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        extrapolated = metrics["search/n_extrapolated_designs"]
        mlflow.set_tag(
            NOTE_TAG,
            f"{summary}. Model {resolved_uri}; {result.n_trials} trials ({result.n_feasible} feasible) in "
            f"{metrics['time/search_s']:.1f} s; Optuna study `{result.study_name}`.\n\n"
            + (
                f"⚠ {extrapolated} of the designs are extrapolations (outside the training data). "
                if extrapolated
                else ""
            )
            + f"These are {result.provenance}.",
        )
    return result, run.info.run_id
