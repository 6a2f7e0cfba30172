"""The design parameters, declared once: name, unit, kind, bounds, default, and the one validator.

Every input path (the CSV/Parquet schema, the CLI, the design-space YAML, model inputs and the HTTP
service) checks a number with :func:`value_problem`, so a value gets the same bounds and the same message
everywhere. The categorical parameters (``buffer``, ``material``, ``protocol``) are vocabularies: the
buffers and materials come from the catalogue (:mod:`surrogate.materials`), the protocols from
:data:`PROTOCOLS`.

Bounds are *plausibility* bounds: what the quantity can be at all for this kind of cell. A design space
narrows them (:class:`surrogate.design.DesignSpace`); a material declares its own plausible anneal and
test-temperature ranges (a sintered pellet is fired at 1,350 °C, a thin film is not), and a row is checked
against the ranges of its material.

Kelvin, decided once:

* a temperature that is exactly a kelvin value (``673.15``) is an error: nobody sets a furnace to 400.15 °C;
* an anneal temperature that is a whole number ≥ 298 whose value − 273 is a multiple of 25 (``573`` →
  300 °C) *may* be kelvin, and 573 °C is a plausible anneal for some materials: inside the bounds in force it
  is accepted with a warning (:func:`kelvin_hint`), outside them the error carries the hint;
* a test temperature ≥ 273 whose celsius value is plausible is an error with the hint (operating a cell
  at 298 °C is outside every material's operating range here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from surrogate.errors import InputError
from surrogate.materials import CATALOGUE, DEFAULT_MATERIAL, MATERIAL_KIND

BUFFER = "buffer"
MATERIAL = "material"
ANNEAL_TEMP_C = "anneal_temp_c"
TEST_TEMP_C = "test_temp_c"
C_RATE = "c_rate"
CYCLES = "cycles"
PROTOCOL = "protocol"

ABSOLUTE_ZERO_C = -273.15
AS_DEPOSITED_C = 25.0
"""``anneal_temp_c`` of a film that was not annealed (as-deposited)."""

PROTOCOLS: tuple[str, ...] = ("standard", "long")
DEFAULT_PROTOCOL = "standard"


@dataclass(frozen=True)
class NumericParameter:
    """A numeric design parameter: ``kind`` ``float`` or ``int``; closed ``bounds`` (``low``, ``high``) in ``unit``.

    ``low_open``: the lower bound itself is excluded (c_rate > 0). ``default``: the value of a design that
    does not give one (None: required).
    """

    name: str
    unit: str
    kind: str
    low: float
    high: float
    description: str
    default: float | None = None
    low_open: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def bounds_text(self, low: float | None = None, high: float | None = None) -> str:
        low = self.low if low is None else low
        high = self.high if high is None else high
        left = "(" if self.low_open and low == self.low else "["
        return f"{left}{_fmt(low)}, {_fmt(high)}] {self.unit}"


@dataclass(frozen=True)
class CategoricalParameter:
    """A categorical design parameter; its ids come from ``vocabulary()`` (the catalogue or a fixed tuple)."""

    name: str
    description: str
    default: str | None = None


ANNEAL = NumericParameter(
    ANNEAL_TEMP_C,
    "°C",
    "float",
    0.0,
    2000.0,
    "anneal (or sintering) temperature of the electrolyte; 25 = as-deposited. The material's own range "
    "applies within these bounds (the LLTO film: 0-1200 °C)",
)
TEST_TEMP = NumericParameter(
    TEST_TEMP_C,
    "°C",
    "float",
    -100.0,
    400.0,
    "temperature the film or cell is measured / operated at. The material's own range applies within these "
    "bounds (the LLTO film: -100 to 200 °C)",
)
C_RATE_PARAMETER = NumericParameter(
    C_RATE, "C", "float", 0.0, 1000.0, "discharge rate rate_retention is asked at", default=30.0, low_open=True
)
CYCLES_PARAMETER = NumericParameter(
    CYCLES, "cycles", "int", 1.0, 1_000_000.0, "cycle count capacity_retention is asked at", default=100.0
)

NUMERIC_PARAMETERS: dict[str, NumericParameter] = {
    p.name: p for p in (ANNEAL, TEST_TEMP, C_RATE_PARAMETER, CYCLES_PARAMETER)
}
"""Every numeric design parameter by name."""

CATEGORICAL_PARAMETERS: dict[str, CategoricalParameter] = {
    BUFFER: CategoricalParameter(BUFFER, "interlayer between cathode and electrolyte (the catalogue's buffers)"),
    MATERIAL: CategoricalParameter(
        MATERIAL, "what was measured (the catalogue's materials); default the paper's LLTO film", "llto_film"
    ),
    PROTOCOL: CategoricalParameter(PROTOCOL, "cycling protocol: standard or long", DEFAULT_PROTOCOL),
}

LEVEL_BOUNDS: tuple[float, float] = (0.5, 0.999)
"""Allowed central interval levels (0.9 = a 90% interval), everywhere: CLI, library, HTTP."""


def _fmt(value: float) -> str:
    return f"{value:g}"


def check_level(level: Any) -> float:
    """``level`` as a float within :data:`LEVEL_BOUNDS`, else :class:`InputError` (the one message)."""
    low, high = LEVEL_BOUNDS
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(level, bool) or not (low <= value <= high):
        raise InputError(f"level: {level} must be from {low:g} to {high:g} (e.g. 0.9 for a 90% interval)")
    return value


def kelvin_hint(column: str, value: float) -> str | None:
    """ "looks like kelvin; did you mean X °C?" when ``value`` of a temperature column may be kelvin, else None."""
    if column not in (ANNEAL_TEMP_C, TEST_TEMP_C) or not math.isfinite(value) or value < 273.0:
        return None
    exact = value + ABSOLUTE_ZERO_C
    if _exact_kelvin(value):
        celsius: float = round(exact)
    elif column == ANNEAL_TEMP_C and float(value).is_integer() and (value - 273) % 25 == 0 and value >= 298:
        celsius = value - 273
    elif column == TEST_TEMP_C and TEST_TEMP.low <= exact <= 200.0:
        celsius = round(exact, 2)
    else:
        return None
    note = " (as-deposited)" if column == ANNEAL_TEMP_C and celsius == AS_DEPOSITED_C else ""
    return f"{_fmt(value)} looks like kelvin; did you mean {_fmt(celsius)} °C{note}? ({column} is in °C)"


def _exact_kelvin(value: float) -> bool:
    exact = value + ABSOLUTE_ZERO_C
    return value >= -ABSOLUTE_ZERO_C and abs(exact - round(exact)) < 1e-6


def material_bounds(column: str, material: str | None = None) -> tuple[float, float] | None:
    """The plausible range (°C) of a temperature column for ``material`` (default: the paper's LLTO film)."""
    if column not in (ANNEAL_TEMP_C, TEST_TEMP_C):
        return None
    entry = CATALOGUE.get(material or DEFAULT_MATERIAL, MATERIAL_KIND)
    return getattr(entry, column)


def value_problem(
    column: str, value: float, bounds: tuple[float, float] | None = None, material: str | None = None
) -> str | None:
    """Why ``value`` is not acceptable for design parameter ``column`` (None when it is): the one validator.

    The bounds in force are the declared plausibility bounds, narrowed by ``bounds`` (a design space's)
    or else by the plausible range of ``material`` (default: the paper's LLTO film). Outside them is an
    error, with the kelvin hint when it applies; an exact kelvin value (``673.15``) is always an error. A
    kelvin-looking value inside the bounds is not a problem here (see :func:`value_warning`).
    Non-parameters (targets) give None.
    """
    parameter = NUMERIC_PARAMETERS.get(column)
    if parameter is None:
        return None
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if column in (ANNEAL_TEMP_C, TEST_TEMP_C) and value < ABSOLUTE_ZERO_C:
        return f"{_fmt(value)} °C is below absolute zero ({ABSOLUTE_ZERO_C} °C): physically impossible"
    if parameter.kind == "int" and not float(value).is_integer():
        return f"{column} must be a whole number of {parameter.unit}; got {_fmt(value)}"
    if bounds is None:
        bounds = material_bounds(column, material)
    low, high = bounds if bounds is not None else parameter.bounds
    low, high = max(low, parameter.low), min(high, parameter.high)
    hint = kelvin_hint(column, value)
    if hint and _exact_kelvin(value):
        return hint
    below = value <= low if (parameter.low_open and low == parameter.low) else value < low
    if below or value > high:
        return _out_of_range(parameter, column, value, (low, high), hint)
    return None


def _out_of_range(
    parameter: NumericParameter, column: str, value: float, bounds: tuple[float, float], hint: str | None
) -> str:
    """The reason a value outside ``bounds`` (the bounds in force) is refused, in the parameter's own words."""
    low, high = bounds
    if column == C_RATE and value <= 0:
        return f"c_rate must be > 0 C; got {_fmt(value)}"
    if column == CYCLES and value < 1:
        return f"cycles must be >= 1; got {_fmt(value)}"
    if hint:
        return hint
    if column == ANNEAL_TEMP_C:
        return (
            f"{_fmt(value)} °C is not a plausible anneal temperature ({_fmt(low)} to {_fmt(high)} °C; "
            f"as-deposited is {_fmt(AS_DEPOSITED_C)})"
        )
    if column == TEST_TEMP_C:
        return f"{_fmt(value)} °C is outside any plausible operating temperature ({_fmt(low)} to {_fmt(high)} °C)"
    return f"{_fmt(value)} is outside the allowed range {parameter.bounds_text(low, high)}"


def value_warning(column: str, value: float) -> str | None:
    """A warning for an accepted value that may still be a mistake (a temperature that looks like kelvin)."""
    hint = kelvin_hint(column, value)
    return f"{hint}; kept as °C" if hint else None


def check_value(column: str, value: Any, bounds: tuple[float, float] | None = None) -> float:
    """``value`` as a number acceptable for ``column``, else :class:`InputError` naming the column and the reason.

    Numbers are bounded *before* any arithmetic (a cycle count of 10**30 is a clear error, never an overflow).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{column}: {value!r} is not a number") from None
    else:
        try:
            number = float(value)
        except OverflowError:
            raise InputError(f"{column}: {value!r} is too large") from None
    why = value_problem(column, number, bounds)
    if why:
        raise InputError(f"{column}: {why}")
    return number
