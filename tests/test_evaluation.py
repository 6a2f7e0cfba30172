"""Grouped CV, champion selection and fast refits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.design import CAPACITY_RETENTION, CONDUCTIVITY, RATE_RETENTION, TARGETS
from surrogate.errors import InputError
from surrogate.evaluation import (
    SELECTION_RULE,
    CVResult,
    choose_champion,
    cross_validate,
    cv_summary,
    fit_surrogate,
    select_champions,
    split_plans,
    training_xy,
)
from surrogate.models.base import Surrogate
from surrogate.models.features import FreshSampleRegressor
from surrogate.models.registry import FAMILIES, FamilySpec


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_default_dataset()


@pytest.fixture(scope="module")
def thin(data) -> pd.DataFrame:
    """Every conductivity and rate row; cycling thinned (every 4th standard cycle, every 20th long one)."""
    cycles = data["cycles"].astype("float")
    keep = data["capacity_retention"].isna() | (cycles % 4 == 1) & (data["protocol"] == "standard")
    keep |= (data["protocol"] == "long") & (cycles % 20 == 1)
    return data[keep.fillna(False)].reset_index(drop=True)


def test_training_xy_drops_normalisation_rows_and_returns_natural_space(data):
    X, y, meta = training_xy(data, RATE_RETENTION)
    assert list(X.columns) == ["buffer", "anneal_temp_c", "test_temp_c", "c_rate"]
    assert len(X) == len(y) == len(meta) == 20  # 24 rate rows minus the four at 0.1 C (1 by definition)
    assert X["c_rate"].min() == 1.0
    np.testing.assert_allclose(1 / (1 + np.exp(-y)), meta["rate_retention"], rtol=1e-9)
    assert "sample_id" in meta.columns
    Xc, yc, _ = training_xy(data, CAPACITY_RETENTION)
    assert len(Xc) == 1400 - 5 and Xc["cycles"].min() == 2
    Xs, ys, _ = training_xy(data, CONDUCTIVITY)
    assert len(Xs) == 54 and np.allclose(10**ys, data["conductivity_s_cm"].dropna())
    with pytest.raises(InputError, match="target"):
        training_xy(data, "voltage")


def test_split_plans_follow_the_science(data):
    plans = {t: {p.name: p for p in split_plans(*training_xy(data, t)[::2], t)} for t in TARGETS}
    assert np.unique(plans[CONDUCTIVITY]["anneal_state"].groups).size == 3
    assert np.unique(plans[CONDUCTIVITY]["test_temp"].groups).size == 6
    assert np.unique(plans[RATE_RETENTION]["c_rate"].groups).size == 5
    assert not plans[RATE_RETENTION]["buffer"].selects
    blocks = plans[CAPACITY_RETENTION]["cycle_block"].groups
    assert np.unique(blocks).size == 5 and np.bincount(blocks).min() > 250
    assert np.unique(plans[CAPACITY_RETENTION]["curve"].groups).size == 5
    one_anneal = data[(data["anneal_temp_c"] == 300) | data["conductivity_s_cm"].isna()]
    X, _, meta = training_xy(one_anneal, CONDUCTIVITY)
    skipped = {p.name: p.skipped for p in split_plans(X, meta, CONDUCTIVITY)}
    assert "≥ 2" in skipped["anneal_state"] and skipped["test_temp"] is None


def test_cross_validate_reports_per_fold_and_overall_metrics(data):
    result = cross_validate("physics", CONDUCTIVITY, data)
    assert isinstance(result, CVResult) and result.skipped is None
    folds = result.splits["test_temp"]["folds"]
    assert len(folds) == 6 and all({"rmse_natural", "mae_natural", "coverage", "n_test"} <= set(f) for f in folds)
    overall = result.splits["test_temp"]["overall"]
    assert overall["n"] == 54 and overall["rmse_natural"] < 0.05 and 0.7 <= overall["coverage"] <= 1.0
    assert result.score == pytest.approx(
        np.mean([result.splits[s]["overall"]["rmse_natural"] for s in ("anneal_state", "test_temp")])
    )
    assert set(result.predictions["test_temp"].columns) >= {"fold", "y", "mean", "std", "sample_id"}
    json.dumps(result.to_dict())
    rate = cross_validate("physics", RATE_RETENTION, data).to_dict()
    assert rate["splits"]["c_rate"]["overall"]["rmse_units"] < 0.03
    with pytest.raises(InputError, match="level"):
        cross_validate("physics", CONDUCTIVITY, data, level=90)


def test_family_with_too_few_rows_is_skipped_with_a_reason(data):
    few = pd.concat([data[data["conductivity_s_cm"].notna()], data[data["rate_retention"].notna()].head(6)])
    result = cross_validate("trees", RATE_RETENTION, few)
    assert result.score is None and "needs ≥ 10" in result.skipped
    selection = select_champions(few, ["physics", "trees"], progress=False, n_jobs=1)
    surrogate, report = selection.surrogate, selection.report
    rate = report["targets"][RATE_RETENTION]
    assert "needs ≥" in rate["families"]["trees"]["skipped"]
    assert report["targets"][CAPACITY_RETENTION]["skipped"] == "no rows"
    assert CAPACITY_RETENTION not in surrogate.models and CONDUCTIVITY in surrogate.models


def test_a_family_that_raises_is_skipped_not_fatal(data, monkeypatch):
    def broken(target, **params):
        raise RuntimeError("solver exploded")

    monkeypatch.setitem(FAMILIES, "broken", FamilySpec("broken", broken, lambda trial, t: {}, 1, "always fails"))
    only_films = data[data["conductivity_s_cm"].notna()]
    selection = select_champions(only_films, ["broken", "physics"], progress=False, n_jobs=1)
    surrogate, report = selection.surrogate, selection.report
    entry = report["targets"][CONDUCTIVITY]
    assert "RuntimeError: solver exploded" in entry["families"]["broken"]["skipped"]
    assert entry["champion"] == "physics" and surrogate.info["families"] == {CONDUCTIVITY: "physics"}


def test_champion_rule_physics_wins_ties_and_needs_usable_intervals():
    assert choose_champion({"torch": 0.100, "physics": 0.1005, "gp": 0.2}) == "physics"
    assert choose_champion({"torch": 0.08, "physics": 0.1}) == "torch"
    assert choose_champion({"gp": 0.05, "physics": 0.1}, {"gp": 0.5, "physics": 0.9}, 0.9) == "physics"
    assert choose_champion({"gp": 0.05, "physics": 0.1}, {"gp": 0.5, "physics": 0.6}, 0.9) == "gp"
    with pytest.raises(InputError):
        choose_champion({})


def test_select_champions_returns_a_surrogate_with_contract_columns(thin):
    params = {RATE_RETENTION: {"trees": {"n_estimators": 20, "min_samples_leaf": 1}}}
    selection = select_champions(thin, ["physics", "trees"], progress=False, params=params, n_jobs=1)
    surrogate, report = selection.surrogate, selection.report
    assert isinstance(surrogate, Surrogate) and set(surrogate.targets) == set(TARGETS)
    assert set(surrogate.info) >= {"families", "cv_scores", "data_sha256", "rows", "selection_rule", "sample_variance"}
    assert report["selection_rule"] == SELECTION_RULE and "coverage" in SELECTION_RULE
    # tuned params reach CV (and the refit, when that family wins); out-of-fold predictions are kept for plots
    rate_trees = selection.results[RATE_RETENTION]["trees"]
    assert rate_trees.params == params[RATE_RETENTION]["trees"]
    assert report["targets"][RATE_RETENTION]["families"]["trees"]["params"]["n_estimators"] == 20
    assert set(rate_trees.predictions["c_rate"].columns) >= {"y", "mean", "std", "fold"}
    for target, champion in selection.champions.items():
        entry = report["targets"][target]
        assert entry["champion"] == champion and entry["champion_reason"].startswith("lowest CV score")
        assert entry["summary"][champion] == cv_summary(selection.results[target][champion])
        assert isinstance(surrogate.models[target], FreshSampleRegressor)
        assert entry["params"] == selection.params[target] == params.get(target, {}).get(champion, {})
    # three films per anneal state: the film-to-film spread comes from the replicates; one cell per buffer: prior
    assert surrogate.info["sample_variance"][CONDUCTIVITY]["source"] == "replicates"
    assert surrogate.info["sample_variance"][RATE_RETENTION]["source"] == "prior"
    assert len(surrogate.info["data_sha256"]) == 64 and surrogate.info["rows"][CONDUCTIVITY] == 54
    designs = [
        {"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 30, "cycles": 49},
        {"buffer": "none", "anneal_temp_c": 300, "test_temp_c": 80, "cycles": 500, "protocol": "long"},
    ]
    out = surrogate.predict(designs)
    for target in TARGETS:
        assert np.all(out[f"{target}_lower"] < out[f"{target}_mean"])
        assert np.all(out[f"{target}_mean"] < out[f"{target}_upper"])
    assert out["extrapolation"].tolist() == [False, True]
    assert 0.2 < out["rate_retention_mean"].iloc[0] < 0.4  # the paper: SiO2 keeps 30% at 30 C
    for target in TARGETS:
        entry = report["targets"][target]
        assert entry["champion"] in ("physics", "trees")
        assert set(entry["families"]) == {"physics", "trees"}
    json.dumps(report)


def test_fit_surrogate_without_cv(thin):
    surrogate = fit_surrogate(
        thin, {CONDUCTIVITY: "physics", RATE_RETENTION: "gp"}, {RATE_RETENTION: {"max_points": 50}}
    )
    assert surrogate.targets == (CONDUCTIVITY, RATE_RETENTION)
    assert surrogate.info["families"][RATE_RETENTION] == "gp"
    means = surrogate.predict_means(pd.DataFrame([{"buffer": "none", "anneal_temp_c": 300.0, "test_temp_c": 25.0}]))
    assert means[CONDUCTIVITY].iloc[0] == pytest.approx(9.56e-6, rel=0.15)
    with pytest.raises(InputError, match="unknown target"):
        fit_surrogate(thin, {"voltage": "physics"})
    with pytest.raises(InputError, match="family"):
        fit_surrogate(thin, {CONDUCTIVITY: "xgboost"})
    with pytest.raises(InputError, match="needs ≥"):
        fit_surrogate(thin[thin["conductivity_s_cm"].notna()].head(3), {CONDUCTIVITY: "physics"})


@pytest.mark.slow
def test_select_champions_scores_every_family_on_every_target(thin):
    """Every family is cross-validated on every target, in worker processes (the full embedded data set and
    its training time: benchmarks/surrogate_accuracy.py)."""
    cheap = {
        "gp": {"max_points": 50, "max_iter": 30},
        "physics_gp": {"max_points": 60, "max_iter": 30},
        "torch": {"epochs": 60, "n_members": 3},
        "trees": {"n_estimators": 20, "min_samples_leaf": 1},
    }
    selection = select_champions(thin, progress=False, n_jobs=2, params={t: cheap for t in TARGETS})
    surrogate, report = selection.surrogate, selection.report
    assert set(surrogate.targets) == set(TARGETS)
    for target in TARGETS:
        assert set(report["targets"][target]["families"]) == set(FAMILIES)
        assert report["targets"][target]["champion"] is not None
    # fade: every family's forecast (forward chaining) is reported, pooled and per protocol, and selects
    forecast = report["targets"]["capacity_retention"]["forecast"]
    assert forecast["selects"] and set(forecast["families"]) == set(FAMILIES)
    assert all(set(parts) == {"long", "standard"} for parts in forecast["by_protocol"].values())
    # scored from each of the three cut points on the whole remaining horizon
    assert all(set(parts) == {"cut 40%", "cut 60%", "cut 80%"} for parts in forecast["by_cut"].values())
