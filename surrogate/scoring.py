"""Proper scores of probabilistic predictions, and the region of design space a prediction lies in.

A prediction is a predictive distribution, not a number, so it is judged by *proper* scoring rules
(Gneiting & Raftery 2007, "Strictly proper scoring rules, prediction, and estimation", JASA 102:359):
a forecaster minimises the expected score only by stating its true belief, so neither an interval
that says "anything" nor an over-confident one can win.

* :func:`interval_score`: the central ``level`` interval score (Winkler 1972; Gneiting & Raftery 2007,
  eq. 43): width plus ``2/α`` times the distance by which the observation falls outside, α = 1 − level.
  Lower is better; in the units of the observation.
* :func:`crps_from_quantiles`: the continuous ranked probability score from predictive quantiles,
  ``CRPS = 2 ∫₀¹ ρ_τ(y − q_τ) dτ`` with the pinball loss ``ρ_τ`` (Laio & Tamea 2007, HESS 11:1267;
  Gneiting & Ranjan 2011, eq. 5), integrated on a midpoint grid of levels. Quantiles transform exactly
  under the monotone maps between a target's modelling space and its contract units, so this scores a
  logit-normal retention in fractions without sampling. Lower is better; units of the observation.
* :func:`crps_gaussian`: the closed form for a normal predictive (Gneiting et al. 2005, MWR 133:1098,
  eq. 5), used to check the quantile form.

:func:`design_regions` labels each design ``inside`` (at a trained state), ``between`` (within the
trained ranges but away from every trained state: interpolation) or ``outside`` (flagged
extrapolation), so scores can be reported per region.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

QUANTILE_LEVELS: np.ndarray = (np.arange(99) + 0.5) / 99.0
"""Midpoint grid of probability levels on which :func:`crps_from_quantiles` integrates (99 levels)."""

REGIONS: tuple[str, ...] = ("inside", "between", "outside")
"""Region labels of :func:`design_regions`, from best to least supported by data."""

STATE_TOLERANCE = 0.03
"""A design is at a trained state when every numeric feature is within this share of the feature's trained
range of a training row with the same categorical values (see :func:`design_regions`)."""


def interval_score(observed: Any, lower: Any, upper: Any, level: float) -> np.ndarray:
    """Interval (Winkler) score of central ``level`` intervals ``[lower, upper]`` per observation (lower is better)."""
    y, low, high = (np.asarray(v, dtype=float) for v in (observed, lower, upper))
    alpha = 1.0 - level
    below = np.maximum(low - y, 0.0)
    above = np.maximum(y - high, 0.0)
    return (high - low) + (2.0 / alpha) * (below + above)


def crps_from_quantiles(observed: Any, quantiles: Any, levels: Any = QUANTILE_LEVELS) -> np.ndarray:
    """CRPS per observation from predictive ``quantiles`` (shape (n, k)) at probability ``levels`` (k,)."""
    y = np.asarray(observed, dtype=float)[:, None]
    q = np.asarray(quantiles, dtype=float)
    tau = np.asarray(levels, dtype=float)[None, :]
    pinball = np.where(y >= q, tau * (y - q), (1.0 - tau) * (q - y))
    return 2.0 * pinball.mean(axis=1)


def crps_gaussian(observed: Any, mean: Any, std: Any) -> np.ndarray:
    """Closed-form CRPS of a normal predictive N(mean, std²) per observation."""
    y, mu, sigma = (np.asarray(v, dtype=float) for v in (observed, mean, std))
    z = (y - mu) / sigma
    return sigma * (z * (2.0 * norm.cdf(z) - 1.0) + 2.0 * norm.pdf(z) - 1.0 / np.sqrt(np.pi))


def summary(
    truth: np.ndarray,
    fresh: np.ndarray,
    mean: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    quantiles: np.ndarray,
    level: float,
) -> dict[str, float | int]:
    """Scores of one set of predictions, all in the same units (the target's score space).

    ``truth``: noise-free values (RMSE and bias of the mean); ``fresh``: fresh noisy measurements (coverage,
    interval score, CRPS: a fresh sample is what a scientist would measure next).
    """
    error = mean - truth
    return {
        "n": int(len(truth)),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(np.mean(error)),
        "coverage": float(np.mean((fresh >= lower) & (fresh <= upper))),
        "median_width": float(np.median(upper - lower)),
        "interval_score": float(np.mean(interval_score(fresh, lower, upper, level))),
        "crps": float(np.mean(crps_from_quantiles(fresh, quantiles))),
    }


def design_regions(
    trained: pd.DataFrame, designs: pd.DataFrame, flagged: np.ndarray, tolerance: float = STATE_TOLERANCE
) -> np.ndarray:
    """``inside`` / ``between`` / ``outside`` per design (object array), see the module docstring.

    ``trained``: the training features of one target (numeric and categorical columns); ``designs``: the
    same columns; ``flagged``: the model's own extrapolation flag per design (→ ``outside``).
    """
    numeric = [c for c in trained.columns if pd.api.types.is_numeric_dtype(trained[c])]
    categorical = [c for c in trained.columns if c not in numeric]
    trained = trained.assign(**{c: trained[c].astype(str) for c in categorical})
    span = {c: max(float(trained[c].max() - trained[c].min()), 1e-9) for c in numeric}
    labels = np.where(np.asarray(flagged, dtype=bool), "outside", "between").astype(object)
    candidates = np.flatnonzero(labels == "between")
    if not len(candidates):
        return labels
    groups = trained.groupby(categorical, sort=False) if categorical else [((), trained)]
    by_key = {(k if isinstance(k, tuple) else (k,)): g for k, g in groups}
    for i in candidates:
        row = designs.iloc[i]
        key = tuple(str(row[c]) for c in categorical)
        part = by_key.get(key) if categorical else trained
        if part is None:
            continue
        distance = np.zeros(len(part))
        for c in numeric:
            distance = np.maximum(distance, np.abs(part[c].to_numpy(float) - float(row[c])) / span[c])
        if distance.min() <= tolerance:
            labels[i] = "inside"
    return labels
