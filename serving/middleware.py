"""ASGI middleware the service needs and open-source BentoML lacks: a bearer token and a body-size limit.

- ``SURROGATE_API_TOKEN``: when set, every state-changing endpoint
  (:data:`PROTECTED_PATHS`) requires ``Authorization: Bearer <token>``;
  a missing or wrong token is answered 401. Read-only endpoints (predict,
  model information, health, metrics, docs) stay open.
- ``SURROGATE_MAX_BODY_BYTES`` (default :data:`DEFAULT_MAX_BODY_BYTES`): a
  larger request body is answered 413, whether announced by
  ``Content-Length`` or streamed in chunks.

- A form or multipart body (``curl -d`` without a JSON content type) is answered 415.

The answers are JSON ``{"error": ..., "detail": [...]}`` naming the header or limit.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from surrogate.errors import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "SURROGATE_API_TOKEN"
MAX_BODY_ENV = "SURROGATE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""16 MiB: room for 10,000 designs written out in full (about 1.5 MB) with a wide margin."""
FORM_MEDIA_TYPES: frozenset[str] = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
"""Request bodies answered 415: every endpoint takes JSON (BentoML's multipart parser fails with a 500 otherwise)."""
PROTECTED_PATHS: frozenset[str] = frozenset({"/suggest", "/observe", "/search"})
"""Endpoints that write campaign or study state."""


def max_body_bytes() -> int:
    """The body-size limit in force, bytes (``SURROGATE_MAX_BODY_BYTES`` or the default)."""
    raw = os.environ.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{MAX_BODY_ENV}: {raw!r} is not a whole number of bytes") from None
    if value <= 0:
        raise InputError(f"{MAX_BODY_ENV}: {value} must be a positive number of bytes")
    return value


def _json_response(status: int, error: str, detail: list[dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="surrogate"'))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


async def _answer(send: Send, status: int, error: str, detail: list[dict[str, Any]]) -> None:
    start, body = _json_response(status, error, detail)
    await send(start)
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Bearer token on :data:`PROTECTED_PATHS` and a body-size limit on every request.

    ``token`` and ``max_bytes`` default to the environment (read once, at start-up); ``token=""`` turns the
    token check off.
    """

    def __init__(self, app: ASGIApp, token: str | None = None, max_bytes: int | None = None) -> None:
        self.app = app
        self.token = (token if token is not None else os.environ.get(TOKEN_ENV)) or None
        self.max_bytes = max_bytes if max_bytes is not None else max_body_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.token is not None and path in PROTECTED_PATHS and not self._authorised(scope):
            await _answer(
                send,
                401,
                f"{path} changes state: send the header 'Authorization: Bearer <token>' with the service's token",
                [{"loc": ["header", "authorization"], "msg": "missing or invalid bearer token"}],
            )
            return
        media_type = self._header(scope, b"content-type").split(";")[0].strip().lower()
        if scope.get("method") == "POST" and media_type in FORM_MEDIA_TYPES:
            await _answer(
                send,
                415,
                f"{media_type} bodies are not accepted: send JSON with the header 'Content-Type: application/json'",
                [{"loc": ["header", "content-type"], "msg": f"unsupported media type {media_type}"}],
            )
            return
        length = self._content_length(scope)
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            await self._call_buffered(scope, receive, send)
            return
        if length is not None and length > self.max_bytes:
            await self._too_large(send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token or "")
        return False

    @staticmethod
    def _header(scope: Scope, wanted: bytes) -> str:
        for name, value in scope.get("headers", []):
            if name == wanted:
                return value.decode("latin-1")
        return ""

    def _content_length(self, scope: Scope) -> int | None:
        try:
            return int(self._header(scope, b"content-length"))
        except ValueError:
            return None

    async def _too_large(self, send: Send) -> None:
        await _answer(
            send,
            413,
            f"request body is larger than {self.max_bytes} bytes ({MAX_BODY_ENV})",
            [{"loc": ["body"], "msg": f"body exceeds the limit of {self.max_bytes} bytes"}],
        )

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
