"""The paper as data: its facts table and the check that a model (the lab, or a trained surrogate) reproduces it.

The table lives in ``surrogate/data/paper_facts.yaml``, one entry per
quantitative statement of the paper with the quote and its section. This
module evaluates each checkable fact against a *predictor*: any function that
takes a frame of designs (CONTRACT.md fields) and returns the three targets'
means. :func:`lab_predictor` is the noise-free virtual lab; a trained
surrogate provides its own.

A fact marked ``contradiction`` cannot hold together with the paper's other
numbers; it is evaluated and reported with ``ok: false`` and its note, and
does not make the check fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from surrogate import physics
from surrogate.dataset import EIS_TEMPS_C
from surrogate.design import (
    ANNEAL_TEMP_C,
    BUFFER,
    BUFFERS,
    C_RATE,
    CAPACITY_RETENTION,
    CONDUCTIVITY,
    CYCLES,
    PROTOCOL,
    RATE_RETENTION,
    TEST_TEMP_C,
)

Predictor = Callable[[pd.DataFrame], pd.DataFrame]
"""Designs in, a frame with ``conductivity_s_cm``, ``rate_retention``, ``capacity_retention`` (means) out."""

LONG_TEST_CURRENT_UA = 40.0
STANDARD_CURRENT_UA = 3.0
STANDARD_C_RATE = 0.1
LONG_INITIAL_C_RATE = LONG_TEST_CURRENT_UA / STANDARD_CURRENT_UA * STANDARD_C_RATE
"""40 µA expressed in C, from the paper's own '3 µA ≈ 0.1 C': 1.33 C."""

# Conditions of the paper's cells where a fact does not name them (see physics: cell_* parameters).
_CELL_DEFAULTS = {
    BUFFER: "none",
    ANNEAL_TEMP_C: 300.0,
    TEST_TEMP_C: 25.0,
    C_RATE: 30.0,
    CYCLES: 100,
    PROTOCOL: "standard",
}


@cache
def load_facts() -> list[dict[str, Any]]:
    """The paper's facts as shipped with the package (a list of mappings, in the paper's order)."""
    text = (resources.files("surrogate") / "data" / "paper_facts.yaml").read_text(encoding="utf-8")
    facts = yaml.safe_load(text)
    ids = [f["id"] for f in facts]
    if len(ids) != len(set(ids)):
        raise RuntimeError("paper_facts.yaml has duplicate ids")
    return facts


def lab_predictor(params: physics.LabParameters = physics.PARAMETERS) -> Predictor:
    """The noise-free virtual lab as a predictor."""

    def predict(designs: pd.DataFrame) -> pd.DataFrame:
        buffer = designs[BUFFER].to_numpy()
        anneal = designs[ANNEAL_TEMP_C].to_numpy(float)
        temp = designs[TEST_TEMP_C].to_numpy(float)
        return pd.DataFrame(
            {
                CONDUCTIVITY: physics.conductivity_s_cm(anneal, temp, params),
                RATE_RETENTION: physics.rate_retention(buffer, anneal, temp, designs[C_RATE].to_numpy(float), params),
                CAPACITY_RETENTION: physics.capacity_retention(
                    buffer, temp, designs[CYCLES].to_numpy(float), designs[PROTOCOL].to_numpy(), params
                ),
            },
            index=designs.index,
        )

    return predict


def designs(**columns: Any) -> pd.DataFrame:
    """A design frame: given columns broadcast against each other, the paper's cell conditions elsewhere."""
    lengths = {len(v) for v in columns.values() if isinstance(v, (list, tuple, np.ndarray, range))}
    n = max(lengths) if lengths else 1
    data = {}
    for name, default in _CELL_DEFAULTS.items():
        value = columns.get(name, default)
        data[name] = list(value) if isinstance(value, (list, tuple, np.ndarray, range)) else [value] * n
    return pd.DataFrame(data)


def arrhenius_ea_ev(temps_c: np.ndarray, sigma_s_cm: np.ndarray) -> float:
    """Activation energy (eV) of a least-squares Arrhenius line in the σ·T form: ln(σT) vs 1/(kT)."""
    temp_k = physics.kelvin(temps_c)
    slope = np.polyfit(1.0 / (physics.K_B_EV * temp_k), np.log(np.asarray(sigma_s_cm) * temp_k), 1)[0]
    return float(-slope)


# ------------------------------------------------------------------ evaluators
# Each takes (fact, predict) and returns the model's value for the fact; `ok` is decided in `_judge`
# for numeric facts, and by the evaluator (returning (value, ok)) for qualitative ones.


def _conditioned(fact: dict[str, Any], predict: Predictor, target: str) -> float:
    conditions = {
        k: v for k, v in (fact.get("conditions") or {}).items() if k in (BUFFER, PROTOCOL) or not isinstance(v, str)
    }
    return float(predict(designs(**conditions))[target].iloc[0])


def _ea(anneal: float) -> Callable[[dict[str, Any], Predictor], float]:
    def evaluate(fact: dict[str, Any], predict: Predictor) -> float:
        sigma = predict(designs(**{ANNEAL_TEMP_C: anneal, TEST_TEMP_C: list(EIS_TEMPS_C)}))[CONDUCTIVITY]
        return round(arrhenius_ea_ev(np.array(EIS_TEMPS_C), sigma.to_numpy()), 4)

    return evaluate


def _long_curve(predict: Predictor, cycles: list[int]) -> np.ndarray:
    frame = designs(**{BUFFER: "sio2", CYCLES: cycles, PROTOCOL: "long"})
    return predict(frame)[CAPACITY_RETENTION].to_numpy()


def _best_anneal(fact: dict[str, Any], predict: Predictor) -> tuple[float, bool]:
    states = [25.0, 300.0, 400.0]
    best = []
    for temp in (25.0, 120.0):
        sigma = predict(designs(**{ANNEAL_TEMP_C: states, TEST_TEMP_C: temp}))[CONDUCTIVITY].to_numpy()
        best.append(states[int(np.argmax(sigma))])
    return best[0], all(b == 300.0 for b in best)


def _ea_ordering(fact: dict[str, Any], predict: Predictor) -> tuple[list[float], bool]:
    ea = [_ea(a)(fact, predict) for a in (25.0, 300.0, 400.0)]
    return ea, abs(ea[0] - ea[1]) <= 0.01 and ea[2] > ea[1] + 0.005


def _structure(fact: dict[str, Any], predict: Predictor) -> tuple[list[str], bool]:
    fraction = physics.crystalline_fraction(np.array([25.0, 300.0, 400.0]))
    labels = ["crystalline" if x > 0.5 else "amorphous" for x in fraction]
    return labels, labels == ["amorphous", "amorphous", "crystalline"]


def _amorphous_better(fact: dict[str, Any], predict: Predictor) -> tuple[str, bool]:
    temps = list(EIS_TEMPS_C)
    sigma = {
        a: predict(designs(**{ANNEAL_TEMP_C: a, TEST_TEMP_C: temps}))[CONDUCTIVITY].to_numpy()
        for a in (25.0, 300.0, 400.0)
    }
    ok = bool(np.all(sigma[25.0] > sigma[400.0]) and np.all(sigma[300.0] > sigma[400.0]))
    ratio = float(np.min(sigma[300.0] / sigma[400.0]))
    return f"σ(300 °C)/σ(400 °C) ≥ {ratio:.2f} over 25-120 °C", ok


def _buffers_improve(target: str, **conditions: Any) -> Callable[[dict[str, Any], Predictor], tuple[Any, bool]]:
    def evaluate(fact: dict[str, Any], predict: Predictor) -> tuple[dict[str, float], bool]:
        rates = conditions.get(C_RATE, [conditions.get("single_rate", 30.0)])
        values, ok = {}, True
        for rate in rates:
            frame = designs(
                **{BUFFER: list(BUFFERS), C_RATE: rate, **{k: v for k, v in conditions.items() if k != C_RATE}}
            )
            predicted = dict(zip(BUFFERS, predict(frame)[target].to_numpy(), strict=True))
            ok &= all(predicted[b] > predicted["none"] for b in BUFFERS if b != "none")
            values = {b: round(float(v), 4) for b, v in predicted.items()}
        return values, bool(ok)

    return evaluate


def _duration_days(fact: dict[str, Any], predict: Predictor) -> float:
    retention = _long_curve(predict, list(range(1, 1001)))
    hours = np.sum(2.0 * retention / LONG_INITIAL_C_RATE)
    return round(float(hours / 24.0), 1)


def _early_drop(fact: dict[str, Any], predict: Predictor) -> tuple[float, bool]:
    r1, r12, r100, r500 = _long_curve(predict, [1, 12, 100, 500])
    ratio = ((r1 - r12) / 11.0) / ((r100 - r500) / 400.0)
    return round(float(ratio), 1), bool(ratio > 10.0)


def _knee(fact: dict[str, Any], predict: Predictor) -> tuple[float, bool]:
    r500, r900, r1000 = _long_curve(predict, [500, 900, 1000])
    ratio = ((r900 - r1000) / 100.0) / ((r500 - r900) / 400.0)
    return round(float(ratio), 1), bool(ratio > 3.0)


def _c_rate_at(cycles: list[int]) -> Callable[[dict[str, Any], Predictor], Any]:
    def evaluate(fact: dict[str, Any], predict: Predictor) -> Any:
        values = [round(float(LONG_INITIAL_C_RATE / r), 2) for r in _long_curve(predict, cycles)]
        return values if len(values) > 1 else values[0]

    return evaluate


def _cycle_life(fact: dict[str, Any], predict: Predictor) -> tuple[float, bool]:
    r1000 = float(_long_curve(predict, [1000])[0])
    return round(r1000, 4), r1000 > 0.0


def _conductivity_range(fact: dict[str, Any], predict: Predictor) -> list[float]:
    grid = designs(**{ANNEAL_TEMP_C: [25.0, 300.0, 400.0] * 2, TEST_TEMP_C: [25.0] * 3 + [120.0] * 3})
    sigma = predict(grid)[CONDUCTIVITY]
    return [float(f"{sigma.min():.3g}"), float(f"{sigma.max():.3g}")]


def _embedded(
    column: str, experiment: str, expected: tuple[float, ...] | None = None
) -> Callable[[dict[str, Any], Predictor], tuple[list[float], bool]]:
    """The embedded data set's values of ``column``: ``expected`` (default: the fact's own list of values)."""

    def evaluate(fact: dict[str, Any], predict: Predictor) -> tuple[list[float], bool]:
        from surrogate.dataset import default_dataset_path

        data = pd.read_csv(default_dataset_path())
        values = sorted(float(v) for v in data.loc[data["experiment"] == experiment, column].dropna().unique())
        wanted = expected if expected is not None else fact["value"]
        return values, values == [float(v) for v in wanted]

    return evaluate


EVALUATORS: dict[str, Callable[[dict[str, Any], Predictor], Any]] = {
    "sigma_300c_25c": lambda f, p: _conditioned(f, p, CONDUCTIVITY),
    "sigma_300c_120c": lambda f, p: _conditioned(f, p, CONDUCTIVITY),
    "sigma_best_anneal_300c": _best_anneal,
    "ea_as_deposited": _ea(25.0),
    "ea_300c": _ea(300.0),
    "ea_400c": _ea(400.0),
    "ea_ordering": _ea_ordering,
    "structure_amorphous_crystalline": _structure,
    "amorphous_conducts_better": _amorphous_better,
    "eis_temperature_grid": _embedded(TEST_TEMP_C, "conductivity", EIS_TEMPS_C),
    "rate_test_rates": _embedded(C_RATE, "rate"),
    "rate_30c_none": lambda f, p: _conditioned(f, p, RATE_RETENTION),
    "rate_30c_sio2": lambda f, p: _conditioned(f, p, RATE_RETENTION),
    "rate_buffers_improve": _buffers_improve(RATE_RETENTION, **{C_RATE: [1.0, 5.0, 10.0, 20.0, 30.0]}),
    "retention_100_none": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "retention_100_llto_ncm": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "retention_100_sio2": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "retention_100_lipon": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "retention_buffers_improve": _buffers_improve(CAPACITY_RETENTION, **{CYCLES: 100}),
    "long_test_duration": _duration_days,
    "long_early_drop": _early_drop,
    "long_retention_500": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "long_knee_after_900": _knee,
    "long_retention_1000": lambda f, p: _conditioned(f, p, CAPACITY_RETENTION),
    "long_c_rate_first_100": _c_rate_at([1, 100]),
    "long_c_rate_cycle_425": _c_rate_at([425]),
    "long_c_rate_cycle_1000": _c_rate_at([1000]),
    "cycle_life_1000": _cycle_life,
    "literature_llto_range": _conductivity_range,
}


@dataclass(frozen=True)
class FactResult:
    """One fact checked: the paper's value, the model's, whether it holds, and why not."""

    fact: dict[str, Any]
    value: Any
    ok: bool | None
    status: str  # ok | fail | contradiction | tied | recorded | skipped

    def to_dict(self, value_key: str = "lab") -> dict[str, Any]:
        fact = self.fact
        note = fact.get("note")
        if self.status in ("contradiction", "tied") and self.ok:
            note = f"{note} (It holds here all the same.)"
        return {
            "id": fact["id"],
            "quantity": fact["quantity"],
            "conditions": fact.get("conditions") or {},
            "unit": fact["unit"],
            "paper": fact["value"],
            value_key: _plain(self.value),
            "ok": self.ok,
            "status": self.status,
            "note": " ".join(note.split()) if note else None,
            "kind": fact["kind"],
            "section": fact["section"],
            "quote": fact["quote"],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _within(fact: dict[str, Any], value: Any) -> bool:
    tolerance = fact.get("tolerance") or {}
    paper = fact["value"]
    if isinstance(paper, list):  # a range: every model value must lie in it, widened by the tolerance
        low, high = paper
        rel, abs_ = tolerance.get("rel", 0.0), tolerance.get("abs", 0.0)
        values = value if isinstance(value, list) else [value]
        return all(low * (1 - rel) - abs_ <= v <= high * (1 + rel) + abs_ for v in values)
    if "rel" in tolerance:
        return abs(value - paper) <= tolerance["rel"] * abs(paper)
    return abs(value - paper) <= tolerance.get("abs", 0.0)


def _status(fact: dict[str, Any], ok: bool | None) -> str:
    if fact.get("contradiction"):
        return "contradiction"
    if fact.get("tied_to"):
        return "tied"
    if ok is None:
        return "recorded"
    return "ok" if ok else "fail"


def check_facts(predict: Predictor | None = None, include_physics_only: bool = True) -> list[FactResult]:
    """Evaluate every fact against ``predict`` (default: the noise-free lab)."""
    predict = predict or lab_predictor()
    results = []
    for fact in load_facts():
        kind = fact["kind"]
        evaluator = EVALUATORS.get(fact["id"])
        if evaluator is None:
            if kind != "recorded":
                raise RuntimeError(f"fact {fact['id']!r} ({kind}) has no evaluator")
            status = _status(fact, None)
            results.append(FactResult(fact, None, None, status))
            continue
        if fact.get("physics_only") and not include_physics_only:
            results.append(FactResult(fact, None, None, "skipped"))
            continue
        outcome = evaluator(fact, predict)
        if isinstance(outcome, tuple):
            value, ok = outcome
        else:
            value, ok = outcome, _within(fact, outcome)
        status = _status(fact, bool(ok))
        results.append(FactResult(fact, value, bool(ok), status))
    return results


def all_hold(results: list[FactResult]) -> bool:
    """True when every fact that can hold (not a contradiction, not merely recorded) does."""
    return all(r.status != "fail" for r in results)
