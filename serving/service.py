"""The HTTP service: a thin BentoML adapter over the ``surrogate`` library (no science here).

Start it with ``surrogate serve`` or ``bentoml serve serving.service:Surrogate``.
Endpoints (all ``POST``, JSON in and out, units as in CONTRACT.md):

- ``/predict``: designs → mean, lower, upper per target and ``extrapolation``.
- ``/model_info``: which model answers (registry name, version, run id, training-data hash, CV scores).
- ``/suggest``, ``/observe``: ask/tell campaigns kept in Optuna storage.
- ``/search``: a bounded search on the surrogate (best designs or the Pareto set).
- BentoML's own ``/healthz``, ``/livez``, ``/readyz``, ``/metrics``, ``/docs.json``.

Which model: ``SURROGATE_MODEL_URI`` (any MLflow model URI) when set; else the
BentoML model bundled in a built Bento (Bento argument ``bento_model``, or
``SURROGATE_BENTO_MODEL``; see ``bentofile.yaml``); else the registry champion ``models:/llto-surrogate@champion``.
With no trained model the service still starts and answers 503 ("run
``surrogate train``") on the endpoints that need one. ``SURROGATE_ACCESS_LOG=1`` turns on
BentoML's per-request access log (off by default: see :data:`ACCESS_LOG_ENV`).

Errors: every client error is a 4xx JSON ``{"error": ..., "detail": [...]}``
naming the field; bad token 401 and oversized bodies 413 come from
:mod:`serving.middleware`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
from collections.abc import Callable
from functools import partial, wraps
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

import anyio
import bentoml
import bentoml._internal.server.http.traffic as bentoml_traffic
import numpy as np
import orjson
import pandas as pd
from pydantic import Field
from starlette.responses import JSONResponse, Response

from serving.middleware import GuardMiddleware
from serving.schemas import (
    MAX_DESIGNS,
    MAX_SEARCH_TRIALS,
    MAX_SUGGESTIONS,
    CampaignName,
    Design,
    DesignList,
    Level,
    ModelInfo,
    ObjectiveList,
    ObservationList,
    ObserveResponse,
    PredictResponse,
    SearchResponse,
    SpaceSpec,
    SuggestResponse,
)
from surrogate.dataset import EMBEDDED_DATA_NOTICE, trained_on_embedded_data
from surrogate.design import CYCLES, DESIGN_FIELDS, TARGETS
from surrogate.errors import DataValidationError, InputError
from surrogate.models.base import DEFAULT_LEVEL, DesignBatch, design_batch
from surrogate.models.base import Surrogate as SurrogateModel

MODEL_URI_ENV = "SURROGATE_MODEL_URI"
BENTO_MODEL_ENV = "SURROGATE_BENTO_MODEL"
BENTO_MODEL_NAME = "llto-surrogate"
"""Name of the champion when imported into the BentoML model store (``surrogate serve --build``)."""
WORKERS_ENV = "SURROGATE_WORKERS"
ACCESS_LOG_ENV = "SURROGATE_ACCESS_LOG"
"""Set to ``1``/``true`` to log every request (BentoML's access log). Off by default: each log line goes through a
pipe to BentoML's supervisor process, and under load those writes stalled the worker (measured: p99 of one
sequential client 22-28 ms with it, 1.3 ms without; 32 clients 2,760 → 3,400 requests/s). Errors are logged either way."""

_F = TypeVar("_F", bound=Callable[..., Any])
_INLINE_ROWS = 200
"""Predictions and answers of more designs than this are computed in a worker thread, not on the event loop."""


class ServiceError(Exception):
    """An answer other than 200 with a message for the client: ``status`` and optional field-level ``detail``."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or []


def _error(status: int, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail or []}, status_code=status)


def _error_answer(exc: Exception) -> JSONResponse | None:
    """The JSON answer for a library or service error (None: not a client error, let it propagate)."""
    if isinstance(exc, ServiceError):
        return _error(exc.status, str(exc), exc.detail)
    if isinstance(exc, DataValidationError):
        detail = [p.to_dict() for p in exc.problems]
        return _error(HTTPStatus.BAD_REQUEST, f"{exc.source}: {len(detail)} problem(s)", detail)
    if isinstance(exc, InputError):
        return _error(HTTPStatus.BAD_REQUEST, str(exc))
    return None


def answers_errors(func: _F) -> _F:
    """Turn library errors into JSON answers: InputError → 400 (every problem listed), ServiceError → its status."""
    if inspect.iscoroutinefunction(func):

        @wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except (ServiceError, InputError) as exc:
                return _error_answer(exc)

        return async_wrapper  # type: ignore[return-value]

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ServiceError, InputError) as exc:
            return _error_answer(exc)

    return wrapper  # type: ignore[return-value]


class Batcher:
    """Opportunistic batching of /predict: designs that arrive while the model is busy share its next call.

    A request is queued and the queue is drained by a task that runs as soon as the event loop is free, so
    requests already read in the same loop turn, and those arriving while a call runs, share one
    :meth:`Surrogate.predict_columns` call (every queued request with the same ``level``, up to
    ``max_designs`` rows). A call of at most ``inline_rows`` designs runs on the event loop (a thread
    hop would cost more than the call); a larger one in a worker thread. Each request gets its own rows
    back; rows are predicted independently, so the answers are those of separate calls.
    """

    def __init__(self, model: SurrogateModel, max_designs: int = MAX_DESIGNS, inline_rows: int = _INLINE_ROWS) -> None:
        self.model = model
        self.max_designs = max_designs
        self.inline_rows = inline_rows
        self._queue: list[tuple[DesignBatch, float, asyncio.Future[dict[str, Any]]]] = []
        self._draining = False

    async def predict(self, designs: DesignBatch, level: float) -> dict[str, Any]:
        """The library's prediction columns (:meth:`Surrogate.predict_columns`) for validated ``designs``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((designs, level, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[DesignBatch, float, asyncio.Future[dict[str, Any]]]]:
        level = self._queue[0][1]
        batch, rest, rows = [], [], 0
        for item in self._queue:
            if item[1] == level and (not batch or rows + len(item[0]) <= self.max_designs):
                batch.append(item)
                rows += len(item[0])
            else:
                rest.append(item)
        self._queue = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    whole = DesignBatch.concat([item[0] for item in batch])
                    call = partial(self.model.predict_columns, whole, batch[0][1])
                    columns = call() if len(whole) <= self.inline_rows else await anyio.to_thread.run_sync(call)
                except Exception as exc:  # handed to every waiting request; the HTTP layer decides the status
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                if len(batch) == 1:
                    if not batch[0][2].done():
                        batch[0][2].set_result(columns)
                    continue
                start = 0
                for designs, _, future in batch:
                    stop = start + len(designs)
                    if not future.done():
                        future.set_result({name: values[start:stop] for name, values in columns.items()})
                    start = stop
                if len(whole) <= self.inline_rows:
                    await asyncio.sleep(0)  # let the answered requests and newly read ones run before the next call
        finally:
            self._draining = False


# ------------------------------------------------------------------ BentoML's request timeout
class RequestTimeout(bentoml_traffic.TimeoutMiddleware):
    """BentoML's per-request timeout (504 when no answer starts within ``traffic.timeout`` s), timer cancelled.

    BentoML 1.4.40's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, ...)`` for every request and
    never cancels it, so each request's timer, future and context (with its tracing span: ~20 objects) stay
    alive for the whole timeout (60 s). Under load that is hundreds of thousands of live objects per worker,
    and every full garbage collection walks them all: measured 60-230 ms pauses, growing with the load
    (p99 of one sequential client 30-90 ms). This subclass answers exactly as BentoML's does and cancels
    the timer when the request is done; :data:`bentoml_traffic.TimeoutMiddleware` is replaced by it below,
    before BentoML builds the app.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if answer.cancel():
                late = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504
                )
                await late(scope, receive, send)
        else:
            await answer
        finally:
            timer.cancel()


bentoml_traffic.TimeoutMiddleware = RequestTimeout


# ------------------------------------------------------------------ the model
def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def describe_model(model: SurrogateModel, model_uri: str | None) -> dict[str, Any]:
    """What answers: the registry's champion information (default) or the given URI, plus the bundle's own info."""
    from surrogate import tracking

    info: dict[str, Any] = {k: v for k, v in model.info.items() if k not in ("name", "version")}
    if model_uri is None:
        info.update(tracking.champion_info())
    else:
        info.update({"name": model_uri, "version": None, "model_uri": model_uri})
    info.setdefault("targets", list(model.targets))
    return _jsonable(info)


def bento_model_tag() -> str | None:
    """Tag of the bundled BentoML model: the Bento argument ``bento_model`` (``surrogate serve --build`` sets it,
    and a served Bento restores it) or ``SURROGATE_BENTO_MODEL``; None outside a Bento."""
    return getattr(bentoml.use_arguments(), "bento_model", None) or os.environ.get(BENTO_MODEL_ENV) or None


def load_surrogate() -> tuple[SurrogateModel, dict[str, Any]]:
    """Load the model the service answers with, and its description (see the module docstring for the order).

    Raises :class:`InputError` when there is no trained model.
    """
    from surrogate import tracking

    uri = os.environ.get(MODEL_URI_ENV) or None
    bento_tag = bento_model_tag()
    if uri is None and bento_tag is not None:
        from _bentoml_impl.frameworks.mlflow import MLFLOW_MODEL_FOLDER

        stored = bentoml.models.get(bento_tag)
        model = tracking.load_champion(stored.path_of(MLFLOW_MODEL_FOLDER))
        info = describe_model(model, stored.path)
        info.update(json.loads(stored.info.metadata.get("champion", "{}")))
        info["bento_model"] = str(stored.tag)
        return model, info
    model = tracking.load_champion(uri)
    return model, describe_model(model, uri)


def designs_batch(designs: list[Design]) -> DesignBatch:
    """Validated designs as the library's arrays (the library's own checks run too, e.g. kelvin-like values)."""
    return design_batch({name: [getattr(d, name) for d in designs] for name in DESIGN_FIELDS})


def predictions_json(designs: DesignBatch, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The library's prediction columns (``<target>_mean`` …) as the response's list of per-design objects.

    Built column by column with comprehensions (not row by row through pandas): this runs for every design
    of every call (10,000 designs: ~10 ms).
    """
    names = DESIGN_FIELDS
    columns_out = [designs.values(name) for name in names]
    columns_out[names.index(CYCLES)] = columns_out[names.index(CYCLES)].astype(int)  # the contract's int
    rows = zip(*(column.tolist() for column in columns_out), strict=True)
    out = [{"design": dict(zip(names, row, strict=True))} for row in rows]
    for target in TARGETS:
        if f"{target}_mean" not in columns:
            continue
        parts = (np.asarray(columns[f"{target}_{part}"], dtype=float).tolist() for part in ("mean", "lower", "upper"))
        intervals = [{"mean": m, "lower": lo, "upper": up} for m, lo, up in zip(*parts, strict=True)]
        for item, interval in zip(out, intervals, strict=True):
            item[target] = interval
    flags = np.asarray(columns["extrapolation"], dtype=bool).tolist()
    for item, flag, why in zip(out, flags, columns["extrapolation_reasons"], strict=True):
        item["extrapolation"] = flag
        item["extrapolation_reasons"] = list(why)
    return out


def _json_bytes(document: dict[str, Any]) -> Response:
    """A JSON response (orjson: the 10,000-design answer is ~2 MB; a non-finite number would be written as null)."""
    return Response(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


# ---------------------------------------------------------------- the service
@bentoml.service(
    name="llto-surrogate",
    workers=int(os.environ.get(WORKERS_ENV, "1")),
    traffic={"timeout": 60, "concurrency": 256},
    logging={"access": {"enabled": os.environ.get(ACCESS_LOG_ENV, "").strip().lower() in ("1", "true", "yes")}},
)
class Surrogate:
    """LLTO thin-film battery surrogate: predictions with intervals, campaigns and search over HTTP."""

    model_ref = bentoml.models.BentoModel(bento_model_tag()) if bento_model_tag() else None

    def __init__(self) -> None:
        self.model: SurrogateModel | None = None
        self.info: dict[str, Any] = {}
        self.unavailable = ""
        self._optuna_storage: Any = None
        try:
            self.model, self.info = load_surrogate()
        except InputError as exc:
            self.unavailable = str(exc)
        self.batcher = Batcher(self.model) if self.model is not None else None
        # Everything loaded so far (bentoml, mlflow, torch, the model: ~400k objects) lives as long as the worker;
        # freezing it spares every full garbage collection from walking it again (measured: 10,000-design
        # requests had 200-300 ms GC pauses in pydantic validation without this, ~20 ms with it).
        gc.collect()
        gc.freeze()
        self.notice = EMBEDDED_DATA_NOTICE if self.model is not None and trained_on_embedded_data(self.info) else None

    def _storage(self) -> Any:
        """The Optuna storage of campaigns (``SURROGATE_OPTUNA_STORAGE`` or the local default), opened once."""
        if self._optuna_storage is None:
            from surrogate.storage import get_storage

            self._optuna_storage = get_storage()
        return self._optuna_storage

    def _campaign(self, name: str) -> Any:
        """Campaign ``name``; 404 naming the known campaigns when there is none."""
        from surrogate.campaign import Campaign, list_campaigns

        try:
            return Campaign.load(name, storage=self._storage())
        except InputError as exc:
            known = [c["name"] for c in list_campaigns(self._storage())]
            if name not in known:
                raise ServiceError(HTTPStatus.NOT_FOUND, str(exc), [{"loc": ["campaign"], "msg": str(exc)}]) from None
            raise

    def _require_model(self) -> SurrogateModel:
        if self.model is None:
            raise ServiceError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"no model to answer with: {self.unavailable}. Run `surrogate train`, then restart the service.",
            )
        return self.model

    @bentoml.api(route="/predict")
    @answers_errors
    async def predict(self, designs: DesignList, level: Level = DEFAULT_LEVEL) -> PredictResponse:
        """Predict every target for up to 10,000 designs: mean and a central ``level`` interval, with extrapolation flags."""
        self._require_model()
        if len(designs) > MAX_DESIGNS:
            raise ServiceError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"designs: {len(designs)} designs in one call; the limit is {MAX_DESIGNS}: split the request",
                [{"loc": ["designs"], "msg": f"at most {MAX_DESIGNS} designs per call"}],
            )
        batch = designs_batch(designs)
        columns = await self.batcher.predict(batch, level)
        if len(batch) > _INLINE_ROWS:  # keep the event loop free while a large answer is written
            return await anyio.to_thread.run_sync(self._predict_answer, batch, columns, level)
        return self._predict_answer(batch, columns, level)

    def _predict_answer(self, designs: DesignBatch, columns: dict[str, Any], level: float) -> Response:
        document = {"predictions": predictions_json(designs, columns), "model": self.info, "level": level}
        if self.notice:
            document["notice"] = self.notice
        return _json_bytes(document)  # the endpoint's annotation documents this body

    @bentoml.api(route="/model_info")
    @answers_errors
    def model_info(self) -> ModelInfo:
        """Which model answers: registry name, version, run id, training-data hash, CV scores per target."""
        self._require_model()
        document = dict(self.info)
        if self.notice:
            document["notice"] = self.notice
        return _json_bytes(document)  # type: ignore[return-value]

    @bentoml.api(route="/suggest")
    @answers_errors
    def suggest(
        self,
        campaign: CampaignName,
        n: Annotated[int, Field(ge=1, le=MAX_SUGGESTIONS, description="how many designs to hand out")] = 1,
        client_id: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=200,
                description="who asks (a robot, a person); a retried call with the same id gets its pending batch back",
            ),
        ] = None,
    ) -> SuggestResponse:
        """Hand out ``n`` designs to measure next; each is a pending trial of the campaign (needs the bearer token)."""
        suggestions = self._campaign(campaign).suggest(n=n, client_id=client_id)
        return _json_bytes({"campaign": campaign, "suggestions": [s.to_dict() for s in suggestions]})  # type: ignore[return-value]

    @bentoml.api(route="/observe")
    @answers_errors
    def observe(self, campaign: CampaignName, observations: ObservationList) -> ObserveResponse:
        """Record measured rows (validated like any data file: all or nothing, every bad row listed; needs the token)."""
        result = self._campaign(campaign).observe(pd.DataFrame(observations), source="observations")
        return _json_bytes(result)  # type: ignore[return-value]

    @bentoml.api(route="/search")
    @answers_errors
    def search(
        self,
        objectives: ObjectiveList,
        space: SpaceSpec | None = None,
        n_trials: Annotated[int, Field(ge=1, le=MAX_SEARCH_TRIALS, description="surrogate evaluations to spend")] = 100,
        top: Annotated[int, Field(ge=1, le=100, description="best designs returned (one objective)")] = 10,
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
        level: Level = DEFAULT_LEVEL,
    ) -> SearchResponse:
        """Bounded Optuna search on the surrogate: the best designs (one objective) or the Pareto set (several).

        The study is kept in memory (nothing is written); the endpoint needs the bearer token because it is costly.
        """
        import optuna

        from surrogate.design import DesignSpace
        from surrogate.objectives import Objective
        from surrogate.search import run_search

        model = self._require_model()
        result = run_search(
            model,
            [Objective(**o.model_dump()) for o in objectives],
            space=DesignSpace.from_dict(space.given()) if space is not None else None,
            n_trials=n_trials,
            storage=optuna.storages.InMemoryStorage(),
            study_name="http-search",
            seed=seed,
            level=level,
            top=top,
            show_progress=False,
        )
        document = {"result": result.to_dict(), "model": self.info}
        if self.notice:
            document["notice"] = self.notice
        return _json_bytes(document)  # type: ignore[return-value]


Surrogate.add_asgi_middleware(GuardMiddleware)
