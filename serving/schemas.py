"""Typed request and response bodies of the HTTP service (pydantic), in the contract's names and units.

Validation happens here, once, at the boundary: a field that breaks a
constraint gives a 400 whose ``detail`` names the field (``loc``) and the
reason (``msg``). Temperatures are °C and must be physically plausible (the
same limits as :mod:`surrogate.schema`); numbers must be finite (JSON ``NaN``
and ``Infinity`` are refused); buffers and protocols accept the aliases of
:mod:`surrogate.design` and come back canonical.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from surrogate.design import (
    BUFFERS,
    DEFAULT_C_RATE,
    DEFAULT_CYCLES,
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    TARGET_UNITS,
    canonical_buffer,
    canonical_protocol,
)
from surrogate.objectives import OBJECTIVE_KINDS, STATISTICS
from surrogate.schema import ANNEAL_TEMP_PLAUSIBLE_C, TEST_TEMP_PLAUSIBLE_C

MAX_DESIGNS = 10_000
"""Most designs one /predict call accepts; more is answered 413."""
MAX_SUGGESTIONS = 100
"""Most suggestions one /suggest call hands out."""
MAX_OBSERVATIONS = 10_000
"""Most observation rows one /observe call accepts."""
MAX_SEARCH_TRIALS = 500
"""Most surrogate evaluations one /search call may spend."""


_FINITE = {"allow_inf_nan": False}

_buffer_id = lru_cache(maxsize=1024)(canonical_buffer)
"""canonical_buffer, remembered: a 10,000-design request repeats a handful of spellings (errors are not cached)."""
_protocol_id = lru_cache(maxsize=256)(canonical_protocol)

Buffer = Annotated[
    str,
    AfterValidator(_buffer_id),
    Field(
        description=f"buffer layer between NCM and LLTO: one of {', '.join(BUFFERS)} (aliases such as 'SiO2', "
        "'LiPON', 'LLTO/NCM', 'bare' accepted; answers use the canonical id)",
        examples=["sio2"],
    ),
]
Protocol = Annotated[
    str,
    AfterValidator(_protocol_id),
    Field(description=f"cycling protocol: one of {', '.join(PROTOCOLS)}", examples=[DEFAULT_PROTOCOL]),
]


class Design(BaseModel):
    """One design: what a scientist chooses before an experiment (see CONTRACT.md)."""

    model_config = ConfigDict(extra="forbid")

    buffer: Buffer
    anneal_temp_c: float = Field(
        ge=ANNEAL_TEMP_PLAUSIBLE_C[0],
        le=ANNEAL_TEMP_PLAUSIBLE_C[1],
        description="anneal temperature of the LLTO film, °C (25 = as-deposited)",
        examples=[300.0],
        **_FINITE,
    )
    test_temp_c: float = Field(
        ge=TEST_TEMP_PLAUSIBLE_C[0],
        le=TEST_TEMP_PLAUSIBLE_C[1],
        description="temperature the film or cell is measured / operated at, °C",
        examples=[25.0],
        **_FINITE,
    )
    c_rate: float = Field(DEFAULT_C_RATE, gt=0, le=1000, description="discharge rate for rate_retention, C", **_FINITE)
    cycles: int = Field(DEFAULT_CYCLES, ge=1, le=1_000_000, description="cycle count for capacity_retention")
    protocol: Protocol = DEFAULT_PROTOCOL


Level = Annotated[
    float,
    Field(ge=0.5, le=0.999, description="central interval level of lower/upper (0.9 = 90%)", allow_inf_nan=False),
]


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


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: ModelInfo
    level: float
    notice: str | None = Field(None, description="present when the model was trained on the embedded reconstruction")


CampaignName = Annotated[
    str, Field(min_length=1, max_length=200, description="name of an existing campaign (created with the CLI)")
]


class SuggestResponse(BaseModel):
    """Designs to measure next; each ``trial`` number identifies the suggestion when its result is observed."""

    campaign: str
    suggestions: list[dict[str, Any]] = Field(
        description="trial, buffer, anneal_temp_c (°C), test_temp_c (°C), c_rate (C), cycles, protocol, "
        "client_id, batch, method"
    )


Observation = Annotated[
    dict[str, Any],
    Field(
        description="one measured row in the data schema (buffer, anneal_temp_c, test_temp_c, c_rate, cycles, "
        "protocol, targets); optional trial (the suggestion answered), status (ok, failed, infeasible), reason",
        examples=[
            {"trial": 0, "buffer": "sio2", "anneal_temp_c": 300.0, "test_temp_c": 25.0, "conductivity_s_cm": 1e-5}
        ],
    ),
]


class ObserveResponse(BaseModel):
    campaign: str
    observed: int = Field(description="rows recorded as completed measurements")
    failed: int = Field(description="rows recorded as failed or infeasible experiments")
    trials: list[int] = Field(description="trial number written for each row, in order")


class ObjectiveSpec(BaseModel):
    """What to maximise: a target or a product of targets, at fixed conditions (see surrogate.objectives)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[tuple(OBJECTIVE_KINDS)]  # type: ignore[valid-type]
    c_rate: float = Field(DEFAULT_C_RATE, gt=0, le=1000, description="C-rate for rate_retention, C", **_FINITE)
    cycles: int = Field(DEFAULT_CYCLES, ge=1, le=1_000_000, description="cycle count for capacity_retention")
    protocol: Protocol = DEFAULT_PROTOCOL
    test_temp_c: float | None = Field(
        None,
        ge=TEST_TEMP_PLAUSIBLE_C[0],
        le=TEST_TEMP_PLAUSIBLE_C[1],
        description="fixed operating temperature, °C (absent: a design variable)",
        **_FINITE,
    )
    statistic: Literal[tuple(STATISTICS)] = "mean"  # type: ignore[valid-type]


Temperature = Annotated[float, Field(ge=-273.15, le=ANNEAL_TEMP_PLAUSIBLE_C[1], **_FINITE)]


class SpaceSpec(BaseModel):
    """Where to search (°C) and the user constraints; absent keys take the paper's space (surrogate.design)."""

    model_config = ConfigDict(extra="forbid")

    buffers: list[Buffer] | None = Field(None, min_length=1, max_length=len(BUFFERS))
    anneal_temp_c: tuple[Temperature, Temperature] | None = Field(None, description="[lower, upper], °C")
    test_temp_c: tuple[Temperature, Temperature] | None = Field(None, description="[lower, upper], °C")
    max_anneal_temp_c: Temperature | None = Field(None, description="constraint: highest anneal temperature, °C")
    min_test_temp_c: Temperature | None = Field(None, description="constraint: lowest operating temperature, °C")
    max_test_temp_c: Temperature | None = Field(None, description="constraint: highest operating temperature, °C")

    def given(self) -> dict[str, Any]:
        """The keys the client set (for :meth:`surrogate.design.DesignSpace.from_dict`)."""
        return self.model_dump(exclude_none=True)


class SearchResponse(BaseModel):
    """Best designs (one objective) or the Pareto set (several), each with predictions and extrapolation flags."""

    result: dict[str, Any]
    model: ModelInfo
    notice: str | None = None


ObjectiveList = Annotated[
    list[ObjectiveSpec], Field(min_length=1, max_length=3, description="one objective, or 2-3 for a Pareto set")
]
ObservationList = Annotated[list[Observation], Field(min_length=1, max_length=MAX_OBSERVATIONS)]
DesignList = Annotated[
    list[Design],
    Field(min_length=1, description=f"designs to predict, 1 to {MAX_DESIGNS} (more is answered 413)"),
]
