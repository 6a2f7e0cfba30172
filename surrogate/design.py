"""The design vocabulary shared by every part of the project (see CONTRACT.md).

A *design* is what a scientist chooses before an experiment: the buffer layer
between the NCM cathode and the LLTO electrolyte, the anneal temperature of the
LLTO film, the temperature the film or cell is measured at and, for cells, the
C-rate and cycle count the answer is wanted at and the cycling protocol.

This module is the one place those names, their units and their allowed values
live. The design *space* (bounds and user constraints for search) is
:class:`DesignSpace`, also here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from surrogate import materials as _materials
from surrogate.errors import InputError
from surrogate.materials import BUFFER_KIND, CATALOGUE, DEFAULT_MATERIAL, MATERIAL_KIND, alias_key
from surrogate.parameters import (
    ANNEAL,
    ANNEAL_TEMP_C,
    AS_DEPOSITED_C,
    BUFFER,
    C_RATE,
    CATEGORICAL_PARAMETERS,
    CYCLES,
    DEFAULT_PROTOCOL,
    MATERIAL,
    NUMERIC_PARAMETERS,
    PROTOCOL,
    PROTOCOLS,
    TEST_TEMP,
    TEST_TEMP_C,
    CategoricalParameter,
    NumericParameter,
    value_problem,
)
from surrogate.targets import (
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    PAPER_TARGETS,
    RATE_RETENTION,
    REFERENCE_C_RATE,
    REFERENCE_CYCLE,
)
from surrogate.targets import UNITS as TARGET_UNITS

# ---------------------------------------------------------------- field names
# Declared in surrogate.parameters (design parameters) and surrogate.targets (targets); re-exported here
# under the names the rest of the project has always used.
__all__ = [
    "ANNEAL_TEMP_C",
    "AS_DEPOSITED_C",
    "BUFFER",
    "BUFFERS",
    "BUFFER_LABELS",
    "CAPACITY_RETENTION",
    "CONDUCTIVITY",
    "CYCLES",
    "C_RATE",
    "DEFAULT_C_RATE",
    "DEFAULT_CYCLES",
    "DEFAULT_MATERIAL",
    "DEFAULT_PROTOCOL",
    "DESIGN_FIELDS",
    "DesignSpace",
    "MATERIAL",
    "PROTOCOL",
    "PROTOCOLS",
    "PROTOCOL_LABELS",
    "RATE_RETENTION",
    "REFERENCE_C_RATE",
    "REFERENCE_CYCLE",
    "SPACE_CHOICE",
    "SPACE_RANGES",
    "SpaceRange",
    "TARGETS",
    "TARGET_UNITS",
    "TEST_TEMP_C",
    "buffer_label",
    "canonical_buffer",
    "canonical_material",
    "canonical_protocol",
    "unknown_buffer_message",
]

DESIGN_FIELDS: tuple[str, ...] = (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL)
"""The contract's design fields (``material`` is optional: see :data:`OPTIONAL_DESIGN_FIELDS`)."""
OPTIONAL_DESIGN_FIELDS: tuple[str, ...] = (MATERIAL,)
"""Design fields a design may leave out: ``material`` (default :data:`DEFAULT_MATERIAL`, the paper's LLTO film)."""

TARGETS: tuple[str, ...] = PAPER_TARGETS
"""The paper's three targets; every declared target (including ones registered at run time) is in
:data:`surrogate.targets.TARGETS`."""

DEFAULT_C_RATE = float(NUMERIC_PARAMETERS[C_RATE].default or 30.0)
DEFAULT_CYCLES = int(NUMERIC_PARAMETERS[CYCLES].default or 100)

# ------------------------------------------------------------------- buffers
BUFFERS: tuple[str, ...] = _materials.DEFAULT_BUFFERS
"""The paper's four buffers (the catalogue's defaults). Every buffer known now: :func:`surrogate.materials.buffer_ids`."""

BUFFER_LABELS: dict[str, str] = {m.id: m.display_name for m in CATALOGUE.entries(BUFFER_KIND)}
"""Display name of each buffer id (kept up to date as materials are declared)."""


def _refresh_labels() -> None:
    for entry in CATALOGUE.entries(BUFFER_KIND):
        BUFFER_LABELS.setdefault(entry.id, entry.display_name)


CATALOGUE.on_change(_refresh_labels)


def _alias_key(text: str) -> str:
    return alias_key(text)


def canonical_buffer(value: object) -> str:
    """Return the canonical buffer id for ``value``, accepting the usual aliases.

    ``"SiO2"``, ``"SiO₂"``, ``"LiPON"``, ``"LLTO/NCM"``, ``"bare"`` and
    ``"reference"`` (any case) are accepted, and every buffer declared in a
    materials file; outputs always use canonical ids. Raises :class:`InputError`
    naming the allowed ids and the closest match when the value is not a buffer.
    """
    return CATALOGUE.canonical(value, BUFFER_KIND)


def unknown_buffer_message(value: object) -> str:
    """The error text for a value that is not a known buffer."""
    return CATALOGUE.unknown_message(value, BUFFER_KIND)


def buffer_label(buffer: str) -> str:
    """Display name of a buffer id (the id itself when unknown)."""
    return CATALOGUE.get(buffer, BUFFER_KIND).display_name if (BUFFER_KIND, buffer) in CATALOGUE else buffer


def canonical_material(value: object) -> str:
    """Canonical id of a material (what was measured); blank/None is the default, the paper's LLTO film."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_MATERIAL
    return CATALOGUE.canonical(value, MATERIAL_KIND)


# ----------------------------------------------------------------- protocols
PROTOCOL_LABELS: dict[str, str] = {
    "standard": "3 uA (about 0.1 C), 3.2-4.2 V: the paper's 100-cycle test",
    "long": "40 uA, 2.8-4.2 V: the paper's 1000-cycle SiO2 test",
}


def canonical_protocol(value: object) -> str:
    """Return the canonical protocol id (``standard`` or ``long``)."""
    if isinstance(value, str) and value.strip().lower() in PROTOCOLS:
        return value.strip().lower()
    raise InputError(f"unknown protocol {value!r}: allowed ids are {', '.join(PROTOCOLS)}")


# ------------------------------------------------------------- design space
def _checked_buffers(buffers: object) -> tuple[str, ...]:
    """A space's buffers as canonical ids: a non-empty list, each buffer once; an :class:`InputError` otherwise."""
    if isinstance(buffers, str) or not isinstance(buffers, (list, tuple)):
        raise InputError(f"buffers: give a list of buffer ids (e.g. [sio2, lipon]), not {buffers!r}")
    checked = tuple(canonical_buffer(b) for b in buffers)
    if not checked:
        raise InputError("buffers: at least one buffer is required")
    if len(set(checked)) != len(checked):
        raise InputError("buffers: each buffer may be listed once")
    return checked


def _finite_number(name: str, value: object) -> float:
    """``value`` as a finite float, or an :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise InputError(f"{name}: {value!r} is not a finite number")
    return float(value)


@dataclass(frozen=True)
class SpaceRange:
    """A continuous axis of every design space: a declared numeric parameter (:mod:`surrogate.parameters`), the
    interval a space takes when it gives none (the paper's, in the parameter's unit), and the names of the
    :class:`DesignSpace` fields of user constraints that narrow it (None: no such constraint)."""

    parameter: NumericParameter
    default: tuple[float, float]
    min_field: str | None = None
    max_field: str | None = None

    @property
    def name(self) -> str:
        """The parameter's name, which is also the :class:`DesignSpace` field holding the interval."""
        return self.parameter.name

    def checked(self, bounds: object, material: str) -> tuple[float, float]:
        """``bounds`` as (lower, upper) floats within the parameter's plausible range for ``material``; an
        :class:`InputError` naming the parameter otherwise."""
        name, unit = self.name, self.parameter.unit
        if isinstance(bounds, str) or not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise InputError(f"{name}: give [lower, upper] in {unit}, not {bounds!r}")
        low, high = (_finite_number(name, v) for v in bounds)
        for bound in (low, high):
            why = value_problem(name, bound, material=material)
            if why:
                raise InputError(f"{name}: bound {why}")
        if not low <= high:
            raise InputError(f"{name}: lower bound {low:g} {unit} is above upper bound {high:g} {unit}")
        return low, high


SPACE_RANGES: tuple[SpaceRange, ...] = (
    SpaceRange(ANNEAL, (25.0, 500.0), max_field="max_anneal_temp_c"),
    SpaceRange(TEST_TEMP, (25.0, 120.0), min_field="min_test_temp_c", max_field="max_test_temp_c"),
)
"""The continuous axes of a design space, in order: anneal temperature and test temperature (°C)."""
SPACE_CHOICE: CategoricalParameter = CATEGORICAL_PARAMETERS[BUFFER]
"""The categorical axis of a design space: the buffer (any catalogue buffer; the field ``buffers`` lists them)."""
CONSTRAINT_FIELDS: tuple[str, ...] = tuple(
    name for axis in SPACE_RANGES for name in (axis.min_field, axis.max_field) if name is not None
)
"""The :class:`DesignSpace` fields of user constraints (°C), in the order they are checked."""
_RANGE_BY_NAME = {axis.name: axis for axis in SPACE_RANGES}


@dataclass(frozen=True)
class DesignSpace:
    """Where search and campaigns may propose designs.

    Temperatures in °C. ``buffers`` is the categorical choice (any catalogue
    buffer, including ones declared in a materials file); ``anneal_temp_c``
    and ``test_temp_c`` are closed intervals, checked against the plausible
    ranges of the space's ``material`` (default the paper's LLTO film; a
    space for sintered pellets, ``material: llto_bulk``, may anneal at
    1,350 °C). User constraints narrow the space further:
    ``max_anneal_temp_c`` (for example what a substrate tolerates) and
    ``min_test_temp_c`` / ``max_test_temp_c`` (operating window). The default
    is the paper's space.

    The axes are the declared parameters (:data:`SPACE_CHOICE`, :data:`SPACE_RANGES`): their names, units,
    default intervals and plausibility checks come from :mod:`surrogate.parameters`.
    """

    buffers: tuple[str, ...] = BUFFERS
    anneal_temp_c: tuple[float, float] = _RANGE_BY_NAME[ANNEAL_TEMP_C].default
    test_temp_c: tuple[float, float] = _RANGE_BY_NAME[TEST_TEMP_C].default
    max_anneal_temp_c: float | None = None
    min_test_temp_c: float | None = None
    max_test_temp_c: float | None = None
    name: str = "paper"
    notes: str = field(default="", compare=False)
    material: str = DEFAULT_MATERIAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "buffers", _checked_buffers(self.buffers))
        object.__setattr__(self, "material", canonical_material(self.material))
        for axis in SPACE_RANGES:
            object.__setattr__(self, axis.name, axis.checked(getattr(self, axis.name), self.material))
        for name in CONSTRAINT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _finite_number(name, value))
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"name: give a non-empty text, not {self.name!r}")
        a_low, a_high = self.anneal_temp_c
        if a_low < AS_DEPOSITED_C:
            raise InputError(f"anneal_temp_c: lower bound {a_low:g} °C is below {AS_DEPOSITED_C:g} (as-deposited)")
        if self.max_anneal_temp_c is not None and self.max_anneal_temp_c < a_low:
            raise InputError(f"max_anneal_temp_c: {self.max_anneal_temp_c:g} °C leaves no anneal temperature")
        lo, hi = self.effective_test_temp_c
        if lo > hi:
            raise InputError("min_test_temp_c / max_test_temp_c leave no operating temperature")

    def effective(self, name: str) -> tuple[float, float]:
        """The interval of axis ``name`` (:data:`SPACE_RANGES`) after the user constraints, in its unit."""
        axis = _RANGE_BY_NAME[name]
        low, high = getattr(self, name)
        if axis.min_field is not None and getattr(self, axis.min_field) is not None:
            low = max(low, getattr(self, axis.min_field))
        if axis.max_field is not None and getattr(self, axis.max_field) is not None:
            high = min(high, getattr(self, axis.max_field))
        return low, high

    @property
    def effective_anneal_temp_c(self) -> tuple[float, float]:
        """Anneal range after user constraints, °C."""
        return self.effective(ANNEAL_TEMP_C)

    @property
    def effective_test_temp_c(self) -> tuple[float, float]:
        """Operating-temperature range after user constraints, °C."""
        return self.effective(TEST_TEMP_C)

    def violations(self, design: dict[str, Any]) -> list[str]:
        """Reasons ``design`` lies outside this space (empty when inside)."""
        reasons = []
        try:
            material = canonical_material(design.get(MATERIAL))
        except InputError as exc:
            reasons.append(f"{MATERIAL}: {exc}")
        else:
            if material != self.material:
                reasons.append(f"{MATERIAL}: {material!r} is not this space's material ({self.material})")
        try:
            buffer = canonical_buffer(design.get(BUFFER))
        except InputError as exc:
            reasons.append(f"{BUFFER}: {exc}")
        else:
            if buffer not in self.buffers:
                reasons.append(f"{BUFFER}: {buffer!r} is not in this space ({', '.join(self.buffers)})")
        for axis in SPACE_RANGES:
            name, unit = axis.name, axis.parameter.unit
            low, high = self.effective(name)
            value = design.get(name)
            if not isinstance(value, (int, float)) or value != value:
                reasons.append(f"{name}: a number in {unit} is required")
            elif not low <= float(value) <= high:
                reasons.append(f"{name}: {value} {unit} is outside [{low:g}, {high:g}] {unit}")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the space."""
        data = asdict(self)
        data["buffers"] = list(self.buffers)
        for axis in SPACE_RANGES:
            data[axis.name] = list(getattr(self, axis.name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesignSpace:
        """Build a space from a mapping (as read from YAML or JSON)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown design-space keys {unknown}: allowed are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DesignSpace:
        """Read a space from a YAML file (keys as in :meth:`to_dict`); every problem is an :class:`InputError`."""
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except FileNotFoundError:
            raise InputError(f"{path}: no such design-space file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the design-space file ({exc})") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            raise InputError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
        if data is None:
            raise InputError(f"{path}: the file is empty; give the keys to change, or leave out --space")
        if not isinstance(data, dict):
            raise InputError(f"{path}: a design space is a mapping of keys to values")
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
