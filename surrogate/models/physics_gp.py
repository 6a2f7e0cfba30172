"""Physics prior + learned discrepancy: a Gaussian process whose mean is a physics law with uncertain parameters.

One estimator, :class:`PhysicsPriorGP`, for one target. It is fitted on and answers in the target's
natural space (log10 σ; logit of a retention, see :data:`~surrogate.models.base.TARGET_SPACES`) and
models it in its law's modelling space (:func:`model_space`: the same, except ln(−ln R) for capacity retention)::

    y(x) = m(x; θ) + g(x) + ε,   θ ~ N(μ₀, diag(s₀²)),   g ~ GP(0, k),   ε ~ N(0, σ² + reading²)

* ``m(x; θ)`` is the target's law (declared once in :mod:`surrogate.laws`, keyed by the target's
  ``physics_law``), with every parameter uncertain around a weakly informative prior centre (the
  law's priors, each with its source; none is read from the virtual lab's calibration):

  - conductivity: Arrhenius in the σ·T form, ln σT = a₂₅ − Ea·(1/kT − 1/kT₂₅); no anneal dependence
    (the discrepancy learns it), or with ``features="narrow"`` a crystallisation step whose size, onset
    and width are fitted;
  - rate retention: the resistance-limited rate law
    (:func:`~surrogate.physics.relative_rate_retention`) with 1/C* = e^(ρ_b + Ea_i·u) + e^(ε + Ea_el·u),
    u = (1/T − 1/T₂₅)/k_B: an interface resistance per buffer (ρ_b = ρ̄ + δ_b, hierarchical) and an
    electrolyte resistance, each Arrhenius; no anneal dependence in the law, unless coupled to a film
    model (``film``: the electrolyte term then follows the film's predicted conductivity);
  - capacity retention: log-space fade, −ln R = e^(γ_b)(1 − e^(−(n−1)/n₀)) + e^(λ_b)(n − 1), with the
    cycle count n Arrhenius-accelerated by temperature (Ea_f) and a long-protocol offset of γ and λ.

* ``g`` is the *discrepancy*: a GP over every input that can matter for the target (anneal and test
  temperature; for cells also the buffer, log C-rate or log cycles and the protocol), so the data can
  override a wrong law. Kernel: s₀²·RBF(x, x') + s_b²·[b = b']·RBF(x, x') (a shared part and a part per
  buffer), one length scale per input (ARD).

The law is linearised about the fitted θ̂, which makes the model a GP with explicit basis functions
(Rasmussen & Williams 2006, §2.7): θ's posterior, the discrepancy and the noise are handled jointly, the
predictive variance is the discrepancy's posterior variance plus the propagated parameter variance
(plus σ² for a fresh measurement). Far from the data the discrepancy's variance returns to s₀² + s_b²
and the parameter variance to what the prior allows, so intervals widen where the data end.

Fitting (``fit(X, y)``): θ̂ by Gauss-Newton on the joint posterior (GP-correlated residuals + prior),
then the kernel hyper-parameters by maximum a posteriori of the marginal likelihood (log-normal
hyper-priors of the law and :data:`~surrogate.laws.LENGTH_PRIORS`; analytic gradients), then θ̂ again. It works from no data at all
(the prior) to thousands of rows: above ``max_points`` rows a deterministic stratified subsample is used.
Rows at the reference point (C-rate ≤ 0.1 C, cycle ≤ 1: retention is 1 by definition) carry no
information and are left out.

Categories: the buffer vocabulary is ``categories[buffer]`` when given (a campaign passes its space's
buffers, so an untried buffer keeps its prior), else learned at fit time (``categories_``); a buffer
outside the vocabulary is predicted as a new member of the population (the mean buffer effect with the
between-buffer prior variance). ``mean="constant"`` replaces the law by a constant: the model-free GP
the campaign hedges with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    TEST_TEMP_C,
    canonical_buffer,
)
from surrogate.errors import InputError
from surrogate.laws import (
    COUPLING_REFERENCE,
    HYPER_BOUNDS,
    LENGTH_PRIORS,
    NARROW_ANNEAL_AMPLITUDE,
    NARROW_ANNEAL_LENGTH,
    NARROW_ANNEAL_LENGTH_BOUNDS,
    RATE,
    SIGMA_SHIFT,
    Law,
    contract_to_model,
    gp_coordinate,
    law_of,
    reading_slope,
)
from surrogate.laws import model_to_contract as space_to_contract
from surrogate.models.base import TARGET_SPACES
from surrogate.models.features import HANDLE_UNKNOWN, checked_design_columns, validate_params
from surrogate.targets import get_target

_JITTER = 1e-8

POOLING_KINDS: tuple[str, ...] = ("partial", "fixed")
"""How the per-buffer parameters are pooled: ``partial`` (each buffer's parameter = the group's + an offset whose
scale τ is learned, :attr:`~surrogate.laws.Law.group_scales`) or ``fixed`` (offsets with the law's fixed prior sd
and no per-buffer activation energies: the model before partial pooling, kept as the benchmarks' baseline)."""

FEATURE_KINDS: tuple[str, ...] = ("smooth", "narrow")
"""The ``features`` a model can see: narrow (anneal windows, a crystallisation step) or smooth only."""

GROUP_SCALE_BOUNDS = (0.01, 5.0)
"""Bounds of a learned group scale τ (the sd of a per-buffer offset, in the parameter's units)."""

CONSTANT_PRIOR_SD = 3.0
"""Prior sd (natural units) of the constant mean of ``mean="constant"`` (centred on 0)."""


@dataclass
class FilmCoupling:
    """A fitted conductivity model (``predict(X)`` → log10 σ) that a rate model's electrolyte term follows.

    :meth:`ln_sigma_shift` is ln σ(anneal, T) − ln σ at :data:`~surrogate.laws.COUPLING_REFERENCE` (the
    posterior mean; its uncertainty is not propagated). Not an estimator, so ``sklearn.clone`` of a rate
    model keeps the fitted film model.
    """

    model: Any

    def ln_sigma_shift(self, anneal_temp_c: np.ndarray, test_temp_c: np.ndarray) -> np.ndarray:
        """ln σ(anneal, T) − ln σ(reference) of the film (anneal and test temperatures in °C)."""
        frame = pd.DataFrame(
            {ANNEAL_TEMP_C: np.asarray(anneal_temp_c, float), TEST_TEMP_C: np.asarray(test_temp_c, float)}
        )
        reference = pd.DataFrame({k: [v] for k, v in COUPLING_REFERENCE.items()})
        shift = np.asarray(self.model.predict(frame), dtype=float) - float(np.asarray(self.model.predict(reference))[0])
        return np.log(10.0) * shift


@dataclass
class _Inputs:
    """Encoded rows: GP coordinates ``z`` (rows × inputs), buffer codes, and the law's columns (rows × 1)."""

    z: np.ndarray
    buffer: np.ndarray
    law: dict[str, np.ndarray]


# ------------------------------------------------------------------ modelling spaces
def model_space(target: str) -> str:
    """Where ``target`` is modelled: its law's :attr:`~surrogate.laws.Law.model_space` (log10, logit, log_loss).

    The fade law is nearly linear in its parameters in ln(−ln R) (ln loss = λ + ln cycles − Ea·u when the
    steady fade dominates), and a cell's multiplicative fade scatter is constant there; a linearised
    posterior in logit space would put impossible mass near retention 1 at strongly accelerated designs.
    :meth:`PhysicsPriorGP.predict` answers in the target's natural space all the same.
    """
    return law_of(target).model_space


def natural_to_model(target: str, natural: np.ndarray) -> np.ndarray:
    """The target's natural-space values (log10 σ, logit R) in its modelling space (:func:`model_space`)."""
    space = model_space(target)
    if space == TARGET_SPACES[target].name:
        return np.asarray(natural, dtype=float)
    return contract_to_model(space, TARGET_SPACES[target].inverse(natural))


def model_to_contract(target: str, values: np.ndarray) -> np.ndarray:
    """Modelling-space values in contract units (S/cm, fractions)."""
    return space_to_contract(model_space(target), values)


def model_to_natural(target: str, values: np.ndarray) -> np.ndarray:
    """Modelling-space values in the target's natural space (log10 σ, logit R)."""
    if model_space(target) == TARGET_SPACES[target].name:
        return np.asarray(values, dtype=float)
    return TARGET_SPACES[target].forward(model_to_contract(target, values))


def reading_variance(target: str, model_values: np.ndarray, reading_sd: float) -> np.ndarray:
    """Variance in the modelling space of a reading error of ``reading_sd`` (contract units) of a retention.

    ``reading_sd`` × |d model / d R| squared: logit → 1/(R(1 − R)), ln loss → 1/(R·|ln R|). It is large
    where a reading says little (a retention near 1 in logit or ln-loss space; a dead cell read as 0).
    A log10-modelled target (conductivity): 0 (its errors are relative, in the noise term).
    """
    space = model_space(target)
    if space == "log10" or reading_sd <= 0:
        return np.zeros(np.shape(model_values))
    retention = model_to_contract(target, model_values)
    return (reading_sd * reading_slope(space, retention)) ** 2


# ------------------------------------------------------------------ the estimator
class PhysicsPriorGP(RegressorMixin, BaseEstimator):
    """Physics law as a prior mean with uncertain parameters + a GP discrepancy (see the module docstring).

    Parameters
    ----------
    target : ``conductivity_s_cm``, ``rate_retention`` or ``capacity_retention``.
    mean : ``"physics"`` (the target's law) or ``"constant"`` (a model-free GP).
    max_points : rows the GP is fitted on at most (a deterministic stratified subsample above that).
    categories : optional ``{"buffer": [ids]}``: the buffer vocabulary; None learns it from the data.
    reading_sd : resolution of a retention reading (fraction): its variance, mapped to the modelling space
        (:func:`reading_variance`), is added to each row's noise, so readings that say little weigh little.
    max_iter : L-BFGS-B iterations of the hyper-parameter fit.
    film : optional :class:`FilmCoupling`: a fitted conductivity model the rate law couples to (its
        electrolyte resistance follows the film's predicted conductivity at each anneal and temperature,
        so σ(T) data informs rate(T)); None (default): the law's own electrolyte Arrhenius term.
    features : ``"smooth"`` (default): one smooth kernel and the law without narrow terms (the model before
        issue 15 §3). ``"narrow"``: the discrepancy has, besides its smooth part, an anneal-only part with a
        short length scale (about 20 °C, :data:`~surrogate.laws.NARROW_ANNEAL_LENGTH`), so a ~40 °C anneal
        window can be represented, and the law gets its narrow-feature terms (conductivity: a crystallisation
        step whose onset and width are fitted, :data:`~surrogate.laws.CRYSTALLISATION_PRIORS`). Measured in
        ``benchmarks/results/surrogate_accuracy_narrow.md``; tuning (``surrogate tune``) chooses between them.

    ``fit(X, y)``: X has design columns (those of the target's declared ``inputs`` present are used), y the target
    in natural space. ``predict(X, return_std=True)``: mean and the std of a fresh measurement (natural
    space). :meth:`posterior` gives the latent (noise-free) joint mean and covariance.
    """

    def __init__(
        self,
        target: str = CONDUCTIVITY,
        mean: str = "physics",
        max_points: int = 150,
        categories: dict[str, Any] | None = None,
        reading_sd: float = 0.005,
        max_iter: int = 60,
        features: str = "smooth",
        film: FilmCoupling | None = None,
        pooling: str = "partial",
        handle_unknown: str = "population",
    ) -> None:
        self.target = target
        self.mean = mean
        self.max_points = max_points
        self.categories = categories
        self.reading_sd = reading_sd
        self.max_iter = max_iter
        self.features = features
        self.film = film
        self.pooling = pooling
        self.handle_unknown = handle_unknown

    _parameter_constraints: dict = {
        "target": [str],
        "mean": [StrOptions({"physics", "constant"})],
        "max_points": [Interval(Integral, 2, None, closed="left")],
        "categories": [dict, None],
        "reading_sd": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "features": [StrOptions(set(FEATURE_KINDS))],
        "film": [FilmCoupling, None],
        "pooling": [StrOptions(set(POOLING_KINDS))],
        "handle_unknown": [StrOptions(set(HANDLE_UNKNOWN))],
    }

    # -------------------------------------------------------------- encoding
    def _check_params(self) -> None:
        validate_params(self)
        self._law()  # an undeclared target, or one without a law, is an InputError naming it
        if self.mean not in ("physics", "constant"):
            raise InputError(f"mean: {self.mean!r} must be 'physics' or 'constant'")
        if self.pooling not in POOLING_KINDS:
            raise InputError(f"pooling: {self.pooling!r} must be one of {', '.join(POOLING_KINDS)}")
        if self.features not in FEATURE_KINDS:
            raise InputError(f"features: {self.features!r} must be one of {', '.join(FEATURE_KINDS)}")
        if self.film is not None and not (
            isinstance(self.film, FilmCoupling) and self._law().coupled_drop and self.mean == "physics"
        ):
            raise InputError(f"film: a FilmCoupling couples a physics-mean {RATE.name!r} law only, not {self.target}")
        if int(self.max_points) < 2:
            raise InputError(f"max_points: {self.max_points} must be at least 2")
        if not np.isfinite(float(self.reading_sd)) or float(self.reading_sd) < 0:
            raise InputError(f"reading_sd: {self.reading_sd} must be a number ≥ 0")

    def _frame(self, X: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        """``X``'s ``columns`` checked: numbers finite and physical, buffer and protocol canonical."""
        return checked_design_columns(X, columns, f"the {self.target} model")

    def _encode(self, frame: pd.DataFrame) -> _Inputs:
        n = len(frame)
        vocabulary = {b: i for i, b in enumerate(self.categories_.get(BUFFER, ()))}
        other = len(vocabulary)  # the slot of a buffer outside the vocabulary
        if BUFFER in frame:
            buffer = np.array([vocabulary.get(b, other) for b in frame[BUFFER].tolist()], dtype=int)
            if self.handle_unknown == "error" and hasattr(self, "theta_") and (buffer == other).any():
                unknown = sorted({b for b in frame[BUFFER].tolist() if b not in vocabulary})
                raise InputError(
                    f"buffer: {', '.join(unknown)} not in this model's vocabulary; it knows "
                    f"{', '.join(vocabulary) or 'none'} (handle_unknown='error')"
                )
        else:
            buffer = np.zeros(n, dtype=int)
        law = {
            ANNEAL_TEMP_C: frame[ANNEAL_TEMP_C].to_numpy(float)[:, None]
            if ANNEAL_TEMP_C in frame
            else np.full((n, 1), 300.0),
            TEST_TEMP_C: frame[TEST_TEMP_C].to_numpy(float)[:, None] if TEST_TEMP_C in frame else np.full((n, 1), 25.0),
            BUFFER: buffer[:, None],
            C_RATE: frame[C_RATE].to_numpy(float)[:, None] if C_RATE in frame else np.full((n, 1), 1.0),
            CYCLES: frame[CYCLES].to_numpy(float)[:, None] if CYCLES in frame else np.full((n, 1), 100.0),
            PROTOCOL: (frame[PROTOCOL].to_numpy() == "long").astype(float)[:, None]
            if PROTOCOL in frame
            else np.zeros((n, 1)),
        }
        if self.film is not None:
            law[SIGMA_SHIFT] = self.film.ln_sigma_shift(law[ANNEAL_TEMP_C][:, 0], law[TEST_TEMP_C][:, 0])[:, None]
        numeric = []
        for column in self.gp_inputs_:
            values = law[PROTOCOL][:, 0] if column == PROTOCOL else frame[column].to_numpy(float)
            numeric.append(gp_coordinate(column, values))
        z = np.column_stack(numeric) if numeric else np.zeros((n, 0))
        return _Inputs(z, buffer, law)

    def _law_values(self, theta: np.ndarray, inputs: _Inputs) -> np.ndarray:
        if self.mean == "constant":
            return np.broadcast_to(theta[0], (len(inputs.buffer), theta.shape[1])).copy()
        return self._law().mean(theta, inputs.law, self.param_index_)

    def _law(self) -> Law:
        return law_of(self.target)

    def _law_and_jacobian(self, theta: np.ndarray, inputs: _Inputs) -> tuple[np.ndarray, np.ndarray]:
        """Law values (rows) and their Jacobian (rows × parameters) at θ, by forward differences."""
        steps = 1e-5 * np.maximum(1.0, np.abs(theta))
        thetas = np.column_stack([theta, theta[:, None] + np.diag(steps)])
        values = self._law_values(thetas, inputs)
        return values[:, 0], (values[:, 1:] - values[:, :1]) / steps

    # -------------------------------------------------------------- kernel
    def _hyper_layout(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Names, prior means, prior sds, lower and upper bounds of the log hyper-parameters."""
        law = self._law()
        amplitude, noise = law.amplitude, law.noise
        names, mean, sd, low, high = ["shared_amplitude"], [amplitude.mean], [amplitude.sd], [], []
        if self.use_buffer_:
            names.append("buffer_amplitude")
            mean.append(amplitude.mean + np.log(0.7))
            sd.append(amplitude.sd)
        floor = law.amplitude_floor if self.mean == "physics" else HYPER_BOUNDS["amplitude"][0]
        bounds = [(floor, HYPER_BOUNDS["amplitude"][1])] + [HYPER_BOUNDS["amplitude"]] * (len(names) - 1)
        for column in self.gp_inputs_:
            prior = LENGTH_PRIORS[column]
            names.append(f"length_{column}")
            mean.append(prior.mean)
            sd.append(prior.sd)
            bounds.append(HYPER_BOUNDS["length"])
        if self.narrow_kernel_:
            names += ["narrow_anneal_amplitude", "narrow_anneal_length"]
            mean += [NARROW_ANNEAL_AMPLITUDE.mean, NARROW_ANNEAL_LENGTH.mean]
            sd += [NARROW_ANNEAL_AMPLITUDE.sd, NARROW_ANNEAL_LENGTH.sd]
            bounds += [HYPER_BOUNDS["amplitude"], NARROW_ANNEAL_LENGTH_BOUNDS]
        for group in self.pooled_groups_:
            prior = law.group_scales[group]
            names.append(f"group_scale_{group}")
            mean.append(prior.mean)
            sd.append(prior.sd)
            bounds.append(GROUP_SCALE_BOUNDS)
        names.append("noise")
        mean.append(noise.mean)
        sd.append(noise.sd)
        bounds.append(HYPER_BOUNDS["noise"])
        low, high = np.log([b[0] for b in bounds]), np.log([b[1] for b in bounds])
        return names, np.array(mean), np.array(sd), low, high

    def _kernel_parts(
        self, h: np.ndarray, a: _Inputs, b: _Inputs
    ) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        """(shared part, buffer part or None, squared differences per input / length², narrow part and its
        squared anneal differences / length², or None) of k(a, b)."""
        k = 1 + int(self.use_buffer_)
        lengths = np.exp(h[k : k + len(self.gp_inputs_)])
        scaled = [((a.z[:, [d]] - b.z[:, d][None, :]) / lengths[d]) ** 2 for d in range(len(lengths))]
        rbf = np.exp(-0.5 * sum(scaled)) if scaled else np.ones((len(a.buffer), len(b.buffer)))
        shared = np.exp(2 * h[0]) * rbf
        per_buffer = None
        if self.use_buffer_:
            same = a.buffer[:, None] == b.buffer[None, :]
            per_buffer = np.exp(2 * h[1]) * rbf * same
        narrow = None
        if self.narrow_kernel_:  # anneal-only, short length scale: a narrow window of the film
            d = self.gp_inputs_.index(ANNEAL_TEMP_C)
            i = k + len(self.gp_inputs_)
            sq = ((a.z[:, [d]] - b.z[:, d][None, :]) / np.exp(h[i + 1])) ** 2
            narrow = (np.exp(2 * h[i]) * np.exp(-0.5 * sq), sq)
        return shared, per_buffer, scaled, narrow

    def _kernel(self, h: np.ndarray, a: _Inputs, b: _Inputs) -> np.ndarray:
        shared, per_buffer, _, narrow = self._kernel_parts(h, a, b)
        total = shared if per_buffer is None else shared + per_buffer
        return total if narrow is None else total + narrow[0]

    def _prior_variance(self, h: np.ndarray) -> float:
        variance = np.exp(2 * h[0]) + (np.exp(2 * h[1]) if self.use_buffer_ else 0.0)
        if self.narrow_kernel_:
            variance += np.exp(2 * h[1 + int(self.use_buffer_) + len(self.gp_inputs_)])
        return float(variance)

    # -------------------------------------------------------------- fitting
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsPriorGP:
        """Fit to design columns ``X`` and the target ``y`` in natural space (see the module docstring)."""
        self._check_params()
        with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend on shared cores
            return self._fit(X, y)

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsPriorGP:
        declared = get_target(self.target)
        used = tuple(c for c in declared.inputs if c in getattr(X, "columns", ()))
        for required in self._law().required:
            if required not in used:
                raise InputError(f"X: missing column {required!r} (the {self.target} model needs it)")
        frame = self._frame(X, used).reset_index(drop=True)
        values = np.asarray(y, dtype=float).ravel()
        if values.shape[0] != len(frame):
            raise InputError(f"y: {values.shape[0]} values for {len(frame)} rows of X")
        if not np.all(np.isfinite(values)):
            raise InputError("y: every target value must be finite (natural space: log10 σ or logit retention)")
        informative = np.ones(len(frame), dtype=bool)
        if declared.reference is not None:  # rows at the reference point (retention 1 by definition)
            informative = ~declared.reference_rows({declared.reference.column: frame[declared.reference.column]})
        frame, values = frame[informative].reset_index(drop=True), values[informative]
        if len(frame) > int(self.max_points):
            from surrogate.models.features import stratified_subsample

            keep = stratified_subsample(frame, int(self.max_points))
            frame, values = frame.iloc[keep].reset_index(drop=True), values[keep]

        self.feature_names_in_ = np.array(list(used), dtype=object)
        self.n_features_in_ = len(used)
        self.use_buffer_ = BUFFER in used
        given = (self.categories or {}).get(BUFFER)
        if given is not None:
            vocabulary = tuple(dict.fromkeys(canonical_buffer(b) for b in given))
        else:
            vocabulary = tuple(sorted(set(frame[BUFFER]))) if BUFFER in frame else ()
        self.categories_ = {BUFFER: vocabulary} if self.use_buffer_ else {}
        self.n_slots_ = len(self.categories_.get(BUFFER, ())) + 1
        self.gp_inputs_ = tuple(c for c in used if c != BUFFER)
        narrow = self.features == "narrow" and self.mean == "physics"
        self.narrow_kernel_ = narrow and ANNEAL_TEMP_C in self.gp_inputs_
        self.narrow_law_ = narrow and ANNEAL_TEMP_C in used and bool(self._law().narrow_priors)
        pooled = self.pooling == "partial" and self.mean == "physics" and self.use_buffer_
        if self.mean == "constant":
            self.param_names_, self.prior_mean_, self.prior_sd_ = (
                ["constant"],
                np.zeros(1),
                np.full(1, CONSTANT_PRIOR_SD),
            )
        else:
            self.param_names_, self.prior_mean_, self.prior_sd_ = self._law().parameters(
                self.n_slots_, self.narrow_law_, self.film is not None, pooled=pooled
            )
        self.param_index_ = Law.index(self.param_names_)
        self.pooled_groups_ = tuple(g for g in self._law().group_scales if pooled and g in self.param_index_)
        names, h_mean, h_sd, h_low, h_high = self._hyper_layout()
        self.hyper_names_ = names
        inputs = self._encode(frame)
        self.n_train_ = len(values)
        values = natural_to_model(self.target, values)
        self.train_reading_variance_ = reading_variance(self.target, values, float(self.reading_sd))
        theta = self.prior_mean_.copy()
        h = h_mean.copy()
        # ln τ's posterior sd (Laplace; before any data: its hyper-prior's), so a new buffer's offset has the
        # variance E[τ²] = e^(2 ln τ̂ + 2 s²) of a log-normal τ, not τ̂²: few buffers tell little about τ
        self.group_scale_ln_sd_ = np.array([self._law().group_scales[g].sd for g in self.pooled_groups_])
        self.prior_sd_ = self._scaled_prior_sd(h)
        if len(values):
            theta = self._gauss_newton(theta, h, inputs, values)
            h, self.group_scale_ln_sd_ = self._fit_hyper(theta, h, (h_mean, h_sd, h_low, h_high), inputs, values)
            self.prior_sd_ = self._scaled_prior_sd(h)
            theta = self._gauss_newton(theta, h, inputs, values)
        self.theta_, self.hyper_ = theta, h
        self.noise_std_ = float(np.exp(h[-1]))
        self._condition(inputs, values)
        return self

    def _group_slots(self) -> list[tuple[int, np.ndarray]]:
        """(position in the hyper-parameters, parameter rows) of each learned group scale."""
        first = len(self.hyper_names_) - 1 - len(self.pooled_groups_)
        return [(first + i, self.param_index_[g]) for i, g in enumerate(self.pooled_groups_)]

    def _scaled_prior_sd(self, h: np.ndarray, spread: bool = True) -> np.ndarray:
        """The parameters' prior sds with each pooled per-buffer offset's sd set from its group scale.

        ``spread``: √E[τ²] = e^(h + s²) with s the posterior sd of ln τ (:attr:`group_scale_ln_sd_`), what
        the offsets' prior is once τ's uncertainty is integrated out; else τ = e^h (the marginal likelihood's
        own parameter while it is fitted).
        """
        sd = np.array(self.prior_sd_, dtype=float)
        for i, (position, rows) in enumerate(self._group_slots()):
            sd[rows] = np.exp(h[position] + (self.group_scale_ln_sd_[i] ** 2 if spread else 0.0))
        return sd

    def group_scales(self) -> dict[str, float]:
        """The learned group scale τ of each pooled per-buffer parameter (the sd of a buffer's offset from the
        group, in the parameter's units); empty without partial pooling."""
        check_is_fitted(self)
        return {
            g: float(np.exp(self.hyper_[p])) for g, (p, _) in zip(self.pooled_groups_, self._group_slots(), strict=True)
        }

    def _objective_theta(self, theta: np.ndarray, factor: Any, inputs: _Inputs, values: np.ndarray) -> float:
        residual = values - self._law_values(theta[:, None], inputs)[:, 0]
        return float(
            0.5 * residual @ cho_solve(factor, residual)
            + 0.5 * np.sum(((theta - self.prior_mean_) / self.prior_sd_) ** 2)
        )

    def _noisy_factor(self, h: np.ndarray, inputs: _Inputs) -> Any:
        k = self._kernel(h, inputs, inputs)
        k[np.diag_indices_from(k)] += np.exp(2 * h[-1]) + self.train_reading_variance_ + _JITTER
        return cho_factor(k, lower=True)

    def _gauss_newton(self, theta: np.ndarray, h: np.ndarray, inputs: _Inputs, values: np.ndarray) -> np.ndarray:
        """θ maximising the joint posterior (GP-correlated residuals, normal prior) at hyper-parameters ``h``."""
        factor = self._noisy_factor(h, inputs)
        precision = 1.0 / self.prior_sd_**2
        current = self._objective_theta(theta, factor, inputs, values)
        for _ in range(30):
            law, jac = self._law_and_jacobian(theta, inputs)
            residual = values - law
            solved_jac = cho_solve(factor, jac)
            a = jac.T @ solved_jac + np.diag(precision)
            g = solved_jac.T @ residual - precision * (theta - self.prior_mean_)
            step = np.linalg.solve(a, g)
            accepted = False
            for t in (1.0, 0.5, 0.25, 0.1, 0.03):
                trial = theta + t * step
                value = self._objective_theta(trial, factor, inputs, values)
                if value < current:
                    theta, accepted = trial, True
                    improvement, current = current - value, value
                    break
            if not accepted or improvement < 1e-6:
                break
        return theta

    def _fit_hyper(
        self, theta: np.ndarray, h0: np.ndarray, priors: tuple[np.ndarray, ...], inputs: _Inputs, values: np.ndarray
    ) -> np.ndarray:
        """Hyper-parameters maximising the marginal likelihood of the linearised model times their priors."""
        h_mean, h_sd, h_low, h_high = priors
        law, jac = self._law_and_jacobian(theta, inputs)
        error = values - law - jac @ (self.prior_mean_ - theta)
        n = len(values)
        k_buffer = 1 + int(self.use_buffer_)
        groups = [(position, jac[:, rows]) for position, rows in self._group_slots()]

        def negative_log_posterior(h: np.ndarray) -> tuple[float, np.ndarray]:
            basis = (
                jac * self._scaled_prior_sd(h, spread=False) ** 2
            ) @ jac.T  # covariance the law's parameter uncertainty adds
            shared, per_buffer, scaled, narrow = self._kernel_parts(h, inputs, inputs)
            signal = shared if per_buffer is None else shared + per_buffer
            smooth = signal
            if narrow is not None:
                signal = signal + narrow[0]
            noise = np.exp(2 * h[-1])
            c = signal + basis
            c[np.diag_indices(n)] += noise + self.train_reading_variance_ + _JITTER
            try:
                factor = cho_factor(c, lower=True)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros_like(h)
            alpha = cho_solve(factor, error)
            value = 0.5 * error @ alpha + np.log(np.diag(factor[0])).sum()
            w = cho_solve(factor, np.eye(n)) - np.outer(alpha, alpha)
            grad = np.empty_like(h)
            grad[0] = np.sum(w * shared)  # 0.5 tr(W dC/dh) with dC/dlog s = 2 K
            if per_buffer is not None:
                grad[1] = np.sum(w * per_buffer)
            for d, sq in enumerate(scaled):
                grad[k_buffer + d] = 0.5 * np.sum(w * smooth * sq)
            if narrow is not None:
                i = k_buffer + len(scaled)
                grad[i] = np.sum(w * narrow[0])
                grad[i + 1] = 0.5 * np.sum(w * narrow[0] * narrow[1])
            for position, group_jac in groups:  # dC/dlog τ = 2τ² J_g J_gᵀ
                grad[position] = np.exp(2 * h[position]) * np.sum(group_jac * (w @ group_jac))
            grad[-1] = np.trace(w) * noise
            z = (h - h_mean) / h_sd
            return float(value + 0.5 * z @ z), grad + z / h_sd

        start = np.clip(h0, h_low, h_high)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = minimize(
                negative_log_posterior,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=list(zip(h_low, h_high, strict=True)),
                options={"maxiter": int(self.max_iter)},
            )
        fitted = result.x if np.all(np.isfinite(result.x)) else start
        return fitted, self._group_scale_ln_sd(negative_log_posterior, fitted, h_sd)

    def _group_scale_ln_sd(self, objective: Any, h: np.ndarray, h_sd: np.ndarray) -> np.ndarray:
        """Laplace posterior sd of each ln τ at the fitted ``h``: 1/√(∂²/∂(ln τ)² of the negative log posterior),
        by central differences of its analytic gradient; capped at the hyper-prior's sd (the data cannot make
        τ less certain than its prior)."""
        out = []
        for i, (position, _) in enumerate(self._group_slots()):
            step = np.zeros_like(h)
            step[position] = 1e-3
            curvature = (objective(h + step)[1][position] - objective(h - step)[1][position]) / 2e-3
            prior_sd = h_sd[position]
            out.append(min(prior_sd, 1.0 / np.sqrt(curvature)) if curvature > 0 else prior_sd)
            del i
        return np.array(out)

    def _condition(self, inputs: _Inputs, values: np.ndarray) -> None:
        """Store what prediction needs: the Cholesky factor, weights and the law's posterior precision."""
        self.train_inputs_ = inputs
        precision = np.diag(1.0 / self.prior_sd_**2)
        if not len(values):
            self.factor_ = None
            self.alpha_ = np.zeros(0)
            self.solved_basis_ = np.zeros((0, len(self.theta_)))
            self.theta_cov_ = np.linalg.inv(precision)
            self.theta_shift_ = self.prior_mean_ - self.theta_
            return
        law, jac = self._law_and_jacobian(self.theta_, inputs)
        factor = self._noisy_factor(self.hyper_, inputs)
        residual = values - law
        self.factor_ = factor
        solved_jac = cho_solve(factor, jac)
        a = jac.T @ solved_jac + precision
        self.theta_cov_ = np.linalg.inv(a)
        self.theta_cov_ = 0.5 * (self.theta_cov_ + self.theta_cov_.T)
        # β̄ of R&W eq. 2.42 (0 when θ̂ is exactly the joint posterior mode)
        self.theta_shift_ = self.theta_cov_ @ (solved_jac.T @ residual + precision @ (self.prior_mean_ - self.theta_))
        self.alpha_ = cho_solve(factor, residual - jac @ self.theta_shift_)
        self.solved_basis_ = solved_jac

    # -------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        check_is_fitted(self, "theta_")

    def posterior(self, X: pd.DataFrame, full_cov: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Latent (noise-free) posterior of the target at the rows of ``X``: mean and covariance (or variance).

        In the modelling space (:func:`model_space`; :func:`model_to_contract` maps samples to contract
        units). ``full_cov=False`` returns the variance per row instead of the covariance matrix.
        """
        self._check_fitted()
        inputs = self._encode(self._frame(X, tuple(self.feature_names_in_)).reset_index(drop=True))
        law, jac = self._law_and_jacobian(self.theta_, inputs)
        h = self.hyper_
        if self.factor_ is None:
            mean = law + jac @ self.theta_shift_
            r = jac
            prior = self._kernel(h, inputs, inputs) if full_cov else np.full(len(law), self._prior_variance(h))
            v_term = 0.0
        else:
            k_star = self._kernel(h, inputs, self.train_inputs_)
            mean = law + k_star @ self.alpha_ + jac @ self.theta_shift_
            v = solve_triangular(self.factor_[0], k_star.T, lower=True, check_finite=False)
            r = jac - k_star @ self.solved_basis_
            if full_cov:
                prior, v_term = self._kernel(h, inputs, inputs), v.T @ v
            else:
                prior, v_term = np.full(len(law), self._prior_variance(h)), np.einsum("ij,ij->j", v, v)
        if full_cov:
            cov = prior - v_term + r @ self.theta_cov_ @ r.T
            return mean, 0.5 * (cov + cov.T)
        variance = prior - v_term + np.einsum("ij,jk,ik->i", r, self.theta_cov_, r)
        return mean, np.maximum(variance, 0.0)

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean and, with ``return_std``, the std of a fresh measurement (latent + noise + reading), natural space.

        For capacity retention (modelled in ln-loss space) the mean is the image of the modelling-space
        mean (the median) and the std half the natural-space width of the ±1 sd band.
        """
        mean, variance = self.posterior(X, full_cov=False)
        natural = model_to_natural(self.target, mean)
        if not return_std:
            return natural
        fresh = variance + self.noise_std_**2 + reading_variance(self.target, mean, float(self.reading_sd))
        sd = np.sqrt(fresh)
        if model_space(self.target) == TARGET_SPACES[self.target].name:
            return natural, sd
        band = model_to_natural(self.target, mean - sd) - model_to_natural(self.target, mean + sd)
        return natural, np.maximum(0.5 * np.abs(band), 1e-6)

    def law_parameters(self) -> pd.DataFrame:
        """The law's parameters: ``name``, prior ``prior_mean`` / ``prior_sd`` and posterior ``mean`` / ``sd``."""
        self._check_fitted()
        names = list(self.param_names_)
        vocabulary = list(self.categories_.get(BUFFER, ())) + ["(other)"]
        names = [n.split("[")[0] + f"[{vocabulary[int(n.split('[')[1][:-1])]}]" if "[" in n else n for n in names]
        return pd.DataFrame(
            {
                "name": names,
                "prior_mean": self.prior_mean_,
                "prior_sd": self.prior_sd_,
                "mean": self.theta_ + self.theta_shift_,
                "sd": np.sqrt(np.diag(self.theta_cov_)),
            }
        )
