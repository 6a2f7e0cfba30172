"""The physics baseline: the paper's laws with their parameters fitted to the data (the bar every ML model must meet).

One estimator, :class:`PhysicsBaseline`, with a law per target. The laws have
the *functional forms* of :mod:`surrogate.physics`; every parameter is fitted
to the training data with :func:`scipy.optimize.least_squares` (none of the
lab's calibrated constants is read).

* ``conductivity_s_cm`` — Arrhenius in the σT form per anneal state:
  ln(σT) = ln A − Ea/(k T), T in K, Ea in eV, one (ln A, Ea) per anneal
  temperature in the data. For an anneal temperature between two states,
  ln A and Ea are interpolated linearly in anneal temperature; beyond the
  outermost states they are held at the nearest state's values (no linear
  extrapolation of Ea; the training domain flags such designs). A state not
  in the data may differ from that interpolation: its prediction carries an
  extra standard deviation (ln units), 0 at a fitted state, rising
  parabolically to half the difference of the two neighbouring states'
  ln(σT) midway between them (a state between two measured ones most
  plausibly lies between them), and beyond the outermost states rising
  linearly to the spread of all fitted states' ln(σT) within 50 °C.
  :meth:`PhysicsBaseline.activation_energies` reports Ea ± standard error per state.
* ``rate_retention`` — a resistance-limited cell, (C*/C)(1 − exp(−C/C*)),
  normalised at the reference rate 0.1 C (retention is 1 there by definition).
  One characteristic rate C* per buffer; when the data has several test
  temperatures, ln C* is linear in 1000/T (Arrhenius) with a slope shared by
  the buffers; with several anneal temperatures, linear in anneal temperature.
* ``capacity_retention`` — fade in log space: −ln R = e·(1 − exp(−(n−1)/n0)) +
  l·(n−1) + k·w·softplus((n − n_k)/w). ln e and ln l are a buffer effect plus a
  protocol offset (so a buffer never cycled under a protocol gets its own
  standard-protocol fade shifted by that protocol's offset), n0 is per
  protocol. A knee (k, n_k, w) is a property of a *curve* (one buffer under
  one protocol), not of the protocol's label: each curve with at least
  :data:`KNEE_MIN_POINTS` distinct cycles is tried, and its knee is kept only
  when it lowers the BIC by more than 10 (``knee="auto"``). A curve whose data
  shows no knee has none, whatever its protocol is called; a curve without
  data has none either. (``knee_by="protocol"`` is the previous rule, a knee
  per protocol label once that protocol's data reaches 200 cycles, kept as a
  benchmark baseline.) With several test temperatures the cycle count is
  scaled by an Arrhenius acceleration factor.

Uncertainty: parameter covariance s²(JᵀJ)⁻¹ from the fit's Jacobian,
propagated to each prediction, plus the residual variance (retentions: the
residual variance in contract units, as reading errors are, mapped to logit
space per prediction). The standard deviation is scaled by
t₀.₉₅(dof)/z₀.₉₅ so a normal interval has Student-t width for the fit's
degrees of freedom. A buffer the data has no rows for gets the mean of the
fitted buffers' parameters with their between-buffer variance added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.stats import norm, t
from sklearn.base import BaseEstimator, RegressorMixin

from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    MATERIAL,
    PROTOCOL,
    PROTOCOLS,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    TEST_TEMP_C,
)
from surrogate.errors import InputError
from surrogate.laws import ARRHENIUS, FADE, K_B_EV, RATE, ZERO_C_K, law_of, relative_rate_retention
from surrogate.models.base import CATEGORIES, TARGET_SPACES, DesignBatch
from surrogate.models.features import Vocabulary, canonical_features, check_target, check_y

KNEE_MIN_POINTS = 20
"""A curve needs this many distinct cycle counts before a knee (3 parameters) is tried on it."""
KNEE_MIN_CYCLES = 200.0
"""``knee_by="protocol"`` (the previous rule): a protocol's data must reach this many cycles before a knee is tried."""
KNEE_SCOPES: tuple[str, ...] = ("curve", "protocol")
"""What a knee belongs to: a buffer × protocol curve (default), or a protocol label (the previous rule)."""
KNEE_MIN_BIC_GAIN = 10.0
"""A knee is kept only when it lowers the BIC by more than this ("very strong" evidence)."""
UNSEEN_LOG_VARIANCE = 1.0
"""Variance (ln units) of a buffer effect when only one buffer was fitted (no between-buffer spread to use)."""
ANNEAL_STATE_RAMP_C = 50.0
"""Anneal temperatures this far (°C) or more from every fitted state get the full new-state variance."""
_RETENTION_CLIP = 1e-3


@lru_cache(maxsize=256)
def _t_inflation(dof: int) -> float:
    """t₀.₉₅(dof)/z₀.₉₅: widens a normal interval to Student-t width for a fit with ``dof`` degrees of freedom."""
    return float(t.ppf(0.95, dof) / norm.ppf(0.95))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


@dataclass
class _Law:
    """A parametric law: parameter names, start values and bounds, extra 'unseen' parameters, and f(θ, columns).

    ``natural(theta, columns)`` takes the design columns as arrays (numbers; ``buffer`` and ``protocol`` as
    codes into :data:`~surrogate.models.base.CATEGORIES`, see :func:`_columns`). A law with ``batched`` set
    also accepts ``theta`` of shape (parameters, k) with every column of shape (rows, 1) and returns
    (rows, k): k parameter vectors in one pass (the finite-difference Jacobian of :meth:`PhysicsBaseline.predict`).
    """

    names: list[str]
    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fit_space: str  # "natural" or "contract": where residuals are taken
    context: dict[str, Any] = field(default_factory=dict)
    extra_names: list[str] = field(default_factory=list)  # pseudo-parameters, 0 in fitting (unseen categories)
    batched = False

    def natural(self, theta: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def extra_variances(self, theta: np.ndarray) -> list[float]:
        """Variance of each pseudo-parameter in :attr:`extra_names`: the spread of the fitted category effects."""
        nb = len(self.context.get("buffers", []))
        out = []
        for k, _ in enumerate(self.extra_names):
            effects = theta[k * nb : (k + 1) * nb]
            out.append(float(np.var(effects, ddof=1)) if nb > 1 else UNSEEN_LOG_VARIANCE)
        return out


# ------------------------------------------------------------------ conductivity
class _ArrheniusLaw(_Law):
    """ln(σT) = ln A(anneal) − Ea(anneal)/(k T), (ln A, Ea) per anneal state, interpolated between states."""

    @classmethod
    def build(cls, frame: pd.DataFrame, y: np.ndarray) -> _ArrheniusLaw:
        states = np.sort(frame[ANNEAL_TEMP_C].unique())
        start_a, start_ea = [], []
        sigma_form: dict[float, tuple[float, float, int]] = {}
        for state in states:
            rows = frame[ANNEAL_TEMP_C].to_numpy() == state
            temps = frame.loc[rows, TEST_TEMP_C].to_numpy(float)
            if np.unique(temps).size < 2:
                raise InputError(
                    f"{ANNEAL_TEMP_C}={state:g}: an Arrhenius fit needs measurements at ≥ 2 test temperatures"
                )
            inv_kt = 1.0 / (K_B_EV * (temps + ZERO_C_K))
            ln_st = y[rows] * np.log(10.0) + np.log(temps + ZERO_C_K)
            slope, intercept = np.polyfit(inv_kt, ln_st, 1)
            start_a.append(intercept)
            start_ea.append(-slope)
            sigma_form[float(state)] = _line_slope_se(inv_kt, y[rows] * np.log(10.0), np.unique(temps).size)
        n = states.size
        names = [f"ln_A@{s:g}C" for s in states] + [f"Ea_eV@{s:g}C" for s in states]
        start = np.array(start_a + start_ea)
        context = {
            "states": states,
            "inv_kt_mid": float(np.mean(1.0 / (K_B_EV * (frame[TEST_TEMP_C] + ZERO_C_K)))),
            "sigma_form": sigma_form,
        }
        law = cls(names, start, np.full(2 * n, -np.inf), np.full(2 * n, np.inf), "natural", context)
        law.extra_names = ["new_anneal_state_ln_sigma"]
        return law

    def extra_variances(self, theta: np.ndarray) -> list[float]:
        """Unit variance: the pseudo-parameter's amplitude (ln units) is set per design in :meth:`natural`."""
        return [1.0]

    batched = True

    def natural(self, theta: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
        states = self.context["states"]
        n = states.size
        anneal = columns[ANNEAL_TEMP_C]
        temp_k = columns[TEST_TEMP_C] + ZERO_C_K
        plan = _interp_plan(anneal, states) if n > 1 and theta.ndim == 2 else None
        ln_a = _interp(anneal, states, theta[:n], plan) if n > 1 else np.zeros(anneal.shape) + theta[0]
        ea = _interp(anneal, states, theta[n : 2 * n], plan) if n > 1 else np.zeros(anneal.shape) + theta[1]
        # A state not in the data may differ from the interpolation: the pseudo-parameter (0 in fitting, unit
        # variance) carries that with the amplitude of _new_state_amplitude.
        state_ln_sigma_t = theta[:n] - theta[n : 2 * n] * self.context["inv_kt_mid"]
        amplitude = _new_state_amplitude(anneal, states, state_ln_sigma_t)
        ln_sigma_t = ln_a - ea / (K_B_EV * temp_k) + theta[2 * n] * amplitude
        return (ln_sigma_t - np.log(temp_k)) / np.log(10.0)


def _line_slope_se(x: np.ndarray, y: np.ndarray, n_temperatures: int) -> tuple[float, float, int]:
    """(−slope, its standard error, distinct x values) of the least-squares line y = a + b·x (Ea in eV for
    x = 1/kT and y = ln σ); SE NaN when the line has no residual degrees of freedom."""
    slope, intercept = np.polyfit(x, y, 1)
    dof = x.size - 2
    if dof <= 0:
        return float(-slope), float("nan"), n_temperatures
    residual = y - (intercept + slope * x)
    s2 = float(np.sum(residual**2)) / dof
    se = float(np.sqrt(s2 / np.sum((x - x.mean()) ** 2)))
    return float(-slope), se, n_temperatures


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, plan: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """``np.interp(x, xp, fp)``, also for ``fp`` of shape (len(xp), k) with ``x`` of shape (rows, 1) → (rows, k).

    The 2-D case repeats numpy's own arithmetic (compiled_base.c ``arr_interp``: ``fp`` held beyond the
    ends, exact at a knot, else ``slope * (x - xp[j]) + fp[j]``), so both give the same numbers; finite
    inputs only.
    """
    if fp.ndim == 1:
        return np.interp(x, xp, fp)
    values, inner, held, use_line = plan if plan is not None else _interp_plan(x, xp)
    slope = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])[:, None]
    between = slope[inner] * (values - xp[inner])[:, None] + fp[inner]
    return np.where(use_line, between, fp[held])


def _interp_plan(x: np.ndarray, xp: np.ndarray) -> tuple[np.ndarray, ...]:
    """What :func:`_interp` needs of ``x`` alone (reused for every ``fp`` at the same ``x``)."""
    values = x.reshape(-1)
    j = np.searchsorted(xp, values, side="right") - 1
    inner = _clip(j, 0, xp.size - 2)
    use_line = (j >= 0) & (j < xp.size - 1) & (xp[inner] != values)
    return values, inner, _clip(j, 0, xp.size - 1), use_line[:, None]


def _clip(values: Any, low: Any, high: Any) -> np.ndarray:
    """``np.clip`` for numbers (the same result, without its dispatch overhead: this runs per prediction)."""
    return np.minimum(np.maximum(values, low), high)


def _new_state_amplitude(anneal: np.ndarray, states: np.ndarray, state_ln_sigma_t: np.ndarray) -> np.ndarray:
    """Standard deviation (ln units) of an unmeasured anneal state about the interpolation between fitted states.

    0 at a fitted state; between neighbours a < b, 4(x−a)(b−x)/(b−a)² × |ln σT(b) − ln σT(a)|/2 (half
    their difference midway); beyond the outermost states, rising linearly over ANNEAL_STATE_RAMP_C to the
    spread (sd) of every fitted state's ln σT (UNSEEN_LOG_VARIANCE with a single state).
    """
    spread = np.std(state_ln_sigma_t, ddof=1, axis=0) if states.size > 1 else float(np.sqrt(UNSEEN_LOG_VARIANCE))
    beyond = _clip(np.maximum(states[0] - anneal, anneal - states[-1]) / ANNEAL_STATE_RAMP_C, 0.0, 1.0)
    amplitude = beyond * spread
    for k in range(states.size - 1):
        low, high = states[k], states[k + 1]
        inside = (anneal > low) & (anneal < high)
        half_step = 0.5 * np.abs(state_ln_sigma_t[k + 1] - state_ln_sigma_t[k])
        amplitude = np.where(inside, 4.0 * (anneal - low) * (high - anneal) / (high - low) ** 2 * half_step, amplitude)
    return amplitude


# ------------------------------------------------------------------ shared helpers for categorical effects
def _category_effect(codes: np.ndarray, seen: list[str], effects: np.ndarray, delta: Any) -> np.ndarray:
    """Per-row buffer effect: the fitted effect, or mean of fitted effects + delta for a buffer not fitted.

    ``codes``: buffer codes (see :func:`_columns`); ``effects``: one per ``seen`` buffer (or one row of k
    per buffer, batched), ``delta`` a number (or k).
    """
    ids = CATEGORIES[BUFFER]  # every buffer the catalogue knows now (codes index it)
    table = np.empty((len(ids),) + effects.shape[1:])
    table[...] = np.mean(effects, axis=0) + delta
    table[[ids.index(name) for name in seen]] = effects
    return table[codes.reshape(-1)]


def _inv_temp(test_temp_c: np.ndarray) -> np.ndarray:
    return 1000.0 / (test_temp_c + ZERO_C_K)


def _columns(designs: DesignBatch) -> dict[str, np.ndarray]:
    """The design columns a law reads: numbers as floats, ``buffer`` and ``protocol`` as integer codes."""
    return {**designs.numbers, **designs.codes}


# ------------------------------------------------------------------ rate capability
class _RateLaw(_Law):
    """R(C) = s(C, C*)/s(0.1, C*), s = (C*/C)(1 − e^(−C/C*)); ln C* = buffer + temperature/anneal slopes."""

    @classmethod
    def build(cls, frame: pd.DataFrame, y: np.ndarray) -> _RateLaw:
        buffers = sorted(frame[BUFFER].unique().tolist())
        retention = TARGET_SPACES[RATE_RETENTION].inverse(y)
        start = []
        for buffer in buffers:
            rows = (frame[BUFFER].to_numpy() == buffer) & (frame[C_RATE].to_numpy(float) > REFERENCE_C_RATE)
            if not rows.any():
                raise InputError(f"{BUFFER}={buffer}: rate retention needs rows at a C-rate above 0.1 C")
            # R ≈ C*/C at high rate: a start value for ln C*.
            c = frame.loc[rows, C_RATE].to_numpy(float)
            start.append(float(np.median(np.log(np.clip(retention[rows], 0.01, 1.0) * c))))
        names = [f"ln_Cstar@{b}" for b in buffers]
        context = {
            "buffers": buffers,
            "inv_temp_ref": float(np.mean(_inv_temp(frame[TEST_TEMP_C].to_numpy(float)))),
            "anneal_ref": float(np.mean(frame[ANNEAL_TEMP_C])) / 100.0,
            "temp_slope": frame[TEST_TEMP_C].nunique() > 1,
            "anneal_slope": frame[ANNEAL_TEMP_C].nunique() > 1,
        }
        if context["temp_slope"]:
            names.append("rate_temp_slope_k")  # −d ln C*/d(1000/T), in kK
            start.append(2.0)
        if context["anneal_slope"]:
            names.append("rate_anneal_slope")  # d ln C*/d(anneal/100 °C)
            start.append(0.0)
        p = len(names)
        law = cls(names, np.array(start), np.full(p, -np.inf), np.full(p, np.inf), "contract", context)
        law.extra_names = ["unseen_buffer_ln_Cstar"]
        return law

    batched = True

    def natural(self, theta: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
        ctx = self.context
        nb = len(ctx["buffers"])
        ln_c_star = _category_effect(columns[BUFFER], ctx["buffers"], theta[:nb], theta[-1])
        i = nb
        if ctx["temp_slope"]:
            ln_c_star = ln_c_star - theta[i] * (_inv_temp(columns[TEST_TEMP_C]) - ctx["inv_temp_ref"])
            i += 1
        if ctx["anneal_slope"]:
            ln_c_star = ln_c_star + theta[i] * (columns[ANNEAL_TEMP_C] / 100.0 - ctx["anneal_ref"])
        c_star = np.exp(_clip(ln_c_star, -20.0, 20.0))
        retention = relative_rate_retention(columns[C_RATE], c_star)
        return TARGET_SPACES[RATE_RETENTION].forward(retention)


# ------------------------------------------------------------------ cycle fade
class _FadeLaw(_Law):
    """−ln R = e(1 − e^(−(n−1)/n0)) + l(n−1) [+ k w softplus((n − n_k)/w)], n Arrhenius-scaled with temperature.

    ``knees``: what carries a knee, each either a curve ``"buffer/protocol"`` or a protocol label (the previous
    rule); its onset is bounded by 0.2-2 times the largest cycle count of its rows.
    """

    @classmethod
    def build(cls, frame: pd.DataFrame, y: np.ndarray, knees: tuple[str, ...] = ()) -> _FadeLaw:
        buffers = sorted(frame[BUFFER].unique().tolist())
        protocols = [p for p in PROTOCOLS if p in set(frame[PROTOCOL])]
        max_cycles = {p: float(frame.loc[frame[PROTOCOL] == p, CYCLES].max()) for p in protocols}
        for curve in knees:
            if "/" in curve:
                max_cycles[curve] = float(frame.loc[_curve_rows(frame, curve), CYCLES].max())
        names, start, lower, upper = [], [], [], []

        def add(name: str, value: float, low: float = -np.inf, high: float = np.inf) -> None:
            names.append(name)
            start.append(value)
            lower.append(low)
            upper.append(high)

        for b in buffers:
            add(f"ln_early@{b}", np.log(0.3), -12.0, 3.0)
        for b in buffers:
            add(f"ln_linear@{b}", np.log(1e-3), -20.0, 0.0)
        for p in protocols[1:]:
            add(f"ln_early_offset@{p}", 0.0, -10.0, 10.0)
        for p in protocols[1:]:
            add(f"ln_linear_offset@{p}", 0.0, -10.0, 10.0)
        for p in protocols:
            add(f"ln_n0@{p}", np.log(max(3.0, 0.1 * max_cycles[p])), np.log(0.3), np.log(max(10.0, max_cycles[p])))
        for p in knees:
            n_max = max_cycles[p]
            add(f"ln_knee_slope@{p}", np.log(1e-2), -15.0, 2.0)
            add(f"ln_knee_onset@{p}", np.log(0.85 * n_max), np.log(0.2 * n_max), np.log(2.0 * n_max))
            add(f"ln_knee_width@{p}", np.log(0.02 * n_max), np.log(1.0), np.log(0.5 * n_max))
        context = {
            "buffers": buffers,
            "protocols": protocols,
            "knees": tuple(knees),
            "inv_temp_ref": float(np.mean(_inv_temp(frame[TEST_TEMP_C].to_numpy(float)))),
            "temp_slope": frame[TEST_TEMP_C].nunique() > 1,
        }
        if context["temp_slope"]:
            add("fade_temp_slope_k", 2.0, -50.0, 50.0)  # d ln(acceleration)/d(−1000/T), kK
        law = cls(names, np.array(start), np.array(lower), np.array(upper), "contract", context)
        law.extra_names = ["unseen_buffer_ln_early", "unseen_buffer_ln_linear"]
        return law

    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names + self.extra_names)}

    batched = True

    def natural(self, theta: np.ndarray, columns: dict[str, np.ndarray]) -> np.ndarray:
        ctx, ix = self.context, self._index()
        buffers, protocols = ctx["buffers"], ctx["protocols"]
        nb = len(buffers)
        buffer = columns[BUFFER]
        protocol = columns[PROTOCOL]
        d_early, d_linear = theta[ix["unseen_buffer_ln_early"]], theta[ix["unseen_buffer_ln_linear"]]
        ln_early = _category_effect(buffer, buffers, theta[:nb], d_early)
        ln_linear = _category_effect(buffer, buffers, theta[nb : 2 * nb], d_linear)
        cycles = columns[CYCLES]
        n = cycles
        if ctx["temp_slope"]:
            accel = np.exp(theta[ix["fade_temp_slope_k"]] * (ctx["inv_temp_ref"] - _inv_temp(columns[TEST_TEMP_C])))
            n = 1.0 + (cycles - 1.0) * accel
        first = protocols[0]
        ln_n0 = np.zeros(cycles.shape) + theta[ix[f"ln_n0@{first}"]]
        knee = np.zeros(cycles.shape)
        for p in protocols:
            rows = protocol == PROTOCOLS.index(p)
            if p != first:
                ln_early = np.where(rows, ln_early + theta[ix[f"ln_early_offset@{p}"]], ln_early)
                ln_linear = np.where(rows, ln_linear + theta[ix[f"ln_linear_offset@{p}"]], ln_linear)
                ln_n0 = np.where(rows, theta[ix[f"ln_n0@{p}"]], ln_n0)
        for owner in ctx["knees"]:
            if "/" in owner:  # a curve: one buffer under one protocol
                b, p = owner.split("/", 1)
                rows = (buffer == CATEGORIES[BUFFER].index(b)) & (protocol == PROTOCOLS.index(p))
            else:  # a protocol label (the previous rule)
                rows = protocol == PROTOCOLS.index(owner)
            slope = np.exp(theta[ix[f"ln_knee_slope@{owner}"]])
            onset = np.exp(theta[ix[f"ln_knee_onset@{owner}"]])
            width = np.exp(theta[ix[f"ln_knee_width@{owner}"]])
            knee = np.where(rows, knee + slope * width * _softplus((n - onset) / width), knee)
        steps = np.maximum(n - 1.0, 0.0)
        log_loss = np.exp(ln_early) * -np.expm1(-steps / np.exp(ln_n0)) + np.exp(ln_linear) * steps + knee
        return TARGET_SPACES[CAPACITY_RETENTION].forward(np.exp(-log_loss))


def _curve_rows(frame: pd.DataFrame, curve: str) -> np.ndarray:
    """Rows of ``frame`` on the curve ``"buffer/protocol"``."""
    buffer, protocol = curve.split("/", 1)
    return ((frame[BUFFER].astype(str) == buffer) & (frame[PROTOCOL].astype(str) == protocol)).to_numpy()


def knee_candidates(frame: pd.DataFrame, knee_by: str = "curve") -> list[str]:
    """What may carry a knee in ``frame`` (canonical features): every curve ``"buffer/protocol"`` with at least
    :data:`KNEE_MIN_POINTS` distinct cycle counts (``knee_by="curve"``), or every protocol whose data reaches
    :data:`KNEE_MIN_CYCLES` cycles (``knee_by="protocol"``, the previous rule)."""
    if knee_by == "protocol":
        protocols = [p for p in PROTOCOLS if p in set(frame[PROTOCOL])]
        return [p for p in protocols if frame.loc[frame[PROTOCOL] == p, CYCLES].max() >= KNEE_MIN_CYCLES]
    curves = (frame[BUFFER].astype(str) + "/" + frame[PROTOCOL].astype(str)).to_numpy()
    distinct = pd.Series(frame[CYCLES].to_numpy(float)).groupby(curves).nunique()
    return [str(curve) for curve, count in distinct.items() if count >= KNEE_MIN_POINTS]


FORMS: dict[str, type[_Law]] = {ARRHENIUS.name: _ArrheniusLaw, RATE.name: _RateLaw, FADE.name: _FadeLaw}
"""The baseline's least-squares form of each law of :data:`surrogate.laws.LAWS`, by the law's name (the name a
target declares as its ``physics_law``)."""


# ------------------------------------------------------------------ fitting machinery
@dataclass
class _Fit:
    law: _Law
    theta: np.ndarray
    cov: np.ndarray  # of theta + extra parameters
    residual_variance: float  # in the law's fit space
    dof: int
    rss: float
    n: int


def _residuals(
    law: _Law, theta: np.ndarray, columns: dict[str, np.ndarray], target_values: np.ndarray, space
) -> np.ndarray:
    full = np.concatenate([theta, np.zeros(len(law.extra_names))])
    pred = law.natural(full, columns)
    if law.fit_space == "contract":
        return space.inverse(pred) - target_values
    return pred - target_values


def _fit_law(law: _Law, frame: pd.DataFrame, y: np.ndarray, target: str) -> _Fit:
    space = TARGET_SPACES[target]
    observed = space.inverse(y) if law.fit_space == "contract" else y
    columns = _columns(DesignBatch.from_frame(frame))
    n, p = len(y), len(law.names)
    if n <= p:
        raise InputError(
            f"{target}: {n} rows cannot fit the {p} parameters of the physics law ({', '.join(law.names)})"
        )
    start = np.clip(law.start, law.lower + 1e-9, law.upper - 1e-9)
    result = least_squares(
        lambda th: _residuals(law, th, columns, observed, space),
        start,
        bounds=(law.lower, law.upper),
        method="trf",
        x_scale="jac",
        max_nfev=2000,
    )
    rss = float(np.sum(result.fun**2))
    dof = n - p
    s2 = rss / dof
    jac = result.jac
    cov = s2 * np.linalg.pinv(jac.T @ jac)
    extra = law.extra_variances(result.x)
    full_cov = np.zeros((p + len(extra), p + len(extra)))
    full_cov[:p, :p] = cov
    full_cov[p:, p:] = np.diag(extra) if extra else full_cov[p:, p:]
    return _Fit(law, result.x, full_cov, s2, dof, rss, n)


def _bic(fit: _Fit) -> float:
    k = len(fit.law.names)
    return fit.n * np.log(max(fit.rss, 1e-300) / fit.n) + k * np.log(fit.n)


# ------------------------------------------------------------------ the estimator
class PhysicsBaseline(RegressorMixin, BaseEstimator):
    """Physics laws with parameters fitted to the data, for one target (see the module docstring).

    Parameters
    ----------
    target : one of ``conductivity_s_cm``, ``rate_retention``, ``capacity_retention``.
    knee : ``"auto"`` (try a knee on each candidate, keep it when the BIC improves by more than 10),
        ``"never"`` or ``"always"`` (on every candidate); capacity retention only.
    knee_by : ``"curve"`` (candidates: each buffer × protocol curve with ≥ :data:`KNEE_MIN_POINTS` distinct
        cycles; a property of the curve) or ``"protocol"`` (the previous rule: each protocol label whose data
        reaches 200 cycles, one knee shared by its curves); capacity retention only.

    ``fit(X, y)``: X has the target's design columns, y the target in natural space
    (log10 σ; logit retention). ``predict(X, return_std=True)`` returns mean and a
    predictive standard deviation that includes measurement noise, in natural space.
    """

    def __init__(self, target: str = CONDUCTIVITY, knee: str = "auto", knee_by: str = "curve") -> None:
        self.target = target
        self.knee = knee
        self.knee_by = knee_by

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsBaseline:
        self.__dict__.pop("_vectors", None)  # derived from a previous fit
        target = check_target(self.target)
        if self.knee not in ("auto", "never", "always"):
            raise InputError(f"knee: {self.knee!r} must be 'auto', 'never' or 'always'")
        if self.knee_by not in KNEE_SCOPES:
            raise InputError(f"knee_by: {self.knee_by!r} must be one of {', '.join(KNEE_SCOPES)}")
        frame = canonical_features(X, target).reset_index(drop=True)
        values = check_y(y, len(frame))
        law = law_of(target)  # InputError when the target declares none
        if law.name not in FORMS:
            raise InputError(f"{target}: the physics baseline has no form of the law {law.name!r}; use another family")
        form = FORMS[law.name]
        materials = sorted(set(frame[MATERIAL]))
        if len(materials) > 1:
            raise InputError(
                f"{target}: the physics baseline fits one material at a time; the data has {', '.join(materials)}"
            )
        self.vocabulary_ = Vocabulary.learn(frame)
        fit = _fit_law(form.build(frame, values), frame, values, target)
        if law.knee:  # a knee per candidate curve (or protocol), kept by the BIC
            candidates = knee_candidates(frame, self.knee_by)
            if self.knee == "always" and candidates:
                fit = _fit_law(form.build(frame, values, tuple(candidates)), frame, values, target)
            elif self.knee == "auto":
                for candidate in candidates:
                    knees = fit.law.context["knees"] + (candidate,)
                    trial = _fit_law(form.build(frame, values, knees), frame, values, target)
                    if _bic(trial) < _bic(fit) - KNEE_MIN_BIC_GAIN:
                        fit = trial
        self.law_ = fit.law
        self.params_ = dict(zip(fit.law.names, fit.theta.tolist(), strict=True))
        self.theta_ = fit.theta
        self.cov_ = fit.cov
        self.residual_variance_ = fit.residual_variance
        self.dof_ = fit.dof
        self.n_features_in_ = frame.shape[1]
        self.feature_names_in_ = np.array(list(frame.columns), dtype=object)
        if form is _ArrheniusLaw:
            table = self.activation_energies()
            self.activation_energy_ev_ = dict(zip(table[ANNEAL_TEMP_C], table["ea_ev"], strict=True))
            self.activation_energy_se_ev_ = dict(zip(table[ANNEAL_TEMP_C], table["ea_se_ev"], strict=True))
        return self

    def _parameter_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(θ with the pseudo-parameters at 0, finite-difference step per parameter, [θ | θ + step_j e_j] by column).

        Derived from the fit once per process (not pickled: see ``__getstate__``).
        """
        vectors = self.__dict__.get("_vectors")
        if vectors is None:
            full = np.concatenate([self.theta_, np.zeros(len(self.law_.extra_names))])
            steps = 1e-6 * np.maximum(1.0, np.abs(full))
            vectors = self.__dict__["_vectors"] = (full, steps, np.column_stack([full, full[:, None] + np.diag(steps)]))
        return vectors

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_vectors", None)
        return state

    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("PhysicsBaseline is not fitted yet: call fit(X, y) first")

    def predict(self, X: pd.DataFrame, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean (and predictive std incl. noise) in natural space for the rows of ``X``."""
        self._check_fitted()
        return self.predict_batch(DesignBatch.from_frame(canonical_features(X, self.target)), return_std)

    def predict_batch(
        self, designs: DesignBatch, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on validated designs (arrays, no checks)."""
        self._check_fitted()
        law = self.law_
        columns = _columns(designs)
        full, steps, thetas = self._parameter_vectors()
        if not return_std:
            return law.natural(full, columns)
        # Forward differences: column j of the Jacobian from θ with parameter j moved by its step.
        if law.batched:  # every shifted θ in one pass: columns (rows, 1) against θ (parameters, 1 + parameters)
            values = law.natural(thetas, {name: v[:, None] for name, v in columns.items()})
            mean = values[:, 0]
            jac = (values[:, 1:] - mean[:, None]) / steps
        else:
            mean = law.natural(full, columns)
            jac = np.empty((len(designs), full.size))
            for j in range(full.size):
                shifted = full.copy()
                shifted[j] += steps[j]
                jac[:, j] = (law.natural(shifted, columns) - mean) / steps[j]
        parameter_var = np.einsum("ij,jk,ik->i", jac, self.cov_, jac)
        if law.fit_space == "contract":
            r = _clip(TARGET_SPACES[self.target].inverse(mean), _RETENTION_CLIP, 1.0 - _RETENTION_CLIP)
            noise_var = self.residual_variance_ / (r * (1.0 - r)) ** 2
        else:
            noise_var = np.full(mean.shape, self.residual_variance_)
        return mean, _t_inflation(self.dof_) * np.sqrt(np.maximum(parameter_var, 0.0) + noise_var)

    def activation_energies(self) -> pd.DataFrame:
        """Ea ± SE per anneal state in both Arrhenius forms, labelled.

        Columns: ``anneal_temp_c`` (°C); ``ea_ev``, ``ea_se_ev`` (eV): the σ·T form, ln(σT) = ln A − Ea/kT,
        from the fitted law (its parameter covariance); ``ln_prefactor`` (ln A, A in S·K/cm);
        ``ea_sigma_ev``, ``ea_sigma_se_ev`` (eV): the σ form, ln σ = ln A' − Ea/kT, an ordinary
        least-squares line through the state's points (SE from its residuals; NaN with only two test
        temperatures, where a line has no residual); ``n_temperatures``. The two forms differ by about kT
        (≈ 0.03 eV near room temperature): quote the form with the number. Conductivity models only.
        """
        self._check_fitted()
        if self.law_.__class__ is not _ArrheniusLaw:
            raise InputError(f"activation energies exist for the {CONDUCTIVITY} model only, not {self.target}")
        states = self.law_.context["states"]
        n = states.size
        se = np.sqrt(np.maximum(np.diag(self.cov_)[n : 2 * n], 0.0))
        sigma_form = self.law_.context.get("sigma_form", {})
        return pd.DataFrame(
            {
                ANNEAL_TEMP_C: states.astype(float),
                "ea_ev": self.theta_[n : 2 * n],
                "ea_se_ev": se,
                "ln_prefactor": self.theta_[:n],
                "ea_sigma_ev": [sigma_form.get(float(s), (np.nan, np.nan, 0))[0] for s in states],
                "ea_sigma_se_ev": [sigma_form.get(float(s), (np.nan, np.nan, 0))[1] for s in states],
                "n_temperatures": [sigma_form.get(float(s), (np.nan, np.nan, 0))[2] for s in states],
            }
        )
