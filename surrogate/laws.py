"""The physics laws, each declared once: its functional form, its priors with their sources, its modelling space.

A target names its law in its declaration (``Target.physics_law`` in :mod:`surrogate.targets`);
:func:`law_of` returns it. Every part that uses physics reads the law from here:

* the virtual lab (:mod:`surrogate.physics`) evaluates the shared functional forms
  (:func:`relative_rate_retention`, the Boltzmann constant, °C → K);
* the physics baseline (:mod:`surrogate.models.physics_baseline`) fits the law's form by least squares
  (its fitting classes are keyed by :attr:`Law.name`);
* ``physics_gp`` (:mod:`surrogate.models.physics_gp`) takes the law as the prior mean of a Gaussian
  process, with the parameters uncertain around :attr:`Law.priors` and the discrepancy's hyper-priors
  from :attr:`Law.amplitude`, :attr:`Law.noise`, :attr:`Law.amplitude_floor` and :data:`LENGTH_PRIORS`;
* the campaign suggester and search objectives (:meth:`surrogate.objectives.Objective.to_botorch`) map
  the modelling space back to contract units with :func:`model_to_contract`.

A :class:`Law` holds:

* ``name``, ``description``;
* ``model_space``: where ``physics_gp`` models the target (:data:`MODEL_SPACES`);
* ``required``: the design columns the law cannot do without (``test_temp_c``, the condition); the
  columns a model reads are the target's declared ``inputs``;
* ``priors``: every parameter's normal prior (:class:`Prior`, with its written source); a name ending
  in ``buffer_effect`` is one parameter per buffer about the population mean (hierarchical);
* ``mean(theta, columns, n_slots)``: the law in the modelling space, for θ of shape (parameters × k) and
  columns of shape (rows × 1) → (rows × k);
* ``amplitude``, ``noise``: log-normal hyper-priors of the discrepancy's amplitude and the noise sd;
  ``amplitude_floor``: the least amplitude of the discrepancy (why: :data:`AMPLITUDE_FLOOR_REASON`);
* ``horizon``: the condition the law forecasts along (cycles for fade), or None;
* ``knee``: whether the baseline's form has an optional knee (a tuning choice);
* ``narrow_priors``: the law's narrow-feature terms (conductivity: a crystallisation step), used by
  ``physics_gp`` with ``features="narrow"``;
* ``coupled_to``, ``coupled_drop``: the law whose target's model this law can follow (rate → the film's
  conductivity law) and the parameters that model then supplies;
* ``pooled_priors``, ``group_scales``: partial pooling across buffers. Each per-buffer parameter is the
  group's value plus an offset, offset ~ N(0, τ²); ``group_scales`` gives each offset's log-normal
  hyper-prior of τ (``physics_gp`` learns τ from the data with its kernel hyper-parameters, so the
  buffers' spread in the data sets how far an untried buffer may lie from the group), and
  ``pooled_priors`` the offsets only partial pooling has (each buffer's activation energy about the
  group's, so one buffer's temperature data informs the others' without forcing them equal).

Units: temperatures in °C, activation energies in eV, rates in C, ln of dimensionless ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, logit

from surrogate.errors import InputError
from surrogate.parameters import ANNEAL_TEMP_C, BUFFER, C_RATE, CYCLES, PROTOCOL, TEST_TEMP_C
from surrogate.targets import REFERENCE_C_RATE, get_target

K_B_EV = 8.617333262e-5
"""Boltzmann constant, eV/K."""
ZERO_C_K = 273.15
"""0 °C in K."""
T25_K = 25.0 + ZERO_C_K
"""The reference temperature of every law, 25 °C, in K."""


def kelvin(temp_c: np.ndarray | float) -> np.ndarray:
    """°C → K."""
    return np.asarray(temp_c, dtype=float) + ZERO_C_K


def inverse_temperature_ev(test_temp_c: np.ndarray) -> np.ndarray:
    """u = (1/T − 1/T₂₅)/k_B in 1/eV: 0 at 25 °C, negative above (Ea·u is the ln of an Arrhenius factor)."""
    return (1.0 / (np.asarray(test_temp_c, dtype=float) + ZERO_C_K) - 1.0 / T25_K) / K_B_EV


# ------------------------------------------------------------------ shared functional forms
def rate_shape(c_rate: np.ndarray, c_star: np.ndarray) -> np.ndarray:
    """Accessible capacity fraction at ``c_rate`` for a cell with characteristic rate ``c_star`` (both in C).

    (C*/C)(1 − exp(−C/C*)): ~1 for C << C*, ~C*/C for C >> C* (a resistance-limited cell).
    """
    x = np.asarray(c_rate, dtype=float) / np.asarray(c_star, dtype=float)
    return -np.expm1(-x) / x


def relative_rate_retention(c_rate: np.ndarray | float, c_star: np.ndarray | float) -> np.ndarray:
    """Capacity at ``c_rate`` over capacity at 0.1 C of a cell with characteristic rate ``c_star`` (both in C).

    The rate law every part of the project uses (lab, physics baseline, physics_gp, campaign suggester);
    1 at and below the 0.1 C reference by definition.
    """
    rate = np.maximum(np.asarray(c_rate, dtype=float), REFERENCE_C_RATE)
    return rate_shape(rate, c_star) / rate_shape(REFERENCE_C_RATE, c_star)


# ------------------------------------------------------------------ priors
@dataclass(frozen=True)
class Prior:
    """Normal prior of one parameter: ``mean`` and ``sd`` in its units (log-normal ones: of its ln), and why."""

    mean: float
    sd: float
    source: str = ""


MODEL_SPACES: tuple[str, ...] = ("log10", "logit", "log_loss")
"""Modelling spaces: log10 of a positive quantity, logit of a fraction, ln(−ln R) of a retention R."""

_RETENTION_RANGE = (1e-3, 1.0 - 1e-4)
_FRACTION_EPS = 1e-3  # the clip of a fraction's logit (surrogate.targets.TargetSpace)


def model_to_contract(space: str, values: np.ndarray) -> np.ndarray:
    """Values in modelling space ``space`` in contract units (S/cm, fractions)."""
    values = np.asarray(values, dtype=float)
    if space == "log10":
        return 10.0**values
    if space == "logit":
        return expit(values)
    return np.exp(-np.exp(np.minimum(values, 50.0)))


def torch_model_to_contract(space: str, samples: Any) -> Any:
    """:func:`model_to_contract` on a torch tensor (BoTorch objectives)."""
    import torch

    if space == "log10":
        return torch.pow(10.0, samples)
    if space == "logit":
        return torch.sigmoid(samples)
    return torch.exp(-torch.exp(samples.clamp(max=50.0)))


def contract_to_model(space: str, values: np.ndarray) -> np.ndarray:
    """Contract-unit values in modelling space ``space`` (retentions clipped to [0.001, 0.9999])."""
    values = np.asarray(values, dtype=float)
    if space == "log10":
        return np.log10(values)
    retention = np.clip(values, *_RETENTION_RANGE)
    if space == "logit":
        return logit(retention)
    return np.log(-np.log(retention))


def reading_slope(space: str, retention: np.ndarray) -> np.ndarray:
    """|d model / d R| of a retention R in modelling space ``space`` (logit: 1/(R(1−R)); ln loss: 1/(R|ln R|))."""
    retention = np.clip(retention, *_RETENTION_RANGE)
    if space == "log_loss":
        return 1.0 / (retention * -np.log(retention))
    return 1.0 / (retention * (1.0 - retention))


# ------------------------------------------------------------------ the laws' means (modelling space)
def crystallised_share(anneal_temp_c: np.ndarray, onset_c: Any, ln_width_c: Any) -> np.ndarray:
    """Share of a film crystallised after annealing at ``anneal_temp_c``: a logistic step at ``onset_c``.

    1/(1 + e^(−(anneal − onset)/w)), w = e^(ln_width_c) °C: a change-point whose position and width are
    fitted (10-90% over 4.4 w).
    """
    width = np.exp(np.clip(ln_width_c, np.log(1.0), np.log(500.0)))
    return 1.0 / (1.0 + np.exp(-np.clip((anneal_temp_c - onset_c) / width, -50.0, 50.0)))


ParameterIndex = dict[str, Any]
"""Base parameter name → its row of θ (an int), or for a per-buffer parameter the rows of each buffer slot (an
int array, indexed by buffer code). Built by :meth:`Law.index`; a law's ``mean`` reads θ through it."""


def _param(theta: np.ndarray, index: ParameterIndex, name: str, codes: np.ndarray | None = None) -> Any:
    """θ's value of parameter ``name`` ((k,) for a global one; (rows × k) at ``codes`` for a per-buffer one); 0 when
    the layout has no such parameter (e.g. the per-buffer Ea offsets without partial pooling)."""
    rows = index.get(name)
    if rows is None:
        return 0.0
    if isinstance(rows, np.ndarray):
        return theta[rows[codes]]
    return theta[rows]


def _arrhenius_mean(theta: np.ndarray, columns: dict[str, np.ndarray], index: ParameterIndex) -> np.ndarray:
    """log10 σ: ln σT = a₂₅ − Ea·v [+ Δ·s(anneal)], v = 1/kT − 1/kT₂₅, s the crystallised share.

    Without the crystallisation parameters the law has no anneal dependence (the
    discrepancy learns it); with them (:data:`CRYSTALLISATION_PRIORS`, 3 more rows) the film's ln σT
    steps by Δ across a crystallisation whose onset and width are fitted (a step in Ea, 0.33 → 0.35 eV
    in the paper, was tried: it widened extrapolated intervals by 20-40% in issue 15's benchmark, and is left
    to the discrepancy).
    """
    temp_k = columns[TEST_TEMP_C] + ZERO_C_K
    v = 1.0 / (K_B_EV * temp_k) - 1.0 / (K_B_EV * T25_K)
    ln_sigma_t = _param(theta, index, "ln_sigma_t_25c") - _param(theta, index, "ea_ev") * v
    if "crystallisation_ln_step" in index:
        share = crystallised_share(
            columns[ANNEAL_TEMP_C],
            _param(theta, index, "crystallisation_onset_c"),
            _param(theta, index, "crystallisation_ln_width_c"),
        )
        ln_sigma_t = ln_sigma_t + _param(theta, index, "crystallisation_ln_step") * share
    return (ln_sigma_t - np.log(temp_k)) / np.log(10.0)


def _rate_mean(theta: np.ndarray, columns: dict[str, np.ndarray], index: ParameterIndex) -> np.ndarray:
    """logit R: 1/C* = e^(ρ_b + Ea_b·u) + e^(ε + Ea_el·u), R = :func:`relative_rate_retention` (C, C*).

    ρ_b = ρ̄ + δ_b and (with partial pooling) Ea_b = Ēa + η_b: each buffer's interface resistance and its
    activation energy are the group's plus an offset (:attr:`Law.group_scales`).

    Coupled to the film (a column :data:`SIGMA_SHIFT`, ln σ(anneal, T) − ln σ(300 °C, 25 °C) from a
    conductivity model): the electrolyte term is e^(ε − shift), so the film's measured conductivity sets
    its temperature and anneal dependence (``electrolyte_ea_ev`` is then not a parameter).
    """
    codes = columns[BUFFER].astype(int).ravel()
    u = inverse_temperature_ev(columns[TEST_TEMP_C])
    rho = _param(theta, index, "ln_interface_resistance") + _param(theta, index, "buffer_effect", codes)
    ea_i = _param(theta, index, "interface_ea_ev") + _param(theta, index, "interface_ea_buffer_effect", codes)
    eps = _param(theta, index, "ln_electrolyte_resistance")
    if SIGMA_SHIFT in columns:
        electrolyte = eps - columns[SIGMA_SHIFT]
    else:
        electrolyte = eps + _param(theta, index, "electrolyte_ea_ev") * u
    ln_inverse_c_star = np.logaddexp(rho + ea_i * u, electrolyte)
    c_star = np.exp(-np.clip(ln_inverse_c_star, -20.0, 20.0))
    retention = relative_rate_retention(columns[C_RATE], c_star)
    return logit(np.minimum(np.maximum(retention, _FRACTION_EPS), 1.0 - _FRACTION_EPS))


def _fade_mean(theta: np.ndarray, columns: dict[str, np.ndarray], index: ParameterIndex) -> np.ndarray:
    """ln(−ln R): −ln R = e^(γ_b)(1 − e^(−(n−1)/n₀)) + e^(λ_b)(n − 1), n Arrhenius-accelerated (Ea_f,b).

    γ_b, λ_b and (with partial pooling) Ea_f,b are each the group's value plus a per-buffer offset."""
    codes = columns[BUFFER].astype(int).ravel()
    u = inverse_temperature_ev(columns[TEST_TEMP_C])
    long = columns[PROTOCOL]
    ln_early = (
        _param(theta, index, "ln_early_loss")
        + _param(theta, index, "early_buffer_effect", codes)
        + long * _param(theta, index, "long_early_offset")
    )
    ln_linear = (
        _param(theta, index, "ln_linear_loss")
        + _param(theta, index, "linear_buffer_effect", codes)
        + long * _param(theta, index, "long_linear_offset")
    )
    ln_n0 = _param(theta, index, "ln_early_cycles")
    ea_f = _param(theta, index, "fade_ea_ev") + _param(theta, index, "fade_ea_buffer_effect", codes)
    ln_steps = np.log(np.maximum(columns[CYCLES] - 1.0, 1e-9)) - np.clip(ea_f * u, -30.0, 30.0)
    early_share = np.log(-np.expm1(-np.exp(ln_steps - ln_n0)) + 1e-300)
    return np.logaddexp(ln_early + early_share, ln_linear + ln_steps)


SIGMA_SHIFT = "ln_sigma_shift"
"""Law column of a coupled rate law: ln σ(anneal, T) − ln σ(:data:`COUPLING_REFERENCE`) of the film."""
COUPLING_REFERENCE = {ANNEAL_TEMP_C: 300.0, TEST_TEMP_C: 25.0}
"""The film state the coupled electrolyte resistance e^ε refers to (the paper's cells: 300 °C film, 25 °C)."""


# ------------------------------------------------------------------ the declaration
AMPLITUDE_FLOOR_REASON = (
    "Data inside a range cannot show that the law holds outside it: a law that fits the data well would otherwise "
    "shrink the discrepancy's amplitude, and with it the variance far from the data, to nothing (measured: 90% "
    "intervals then covered 5-55% of fresh capacity readings at 70-110 °C for cells trained at 25-45 °C in a world "
    "with other fade laws). With the floor the variance far from the data stays at least this large."
)


@dataclass(frozen=True)
class Law:
    """One physics law (see the module docstring for every attribute)."""

    name: str
    description: str
    model_space: str
    required: tuple[str, ...]
    priors: dict[str, Prior]
    mean: Callable[[np.ndarray, dict[str, np.ndarray], ParameterIndex], np.ndarray]
    amplitude: Prior
    noise: Prior
    amplitude_floor: float
    horizon: str | None = None
    knee: bool = False
    narrow_priors: dict[str, Prior] = field(default_factory=dict)
    coupled_drop: tuple[str, ...] = ()
    coupled_to: str | None = None
    pooled_priors: dict[str, Prior] = field(default_factory=dict)
    group_scales: dict[str, Prior] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.model_space not in MODEL_SPACES:
            raise InputError(f"law {self.name}: model_space {self.model_space!r} is not one of {MODEL_SPACES}")

    @property
    def per_buffer(self) -> bool:
        """True when the law has per-buffer parameters (names ending in ``buffer_effect``)."""
        return any(name.endswith("buffer_effect") for name in self.priors)

    def parameters(
        self, n_slots: int, narrow: bool = False, coupled: bool = False, pooled: bool = False
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Parameter names, prior means and prior sds, with ``n_slots`` copies of each per-buffer effect.

        ``narrow``: with the law's narrow-feature terms (:attr:`narrow_priors`, e.g. the crystallisation
        step of the conductivity law) after the others. ``coupled``: without :attr:`coupled_drop` (what a
        coupled conductivity model supplies instead). ``pooled``: with the per-buffer offsets that only
        partial pooling has (:attr:`pooled_priors`, e.g. each buffer's own activation energy about the group's).
        A per-buffer effect's prior sd here is the law's; with partial pooling ``physics_gp`` replaces it by
        the group scale it learns (:attr:`group_scales`).
        """
        priors = {**self.priors, **(self.pooled_priors if pooled else {}), **(self.narrow_priors if narrow else {})}
        if coupled:
            priors = {k: v for k, v in priors.items() if k not in self.coupled_drop}
        names: list[str] = []
        for name in priors:
            names += [f"{name}[{i}]" for i in range(n_slots)] if name.endswith("buffer_effect") else [name]
        base = [n.split("[")[0] for n in names]
        return names, np.array([priors[b].mean for b in base]), np.array([priors[b].sd for b in base])

    @staticmethod
    def index(names: list[str]) -> ParameterIndex:
        """The :data:`ParameterIndex` of a parameter layout (names as :meth:`parameters` returns them)."""
        index: dict[str, Any] = {}
        per_buffer: dict[str, list[int]] = {}
        for row, name in enumerate(names):
            if "[" in name:
                per_buffer.setdefault(name.split("[")[0], []).append(row)
            else:
                index[name] = row
        index.update({name: np.array(rows, dtype=np.intp) for name, rows in per_buffer.items()})
        return index

    def table(self) -> list[dict[str, Any]]:
        """Every prior of the law as a row: parameter, mean, sd, source (like ``surrogate lab params``)."""
        priors = {**self.priors, **self.pooled_priors, **self.narrow_priors}
        rows = [{"parameter": k, "mean": p.mean, "sd": p.sd, "source": p.source} for k, p in priors.items()]
        for name, prior in self.group_scales.items():
            rows.append(
                {"parameter": f"group scale of {name} (ln)", "mean": prior.mean, "sd": prior.sd, "source": prior.source}
            )
        for name, prior in (("discrepancy amplitude (ln)", self.amplitude), ("noise sd (ln)", self.noise)):
            rows.append({"parameter": name, "mean": prior.mean, "sd": prior.sd, "source": prior.source})
        return rows


_OXIDE_EA = "oxide Li-ion conductors (perovskite, garnet, amorphous films): 0.2-0.6 eV"

CRYSTALLISATION_PRIORS: dict[str, Prior] = {
    "crystallisation_ln_step": Prior(
        -0.7,
        1.0,
        "change of ln σT on crystallising: lower ('amorphous LLTO demonstrated high ionic conductivity', Tan 2021 "
        "Sec. 3.1), about a factor 2, ± a factor 2.7 either way",
    ),
    "crystallisation_onset_c": Prior(
        330.0,
        100.0,
        "°C: sputtered LLTO is amorphous after 300 °C and crystalline after 400 °C (Tan 2021, XRD Fig. 1h); other "
        "films crystallise from about 200 to 500 °C",
    ),
    "crystallisation_ln_width_c": Prior(
        float(np.log(20.0)), 0.7, "ln of the logistic width in °C: 10-90% over about 90 °C (Tan 2021: within 100 °C)"
    ),
}
"""The conductivity law's crystallisation step (its narrow-feature terms): size, onset and width, all fitted."""

ARRHENIUS = Law(
    name="arrhenius",
    description="ionic conductivity, Arrhenius in the σ·T form: ln σT = a₂₅ − Ea (1/kT − 1/kT₂₅)",
    model_space="log10",
    required=(TEST_TEMP_C,),
    priors={
        "ln_sigma_t_25c": Prior(
            float(np.log(1e-5 * T25_K)),
            3.0,
            "ln(σT / S K cm⁻¹) at 25 °C: σ ≈ 1e-5 S/cm (thin-film LLTO), ± a factor 20",
        ),
        "ea_ev": Prior(0.35, 0.2, _OXIDE_EA),
    },
    mean=_arrhenius_mean,
    amplitude=Prior(float(np.log(0.3)), 1.0, "discrepancy of about 0.3 decades (anneal effects the law leaves out)"),
    noise=Prior(float(np.log(0.04)), 0.5, "film-to-film and EIS scatter of about 0.04 decades (10%)"),
    amplitude_floor=0.1,
    narrow_priors=CRYSTALLISATION_PRIORS,
)

RATE = Law(
    name="rate",
    description="rate retention of a resistance-limited cell, interface and electrolyte resistances each Arrhenius",
    model_space="logit",
    required=(TEST_TEMP_C, C_RATE),
    priors={
        "ln_interface_resistance": Prior(-1.5, 1.5, "ln(1/C*) of the interface: C* ≈ 4.5 C, ± a factor 4.5"),
        "buffer_effect": Prior(0.0, 1.0, "per buffer, about the mean (hierarchical): a factor 2.7"),
        "interface_ea_ev": Prior(0.35, 0.2, "interfacial charge transfer in oxide thin-film cells: 0.1-0.6 eV"),
        "ln_electrolyte_resistance": Prior(
            -3.0, 1.5, "ln(1/C*) of the electrolyte: a smaller share than the interface"
        ),
        "electrolyte_ea_ev": Prior(0.3, 0.2, _OXIDE_EA),
    },
    mean=_rate_mean,
    amplitude=Prior(float(np.log(0.7)), 1.0, "discrepancy of about 0.7 in logit (other rate-law shapes)"),
    noise=Prior(float(np.log(0.07)), 0.5, "cell-to-cell scatter of about 0.07 in logit"),
    amplitude_floor=0.25,
    coupled_drop=("electrolyte_ea_ev",),
    coupled_to="arrhenius",
    pooled_priors={
        "interface_ea_buffer_effect": Prior(
            0.0, 0.1, "per buffer, about the group's interface Ea (hierarchical): buffers of one cell family, ± 0.1 eV"
        )
    },
    group_scales={
        "buffer_effect": Prior(
            0.0, 0.7, "sd of ln interface resistance between buffers: a factor 2.7 (the paper's buffers span ~2x in C*)"
        ),
        "interface_ea_buffer_effect": Prior(
            float(np.log(0.1)), 0.7, "sd of interface Ea between buffers, eV: about 0.1 (oxide interfaces 0.2-0.6 eV)"
        ),
    },
)

FADE = Law(
    name="fade",
    description="capacity fade in log space: an early drop plus a steady fade, cycles Arrhenius-accelerated",
    model_space="log_loss",
    required=(TEST_TEMP_C, CYCLES),
    priors={
        "ln_early_loss": Prior(float(np.log(0.35)), 1.0, "−ln R of the early drop: about 30% of capacity"),
        "early_buffer_effect": Prior(0.0, 0.7, "per buffer, about the mean (hierarchical)"),
        "ln_linear_loss": Prior(float(np.log(1.5e-3)), 1.5, "−ln R per cycle of the steady fade: 0.15%/cycle"),
        "linear_buffer_effect": Prior(0.0, 0.7, "per buffer, about the mean (hierarchical)"),
        "ln_early_cycles": Prior(float(np.log(15.0)), 0.7, "time constant n₀ of the early drop: 15 cycles"),
        "fade_ea_ev": Prior(0.3, 0.2, "temperature acceleration of fade: 0.1-0.6 eV"),
        "long_early_offset": Prior(0.0, 1.5, "long-protocol shift of the early drop (ln)"),
        "long_linear_offset": Prior(0.0, 1.5, "long-protocol shift of the steady fade (ln)"),
    },
    mean=_fade_mean,
    amplitude=Prior(float(np.log(0.7)), 1.0, "discrepancy of about 0.7 in ln loss (other fade onsets)"),
    noise=Prior(float(np.log(0.07)), 0.5, "cell-to-cell scatter of about 0.07 in ln loss"),
    amplitude_floor=0.25,
    horizon=CYCLES,
    knee=True,
    pooled_priors={
        "fade_ea_buffer_effect": Prior(0.0, 0.1, "per buffer, about the group's fade Ea (hierarchical): ± 0.1 eV")
    },
    group_scales={
        "early_buffer_effect": Prior(float(np.log(0.7)), 0.7, "sd of ln early loss between buffers: a factor 2"),
        "linear_buffer_effect": Prior(float(np.log(0.7)), 0.7, "sd of ln steady fade between buffers: a factor 2"),
        "fade_ea_buffer_effect": Prior(float(np.log(0.1)), 0.7, "sd of fade Ea between buffers, eV: about 0.1"),
    },
)

LAWS: dict[str, Law] = {law.name: law for law in (ARRHENIUS, RATE, FADE)}
"""Every law by the name a target declares as its ``physics_law``."""

LENGTH_PRIORS: dict[str, Prior] = {
    ANNEAL_TEMP_C: Prior(float(np.log(1.0)), 0.7, "anneal / 100 °C: about 100 °C"),
    TEST_TEMP_C: Prior(float(np.log(0.3)), 0.7, "1000/T in 1/K: about 30 °C near 60 °C"),
    C_RATE: Prior(float(np.log(0.7)), 0.7, "log10 C-rate"),
    CYCLES: Prior(float(np.log(0.7)), 0.7, "log10 cycles"),
    PROTOCOL: Prior(float(np.log(1.0)), 0.7, "0 standard, 1 long"),
}
"""Log-normal priors of the discrepancy's length scale per design column (in :func:`gp_coordinate` units)."""

HYPER_BOUNDS: dict[str, tuple[float, float]] = {"amplitude": (1e-3, 20.0), "noise": (1e-3, 3.0), "length": (0.02, 50.0)}
"""Bounds of the discrepancy's hyper-parameters (natural units)."""

NARROW_ANNEAL_AMPLITUDE = Prior(
    float(np.log(0.1)), 1.0, "a narrow anneal feature of about 0.1 (decades or logit): small unless the data show it"
)
NARROW_ANNEAL_LENGTH = Prior(
    float(np.log(0.2)),
    0.5,
    "anneal / 100 °C: about 20 °C, so a window of about 40 °C (a film good only there) can be represented",
)
NARROW_ANNEAL_LENGTH_BOUNDS = (0.05, 0.6)
"""The narrow anneal component's length scale stays within 5-60 °C (the smooth component covers longer ones)."""


def gp_coordinate(column: str, values: np.ndarray) -> np.ndarray:
    """The discrepancy's coordinate of a design column (see :data:`LENGTH_PRIORS` for units)."""
    if column == ANNEAL_TEMP_C:
        return values / 100.0
    if column == TEST_TEMP_C:
        return 1000.0 / (values + ZERO_C_K)
    if column in (C_RATE, CYCLES):
        return np.log10(values)
    return values  # protocol: 0 standard, 1 long


def coupled_source(target: str) -> str | None:
    """The target whose model ``target``'s law can follow (rate retention → conductivity), or None."""
    law = law_of(target)
    if law.coupled_to is None:
        return None
    from surrogate.targets import TARGETS

    sources = [t.name for t in TARGETS.values() if t.physics_law == law.coupled_to]
    return sources[0] if sources else None


def law_of(target: str) -> Law:
    """The law ``target`` declares (``Target.physics_law``); :class:`InputError` when it declares none."""
    declared = get_target(target)
    law = LAWS.get(declared.physics_law) if declared.physics_law else None
    if law is None:
        raise InputError(f"{target}: no physics law is declared for this target; use another model family")
    missing = [c for c in law.required if c not in declared.inputs]
    if missing:
        raise InputError(
            f"{target}: its law {law.name!r} needs {', '.join(missing)}, which the target does not declare"
        )
    return law
