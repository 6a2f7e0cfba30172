"""Equivalent-circuit fit of an impedance spectrum (impedance.py), a Kramers-Kronig check, and sigma.

Circuits (:data:`CIRCUITS`), in impedance.py notation:

- ``R0-p(R1,CPE1)``, the seed paper's: a series resistance R0 (leads, contacts) and the film's bulk arc,
  R1 in parallel with a constant-phase element CPE1. R_bulk = R1.
- ``R0-p(R1,CPE1)-CPE2``, the blocking-electrode form: the same arc plus CPE2 for the polarisation of
  ion-blocking electrodes (the low-frequency spike). R_bulk = R1.

Parameters are named as impedance.py names them: ``R0``, ``R1`` (ohm), ``CPE1_0`` (Q, S s^n), ``CPE1_1``
(n, dimensionless, 0..1).

**Multi-start.** impedance.py 1.7.1 fitted from one naive initial guess converges to wrong minima even on
noise-free data (R0 212 ohm against a true 50). :func:`fit_spectrum` therefore starts ``CustomCircuit.fit``
(modulus-weighted least squares) from guesses read off the spectrum itself (R0 = the high-frequency
intercept, R1 = the arc's width, Q from the arc's apex frequency) times a small grid of factors, and keeps
the start with the smallest weighted residual.

**Kramers-Kronig.** ``impedance.validation.linKK`` raises ``NameError: name 'np' is not defined`` in
impedance.py 1.7.1 with numpy >= 2: ``eval_linKK`` builds a Python expression from ``repr`` of numpy
scalars, which numpy 2 prints as ``np.float64(...)``, and evaluates it where ``np`` is not defined (fixed
upstream in ECSHackWeek/impedance.py#298, not released). The workaround here, :func:`kramers_kronig`, calls
``linKK`` inside ``numpy.printoptions(legacy="1.25")``, under which numpy prints scalars as plain numbers,
so the expression evaluates; nothing of impedance.py is patched. It also silences linKK's progress prints.
A spectrum whose largest linKK residual exceeds :data:`KK_MAX_RESIDUAL` (relative to abs(Z)) is refused.

Bad spectra and bad fits raise :class:`FitError` (a ``DataValidationError``: CLI exit 2, HTTP 400) naming
the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from impedance.models.circuits import CustomCircuit
from impedance.validation import linKK
from scipy.optimize import OptimizeWarning

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

KK_MAX_RESIDUAL = 0.05
"""Largest linKK residual (real or imaginary, relative to abs(Z)) a valid spectrum may have."""

MAX_RELATIVE_RMSE = 0.05
"""Largest modulus-weighted rms residual of an accepted fit (0.05 = 5% of abs(Z))."""

MAX_R_BULK_RELATIVE_STDERR = 0.5
"""Largest relative standard error of R_bulk in an accepted fit; above it the arc is not resolved."""

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

    def impedance_ohm(self, frequency_hz: np.ndarray) -> np.ndarray:
        """The fitted circuit's complex impedance (ohm) at ``frequency_hz``, for plots and residuals."""
        circuit = CustomCircuit(self.circuit, initial_guess=list(self.parameters.values()))
        return circuit.predict(np.asarray(frequency_hz, dtype=float), use_initial=True)


@dataclass(frozen=True)
class KramersKronig:
    """The linKK test: number of RC elements used, mu, and the largest relative residual."""

    rc_elements: int
    mu: float
    residual_max: float


def kramers_kronig(spectrum: Spectrum) -> KramersKronig:
    """Lin-KK test (Schoenleber et al. 2014) of ``spectrum`` with impedance.py's ``linKK``.

    Works around the NameError of impedance.py 1.7.1 under numpy 2 (see the module docstring) by running
    linKK with numpy's legacy scalar printing; ``add_cap=True`` so spectra of blocking electrodes (no
    low-frequency intercept) are tested fairly.
    """
    f, z = spectrum.frequency_hz, spectrum.impedance_ohm
    with np.printoptions(legacy="1.25"), contextlib.redirect_stdout(io.StringIO()):
        m, mu, _, residual_real, residual_imag = linKK(f, z, c=0.85, max_M=50, fit_type="complex", add_cap=True)
    residual_max = float(max(np.max(np.abs(residual_real)), np.max(np.abs(residual_imag))))
    return KramersKronig(rc_elements=int(m), mu=float(mu), residual_max=residual_max)


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
    if kk.residual_max > KK_MAX_RESIDUAL:
        raise FitError(
            source,
            f"the spectrum fails the Kramers-Kronig (lin-KK) test: largest residual {kk.residual_max:.1%} of "
            f"abs(Z) (limit {KK_MAX_RESIDUAL:.0%}); the system drifted or is not linear and stationary",
        )
    f, z = spectrum.frequency_hz, spectrum.impedance_ohm
    guesses = initial_guesses(spectrum, circuit)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for guess in guesses:
        model = CustomCircuit(circuit, initial_guess=guess)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(f, z, weight_by_modulus=True, maxfev=2000, ftol=1e-10)
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            continue
        residual = (z - model.predict(f)) / np.abs(z)
        cost = float(np.mean(residual.real**2 + residual.imag**2))
        if math.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, np.asarray(model.parameters_, float), np.asarray(model.conf_, float))
    if best is None:
        raise FitError(source, f"the {circuit} fit did not converge from any of {len(guesses)} starting points")
    _, values, stderr = best
    names = CustomCircuit(circuit, initial_guess=guesses[0]).get_param_names()[0]
    parameters = dict(zip(names, (float(v) for v in values), strict=True))
    parameter_stderr = dict(zip(names, (float(s) for s in stderr), strict=True))
    fitted = CustomCircuit(circuit, initial_guess=list(values)).predict(f, use_initial=True)
    residual = z - fitted
    rmse = float(np.sqrt(np.mean(np.concatenate([residual.real**2, residual.imag**2]))))
    relative = residual / np.abs(z)
    rmse_relative = float(np.sqrt(np.mean(np.concatenate([relative.real**2, relative.imag**2]))))
    problems = _physical_problems(parameters, parameter_stderr, rmse_relative)
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
        n_starts=len(guesses),
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
    elif not math.isfinite(r_bulk_stderr) or r_bulk_stderr > MAX_R_BULK_RELATIVE_STDERR * r_bulk:
        problems.append(f"R_bulk = {r_bulk:.4g} ohm is not resolved (standard error {r_bulk_stderr:.3g} ohm)")
    low, high = CPE_EXPONENT_RANGE
    for name, value in parameters.items():
        if name.startswith("CPE") and name.endswith("_1") and not low <= value <= high:
            problems.append(f"{name} (CPE exponent n) = {value:.3f} is outside the physical range [{low}, {high}]")
    if not math.isfinite(rmse_relative) or rmse_relative > MAX_RELATIVE_RMSE:
        problems.append(f"misfit {rmse_relative:.1%} of abs(Z) exceeds {MAX_RELATIVE_RMSE:.0%}")
    return problems


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
