"""The one feature encoding every ML family shares: design columns → a numeric matrix.

Physics-aware, so that smooth models see the science's own coordinates:

=====================  ==========================================================
design column          features
=====================  ==========================================================
``anneal_temp_c``      ``anneal_temp_100c`` = anneal temperature / 100 °C
``test_temp_c``        ``inv_temp_1000_per_k`` = 1000 / T, T in K (Arrhenius axis)
``c_rate``             ``log10_c_rate`` = log10(C-rate / C)
``cycles``             ``log10_cycles`` and ``cycles_1000`` = cycles / 1000
                       (log for the early drop, linear for steady fade and knee)
``buffer``             one-hot over every buffer id of :data:`surrogate.design.BUFFERS`
``protocol``           ``protocol_long`` = 1 for the ``long`` protocol, else 0
=====================  ==========================================================

The columns depend only on the target (never on the data), so a model trained
on a data set without, say, LiPON still accepts a LiPON design (its one-hot
column was simply never non-zero in training; the training domain flags it).

This module also holds the one variance model every family shares for a
*fresh sample* (a new film or a new cell): :class:`FreshSampleRegressor`
wraps a family's estimator and adds to its predictive variance (parameter
uncertainty + the reading noise it sees in its residuals) the between-sample
variance, estimated from replicate samples (:func:`estimate_sample_variance`)
or, without replicates, taken from a stated prior
(:data:`PRIOR_BETWEEN_SAMPLE_SD`); and the variance of a design column the
data never varied, when a design changes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    PROTOCOLS,
    RATE_RETENTION,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_protocol,
)
from surrogate.errors import InputError
from surrogate.models.base import CATEGORIES, FEATURES, DesignBatch
from surrogate.physics import ZERO_C_K


def check_target(target: str) -> str:
    """Return ``target`` if it is a modelled target, else raise :class:`InputError` naming the allowed ones."""
    if target not in FEATURES:
        raise InputError(f"target: {target!r} is not a target; allowed are {', '.join(FEATURES)}")
    return target


def feature_names(target: str) -> list[str]:
    """Names of the encoded feature columns of ``target``, in matrix order."""
    names: list[str] = []
    for column in FEATURES[check_target(target)]:
        if column == ANNEAL_TEMP_C:
            names.append("anneal_temp_100c")
        elif column == TEST_TEMP_C:
            names.append("inv_temp_1000_per_k")
        elif column == C_RATE:
            names.append("log10_c_rate")
        elif column == CYCLES:
            names += ["log10_cycles", "cycles_1000"]
        elif column == BUFFER:
            names += [f"buffer_{b}" for b in BUFFERS]
        elif column == PROTOCOL:
            names.append("protocol_long")
    return names


def _canonical(values: pd.Series, canon) -> np.ndarray:
    """Canonical ids of a categorical column (maps each distinct value once)."""
    mapping = {}
    for value in pd.unique(values):
        mapping[value] = canon(value)
    return values.map(mapping).to_numpy(dtype=object)


def canonical_features(X: pd.DataFrame, target: str) -> pd.DataFrame:
    """``X`` restricted to the target's design columns, checked: numbers finite and in range, categories canonical.

    Raises :class:`InputError` naming the column and the reason (missing column, non-finite value,
    temperature at or below absolute zero, C-rate or cycles not positive, unknown buffer or protocol).
    """
    columns = list(FEATURES[check_target(target)])
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"X: a pandas DataFrame with columns {columns} is required, got {type(X).__name__}")
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise InputError(f"X: missing column(s) {missing} (the {target} model needs {columns})")
    if len(X) == 0:
        raise InputError("X: at least one row is required")
    out = pd.DataFrame(index=X.index)
    for column in columns:
        if column == BUFFER:
            out[column] = _canonical(X[column], canonical_buffer)
        elif column == PROTOCOL:
            out[column] = _canonical(X[column], canonical_protocol)
        else:
            try:
                values = pd.to_numeric(X[column], errors="raise").to_numpy(dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"{column}: every value must be a number") from None
            if not np.all(np.isfinite(values)):
                raise InputError(f"{column}: every value must be finite (found NaN or infinity)")
            if column in (ANNEAL_TEMP_C, TEST_TEMP_C) and np.any(values <= -ZERO_C_K):
                raise InputError(f"{column}: temperatures in °C must be above absolute zero (-273.15 °C)")
            if column in (C_RATE, CYCLES) and np.any(values <= 0):
                raise InputError(f"{column}: every value must be > 0")
            out[column] = values
    return out


def encode(X: pd.DataFrame, target: str) -> np.ndarray:
    """The feature matrix (rows of ``X`` × :func:`feature_names`) of ``target``; ``X`` is checked first."""
    return encode_batch(DesignBatch.from_frame(canonical_features(X, target)), target)


_ONE_HOT_BUFFER = np.eye(len(BUFFERS))
_LONG_PROTOCOL = PROTOCOLS.index("long")


def encode_batch(designs: DesignBatch, target: str) -> np.ndarray:
    """The feature matrix (designs × :func:`feature_names`) of ``target`` from validated designs (no checks)."""
    blocks: list[np.ndarray] = []
    for column in FEATURES[target]:
        if column == ANNEAL_TEMP_C:
            blocks.append(designs.numbers[column][:, None] / 100.0)
        elif column == TEST_TEMP_C:
            blocks.append(1000.0 / (designs.numbers[column][:, None] + ZERO_C_K))
        elif column == C_RATE:
            blocks.append(np.log10(designs.numbers[column])[:, None])
        elif column == CYCLES:
            cycles = designs.numbers[column][:, None]
            blocks += [np.log10(cycles), cycles / 1000.0]
        elif column == BUFFER:
            blocks.append(_ONE_HOT_BUFFER[designs.codes[column]])
        elif column == PROTOCOL:
            blocks.append((designs.codes[column] == _LONG_PROTOCOL).astype(float)[:, None])
    return np.hstack(blocks)


def check_y(y: np.ndarray, n_rows: int) -> np.ndarray:
    """``y`` as a finite float vector with one value per row of X, else :class:`InputError`."""
    values = np.asarray(y, dtype=float).ravel()
    if values.shape[0] != n_rows:
        raise InputError(f"y: {values.shape[0]} values for {n_rows} rows of X")
    if not np.all(np.isfinite(values)):
        raise InputError("y: every target value must be finite (natural space: log10 σ or logit retention)")
    return values


MIN_STRATUM_ROWS = 10
"""A stratum of :func:`stratified_subsample` keeps at least this many rows (or all it has)."""


def stratified_subsample(X: pd.DataFrame, max_points: int) -> np.ndarray:
    """Row positions of a deterministic stratified subsample of ``X`` of about ``max_points`` rows (sorted)."""
    n = len(X)
    if n <= max_points:
        return np.arange(n)
    categorical = [c for c in X.columns if c in (BUFFER, PROTOCOL)]
    numeric = [c for c in X.columns if c not in categorical]
    strata = X[categorical].astype(str).agg("/".join, axis=1).to_numpy() if categorical else np.zeros(n, dtype=str)
    keep = []
    for stratum in np.unique(strata):
        idx = np.flatnonzero(strata == stratum)
        quota = min(idx.size, max(MIN_STRATUM_ROWS, round(max_points * idx.size / n)))
        order = idx[np.lexsort([X[c].to_numpy(float)[idx] for c in reversed(numeric)])] if numeric else idx
        keep.append(order[np.unique(np.linspace(0, idx.size - 1, quota).round().astype(int))])
    return np.sort(np.concatenate(keep))


# ------------------------------------------------------------------ variance of a fresh sample
PRIOR_BETWEEN_SAMPLE_SD: dict[str, float] = {
    CONDUCTIVITY: 0.04,
    RATE_RETENTION: 0.07,
    CAPACITY_RETENTION: 0.07,
}
"""Prior standard deviation (natural space) between nominally identical samples, used when the data has no replicates.

* ``conductivity_s_cm``: 0.04 decades (≈ 10 % in σ) film to film. σ = t/(R·A): the
  thickness of a sputtered film and the electrode area are each known to a few
  percent, and film microstructure adds to it; ±10 % between nominally identical
  thin-film electrolytes is a typical reproducibility.
* ``rate_retention`` and ``capacity_retention``: 0.07 logit cell to cell. A
  relative variation v of a cell's characteristic rate (interface resistance) or
  of its fade loss −ln R moves logit R by v to 1.4·v for retentions between 0.3
  and 1, so 0.07 logit ≈ 7 % cell to cell. Studies of commercial Li-ion cells
  find a few percent in resistance and in fade rate between cells of one batch
  (e.g. Baumhöfer et al., J. Power Sources 247 (2014) 332; Schuster et al.,
  J. Power Sources 297 (2015) 242); hand-made thin-film cells are less uniform,
  hence 7 %.

Our judgement, not read from the virtual lab; set ``between_sample_sd`` of
:class:`FreshSampleRegressor` (a hyper-parameter) to use another value.
"""

UNTRAINED_FEATURE_RAMP: dict[str, float] = {
    ANNEAL_TEMP_C: 50.0,
    TEST_TEMP_C: 10.0,
    C_RATE: float(np.log10(2.0)),
    CYCLES: float(np.log10(2.0)),
}
"""Least width (°C; log10 units for C-rate and cycles) of a trained range when measuring how far a design lies
beyond it: beyond a column the data never varied, this far is one unit (see :data:`EXTRAPOLATION_GAIN`)."""

EXTRAPOLATION_GAIN = 2.0
"""Variance added per unit of distance beyond the data, as a multiple of the training targets' variance.

A design at distance d (Euclidean over the numeric columns of the excess beyond the range the data covered
for the design's buffer and protocol, each relative to that range's width or :data:`UNTRAINED_FEATURE_RAMP`;
0 inside) gets ``EXTRAPOLATION_GAIN × d × var(y_train)`` added: the standard deviation grows as √d without
bound, the way the uncertainty of an extrapolated trend accumulates. Calibrated with
``benchmarks/extrapolation_coverage.py`` on labs with other laws (gain 0.3 / 1 / 3 gave 84 / 83 / 87 %
coverage outside for the physics family's capacity retention, 65 / 74 / 92 % for physics_gp's, and
conductivity intervals 0.40 / 0.69 / 1.09 decades wide at 100 % coverage; 2 is the compromise)."""


@dataclass(frozen=True)
class SampleVariance:
    """The between-sample variance of one target's training data (natural space) and where it came from.

    ``between_variance`` τ²: variance of a sample's effect (estimated from replicates, or the prior);
    ``source``: ``"replicates"`` or ``"prior"``; ``replicated_share`` f: share of rows whose condition
    (the design columns fixed within a sample) has ≥ 2 samples, so the family's residual noise already
    holds τ² for them; ``mean_inverse_samples``: mean over rows of 1/k, k = samples of the row's
    condition; ``within_variance``: pooled variance of residuals within samples (None without a
    sample of ≥ 2 rows); ``n_samples``, ``n_replicated_conditions``.
    """

    between_variance: float
    source: str
    replicated_share: float
    mean_inverse_samples: float
    within_variance: float | None
    n_samples: int
    n_replicated_conditions: int

    @property
    def added_variance(self) -> float:
        """Variance added to a family's predictive variance: τ²·(1 − f + mean 1/k).

        τ² for the new sample itself, less the share f the family's residual noise already holds;
        plus τ²/k because a condition's fitted curve carries the mean effect of its k training
        samples, which a fit treating a sample's rows as independent does not count.
        """
        return self.between_variance * (1.0 - self.replicated_share + self.mean_inverse_samples)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "added_variance": self.added_variance}


def estimate_sample_variance(
    X: pd.DataFrame, residuals: np.ndarray, sample_ids: np.ndarray | pd.Series | None, prior_sd: float
) -> SampleVariance:
    """One-way random-effects (method-of-moments) estimate of the between-sample variance of residuals.

    ``X``: the rows' design columns; ``residuals``: y − fitted mean in natural space; ``sample_ids``:
    film / cell of each row (None: every row is its own sample). A *condition* is a combination of the
    design columns constant within every sample (anneal state for films; buffer, anneal and test
    temperature for rate cells; buffer, test temperature and protocol for cycling cells). With
    conditions of ≥ 2 samples, τ² = max(0, mean square of sample-mean residuals about their
    condition's mean − within-sample variance × mean 1/rows per sample); without, τ² = ``prior_sd``².
    """
    n = len(X)
    residuals = np.asarray(residuals, dtype=float)
    ids = np.arange(n).astype(str) if sample_ids is None else pd.Series(sample_ids).astype(str).to_numpy()
    frame = X.reset_index(drop=True).assign(_sample=ids, _residual=residuals)
    by_sample = frame.groupby("_sample", sort=False)
    columns = [c for c in X.columns if by_sample[c].nunique(dropna=False).max() <= 1]
    samples = by_sample.agg(
        mean=("_residual", "mean"), rows=("_residual", "size"), **{c: (c, "first") for c in columns}
    )
    multi = frame[frame["_sample"].map(samples["rows"]).to_numpy() > 1]
    within = None
    if len(multi):
        centred = multi["_residual"] - multi.groupby("_sample")["_residual"].transform("mean")
        dof = len(multi) - multi["_sample"].nunique()
        within = float(np.sum(centred**2) / dof) if dof > 0 else None
    condition = samples[columns].astype(str).agg("|".join, axis=1) if columns else pd.Series("", samples.index)
    k = condition.map(condition.value_counts())
    replicated = k > 1
    rows_k = frame["_sample"].map(k).to_numpy(float)
    if replicated.any():
        means = samples.loc[replicated, "mean"]
        deviation = means - means.groupby(condition[replicated]).transform("mean")
        dof = int((k[replicated] - 1).groupby(condition[replicated]).first().sum())
        noise = (within or 0.0) * float(np.mean(1.0 / samples.loc[replicated, "rows"]))
        between, source = max(0.0, float(np.sum(deviation**2)) / dof - noise), "replicates"
    else:
        between, source = float(prior_sd) ** 2, "prior"
    return SampleVariance(
        between_variance=between,
        source=source,
        replicated_share=float(np.mean(rows_k > 1)),
        mean_inverse_samples=float(np.mean(1.0 / rows_k)),
        within_variance=within,
        n_samples=len(samples),
        n_replicated_conditions=int(condition[replicated].nunique()),
    )


def _trained_ranges(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """(low, high) of each numeric column over all rows and per combination of the categorical columns."""
    def bounds(part: pd.DataFrame) -> list[list[float]]:
        return [[float(part[c].min()), float(part[c].max())] for c in numeric]

    regions = {}
    if categorical:
        for combo, part in frame.groupby(categorical, sort=True):
            regions[tuple(combo) if isinstance(combo, tuple) else (combo,)] = bounds(part)
    return {"columns": list(numeric), "all": bounds(frame), "regions": regions}


class FreshSampleRegressor(RegressorMixin, BaseEstimator):
    """A family's estimator, predicting a *fresh* sample: its variance plus the between-sample variance.

    Predictive variance (natural space) = the wrapped estimator's (parameter uncertainty + the reading
    noise in its residuals) + :attr:`SampleVariance.added_variance` (τ² from replicates, or
    ``between_sample_sd``² when the data has none; see :func:`estimate_sample_variance`) + the
    variance of what the data cannot tell (:meth:`extrapolation_variance`):

    * a design beyond the numeric ranges the data covered (for its buffer and protocol), including a
      column the data never varied (e.g. every cell tested at 25 °C): :data:`EXTRAPOLATION_GAIN` × the
      variance of the training targets × the distance beyond the data (relative to the range the data
      span, :meth:`_distance_beyond_data`) — 0 inside, growing without bound with the distance;
    * a combination of categories never seen together (e.g. the long protocol on a buffer only cycled
      under the standard one): the variance, at the same design, of the predictions for every
      combination that was seen — the new combination may behave like any of them.

    Parameters: ``estimator`` (an unfitted family estimator with a ``target``); ``between_sample_sd``
    (natural space; None = :data:`PRIOR_BETWEEN_SAMPLE_SD` of the target; used only without replicates).
    ``fit(X, y, sample_ids=None)``; ``predict(X, return_std=False)``.
    """

    def __init__(self, estimator: Any = None, between_sample_sd: float | None = None) -> None:
        self.estimator = estimator
        self.between_sample_sd = between_sample_sd

    @property
    def target(self) -> str:
        """The wrapped estimator's target."""
        return self.estimator.target

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, sample_ids: np.ndarray | pd.Series | None = None
    ) -> FreshSampleRegressor:
        self.__dict__.pop("_seen_codes", None)  # derived from a previous fit
        self.__dict__.pop("_range_region", None)
        target = check_target(self.target)
        prior = PRIOR_BETWEEN_SAMPLE_SD[target] if self.between_sample_sd is None else float(self.between_sample_sd)
        if not np.isfinite(prior) or prior < 0:
            raise InputError(f"between_sample_sd: {self.between_sample_sd} must be a number ≥ 0")
        frame = canonical_features(X, target)
        values = check_y(y, len(frame))
        if sample_ids is not None and len(sample_ids) != len(frame):
            raise InputError(f"sample_ids: {len(sample_ids)} ids for {len(frame)} rows of X")
        self.estimator_ = clone(self.estimator).fit(X, values)
        residuals = values - np.asarray(self.estimator_.predict(X), dtype=float)
        self.sample_variance_ = estimate_sample_variance(frame, residuals, sample_ids, prior)
        numeric = [c for c in frame.columns if c not in (BUFFER, PROTOCOL)]
        categorical = [c for c in frame.columns if c in (BUFFER, PROTOCOL)]
        self.untrained_columns_ = {c: float(frame[c].iloc[0]) for c in numeric if frame[c].nunique() == 1}
        self.trained_ranges_ = _trained_ranges(frame, numeric, categorical)
        self.categorical_columns_ = categorical
        self.seen_combinations_ = (
            sorted(set(map(tuple, frame[categorical].to_numpy(dtype=object)))) if categorical else []
        )
        self.target_variance_ = float(np.var(values))
        self.n_features_in_ = frame.shape[1]
        self.feature_names_in_ = np.array(list(FEATURES[target]), dtype=object)
        return self

    def extrapolation_variance(self, X: pd.DataFrame) -> np.ndarray:
        """Per row: variance added for what the data cannot tell (see the class docstring); 0 inside the data."""
        return self._extrapolation_variance(DesignBatch.from_frame(canonical_features(X, self.target)))

    def _estimator_predict(self, designs: DesignBatch, return_std: bool = False) -> Any:
        """The wrapped estimator's prediction: its array path when it has one, else its frame path."""
        if hasattr(self.estimator_, "predict_batch"):
            return self.estimator_.predict_batch(designs, return_std=return_std)
        return self.estimator_.predict(designs.frame(FEATURES[self.target]), return_std=return_std)

    def _extrapolation_variance(self, designs: DesignBatch) -> np.ndarray:
        variance = EXTRAPOLATION_GAIN * self.target_variance_ * self._distance_beyond_data(designs)
        if not self.categorical_columns_:
            return variance
        categorical = self.categorical_columns_
        seen, seen_codes = self._seen_lookup()
        unseen = ~seen[tuple(designs.codes[c] for c in categorical)]
        if unseen.any():
            if len(self.seen_combinations_) < 2:
                variance[unseen] += self.target_variance_
            else:
                rows = designs.take(unseen)
                predictions = [
                    np.asarray(
                        self._estimator_predict(rows.with_codes(**dict(zip(categorical, codes, strict=True)))),
                        dtype=float,
                    )
                    for codes in seen_codes
                ]
                variance[unseen] += np.var(np.stack(predictions), axis=0, ddof=1)
        return variance

    def _distance_beyond_data(self, designs: DesignBatch) -> np.ndarray:
        """Per design: Euclidean distance beyond the numeric ranges the data covered (0 inside), each column's
        excess relative to the width of its range (at least :data:`UNTRAINED_FEATURE_RAMP`): going 45 °C
        beyond data spanning 95 °C is half a unit, beyond a single temperature 4.5 units. Ranges of the
        design's buffer and protocol combination, or of all the data for a combination never seen."""
        ranges = getattr(self, "trained_ranges_", None)
        if ranges is None or not ranges["columns"]:
            return np.zeros(len(designs))
        columns = ranges["columns"]
        bounds = np.array(list(ranges["regions"].values()) + [ranges["all"]], dtype=float)  # region × column × 2
        region = np.full(len(designs), len(bounds) - 1, dtype=np.intp)
        if self.categorical_columns_:
            lookup = self.__dict__.get("_range_region")
            if lookup is None:
                shape = tuple(len(CATEGORIES[c]) for c in self.categorical_columns_)
                lookup = np.full(shape, len(bounds) - 1, dtype=np.intp)
                for i, combo in enumerate(ranges["regions"]):
                    lookup[tuple(CATEGORIES[c].index(v) for c, v in zip(self.categorical_columns_, combo, strict=True))] = i
                self.__dict__["_range_region"] = lookup
            region = lookup[tuple(designs.codes[c] for c in self.categorical_columns_)]
        squared = np.zeros(len(designs))
        for j, column in enumerate(columns):
            values = designs.numbers[column]
            low, high = bounds[region, j, 0], bounds[region, j, 1]
            if column in (C_RATE, CYCLES):
                values, low, high = np.log10(values), np.log10(low), np.log10(high)
            beyond = np.maximum(low - values, 0.0) + np.maximum(values - high, 0.0)
            squared += (beyond / np.maximum(high - low, UNTRAINED_FEATURE_RAMP[column])) ** 2
        return np.sqrt(squared)

    def _seen_lookup(self) -> tuple[np.ndarray, list[tuple[int, ...]]]:
        """(seen[code of each categorical column] → bool, codes of each seen combination): derived once, not pickled."""
        lookup = self.__dict__.get("_seen_codes")
        if lookup is None:
            categorical = self.categorical_columns_
            seen = np.zeros(tuple(len(CATEGORIES[c]) for c in categorical), dtype=bool)
            codes = [
                tuple(CATEGORIES[c].index(v) for c, v in zip(categorical, combo, strict=True))
                for combo in self.seen_combinations_
            ]
            for combination in codes:
                seen[combination] = True
            lookup = self.__dict__["_seen_codes"] = (seen, codes)
        return lookup

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_seen_codes", None)
        state.pop("_range_region", None)
        return state

    def predict_batch(
        self, designs: DesignBatch, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on validated designs (arrays, no checks): the path :class:`Surrogate` uses."""
        if not hasattr(self, "estimator_"):
            raise NotFittedError(f"{type(self.estimator).__name__} is not fitted yet: call fit(X, y) first")
        if not return_std:
            return self._estimator_predict(designs)
        mean, std = self._estimator_predict(designs, return_std=True)
        variance = np.asarray(std, float) ** 2 + self.sample_variance_.added_variance
        return mean, np.sqrt(variance + self._extrapolation_variance(designs))

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean (the wrapped estimator's) and, with ``return_std``, the fresh-sample std, natural space."""
        if not hasattr(self, "estimator_"):
            raise NotFittedError(f"{type(self.estimator).__name__} is not fitted yet: call fit(X, y) first")
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)
