"""What every surrogate model family shares: target spaces, features, intervals and the multi-target bundle.

A *target model* is a scikit-learn regressor for one target. It is fitted on a
frame of design columns (the target's :data:`FEATURES`) and on the target in
its natural space (log10 σ; logit of a retention, see :data:`TARGET_SPACES`),
and ``predict(X, return_std=True)`` returns the predictive mean and standard
deviation in that space, the standard deviation including measurement noise so
that intervals cover fresh measurements.

A :class:`Surrogate` holds one fitted target model per target, knows the
range of the data each was trained on, and answers in the contract's units:
mean, lower and upper of a central interval per target, and ``extrapolation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOL,
    RATE_RETENTION,
    TARGETS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_protocol,
)
from surrogate.errors import InputError

SURROGATE_FORMAT = 2
"""Layout version of :class:`Surrogate` bundles written by this code."""

DEFAULT_LEVEL = 0.90
"""Central interval level of predictions unless asked otherwise."""

FEATURES: dict[str, tuple[str, ...]] = {
    CONDUCTIVITY: (ANNEAL_TEMP_C, TEST_TEMP_C),
    RATE_RETENTION: (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE),
    CAPACITY_RETENTION: (BUFFER, TEST_TEMP_C, CYCLES, PROTOCOL),
}
"""Design columns each target depends on (conductivity is a film property: no buffer)."""

_RETENTION_EPS = 1e-3

REFERENCE_C_RATE = 0.1
"""``rate_retention`` is capacity at C over capacity at this rate: exactly 1 at and below it."""
REFERENCE_CYCLE = 1
"""``capacity_retention`` is relative to this cycle: exactly 1 there."""


def reference_mask(target: str, designs: pd.DataFrame) -> np.ndarray:
    """Rows where ``target`` is 1 by definition (the reference it is relative to), not a prediction."""
    if target == RATE_RETENTION:
        return designs[C_RATE].to_numpy(float) <= REFERENCE_C_RATE
    if target == CAPACITY_RETENTION:
        return designs[CYCLES].to_numpy(float) <= REFERENCE_CYCLE
    return np.zeros(len(designs), dtype=bool)


@dataclass(frozen=True)
class TargetSpace:
    """How a target is modelled: ``forward`` maps contract units to the natural space, ``inverse`` back."""

    name: str
    label: str

    def forward(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.name == "log10":
            return np.log10(values)
        return logit(np.clip(values, _RETENTION_EPS, 1.0 - _RETENTION_EPS))

    def inverse(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if self.name == "log10":
            return 10.0**values
        return expit(values)


TARGET_SPACES: dict[str, TargetSpace] = {
    CONDUCTIVITY: TargetSpace("log10", "log10(σ / S cm⁻¹)"),
    RATE_RETENTION: TargetSpace("logit", "logit(rate retention)"),
    CAPACITY_RETENTION: TargetSpace("logit", "logit(capacity retention)"),
}


class TargetModel(Protocol):
    """The estimator API every model family implements (scikit-learn conventions)."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> TargetModel: ...

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def design_frame(designs: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """Canonical design frame: every contract field present, defaults filled, buffer/protocol canonical.

    Raises :class:`InputError` naming the design (1-based), the field and the reason for anything that
    is not a valid design: unknown buffer or protocol, a missing or non-numeric value, NaN or infinity,
    a temperature outside the physical range, c_rate <= 0, cycles not a whole number >= 1.
    """
    from surrogate.schema import value_problem

    frame = pd.DataFrame(designs) if not isinstance(designs, pd.DataFrame) else designs
    if frame.empty:
        raise InputError("designs: at least one design is required")
    missing = [c for c in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C) if c not in frame.columns]
    if missing:
        raise InputError("; ".join(f"{c}: missing (required)" for c in missing))
    n = len(frame)
    problems: list[tuple[int, str]] = []
    out = pd.DataFrame(index=pd.RangeIndex(n))
    for column, canonical in ((BUFFER, canonical_buffer), (PROTOCOL, canonical_protocol)):
        raw = frame[column] if column in frame.columns else pd.Series([DEFAULT_PROTOCOL] * n)
        raw = raw.where(raw.notna(), DEFAULT_PROTOCOL) if column == PROTOCOL else raw
        values = raw.to_numpy(dtype=object)
        mapping = {}
        for value in pd.unique(values):
            try:
                mapping[value] = canonical(value)
            except InputError as exc:
                mapping[value] = None
                problems += [(i, f"{column}: {exc}") for i in np.flatnonzero(values == value)]
        out[column] = [mapping[v] for v in values]
    defaults = {C_RATE: DEFAULT_C_RATE, CYCLES: float(DEFAULT_CYCLES)}
    for column in (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES):
        raw = frame[column] if column in frame.columns else pd.Series([defaults[column]] * n)
        if column in defaults:
            raw = raw.where(raw.notna(), defaults[column])
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        for i in np.flatnonzero(np.isnan(numbers)):
            shown = raw.iloc[i]
            what = (
                "missing (required)"
                if shown is None or (isinstance(shown, float) and np.isnan(shown))
                else (f"{shown!r} is not a number")
            )
            problems.append((i, f"{column}: {what}"))
        for i in np.flatnonzero(np.isinf(numbers)):
            problems.append((i, f"{column}: must be finite, got {numbers[i]}"))
        finite = np.isfinite(numbers)
        for value in np.unique(numbers[finite]):
            why = value_problem(column, float(value))
            if why:
                problems += [(i, f"{column}: {why}") for i in np.flatnonzero(numbers == value)]
        out[column] = numbers
    if problems:
        problems.sort(key=lambda p: p[0])
        shown = [f"design {i + 1}: {why}" for i, why in problems[:20]]
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise InputError("; ".join(shown) + more)
    return out[[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL]]


def _region_keys(X: pd.DataFrame, categorical: tuple[str, ...]) -> np.ndarray:
    """One string per row joining its categorical values with '|' ('' when there are none)."""
    if not categorical:
        return np.full(len(X), "", dtype=object)
    keys = X[categorical[0]].astype(str)
    for column in categorical[1:]:
        keys = keys + "|" + X[column].astype(str)
    return keys.to_numpy(dtype=object)


@dataclass
class TrainingDomain:
    """The region of design space a target model saw in training.

    Numeric ranges are kept per combination of the categorical features seen
    together (for example ``cycles`` per buffer and protocol), so a long-protocol
    question about a buffer only ever cycled under the standard protocol, or a
    rate question at a temperature one buffer was never tested at, counts as
    extrapolation even when another buffer covered that range.
    """

    categorical: tuple[str, ...] = ()
    regions: dict[tuple[str, ...], dict[str, tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> TrainingDomain:
        categorical = tuple(c for c in X.columns if c in (BUFFER, PROTOCOL))
        numeric = [c for c in X.columns if c not in categorical]
        keys = _region_keys(X, categorical)
        regions = {}
        for key, part in X.groupby(keys, sort=True):
            ranges = {c: (float(part[c].astype(float).min()), float(part[c].astype(float).max())) for c in numeric}
            regions[tuple(key.split("|")) if categorical else ()] = ranges
        return cls(categorical, regions)

    def reasons(self, X: pd.DataFrame) -> list[list[str]]:
        """For each row, why it lies outside this domain (empty when inside). Vectorised per region."""
        out: list[list[str]] = [[] for _ in range(len(X))]
        keys = _region_keys(X, self.categorical)
        known = np.zeros(len(X), dtype=bool)
        for key, ranges in self.regions.items():
            rows = np.flatnonzero(keys == "|".join(key))
            known[rows] = True
            where = f" (for {', '.join(key)})" if key else ""
            for column, (low, high) in ranges.items():
                values = X[column].to_numpy(float)
                for i in rows[(values[rows] < low - 1e-9) | (values[rows] > high + 1e-9)]:
                    out[i].append(f"{column}={values[i]:g} outside trained range [{low:g}, {high:g}]{where}")
        for i in np.flatnonzero(~known):
            combo = ", ".join(f"{c}={v}" for c, v in zip(self.categorical, keys[i].split("|"), strict=True))
            out[i].append(f"{combo}: no training data for this combination")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "categorical": list(self.categorical),
            "regions": {"|".join(k) or "*": {c: list(r) for c, r in v.items()} for k, v in self.regions.items()},
        }


@dataclass
class Surrogate:
    """One fitted target model per target, answering in the contract's units with intervals.

    ``models`` maps target → fitted :class:`TargetModel`; ``domains`` target →
    :class:`TrainingDomain`; ``info`` is free metadata (family per target, data
    hash, CV scores, …) that the service shows.
    """

    models: dict[str, Any]
    domains: dict[str, TrainingDomain]
    info: dict[str, Any] = field(default_factory=dict)
    format_version: int = SURROGATE_FORMAT
    """Bumped when the bundle's layout changes; a saved bundle of another version must be retrained."""

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in TARGETS if t in self.models)

    def predict_target(self, target: str, designs: pd.DataFrame, level: float = DEFAULT_LEVEL) -> pd.DataFrame:
        """Mean, lower, upper (contract units) of one target for canonical designs."""
        if not 0.0 < level < 1.0:
            raise InputError(f"level: {level} must be between 0 and 1 (e.g. 0.9 for a 90% interval)")
        X = designs[list(FEATURES[target])]
        mean, std = self.models[target].predict(X, return_std=True)
        z = norm.ppf(0.5 + level / 2.0)
        space = TARGET_SPACES[target]
        out = pd.DataFrame(
            {
                "mean": space.inverse(mean),
                "lower": space.inverse(mean - z * std),
                "upper": space.inverse(mean + z * std),
            }
        )
        out.loc[reference_mask(target, designs), ["mean", "lower", "upper"]] = 1.0
        return out

    def predict(self, designs: pd.DataFrame | list[dict[str, Any]], level: float = DEFAULT_LEVEL) -> pd.DataFrame:
        """Predictions for designs: ``<target>_mean``, ``_lower``, ``_upper`` per target, ``extrapolation``.

        The mean of a retention is the back-transformed natural-space mean (the
        median in contract units); lower/upper bound a central ``level`` interval.
        ``extrapolation_reasons`` lists, per design, why it lies outside the data.
        """
        frame = design_frame(designs)
        out = pd.DataFrame(index=frame.index)
        reasons: list[list[str]] = [[] for _ in range(len(frame))]
        for target in self.targets:
            part = self.predict_target(target, frame, level)
            for column in part.columns:
                out[f"{target}_{column}"] = part[column].to_numpy()
            by_definition = reference_mask(target, frame)
            for i, why in enumerate(self.domains[target].reasons(frame[list(FEATURES[target])])):
                if not by_definition[i]:
                    reasons[i] += [f"{target}: {w}" for w in why]
        out["extrapolation"] = [bool(r) for r in reasons]
        out["extrapolation_reasons"] = reasons
        return out

    def predict_means(self, designs: pd.DataFrame) -> pd.DataFrame:
        """Target means only, in contract units (the facts check's predictor interface)."""
        frame = design_frame(designs)
        return pd.DataFrame(
            {t: self.predict_target(t, frame)["mean"].to_numpy() for t in self.targets}, index=designs.index
        )
