"""The HTTP service: a thin BentoML adapter over the ``surrogate`` library (no science here).

Start it with ``surrogate serve`` or ``bentoml serve serving.service:Surrogate``. Endpoints (JSON in and out,
units as in docs/contract.md; the full reference is docs/service.md):

- ``POST /predict``: designs → mean, lower, upper per target and ``extrapolation``.
- ``GET|POST /model_info``: which model answers (registry name, version, run id, training-data hash, CV scores).
- ``POST /suggest``, ``POST /observe``: ask/tell campaigns kept in Optuna storage.
- ``POST /campaigns`` (create), ``GET /campaigns`` (list), ``GET /campaigns/{name}`` (status).
- ``POST /search``: a bounded search on the surrogate (best designs or the Pareto set).
- ``POST /ingest``: a manifest and its raw files (multipart upload) → the reduced rows (:mod:`serving.upload`).
- ``GET /``: Swagger UI (served from BentoML's bundled assets, no outside request); ``GET /docs.json``: the
  OpenAPI 3.0 document (:mod:`serving.openapi`).
- BentoML's own ``/healthz``, ``/livez``, ``/readyz`` (503 until a model is loaded), ``/metrics``.

Which model: ``SURROGATE_MODEL_URI`` (any MLflow model URI) when set; else the
BentoML model bundled in a built Bento (Bento argument ``bento_model``, or
``SURROGATE_BENTO_MODEL``; see ``bentofile.yaml``); else the registry champion ``models:/llto-surrogate@champion``.
With no trained model the service still starts, answers 503 ("run ``surrogate train``") on the endpoints
that need one, and tries to load it again at most every ``model_retry_s`` seconds (``/readyz`` turns 200
once it has one). ``SURROGATE_ACCESS_LOG=1`` turns on BentoML's per-request access log (off by default: see
:data:`ACCESS_LOG_ENV`).

Errors: every answer of 400 or more is JSON ``{"error": ..., "detail": [...]}`` (:class:`serving.schemas.ErrorResponse`);
library errors map as InputError → 400, NotFoundError → 404, ConflictError → 409 (with ``trial``), BusyError
→ 503 with ``Retry-After`` (a campaign busy for longer than its lock wait); bad token 401,
oversized bodies 413, non-JSON bodies 415 and unexpected errors 500 (with ``request_id``) come from
:mod:`serving.middleware`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hmac
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial, wraps
from http import HTTPStatus
from typing import Any, TypeVar

import anyio
import bentoml
import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from serving import auth
from serving.champion import Loaded, ModelHolder
from serving.metrics import MetricsMiddleware, metrics_endpoint
from serving.middleware import GuardMiddleware, new_request_id
from serving.schemas import (
    MAX_DESIGNS,
    MAX_OBSERVATIONS,
    CampaignCreateRequest,
    CampaignStatus,
    Design,
    ModelInfo,
    ObserveRequest,
    ObserveResponse,
    PredictRequest,
    PredictResponse,
    SearchRequest,
    SearchResponse,
    SuggestRequest,
    SuggestResponse,
)
from serving.timeouts import BodyDeadlineMiddleware, use_header_deadline_protocol
from serving.upload import ingest_endpoint
from surrogate.dataset import EMBEDDED_DATA_NOTICE, trained_on_embedded_data
from surrogate.design import CYCLES, DESIGN_FIELDS, MATERIAL
from surrogate.errors import (
    BusyError,
    ConflictError,
    DataValidationError,
    InputError,
    NotFoundError,
    StoreUnavailableError,
)
from surrogate.models.base import DesignBatch, design_batch
from surrogate.models.base import Surrogate as SurrogateModel
from surrogate.settings import get_settings
from surrogate.targets import target_names

logger = logging.getLogger("surrogate.service")

MODEL_URI_ENV = "SURROGATE_MODEL_URI"
BENTO_MODEL_ENV = "SURROGATE_BENTO_MODEL"
BENTO_MODEL_NAME = "llto-surrogate"
"""Name of the champion when imported into the BentoML model store (``surrogate serve --build``)."""
WORKERS_ENV = "SURROGATE_WORKERS"
ACCESS_LOG_ENV = "SURROGATE_ACCESS_LOG"
"""Set to ``1``/``true`` to log every request (BentoML's access log). Off by default: each log line goes through a
pipe to BentoML's supervisor process, and under load those writes stalled the worker (measured: p99 of one
sequential client 22-28 ms with it, 1.3 ms without; 32 clients 2,760 → 3,400 requests/s). Errors are logged either way."""
CAMPAIGN_LOCK_WAIT_S = 30.0
"""Seconds a campaign request waits for the campaign's lock (held by another call) before answering 503."""

_F = TypeVar("_F", bound=Callable[..., Any])
_INLINE_ROWS = 200
"""Predictions and answers of more designs than this are computed in a worker thread, not on the event loop."""


# ------------------------------------------------------------------ errors
class ServiceError(Exception):
    """An answer other than 200 with a message for the client: ``status`` and optional field-level ``detail``."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or []


def _error(status: int, message: str, detail: list[dict[str, Any]] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail or [], **extra}, status_code=status)


def _store_refused(exc: Exception) -> bool:
    """A database-side refusal met mid-request: SQLAlchemy's pool timeout, a connection-level OperationalError, or
    Optuna's StorageInternalError (which wraps them when ``optuna.load_study`` meets the shortage)."""
    import optuna
    import sqlalchemy.exc

    refusals = (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError)
    return isinstance(exc, refusals)


def error_answer(exc: Exception) -> JSONResponse:
    """The JSON answer for any exception: library and service errors by kind, anything else a logged 500."""
    if isinstance(exc, ServiceError):
        return _error(exc.status, str(exc), exc.detail)
    if isinstance(exc, BusyError):  # a campaign's lock stayed taken: nothing was done, retry later
        busy = _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        busy.headers["Retry-After"] = str(exc.retry_after_s)
        return busy
    if isinstance(exc, NotFoundError):
        return _error(HTTPStatus.NOT_FOUND, str(exc))
    if isinstance(exc, ConflictError):
        return _error(HTTPStatus.CONFLICT, str(exc), trial=exc.trial)
    if isinstance(exc, DataValidationError):
        detail = [p.to_dict() for p in exc.problems]
        return _error(HTTPStatus.BAD_REQUEST, f"{exc.source}: {len(detail)} problem(s)", detail)
    if isinstance(exc, InputError):
        return _error(HTTPStatus.BAD_REQUEST, str(exc))
    if _store_refused(exc):  # the database refused a connection or the pool stayed empty: not the client's fault
        return error_answer(StoreUnavailableError(f"the campaign store is busy or unreachable, retry later ({exc})"))
    request_id = new_request_id()
    logger.error("request %s: unexpected error", request_id, exc_info=exc)
    response = _error(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal error: the service logged it; quote the request id",
        request_id=request_id,
    )
    response.headers["x-request-id"] = request_id
    return response


def answers_errors(func: _F) -> _F:
    """Turn every exception of an endpoint into its JSON answer (:func:`error_answer`); never a bare 500."""
    if inspect.iscoroutinefunction(func):

        @wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                return error_answer(exc)

        return async_wrapper  # type: ignore[return-value]

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            return error_answer(exc)

    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------ worker processes die with the server
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``).

    Called in each BentoML worker, whose parent is the ``bentoml serve`` / ``surrogate serve`` process: a
    ``kill -9`` of that process then stops the workers too, so none keeps the port. Returns False where
    unsupported (not Linux). If the parent is already gone, the worker stops at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent or parent == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
    return True


def _in_bentoml_worker() -> bool:
    """Whether this process is a worker started by ``bentoml serve`` (BentoML's public ``server_context``)."""
    return bentoml.server_context.worker_index is not None


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


# ------------------------------------------------------------------ slow clients
use_header_deadline_protocol()  # every worker's uvicorn closes connections whose headers never end (serving.timeouts)


# ------------------------------------------------------------------ the model
def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def describe_model(model: SurrogateModel, model_uri: str | None, version: str | None = None) -> dict[str, Any]:
    """What answers: the registry's champion (or registered ``version``) or the given URI, plus the bundle's info."""
    from surrogate import tracking

    info: dict[str, Any] = {k: v for k, v in model.info.items() if k not in ("name", "version")}
    if model_uri is None:
        info.update(tracking.champion_info(version))
    else:
        info.update({"name": model_uri, "version": None, "model_uri": model_uri})
    info.setdefault("targets", list(model.targets))
    return _jsonable(info)


def bento_model_tag() -> str | None:
    """Tag of the bundled BentoML model: the Bento argument ``bento_model`` (``surrogate serve --build`` sets it,
    and a served Bento restores it) or ``SURROGATE_BENTO_MODEL``; None outside a Bento."""
    return getattr(bentoml.use_arguments(), "bento_model", None) or get_settings().bento_model


def follows_champion() -> bool:
    """Whether the service answers with the registry's ``@champion`` (and so swaps in a new one when it moves)."""
    return get_settings().model_uri is None and bento_model_tag() is None


def champion_version() -> str | None:
    """The version ``@champion`` names now, or None when the service serves a fixed model."""
    from surrogate import tracking

    return tracking.champion_version() if follows_champion() else None


def load_surrogate(version: str | None = None) -> tuple[SurrogateModel, dict[str, Any]]:
    """Load the model the service answers with, and its description (see the module docstring for the order).

    Following ``@champion``, the version it names is read first and that version loaded (or ``version``, a
    registered version the registry named), so model and description always agree. Raises :class:`InputError`
    when there is no trained model.
    """
    from surrogate import tracking

    if follows_champion():
        version = version or tracking.champion_version()
        model = tracking.load_champion(f"models:/{tracking.REGISTERED_MODEL_NAME}/{version}")
        return model, describe_model(model, None, version)

    uri = get_settings().model_uri
    bento_tag = bento_model_tag()
    if uri is None and bento_tag is not None:
        from bentoml.mlflow import MLFLOW_MODEL_FOLDER  # the folder bentoml.mlflow.import_model stores into

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
    return design_batch({name: [getattr(d, name) for d in designs] for name in (*DESIGN_FIELDS, MATERIAL)})


def predictions_json(designs: DesignBatch, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The library's prediction columns (``<target>_mean`` …) as the response's list of per-design objects.

    Built column by column with comprehensions (not row by row through pandas): this runs for every design
    of every call (10,000 designs: ~10 ms).
    """
    names = (*DESIGN_FIELDS, MATERIAL)
    columns_out = [designs.values(name) for name in names]
    columns_out[names.index(CYCLES)] = columns_out[names.index(CYCLES)].astype(int)  # the contract's int
    rows = zip(*(column.tolist() for column in columns_out), strict=True)
    out = [{"design": dict(zip(names, row, strict=True))} for row in rows]
    for target in target_names():  # every declared target, register_target() ones too
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


MODEL_VERSION_HEADER = "x-model-version"
"""Header of every answer computed with the model: the registry version that answered (``uri`` for a fixed model)."""


def _json_bytes(document: dict[str, Any], loaded: Loaded | None = None) -> Response:
    """A JSON response (orjson: the 10,000-design answer is ~2 MB; a non-finite number would be written as null).

    With ``loaded`` (the model that computed it) the answer names its version in :data:`MODEL_VERSION_HEADER`.
    """
    response = Response(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
    if loaded is not None:
        response.headers[MODEL_VERSION_HEADER] = loaded.version or str(loaded.info.get("model_uri") or "unknown")
    return response


def _loaded(model: SurrogateModel, info: dict[str, Any]) -> Loaded:
    """What the holder keeps for ``model``: its description, notice and batcher, swapped together."""
    notice = EMBEDDED_DATA_NOTICE if trained_on_embedded_data(info) else None
    return Loaded(model=model, info=info, notice=notice, batcher=Batcher(model))


# ---------------------------------------------------------------- the service
@bentoml.service(
    name="llto-surrogate",
    workers=get_settings().workers,
    traffic={"timeout": get_settings().request_timeout_s, "concurrency": 256},
    logging={"access": {"enabled": get_settings().access_log}},
    # BentoML's own HTTP metrics label every raw path (one series per path, kept for ever): off, and with them
    # BentoML's /metrics route; the service serves its own, labelled by route template (serving.metrics).
    metrics={"enabled": False, "namespace": "bentoml_service"},
    # BentoML records an OpenTelemetry span for every request (no exporter is configured here) and its timeout
    # middleware keeps each request's context, span included, alive for traffic.timeout (60 s): about 4.9 KiB
    # per request, 5 MiB per 1,000 (benchmarks/results/rss_growth.md). No URL is traced; to trace, set
    # services.llto-surrogate.tracing.excluded_urls in BENTOML_CONFIG.
    tracing={"excluded_urls": ".*"},
)
class Surrogate:
    """LLTO thin-film battery surrogate: predictions with intervals, campaigns and search over HTTP."""

    model_ref = bentoml.models.BentoModel(bento_model_tag()) if bento_model_tag() else None

    def __init__(self) -> None:
        in_worker = _in_bentoml_worker()
        if in_worker:
            die_with_parent()
        self._optuna_storage: Any = None
        self._optuna_storage_lock = threading.Lock()  # one storage (one connection pool) per worker
        self.holder = ModelHolder(
            load=lambda version: load_surrogate(version) if version else load_surrogate(),
            wrap=_loaded,
            champion_version=champion_version,
        )
        self.holder.load()
        if in_worker and follows_champion():  # a served worker polls the registry (in-process tests do not)
            self.holder.watch(get_settings().champion_poll_s)
        # Everything loaded so far (bentoml, mlflow, torch, the model: ~400k objects) lives as long as the worker;
        # freezing it spares every full garbage collection from walking it again (measured: 10,000-design
        # requests had 200-300 ms GC pauses in pydantic validation without this, ~20 ms with it).
        gc.collect()
        gc.freeze()

    # ------------------------------------------------------------ model
    def _retry_load(self) -> None:
        self.holder.retry(get_settings().model_retry_s)

    def __is_ready__(self) -> bool:
        """``/readyz``: 200 once a model is loaded, 503 before (BentoML calls this in a worker thread)."""
        self._retry_load()
        return self.holder.current is not None

    def _require_model(self) -> Loaded:
        """The model answering now (take it once per request: a promotion swaps it whole), or 503."""
        loaded = self.holder.current
        if loaded is None:
            raise ServiceError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"no model to answer with: {self.holder.unavailable}. Run `surrogate train`; the service picks the "
                f"model up within {get_settings().model_retry_s:g} s (or restart it).",
            )
        return loaded

    def model_document(self) -> dict[str, Any]:
        """The /model_info answer."""
        loaded = self._require_model()
        document = dict(loaded.info)
        if loaded.notice:
            document["notice"] = loaded.notice
        return document

    # ------------------------------------------------------------ campaigns
    def _storage(self) -> Any:
        """The Optuna storage of campaigns (``SURROGATE_OPTUNA_STORAGE`` or the local default), opened once per
        worker: concurrent first requests wait for one opening (measured before the lock: 64 concurrent first calls
        opened a storage each, 67 PostgreSQL connections from 2 workers, and the server refused more clients).
        A store that cannot be opened is the service's problem, not the client's: 503 with ``Retry-After``."""
        with self._optuna_storage_lock:
            if self._optuna_storage is None:
                from surrogate.storage import get_storage

                try:
                    self._optuna_storage = get_storage()
                except BusyError:
                    raise
                except InputError as exc:
                    raise StoreUnavailableError(f"the campaign store cannot be opened: {exc}") from None
            return self._optuna_storage

    def _campaign(self, name: str) -> Any:
        """Campaign ``name``; 404 when there is none (the answer never lists the other campaigns)."""
        from surrogate.campaign import Campaign

        try:
            campaign = Campaign.load(name, storage=self._storage())
        except NotFoundError:  # a bad name is an InputError (400) raised before any storage access
            raise ServiceError(
                HTTPStatus.NOT_FOUND,
                f"campaign {name!r} does not exist (create it with POST /campaigns or `surrogate campaign create`)",
                [{"loc": ["campaign"], "msg": "no such campaign"}],
            ) from None
        campaign.lock_wait_s = CAMPAIGN_LOCK_WAIT_S  # a 503 with Retry-After well before the 60 s request timeout
        return campaign

    def campaign_list(self) -> dict[str, Any]:
        """The GET /campaigns answer."""
        from surrogate.campaign import list_campaigns

        return {"campaigns": list_campaigns(self._storage())}

    def campaign_status(self, name: str) -> dict[str, Any]:
        """The GET /campaigns/{name} answer."""
        from serving.schemas import CAMPAIGN_NAME_PATTERN

        if not name or len(name) > 200 or not re.match(CAMPAIGN_NAME_PATTERN, name):
            raise ServiceError(
                HTTPStatus.NOT_FOUND, "no such campaign", [{"loc": ["path", "name"], "msg": "no such campaign"}]
            )
        return self._campaign(name).status()

    # ------------------------------------------------------------ endpoints
    @bentoml.api(route="/predict", input_spec=PredictRequest)
    @answers_errors
    async def predict(self, designs: list[Design], level: float) -> PredictResponse:
        """Predict every target for up to 10,000 designs: mean and a central ``level`` interval, with extrapolation flags."""
        loaded = self._require_model()
        if len(designs) > MAX_DESIGNS:
            raise ServiceError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"designs: {len(designs)} designs in one call; the limit is {MAX_DESIGNS}: split the request",
                [{"loc": ["designs"], "msg": f"at most {MAX_DESIGNS} designs per call"}],
            )
        batch = designs_batch(designs)
        columns = await loaded.batcher.predict(batch, level)
        if len(batch) > _INLINE_ROWS:  # keep the event loop free while a large answer is written
            return await anyio.to_thread.run_sync(self._predict_answer, loaded, batch, columns, level)
        return self._predict_answer(loaded, batch, columns, level)

    def _predict_answer(self, loaded: Loaded, designs: DesignBatch, columns: dict[str, Any], level: float) -> Response:
        document = {"predictions": predictions_json(designs, columns), "model": loaded.info, "level": level}
        if loaded.notice:
            document["notice"] = loaded.notice
        return _json_bytes(document, loaded)  # the endpoint's annotation documents this body

    @bentoml.api(route="/model_info")
    @answers_errors
    def model_info(self) -> ModelInfo:
        """Which model answers: registry name, version, run id, training-data hash, CV scores per target (also GET)."""
        document = self.model_document()
        return _json_bytes(document, self.holder.current)  # type: ignore[return-value]

    @bentoml.api(route="/suggest", input_spec=SuggestRequest)
    @answers_errors
    def suggest(self, campaign: str, n: int, client_id: str | None) -> SuggestResponse:
        """Hand out ``n`` designs to measure next; each is a pending trial of the campaign (needs the bearer token)."""
        suggestions = self._campaign(campaign).suggest(n=n, client_id=client_id)
        return _json_bytes({"campaign": campaign, "suggestions": [s.to_dict() for s in suggestions]})  # type: ignore[return-value]

    @bentoml.api(route="/observe", input_spec=ObserveRequest)
    @answers_errors
    def observe(self, campaign: str, observations: list[Any]) -> ObserveResponse:
        """Record measured rows (validated like any data file: all or nothing, every bad row listed; needs the token)."""
        if len(observations) > MAX_OBSERVATIONS:
            raise ServiceError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"observations: {len(observations)} rows in one call; the limit is {MAX_OBSERVATIONS}: split them",
                [{"loc": ["observations"], "msg": f"at most {MAX_OBSERVATIONS} rows per call"}],
            )
        rows = pd.DataFrame([o.row() for o in observations])
        result = self._campaign(campaign).observe(rows, source="observations", recorded_by=auth.principal())
        return _json_bytes({"campaign": campaign, **result})  # type: ignore[return-value]

    @bentoml.api(route="/campaigns", input_spec=CampaignCreateRequest)
    @answers_errors
    def create_campaign(
        self,
        name: str,
        objective: str,
        c_rate: float,
        cycles: int,
        protocol: str,
        test_temp_c: float | None,
        space: Any,
        warm_start: str | None,
        seed: int,
    ) -> CampaignStatus:
        """Create a campaign (the options of ``surrogate campaign create``; needs the bearer token). 409 if it exists."""
        from surrogate.campaign import Campaign
        from surrogate.design import DesignSpace
        from surrogate.objectives import Objective

        goal = Objective(objective, c_rate=c_rate, cycles=cycles, protocol=protocol, test_temp_c=test_temp_c)
        design_space = DesignSpace.from_dict(space.given()) if space is not None else None
        warm, source = None, None
        if warm_start == "embedded":
            from surrogate.dataset import DATASET_FILENAME, load_default_dataset

            warm, source = load_default_dataset(), f"embedded: {DATASET_FILENAME} (reconstruction, not measured)"
        # an existing name is a ConflictError (409) from Campaign.create itself: no listing, no trials read
        campaign = Campaign.create(name, goal, design_space, self._storage(), warm, source, seed)
        response = _json_bytes(campaign.status())
        response.status_code = HTTPStatus.CREATED
        return response  # type: ignore[return-value]

    @bentoml.api(route="/search", input_spec=SearchRequest)
    @answers_errors
    def search(
        self, objectives: list[Any], space: Any, n_trials: int, top: int, seed: int, level: float
    ) -> SearchResponse:
        """Bounded Optuna search on the surrogate: the best designs (one objective) or the Pareto set (several).

        The study is kept in memory (nothing is written); the endpoint needs the bearer token because it is costly.
        """
        import optuna

        from surrogate.design import DesignSpace
        from surrogate.objectives import Objective
        from surrogate.search import run_search

        loaded = self._require_model()
        result = run_search(
            loaded.model,
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
        document = {"result": result.to_dict(), "model": loaded.info}
        if loaded.notice:
            document["notice"] = loaded.notice
        return _json_bytes(document, loaded)  # type: ignore[return-value]


# ---------------------------------------------------------------- GET routes, Swagger UI and the OpenAPI document
def _instance() -> Surrogate:
    """The worker's service instance (BentoML sets it when the worker starts)."""
    return bentoml.get_current_service()  # type: ignore[no-any-return]


def _get_json(build: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Any]:
    """A Starlette endpoint answering ``build(request)`` as JSON, in a worker thread, errors as everywhere else."""

    async def endpoint(request: Request) -> Response:
        try:
            document = await anyio.to_thread.run_sync(build, request)
        except Exception as exc:
            return error_answer(exc)
        return _json_bytes(document)

    return endpoint


async def _model_info(_: Request) -> Response:
    """GET /model_info: as the POST, with the version header."""
    try:
        instance = _instance()
        document = await anyio.to_thread.run_sync(instance.model_document)
    except Exception as exc:
        return error_answer(exc)
    return _json_bytes(document, instance.holder.current)


async def _admin_reload(request: Request) -> Response:
    """POST /admin/reload: check the registry for a new ``@champion`` now, and swap it in (admin token)."""
    token = get_settings().reload_token
    if token is None:
        return _error(
            HTTPStatus.FORBIDDEN,
            "/admin/reload is off: start the service with SURROGATE_ADMIN_TOKEN (or SURROGATE_API_TOKEN) set",
        )
    given = request.headers.get("authorization", "").encode("utf-8", "replace")
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        response = _error(
            HTTPStatus.UNAUTHORIZED,
            "/admin/reload needs the header 'Authorization: Bearer <admin token>'",
            [{"loc": ["header", "authorization"], "msg": "missing or invalid bearer token"}],
        )
        response.headers["www-authenticate"] = 'Bearer realm="surrogate-admin"'
        return response
    instance = _instance()
    try:
        result = await anyio.to_thread.run_sync(instance.holder.check)
    except InputError as exc:  # no champion registered, or no registry
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
    except Exception as exc:  # the new version would not load: the old one stays
        logger.exception("reloading the champion failed")
        return _error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the new @champion could not be loaded ({type(exc).__name__}: {exc}); still answering with the "
            "previous model",
        )
    return _json_bytes(result, instance.holder.current)


async def _swagger_ui(_: Request) -> Response:
    from serving.openapi import swagger_ui_html

    return HTMLResponse(swagger_ui_html())


async def _openapi(_: Request) -> Response:
    from serving.openapi import openapi_document

    return _json_bytes(openapi_document(Surrogate))


extra_routes = Starlette(
    routes=[
        Route("/", _swagger_ui, methods=["GET"]),
        Route("/docs.json", _openapi, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/model_info", _model_info, methods=["GET"]),
        Route("/admin/reload", _admin_reload, methods=["POST"]),
        Route("/ingest", ingest_endpoint, methods=["POST"]),
        Route("/campaigns", _get_json(lambda _: _instance().campaign_list()), methods=["GET"]),
        Route(
            "/campaigns/{name}",
            _get_json(lambda request: _instance().campaign_status(request.path_params["name"])),
            methods=["GET"],
        ),
    ]
)
"""Routes BentoML 1.4 APIs cannot express (GET, the multipart ``/ingest`` upload) and the project's own Swagger page
and OpenAPI document.

Mounted with :meth:`bentoml.Service.mount_asgi_app`; BentoML matches mounted routes before its own index page
and ``/docs.json``, and a POST to ``/model_info`` or ``/campaigns`` still reaches the BentoML API of that path.
"""

Surrogate.mount_asgi_app(extra_routes, path="/", name="surrogate-get-routes")
# Outermost first: the metrics see every answer (401, 408, 413 included); the body deadline also times the body
# reads of the guard (a chunked body is read there).
Surrogate.add_asgi_middleware(MetricsMiddleware)
Surrogate.add_asgi_middleware(BodyDeadlineMiddleware)
Surrogate.add_asgi_middleware(GuardMiddleware)
