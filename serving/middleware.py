"""ASGI middleware the service needs and open-source BentoML lacks: bearer tokens with roles, a body-size limit,
JSON only, one error shape, and no request left hanging by an unexpected error.

- Tokens (:mod:`serving.auth`): when any token is configured (a tokens file, ``[[tokens]]`` entries, or the
  single ``SURROGATE_API_TOKEN``), each path needs a role (:func:`serving.auth.required_role`): ``read`` for
  campaign status, search and ``/metrics`` (unless ``SURROGATE_METRICS_PUBLIC``), and for ``/predict`` and
  ``/model_info`` when ``predict_public`` is false; ``write`` for ``/suggest``, ``/observe``, ``POST /campaigns``,
  ``/ingest``; ``admin`` for ``/admin/reload``. A missing, wrong or non-ASCII token is answered 401, a valid token
  whose role is too low 403 naming the role needed. The caller's name is put in ``scope["state"]["principal"]``
  (:func:`serving.auth.principal`). Health and docs stay open.
- ``SURROGATE_MAX_BODY_BYTES`` (default :data:`DEFAULT_MAX_BODY_BYTES`): a larger request body is answered 413,
  whether announced by ``Content-Length`` or streamed in chunks.
- A request body that is not ``application/json`` is answered 415 (``POST /ingest`` takes ``multipart/form-data``).
- Every answer of 400 or more has the body ``{"error": str, "detail": [...]}`` (BentoML's and Starlette's own
  error bodies are rewritten into it; see :class:`serving.schemas.ErrorResponse`).
- An unexpected exception is logged with a request id and answered at once with a 500
  ``{"error": ..., "request_id": ...}`` (the id is also in the ``X-Request-ID`` header).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving import auth
from surrogate.errors import InputError
from surrogate.settings import DEFAULT_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES
from surrogate.settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("surrogate.service")

METRICS_PUBLIC_ENV = "SURROGATE_METRICS_PUBLIC"
METRICS_PATH = "/metrics"
MAX_BODY_ENV = "SURROGATE_MAX_BODY_BYTES"
JSON_MEDIA_TYPE = "application/json"
MULTIPART_MEDIA_TYPE = "multipart/form-data"
MULTIPART_PATHS: frozenset[str] = frozenset({"/ingest"})
"""Endpoints whose body is ``multipart/form-data`` (file uploads) instead of JSON."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NO_NORMALISE = frozenset({"/metrics"})


def is_protected(path: str) -> bool:
    """Whether ``path`` needs a token when any is configured (any method; ``/predict`` and ``/metrics`` as by default)."""
    return any(
        auth.required_role(method, path, metrics_public=False, predict_public=True) is not None
        for method in ("GET", "POST")
    )


def max_body_bytes() -> int:
    """The body-size limit in force, bytes (the ``max_body_bytes`` setting, ``SURROGATE_MAX_BODY_BYTES``)."""
    return get_settings().max_body_bytes


def new_request_id() -> str:
    """A short random id that ties a 500 answer to its log line."""
    return uuid.uuid4().hex[:16]


def error_body(error: str, detail: list[dict[str, Any]] | None = None, **extra: Any) -> bytes:
    """The JSON body of every error answer (see :class:`serving.schemas.ErrorResponse`)."""
    return json.dumps({"error": error, "detail": detail or [], **extra}, default=str).encode()


async def _answer(send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


def normalised_error(status: int, body: bytes, content_type: str) -> bytes:
    """``body`` of an error answer rewritten as ``{"error": str, "detail": [objects]}`` (kept when it already is)."""
    try:
        document: Any = json.loads(body) if "json" in content_type else None
    except ValueError:
        document = None
    if document is None:
        text = body.decode("utf-8", "replace").strip()
        return error_body(text or f"HTTP {status}")
    if isinstance(document, list) and len(document) == 1 and isinstance(document[0], dict):
        document = document[0]  # BentoML 1.4.40 answers some client errors with a one-element list
    if not isinstance(document, dict):
        return error_body(f"HTTP {status}", [{"msg": json.dumps(document)}])
    error, detail = document.get("error"), document.get("detail")
    extra = {k: v for k, v in document.items() if k not in ("error", "detail")}
    if isinstance(detail, str):  # Starlette's HTTPException: {"detail": "text"}
        error, detail = error or detail, []
    if not isinstance(error, str):
        error = f"HTTP {status}"
    error = error.replace("IODescriptor", "")  # BentoML's name for a request model: "... for PredictRequest"
    if not isinstance(detail, list):
        detail = [] if detail is None else [{"msg": json.dumps(detail, default=str)}]
    detail = [item if isinstance(item, dict) else {"msg": str(item)} for item in detail]
    return error_body(error, detail, **extra)


class GuardMiddleware:
    """Tokens with roles, body limit, JSON only, one error shape, and a quick logged 500 for anything unexpected.

    ``token``, ``max_bytes``, ``metrics_public`` and ``predict_public`` default to the settings (read once, at
    start-up). ``token`` given explicitly replaces every configured token by that one admin token (``token=""``
    turns the token check off).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        max_bytes: int | None = None,
        metrics_public: bool | None = None,
        predict_public: bool | None = None,
    ) -> None:
        self.app = app
        settings = get_settings()
        self.token_error: str | None = None
        if token is None:
            token = settings.api_token.get_secret_value() if settings.api_token is not None else None
            try:
                self.entries = auth.token_entries(settings)
            except InputError as exc:  # fail closed: every guarded path answers 503 naming the bad entry
                logger.error("tokens: %s", exc)
                self.token_error = str(exc)
                self.entries = []
        else:
            self.entries = [auth.TokenEntry("api_token", "admin", auth.digest(token), "api_token")] if token else []
        self.token = token or None
        self.max_bytes = max_bytes if max_bytes is not None else settings.max_body_bytes
        self.metrics_public = settings.metrics_public if metrics_public is None else metrics_public
        self.predict_public = settings.predict_public if predict_public is None else predict_public

    @property
    def guarded(self) -> bool:
        """Whether any token is configured (else every path is open, as before tokens existed)."""
        return bool(self.entries) or self.token_error is not None

    def _role_for(self, method: str, path: str) -> str | None:
        return auth.required_role(method, path, metrics_public=self.metrics_public, predict_public=self.predict_public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        context = auth.set_principal(scope, None)
        try:
            await self._guarded(scope, receive, tracking_send)
        except Exception:
            request_id = new_request_id()
            logger.exception(
                "request %s: unexpected error on %s %s", request_id, scope.get("method"), scope.get("path")
            )
            if not started:
                body = error_body("internal error: the service logged it; quote the request id", request_id=request_id)
                await _answer(send, 500, body, [(b"x-request-id", request_id.encode())])
        finally:
            auth.reset_principal(context)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self.guarded and not await self._allowed(scope, send, path):
            return
        method = scope.get("method")
        length = self._content_length(scope)
        chunked = length is None and method in _BODY_METHODS
        if method in _BODY_METHODS and (chunked or (length or 0) > 0) and not self._accepted(scope, path):
            media_type = self._header(scope, b"content-type").split(";")[0].strip().lower()
            what = f"{media_type} bodies are" if media_type else "a body without a content type is"
            body = error_body(
                f"{what} not accepted: send JSON with the header 'Content-Type: application/json'",
                [{"loc": ["header", "content-type"], "msg": f"unsupported media type {media_type or '(none)'}"}],
            )
            await _answer(send, 415, body)
            return
        if length is not None and length > self.max_bytes:
            await self._too_large(send)
            return
        if path not in _NO_NORMALISE:
            send = _ErrorShaper(send)
        if chunked:
            await self._call_buffered(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _allowed(self, scope: Scope, send: Send, path: str) -> bool:
        """Check the token against the role ``path`` needs; answer 401/403/503 and return False when refused.

        On success the caller's name is recorded for the request (:func:`serving.auth.set_principal`).
        """
        method = str(scope.get("method", "GET")).upper()
        needed = self._role_for(method, path)
        given = auth.bearer_token(scope.get("headers", []))
        who = auth.find_principal(self.entries, given) if given is not None and given.isascii() else None
        if needed is None:  # an open path: still say who called, if a valid token came along
            if who is not None:
                auth.set_principal(scope, who)
            return True
        if self.token_error is not None:
            body = error_body(
                f"the service's tokens are misconfigured, so {path} is refused: {self.token_error}",
                [{"loc": ["settings", "tokens"], "msg": self.token_error}],
            )
            await _answer(send, 503, body, [(b"retry-after", b"60")])
            return False
        if who is None:
            if path == METRICS_PATH:
                what = "shows the service's traffic"
            elif needed == "admin":
                what = "administers the service"
            else:
                what = "reads or changes campaign state"
            body = error_body(
                f"{path} {what}: send the header 'Authorization: Bearer <token>' with a token of role "
                f"{needed!r} or higher",
                [{"loc": ["header", "authorization"], "msg": "missing or invalid bearer token"}],
            )
            await _answer(send, 401, body, [(b"www-authenticate", b'Bearer realm="surrogate"')])
            return False
        if auth.role_rank(who.role) < auth.role_rank(needed):
            body = error_body(
                f"{method} {path} needs role {needed!r}; the token of {who.name!r} has role {who.role!r}",
                [{"loc": ["header", "authorization"], "msg": f"role {needed!r} needed, token has {who.role!r}"}],
            )
            await _answer(send, 403, body)
            return False
        auth.set_principal(scope, who)
        return True

    @staticmethod
    def _header(scope: Scope, wanted: bytes) -> str:
        for name, value in scope.get("headers", []):
            if name == wanted:
                return value.decode("latin-1")
        return ""

    def _accepted(self, scope: Scope, path: str) -> bool:
        """JSON bodies everywhere; ``multipart/form-data`` on the upload paths (:data:`MULTIPART_PATHS`)."""
        if path in MULTIPART_PATHS:
            media_type = self._header(scope, b"content-type").split(";")[0].strip().lower()
            if media_type == MULTIPART_MEDIA_TYPE:
                return True
        return self._is_json(scope)

    def _is_json(self, scope: Scope) -> bool:
        media_type = self._header(scope, b"content-type").split(";")[0].strip().lower()
        return media_type == JSON_MEDIA_TYPE or (media_type.startswith("application/") and media_type.endswith("+json"))

    def _content_length(self, scope: Scope) -> int | None:
        try:
            return int(self._header(scope, b"content-length"))
        except ValueError:
            return None

    async def _too_large(self, send: Send) -> None:
        body = error_body(
            f"request body is larger than {self.max_bytes} bytes ({MAX_BODY_ENV})",
            [{"loc": ["body"], "msg": f"body exceeds the limit of {self.max_bytes} bytes"}],
        )
        await _answer(send, 413, body)

    async def _call_buffered(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body without ``Content-Length`` (chunked): read it up to the limit, then replay it to the app."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _ErrorShaper:
    """An ASGI ``send`` that rewrites every answer of 400 or more into the service's error shape.

    A 2xx answer passes straight through (one status check per message).
    """

    __slots__ = ("send", "start", "chunks")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] < 400:
                await self.send(message)
                return
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        headers = [
            (k, v) for k, v in self.start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")
        ]
        content_type = next(
            (v.decode("latin-1") for k, v in self.start.get("headers", []) if k.lower() == b"content-type"), ""
        )
        body = normalised_error(self.start["status"], b"".join(self.chunks), content_type)
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
