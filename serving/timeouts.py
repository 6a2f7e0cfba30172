"""Slow clients (issue 18, finding 7): a deadline for the request body and one for the request headers.

- **Body**: :class:`BodyDeadlineMiddleware` gives a client ``body_timeout_s`` seconds (default
  :data:`BODY_TIMEOUT_S`), counted from the end of its headers, to send the whole body. A body that is still
  incomplete then (shorter than its ``Content-Length``, or a chunked body that stops) is answered
  **408 Request Timeout** and the connection is closed; the app is told the client went away. Before, such a
  request waited for the 60 s request timeout and got a 504.
- **Headers**: uvicorn (which BentoML runs in each worker) only times idle keep-alive connections, and only once
  an answer has been sent; a connection whose request line or headers never end was held for ever (500 such
  sockets were all still open after 100 s). :class:`HeaderDeadlineH11Protocol` is uvicorn's h11 protocol with a
  deadline: a connection that has not sent complete headers ``header_timeout_s`` seconds (default
  :data:`HEADER_TIMEOUT_S`) after it opened, or after its previous answer, is closed. BentoML builds uvicorn's
  ``Config`` itself with ``http="auto"``, and takes no protocol option, so :func:`use_header_deadline_protocol`
  points uvicorn's ``"auto"`` protocol name (``uvicorn.config.HTTP_PROTOCOLS``) at this class; the service
  module calls it at import, in every worker, before uvicorn loads its configuration.

Both deadlines are absolute, not idle times: a client that trickles one byte a second gains nothing.
They come from the settings ``body_timeout_s`` and ``header_timeout_s`` (``SURROGATE_BODY_TIMEOUT_S``,
``SURROGATE_HEADER_TIMEOUT_S``) when the settings object has them, else from those environment variables, else the
defaults here. The body deadline must stay below the request timeout (60 s), so a slow body is a 408, not a 504.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from surrogate.errors import InputError
from surrogate.settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_TIMEOUT_S = 30.0
"""Seconds a client has, after its headers, to send the whole request body (then 408)."""
HEADER_TIMEOUT_S = 10.0
"""Seconds a connection has to send complete request headers, after it opens or after its previous answer."""
BODY_TIMEOUT_ENV = "SURROGATE_BODY_TIMEOUT_S"
HEADER_TIMEOUT_ENV = "SURROGATE_HEADER_TIMEOUT_S"
PROTOCOL_IMPORT_STRING = "serving.timeouts:HeaderDeadlineH11Protocol"


def _seconds(field: str, env: str, default: float) -> float:
    """A positive, finite number of seconds: the setting ``field`` if the settings have it, else ``$env``, else default."""
    value: Any = getattr(get_settings(), field, None)
    where = field
    if value is None and os.environ.get(env, "").strip():
        value, where = os.environ[env].strip(), env
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{where}: {value!r} must be a positive, finite number of seconds")
    return seconds


def body_timeout_s() -> float:
    """The body deadline in force, seconds (see the module docstring)."""
    return _seconds("body_timeout_s", BODY_TIMEOUT_ENV, BODY_TIMEOUT_S)


def header_timeout_s() -> float:
    """The header deadline in force, seconds (see the module docstring)."""
    return _seconds("header_timeout_s", HEADER_TIMEOUT_ENV, HEADER_TIMEOUT_S)


def _timeout_body(seconds: float) -> bytes:
    return json.dumps(
        {
            "error": f"the request body did not arrive within {seconds:g} s: send the whole body at once, "
            "and a Content-Length equal to its size",
            "detail": [{"loc": ["body"], "msg": f"incomplete after {seconds:g} s"}],
        }
    ).encode()


class BodyDeadlineMiddleware:
    """ASGI middleware: a request body not complete ``timeout_s`` seconds after the headers is answered 408.

    Only the reads of the body are timed: once the last body message has arrived, the app's later ``receive``
    calls (waiting for a disconnect) are passed through untouched. On the deadline the client gets the 408 with
    ``Connection: close``; the app's next ``receive`` returns ``http.disconnect`` and whatever it sends
    afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, timeout_s: float | None = None) -> None:
        self.app = app
        self.timeout_s = timeout_s if timeout_s is not None else body_timeout_s()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False
        timed_out = False
        answer_started = False

        async def timed_receive() -> Message:
            nonlocal body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                timed_out = True
                if not answer_started:
                    await self._answer_408(send)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answer_started
            if timed_out:
                return  # the 408 is the answer; the app's late answer is dropped
            if message["type"] == "http.response.start":
                answer_started = True
            await send(message)

        await self.app(scope, timed_receive, guarded_send)

    async def _answer_408(self, send: Send) -> None:
        body = _timeout_body(self.timeout_s)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 408, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete in time.

    The deadline (``header_timeout_s``) is armed when the connection opens and again after each answer (the
    keep-alive wait), and disarmed as soon as h11 has parsed a request's headers. Bytes arriving in between do
    not push it back.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s()
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # closed already, or headers complete (the request is being read or answered)
        self.logger.debug("closing a connection that sent no complete request headers in %g s", self.header_timeout_s)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)


def use_header_deadline_protocol() -> None:
    """Make uvicorn's ``http="auto"`` (what BentoML's workers use) :class:`HeaderDeadlineH11Protocol`.

    Takes effect for every uvicorn ``Config`` loaded afterwards in this process.
    """
    import uvicorn.config

    uvicorn.config.HTTP_PROTOCOLS["auto"] = PROTOCOL_IMPORT_STRING
