"""Equivalent-circuit fit of an impedance spectrum (impedance.py), a Kramers-Kronig check, and sigma.

Circuits (:data:`CIRCUITS`), in impedance.py notation:

- ``R0-p(R1,CPE1)``, the seed paper's: a series resistance R0 (leads, contacts) and the film's bulk arc,
  R1 in parallel with a constant-phase element CPE1. R_bulk = R1.
- ``R0-p(R1,CPE1)-CPE2``, the blocking-electrode form: the same arc plus CPE2 for the polarisation of
  ion-blocking electrodes (the low-frequency spike). R_bulk = R1.

Parameters are named as impedance.py names them: ``R0``, ``R1`` (ohm), ``CPE1_0`` (Q, S s^n), ``CPE1_1``
(n, dimensionless, 0..1).

**Multi-start.** impedance.py 1.7.1 fitted from one naive initial guess converges to wrong minima even on
noise-free data (R0 212 ohm against a true 50). :func:`fit_spectrum` therefore searches from several
starts read off the spectrum itself (R0 = the high-frequency intercept, R1 = the arc's width, Q from the
arc's apex frequency, times a small grid of R1 factors and CPE exponents; :func:`initial_guesses`), and
stops once two starts agree on the lowest residual; the best is refined with 0 <= n <= 1. Each fit is a
``scipy.optimize.least_squares`` on log(R), log(Q) and n with residuals (Z_fit - Z) / abs(Z) (the
weighting of impedance.py's ``weight_by_modulus``), and the circuit is evaluated by impedance.py's own
element functions (``R``, ``CPE``, ``s``, ``p``: the same code ``CustomCircuit`` evaluates). Standard
errors come from the fit covariance, computed as ``curve_fit`` does.

Why not ``CustomCircuit.fit`` itself: it builds and ``eval``s a Python expression at every evaluation
(about 1.5 ms against 0.12 ms for the element functions at 60 points), and it fits the raw parameters,
which span 1e-11 (Q) to 1e5 (R): started *at* the optimum of benchmark case 76 it moved to a point 35 times
worse (mean squared relative residual 6.4e-3 against 1.8e-4), and with ``x_scale`` set to fix that it takes
about 100 ms. ``benchmarks/eis_fit.py`` keeps ``CustomCircuit.fit`` from a naive guess as its baseline.

**Kramers-Kronig.** ``impedance.validation.linKK`` raises ``NameError: name 'np' is not defined`` in
impedance.py 1.7.1 with numpy >= 2: ``eval_linKK`` builds a Python expression from the ``repr`` of numpy
scalars, which numpy 2 prints as ``np.float64(...)``, and evaluates it where ``np`` is not defined (fixed
upstream in ECSHackWeek/impedance.py#298, not released). :func:`kramers_kronig` is a small shim that calls
the module's public pieces (``get_tc_distribution``, ``fit_linKK``) and sums the fitted RC series with
impedance.py's element functions instead of ``eval``; see its docstring. A spectrum with a run of
:data:`KK_MIN_RUN` adjacent frequencies whose residual exceeds :data:`KK_RESIDUAL_LIMIT` is refused.

Bad spectra and bad fits raise :class:`FitError` (a ``DataValidationError``: CLI exit 2, HTTP 400) naming
the file and the reason.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

import numpy as np
from impedance.models.circuits import CustomCircuit
from impedance.models.circuits.elements import CPE, C, K, L, R
from impedance.models.circuits.elements import p as parallel
from impedance.models.circuits.elements import s as series
from impedance.validation import fit_linKK, get_tc_distribution
from scipy.optimize import OptimizeResult, least_squares

from surrogate.errors import DataValidationError, InputError, Problem
from surrogate.ingest.conductivity import Conductivity, film_conductivity
from surrogate.ingest.formats import Spectrum

PAPER_CIRCUIT = "R0-p(R1,CPE1)"
BLOCKING_CIRCUIT = "R0-p(R1,CPE1)-CPE2"
CIRCUITS: dict[str, str] = {
    PAPER_CIRCUIT: "the seed paper's circuit: series resistance and the film's bulk arc (R_bulk = R1)",
    BLOCKING_CIRCUIT: "blocking electrodes: the bulk arc plus a CPE for electrode polarisation (R_bulk = R1)",
}
"""Circuits :func:`fit_spectrum` fits, each with what it describes."""

BULK_PARAMETER = "R1"
"""The parameter that is the film's bulk resistance in every circuit of :data:`CIRCUITS`."""

KK_RESIDUAL_LIMIT = 0.05
"""A lin-KK residual (real or imaginary, relative to abs(Z)) above this is a departure from Kramers-Kronig."""

KK_MIN_RUN = 3
"""A spectrum fails Kramers-Kronig when this many adjacent frequencies depart (one or two are noise)."""

KK_RC_PER_DECADE = 3
"""RC elements per decade of frequency in the lin-KK series."""

MAX_RELATIVE_RMSE = 0.05
"""Largest modulus-weighted rms residual of an accepted fit (0.05 = 5% of abs(Z))."""

MAX_R_BULK_RELATIVE_STDERR = 0.5
"""Largest relative standard error of R_bulk in an accepted fit; above it the arc is not resolved."""

AGREEING_STARTS = 2
"""The multi-start search stops when this many starts reach the same lowest residual."""

CPE_EXPONENT_RANGE = (0.5, 1.0)
"""Physical range of a CPE exponent n: 1 is a capacitor, 0.5 a diffusion (Warburg) element."""


class FitError(DataValidationError):
    """A spectrum that cannot be reduced: fails Kramers-Kronig, does not converge, or is unphysical."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__([Problem(None, None, reason)], source=source)
        self.reason = reason


@dataclass(frozen=True)
class EISFit:
    """The fit of one spectrum. Resistances in ohm; see the module docstring for parameter names/units."""

    circuit: str
    parameters: dict[str, float]
    parameter_stderr: dict[str, float]
    r_bulk_ohm: float
    r_bulk_stderr_ohm: float
    rmse_ohm: float
    """Root mean square of the residual Z - Z_fit over real and imaginary parts, in ohm."""
    rmse_relative: float
    """The same, each residual divided by abs(Z): the modulus-weighted misfit (0.01 = 1%)."""
    kk_residual_max: float
    """Largest linKK residual, real or imaginary, relative to abs(Z)."""
    kk_rc_elements: int
    converged: bool
    n_starts: int
    source: str = ""
    problems: tuple[str, ...] = field(default=())
    """Why the fit is not acceptable (empty when ``converged``); only filled with ``strict=False``."""

    @property
    def method(self) -> str:
        """How the fit was made, for provenance records."""
        return (
            f"impedance.py {version('impedance')} CustomCircuit.fit of {self.circuit}, modulus-weighted, "
            f"after a multi-start search ({self.n_starts} starts); lin-KK with {self.kk_rc_elements} RC elements"
        )

    def impedance_ohm(self, frequency_hz: np.ndarray) -> np.ndarray:
        """The fitted circuit's complex impedance (ohm) at ``frequency_hz``, for plots and residuals."""
        return _MODELS[self.circuit](list(self.parameters.values()), np.asarray(frequency_hz, dtype=float))


@dataclass(frozen=True, eq=False)
class KramersKronig:
    """The lin-KK test of one spectrum; residuals are (Z - Z_KK) / abs(Z), per point in the spectrum's order."""

    rc_elements: int
    mu: float
    residual_real: np.ndarray
    residual_imag: np.ndarray
    frequency_hz: np.ndarray

    @property
    def residual_max(self) -> float:
        """Largest residual, real or imaginary (0.01 = 1% of abs(Z))."""
        return float(np.max(np.maximum(np.abs(self.residual_real), np.abs(self.residual_imag))))

    def violation(self) -> tuple[float, float] | None:
        """The (low, high) frequency band, Hz, of the longest run of :data:`KK_MIN_RUN` or more adjacent
        frequencies whose residual exceeds :data:`KK_RESIDUAL_LIMIT`; None when there is no such run.

        Isolated large residuals are read as noise; a run of them is a systematic departure from
        Kramers-Kronig (drift, non-linearity), as Schoenleber et al. read the residual plot.
        """
        order = np.argsort(self.frequency_hz)
        above = np.maximum(np.abs(self.residual_real), np.abs(self.residual_imag))[order] > KK_RESIDUAL_LIMIT
        best: tuple[int, int] | None = None
        run_start = None
        for i, flag in enumerate([*above, False]):
            if flag and run_start is None:
                run_start = i
            elif not flag and run_start is not None:
                if i - run_start >= KK_MIN_RUN and (best is None or i - run_start > best[1] - best[0]):
                    best = (run_start, i)
                run_start = None
        if best is None:
            return None
        band = self.frequency_hz[order][best[0] : best[1]]
        return float(band[0]), float(band[-1])


def kramers_kronig(spectrum: Spectrum) -> KramersKronig:
    """Lin-KK test (Schoenleber et al. 2014) of ``spectrum`` with impedance.py's ``validation`` module.

    impedance.py 1.7.1's ``linKK`` raises a NameError under numpy 2 (module docstring) and evaluates its
    RC series through a generated Python expression, about 20 ms a call. This shim calls its public
    pieces instead: ``get_tc_distribution`` and ``fit_linKK`` (the linear fit, ``fit_type="complex"``),
    and evaluates the fitted series R0 + sum K(R_k, tau_k) + L (+ C) with impedance.py's element
    functions, which is what ``eval_linKK`` computes, without ``eval``. It uses a fixed
    :data:`KK_RC_PER_DECADE` RC elements per decade rather than linKK's mu cut-off: with 1% noise mu
    falls below linKK's default c = 0.85 after 4-5 elements and leaves residuals of 40% on valid spectra.
    The series is fitted with and without a series capacitance (``add_cap``, for blocking electrodes
    that have no low-frequency intercept) and the better of the two is kept.
    """
    f, z = spectrum.frequency_hz, spectrum.impedance_ohm
    decades = math.log10(float(np.max(f)) / float(np.min(f))) if np.min(f) < np.max(f) else 1.0
    m = max(3, min(round(KK_RC_PER_DECADE * decades), f.size // 2))
    taus = get_tc_distribution(f, m)
    best: KramersKronig | None = None
    for add_cap in (False, True):
        values, mu = fit_linKK(f, taus, m, z, "complex", add_cap)
        rc_series = sum(K([r_k, tau_k], f) for r_k, tau_k in zip(values[1 : m + 1], taus, strict=True))
        z_kk = values[0] + rc_series + L([values[-1]], f)
        if add_cap:
            z_kk = z_kk + C([1.0 / values[-2]], f)
        residual = (z - z_kk) / np.abs(z)
        result = KramersKronig(m, float(mu), residual.real, residual.imag, f)
        if best is None or result.residual_max < best.residual_max:
            best = result
    assert best is not None
    return best


def initial_guesses(spectrum: Spectrum, circuit: str) -> list[list[float]]:
    """Starting points read off the spectrum: intercept for R0, arc width for R1, apex for Q, a grid of n.

    The grid multiplies R1 by 0.5, 1, 2 and tries n = 0.7 and 0.9 for CPE1 (6 starts; the blocking form
    also guesses CPE2 from the lowest frequency point).
    """
    f = spectrum.frequency_hz
    z_real, minus_imag = spectrum.z_real_ohm, -spectrum.z_imag_ohm
    order = np.argsort(f)[::-1]  # high to low frequency
    f, z_real, minus_imag = f[order], z_real[order], minus_imag[order]
    span = float(np.ptp(z_real)) or float(np.max(np.abs(z_real))) or 1.0
    r0 = max(float(z_real[0]), 0.0)
    if circuit == BLOCKING_CIRCUIT:
        # the arc ends where -Im(Z) has its minimum between the arc's apex and the low-frequency spike
        apex = int(np.argmax(minus_imag[: max(len(f) // 2, 2)]))
        valley = apex + int(np.argmin(minus_imag[apex:]))
        r1 = max(float(z_real[valley]) - r0, 0.05 * span)
    else:
        apex = int(np.argmax(minus_imag))
        r1 = max(float(np.max(z_real)) - r0, 0.05 * span)
    omega_apex = 2 * math.pi * float(f[apex])
    guesses = []
    for r1_factor, n in itertools.product((1.0, 0.5, 2.0), (0.9, 0.7)):
        r1_start = r1 * r1_factor
        q = 1.0 / (r1_start * omega_apex**n)
        guess = [r0, r1_start, q, n]
        if circuit == BLOCKING_CIRCUIT:
            omega_low = 2 * math.pi * float(f[-1])
            q2 = 1.0 / (max(float(minus_imag[-1]), 1e-12) * omega_low**0.8)
            guess += [q2, 0.8]
        guesses.append(guess)
    return guesses


_MODELS: dict[str, Callable[[Sequence[float], np.ndarray], np.ndarray]] = {
    PAPER_CIRCUIT: lambda x, f: series([R([x[0]], f), parallel([R([x[1]], f), CPE([x[2], x[3]], f)])]),
    BLOCKING_CIRCUIT: lambda x, f: series(
        [R([x[0]], f), parallel([R([x[1]], f), CPE([x[2], x[3]], f)]), CPE([x[4], x[5]], f)]
    ),
}
"""Each circuit composed from impedance.py's element functions (the same ones ``CustomCircuit`` evaluates).

``CustomCircuit.fit`` builds and ``eval``s a Python expression for every evaluation (about 1.5 ms for 60
points); calling the element functions directly takes about 0.12 ms, so the multi-start search uses these
and only the final fit goes through ``CustomCircuit.fit``.
"""


def _is_exponent(index: int) -> bool:
    """CPE parameters alternate Q, n after R0 and R1: indices 3 and 5 are exponents."""
    return index in (3, 5)


@dataclass(frozen=True, eq=False)
class _Problem:
    """The least-squares problem in theta = (log R0, log R1, log Q1, n1, ...): residuals over abs(Z)."""

    circuit: str
    f: np.ndarray
    z: np.ndarray
    exponent: np.ndarray

    @classmethod
    def of(cls, circuit: str, f: np.ndarray, z: np.ndarray) -> _Problem:
        n_parameters = 4 if circuit == PAPER_CIRCUIT else 6
        return cls(circuit, f, z, np.array([_is_exponent(i) for i in range(n_parameters)]))

    def values(self, theta: np.ndarray) -> np.ndarray:
        return np.where(self.exponent, theta, np.exp(theta))

    def theta(self, values: Sequence[float]) -> np.ndarray:
        return np.where(self.exponent, values, np.log(np.maximum(values, 1e-300)))

    def residual(self, theta: np.ndarray) -> np.ndarray:
        difference = (_MODELS[self.circuit](self.values(theta), self.f) - self.z) / np.abs(self.z)
        return np.concatenate([difference.real, difference.imag])

    def solve(self, theta: np.ndarray, bounded: bool) -> OptimizeResult | None:
        """Levenberg-Marquardt (unbounded, for the search) or trust-region with 0 <= n <= 1 (final)."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if not bounded:
                    result = least_squares(self.residual, theta, method="lm", ftol=1e-8, xtol=1e-8, max_nfev=400)
                else:
                    lower = np.where(self.exponent, 0.0, -np.inf)
                    upper = np.where(self.exponent, 1.0, np.inf)
                    theta = np.clip(theta, lower, upper)
                    result = least_squares(
                        self.residual, theta, bounds=(lower, upper), method="trf", ftol=1e-10, xtol=1e-10
                    )
        except (ValueError, np.linalg.LinAlgError):
            return None
        if not (np.all(np.isfinite(result.x)) and math.isfinite(result.cost)):
            return None
        return result

    def stderr(self, result: OptimizeResult) -> np.ndarray:
        """One-sigma standard errors of the parameters (not of theta) from the fit covariance.

        As ``scipy.optimize.curve_fit`` computes it (``absolute_sigma=False``): the pseudo-inverse of J'J
        from the SVD of the Jacobian (directions the data do not constrain, such as log R0 when R0 -> 0,
        are dropped, as curve_fit drops them), times the residual variance; then through d value / d theta
        (the value for log parameters, 1 for exponents).
        """
        jac = np.asarray(result.jac)
        _, singular, vt = np.linalg.svd(jac, full_matrices=False)
        keep = singular > np.finfo(float).eps * max(jac.shape) * singular[0]
        singular, vt = singular[keep], vt[keep]
        dof = max(result.fun.size - jac.shape[1], 1)
        covariance = (vt.T / singular**2) @ vt * (2.0 * result.cost / dof)
        stderr_theta = np.sqrt(np.diag(covariance))
        return np.where(self.exponent, 1.0, self.values(result.x)) * stderr_theta


def _multi_start(problem: _Problem, guesses: list[list[float]]) -> tuple[OptimizeResult | None, int]:
    """The best start (unbounded search from each guess, then a bounded final fit from the best), stopping
    the search early once :data:`AGREEING_STARTS` starts reach the same lowest residual (to 0.1%), the
    usual sign that the global minimum has been found. Returns the final result (None when every start
    failed) and the number of starts run."""
    best: OptimizeResult | None = None
    agreeing = 0
    tried = 0
    for guess in guesses:
        tried += 1
        result = problem.solve(problem.theta(guess), bounded=False)
        if result is None:
            continue
        if best is None or result.cost < best.cost * (1 - 1e-3):
            best, agreeing = result, 1
        elif result.cost <= best.cost * (1 + 1e-3):
            agreeing += 1
            best = result if result.cost < best.cost else best
        if agreeing >= AGREEING_STARTS:
            break
    if best is None:
        return None, tried
    return problem.solve(best.x, bounded=True), tried


def fit_spectrum(spectrum: Spectrum, circuit: str = PAPER_CIRCUIT, *, strict: bool = True) -> EISFit:
    """Fit ``circuit`` (one of :data:`CIRCUITS`) to ``spectrum``; R_bulk with its standard error.

    Runs the Kramers-Kronig check, then a multi-start modulus-weighted fit (module docstring). Raises
    :class:`FitError` when the spectrum fails Kramers-Kronig, no start converges, or the best fit is outside
    physical bounds (CPE exponent outside :data:`CPE_EXPONENT_RANGE`, R_bulk not positive or not resolved,
    misfit above :data:`MAX_RELATIVE_RMSE`). With ``strict=False`` such a fit is returned instead, with
    ``converged=False`` and the reasons in ``problems`` (the Kramers-Kronig failure still raises).
    """
    if circuit not in CIRCUITS:
        raise InputError(f"circuit: {circuit!r} is not supported; use one of {', '.join(CIRCUITS)}")
    source = spectrum.path
    kk = kramers_kronig(spectrum)
    band = kk.violation()
    if band is not None:
        raise FitError(
            source,
            f"the spectrum fails the Kramers-Kronig (lin-KK) test: residuals above {KK_RESIDUAL_LIMIT:.0%} of "
            f"abs(Z) from {band[0]:.4g} to {band[1]:.4g} Hz (largest {kk.residual_max:.1%}); the cell drifted "
            "or was not linear there: remeasure, or fit without those points (Spectrum.band)",
        )
    f, z = spectrum.frequency_hz, spectrum.impedance_ohm
    guesses = initial_guesses(spectrum, circuit)
    problem = _Problem.of(circuit, f, z)
    result, n_starts = _multi_start(problem, guesses)
    if result is None:
        raise FitError(source, f"the {circuit} fit did not converge from any of {len(guesses)} starting points")
    values, stderr = problem.values(result.x), problem.stderr(result)
    names = CustomCircuit(circuit, initial_guess=list(values)).get_param_names()[0]
    parameters = dict(zip(names, (float(v) for v in values), strict=True))
    parameter_stderr = dict(zip(names, (float(s) for s in stderr), strict=True))
    fitted = _MODELS[circuit](values, f)
    residual = z - fitted
    rmse = float(np.sqrt(np.mean(np.concatenate([residual.real**2, residual.imag**2]))))
    relative = residual / np.abs(z)
    rmse_relative = float(np.sqrt(np.mean(np.concatenate([relative.real**2, relative.imag**2]))))
    problems = _physical_problems(parameters, parameter_stderr, rmse_relative)
    if result.status <= 0:
        problems.insert(0, f"the fit did not converge: {result.message}")
    result = EISFit(
        circuit=circuit,
        parameters=parameters,
        parameter_stderr=parameter_stderr,
        r_bulk_ohm=parameters[BULK_PARAMETER],
        r_bulk_stderr_ohm=parameter_stderr[BULK_PARAMETER],
        rmse_ohm=rmse,
        rmse_relative=rmse_relative,
        kk_residual_max=kk.residual_max,
        kk_rc_elements=kk.rc_elements,
        converged=not problems,
        n_starts=n_starts,
        source=source,
        problems=tuple(problems),
    )
    if problems and strict:
        raise FitError(source, f"the {circuit} fit is not acceptable: " + "; ".join(problems))
    return result


def _physical_problems(parameters: dict[str, float], stderr: dict[str, float], rmse_relative: float) -> list[str]:
    problems = []
    r_bulk, r_bulk_stderr = parameters[BULK_PARAMETER], stderr[BULK_PARAMETER]
    if not (math.isfinite(r_bulk) and r_bulk > 0):
        problems.append(f"R_bulk = {r_bulk} ohm is not a positive resistance")
    elif not math.isfinite(r_bulk_stderr) or r_bulk_stderr == 0 or r_bulk_stderr > MAX_R_BULK_RELATIVE_STDERR * r_bulk:
        problems.append(f"R_bulk = {r_bulk:.4g} ohm is not resolved (standard error {r_bulk_stderr:.3g} ohm)")
    low, high = CPE_EXPONENT_RANGE
    for name, value in parameters.items():
        if name.startswith("CPE") and name.endswith("_1") and not low <= value <= high:
            problems.append(f"{name} (CPE exponent n) = {value:.3f} is outside the physical range [{low}, {high}]")
    if not math.isfinite(rmse_relative) or rmse_relative > MAX_RELATIVE_RMSE:
        problems.append(f"misfit {rmse_relative:.1%} of abs(Z) exceeds {MAX_RELATIVE_RMSE:.0%}")
    return problems


def simulate_spectrum(
    circuit: str,
    parameters: Sequence[float],
    frequency_hz: np.ndarray,
    noise_fraction: float = 0.0,
    seed: int | None = None,
    path: str = "simulated",
) -> Spectrum:
    """A spectrum of ``circuit`` with ``parameters`` (impedance.py order, e.g. R0, R1, Q1, n1) at
    ``frequency_hz``, with seeded Gaussian noise of ``noise_fraction`` * abs(Z) on each of Z' and Z''."""
    if circuit not in CIRCUITS:
        raise InputError(f"circuit: {circuit!r} is not supported; use one of {', '.join(CIRCUITS)}")
    f = np.asarray(frequency_hz, dtype=float)
    z = _MODELS[circuit](list(parameters), f)
    if noise_fraction:
        rng = np.random.default_rng(seed)
        z = z + noise_fraction * np.abs(z) * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
    return Spectrum(f, z.real.copy(), z.imag.copy(), "simulated", path)


def conductivity_from_fit(
    fit: EISFit,
    thickness_nm: float | tuple[float, float] | None,
    *,
    area_mm2: float | tuple[float, float] | None = None,
    diameter_mm: float | tuple[float, float] | None = None,
) -> Conductivity:
    """Conductivity (S/cm) from a fit and the film's thickness (nm) and electrode area (mm^2) or diameter (mm).

    Each geometry value is a number or a (low, high) range, read as uniform (see
    :func:`~surrogate.ingest.conductivity.film_conductivity`); a diameter range becomes the area range of
    its end points. Give exactly one of ``area_mm2`` and ``diameter_mm``.
    """
    if thickness_nm is None:
        raise InputError(f"thickness_nm: missing; the film thickness is needed for sigma ({fit.source})")
    if (area_mm2 is None) == (diameter_mm is None):
        raise InputError(f"area_mm2 / diameter_mm: give exactly one of them for sigma ({fit.source})")
    if area_mm2 is not None:
        area_range = _as_range(area_mm2)
    else:
        low, high = _as_range(diameter_mm)  # type: ignore[arg-type]
        area_range = (math.pi * low**2 / 4.0, math.pi * high**2 / 4.0)
    return film_conductivity(fit.r_bulk_ohm, fit.r_bulk_stderr_ohm, _as_range(thickness_nm), area_range)


def _as_range(value: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, tuple):
        return (float(value[0]), float(value[1]))
    return (float(value), float(value))
