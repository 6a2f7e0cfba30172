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

DEFAULT_LEVEL = 0.90
"""Central interval level of predictions unless asked otherwise."""

FEATURES: dict[str, tuple[str, ...]] = {
    CONDUCTIVITY: (ANNEAL_TEMP_C, TEST_TEMP_C),
    RATE_RETENTION: (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE),
    CAPACITY_RETENTION: (BUFFER, TEST_TEMP_C, CYCLES, PROTOCOL),
}
"""Design columns each target depends on (conductivity is a film property: no buffer)."""

_RETENTION_EPS = 1e-3


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

    Raises :class:`InputError` naming the row and field for anything that is not a valid design.
    """
    frame = pd.DataFrame(designs).copy() if not isinstance(designs, pd.DataFrame) else designs.copy()
    if frame.empty:
        raise InputError("designs: at least one design is required")
    problems = []
    for column in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C):
        if column not in frame.columns:
            problems.append(f"{column}: missing (required)")
    if problems:
        raise InputError("; ".join(problems))
    defaults = {C_RATE: DEFAULT_C_RATE, CYCLES: DEFAULT_CYCLES, PROTOCOL: DEFAULT_PROTOCOL}
    for column, default in defaults.items():
        frame[column] = frame[column].fillna(default) if column in frame.columns else default
    rows = []
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        record = row._asdict()
        try:
            record[BUFFER] = canonical_buffer(record[BUFFER])
        except InputError as exc:
            problems.append(f"design {i}: {BUFFER}: {exc}")
        try:
            record[PROTOCOL] = canonical_protocol(record[PROTOCOL])
        except InputError as exc:
            problems.append(f"design {i}: {PROTOCOL}: {exc}")
        for column in (ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES):
            try:
                value = float(record[column])
            except (TypeError, ValueError):
                problems.append(f"design {i}: {column}: {record[column]!r} is not a number")
                continue
            if not np.isfinite(value):
                problems.append(f"design {i}: {column}: must be finite")
            record[column] = value
        rows.append(record)
    if problems:
        raise InputError("; ".join(problems[:20]) + (f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""))
    out = pd.DataFrame(rows, columns=list(frame.columns))
    out[CYCLES] = out[CYCLES].astype(float)
    return out[[BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL]].reset_index(drop=True)


@dataclass
class TrainingDomain:
    """The region of design space a target model saw in training: numeric ranges and categories per buffer."""

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> TrainingDomain:
        numeric, categories = {}, {}
        for column in X.columns:
            if column in (BUFFER, PROTOCOL):
                categories[column] = sorted(X[column].astype(str).unique().tolist())
            else:
                values = X[column].astype(float)
                numeric[column] = (float(values.min()), float(values.max()))
        return cls(numeric, categories)

    def reasons(self, X: pd.DataFrame) -> list[list[str]]:
        """For each row, why it lies outside this domain (empty when inside)."""
        out: list[list[str]] = [[] for _ in range(len(X))]
        for column, (low, high) in self.numeric.items():
            values = X[column].to_numpy(float)
            for i in np.flatnonzero((values < low - 1e-9) | (values > high + 1e-9)):
                out[i].append(f"{column}={values[i]:g} outside trained range [{low:g}, {high:g}]")
        for column, seen in self.categories.items():
            values = X[column].astype(str).to_numpy()
            for i in np.flatnonzero(~np.isin(values, seen)):
                out[i].append(f"{column}={values[i]} not in training data")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": {k: list(v) for k, v in self.numeric.items()}, "categories": self.categories}


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
        return pd.DataFrame(
            {
                "mean": space.inverse(mean),
                "lower": space.inverse(mean - z * std),
                "upper": space.inverse(mean + z * std),
            }
        )

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
            for i, why in enumerate(self.domains[target].reasons(frame[list(FEATURES[target])])):
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
