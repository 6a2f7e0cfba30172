"""The materials catalogue: buffer layers and electrolyte materials as data, not code.

Two vocabularies, each an ordered list of :class:`Material` entries:

* ``buffers`` — the interlayer between the NCM cathode and the electrolyte (the ``buffer`` design field);
* ``materials`` — what was measured (the optional ``material`` column: the paper's sputtered LLTO film by
  default, or another electrolyte, a bulk pellet, ...).

The defaults are read from ``surrogate/data/materials.yaml`` (the paper's four buffers, the LLTO film and a
bulk LLTO pellet). A user declares more in a YAML file of the same shape and passes it as
``--materials FILE`` (:func:`add_materials_argument` / :func:`load_catalogue`), or lists it in the
``SURROGATE_MATERIALS`` environment variable (every command and the service), or calls
:func:`use_materials` in Python. Declared materials join the process-wide :data:`CATALOGUE`, which only
grows (ids keep their position, so integer codes stay valid); declaring an id again with other values is an
:class:`~surrogate.errors.InputError`. A fitted model stores the entries it was trained on and declares them
again when it is loaded, so ``predict`` and ``serve`` need no materials file.

Every entry has an ``id`` (lower case), ``aliases`` (matched ignoring case, spaces, ``/-_.()`` and
subscript 2), a ``display_name``, physical :class:`Descriptors` and a ``source`` saying where the descriptor
values come from. Buffer entries may carry ``lab`` numbers for the virtual lab (``rate_30c`` and
``retention_100``: a :class:`~surrogate.physics.LabParameters` field name or a value); material entries carry
their plausible ``anneal_temp_c`` and ``test_temp_c`` ranges (°C).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from surrogate.errors import InputError

BUFFER_KIND = "buffers"
MATERIAL_KIND = "materials"
KINDS: tuple[str, ...] = (BUFFER_KIND, MATERIAL_KIND)
KIND_FIELD = {BUFFER_KIND: "buffer", MATERIAL_KIND: "material"}
"""Catalogue section → the design field whose values it lists."""

DESCRIPTOR_CLASSES: tuple[str, ...] = ("oxide", "nitride", "phosphate", "none")
"""Allowed values of the ``class`` descriptor (``none``: no layer at all)."""

DEFAULT_MATERIAL = "llto_film"
"""The material of a row without a ``material`` value: the paper's sputtered LLTO film."""

DESCRIPTOR_FEATURES: tuple[str, ...] = (
    "is_layer",
    "class_oxide",
    "class_nitride",
    "class_phosphate",
    "conducts_li",
    "electronic_insulator",
    "log10_thickness_nm",
    "log10_ionic_s_cm",
)
"""Names of the numeric descriptor vector of :meth:`Descriptors.vector`, in order."""

_NO_LAYER_LOG10_SIGMA = -10.0
"""log10 σ used in the descriptor vector when a layer's conductivity is not given (no layer: it never matters,
``is_layer`` is 0 and every layer property is 0)."""


def alias_key(text: str) -> str:
    """The form aliases are compared in: lower case, subscript 2 as 2, no spaces or ``/-_.()``."""
    key = text.strip().lower().replace("₂", "2").replace("₃", "3").replace("₄", "4")
    return re.sub(r"[\s/\-_.()]+", "", key)


@dataclass(frozen=True)
class Descriptors:
    """Physical descriptors of a layer or electrolyte (approximate; orders of magnitude).

    ``material_class``: one of :data:`DESCRIPTOR_CLASSES`; ``conducts_li``; ``thickness_nm`` (typical, nm);
    ``log10_ionic_s_cm`` (order of magnitude of the Li-ion conductivity, log10 S/cm; None for no layer);
    ``electronic_insulator``.
    """

    material_class: str
    conducts_li: bool
    thickness_nm: float
    log10_ionic_s_cm: float | None
    electronic_insulator: bool

    def vector(self) -> np.ndarray:
        """The numeric descriptor vector (:data:`DESCRIPTOR_FEATURES`), what ``encoding="descriptors"`` feeds."""
        layer = self.material_class != "none"
        sigma = _NO_LAYER_LOG10_SIGMA if self.log10_ionic_s_cm is None else float(self.log10_ionic_s_cm)
        return np.array(
            [
                float(layer),
                float(self.material_class == "oxide"),
                float(self.material_class == "nitride"),
                float(self.material_class == "phosphate"),
                float(self.conducts_li and layer),
                float(self.electronic_insulator and layer),
                float(np.log10(1.0 + max(self.thickness_nm, 0.0))),
                sigma if layer else 0.0,
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.material_class,
            "conducts_li": self.conducts_li,
            "thickness_nm": self.thickness_nm,
            "log10_ionic_s_cm": self.log10_ionic_s_cm,
            "electronic_insulator": self.electronic_insulator,
        }


@dataclass(frozen=True)
class Material:
    """One catalogue entry (see the module docstring). ``kind`` is ``buffers`` or ``materials``."""

    id: str
    kind: str
    display_name: str
    descriptors: Descriptors
    aliases: tuple[str, ...] = ()
    source: str = ""
    lab: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    anneal_temp_c: tuple[float, float] | None = None
    test_temp_c: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry as written in a materials file."""
        out: dict[str, Any] = {
            "id": self.id,
            "display_name": self.display_name,
            "aliases": list(self.aliases),
            "descriptors": self.descriptors.to_dict(),
            "source": self.source,
        }
        if self.lab:
            out["lab"] = dict(self.lab)
        for name in ("anneal_temp_c", "test_temp_c"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        return out

    def same_as(self, other: Material) -> bool:
        """True when ``other`` declares the same thing (so declaring it again is harmless)."""
        return self.to_dict() == other.to_dict() and self.kind == other.kind


# ------------------------------------------------------------------ parsing
_ENTRY_KEYS = {"id", "display_name", "aliases", "descriptors", "source", "lab", "anneal_temp_c", "test_temp_c"}
_DESCRIPTOR_KEYS = {"class", "conducts_li", "thickness_nm", "log10_ionic_s_cm", "electronic_insulator"}
_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _number(where: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InputError(f"{where}: {value!r} is not a finite number")
    return float(value)


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: {value!r} must be true or false")
    return value


def _range(where: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{where}: give [lower, upper] in °C, not {value!r}")
    low, high = (_number(where, v) for v in value)
    assert low is not None and high is not None
    if not low < high:
        raise InputError(f"{where}: lower bound {low:g} °C is not below upper bound {high:g} °C")
    return low, high


def parse_descriptors(where: str, data: Any) -> Descriptors:
    """:class:`Descriptors` from a mapping (keys ``class``, ``conducts_li``, ``thickness_nm``, ...)."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: a mapping with keys {sorted(_DESCRIPTOR_KEYS)} is required")
    unknown = sorted(set(data) - _DESCRIPTOR_KEYS)
    missing = sorted(_DESCRIPTOR_KEYS - set(data) - {"log10_ionic_s_cm"})
    if unknown:
        raise InputError(f"{where}: unknown descriptor(s) {unknown}; allowed are {sorted(_DESCRIPTOR_KEYS)}")
    if missing:
        raise InputError(f"{where}: missing descriptor(s) {missing}")
    material_class = data["class"]
    if material_class not in DESCRIPTOR_CLASSES:
        raise InputError(f"{where}.class: {material_class!r} is not one of {', '.join(DESCRIPTOR_CLASSES)}")
    thickness = _number(f"{where}.thickness_nm", data["thickness_nm"])
    assert thickness is not None
    if thickness < 0:
        raise InputError(f"{where}.thickness_nm: {thickness:g} nm must be >= 0")
    sigma = _number(f"{where}.log10_ionic_s_cm", data.get("log10_ionic_s_cm"), allow_none=True)
    if sigma is not None and not -20.0 <= sigma <= 2.0:
        raise InputError(f"{where}.log10_ionic_s_cm: {sigma:g} is not a log10 conductivity in S/cm (-20 to 2)")
    if sigma is None and material_class != "none":
        raise InputError(f"{where}.log10_ionic_s_cm: required for a layer (class {material_class})")
    return Descriptors(
        material_class=material_class,
        conducts_li=_flag(f"{where}.conducts_li", data["conducts_li"]),
        thickness_nm=thickness,
        log10_ionic_s_cm=sigma,
        electronic_insulator=_flag(f"{where}.electronic_insulator", data["electronic_insulator"]),
    )


def _lab_numbers(kind: str, lab: Any, where: str) -> dict[str, Any]:
    """A buffer entry's virtual-lab numbers (``rate_30c``, ``retention_100``: fractions or LabParameters names)."""
    if kind != BUFFER_KIND and lab:
        raise InputError(f"{where}.lab: virtual-lab numbers belong to buffer entries only")
    if not isinstance(lab, dict) or set(lab) - {"rate_30c", "retention_100"}:
        raise InputError(f"{where}.lab: give rate_30c and retention_100 (a fraction, or a LabParameters name)")
    for key, value in lab.items():
        if not isinstance(value, str):
            number = _number(f"{where}.lab.{key}", value)
            assert number is not None
            if not 0.0 < number < 1.0:
                raise InputError(f"{where}.lab.{key}: {number:g} must be a fraction between 0 and 1")
    return lab


def _temperature_bounds(kind: str, data: dict[str, Any], where: str) -> dict[str, tuple[float, float]]:
    """A material entry's own plausible anneal and test temperature ranges (°C)."""
    bounds = {}
    for name in ("anneal_temp_c", "test_temp_c"):
        if data.get(name) is not None:
            if kind != MATERIAL_KIND:
                raise InputError(f"{where}.{name}: temperature ranges belong to material entries only")
            bounds[name] = _range(f"{where}.{name}", data[name])
    return bounds


def parse_entry(kind: str, data: Any, where: str) -> Material:
    """One :class:`Material` from a mapping of a materials file; :class:`InputError` naming ``where``."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: an entry is a mapping with keys {sorted(_ENTRY_KEYS)}")
    unknown = sorted(set(data) - _ENTRY_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; allowed are {sorted(_ENTRY_KEYS)}")
    material_id = data.get("id")
    if not isinstance(material_id, str) or not _ID.match(material_id):
        raise InputError(
            f"{where}.id: {material_id!r} must be lower-case letters, digits and _ (starting with a letter)"
        )
    where = f"{where} ({material_id})"
    display = data.get("display_name", material_id)
    if not isinstance(display, str) or not display.strip():
        raise InputError(f"{where}.display_name: give a non-empty text")
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and alias_key(a) for a in aliases):
        raise InputError(f"{where}.aliases: give a list of texts")
    if "descriptors" not in data:
        raise InputError(f"{where}.descriptors: required (class, conducts_li, thickness_nm, ...)")
    descriptors = parse_descriptors(f"{where}.descriptors", data["descriptors"])
    source = data.get("source", "")
    if not isinstance(source, str):
        raise InputError(f"{where}.source: give a text")
    lab = _lab_numbers(kind, data.get("lab") or {}, where)
    bounds = _temperature_bounds(kind, data, where)
    return Material(
        id=material_id,
        kind=kind,
        display_name=display.strip(),
        descriptors=descriptors,
        aliases=tuple(aliases),
        source=source,
        lab=dict(lab),
        **bounds,
    )


def parse_catalogue(data: Any, where: str) -> list[Material]:
    """Entries of a materials document (``{buffers: [...], materials: [...]}``)."""
    if data is None:
        raise InputError(f"{where}: the file is empty; declare 'buffers:' and/or 'materials:'")
    if not isinstance(data, dict):
        raise InputError(f"{where}: a materials file is a mapping with keys {', '.join(KINDS)}")
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise InputError(f"{where}: unknown section(s) {unknown}; allowed are {', '.join(KINDS)}")
    entries: list[Material] = []
    for kind in KINDS:
        items = data.get(kind) or []
        if not isinstance(items, list):
            raise InputError(f"{where}: '{kind}' is a list of entries")
        entries += [parse_entry(kind, item, f"{where}: {kind}[{i}]") for i, item in enumerate(items)]
    return entries


def read_materials_file(path: str | Path) -> list[Material]:
    """The entries of a YAML materials file; every problem is an :class:`InputError` naming the file."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such materials file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the materials file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return parse_catalogue(data, str(path))


# ------------------------------------------------------------------ the catalogue
class Catalogue:
    """An append-only, ordered vocabulary of buffers and materials with their aliases (see the module docstring)."""

    def __init__(self, entries: Iterable[Material] = ()) -> None:
        self._entries: dict[str, dict[str, Material]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._listeners: list[Callable[[], None]] = []
        self.version = 0
        self.add(entries)

    # ---------------------------------------------------------------- reading
    def ids(self, kind: str = BUFFER_KIND) -> tuple[str, ...]:
        """Canonical ids of ``kind`` in declaration order (the defaults first)."""
        return tuple(self._entries[kind])

    def entries(self, kind: str = BUFFER_KIND) -> tuple[Material, ...]:
        return tuple(self._entries[kind].values())

    def get(self, material_id: str, kind: str = BUFFER_KIND) -> Material:
        """The entry ``material_id`` (canonical id or alias) of ``kind``."""
        return self._entries[kind][self.canonical(material_id, kind)]

    def __contains__(self, item: tuple[str, str]) -> bool:
        kind, material_id = item
        return material_id in self._entries[kind]

    def canonical(self, value: object, kind: str = BUFFER_KIND) -> str:
        """The canonical id of ``value`` (an id or alias, any case); :class:`InputError` with the closest id."""
        if isinstance(value, str):
            key = alias_key(value)
            found = self._aliases[kind].get(key)
            if found is not None:
                return found
        raise InputError(self.unknown_message(value, kind))

    def unknown_message(self, value: object, kind: str = BUFFER_KIND) -> str:
        """The error text for a value that is not an id of ``kind``."""
        text = str(value)
        ids = self.ids(kind)
        candidates = list(ids) + [a for a in self._aliases[kind] if len(a) > 2]
        close = difflib.get_close_matches(alias_key(text), candidates, n=1, cutoff=0.5)
        hint = f"; did you mean '{self._aliases[kind].get(close[0], close[0])}'?" if close else ""
        declare = " (declare others in a materials file: --materials FILE)"
        return f"unknown {KIND_FIELD[kind]} {text!r}: allowed ids are {', '.join(ids)}{hint}{declare}"

    def descriptor_matrix(self, ids: Iterable[str], kind: str = BUFFER_KIND) -> np.ndarray:
        """Rows of :meth:`Descriptors.vector` for ``ids`` (canonical)."""
        return np.array([self._entries[kind][i].descriptors.vector() for i in ids], dtype=float).reshape(
            -1, len(DESCRIPTOR_FEATURES)
        )

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {kind: [m.to_dict() for m in self.entries(kind)] for kind in KINDS}

    # ---------------------------------------------------------------- growing
    def add(self, entries: Iterable[Material]) -> list[Material]:
        """Declare ``entries`` (all or none); returns the new ones. Re-declaring an identical entry is a no-op.

        Raises :class:`InputError` when an id exists with other values or an alias names another entry.
        """
        new: list[Material] = []
        aliases = {kind: dict(self._aliases[kind]) for kind in KINDS}
        for entry in entries:
            existing = self._entries[entry.kind].get(entry.id) or next(
                (m for m in new if m.kind == entry.kind and m.id == entry.id), None
            )
            if existing is not None:
                if not existing.same_as(entry):
                    raise InputError(
                        f"{KIND_FIELD[entry.kind]} {entry.id!r} is already declared with other values; "
                        "give a new id or the same values"
                    )
                continue
            for alias in (entry.id, *entry.aliases):
                key = alias_key(alias)
                owner = aliases[entry.kind].get(key)
                if owner is not None and owner != entry.id:
                    raise InputError(f"{KIND_FIELD[entry.kind]} {entry.id!r}: alias {alias!r} already names {owner!r}")
                aliases[entry.kind][key] = entry.id
            new.append(entry)
        if new:
            for entry in new:
                self._entries[entry.kind][entry.id] = entry
            self._aliases = aliases
            self.version += 1
            for listener in list(self._listeners):
                listener()
        return new

    def snapshot(self) -> tuple[Any, ...]:
        """The catalogue's state, for :meth:`restore` (tests that declare materials and clean up after)."""
        return ({k: dict(v) for k, v in self._entries.items()}, {k: dict(v) for k, v in self._aliases.items()})

    def restore(self, state: tuple[Any, ...]) -> None:
        """Go back to a :meth:`snapshot` (tests only: codes of materials declared since become invalid)."""
        entries, aliases = state
        self._entries = {k: dict(v) for k, v in entries.items()}
        self._aliases = {k: dict(v) for k, v in aliases.items()}
        self.version += 1
        for listener in list(self._listeners):
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change (caches derived from the vocabulary refresh themselves)."""
        self._listeners.append(listener)


def _default_entries() -> list[Material]:
    import yaml

    text = (resources.files("surrogate") / "data" / "materials.yaml").read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text), "surrogate/data/materials.yaml")


CATALOGUE = Catalogue(_default_entries())
"""The process-wide catalogue: the packaged defaults plus every material declared since (append-only)."""

MATERIALS_ENV = "SURROGATE_MATERIALS"
"""Environment variable: materials files (separated by ``os.pathsep``) every command declares at start, so a
command without a ``--materials`` flag (or a service) knows them too."""
_ENV_ERROR: InputError | None = None

DEFAULT_BUFFERS: tuple[str, ...] = CATALOGUE.ids(BUFFER_KIND)
"""The paper's four buffers (the packaged defaults), in their canonical order."""
DEFAULT_MATERIALS: tuple[str, ...] = CATALOGUE.ids(MATERIAL_KIND)


def buffer_ids() -> tuple[str, ...]:
    """Every buffer id the process knows now (defaults first)."""
    return CATALOGUE.ids(BUFFER_KIND)


def material_ids() -> tuple[str, ...]:
    """Every material id the process knows now (defaults first)."""
    return CATALOGUE.ids(MATERIAL_KIND)


def _declare_environment() -> None:
    """Declare the files of :data:`MATERIALS_ENV`; a bad file is reported on stderr and by :func:`load_catalogue`."""
    global _ENV_ERROR
    from surrogate.settings import get_settings

    try:
        paths = get_settings().materials
    except InputError as exc:  # a bad setting: reported when a command starts (load_catalogue)
        _ENV_ERROR = exc
        return
    for path in paths:
        if path.strip():
            try:
                use_materials(path.strip())
            except InputError as exc:
                _ENV_ERROR = InputError(f"{MATERIALS_ENV}: {exc}")
                sys.stderr.write(f"surrogate: warning: {_ENV_ERROR}\n")


def use_materials(source: str | Path | Iterable[Material] | dict[str, Any]) -> list[Material]:
    """Declare the materials of a YAML file (path), a parsed document (dict) or entries; returns the new ones."""
    if isinstance(source, (str, Path)):
        entries = read_materials_file(source)
    elif isinstance(source, dict):
        entries = parse_catalogue(source, "materials")
    else:
        entries = list(source)
    return CATALOGUE.add(entries)


def entries_in(frame: Any) -> dict[str, list[dict[str, Any]]]:
    """The catalogue entries a table uses that are not packaged defaults, as a materials document.

    ``frame``: a measurement or design table whose ``buffer`` / ``material`` columns hold ids or aliases the
    process knows (blank cells are skipped). What a trained model carries (``info["catalogue"]``) so that it
    declares its materials again in a process that has no materials file (:func:`declare_carried`).
    """
    document: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        column = KIND_FIELD[kind]
        if column not in getattr(frame, "columns", ()):
            continue
        seen = {CATALOGUE.canonical(v, kind) for v in frame[column].dropna().unique() if str(v).strip()}
        defaults = DEFAULT_BUFFERS if kind == BUFFER_KIND else DEFAULT_MATERIALS
        used = [m.to_dict() for m in CATALOGUE.entries(kind) if m.id in seen and m.id not in defaults]
        if used:
            document[kind] = used
    return document


def declare_carried(document: dict[str, Any] | None, where: str = "the model's catalogue") -> list[Material]:
    """Declare the entries a model carries (:func:`entries_in`); returns the new ones.

    An entry that clashes with one this process already declared (same id, other values) is an
    :class:`~surrogate.errors.InputError` naming the id: the model's answers would not mean what it learned.
    """
    if not document:
        return []
    return CATALOGUE.add(parse_catalogue(document, where))


# ------------------------------------------------------------------ the command line
MATERIALS_HELP = (
    "a YAML materials file declaring more buffers or electrolyte materials (id, aliases, display_name, "
    "descriptors; see docs/materials.md); may be given more than once"
)


def add_materials_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--materials FILE`` (repeatable) to a command that reads data or a design space."""
    parser.add_argument("--materials", metavar="FILE", action="append", default=None, help=MATERIALS_HELP)


def load_catalogue(args: argparse.Namespace) -> Catalogue:
    """Declare the files of ``--materials`` (if any) and return the process catalogue; InputError on a bad file.

    Call it first thing in a command's handler: ``load_catalogue(args)``.
    """
    if _ENV_ERROR is not None:
        raise _ENV_ERROR
    for path in getattr(args, "materials", None) or []:
        use_materials(path)
    return CATALOGUE


_declare_environment()
