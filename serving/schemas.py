"""Typed request and response bodies of the HTTP service (pydantic), in the contract's names and units.

Validation happens here, once, at the boundary, and it is strict:

- every request body is a JSON object whose keys are the endpoint's fields; an unknown key is a 400 naming it;
- numbers are JSON numbers: ``true`` or ``"300"`` is not a number (a JSON integer is accepted where a float is
  expected); integers are whole JSON numbers (``2.0`` is not an integer);
- every number is finite (JSON ``NaN``, ``Infinity`` and ``1e999`` are refused) and bounded before any arithmetic;
- temperatures are °C and must be physically plausible (the same checks as :mod:`surrogate.schema`, with its
  kelvin hint);
- buffers and protocols accept the aliases of :mod:`surrogate.design` and come back canonical; the OpenAPI
  document lists the canonical ids as an enum.

A field that breaks a rule gives a 400 whose ``detail`` names the field (``loc``) and the reason (``msg``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from surrogate.campaign import CAMPAIGN_NAME_PATTERN as CAMPAIGN_NAME_RULE
from surrogate.campaign import MAX_OBSERVATIONS_PER_CALL
from surrogate.design import (
    ANNEAL_TEMP_C,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    TARGET_UNITS,
    TEST_TEMP_C,
    canonical_buffer,
    canonical_material,
    canonical_protocol,
)
from surrogate.materials import DEFAULT_MATERIAL, buffer_ids, material_ids
from surrogate.models.base import DEFAULT_LEVEL
from surrogate.objectives import OBJECTIVE_KINDS, STATISTICS
from surrogate.parameters import C_RATE_PARAMETER, CYCLES_PARAMETER
from surrogate.schema import ANNEAL_TEMP_PLAUSIBLE_C, TEST_TEMP_PLAUSIBLE_C, value_problem

MAX_DESIGNS = 10_000
"""Most designs one /predict call accepts; more is answered 413."""
MAX_SUGGESTIONS = 100
"""Most suggestions one /suggest call hands out."""
MAX_OBSERVATIONS = MAX_OBSERVATIONS_PER_CALL
"""Most observation rows one /observe call accepts: the campaign library's own limit, declared there."""
MAX_SEARCH_TRIALS = 500
"""Most surrogate evaluations one /search call may spend."""
MAX_C_RATE = C_RATE_PARAMETER.high
"""Highest C-rate accepted, C (the declared bound of ``c_rate``)."""
MAX_CYCLES = int(CYCLES_PARAMETER.high)
"""Most cycles accepted for capacity_retention (the declared bound of ``cycles``)."""
MAX_TRIAL_NUMBER = 2**31 - 1
CAMPAIGN_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Campaign names on the wire: 1-200 characters, no control characters (NUL, newline, tab...)."""

STRICT = ConfigDict(extra="forbid", strict=True)
"""Every request model: unknown keys refused, no coercion (no booleans or numeric strings as numbers)."""
_FINITE = {"allow_inf_nan": False}

_buffer_id = lru_cache(maxsize=1024)(canonical_buffer)
"""canonical_buffer, remembered: a 10,000-design request repeats a handful of spellings (errors are not cached)."""
_protocol_id = lru_cache(maxsize=256)(canonical_protocol)

Buffer = Annotated[
    str,
    AfterValidator(_buffer_id),
    Field(
        max_length=100,
        description=f"buffer layer between NCM and LLTO: one of {', '.join(buffer_ids())} (aliases such as 'SiO2', "
        "'LiPON', 'LLTO/NCM', 'bare' are accepted too; answers use the canonical id; more buffers are declared "
        "with SURROGATE_MATERIALS, see docs/materials.md)",
        json_schema_extra={"enum": list(buffer_ids()), "example": "sio2"},
    ),
]
Protocol = Annotated[
    str,
    AfterValidator(_protocol_id),
    Field(
        max_length=100,
        description=f"cycling protocol: one of {', '.join(PROTOCOLS)}",
        json_schema_extra={"enum": list(PROTOCOLS), "example": DEFAULT_PROTOCOL},
    ),
]
Material = Annotated[
    str,
    AfterValidator(lru_cache(maxsize=256)(canonical_material)),
    Field(
        max_length=100,
        description=f"what is measured: one of {', '.join(material_ids())} (default {DEFAULT_MATERIAL}, the paper's "
        "sputtered film; aliases accepted; a model answers for the materials it was trained on, others are flagged "
        "as extrapolation or refused)",
        json_schema_extra={"enum": list(material_ids()), "example": DEFAULT_MATERIAL},
    ),
]
CRate = Annotated[
    float, Field(gt=0, le=MAX_C_RATE, description="discharge rate for rate_retention, C", examples=[10.0], **_FINITE)
]
Cycles = Annotated[int, Field(ge=1, le=MAX_CYCLES, description="cycle count for capacity_retention", examples=[300])]
AnnealTemp = Annotated[
    float,
    Field(
        ge=ANNEAL_TEMP_PLAUSIBLE_C[0],
        le=ANNEAL_TEMP_PLAUSIBLE_C[1],
        description="anneal temperature of the LLTO film, °C (25 = as-deposited; a kelvin-like value is refused)",
        examples=[300.0],
        **_FINITE,
    ),
]
TestTemp = Annotated[
    float,
    Field(
        ge=TEST_TEMP_PLAUSIBLE_C[0],
        le=TEST_TEMP_PLAUSIBLE_C[1],
        description="temperature the film or cell is measured / operated at, °C",
        examples=[25.0],
        **_FINITE,
    ),
]


class Design(BaseModel):
    """One design: what a scientist chooses before an experiment (see docs/contract.md)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10, "cycles": 300}
        },
    )

    buffer: Buffer
    anneal_temp_c: AnnealTemp
    test_temp_c: TestTemp
    c_rate: CRate = DEFAULT_C_RATE
    cycles: Cycles = DEFAULT_CYCLES
    protocol: Protocol = DEFAULT_PROTOCOL
    material: Material = DEFAULT_MATERIAL


Level = Annotated[
    float,
    Field(ge=0.5, le=0.999, description="central interval level of lower/upper (0.9 = 90%)", examples=[0.9], **_FINITE),
]

_TEMPERATURE_FIELDS = (ANNEAL_TEMP_C, TEST_TEMP_C)
_BOUND_ERRORS = ("less_than_equal", "greater_than_equal", "less_than", "greater_than")


def with_temperature_hints(error: ValidationError, title: str) -> ValidationError:
    """``error`` with the library's wording for out-of-range temperatures ("looks like kelvin").

    pydantic checks the bounds (fast, in Rust); only a failed request pays for this rewording. Should an error
    not rebuild (a pydantic type this code does not know), the original error is returned unchanged.
    """
    details: list[InitErrorDetails] = []
    changed = False
    for item in error.errors():
        loc, value = item["loc"], item.get("input")
        reason = None
        if loc and loc[-1] in _TEMPERATURE_FIELDS and item["type"] in _BOUND_ERRORS and isinstance(value, int | float):
            reason = value_problem(str(loc[-1]), float(value))
        if reason:
            changed = True
            details.append({"type": PydanticCustomError("implausible_temperature", reason), "loc": loc, "input": value})
        else:
            details.append({"type": item["type"], "loc": loc, "input": value, "ctx": item.get("ctx", {})})  # type: ignore[typeddict-item]
    if not changed:  # rebuilt errors take pydantic's Python-mode wording ("list" for "array"): keep the original
        return error
    try:
        return ValidationError.from_exception_data(title, details)
    except Exception:
        return error


class _StrictRequest(BaseModel):
    """Base of every request body: strict types, unknown keys refused, temperatures reworded on failure.

    The rewording wraps :meth:`model_validate_json` (what BentoML calls on a request body) rather than a pydantic
    wrap validator, which slowed every valid 10,000-design request by ~25%.
    """

    model_config = STRICT

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise with_temperature_hints(exc, cls.__name__) from None


DesignList = Annotated[
    list[Design],
    Field(min_length=1, description=f"designs to predict, 1 to {MAX_DESIGNS} (more is answered 413)"),
]

PREDICT_EXAMPLE: dict[str, Any] = {
    "designs": [{"buffer": "sio2", "anneal_temp_c": 300, "test_temp_c": 25, "c_rate": 10, "cycles": 300}],
    "level": 0.9,
}


class PredictRequest(_StrictRequest):
    """Designs to predict and the interval level."""

    model_config = ConfigDict(json_schema_extra={"example": PREDICT_EXAMPLE})

    designs: DesignList
    level: Level = DEFAULT_LEVEL


class Interval(BaseModel):
    """A target's predictive mean and central interval, in the target's contract unit."""

    mean: float
    lower: float
    upper: float


class Prediction(BaseModel):
    """Predictions for one design (units: conductivity S/cm, retentions fractions 0-1)."""

    design: Design = Field(description="the design as understood (canonical ids, defaults filled)")
    conductivity_s_cm: Interval | None = Field(
        None, description=f"ionic conductivity, {TARGET_UNITS['conductivity_s_cm']}"
    )
    rate_retention: Interval | None = Field(None, description=f"rate retention, {TARGET_UNITS['rate_retention']}")
    capacity_retention: Interval | None = Field(
        None, description=f"capacity retention, {TARGET_UNITS['capacity_retention']}"
    )
    extrapolation: bool = Field(description="true when the design lies outside the data the model was trained on")
    extrapolation_reasons: list[str] = Field(description="why the design lies outside the training data")


class ModelInfo(BaseModel):
    """Which model answers: registry name and version, run, training-data hash, CV scores (more keys may follow)."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str | None = None
    run_id: str | None = None
    data_hash: str | None = None
    data_source: str | None = None
    cv_scores: dict[str, Any] = Field(default_factory=dict)
    notice: str | None = Field(None, description="present when the model was trained on the embedded reconstruction")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelInfo
    level: float
    notice: str | None = Field(None, description="present when the model was trained on the embedded reconstruction")


CampaignName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CAMPAIGN_NAME_RULE,
        description="name of a campaign: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        examples=["films"],
    ),
]
ClientId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=CAMPAIGN_NAME_PATTERN,
        description="who asks (a robot, a person); a retried call with the same id gets its pending batch back",
        examples=["robot-1"],
    ),
]


class SuggestRequest(_StrictRequest):
    """Which campaign, how many designs, and who asks."""

    model_config = ConfigDict(json_schema_extra={"example": {"campaign": "films", "n": 2, "client_id": "robot-1"}})

    campaign: CampaignName
    n: int = Field(1, ge=1, le=MAX_SUGGESTIONS, description="how many designs to hand out")
    client_id: ClientId | None = None


class SuggestResponse(BaseModel):
    """Designs to measure next; each ``trial`` number identifies the suggestion when its result is observed."""

    campaign: str
    suggestions: list[dict[str, Any]] = Field(
        description="trial, buffer, anneal_temp_c (°C), test_temp_c (°C), c_rate (C), cycles, protocol, "
        "client_id, batch, method"
    )


Measured = Annotated[float, Field(ge=-1e6, le=1e6, **_FINITE)]


class Observation(BaseModel):
    """One measured row in the data schema; ``trial`` names the suggestion it answers (absent: unsolicited).

    A failed or infeasible experiment: ``{"trial": N, "status": "failed", "reason": "..."}``. The campaign
    library checks each row (plausible values, the campaign's space and conditions) and lists every problem.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {
                "buffer": "sio2",
                "anneal_temp_c": 300,
                "test_temp_c": 60,
                "c_rate": 10,
                "cycles": 300,
                "rate_retention": 0.62,
                "capacity_retention": 0.58,
            }
        },
    )

    trial: int | None = Field(None, ge=0, le=MAX_TRIAL_NUMBER, description="the suggestion's trial number")
    status: Literal["ok", "failed", "infeasible"] | None = Field(None, description="outcome (default ok)")
    reason: str | None = Field(None, max_length=1000, description="why an experiment failed")
    buffer: str | None = Field(None, max_length=100, description="buffer id or alias (see Design)")
    anneal_temp_c: float | None = Field(None, ge=-273.15, le=1e4, description="°C", **_FINITE)
    test_temp_c: float | None = Field(None, ge=-273.15, le=1e4, description="°C", **_FINITE)
    c_rate: float | None = Field(None, gt=0, le=MAX_C_RATE, description="C", **_FINITE)
    cycles: int | None = Field(None, ge=1, le=MAX_CYCLES)
    protocol: str | None = Field(None, max_length=100, description=f"one of {', '.join(PROTOCOLS)}")
    conductivity_s_cm: Measured | None = Field(None, description=f"measured, {TARGET_UNITS['conductivity_s_cm']}")
    rate_retention: Measured | None = Field(None, description=f"measured, {TARGET_UNITS['rate_retention']}")
    capacity_retention: Measured | None = Field(None, description=f"measured, {TARGET_UNITS['capacity_retention']}")
    experiment: str | None = Field(None, max_length=100)
    sample_id: str | None = Field(None, max_length=200)
    source: str | None = Field(None, max_length=200)

    def row(self) -> dict[str, Any]:
        """The keys the client sent, as one row for :meth:`surrogate.campaign.Campaign.observe`."""
        return self.model_dump(exclude_unset=True)


ObservationList = Annotated[
    list[Observation], Field(min_length=1, description=f"1 to {MAX_OBSERVATIONS} measured rows")
]


class ObserveRequest(_StrictRequest):
    """Measured rows for a campaign (all recorded, or none)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"campaign": "films", "observations": [Observation.model_config["json_schema_extra"]["example"]]}
        }  # type: ignore[index]
    )

    campaign: CampaignName
    observations: ObservationList


class ObserveResponse(BaseModel):
    campaign: str
    observed: int = Field(description="rows recorded as completed measurements")
    failed: int = Field(description="rows recorded as failed or infeasible experiments")
    trials: list[int] = Field(description="trial number written for each row, in order")
    already_recorded: list[int] = Field(default_factory=list, description="trials recorded before with the same values")


class ObjectiveSpec(BaseModel):
    """What to maximise: a target or a product of targets, at fixed conditions (see surrogate.objectives)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal[tuple(OBJECTIVE_KINDS)] = Field(examples=["conductivity"])  # type: ignore[valid-type]
    c_rate: CRate = DEFAULT_C_RATE
    cycles: Cycles = DEFAULT_CYCLES
    protocol: Protocol = DEFAULT_PROTOCOL
    test_temp_c: TestTemp | None = Field(
        None, description="fixed operating temperature, °C (absent: a design variable)"
    )
    statistic: Literal[tuple(STATISTICS)] = "mean"  # type: ignore[valid-type]


Temperature = Annotated[float, Field(ge=-273.15, le=ANNEAL_TEMP_PLAUSIBLE_C[1], **_FINITE)]


class SpaceSpec(BaseModel):
    """Where to search (°C) and the user constraints; absent keys take the paper's space (surrogate.design)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    buffers: list[Buffer] | None = Field(None, min_length=1, max_length=len(buffer_ids()))
    anneal_temp_c: list[Temperature] | None = Field(None, min_length=2, max_length=2, description="[lower, upper], °C")
    test_temp_c: list[Temperature] | None = Field(None, min_length=2, max_length=2, description="[lower, upper], °C")
    max_anneal_temp_c: Temperature | None = Field(None, description="constraint: highest anneal temperature, °C")
    min_test_temp_c: Temperature | None = Field(None, description="constraint: lowest operating temperature, °C")
    max_test_temp_c: Temperature | None = Field(None, description="constraint: highest operating temperature, °C")

    def given(self) -> dict[str, Any]:
        """The keys the client set (for :meth:`surrogate.design.DesignSpace.from_dict`)."""
        data = self.model_dump(exclude_none=True)
        for key in ("anneal_temp_c", "test_temp_c"):
            if key in data:
                data[key] = tuple(data[key])
        return data


ObjectiveList = Annotated[
    list[ObjectiveSpec], Field(min_length=1, max_length=3, description="one objective, or 2-3 for a Pareto set")
]


class SearchRequest(_StrictRequest):
    """A bounded search on the surrogate."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "objectives": [{"kind": "conductivity"}, {"kind": "capacity_retention", "cycles": 300}],
                "space": {"max_anneal_temp_c": 350},
                "n_trials": 50,
            }
        }
    )

    objectives: ObjectiveList
    space: SpaceSpec | None = None
    n_trials: int = Field(100, ge=1, le=MAX_SEARCH_TRIALS, description="surrogate evaluations to spend")
    top: int = Field(10, ge=1, le=100, description="best designs returned (one objective)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed of the search")
    level: Level = DEFAULT_LEVEL


class SearchResponse(BaseModel):
    """Best designs (one objective) or the Pareto set (several), each with predictions and extrapolation flags."""

    result: dict[str, Any]
    model: ModelInfo
    notice: str | None = None


class CampaignCreateRequest(_StrictRequest):
    """A new campaign: the same options as ``surrogate campaign create``."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "films",
                "objective": "rate_x_capacity",
                "c_rate": 10,
                "cycles": 300,
                "warm_start": "embedded",
            }
        }
    )

    name: CampaignName
    objective: Literal[tuple(OBJECTIVE_KINDS)] = Field(description="what to maximise")  # type: ignore[valid-type]
    c_rate: CRate = DEFAULT_C_RATE
    cycles: Cycles = DEFAULT_CYCLES
    protocol: Protocol = DEFAULT_PROTOCOL
    test_temp_c: TestTemp | None = Field(
        None, description="fixed operating temperature, °C (absent: a design variable)"
    )
    space: SpaceSpec | None = Field(None, description="design space (absent: the paper's space)")
    warm_start: Literal["embedded"] | None = Field(
        None, description="'embedded': start from the paper data (a reconstruction, not measurements)"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed of the campaign")


class Recommendation(BaseModel):
    """The design the campaign's model believes best (highest posterior mean), not the best noisy reading."""

    model_config = ConfigDict(extra="allow")

    design: dict[str, Any]
    mean: float = Field(description="posterior mean of the objective at the design")
    lower: float
    upper: float
    level: float = Field(description="level of the central interval [lower, upper]")
    extrapolation: bool = Field(description="true when the design lies outside what the campaign measured")
    extrapolation_reasons: list[str] = []


class CampaignStatus(BaseModel):
    """A campaign's counts, best reading, recommended design and pending suggestions (``surrogate campaign status``)."""

    model_config = ConfigDict(extra="allow")

    campaign: str
    objective: dict[str, Any]
    observed: int
    failed: int
    pending: int
    recommended: Recommendation | None = None


class CampaignSummary(BaseModel):
    name: str
    objective: str
    created: str | None = None
    trials: int


class CampaignList(BaseModel):
    campaigns: list[CampaignSummary]


class ErrorDetail(BaseModel):
    """One problem: ``loc`` and ``msg`` (request fields), or ``row``, ``column`` and ``reason`` (data rows)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] | None = None
    msg: str | None = None
    type: str | None = None
    row: int | None = None
    column: str | None = None
    reason: str | None = None


class ErrorResponse(BaseModel):
    """Every answer other than 2xx: what went wrong, and the problems one by one."""

    error: str = Field(description="what went wrong, in one sentence")
    detail: list[ErrorDetail] = Field(default_factory=list, description="each problem, naming the field or row")
    trial: int | None = Field(None, description="409 only: the trial concerned")
    request_id: str | None = Field(None, description="500 only: quote it when reporting the error (it is logged)")
