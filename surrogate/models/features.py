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
``buffer``             one-hot over the buffers *learned at fit time*, or (``encoding="descriptors"``)
                       the catalogue descriptors of the buffer (class, Li conduction, thickness,
                       ionic conductivity, electronic insulation: :data:`surrogate.materials.DESCRIPTOR_FEATURES`),
                       or (``encoding="hybrid"``) both
``protocol``           ``protocol_long`` = 1 for the ``long`` protocol, else 0
``material``           (optional column, default the paper's LLTO film) nothing when the training data has
                       one material; else one-hot over the learned materials, or their descriptors
=====================  ==========================================================

Estimators learn their vocabulary at fit time, as scikit-learn's ``OneHotEncoder`` does: a fitted family
estimator holds a :class:`Vocabulary` (``vocabulary_``; ``categories_`` is its category tuples) with the
categories it saw, the encoding and the descriptor table it used, and the catalogue entries of any
non-default material, which it declares again when it is unpickled (so ``predict`` and ``serve`` need no
materials file). With one-hot encoding a buffer or material the model never saw is an
:class:`~surrogate.errors.InputError` naming the ones it knows; with descriptor encoding it is predicted
from its descriptors (and the training domain flags it as extrapolation). An estimator fitted before this
change has no vocabulary and encodes with :data:`LEGACY_VOCABULARY` (one-hot over the paper's four
buffers), which is what it was fitted with.

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

from dataclasses import asdict, dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CYCLES,
    DEFAULT_MATERIAL,
    MATERIAL,
    PROTOCOL,
    PROTOCOLS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_material,
    canonical_protocol,
)
from surrogate.errors import InputError
from surrogate.materials import (
    BUFFER_KIND,
    CATALOGUE,
    DEFAULT_BUFFERS,
    DEFAULT_MATERIALS,
    DESCRIPTOR_FEATURES,
    MATERIAL_KIND,
    Material,
)
from surrogate.models.base import CATEGORIES, FEATURES, DesignBatch
from surrogate.physics import ZERO_C_K
from surrogate.targets import PRIOR_SD, get_target

ENCODINGS: tuple[str, ...] = ("onehot", "descriptors", "hybrid")
"""How a family encodes ``buffer`` (and ``material``): one-hot over learned ids, catalogue descriptors, or
both (``hybrid``: the descriptors plus a one-hot identity column per learned id, all zero for an unseen id, so
a buffer is predicted from similar ones before it has data and its own data can override the similarity)."""
CATEGORICAL_COLUMNS: tuple[str, ...] = (BUFFER, PROTOCOL, MATERIAL)
"""The categorical design columns (everything else is a number)."""
_KIND = {BUFFER: BUFFER_KIND, MATERIAL: MATERIAL_KIND}


HANDLE_UNKNOWN: tuple[str, ...] = ("population", "error")
"""What every family does with a buffer outside its vocabulary (one it was not trained on and was not given),
its ``handle_unknown`` parameter (default ``population``, the same in every family):

* ``population``: the buffer is predicted as a new member of the population of buffers. ``physics_gp`` and
  ``physics``: the group's law parameters with the between-buffer spread (partial pooling,
  :attr:`surrogate.laws.Law.group_scales`); a one-hot family (gp, trees, torch with ``encoding="onehot"``): the
  mixture of its predictions for every trained buffer at the same design (mean of the means; variance the
  mean variance plus the variance of the means); with ``encoding="descriptors"`` or ``"hybrid"`` the buffer's
  descriptors are its encoding, so it is predicted from them. Either way the training domain flags the design
  as extrapolation (no data for the buffer; and when its descriptors are unlike the trained buffers', that too).
* ``error``: :class:`~surrogate.errors.InputError` naming the buffers the model knows (scikit-learn's
  ``OneHotEncoder(handle_unknown="error")``).

A material the model has no data for is refused by the ML families whatever the policy (one trained material
is no population)."""

PARAMETER_CONSTRAINTS_COMMON: dict[str, list[Any]] = {
    "target": [str],
    "encoding": [StrOptions(set(("onehot", "descriptors", "hybrid")))],
    "handle_unknown": [StrOptions(set(HANDLE_UNKNOWN))],
    "random_state": [Interval(Integral, 0, None, closed="left")],
}
"""``_parameter_constraints`` entries the ML families share (scikit-learn's declarative parameter validation)."""


def validate_params(estimator: BaseEstimator) -> None:
    """scikit-learn's ``_validate_params`` against the estimator's ``_parameter_constraints``; a violation is an
    :class:`~surrogate.errors.InputError` (exit 2 on the CLI, 4xx over HTTP) naming the parameter."""
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise InputError(str(exc)) from None


def predict_with_unknown_buffers(
    estimator: Any, designs: DesignBatch, return_std: bool, predict: Any
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``predict(designs, return_std)`` with the :data:`HANDLE_UNKNOWN` policy for buffers a one-hot vocabulary
    lacks: ``population`` predicts such rows under every trained buffer and returns the mixture's moments."""
    vocabulary = vocabulary_of(estimator)
    learned = vocabulary.categories.get(BUFFER, ())
    if BUFFER not in designs.codes or vocabulary.encoding != "onehot" or len(learned) < 2:
        return predict(designs, return_std)
    position, _ = vocabulary._table(BUFFER)
    unknown = position[designs.codes[BUFFER]] < 0
    if not unknown.any() or getattr(estimator, "handle_unknown", "population") == "error":
        return predict(designs, return_std)  # (the encoder refuses an unknown buffer, naming the known ones)
    means = np.zeros(len(designs))
    variances = np.zeros(len(designs))
    known = ~unknown
    if known.any():
        answer = predict(designs.take(known), True)
        means[known], variances[known] = answer[0], np.asarray(answer[1]) ** 2
    rows = designs.take(unknown)
    members = [predict(rows.with_codes(buffer=CATEGORIES[BUFFER].index(b)), True) for b in learned]
    member_means = np.stack([np.asarray(m, float) for m, _ in members])
    member_variances = np.stack([np.asarray(s, float) ** 2 for _, s in members])
    means[unknown] = member_means.mean(axis=0)
    variances[unknown] = member_variances.mean(axis=0) + member_means.var(axis=0, ddof=1)
    return (means, np.sqrt(variances)) if return_std else means


def check_target(target: str) -> str:
    """Return ``target`` if it is a declared target, else raise :class:`InputError` naming the allowed ones."""
    return get_target(target).name


def check_encoding(encoding: str) -> str:
    """``encoding`` if it is one of :data:`ENCODINGS`, else :class:`InputError`."""
    if encoding not in ENCODINGS:
        raise InputError(f"encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")
    return encoding


# ------------------------------------------------------------------ the learned vocabulary
@dataclass
class Vocabulary:
    """What a fitted estimator learned of the categorical columns (see the module docstring).

    ``categories``: ``buffer`` and ``material`` ids seen in training (in catalogue order); ``encoding``;
    ``descriptors``: column → id → the descriptor vector used at fit time; ``entries``: the catalogue
    entries of learned ids that are not packaged defaults (declared again on unpickling).
    """

    categories: dict[str, tuple[str, ...]]
    encoding: str = "onehot"
    descriptors: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    entries: tuple[Material, ...] = ()

    @classmethod
    def learn(cls, frame: pd.DataFrame, encoding: str = "onehot") -> Vocabulary:
        """The vocabulary of a canonical feature frame (:func:`canonical_features`)."""
        check_encoding(encoding)
        categories: dict[str, tuple[str, ...]] = {}
        descriptors: dict[str, dict[str, tuple[float, ...]]] = {}
        entries: list[Material] = []
        for column in (BUFFER, MATERIAL):
            if column not in frame.columns:
                continue
            seen = set(frame[column].astype(str))
            ids = tuple(i for i in CATALOGUE.ids(_KIND[column]) if i in seen)
            categories[column] = ids
            descriptors[column] = {i: tuple(CATALOGUE.get(i, _KIND[column]).descriptors.vector().tolist()) for i in ids}
            defaults = set(DEFAULT_BUFFERS if column == BUFFER else DEFAULT_MATERIALS)
            entries += [CATALOGUE.get(i, _KIND[column]) for i in ids if i not in defaults]
        return cls(categories, encoding, descriptors, tuple(entries))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        CATALOGUE.add(self.entries)  # a model carries its materials: declare them in this process

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def _uses(self, column: str, target: str) -> bool:
        if column == MATERIAL:
            return len(self.categories.get(MATERIAL, ())) > 1
        return column in FEATURES[target]

    def feature_names(self, target: str) -> list[str]:
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
            elif column == PROTOCOL:
                names.append("protocol_long")
            elif column == BUFFER:
                names += self._category_names(BUFFER)
            else:
                names.append(column)
        if self._uses(MATERIAL, target):
            names += self._category_names(MATERIAL)
        return names

    def _category_names(self, column: str) -> list[str]:
        descriptors = [f"{column}_{d}" for d in DESCRIPTOR_FEATURES]
        identity = [f"{column}_{i}" for i in self.categories.get(column, ())]
        return {"descriptors": descriptors, "hybrid": descriptors + identity}.get(self.encoding, identity)

    def _table(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(position of each catalogue code in the learned ids or -1, matrix row of each code): per version."""
        cache = self.__dict__.setdefault("_tables", {})
        key = (column, CATALOGUE.version)
        if key not in cache:
            learned = self.categories.get(column, ())
            ids = CATEGORIES[column]
            position = np.array([learned.index(i) if i in learned else -1 for i in ids], dtype=np.intp)
            identity = np.vstack([np.eye(len(learned)), np.zeros((1, len(learned)))])[position]
            if self.encoding in ("descriptors", "hybrid"):
                stored = self.descriptors.get(column, {})
                rows = np.array(
                    [stored.get(i) or CATALOGUE.get(i, _KIND[column]).descriptors.vector() for i in ids], dtype=float
                ).reshape(len(ids), -1)
                if self.encoding == "hybrid":
                    rows = np.hstack([rows, identity])
            else:
                rows = identity
            cache[key] = (position, rows.reshape(len(ids), -1))
        return cache[key]

    def encode_category(self, column: str, codes: np.ndarray) -> np.ndarray:
        """The block of ``column`` for category codes; InputError for an id one-hot cannot encode."""
        position, rows = self._table(column)
        learned = self.categories.get(column, ())
        unknown = position[codes] < 0
        if unknown.any() and (self.encoding == "onehot" or len(learned) < 2):
            names = sorted({CATEGORIES[column][c] for c in codes[unknown]})
            how = (
                "or fit with encoding='descriptors' to predict from its descriptors"
                if self.encoding == "onehot"
                else "a model trained on one material cannot tell how another behaves"
            )
            raise InputError(
                f"{column}: {', '.join(names)} not in this model's training data; it knows "
                f"{', '.join(learned) or 'none'}. Retrain with data for it, {how}"
            )
        return rows[codes]

    def encode(self, designs: DesignBatch, target: str) -> np.ndarray:
        """The feature matrix (designs × :meth:`feature_names`) of ``target`` from validated designs."""
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
                blocks.append(self.encode_category(BUFFER, designs.codes[column]))
            elif column == PROTOCOL:
                blocks.append((designs.codes[column] == _LONG_PROTOCOL).astype(float)[:, None])
            else:
                blocks.append(designs.numbers[column][:, None])
        material_codes = designs.codes.get(MATERIAL)
        if material_codes is not None and MATERIAL in self.categories:
            block = self.encode_category(MATERIAL, material_codes)  # refuses a material never seen
            if self._uses(MATERIAL, target):
                blocks.append(block)
        return np.hstack(blocks)


LEGACY_VOCABULARY = Vocabulary({BUFFER: BUFFERS, MATERIAL: (DEFAULT_MATERIAL,)}, "onehot")
"""The vocabulary of estimators fitted before vocabularies were learned: one-hot over the paper's four buffers."""


def vocabulary_of(estimator: Any) -> Vocabulary:
    """The fitted estimator's vocabulary (the legacy one for an estimator fitted before vocabularies)."""
    return getattr(estimator, "vocabulary_", None) or LEGACY_VOCABULARY


def feature_names(target: str, vocabulary: Vocabulary | None = None) -> list[str]:
    """Names of the encoded feature columns of ``target`` under ``vocabulary`` (default: the legacy one)."""
    return (vocabulary or LEGACY_VOCABULARY).feature_names(target)


def _canonical(values: pd.Series, canon) -> np.ndarray:
    """Canonical ids of a categorical column (maps each distinct value once)."""
    mapping = {}
    for value in pd.unique(values):
        mapping[value] = canon(value)
    return values.map(mapping).to_numpy(dtype=object)


def checked_design_columns(X: pd.DataFrame, columns: list[str] | tuple[str, ...], who: str) -> pd.DataFrame:
    """``X``'s design ``columns`` checked: numbers finite and physical, buffer and protocol ids canonical.

    ``who`` names the model in the message (e.g. "the rate_retention model"). Raises :class:`InputError`
    naming the column and the reason (not a DataFrame, missing column, not a number, non-finite value,
    temperature at or below absolute zero, C-rate or cycles not positive, unknown buffer or protocol).
    Zero rows are allowed here (a physics prior can be fitted to none).
    """
    columns = list(columns)
    if not isinstance(X, pd.DataFrame):
        raise InputError(f"X: a pandas DataFrame with columns {columns} is required, got {type(X).__name__}")
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise InputError(f"X: missing column(s) {missing} ({who} needs {columns})")
    out = pd.DataFrame(index=X.index)
    for column in columns:
        if column == BUFFER:
            out[column] = _canonical(X[column], canonical_buffer)
        elif column == PROTOCOL:
            out[column] = _canonical(X[column], canonical_protocol)
        else:
            try:
                values = pd.to_numeric(X[column], errors="raise").to_numpy(dtype=float)
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{column}: every value must be a number") from None
            if not np.all(np.isfinite(values)):
                raise InputError(f"{column}: every value must be finite (found NaN or infinity)")
            if column in (ANNEAL_TEMP_C, TEST_TEMP_C) and np.any(values <= -ZERO_C_K):
                raise InputError(f"{column}: temperatures in °C must be above absolute zero (-273.15 °C)")
            if column in (C_RATE, CYCLES) and np.any(values <= 0):
                raise InputError(f"{column}: every value must be > 0")
            out[column] = values
    return out


def canonical_features(X: pd.DataFrame, target: str) -> pd.DataFrame:
    """``X`` restricted to the target's design columns plus ``material``, checked: numbers finite, ids canonical.

    ``material`` is optional (absent or blank: the paper's LLTO film). Raises :class:`InputError` naming the
    column and the reason (see :func:`checked_design_columns`; also no rows, unknown material).
    """
    columns = list(FEATURES[check_target(target)])
    out = checked_design_columns(X, columns, f"the {target} model")
    if len(X) == 0:
        raise InputError("X: at least one row is required")
    if MATERIAL in X.columns:
        out[MATERIAL] = _canonical(X[MATERIAL].astype(object).where(X[MATERIAL].notna(), None), canonical_material)
    else:
        out[MATERIAL] = DEFAULT_MATERIAL
    return out


def encode(X: pd.DataFrame, target: str, vocabulary: Vocabulary | None = None) -> np.ndarray:
    """The feature matrix of ``target`` under ``vocabulary`` (default: legacy); ``X`` is checked first."""
    return encode_batch(DesignBatch.from_frame(canonical_features(X, target)), target, vocabulary)


_LONG_PROTOCOL = PROTOCOLS.index("long")


def encode_batch(designs: DesignBatch, target: str, vocabulary: Vocabulary | None = None) -> np.ndarray:
    """The feature matrix of ``target`` from validated designs (no checks), under ``vocabulary`` (default legacy)."""
    return (vocabulary or LEGACY_VOCABULARY).encode(designs, target)


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
    categorical = [c for c in X.columns if c in CATEGORICAL_COLUMNS]
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
PRIOR_BETWEEN_SAMPLE_SD: dict[str, float] = PRIOR_SD
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


RECIPE_COLUMNS: tuple[str, ...] = (ANNEAL_TEMP_C,)
"""Numeric columns whose trained values are a few discrete recipes (films annealed at 25, 300 and 400 °C),
not a sweep: between two of them the data cannot tell what happens (a film may crystallise in the gap)."""

GAP_GAIN = 1.0
"""Variance added between two trained recipes, as a multiple of the training targets' variance.

A design whose recipe value lies between the trained values t₁ < v < t₂ (distances d₁ = v − t₁ and
d₂ = t₂ − v) gets ``GAP_GAIN × var(y_train) × d₁·d₂ / ((d₁ + d₂) × R)`` added, R the width of the trained
range (at least :data:`UNTRAINED_FEATURE_RAMP`): a Brownian bridge, 0 at every trained recipe and largest
in the middle of the widest gap (a quarter of the gap's share of the range). Chosen with
``benchmarks/gap_gain_screen.py`` on the world family: where the film crystallises at 250 °C between the
paper's anneal states (25, 300, 400 °C), fresh films between the states were covered 49 / 76 / 93 / 99 %
at gains 0 / 0.5 / 1 / 2, with intervals 0.15 / 0.29 / 0.38 / 0.51 decades wide; in the paper's world,
already covered 99 % at gain 0, gain 1 widens them from 0.25 to 0.45 decades."""


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
    recipes = {c: sorted(float(v) for v in frame[c].dropna().unique()) for c in numeric if c in RECIPE_COLUMNS}
    return {"columns": list(numeric), "all": bounds(frame), "regions": regions, "recipes": recipes}


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
    * a recipe between two trained ones (an anneal temperature between the films that were made):
      :data:`GAP_GAIN` × the variance of the training targets × the Brownian-bridge share of the gap
      (:meth:`_gap_between_recipes`) — 0 at a trained recipe, largest mid-gap;
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
        numeric = [c for c in frame.columns if c not in CATEGORICAL_COLUMNS]
        categorical = [c for c in frame.columns if c in CATEGORICAL_COLUMNS]
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
        variance += GAP_GAIN * self.target_variance_ * self._gap_between_recipes(designs)
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

    def _gap_between_recipes(self, designs: DesignBatch) -> np.ndarray:
        """Per design: Σ over :data:`RECIPE_COLUMNS` of d₁·d₂ / ((d₁ + d₂) × R), the Brownian-bridge share of
        the gap between the two trained recipes around the design's value (0 at a trained recipe and
        outside the trained range; see :data:`GAP_GAIN`)."""
        recipes = (getattr(self, "trained_ranges_", None) or {}).get("recipes", {})
        share = np.zeros(len(designs))
        for column, levels in recipes.items():
            if len(levels) < 2:
                continue
            levels_array = np.asarray(levels, dtype=float)
            values = designs.numbers[column]
            upper = np.clip(np.searchsorted(levels_array, values, side="right"), 1, len(levels_array) - 1)
            d_low = np.clip(values - levels_array[upper - 1], 0.0, None)
            d_high = np.clip(levels_array[upper] - values, 0.0, None)
            width = max(levels_array[-1] - levels_array[0], UNTRAINED_FEATURE_RAMP[column])
            gap = d_low + d_high
            share += np.where(gap > 0, d_low * d_high / np.where(gap > 0, gap, 1.0) / width, 0.0)
        return share

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
                    lookup[
                        tuple(CATEGORIES[c].index(v) for c, v in zip(self.categorical_columns_, combo, strict=True))
                    ] = i
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
        if lookup is None or lookup[0].shape != tuple(len(CATEGORIES[c]) for c in self.categorical_columns_):
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
        check_is_fitted(self, "estimator_")
        if not return_std:
            return self._estimator_predict(designs)
        mean, std = self._estimator_predict(designs, return_std=True)
        variance = np.asarray(std, float) ** 2 + self.sample_variance_.added_variance
        return mean, np.sqrt(variance + self._extrapolation_variance(designs))

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean (the wrapped estimator's) and, with ``return_std``, the fresh-sample std, natural space."""
        check_is_fitted(self, "estimator_")
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)
