"""Noise-free physics of the virtual lab, calibrated to Tan et al., Nanomaterials 2021, 11, 989.

Every number the laws use is in :data:`PARAMETERS` (a :class:`LabParameters`),
each one either quoted from the paper (``source="paper"``) or an assumption
beyond it (``source="assumption"``) with the reason written next to it. The
derived constants (activation energy, prefactors, characteristic C-rates,
fade coefficients) are solved from those numbers in :func:`calibrate`, so the
lab reproduces the paper by construction rather than by hand-tuned constants.

The three laws, all vectorised over numpy arrays (their shared functional forms, the rate shape and the
Boltzmann constant, are declared once in :mod:`surrogate.laws`):

* :func:`conductivity_s_cm` — Arrhenius in the σ·T form, with the anneal
  temperature acting through structural relaxation of the amorphous film
  (25 → 300 °C) and a smooth amorphous-to-crystalline transition (300 → 400 °C).
* :func:`rate_retention` — capacity at C over capacity at 0.1 C for a cell whose
  rate is limited by interface plus electrolyte resistance; so it depends on the
  buffer, the film's conductivity (anneal) and the operating temperature.
* :func:`capacity_retention` — cycle fade in log space: an early drop, a steady
  fade and a knee late in life, accelerated by temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from scipy.optimize import brentq

from surrogate.errors import InputError
from surrogate.laws import K_B_EV, ZERO_C_K, kelvin, rate_shape, relative_rate_retention  # noqa: F401 (re-exported)
from surrogate.materials import BUFFER_KIND, CATALOGUE
from surrogate.parameters import C_RATE, CYCLES, NUMERIC_PARAMETERS, PROTOCOLS
from surrogate.targets import REFERENCE_C_RATE


@dataclass(frozen=True)
class Parameter:
    """One number of the lab, with where it comes from and why."""

    value: float
    unit: str
    source: str  # "paper" or "assumption"
    reason: str


def _p(value: float, unit: str, source: str, reason: str) -> Parameter:
    return field(default=Parameter(value, unit, source, reason))


@dataclass(frozen=True)
class LabParameters:
    """All inputs of the lab's physics. Change a value here and everything re-calibrates."""

    # ---------------------------------------------------------------- conductivity
    sigma_300c_at_25c: Parameter = _p(
        9.56e-6,
        "S/cm",
        "paper",
        "highest room-temperature conductivity, film annealed at 300 °C (Sec. 3.1, Conclusions)",
    )
    sigma_300c_at_120c: Parameter = _p(
        7.78e-5, "S/cm", "paper", "highest conductivity at 120 °C, same film (Abstract, Sec. 3.1, Conclusions)"
    )
    as_deposited_sigma_ratio: Parameter = _p(
        0.75,
        "-",
        "assumption",
        "the paper says the 300 °C film conducts best and gives the same Ea (0.33 eV) for as-deposited and 300 °C "
        "films but no as-deposited value; structural relaxation of amorphous films on annealing typically gains "
        "tens of percent, so the as-deposited film is taken 25% lower at every temperature",
    )
    crystalline_sigma_ratio_at_25c: Parameter = _p(
        0.40,
        "-",
        "assumption",
        "the 400 °C film crystallised (10-15 nm grains) and 'amorphous LLTO demonstrated high ionic conductivity'; "
        "no value is quoted, so crystalline σ(25 °C) is taken as 40% of the 300 °C film's",
    )
    crystalline_extra_ea_ev: Parameter = _p(
        0.02, "eV", "paper", "Ea of the 400 °C film (0.35 eV) minus that of the 300 °C film (0.33 eV), Sec. 3.1"
    )
    relaxation_start_c: Parameter = _p(25.0, "°C", "paper", "as-deposited (not annealed) film")
    crystallisation_onset_c: Parameter = _p(300.0, "°C", "paper", "XRD: the 300 °C film is still amorphous (Fig. 1h)")
    crystallisation_complete_c: Parameter = _p(
        400.0, "°C", "paper", "XRD/SEM: the 400 °C film is crystallised (Fig. 1h)"
    )

    # ---------------------------------------------------------------- rate capability
    reference_rate_c: Parameter = _p(
        REFERENCE_C_RATE, "C", "paper", "rate retention is relative to the capacity at 0.1 C (Sec. 3.3.1)"
    )
    calibration_rate_c: Parameter = _p(30.0, "C", "paper", "highest rate tested, 30 C (Sec. 3.3.1)")
    rate_30c_none: Parameter = _p(
        0.10, "-", "paper", "reference cell keeps 10% of its 0.1 C capacity at 30 C (Fig. 3a)"
    )
    rate_30c_sio2: Parameter = _p(0.30, "-", "paper", "SiO2 cell keeps 30% at 30 C (Fig. 3c)")
    rate_30c_llto_ncm: Parameter = _p(
        0.18,
        "-",
        "assumption",
        "not quoted; 'the rate characteristics of the samples with the transition layer were improved' and SiO2 is "
        "singled out as best, so LLTO/NCM lies between none (0.10) and SiO2 (0.30)",
    )
    rate_30c_lipon: Parameter = _p(
        0.22,
        "-",
        "assumption",
        "not quoted; between none and SiO2 like LLTO/NCM, a little better (denser heterogeneous layer)",
    )
    cell_anneal_temp_c: Parameter = _p(
        300.0,
        "°C",
        "assumption",
        "the paper does not say which anneal the cells' LLTO received; the best film (300 °C) is assumed",
    )
    cell_test_temp_c: Parameter = _p(
        25.0,
        "°C",
        "assumption",
        "the paper cycled cells without stating a temperature; room temperature (25 °C) is assumed",
    )
    electrolyte_share_no_buffer: Parameter = _p(
        0.20,
        "-",
        "assumption",
        "the paper names the interface as the rate-determining step (Sec. 3.3.1); the electrolyte is taken as 20% "
        "of the reference cell's resistance at 25 °C, the interface 80%",
    )
    interface_ea_ev: Parameter = _p(
        0.30,
        "eV",
        "assumption",
        "the paper measured cells at room temperature only; interfacial charge transfer in oxide thin-film cells "
        "typically has 0.3-0.5 eV, the low end is taken",
    )

    # ---------------------------------------------------------------- cycle fade
    retention_100_none: Parameter = _p(0.54, "-", "paper", "no buffer: 54% after 100 cycles at 3 µA (Sec. 3.3.2)")
    retention_100_llto_ncm: Parameter = _p(0.71, "-", "paper", "homogeneous LLTO/NCM: 71% after 100 cycles")
    retention_100_sio2: Parameter = _p(0.76, "-", "paper", "SiO2: 76% after 100 cycles")
    retention_100_lipon: Parameter = _p(0.79, "-", "paper", "LiPON: 79% after 100 cycles")
    standard_early_time_constant: Parameter = _p(
        15.0,
        "cycles",
        "assumption",
        "'capacity changes significantly during the first few dozen cycles, the change tends to be slight after "
        "50 cycles' (Sec. 3.3.1): 95% of the early drop is done by 45 cycles",
    )
    standard_early_share: Parameter = _p(
        0.75, "-", "assumption", "share of the 100-cycle loss that is the early drop (the rest is steady fade)"
    )
    long_early_time_constant: Parameter = _p(
        4.0,
        "cycles",
        "assumption",
        "'decreased significantly after the first dozen cycles' (Sec. 3.3.3): 95% done by 12",
    )
    long_early_drop_log: Parameter = _p(
        0.15,
        "-",
        "assumption",
        "size of that early drop (as -ln of retention, about 14% of capacity); not quoted. Bounded above by the "
        "paper's '40 µA ≈ 1-1.5 C in the first 100 cycles' (a larger drop pushes the C-rate past 1.5 C) and below "
        "by 'decreased significantly' (the drop per cycle is > 10x the later steady fade)",
    )
    long_retention_500: Parameter = _p(0.65, "-", "paper", "SiO2 long test: 65% after 500 cycles (Sec. 3.3.3)")
    long_retention_1000: Parameter = _p(
        0.277, "-", "paper", "SiO2 long test: 27.7% after 1000 cycles (Abstract, Sec. 3.3.3)"
    )
    knee_onset_cycles: Parameter = _p(
        900.0, "cycles", "paper", "'After 900 cycles, the battery capacity reduced significantly'"
    )
    knee_width_cycles: Parameter = _p(
        10.0, "cycles", "assumption", "how sharply the knee sets in ('sudden decrease'); softplus width"
    )
    fade_ea_ev: Parameter = _p(
        0.20,
        "eV",
        "assumption",
        "the paper cycled at room temperature only; interface degradation is taken to speed up with temperature "
        "with 0.2 eV (x2.3 per cycle at 60 °C, x6.6 at 120 °C)",
    )

    def table(self) -> list[dict[str, object]]:
        """Every parameter as a row: name, value, unit, source, reason."""
        return [
            {"name": f.name, **{k: getattr(getattr(self, f.name), k) for k in ("value", "unit", "source", "reason")}}
            for f in fields(self)
        ]

    def value(self, name: str) -> float:
        return getattr(self, name).value

    def buffer_value(self, buffer: str, quantity: str) -> float:
        """A per-buffer number of the lab (``rate_30c`` or ``retention_100``), found through the catalogue.

        A buffer's catalogue entry names the :class:`LabParameters` field that holds it (the paper's four
        buffers) or gives the value itself (a buffer declared in a materials file). Raises
        :class:`InputError` when the buffer has no such number.
        """
        entry = CATALOGUE.get(buffer, BUFFER_KIND)
        given = entry.lab.get(quantity)
        if given is None:
            raise InputError(
                f"buffer {entry.id!r}: the virtual lab has no {quantity} for it; give 'lab: {{rate_30c: ..., "
                "retention_100: ...}' in its materials entry to emulate it"
            )
        return self.value(given) if isinstance(given, str) else float(given)

    @property
    def calibration(self) -> Calibration:
        """The derived constants, solved once per state of the catalogue (a declared buffer joins the lab)."""
        cached = self.__dict__.get("_calibration")
        if cached is None or cached[0] != CATALOGUE.version:
            cached = (CATALOGUE.version, calibrate(self))
            self.__dict__["_calibration"] = cached
        return cached[1]


def lab_buffers() -> tuple[str, ...]:
    """The buffers the virtual lab can emulate: every catalogue buffer with both lab numbers."""
    return tuple(m.id for m in CATALOGUE.entries(BUFFER_KIND) if {"rate_30c", "retention_100"} <= set(m.lab))


@dataclass(frozen=True)
class Calibration:
    """Constants solved from :class:`LabParameters` so the laws meet the paper's numbers."""

    ea_amorphous_ev: float
    log_prefactor_300c: float  # ln(A) of σ·T = A exp(-Ea/kT), A in S·K/cm
    characteristic_rate_c: dict[str, float]  # C* of each buffer at the reference cell conditions
    rate_constant: float  # K in C* = K / (R_interface + R_electrolyte)
    interface_resistance: dict[str, float]  # normalised to the electrolyte of the reference cell at 25 °C
    standard_early_log: dict[str, float]
    standard_linear_log: dict[str, float]
    long_linear_log: float
    knee_slope_log: float
    fade_severity: dict[str, float]  # -ln R100 of a buffer over that of SiO2


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Quintic smoothstep: 0 below 0, 1 above 1, flat (C2) at both ends."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def calibrate(params: LabParameters) -> Calibration:
    """Solve the lab's derived constants from the paper's numbers and the stated assumptions."""
    v = params.value
    t25, t120 = kelvin(25.0), kelvin(120.0)
    # σT = A exp(-Ea/kT) through both measured points of the 300 °C film.
    ea = K_B_EV * np.log((v("sigma_300c_at_120c") * t120) / (v("sigma_300c_at_25c") * t25)) / (1 / t25 - 1 / t120)
    log_a = np.log(v("sigma_300c_at_25c") * t25) + ea / (K_B_EV * t25)

    reference, calibration_rate = v("reference_rate_c"), v("calibration_rate_c")
    buffers = lab_buffers()
    c_star = {}
    for buffer in buffers:
        target = params.buffer_value(buffer, "rate_30c")
        c_star[buffer] = brentq(
            lambda cs, target=target: rate_shape(calibration_rate, cs) / rate_shape(reference, cs) - target,
            1e-3,
            1e4,
        )
    share = v("electrolyte_share_no_buffer")
    rate_constant = c_star["none"] / share  # R_el(reference) = 1, total R = 1/share
    interface = {b: rate_constant / c_star[b] - 1.0 for b in buffers}
    if min(interface.values()) <= 0:
        raise ValueError(
            "rate calibration gives a non-positive interface resistance; lower electrolyte_share_no_buffer"
        )

    n0_std = v("standard_early_time_constant")
    early_std, linear_std = {}, {}
    for buffer in buffers:
        loss = -np.log(params.buffer_value(buffer, "retention_100"))
        early_std[buffer] = v("standard_early_share") * loss / (-np.expm1(-99.0 / n0_std))
        linear_std[buffer] = (1 - v("standard_early_share")) * loss / 99.0
    sio2 = -np.log(params.buffer_value("sio2", "retention_100"))
    severity = {b: -np.log(params.buffer_value(b, "retention_100")) / sio2 for b in buffers}

    # Long protocol, SiO2: solve linear fade and knee slope through 65% @ 500 and 27.7% @ 1000.
    n0_long, early_long = v("long_early_time_constant"), v("long_early_drop_log")
    onset, width = v("knee_onset_cycles"), v("knee_width_cycles")
    rows, rhs = [], []
    for n, retained in ((500.0, v("long_retention_500")), (1000.0, v("long_retention_1000"))):
        rows.append([n - 1.0, width * _softplus((n - onset) / width)])
        rhs.append(-np.log(retained) - early_long * -np.expm1(-(n - 1.0) / n0_long))
    linear_long, knee_slope = np.linalg.solve(np.array(rows), np.array(rhs))
    return Calibration(
        ea_amorphous_ev=float(ea),
        log_prefactor_300c=float(log_a),
        characteristic_rate_c={b: float(c) for b, c in c_star.items()},
        rate_constant=float(rate_constant),
        interface_resistance={b: float(r) for b, r in interface.items()},
        standard_early_log={b: float(x) for b, x in early_std.items()},
        standard_linear_log={b: float(x) for b, x in linear_std.items()},
        long_linear_log=float(linear_long),
        knee_slope_log=float(knee_slope),
        fade_severity={b: float(s) for b, s in severity.items()},
    )


PARAMETERS = LabParameters()


# ------------------------------------------------------------------ conductivity
def crystalline_fraction(anneal_temp_c: np.ndarray | float, params: LabParameters = PARAMETERS) -> np.ndarray:
    """Fraction of the film that is crystalline after annealing at ``anneal_temp_c`` (°C): 0 up to 300, 1 from 400."""
    onset, complete = params.value("crystallisation_onset_c"), params.value("crystallisation_complete_c")
    return _smoothstep((np.asarray(anneal_temp_c, dtype=float) - onset) / (complete - onset))


def activation_energy_ev(anneal_temp_c: np.ndarray | float, params: LabParameters = PARAMETERS) -> np.ndarray:
    """Activation energy (eV) of the film's conductivity in the lab (σ·T Arrhenius form)."""
    cal = params.calibration
    return cal.ea_amorphous_ev + crystalline_fraction(anneal_temp_c, params) * params.value("crystalline_extra_ea_ev")


def conductivity_s_cm(
    anneal_temp_c: np.ndarray | float, test_temp_c: np.ndarray | float, params: LabParameters = PARAMETERS
) -> np.ndarray:
    """Ionic conductivity (S/cm) of an LLTO film annealed at ``anneal_temp_c`` measured at ``test_temp_c`` (°C).

    Amorphous branch: σT = A·r(anneal)·exp(-Ea/kT), with r rising smoothly from
    ``as_deposited_sigma_ratio`` (as-deposited) to 1 (300 °C). Crystalline branch:
    σ(25 °C) lowered by ``crystalline_sigma_ratio_at_25c`` and Ea raised by
    ``crystalline_extra_ea_ev``. The two branches blend in log space with the
    crystalline fraction.
    """
    cal = params.calibration
    anneal = np.asarray(anneal_temp_c, dtype=float)
    temp_k = kelvin(test_temp_c)
    ea = cal.ea_amorphous_ev
    start, onset = params.value("relaxation_start_c"), params.value("crystallisation_onset_c")
    relaxed = _smoothstep((anneal - start) / (onset - start))
    log_amorphous = (
        cal.log_prefactor_300c
        + (1.0 - relaxed) * np.log(params.value("as_deposited_sigma_ratio"))
        - ea / (K_B_EV * temp_k)
    )
    extra = params.value("crystalline_extra_ea_ev")
    t25 = kelvin(25.0)
    log_crystalline = (
        cal.log_prefactor_300c
        + np.log(params.value("crystalline_sigma_ratio_at_25c"))
        + extra / (K_B_EV * t25)  # keeps the stated ratio at 25 °C despite the higher Ea
        - (ea + extra) / (K_B_EV * temp_k)
    )
    x = crystalline_fraction(anneal, params)
    return np.exp((1.0 - x) * log_amorphous + x * log_crystalline) / temp_k


# ------------------------------------------------------------------ rate capability
def _arrhenius_factor(test_temp_c: np.ndarray | float, ea_ev: float, reference_c: float) -> np.ndarray:
    """exp(Ea/k (1/T_ref - 1/T)): > 1 above the reference temperature."""
    return np.exp(ea_ev / K_B_EV * (1.0 / kelvin(reference_c) - 1.0 / kelvin(test_temp_c)))


def characteristic_rate_c(
    buffer: np.ndarray | str,
    anneal_temp_c: np.ndarray | float,
    test_temp_c: np.ndarray | float,
    params: LabParameters = PARAMETERS,
) -> np.ndarray:
    """C* (in C) of a cell: K / (R_interface(buffer, T) + R_electrolyte(anneal, T)), resistances normalised."""
    cal = params.calibration
    reference_sigma = conductivity_s_cm(params.value("cell_anneal_temp_c"), params.value("cell_test_temp_c"), params)
    r_electrolyte = reference_sigma / conductivity_s_cm(anneal_temp_c, test_temp_c, params)
    r_interface_ref = np.vectorize(cal.interface_resistance.__getitem__, otypes=[float])(np.asarray(buffer))
    r_interface = r_interface_ref / _arrhenius_factor(
        test_temp_c, params.value("interface_ea_ev"), params.value("cell_test_temp_c")
    )
    return cal.rate_constant / (r_interface + r_electrolyte)


def rate_retention(
    buffer: np.ndarray | str,
    anneal_temp_c: np.ndarray | float,
    test_temp_c: np.ndarray | float,
    c_rate: np.ndarray | float,
    params: LabParameters = PARAMETERS,
) -> np.ndarray:
    """Capacity at ``c_rate`` (C) over capacity at 0.1 C, as a fraction; 1 at and below 0.1 C by definition."""
    c_star = characteristic_rate_c(buffer, anneal_temp_c, test_temp_c, params)
    return relative_rate_retention(c_rate, c_star)


# ------------------------------------------------------------------ cycle fade
def fade_acceleration(test_temp_c: np.ndarray | float, params: LabParameters = PARAMETERS) -> np.ndarray:
    """How many reference (25 °C) cycles of degradation one cycle at ``test_temp_c`` is worth."""
    return _arrhenius_factor(test_temp_c, params.value("fade_ea_ev"), params.value("cell_test_temp_c"))


def capacity_retention(
    buffer: np.ndarray | str,
    test_temp_c: np.ndarray | float,
    cycles: np.ndarray | float,
    protocol: np.ndarray | str = "standard",
    params: LabParameters = PARAMETERS,
) -> np.ndarray:
    """Discharge capacity after ``cycles`` cycles over the initial capacity (fraction), under ``protocol``.

    -ln(retention) = early·(1 - exp(-(n-1)/n0)) + linear·(n-1) + knee·w·softplus((n - n_knee)/w),
    with n the cycle count scaled by :func:`fade_acceleration`. ``standard`` is calibrated per buffer to
    the 100-cycle retentions; ``long`` to the SiO2 1000-cycle test, other buffers scaled by how much
    faster they fade in the standard test (their 'fade severity'); the knee sets in that much earlier.
    """
    cal = params.calibration
    buffer = np.asarray(buffer)
    protocol = np.broadcast_to(np.asarray(protocol), np.broadcast(buffer, np.asarray(cycles, dtype=float)).shape)
    severity = np.vectorize(cal.fade_severity.__getitem__, otypes=[float])(buffer)
    n = 1.0 + (np.asarray(cycles, dtype=float) - 1.0) * fade_acceleration(test_temp_c, params)
    is_long = protocol == "long"

    early_std = np.vectorize(cal.standard_early_log.__getitem__, otypes=[float])(buffer)
    linear_std = np.vectorize(cal.standard_linear_log.__getitem__, otypes=[float])(buffer)
    early = np.where(is_long, params.value("long_early_drop_log") * severity, early_std)
    n0 = np.where(is_long, params.value("long_early_time_constant"), params.value("standard_early_time_constant"))
    linear = np.where(is_long, cal.long_linear_log * severity, linear_std)
    onset = params.value("knee_onset_cycles") / severity
    width = params.value("knee_width_cycles")
    knee = cal.knee_slope_log * severity * width * _softplus((n - onset) / width)
    log_loss = early * -np.expm1(-(n - 1.0) / n0) + linear * (n - 1.0) + knee
    return np.exp(-log_loss)


LAB_ANNEAL_TEMP_C: tuple[float, float] = (25.0, 600.0)
"""Where the lab's conductivity law is calibrated (anneal, °C): the paper's films, with margin."""
LAB_TEST_TEMP_C: tuple[float, float] = (-40.0, 150.0)
"""Where the lab's Arrhenius laws are used (operating temperature, °C)."""


def lab_domain_problems(
    anneal_temp_c: float, test_temp_c: float, c_rate: float, cycles: float, protocol: str
) -> list[str]:
    """Reasons a design lies outside where the lab's laws are defined (empty when inside)."""
    problems = []
    for name, value, low, high, unit in (
        ("anneal_temp_c", anneal_temp_c, *LAB_ANNEAL_TEMP_C, "°C"),
        ("test_temp_c", test_temp_c, *LAB_TEST_TEMP_C, "°C"),
        ("c_rate", c_rate, *NUMERIC_PARAMETERS[C_RATE].bounds, "C"),
        ("cycles", cycles, *NUMERIC_PARAMETERS[CYCLES].bounds, "cycles"),
    ):
        if not np.isfinite(value):
            problems.append(f"{name}: must be a finite number")
        elif not low <= value <= high or (name == "c_rate" and value <= 0):
            problems.append(f"{name}: {value:g} {unit} is outside the lab's range [{low:g}, {high:g}] {unit}")
    if protocol not in PROTOCOLS:
        problems.append(f"protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return problems
