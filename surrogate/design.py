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

import difflib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from surrogate.errors import InputError

# ---------------------------------------------------------------- field names
BUFFER = "buffer"
ANNEAL_TEMP_C = "anneal_temp_c"
TEST_TEMP_C = "test_temp_c"
C_RATE = "c_rate"
CYCLES = "cycles"
PROTOCOL = "protocol"

DESIGN_FIELDS: tuple[str, ...] = (BUFFER, ANNEAL_TEMP_C, TEST_TEMP_C, C_RATE, CYCLES, PROTOCOL)

CONDUCTIVITY = "conductivity_s_cm"
RATE_RETENTION = "rate_retention"
CAPACITY_RETENTION = "capacity_retention"

TARGETS: tuple[str, ...] = (CONDUCTIVITY, RATE_RETENTION, CAPACITY_RETENTION)

TARGET_UNITS: dict[str, str] = {
    CONDUCTIVITY: "S/cm",
    RATE_RETENTION: "fraction of 0.1 C capacity",
    CAPACITY_RETENTION: "fraction of initial capacity",
}

DEFAULT_C_RATE = 30.0
DEFAULT_CYCLES = 100
DEFAULT_PROTOCOL = "standard"
REFERENCE_C_RATE = 0.1
"""``rate_retention`` is capacity at C over capacity at this rate (0.1 C): exactly 1 at and below it."""
REFERENCE_CYCLE = 1
"""``capacity_retention`` is relative to the capacity of this cycle: exactly 1 there."""
AS_DEPOSITED_C = 25.0
"""``anneal_temp_c`` of a film that was not annealed (as-deposited)."""

# ------------------------------------------------------------------- buffers
BUFFERS: tuple[str, ...] = ("none", "llto_ncm", "sio2", "lipon")

BUFFER_LABELS: dict[str, str] = {
    "none": "no buffer (cell A, NCM/LLTO/Li)",
    "llto_ncm": "homogeneous LLTO/NCM multilayer (cell B)",
    "sio2": "SiO2 (cell C)",
    "lipon": "LiPON",
}

_BUFFER_ALIASES: dict[str, str] = {
    "none": "none",
    "no": "none",
    "nobuffer": "none",
    "bare": "none",
    "reference": "none",
    "ref": "none",
    "a": "none",
    "llto_ncm": "llto_ncm",
    "lltoncm": "llto_ncm",
    "homogeneous": "llto_ncm",
    "b": "llto_ncm",
    "sio2": "sio2",
    "silica": "sio2",
    "c": "sio2",
    "lipon": "lipon",
}


def _alias_key(text: str) -> str:
    key = text.strip().lower().replace("₂", "2")
    return re.sub(r"[\s/\-_.()]+", "", key)


def canonical_buffer(value: object) -> str:
    """Return the canonical buffer id for ``value``, accepting the usual aliases.

    ``"SiO2"``, ``"SiO₂"``, ``"LiPON"``, ``"LLTO/NCM"``, ``"bare"`` and
    ``"reference"`` (any case) are accepted; outputs always use the ids in
    :data:`BUFFERS`. Raises :class:`InputError` naming the allowed ids and the
    closest match when the value is not a buffer.
    """
    if isinstance(value, str):
        key = _alias_key(value)
        if key in _BUFFER_ALIASES:
            return _BUFFER_ALIASES[key]
    raise InputError(unknown_buffer_message(value))


def unknown_buffer_message(value: object) -> str:
    """The error text for a value that is not a known buffer."""
    text = str(value)
    candidates = list(BUFFERS) + [a for a in _BUFFER_ALIASES if len(a) > 2]
    close = difflib.get_close_matches(_alias_key(text), candidates, n=1, cutoff=0.5)
    hint = f"; did you mean '{_BUFFER_ALIASES.get(close[0], close[0])}'?" if close else ""
    return f"unknown buffer {text!r}: allowed ids are {', '.join(BUFFERS)}{hint}"


# ----------------------------------------------------------------- protocols
PROTOCOLS: tuple[str, ...] = ("standard", "long")

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
def _finite_number(name: str, value: object) -> float:
    """``value`` as a finite float, or an :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise InputError(f"{name}: {value!r} is not a finite number")
    return float(value)


@dataclass(frozen=True)
class DesignSpace:
    """Where search and campaigns may propose designs.

    Temperatures in °C. ``buffers`` is the categorical choice; ``anneal_temp_c``
    and ``test_temp_c`` are closed intervals. User constraints narrow the
    space further: ``max_anneal_temp_c`` (for example what a substrate
    tolerates) and ``min_test_temp_c`` / ``max_test_temp_c`` (operating
    window). The default is the paper's space.
    """

    buffers: tuple[str, ...] = BUFFERS
    anneal_temp_c: tuple[float, float] = (25.0, 500.0)
    test_temp_c: tuple[float, float] = (25.0, 120.0)
    max_anneal_temp_c: float | None = None
    min_test_temp_c: float | None = None
    max_test_temp_c: float | None = None
    name: str = "paper"
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        from surrogate.schema import value_problem  # the plausibility checks every input path shares

        if isinstance(self.buffers, str) or not isinstance(self.buffers, (list, tuple)):
            raise InputError(f"buffers: give a list of buffer ids (e.g. [sio2, lipon]), not {self.buffers!r}")
        buffers = tuple(canonical_buffer(b) for b in self.buffers)
        if not buffers:
            raise InputError("buffers: at least one buffer is required")
        if len(set(buffers)) != len(buffers):
            raise InputError("buffers: each buffer may be listed once")
        object.__setattr__(self, "buffers", buffers)
        for name in (ANNEAL_TEMP_C, TEST_TEMP_C):
            bounds = getattr(self, name)
            if isinstance(bounds, str) or not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
                raise InputError(f"{name}: give [lower, upper] in °C, not {bounds!r}")
            low, high = (_finite_number(name, v) for v in bounds)
            for bound in (low, high):
                why = value_problem(name, bound)
                if why:
                    raise InputError(f"{name}: bound {why}")
            if not low <= high:
                raise InputError(f"{name}: lower bound {low:g} °C is above upper bound {high:g} °C")
            object.__setattr__(self, name, (low, high))
        for name in ("max_anneal_temp_c", "min_test_temp_c", "max_test_temp_c"):
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

    @property
    def effective_anneal_temp_c(self) -> tuple[float, float]:
        """Anneal range after user constraints, °C."""
        low, high = self.anneal_temp_c
        if self.max_anneal_temp_c is not None:
            high = min(high, self.max_anneal_temp_c)
        return low, high

    @property
    def effective_test_temp_c(self) -> tuple[float, float]:
        """Operating-temperature range after user constraints, °C."""
        low, high = self.test_temp_c
        if self.min_test_temp_c is not None:
            low = max(low, self.min_test_temp_c)
        if self.max_test_temp_c is not None:
            high = min(high, self.max_test_temp_c)
        return low, high

    def violations(self, design: dict[str, Any]) -> list[str]:
        """Reasons ``design`` lies outside this space (empty when inside)."""
        reasons = []
        try:
            buffer = canonical_buffer(design.get(BUFFER))
        except InputError as exc:
            reasons.append(f"{BUFFER}: {exc}")
        else:
            if buffer not in self.buffers:
                reasons.append(f"{BUFFER}: {buffer!r} is not in this space ({', '.join(self.buffers)})")
        for name, (low, high) in (
            (ANNEAL_TEMP_C, self.effective_anneal_temp_c),
            (TEST_TEMP_C, self.effective_test_temp_c),
        ):
            value = design.get(name)
            if not isinstance(value, (int, float)) or value != value:
                reasons.append(f"{name}: a number in °C is required")
            elif not low <= float(value) <= high:
                reasons.append(f"{name}: {value} °C is outside [{low:g}, {high:g}] °C")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the space."""
        data = asdict(self)
        data["buffers"] = list(self.buffers)
        data["anneal_temp_c"] = list(self.anneal_temp_c)
        data["test_temp_c"] = list(self.test_temp_c)
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
