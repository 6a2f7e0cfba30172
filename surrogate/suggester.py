"""What to measure next: the campaign suggester's models and batch acquisition.

A space-filling start (scrambled Sobol over the continuous variables, buffers
cycled evenly) while a campaign has no measurement of every target of its
objective, then Bayesian optimisation: an :class:`ObjectiveModel` fitted to
the campaign's own results (and the warm-start rows) — for retention
objectives the :class:`PhysicsModel` (the project's rate and fade laws with
few shared parameters, Arrhenius in temperature, the film's conductivity from
the embedded film data, Laplace parameter uncertainty), for conductivity a
:class:`PhysicsGP` — and batches chosen greedily by Monte-Carlo expected
improvement over candidates covering every buffer of the space (an untried
buffer keeps its prior uncertainty, so it is tried when it could win), with
the earlier picks and pending suggestions held as fantasies ("kriging
believer"), never two picks closer than :data:`MIN_SEPARATION`.

The models use the project's functional forms (resistance-limited rate law,
Arrhenius interface and fade, log-space fade), never the virtual lab's
calibrated constants. State (what was suggested and observed) lives in
:mod:`surrogate.campaign`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import least_squares, minimize
from scipy.stats import qmc

from surrogate.design import (
    ANNEAL_TEMP_C,
    AS_DEPOSITED_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    TEST_TEMP_C,
    DesignSpace,
)
from surrogate.errors import InputError
from surrogate.models.base import FEATURES, TARGET_SPACES
from surrogate.objectives import Objective
from surrogate.physics import K_B_EV, kelvin, relative_rate_retention

MATCH_TOLERANCE_C = 0.5
"""An observed design matches a pending suggestion when its temperatures are within this many °C."""
MIN_SEPARATION = 0.03
"""Smallest distance between two suggestions of the same buffer, in units of the scaled (0-1) space."""
N_CANDIDATES = 256
"""Sobol candidates per buffer for the acquisition (plus local candidates around the best results)."""


# ==================================================================== film conductivity (Gaussian process)
def _inv_temp(test_temp_c: np.ndarray) -> np.ndarray:
    """Arrhenius coordinate scaled to about [0, 1] over 25-120 °C: 0 at 25 °C, rising with temperature."""
    return (1000.0 / kelvin(25.0) - 1000.0 / kelvin(test_temp_c)) / 0.8


def _anneal(anneal_temp_c: np.ndarray) -> np.ndarray:
    """Anneal temperature scaled to about [0, 1] over 25-500 °C."""
    return (np.asarray(anneal_temp_c, dtype=float) - 25.0) / 475.0


@dataclass
class PhysicsGP:
    """Gaussian process of one target in its natural space (log10 σ, logit retention), physics-structured.

    Used for conductivity (the film model and conductivity campaigns). Kernel on (buffer, anneal, T): a
    buffer offset, an Arrhenius term linear in 1/T, a smooth RBF over (anneal, 1/T), a buffer-specific RBF
    for interactions, and measurement noise. Inputs a target does not depend on (see
    :data:`surrogate.models.base.FEATURES`) are left out. Hyperparameters are the maximum a posteriori of
    the marginal likelihood under weak log-normal priors.
    """

    target: str
    use_buffer: bool = field(init=False)
    use_anneal: bool = field(init=False)

    def __post_init__(self) -> None:
        self.use_buffer = BUFFER in FEATURES[self.target]
        self.use_anneal = ANNEAL_TEMP_C in FEATURES[self.target]

    # parameters (log): buffer sd, linear sd, rbf sd, interaction sd, length anneal, length 1/T, noise sd
    _PRIOR_MEAN = np.log([1.0, 1.0, 0.7, 0.3, 0.3, 0.5, 0.1])
    _PRIOR_SD = np.array([1.0, 1.0, 1.0, 1.0, 0.7, 0.7, 1.0])
    _LOW = np.log([1e-2, 1e-2, 1e-2, 1e-3, 0.05, 0.08, 5e-3])
    _HIGH = np.log([10.0, 10.0, 10.0, 5.0, 3.0, 5.0, 1.0])

    def _encode(self, designs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        buffers = designs[BUFFER].astype(str).to_numpy() if self.use_buffer else np.full(len(designs), "all")
        anneal = _anneal(designs[ANNEAL_TEMP_C].to_numpy(float)) if self.use_anneal else np.zeros(len(designs))
        return buffers, np.column_stack([anneal, _inv_temp(designs[TEST_TEMP_C].to_numpy(float))])

    def _kernel(self, theta: np.ndarray, b1, x1, b2, x2) -> np.ndarray:
        s_b, s_lin, s_f, s_i, l_a, l_t = np.exp(theta[:6])
        same = (b1[:, None] == b2[None, :]).astype(float)
        d2 = ((x1[:, None, 0] - x2[None, :, 0]) / l_a) ** 2 + ((x1[:, None, 1] - x2[None, :, 1]) / l_t) ** 2
        rbf = np.exp(-0.5 * d2)
        k = s_f**2 * rbf + s_lin**2 * np.outer(x1[:, 1], x2[:, 1])
        if self.use_buffer:
            k = k + same * (s_b**2 + s_i**2 * rbf)
        return k

    def _neg_log_posterior(self, theta: np.ndarray) -> float:
        k = self._kernel(theta, self.b_, self.x_, self.b_, self.x_) + (np.exp(theta[6]) ** 2 + 1e-8) * np.eye(
            len(self.y_)
        )
        try:
            factor = cho_factor(k, lower=True)
        except np.linalg.LinAlgError:
            return 1e10
        alpha = cho_solve(factor, self.y_)
        nll = 0.5 * self.y_ @ alpha + np.log(np.diag(factor[0])).sum()
        prior = 0.5 * (((theta - self._PRIOR_MEAN) / self._PRIOR_SD) ** 2).sum()
        return float(nll + prior)

    def fit(self, designs: pd.DataFrame, y: np.ndarray) -> PhysicsGP:
        """Fit to canonical designs and target values in contract units (S/cm or fractions)."""
        natural = TARGET_SPACES[self.target].forward(np.asarray(y, dtype=float))
        self.b_, self.x_ = self._encode(designs)
        self.offset_ = float(np.mean(natural))
        self.scale_ = float(max(np.std(natural), 0.25)) if len(natural) > 1 else 1.0
        self.y_ = (natural - self.offset_) / self.scale_
        bounds = list(zip(self._LOW, self._HIGH, strict=True))
        best = None
        for start in (self._PRIOR_MEAN, self._PRIOR_MEAN + np.array([0, 0, 0.5, 0.5, -0.5, -0.5, -1.0])):
            result = minimize(self._neg_log_posterior, start, method="L-BFGS-B", bounds=bounds)
            if best is None or result.fun < best.fun:
                best = result
        self.theta_ = best.x
        self._factorise()
        return self

    def _factorise(self) -> None:
        noise = np.exp(self.theta_[6]) ** 2 + 1e-8
        k = self._kernel(self.theta_, self.b_, self.x_, self.b_, self.x_) + noise * np.eye(len(self.y_))
        self.factor_ = cho_factor(k, lower=True)
        self.alpha_ = cho_solve(self.factor_, self.y_)

    def condition_on(self, designs: pd.DataFrame, natural_means: np.ndarray) -> PhysicsGP:
        """A copy that also holds ``designs`` at the given natural-space values (fantasies for batches)."""
        other = PhysicsGP(self.target)
        b, x = self._encode(designs)
        other.theta_, other.offset_, other.scale_ = self.theta_, self.offset_, self.scale_
        other.b_ = np.concatenate([self.b_, b])
        other.x_ = np.vstack([self.x_, x])
        other.y_ = np.concatenate([self.y_, (np.asarray(natural_means) - self.offset_) / self.scale_])
        other._factorise()
        return other

    def predict(self, designs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Latent mean and standard deviation in the natural space (without measurement noise)."""
        b, x = self._encode(designs)
        k_star = self._kernel(self.theta_, b, x, self.b_, self.x_)
        mean = k_star @ self.alpha_
        v = cho_solve(self.factor_, k_star.T)
        s_b, s_lin, s_f, s_i = np.exp(self.theta_[:4])
        prior = s_f**2 + s_lin**2 * x[:, 1] ** 2 + ((s_b**2 + s_i**2) if self.use_buffer else 0.0)
        var = np.maximum(prior - np.einsum("ij,ji->i", k_star, v), 1e-12)
        return self.offset_ + self.scale_ * mean, self.scale_ * np.sqrt(var)


_FILM_MODEL: list[Any] = []


def film_log10_conductivity(designs: pd.DataFrame) -> np.ndarray:
    """log10 σ (S/cm) of the LLTO film at (anneal_temp_c, test_temp_c), from the embedded film data.

    The project's physics baseline (Arrhenius per anneal state, interpolated between the states) fitted
    to the embedded film data, a reconstruction of the paper's measurements, once per process.
    """
    if designs.empty:
        return np.zeros(0)
    if not _FILM_MODEL:
        from surrogate.dataset import load_default_dataset
        from surrogate.models.physics_baseline import PhysicsBaseline

        data = load_default_dataset()
        films = data[data[CONDUCTIVITY].notna()]
        natural = TARGET_SPACES[CONDUCTIVITY].forward(films[CONDUCTIVITY].to_numpy(float))
        _FILM_MODEL.append(PhysicsBaseline(CONDUCTIVITY).fit(films[[ANNEAL_TEMP_C, TEST_TEMP_C]], natural))
    return np.asarray(_FILM_MODEL[0].predict(designs[[ANNEAL_TEMP_C, TEST_TEMP_C]]), dtype=float)


# ==================================================================== physics-parametric cell model
MIN_FADE_CYCLES = 80
"""Capacity rows at fewer cycles are left out of the fade law: its early drop is taken as complete by then."""
READING_SD = 0.01
"""Assumed resolution of a retention reading (fraction); it widens the noise where a reading is insensitive."""
PRIOR_NOISE_SD = 0.07
"""Prior guess of the cell-to-cell scatter (log units) of ln C* and of the fade; updated from the residuals."""
PRIOR_NOISE_WEIGHT = 4.0
"""Pseudo-observations behind :data:`PRIOR_NOISE_SD`."""
N_DRAWS = 256
"""Posterior draws of the parameters (Laplace approximation) for the Monte-Carlo expected improvement."""

_NB = len(BUFFERS)
_RHO, _GAMMA, _DELTA, _ETA = (slice(i * _NB, (i + 1) * _NB) for i in range(4))
_EA_I, _EPS, _LAM, _EA_F, _CURVE = (4 * _NB + i for i in range(5))
_N_PARAMS = 4 * _NB + 5
# Weakly informative priors (mean, sd) of the parameters; see PhysicsModel for their meaning and units.
_PRIOR_MEAN = np.array([-3.0] * _NB + [-1.5] * _NB + [0.0] * _NB + [0.0] * _NB + [0.4, -3.0, -1.0, 0.3, 1e-3])
_PRIOR_SD = np.array([3.0] * _NB + [2.0] * _NB + [0.5] * _NB + [0.1] * _NB + [0.2, 3.0, 1.0, 0.2, 0.02])
_LOWER = np.full(_N_PARAMS, -np.inf)
_UPPER = np.full(_N_PARAMS, np.inf)
_LOWER[[_EA_I, _EA_F, _CURVE]] = 0.0
_UPPER[[_EA_I, _EA_F]] = 1.5


def _arrhenius_u(test_temp_c: np.ndarray) -> np.ndarray:
    """(1/T − 1/T₂₅)/k_B in 1/eV: 0 at 25 °C, negative above (multiplies an activation energy in eV)."""
    return (1.0 / kelvin(test_temp_c) - 1.0 / kelvin(25.0)) / K_B_EV


def rate_from_log_c_star(c_rate: np.ndarray, log_c_star: np.ndarray) -> np.ndarray:
    """Rate retention (fraction of the 0.1 C capacity) at ``c_rate`` (C) of a cell with characteristic rate e^log_c_star."""
    c_star = np.exp(log_c_star)
    return relative_rate_retention(c_rate, c_star)


def log_c_star_from_rate(c_rate: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """ln C* (C* in C) of a cell keeping ``rate`` of its 0.1 C capacity at ``c_rate`` (C): the inverse, by bisection."""
    target = np.clip(np.asarray(rate, dtype=float), 1e-4, 1.0 - 1e-4)
    low, high = np.full(target.shape, -12.0), np.full(target.shape, 16.0)
    for _ in range(60):
        mid = 0.5 * (low + high)
        above = rate_from_log_c_star(c_rate, mid) > target
        high, low = np.where(above, mid, high), np.where(above, low, mid)
    return 0.5 * (low + high)


class PhysicsModel:
    """Rate retention and capacity retention of a cell by the project's laws, fitted with parameter uncertainty.

    The functional forms are those of :mod:`surrogate.physics` (none of the lab's constants is read):

    * rate: a resistance-limited cell, retention (C*/C)(1 − e^(−C/C*)) normalised at 0.1 C, with
      1/C* = e^(ρ_b + Ea_i·u) + e^(ε)·σ₀/σ(anneal, T): an interface term per buffer ``b`` (ρ_b) with an
      Arrhenius activation energy Ea_i (eV) shared by the buffers, plus the electrolyte's resistance,
      inversely proportional to the film's conductivity σ (from the project's film data, see
      :func:`film_log10_conductivity`); u = (1/T − 1/T₂₅)/k_B.
    * fade: −ln(retention after N cycles) = e^(γ_b)·(1 + e^(λ + δ_b)·(N − 1)/100·e^(−Ea_f·u)): an early drop
      per buffer plus a steady fade accelerated by temperature with Ea_f (eV) shared by the buffers; the
      ratio of steady to early fade is shared (λ) up to small buffer deviations δ_b.

    Fitted by maximum a posteriori (weakly informative priors) to ln C* inverted from each rate reading
    and to ln(−ln retention); the noise (cell-to-cell scatter in log units) is estimated from the
    residuals with a prior weight. Uncertainty: the Laplace approximation (Gauss-Newton Hessian), from
    which :meth:`sample` draws parameters; :meth:`fantasise` shrinks it as if designs had been measured
    at the predicted values (for diverse batches).
    """

    def __init__(self, c_rate: float, cycles: int, protocol: str, seed: int = 0) -> None:
        self.c_rate = c_rate
        self.cycles = cycles
        self.protocol = protocol
        self.seed = seed

    # ------------------------------------------------------------ features and laws
    @staticmethod
    def _features(designs: pd.DataFrame) -> dict[str, np.ndarray]:
        buffers = designs[BUFFER].astype(str).to_numpy()
        films = pd.DataFrame(
            {ANNEAL_TEMP_C: designs[ANNEAL_TEMP_C].to_numpy(float), TEST_TEMP_C: designs[TEST_TEMP_C].to_numpy(float)}
        )
        reference = film_log10_conductivity(pd.DataFrame({ANNEAL_TEMP_C: [AS_DEPOSITED_C], TEST_TEMP_C: [25.0]}))[0]
        return {
            "b": np.array([BUFFERS.index(b) for b in buffers], dtype=int),
            "u": _arrhenius_u(films[TEST_TEMP_C].to_numpy()),
            "ln_s": np.log(10.0) * (reference - film_log10_conductivity(films)),
        }

    @staticmethod
    def _laws(theta: np.ndarray, f: dict[str, np.ndarray], cycles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ln(1/C*) and ln(−ln retention), each (draws × designs), for parameter rows ``theta``."""
        b, u = f["b"], f["u"][None, :]
        ln_inv_c_star = np.logaddexp(
            theta[:, _RHO][:, b] + theta[:, [_EA_I]] * u, theta[:, [_EPS]] + f["ln_s"][None, :]
        )
        steady = np.exp(theta[:, [_LAM]] + theta[:, _DELTA][:, b]) * ((np.asarray(cycles) - 1.0) / 100.0)
        ea_fade = theta[:, [_EA_F]] + theta[:, _ETA][:, b]
        ln_fade = theta[:, _GAMMA][:, b] + np.log1p(steady * np.exp(-ea_fade * u + theta[:, [_CURVE]] * u**2))
        return ln_inv_c_star, ln_fade

    # ------------------------------------------------------------ fit
    def _data(self, observed: pd.DataFrame) -> dict[str, Any]:
        data: dict[str, Any] = {}
        rows = observed.assign(**{t: np.nan for t in (RATE_RETENTION, CAPACITY_RETENTION) if t not in observed})
        rate_rows = rows[rows[RATE_RETENTION].notna() & (rows[C_RATE].astype(float) > REFERENCE_C_RATE)]
        c_rate = rate_rows[C_RATE].to_numpy(float)
        rate = rate_rows[RATE_RETENTION].to_numpy(float)
        log_c = log_c_star_from_rate(c_rate, rate)
        slope = (rate_from_log_c_star(c_rate, log_c + 0.01) - rate_from_log_c_star(c_rate, log_c - 0.01)) / 0.02
        data["rate"] = (self._features(rate_rows), -log_c, READING_SD / np.maximum(slope, 1e-6))
        fade_rows = rows[
            rows[CAPACITY_RETENTION].notna()
            & (rows[CYCLES].astype(float) >= MIN_FADE_CYCLES)
            & (rows[PROTOCOL].astype(str) == self.protocol)
        ]
        retention = np.clip(fade_rows[CAPACITY_RETENTION].to_numpy(float), 1e-4, 1.0 - 1e-4)
        data["fade"] = (
            self._features(fade_rows),
            np.log(-np.log(retention)),
            READING_SD / np.abs(retention * np.log(retention)),
            fade_rows[CYCLES].to_numpy(float),
        )
        data["rate_cycles"] = np.full(len(rate_rows), float(self.cycles))
        return data

    def _residuals(self, theta: np.ndarray, data: dict[str, Any], noise: tuple[float, float]) -> np.ndarray:
        f_rate, y_rate, read_rate = data["rate"]
        f_fade, y_fade, read_fade, fade_cycles = data["fade"]
        parts = []
        if len(y_rate):
            predicted = self._laws(theta[None, :], f_rate, data["rate_cycles"])[0][0]
            parts.append((predicted - y_rate) / np.sqrt(noise[0] ** 2 + read_rate**2))
        if len(y_fade):
            predicted = self._laws(theta[None, :], f_fade, fade_cycles)[1][0]
            parts.append((predicted - y_fade) / np.sqrt(noise[1] ** 2 + read_fade**2))
        parts.append((theta - _PRIOR_MEAN) / _PRIOR_SD)
        return np.concatenate(parts)

    def _starts(self, data: dict[str, Any]) -> list[np.ndarray]:
        f_rate, y_rate, _ = data["rate"]
        f_fade, y_fade, _, _ = data["fade"]
        start = _PRIOR_MEAN.copy()
        for i in range(_NB):
            if np.any(f_rate["b"] == i):
                start[_RHO][i] = np.mean(y_rate[f_rate["b"] == i])
            if np.any(f_fade["b"] == i):
                start[_GAMMA][i] = np.mean(y_fade[f_fade["b"] == i]) - 1.0
        electrolyte = start.copy()
        electrolyte[_EPS] = (np.mean(y_rate) if len(y_rate) else _PRIOR_MEAN[_EPS]) - 0.5
        return [start, electrolyte]

    def fit(self, observed: pd.DataFrame) -> PhysicsModel:
        """Fit to rows with designs, conditions (c_rate, cycles, protocol) and measured targets (NaN = not measured)."""
        data = self._data(observed)
        noise = (PRIOR_NOISE_SD, PRIOR_NOISE_SD)
        best = None
        for start in self._starts(data):
            result = least_squares(
                self._residuals, start, args=(data, noise), bounds=(_LOWER, _UPPER), method="trf", x_scale=1.0
            )
            if best is None or result.cost < best.cost:
                best = result
        # Noise from the residuals (log units), with the prior guess as PRIOR_NOISE_WEIGHT pseudo-observations.
        estimates = []
        for key, law in (("rate", 0), ("fade", 1)):
            features, y, read = data[key][:3]
            cycles = data["fade"][3] if key == "fade" else data["rate_cycles"]
            if len(y):
                residual = self._laws(best.x[None, :], features, cycles)[law][0] - y
                excess = np.maximum(residual**2 - read**2, 0.0).sum()
            else:
                excess = 0.0
            estimates.append(
                float(np.sqrt((PRIOR_NOISE_WEIGHT * PRIOR_NOISE_SD**2 + excess) / (PRIOR_NOISE_WEIGHT + len(y))))
            )
        self.noise_ = (estimates[0], estimates[1])
        result = least_squares(
            self._residuals, best.x, args=(data, self.noise_), bounds=(_LOWER, _UPPER), method="trf", x_scale=1.0
        )
        self.theta_ = result.x
        self.precision_ = result.jac.T @ result.jac
        self._factorise()
        return self

    def _factorise(self) -> None:
        cov = np.linalg.inv(self.precision_ + 1e-9 * np.eye(_N_PARAMS))
        self.chol_ = np.linalg.cholesky(0.5 * (cov + cov.T) + 1e-12 * np.eye(_N_PARAMS))
        z = np.random.default_rng(self.seed).standard_normal((N_DRAWS, _N_PARAMS))
        self.draws_ = np.clip(self.theta_ + z @ self.chol_.T, _LOWER, _UPPER)

    # ------------------------------------------------------------ predict
    def sample(self, designs: pd.DataFrame) -> dict[str, np.ndarray]:
        """Posterior draws (designs × :data:`N_DRAWS`) of rate and capacity retention (fractions) at the conditions."""
        f = self._features(designs)
        ln_inv_c_star, ln_fade = self._laws(self.draws_, f, np.full(len(designs), float(self.cycles)))
        return {
            RATE_RETENTION: rate_from_log_c_star(self.c_rate, -ln_inv_c_star).T,
            CAPACITY_RETENTION: np.exp(-np.exp(ln_fade)).T,
        }

    def fantasise(self, designs: pd.DataFrame, targets: tuple[str, ...]) -> PhysicsModel:
        """A copy whose uncertainty is as if ``targets`` had been measured at ``designs`` (values at the estimate)."""
        f = self._features(designs)
        cycles = np.full(len(designs), float(self.cycles))
        step = 1e-4
        shifted = self.theta_[None, :] + step * np.vstack([np.zeros(_N_PARAMS), np.eye(_N_PARAMS)])
        ln_inv_c_star, ln_fade = self._laws(shifted, f, cycles)
        other = PhysicsModel(self.c_rate, self.cycles, self.protocol, self.seed)
        other.theta_, other.noise_ = self.theta_, self.noise_
        other.precision_ = self.precision_.copy()
        for values, noise, target in (
            (ln_inv_c_star, self.noise_[0], RATE_RETENTION),
            (ln_fade, self.noise_[1], CAPACITY_RETENTION),
        ):
            if target in targets:
                jac = (values[1:] - values[0]) / step  # parameters × designs
                other.precision_ += jac @ jac.T / noise**2
        other._factorise()
        return other


# ==================================================================== objective models
class ObjectiveModel:
    """Posterior draws of a campaign's objective: the physics model for retentions, a GP for conductivity."""

    def __init__(self, objective: Objective, seed: int = 0) -> None:
        self.objective = objective
        self.seed = seed

    def fit(self, observed: pd.DataFrame) -> ObjectiveModel:
        """Fit to the campaign's observations (designs, conditions, measured targets; see :meth:`Campaign.observations`)."""
        if CONDUCTIVITY in self.objective.targets:
            rows = observed[observed[CONDUCTIVITY].notna()] if CONDUCTIVITY in observed else observed.iloc[:0]
            if rows.empty:
                raise InputError(f"cannot model {CONDUCTIVITY}: the campaign has no measurement of it yet")
            self.gp_ = PhysicsGP(CONDUCTIVITY).fit(rows, rows[CONDUCTIVITY].to_numpy(float))
            self.z_ = np.random.default_rng(self.seed).standard_normal(N_DRAWS)
        else:
            o = self.objective
            self.cell_ = PhysicsModel(o.c_rate, o.cycles, o.protocol, self.seed).fit(observed)
        return self

    def sample(self, designs: pd.DataFrame) -> np.ndarray:
        """Draws (designs × :data:`N_DRAWS`) of the objective in its units."""
        if hasattr(self, "gp_"):
            mean, sd = self.gp_.predict(designs)
            return TARGET_SPACES[CONDUCTIVITY].inverse(mean[:, None] + sd[:, None] * self.z_[None, :])
        draws = self.cell_.sample(designs)
        return self.objective.value({t: draws[t] for t in self.objective.targets})

    def fantasise(self, designs: pd.DataFrame) -> ObjectiveModel:
        """A copy conditioned on ``designs`` measured at the predicted values (kriging believer)."""
        other = ObjectiveModel(self.objective, self.seed)
        if hasattr(self, "gp_"):
            other.gp_ = self.gp_.condition_on(designs, self.gp_.predict(designs)[0])
            other.z_ = self.z_
        else:
            other.cell_ = self.cell_.fantasise(designs, self.objective.targets)
        return other


def _scaled(frame: pd.DataFrame, space: DesignSpace) -> np.ndarray:
    """Continuous design variables scaled to [0, 1] over the space's effective ranges."""
    columns = []
    for name, (low, high) in (
        (ANNEAL_TEMP_C, space.effective_anneal_temp_c),
        (TEST_TEMP_C, space.effective_test_temp_c),
    ):
        columns.append((frame[name].to_numpy(float) - low) / max(high - low, 1e-9))
    return np.column_stack(columns)


def _too_close(candidates: pd.DataFrame, taken: pd.DataFrame, space: DesignSpace) -> np.ndarray:
    """True for candidates within :data:`MIN_SEPARATION` of a taken design of the same buffer."""
    if taken.empty:
        return np.zeros(len(candidates), dtype=bool)
    a, b = _scaled(candidates, space), _scaled(taken, space)
    distance = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    same = candidates[BUFFER].to_numpy()[:, None] == taken[BUFFER].to_numpy()[None, :]
    return ((distance < MIN_SEPARATION) & same).any(axis=1)


def space_filling(space: DesignSpace, objective: Objective, start: int, n: int, seed: int) -> pd.DataFrame:
    """Designs ``start`` … ``start + n - 1`` of the campaign's space-filling sequence.

    Scrambled Sobol points over the continuous variables (anneal and, when free, test temperature),
    buffers cycled evenly in the space's order.
    """
    dims = 2 if objective.test_temp_c is None else 1
    sampler = qmc.Sobol(d=dims, scramble=True, seed=seed)
    points = sampler.random_base2(int(np.ceil(np.log2(max(start + n, 2)))))[start : start + n]
    a_low, a_high = space.effective_anneal_temp_c
    t_low, t_high = space.effective_test_temp_c
    rows = []
    for i, point in enumerate(points):
        rows.append(
            {
                BUFFER: space.buffers[(start + i) % len(space.buffers)],
                ANNEAL_TEMP_C: float(a_low + point[0] * (a_high - a_low)),
                TEST_TEMP_C: float(t_low + point[1] * (t_high - t_low)) if dims == 2 else objective.test_temp_c,
            }
        )
    return pd.DataFrame(rows)


def candidate_designs(
    space: DesignSpace,
    objective: Objective,
    rng: np.random.Generator,
    around: pd.DataFrame | None = None,
    only_local: bool = False,
) -> pd.DataFrame:
    """Acquisition candidates: Sobol points for every buffer (unless ``only_local``) plus local points around ``around``."""
    dims = 2 if objective.test_temp_c is None else 1
    a_low, a_high = space.effective_anneal_temp_c
    t_low, t_high = space.effective_test_temp_c
    base = qmc.Sobol(d=2, scramble=True, seed=rng).random_base2(int(np.log2(N_CANDIDATES)))
    frames = []
    for buffer in () if only_local else space.buffers:
        frames.append(
            pd.DataFrame(
                {
                    BUFFER: buffer,
                    ANNEAL_TEMP_C: a_low + base[:, 0] * (a_high - a_low),
                    TEST_TEMP_C: t_low + base[:, 1] * (t_high - t_low) if dims == 2 else objective.test_temp_c,
                }
            )
        )
    if around is not None and not around.empty:
        for _, row in around.iterrows():
            local = rng.normal(0.0, 0.04, size=(64, 2))
            frames.append(
                pd.DataFrame(
                    {
                        BUFFER: row[BUFFER],
                        ANNEAL_TEMP_C: np.clip(row[ANNEAL_TEMP_C] + local[:, 0] * (a_high - a_low), a_low, a_high),
                        TEST_TEMP_C: np.clip(row[TEST_TEMP_C] + local[:, 1] * (t_high - t_low), t_low, t_high)
                        if dims == 2
                        else objective.test_temp_c,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _at_conditions(observed: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Rows measured at the objective's conditions with every target of it present."""
    if observed.empty or any(t not in observed for t in objective.targets):
        return observed.iloc[:0]
    keep = observed[list(objective.targets)].notna().all(axis=1)
    if RATE_RETENTION in objective.targets:
        keep &= np.isclose(observed[C_RATE].astype(float), objective.c_rate)
    if CAPACITY_RETENTION in objective.targets:
        keep &= (observed[CYCLES].astype(float) == objective.cycles) & (observed[PROTOCOL] == objective.protocol)
    if objective.test_temp_c is not None:
        keep &= np.abs(observed[TEST_TEMP_C].astype(float) - objective.test_temp_c) <= MATCH_TOLERANCE_C
    return observed[keep]


def propose_batch(
    space: DesignSpace,
    objective: Objective,
    observed: pd.DataFrame,
    n: int,
    pending: pd.DataFrame | None = None,
    avoid: pd.DataFrame | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``n`` designs by greedy Monte-Carlo expected improvement under an :class:`ObjectiveModel`.

    ``observed`` holds designs (buffer, anneal_temp_c, test_temp_c), their conditions (c_rate, cycles,
    protocol) and a column per measured target (contract units; NaN where not measured). The incumbent is
    the best posterior mean among designs observed at the objective's conditions. ``pending`` designs are
    held as fantasies at their predicted values, as is each pick before the next, so the batch spreads out;
    no pick lies within :data:`MIN_SEPARATION` of another pick, a pending design or an ``avoid`` design
    (failed experiments) of the same buffer. Candidates cover every buffer of the space.
    """
    rng = np.random.default_rng(seed)
    model = ObjectiveModel(objective, seed).fit(observed)
    columns = [BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C]
    measured = _at_conditions(observed, objective)
    incumbent, top = 0.0, measured.iloc[:0]
    if not measured.empty:
        observed_means = model.sample(measured[columns]).mean(axis=1)
        incumbent = float(observed_means.max())
        top = measured.iloc[np.argsort(observed_means)[::-1][:3]][columns]
    base = candidate_designs(space, objective, rng)
    predicted = model.sample(base).mean(axis=1)
    around = pd.concat([top, base.iloc[np.argsort(predicted)[::-1][:3]]], ignore_index=True)
    candidates = pd.concat([base, candidate_designs(space, objective, rng, around, only_local=True)], ignore_index=True)
    taken = pending[columns].copy() if pending is not None and not pending.empty else pd.DataFrame(columns=columns)
    if not taken.empty:
        model = model.fantasise(taken)
    excluded = _too_close(candidates, taken, space)
    if avoid is not None and not avoid.empty:
        excluded |= _too_close(candidates, avoid[columns], space)
    picks = []
    for _ in range(n):
        values = model.sample(candidates)
        ei = np.maximum(values - incumbent, 0.0).mean(axis=1)
        ei[excluded] = -np.inf
        best = int(np.argmax(ei))
        if not np.isfinite(ei[best]):
            break
        pick = candidates.iloc[[best]].reset_index(drop=True)
        picks.append(pick)
        incumbent = max(incumbent, float(values[best].mean()))
        excluded |= _too_close(candidates, pick, space)
        model = model.fantasise(pick)
    return pd.concat(picks, ignore_index=True) if picks else candidates.iloc[:0]


# ==================================================================== the campaign
