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

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.stats import norm

from surrogate import parameters
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CYCLES,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_MATERIAL,
    DEFAULT_PROTOCOL,
    DESIGN_FIELDS,
    MATERIAL,
    PROTOCOL,
    PROTOCOLS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_material,
    canonical_protocol,
)
from surrogate.errors import InputError
from surrogate.materials import BUFFER_KIND, CATALOGUE, MATERIAL_KIND
from surrogate.targets import INPUTS, SPACES, TargetSpace, get_target, target_names

SURROGATE_FORMAT = 2
"""Layout version of :class:`Surrogate` bundles written by this code."""

DEFAULT_LEVEL = 0.90
"""Central interval level of predictions unless asked otherwise."""

FEATURES: dict[str, tuple[str, ...]] = INPUTS
"""Design columns each target depends on (declared in :mod:`surrogate.targets`; conductivity is a film property:
no buffer). Every target also reads the optional ``material`` column."""


def reference_mask(target: str, designs: pd.DataFrame) -> np.ndarray:
    """Rows where ``target`` is 1 by definition (the reference it is relative to), not a prediction."""
    rows = _reference_rows(target, DesignBatch.from_frame(designs))
    return np.zeros(len(designs), dtype=bool) if rows is None else rows


__all__ = ["TargetSpace"]  # re-exported: declared in surrogate.targets

TARGET_SPACES: dict[str, TargetSpace] = SPACES
"""Modelling space of each target (declared in :mod:`surrogate.targets`)."""


class TargetModel(Protocol):
    """The estimator API every model family implements (scikit-learn conventions).

    A family may also implement ``predict_batch(batch: DesignBatch, return_std=False)``: the same
    answer as ``predict`` on ``batch.frame(FEATURES[target])``, computed on arrays (the fast path
    :class:`Surrogate` uses when it exists).
    """

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> TargetModel: ...

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


CATEGORIES: dict[str, tuple[str, ...]] = {}
"""The categorical design columns and their canonical ids; a :class:`DesignBatch` code indexes these tuples.

``buffer`` and ``material`` are the catalogue's ids (:mod:`surrogate.materials`), which only grow, so a code
stays valid when a material is declared; ``protocol`` is fixed."""
_CATEGORY_IDS: dict[str, np.ndarray] = {}
_CATEGORY_CODES: dict[str, dict[str, int]] = {}
_CANONICAL = {BUFFER: canonical_buffer, PROTOCOL: canonical_protocol, MATERIAL: canonical_material}
_NUMERIC_FIELDS = tuple(f for f in DESIGN_FIELDS if f not in (BUFFER, PROTOCOL))
BATCH_FIELDS: tuple[str, ...] = DESIGN_FIELDS + (MATERIAL,)
"""The columns a :class:`DesignBatch` holds: the contract's design fields, then ``material``."""


def _refresh_categories() -> None:
    """Re-derive the category tables from the catalogue (called when a material is declared)."""
    CATEGORIES.update({BUFFER: CATALOGUE.ids(BUFFER_KIND), PROTOCOL: PROTOCOLS, MATERIAL: CATALOGUE.ids(MATERIAL_KIND)})
    for column, ids in CATEGORIES.items():
        _CATEGORY_IDS[column] = np.array(ids, dtype=object)
        _CATEGORY_CODES[column] = {name: code for code, name in enumerate(ids)}


_refresh_categories()
CATALOGUE.on_change(_refresh_categories)


def category_codes(column: str, ids: Any) -> np.ndarray:
    """Integer codes (index into :data:`CATEGORIES` ``[column]``) of canonical ids; aliases are canonicalised.

    Raises :class:`InputError` (the canonicaliser's message) for a value that is not an id or alias.
    """
    codes = _CATEGORY_CODES[column]
    values = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    try:
        return np.array([codes[v] for v in values], dtype=np.intp)
    except (KeyError, TypeError):
        return np.array([codes[_CANONICAL[column](v)] for v in values], dtype=np.intp)


@dataclass(frozen=True)
class DesignBatch:
    """Canonical, validated designs as arrays: what :class:`Surrogate` and the families' fast path compute on.

    ``numbers`` maps numeric design columns to float64 arrays (``anneal_temp_c`` and ``test_temp_c`` in °C,
    ``c_rate`` in C, ``cycles`` as whole numbers); ``codes`` maps ``buffer`` and ``protocol`` to integer
    indices into :data:`CATEGORIES`. Every array has one entry per design; a batch may hold only some
    columns (a target's features). Build one with :func:`design_batch` (validates raw designs) or
    :meth:`from_frame` (an already canonical frame).
    """

    numbers: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]

    def __len__(self) -> int:
        for values in self.numbers.values():
            return len(values)
        for values in self.codes.values():
            return len(values)
        return 0

    @property
    def columns(self) -> tuple[str, ...]:
        """The design columns this batch holds, in contract order."""
        return tuple(c for c in BATCH_FIELDS if c in self.numbers or c in self.codes)

    def ids(self, column: str) -> np.ndarray:
        """Canonical ids of a categorical column (object array)."""
        return _CATEGORY_IDS[column][self.codes[column]]

    def values(self, column: str) -> np.ndarray:
        """A column as an array: floats for numeric columns, canonical ids for categorical ones."""
        return self.ids(column) if column in CATEGORIES else self.numbers[column]

    def frame(self, columns: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
        """The designs as a canonical design frame (``columns``: default every column held, contract order)."""
        names = self.columns if columns is None else columns
        return pd.DataFrame({c: self.values(c) for c in names})

    def take(self, rows: np.ndarray) -> DesignBatch:
        """The designs at ``rows`` (positions or a boolean mask)."""
        return DesignBatch({c: v[rows] for c, v in self.numbers.items()}, {c: v[rows] for c, v in self.codes.items()})

    def with_codes(self, **codes: int) -> DesignBatch:
        """The same designs with categorical columns set to one code each (e.g. ``buffer=2``)."""
        n = len(self)
        return DesignBatch(
            dict(self.numbers), {**self.codes, **{c: np.full(n, code, dtype=np.intp) for c, code in codes.items()}}
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> DesignBatch:
        """The design columns of an already valid frame (categorical values canonical ids or aliases)."""
        numbers, codes = {}, {}
        for column in BATCH_FIELDS:
            if column not in frame.columns:
                continue
            if column in CATEGORIES:
                codes[column] = category_codes(column, frame[column].to_numpy(dtype=object))
            else:
                numbers[column] = frame[column].to_numpy(dtype=float, na_value=np.nan)
        if MATERIAL not in codes:  # optional: the paper's LLTO film
            codes[MATERIAL] = np.full(len(frame), _CATEGORY_CODES[MATERIAL][DEFAULT_MATERIAL], dtype=np.intp)
        return cls(numbers, codes)

    @classmethod
    def concat(cls, batches: list[DesignBatch]) -> DesignBatch:
        """One batch of the designs of ``batches``, in order (they must hold the same columns)."""
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        return cls(
            {c: np.concatenate([b.numbers[c] for b in batches]) for c in first.numbers},
            {c: np.concatenate([b.codes[c] for b in batches]) for c in first.codes},
        )


_SMALL_FRAME = 32
"""Frames of at most this many designs are read row-wise (``to_numpy(object)``), larger ones column by column."""


def _raw_columns(designs: Any) -> tuple[int, dict[str, Any]]:
    """(number of designs, design column → raw values: a pandas Series or a list) of any accepted input."""
    if isinstance(designs, pd.DataFrame):
        if designs.empty:
            return 0, {}
        if len(designs) <= _SMALL_FRAME:  # one conversion is cheaper than a Series per column for a few rows
            position = {name: i for i, name in reversed(list(enumerate(designs.columns)))}
            values = designs.to_numpy(dtype=object)
            return len(designs), {c: values[:, position[c]].tolist() for c in BATCH_FIELDS if c in position}
        return len(designs), {c: designs[c] for c in BATCH_FIELDS if c in designs.columns}
    if isinstance(designs, Mapping):
        frame = {c: list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else [v] for c, v in designs.items()}
        lengths = {len(v) for v in frame.values()}
        if len(lengths) > 1:
            raise InputError("designs: every column must have one value per design")
        n = lengths.pop() if lengths else 0
        return (n, {c: frame[c] for c in BATCH_FIELDS if c in frame}) if n else (0, {})
    if isinstance(designs, (list, tuple)) and all(isinstance(d, Mapping) for d in designs):
        present = {key for d in designs for key in d}
        if not present:
            return 0, {}
        return len(designs), {c: [d.get(c) for d in designs] for c in BATCH_FIELDS if c in present}
    return _raw_columns(pd.DataFrame(designs))


def _is_missing(values: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(values), dtype=bool)


def _as_numbers(raw: Any) -> tuple[np.ndarray, np.ndarray]:
    """(float values, missing mask) of a raw column; non-numbers become NaN but are not 'missing'."""
    if (
        isinstance(raw, pd.Series)
        and pd.api.types.is_numeric_dtype(raw.dtype)
        and not pd.api.types.is_bool_dtype(raw.dtype)
    ):
        numbers = raw.to_numpy(dtype=float, na_value=np.nan)
        return numbers, np.isnan(numbers)
    values = raw.tolist() if isinstance(raw, pd.Series) else raw
    if all(type(v) is float or type(v) is int for v in values):  # noqa: E721 (bool is not a number here)
        numbers = np.array(values, dtype=float)
        return numbers, np.isnan(numbers)
    objects = np.array(values, dtype=object)
    missing = _is_missing(objects)
    numbers = pd.to_numeric(pd.Series(objects, dtype=object), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers, missing


def _narrowest_range(column: str) -> tuple[float, float]:
    """The intersection of every declared material's plausible range of a temperature column (°C)."""
    parameter = parameters.NUMERIC_PARAMETERS[column]
    low, high = parameter.low, parameter.high
    for entry in CATALOGUE.entries(MATERIAL_KIND):
        bounds = getattr(entry, column)
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def _suspect(column: str, values: np.ndarray) -> np.ndarray:
    """Finite values that :func:`surrogate.parameters.value_problem` may reject (a cheap superset of its checks).

    Only these are passed to ``value_problem`` (which words the message); the rest are certainly fine.
    A test checks the superset property against ``value_problem`` itself.
    """
    if column in (ANNEAL_TEMP_C, TEST_TEMP_C):
        low, high = _narrowest_range(column)
        offset = values + parameters.ABSOLUTE_ZERO_C
        kelvin_like = (values >= -parameters.ABSOLUTE_ZERO_C - 1e-6) & (np.abs(offset - np.round(offset)) < 1e-5)
        return ~((values >= low) & (values <= high)) | kelvin_like | (values >= 273.0)
    if column in parameters.NUMERIC_PARAMETERS:
        parameter = parameters.NUMERIC_PARAMETERS[column]
        inside = (values > parameter.low) if parameter.low_open else (values >= parameter.low)
        inside &= values <= parameter.high
        if parameter.kind == "int":
            inside &= values == np.round(values)
        return ~inside
    return np.ones(values.shape, dtype=bool)


def _category_column(column: str, values: Any, n: int, problems: list[tuple[int, str]]) -> np.ndarray:
    """Codes of a categorical column (absent or blank: its default; unknown: -1 with a problem)."""
    default = {PROTOCOL: DEFAULT_PROTOCOL, MATERIAL: DEFAULT_MATERIAL}.get(column)
    known = _CATEGORY_CODES[column]
    if values is None:
        return np.full(n, known[default], dtype=np.intp)
    objects = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else np.array(values, dtype=object)
    if default is not None:
        objects = np.where(_is_missing(objects), default, objects)
    try:
        return np.array([known[v] for v in objects.tolist()], dtype=np.intp)
    except (KeyError, TypeError):
        pass
    mapping: dict[Any, int] = {}
    for value in pd.unique(objects):
        try:
            mapping[value] = known[_CANONICAL[column](value)]
        except InputError as exc:
            mapping[value] = -1
            problems.extend((i, f"{column}: {exc}") for i in np.flatnonzero(objects == value))
    return np.array([mapping[v] for v in objects.tolist()], dtype=np.intp)


def _numeric_column(
    column: str, raw: Any, default: float | None, material_ids: np.ndarray, problems: list[tuple[int, str]]
) -> np.ndarray:
    """One numeric design column as floats (blanks take ``default`` when there is one); its problems are added
    to ``problems`` as (design index, reason), bounds checked per material by :func:`parameters.value_problem`."""
    n = len(material_ids)
    try:
        values, absent = _as_numbers(raw)
    except OverflowError:
        problems.append((0, f"{column}: a value is far too large to be a number of {column}"))
        return np.full(n, np.nan)
    if default is not None and absent.any():
        values = np.where(absent, default, values)
        absent = np.zeros(n, dtype=bool)
    finite = np.isfinite(values)
    if not finite.all():
        shown = raw.tolist() if isinstance(raw, pd.Series) else raw
        for i in np.flatnonzero(np.isnan(values)):
            what = "missing (required)" if absent[i] else f"{shown[i]!r} is not a number"
            problems.append((i, f"{column}: {what}"))
        for i in np.flatnonzero(np.isinf(values)):
            problems.append((i, f"{column}: must be finite, got {values[i]}"))
    suspect = finite & _suspect(column, np.where(finite, values, 0.0))
    if suspect.any():
        pairs = dict.fromkeys(zip(values[suspect].tolist(), material_ids[suspect].tolist(), strict=True))
        for value, material in pairs:
            why = parameters.value_problem(column, float(value), material=material)
            if why:
                rows = np.flatnonzero((values == value) & (material_ids == material))
                problems += [(i, f"{column}: {why}") for i in rows]
    return values


def design_batch(designs: pd.DataFrame | list[dict[str, Any]] | Mapping[str, Any]) -> DesignBatch:
    """Validated canonical designs as arrays: every contract field present, defaults filled, ids canonical.

    ``designs``: a frame, a list of design dicts, or a dict of columns. Raises :class:`InputError` naming
    the design (1-based), the field and the reason for anything that is not a valid design: unknown
    buffer, material or protocol, a missing or non-numeric value, NaN or infinity, a number outside its
    declared bounds (temperatures: the plausible range of the design's material; c_rate in (0, 1000] C;
    cycles a whole number in [1, 10⁶]) (at most 20 problems are listed). ``material`` is optional
    (default: the paper's LLTO film).
    """
    n, raw = _raw_columns(designs)
    if n == 0:
        raise InputError("designs: at least one design is required")
    missing = [c for c in (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C) if c not in raw]
    if missing:
        raise InputError("; ".join(f"{c}: missing (required)" for c in missing))
    problems: list[tuple[int, str]] = []
    codes: dict[str, np.ndarray] = {
        column: _category_column(column, raw.get(column), n, problems) for column in (BUFFER, PROTOCOL, MATERIAL)
    }
    material_ids = _CATEGORY_IDS[MATERIAL][np.maximum(codes[MATERIAL], 0)]
    defaults = {C_RATE: DEFAULT_C_RATE, CYCLES: float(DEFAULT_CYCLES)}
    numbers: dict[str, np.ndarray] = {}
    for column in _NUMERIC_FIELDS:
        if column not in raw:
            numbers[column] = np.full(n, defaults[column])
        else:
            numbers[column] = _numeric_column(column, raw[column], defaults.get(column), material_ids, problems)
    if problems:
        problems.sort(key=lambda p: p[0])
        shown = [f"design {i + 1}: {why}" for i, why in problems[:20]]
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise InputError("; ".join(shown) + more)
    return DesignBatch(numbers, codes)


def design_frame(designs: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """Canonical design frame: every contract field present, defaults filled, buffer/protocol canonical.

    The frame form of :func:`design_batch` (same validation and errors), columns in contract order.
    """
    return design_batch(designs).frame()


DESCRIPTOR_NOVELTY_THRESHOLD = 1.0
"""A buffer or material whose catalogue descriptors lie at least this far from every trained one is *novel*: its
predictions are flagged as extrapolation with the distance and the nearest trained entry, in every family.

Distance: Euclidean over :data:`surrogate.materials.DESCRIPTOR_FEATURES` in their own units (each flag 0/1;
``log10_thickness_nm`` and ``log10_ionic_s_cm`` in decades), so one changed flag (another class, a layer that
does or does not conduct Li), a tenfold thickness or a tenfold conductivity reaches the threshold. The
descriptors say nothing about composition beyond these: a chemistry with the same descriptors is not novel
by this measure (its ``material`` is still flagged when the model has no data for it)."""

_DESCRIPTOR_KINDS = {BUFFER: BUFFER_KIND, MATERIAL: MATERIAL_KIND}


def descriptor_novelty(column: str, ids: tuple[str, ...], trained: dict[str, tuple[float, ...]]) -> list[str | None]:
    """Per id (``buffer`` or ``material`` catalogue id): why it is novel in descriptor space, or None.

    ``trained``: id → descriptor vector of the entries the model was trained on (what it carries).
    Novel: distance to the nearest trained vector ≥ :data:`DESCRIPTOR_NOVELTY_THRESHOLD`.
    """
    if not trained:
        return [None] * len(ids)
    names = list(trained)
    table = np.array([trained[n] for n in names], dtype=float)
    out: list[str | None] = []
    for entry_id in ids:
        vector = trained.get(entry_id)
        if vector is None:
            vector = CATALOGUE.get(entry_id, _DESCRIPTOR_KINDS[column]).descriptors.vector()
        distances = np.sqrt(((table - np.asarray(vector, dtype=float)) ** 2).sum(axis=1))
        nearest = int(np.argmin(distances))
        if distances[nearest] >= DESCRIPTOR_NOVELTY_THRESHOLD:
            out.append(
                f"{column}={entry_id}: descriptors unlike every trained {column} (distance {distances[nearest]:.2f} "
                f"to the nearest, {names[nearest]}; novel from {DESCRIPTOR_NOVELTY_THRESHOLD:g}, "
                f"surrogate.models.base.DESCRIPTOR_NOVELTY_THRESHOLD)"
            )
        else:
            out.append(None)
    return out


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
    materials: tuple[str, ...] | None = None
    """Materials in the training data (None: a domain saved before materials existed, the LLTO film only).
    A design of another material is outside the domain."""
    descriptors: dict[str, dict[str, tuple[float, ...]]] | None = None
    """``buffer`` / ``material`` → trained id → its catalogue descriptor vector at training time (carried with
    the model; None: a domain saved before descriptor novelty, which then checks none)."""

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> TrainingDomain:
        materials = tuple(sorted(set(X[MATERIAL].astype(str)))) if MATERIAL in X.columns else (DEFAULT_MATERIAL,)
        if MATERIAL in X.columns and len(materials) > 1:  # ranges per material too
            categorical = tuple(c for c in X.columns if c in (MATERIAL, BUFFER, PROTOCOL))
        else:
            categorical = tuple(c for c in X.columns if c in (BUFFER, PROTOCOL))
            X = X.drop(columns=[MATERIAL], errors="ignore")
        numeric = [c for c in X.columns if c not in categorical]
        if categorical:
            keys = X[categorical[0]].astype(str)
            for column in categorical[1:]:
                keys = keys + "|" + X[column].astype(str)
            keys = keys.to_numpy(dtype=object)
        else:
            keys = np.full(len(X), "", dtype=object)
        regions = {}
        for key, part in X.groupby(keys, sort=True):
            ranges = {c: (float(part[c].astype(float).min()), float(part[c].astype(float).max())) for c in numeric}
            regions[tuple(key.split("|")) if categorical else ()] = ranges
        return cls(categorical, regions, materials, _trained_descriptors(X, materials))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lookup"}  # the lookup is derived, never pickled

    def _tables(self) -> dict[str, Any]:
        """Arrays for the vectorised check, derived from ``regions`` once per process (not pickled).

        ``region``: region number per combination of category codes (-1: never seen); per region and
        numeric column the bounds with the 1e-9 tolerance applied, and the bounds and label for messages.
        """
        tables = self.__dict__.get("_lookup")
        if tables is not None and tables["region"].shape == tuple(len(CATEGORIES[c]) for c in self.categorical):
            return tables  # (rebuilt when the catalogue has grown since)
        keys = list(self.regions)
        numeric = tuple(self.regions[keys[0]]) if keys else ()
        region = np.full(tuple(len(CATEGORIES[c]) for c in self.categorical), -1, dtype=np.intp)
        for number, key in enumerate(keys):
            position = tuple(_CATEGORY_CODES[c].get(v, -1) for c, v in zip(self.categorical, key, strict=True))
            if all(p >= 0 for p in position):  # a non-canonical region key can never match a canonical design
                region[position] = number
        bounds = np.array([[self.regions[k][c] for c in numeric] for k in keys], dtype=float).reshape(
            len(keys), len(numeric), 2
        )
        tables = {
            "numeric": numeric,
            "region": region,
            "low": bounds[:, :, 0] - 1e-9,
            "high": bounds[:, :, 1] + 1e-9,
            "bounds": bounds,
            "where": [f" (for {', '.join(k)})" if k else "" for k in keys],
        }
        self.__dict__["_lookup"] = tables
        return tables

    def outside(self, designs: DesignBatch) -> dict[int, list[str]]:
        """Row → why it lies outside this domain, for the rows that do (empty dict: every row inside)."""
        tables = self._tables()
        n = len(designs)
        foreign = self._foreign_materials(designs)
        if self.categorical:
            region = tables["region"][tuple(designs.codes[c] for c in self.categorical)]
        else:
            region = np.full(n, 0 if self.regions else -1, dtype=np.intp)
        known = region >= 0
        numeric = tables["numeric"]
        if numeric:
            values = np.column_stack([designs.numbers[c] for c in numeric])
            at = np.where(known, region, 0)
            beyond = ((values < tables["low"][at]) | (values > tables["high"][at])) & known[:, None]
            flagged = ~known | beyond.any(axis=1)
        else:
            flagged = ~known
        if foreign is not None:
            flagged = flagged | foreign
        novel = self._novel(designs)
        for column_reasons in novel.values():
            flagged = flagged | np.array([r is not None for r in column_reasons], dtype=bool)
        if not flagged.any():
            return {}
        out: dict[int, list[str]] = {}
        for i in np.flatnonzero(flagged).tolist():
            novelty = [reasons[i] for reasons in novel.values() if reasons[i] is not None]
            if foreign is not None and foreign[i]:
                material = CATEGORIES[MATERIAL][designs.codes[MATERIAL][i]]
                out[i] = [
                    f"material={material}: no training data for this material (trained on {', '.join(getattr(self, 'materials', None) or (DEFAULT_MATERIAL,))})"
                ] + novelty
                continue
            if known[i] and not (numeric and beyond[i].any()):  # inside the ranges, novel descriptors only
                out[i] = novelty
                continue
            if not known[i]:
                combo = ", ".join(f"{c}={CATEGORIES[c][designs.codes[c][i]]}" for c in self.categorical)
                out[i] = [f"{combo}: no training data for this combination", *novelty]
                continue
            r = region[i]
            out[i] = [
                f"{column}={values[i, j]:g} outside trained range "
                f"[{tables['bounds'][r, j, 0]:g}, {tables['bounds'][r, j, 1]:g}]{tables['where'][r]}"
                for j, column in enumerate(numeric)
                if beyond[i, j]
            ] + novelty
        return out

    def _novel(self, designs: DesignBatch) -> dict[str, list[str | None]]:
        """Column → per design, why its buffer / material is novel in descriptor space (None: it is not)."""
        trained = getattr(self, "descriptors", None) or {}
        out: dict[str, list[str | None]] = {}
        for column, vectors in trained.items():
            codes = designs.codes.get(column)
            if codes is None or not vectors:
                continue
            unique, inverse = np.unique(codes, return_inverse=True)
            reasons = descriptor_novelty(column, tuple(CATEGORIES[column][c] for c in unique), vectors)
            if any(r is not None for r in reasons):
                out[column] = [reasons[j] for j in inverse.ravel()]
        return out

    def _foreign_materials(self, designs: DesignBatch) -> np.ndarray | None:
        """Rows whose material the training data did not have (None: every row's material was trained)."""
        materials = getattr(self, "materials", None) or (DEFAULT_MATERIAL,)
        codes = designs.codes.get(MATERIAL)
        if codes is None:
            return None if DEFAULT_MATERIAL in materials else np.ones(len(designs), dtype=bool)
        known = np.array([CATEGORIES[MATERIAL].index(m) for m in materials if m in CATEGORIES[MATERIAL]])
        foreign = ~np.isin(codes, known)
        return foreign if foreign.any() else None

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("descriptors", None)  # a domain pickled before descriptor novelty
        self.__dict__.update(state)

    def reasons(self, X: pd.DataFrame) -> list[list[str]]:
        """For each row of a canonical design frame, why it lies outside this domain (empty when inside)."""
        found = self.outside(DesignBatch.from_frame(X))
        return [found.get(i, []) for i in range(len(X))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "materials": list(getattr(self, "materials", None) or (DEFAULT_MATERIAL,)),
            "categorical": list(self.categorical),
            "regions": {"|".join(k) or "*": {c: list(r) for c, r in v.items()} for k, v in self.regions.items()},
            "descriptors": {
                c: {i: list(v) for i, v in d.items()} for c, d in (getattr(self, "descriptors", None) or {}).items()
            },
        }


def _trained_descriptors(X: pd.DataFrame, materials: tuple[str, ...]) -> dict[str, dict[str, tuple[float, ...]]]:
    """``buffer`` / ``material`` → trained id → descriptor vector (:data:`DESCRIPTOR_FEATURES`) from the catalogue."""
    ids = {MATERIAL: materials}
    if BUFFER in X.columns:
        ids[BUFFER] = tuple(sorted(set(X[BUFFER].astype(str))))
    out: dict[str, dict[str, tuple[float, ...]]] = {}
    for column, entries in ids.items():
        kind = _DESCRIPTOR_KINDS[column]
        out[column] = {
            i: tuple(CATALOGUE.get(i, kind).descriptors.vector().tolist()) for i in entries if (kind, i) in CATALOGUE
        }
    return out


@lru_cache(maxsize=64)
def interval_z(level: float) -> float:
    """Standard-normal quantile of a central ``level`` interval (0.9 → 1.645); InputError outside (0, 1)."""
    level = parameters.check_level(level)
    return float(norm.ppf(0.5 + level / 2.0))


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
        return tuple(t for t in target_names() if t in self.models)

    def _natural(self, target: str, designs: DesignBatch) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of ``target`` in its natural space: the family's array path when it has one."""
        model = self.models[target]
        if hasattr(model, "predict_batch"):
            mean, std = model.predict_batch(designs, return_std=True)
        else:
            mean, std = model.predict(designs.frame(FEATURES[target]), return_std=True)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def _interval(self, target: str, designs: DesignBatch, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, lower, upper of ``target`` in contract units; exactly 1 at the target's reference point."""
        mean, std = self._natural(target, designs)
        space = TARGET_SPACES[target]
        parts = (space.inverse(mean), space.inverse(mean - z * std), space.inverse(mean + z * std))
        reference = _reference_rows(target, designs)
        if reference is not None and reference.any():
            for part in parts:
                part[reference] = 1.0
        return parts

    def predict_quantiles(
        self, target: str, designs: pd.DataFrame | DesignBatch, probabilities: np.ndarray
    ) -> np.ndarray:
        """Predictive quantiles of ``target`` in contract units, shape (designs, probabilities).

        ``probabilities`` in (0, 1). The predictive distribution is normal in the target's modelling space
        (log10 σ, logit retention), so its quantiles map exactly through the inverse transform; at the
        target's reference point every quantile is 1.
        """
        batch = designs if isinstance(designs, DesignBatch) else DesignBatch.from_frame(designs)
        mean, std = self._natural(target, batch)
        z = norm.ppf(np.asarray(probabilities, dtype=float))
        quantiles = TARGET_SPACES[target].inverse(mean[:, None] + std[:, None] * z[None, :])
        reference = _reference_rows(target, batch)
        if reference is not None and reference.any():
            quantiles[reference] = 1.0
        return quantiles

    def predict_target(self, target: str, designs: pd.DataFrame, level: float = DEFAULT_LEVEL) -> pd.DataFrame:
        """Mean, lower, upper (contract units) of one target for canonical designs (a frame with its features)."""
        z = interval_z(level)
        mean, lower, upper = self._interval(target, DesignBatch.from_frame(designs), z)
        return pd.DataFrame({"mean": mean, "lower": lower, "upper": upper})

    def predict_columns(self, designs: DesignBatch, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
        """:meth:`predict` on a validated :class:`DesignBatch`, as columns (arrays; reasons a list of lists).

        The fast path (no pandas): the service calls this on designs its schema has validated.
        """
        z = interval_z(level)
        n = len(designs)
        out: dict[str, Any] = {}
        reasons: dict[int, list[str]] = {}
        for target in self.targets:
            mean, lower, upper = self._interval(target, designs, z)
            out[f"{target}_mean"], out[f"{target}_lower"], out[f"{target}_upper"] = mean, lower, upper
            found = self.domains[target].outside(designs)
            if found:
                reference = _reference_rows(target, designs)
                for i, why in found.items():
                    if reference is None or not reference[i]:
                        reasons.setdefault(i, []).extend(f"{target}: {w}" for w in why)
        flags = np.zeros(n, dtype=bool)
        rows = [i for i, why in reasons.items() if why]
        flags[rows] = True
        out["extrapolation"] = flags
        out["extrapolation_reasons"] = [reasons.get(i, []) for i in range(n)] if reasons else [[] for _ in range(n)]
        return out

    def predict(
        self, designs: pd.DataFrame | list[dict[str, Any]] | DesignBatch, level: float = DEFAULT_LEVEL
    ) -> pd.DataFrame:
        """Predictions for designs: ``<target>_mean``, ``_lower``, ``_upper`` per target, ``extrapolation``.

        The mean of a retention is the back-transformed natural-space mean (the
        median in contract units); lower/upper bound a central ``level`` interval.
        ``extrapolation_reasons`` lists, per design, why it lies outside the data.
        Raw designs are validated (:func:`design_batch`); a :class:`DesignBatch` is taken as valid.
        """
        batch = designs if isinstance(designs, DesignBatch) else design_batch(designs)
        return pd.DataFrame(self.predict_columns(batch, level), copy=False)

    def predict_means(self, designs: pd.DataFrame) -> pd.DataFrame:
        """Target means only, in contract units (the facts check's predictor interface)."""
        batch = design_batch(designs)
        z = interval_z(DEFAULT_LEVEL)
        return pd.DataFrame({t: self._interval(t, batch, z)[0] for t in self.targets}, index=designs.index)


def _reference_rows(target: str, designs: DesignBatch) -> np.ndarray | None:
    """Rows where ``target`` is 1 by definition (None: the target has no reference point)."""
    return get_target(target).reference_rows(designs.numbers)
