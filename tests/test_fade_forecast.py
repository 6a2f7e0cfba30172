"""Fade forecasting (issue 15 §6): selection scores the whole horizon from 40/60/80% cuts, a knee is a property
of the curve, and a single-protocol file does not pick its family by the protocol's label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from surrogate.dataset import load_default_dataset
from surrogate.design import CAPACITY_RETENTION
from surrogate.evaluation import (
    FORWARD,
    FORWARD_BASELINE,
    choose_champion,
    cross_validate,
    split_plans,
    training_xy,
)
from surrogate.models.base import TARGET_SPACES
from surrogate.models.physics_baseline import PhysicsBaseline
from surrogate.schema import validate_frame

SPACE = TARGET_SPACES[CAPACITY_RETENTION]


def curve_frame(curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], seed: int = 0) -> pd.DataFrame:
    """A validated cycling frame: (buffer, protocol) → (cycles, noise-free retention), reading noise sd 0.004."""
    rng = np.random.default_rng(seed)
    parts = []
    for (buffer, protocol), (cycles, retention) in curves.items():
        noisy = np.where(cycles <= 1, 1.0, np.clip(retention + rng.normal(0.0, 0.004, cycles.size), 0.0, 1.0))
        parts.append(
            pd.DataFrame(
                {
                    "experiment": "cycling",
                    "sample_id": f"cell-{buffer}-{protocol}",
                    "buffer": buffer,
                    "anneal_temp_c": 300.0,
                    "test_temp_c": 25.0,
                    "cycles": cycles,
                    "protocol": protocol,
                    "capacity_retention": noisy,
                }
            )
        )
    return validate_frame(pd.concat(parts, ignore_index=True))


def knee_curve(cycles: np.ndarray, onset: float, slope: float = 2e-3, width: float = 15.0) -> np.ndarray:
    """exp(−(0.1(1 − e^(−(n−1)/20)) + 2e-4 (n−1) + slope·w·softplus((n − onset)/w)))."""
    n = cycles.astype(float)
    loss = 0.1 * -np.expm1(-(n - 1) / 20.0) + 2e-4 * (n - 1) + slope * width * np.logaddexp(0.0, (n - onset) / width)
    return np.exp(-loss)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return load_default_dataset()


def test_selection_scores_the_whole_horizon_from_40_60_80_percent_cuts(data):
    X, _, meta = training_xy(data, CAPACITY_RETENTION)
    plan = {p.name: p for p in split_plans(X, meta, CAPACITY_RETENTION)}["forward"]
    assert plan.selects and plan.fold_names == ["cut 40%", "cut 60%", "cut 80%"]
    assert "40%/60%/80%" in plan.description and "rest of the curve" in plan.description
    cycles = meta["cycles"].astype(float).to_numpy()
    for train, test in plan.folds:
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == len(meta)  # the whole horizon
        assert cycles[test].max() == 1000  # every cut is scored up to the end of the 1000-cycle curve
    shares = [test.size / len(meta) for _, test in plan.folds]
    np.testing.assert_allclose(shares, [0.6, 0.4, 0.2], atol=0.01)
    # the previous scheme scored only the next 20% after 60/80% cuts: kept as the baseline
    old = {p.name: p for p in split_plans(X, meta, CAPACITY_RETENTION, FORWARD_BASELINE)}["forward"]
    assert [t.size / len(meta) for _, t in old.folds] == pytest.approx([0.2, 0.2], abs=0.01)
    assert FORWARD.cuts == (0.4, 0.6, 0.8) and FORWARD.horizon is None


def test_forward_split_reports_each_cut_and_enters_the_score():
    cycles = np.arange(1, 121)
    frame = curve_frame({("sio2", "standard"): (cycles, knee_curve(cycles, 400.0))})
    cv = cross_validate("physics", CAPACITY_RETENTION, frame, splits=("forward", "cycle_block"))
    forward = cv.splits["forward"]
    assert set(forward["by_cut"]) == {"cut 40%", "cut 60%", "cut 80%"}
    assert [f["group"] for f in forward["folds"]] == ["cut 40%", "cut 60%", "cut 80%"]
    assert forward["overall"]["n"] == sum(f["n_test"] for f in forward["folds"])
    assert "curve" not in cv.splits  # only the splits asked for
    assert cv.score == pytest.approx(
        np.mean([cv.splits[s]["overall"]["rmse_natural"] for s in ("forward", "cycle_block")])
    )


def test_a_curve_with_a_knee_is_forecast_with_a_knee():
    """The knee is in the prefix (onset at 500 of 1000 cycles, cut at 700): the forecast carries on its steeper
    fade, which a straight line through the prefix (and the law without a knee) cannot."""
    cycles = np.arange(1, 1001)
    frame = curve_frame({("sio2", "long"): (cycles, knee_curve(cycles, 500.0))})
    X, y, meta = training_xy(frame, CAPACITY_RETENTION)
    prefix = meta["cycles"].to_numpy() <= 700
    model = PhysicsBaseline(CAPACITY_RETENTION).fit(X[prefix], y[prefix])
    assert model.law_.context["knees"] == ("sio2/long",)
    assert 400 < np.exp(model.params_["ln_knee_onset@sio2/long"]) < 600
    truth = knee_curve(cycles[cycles > 700], 500.0)
    forecast = SPACE.inverse(model.predict(X[~prefix]))
    slope, intercept = np.polyfit(meta.loc[prefix, "cycles"], meta.loc[prefix, "capacity_retention"], 1)
    line = intercept + slope * meta.loc[~prefix, "cycles"].to_numpy(float)
    no_knee = PhysicsBaseline(CAPACITY_RETENTION, knee="never").fit(X[prefix], y[prefix])
    flat = SPACE.inverse(no_knee.predict(X[~prefix]))
    rmse = np.sqrt(np.mean((forecast - truth) ** 2))
    assert rmse < 0.02
    assert rmse < 0.5 * np.sqrt(np.mean((line - truth) ** 2))
    assert rmse < 0.5 * np.sqrt(np.mean((flat - truth) ** 2))


def test_knees_belong_to_curves_not_to_the_protocol_label():
    """Two buffers under one protocol, knees at 300 and 700 cycles: each curve gets its own knee."""
    cycles = np.arange(1, 1001)
    frame = curve_frame(
        {
            ("sio2", "standard"): (cycles, knee_curve(cycles, 300.0)),
            ("lipon", "standard"): (cycles, knee_curve(cycles, 700.0)),
        }
    )
    X, y, _ = training_xy(frame, CAPACITY_RETENTION)
    model = PhysicsBaseline(CAPACITY_RETENTION).fit(X, y)
    assert set(model.law_.context["knees"]) == {"sio2/standard", "lipon/standard"}
    assert 250 < np.exp(model.params_["ln_knee_onset@sio2/standard"]) < 350
    assert 650 < np.exp(model.params_["ln_knee_onset@lipon/standard"]) < 750
    # the previous rule: one knee for the label, shared by both curves
    shared = PhysicsBaseline(CAPACITY_RETENTION, knee_by="protocol").fit(X, y)
    assert shared.law_.context["knees"] == ("standard",)
    truth = SPACE.forward(knee_curve(X["cycles"].to_numpy(float), np.where(X["buffer"] == "sio2", 300.0, 700.0)))
    err_curve = np.sqrt(np.mean((model.predict(X) - truth) ** 2))
    err_label = np.sqrt(np.mean((shared.predict(X) - truth) ** 2))
    assert err_curve < 0.5 * err_label
    with pytest.raises(Exception, match="knee_by"):
        PhysicsBaseline(CAPACITY_RETENTION, knee_by="label").fit(X, y)


def test_a_single_protocol_file_does_not_pick_its_family_by_the_label(data):
    """The 1000-cycle SiO2 curve (thinned) alone, labelled long or standard: the same scores, the same champion,
    and the knee found either way."""
    rows = data[(data["protocol"] == "long") & data["capacity_retention"].notna()]
    rows = rows[rows["cycles"].astype(float) % 10 == 1].reset_index(drop=True)
    results = {}
    for label in ("long", "standard"):
        relabelled = rows.assign(protocol=label)
        cvs = {
            name: cross_validate(name, CAPACITY_RETENTION, relabelled, params=params, splits=("cycle_block", "forward"))
            for name, params in (("physics", {}), ("trees", {"n_estimators": 30, "random_state": 0}))
        }
        scores = {n: cv.score for n, cv in cvs.items()}
        coverages = {n: cv.coverage for n, cv in cvs.items()}
        X, y, _ = training_xy(relabelled, CAPACITY_RETENTION)
        knees = PhysicsBaseline(CAPACITY_RETENTION).fit(X, y).law_.context["knees"]
        results[label] = (scores, choose_champion(scores, coverages), knees)
    (long_scores, long_champion, long_knees), (std_scores, std_champion, std_knees) = results.values()
    assert long_champion == std_champion
    for name in long_scores:
        assert long_scores[name] == pytest.approx(std_scores[name], rel=1e-9)
    assert long_knees == ("sio2/long",) and std_knees == ("sio2/standard",)
