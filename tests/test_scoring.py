"""Proper scores (surrogate.scoring) and the per-region labels the accuracy benchmark reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from surrogate.scoring import (
    QUANTILE_LEVELS,
    crps_from_quantiles,
    crps_gaussian,
    design_regions,
    interval_score,
    summary,
)


def test_interval_score_is_width_inside_and_adds_the_scaled_miss_outside():
    score = interval_score([0.5, 0.0, 1.3], [0.2, 0.2, 0.2], [0.8, 0.8, 0.8], level=0.9)
    # inside: the width; below by 0.2: width + 2/0.1 * 0.2; above by 0.5: width + 20 * 0.5
    np.testing.assert_allclose(score, [0.6, 0.6 + 4.0, 0.6 + 10.0])


def test_interval_score_penalises_an_interval_that_says_anything():
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 1.0, 4000)
    z = norm.ppf(0.95)
    honest = interval_score(y, -z, z, 0.9).mean()
    vague = interval_score(y, -10 * z, 10 * z, 0.9).mean()
    overconfident = interval_score(y, -0.2 * z, 0.2 * z, 0.9).mean()
    assert honest < vague and honest < overconfident


def test_crps_from_quantiles_matches_the_gaussian_closed_form():
    y = np.array([-1.5, 0.0, 0.3, 2.5])
    mean, std = np.array([0.0, 0.1, -0.2, 1.0]), np.array([1.0, 0.5, 2.0, 0.3])
    quantiles = mean[:, None] + std[:, None] * norm.ppf(QUANTILE_LEVELS)[None, :]
    np.testing.assert_allclose(crps_from_quantiles(y, quantiles), crps_gaussian(y, mean, std), rtol=0.01)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    quantiles = np.full((2, len(QUANTILE_LEVELS)), 1.0)
    np.testing.assert_allclose(crps_from_quantiles([0.7, 1.2], quantiles), [0.3, 0.2])


def test_summary_reports_bias_and_coverage():
    truth = np.array([0.5, 0.5, 0.5, 0.5])
    fresh = np.array([0.5, 0.55, 0.45, 0.9])
    mean = truth + 0.1
    quantiles = mean[:, None] + 0.05 * norm.ppf(QUANTILE_LEVELS)[None, :]
    scores = summary(truth, fresh, mean, mean - 0.2, mean + 0.2, quantiles, 0.9)
    assert abs(scores["bias"] - 0.1) < 1e-12
    assert scores["coverage"] == 0.75
    assert abs(scores["median_width"] - 0.4) < 1e-12


def test_design_regions_separate_trained_states_gaps_and_extrapolation():
    trained = pd.DataFrame({"buffer": ["none"] * 3, "anneal_temp_c": [25.0, 300.0, 400.0]})
    designs = pd.DataFrame({"buffer": ["none", "none", "sio2", "none"], "anneal_temp_c": [301.0, 200.0, 300.0, 450.0]})
    flagged = np.array([False, False, False, True])
    labels = design_regions(trained, designs, flagged)
    # sio2 was never trained: not at a trained state, so never "inside" (its flag is the model's to raise)
    assert labels.tolist() == ["inside", "between", "between", "outside"]


def test_predict_quantiles_match_the_interval_of_predict():
    from surrogate.dataset import load_default_dataset
    from surrogate.evaluation import fit_surrogate
    from surrogate.models.base import design_frame

    surrogate = fit_surrogate(load_default_dataset(), {"rate_retention": "physics"})
    designs = pd.DataFrame(
        {
            "buffer": ["sio2", "none"],
            "anneal_temp_c": [300.0, 300.0],
            "test_temp_c": [25.0, 60.0],
            "c_rate": [10.0, 30.0],
        }
    )
    predicted = surrogate.predict(designs, level=0.9)
    q = surrogate.predict_quantiles("rate_retention", design_frame(designs), [0.05, 0.5, 0.95])
    np.testing.assert_allclose(q[:, 0], predicted["rate_retention_lower"], rtol=1e-9)
    np.testing.assert_allclose(q[:, 1], predicted["rate_retention_mean"], rtol=1e-9)
    np.testing.assert_allclose(q[:, 2], predicted["rate_retention_upper"], rtol=1e-9)
