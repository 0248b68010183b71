"""ASGI guards around the whole app: request body size, and no stray tracebacks.

Tracebacks can quote patient data (an exception's message may hold a value from the
request), so the guard logs only the exception's type and an incident id.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

log = logging.getLogger("cds.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await send_json(send, 400, {"error": "bad-request",
                                                "message": "Content-Length is not a number"})
                    return
                if length > limit:
                    await send_json(send, 413, _too_large(limit))
                    return
        # Read the whole body first (it is small, and bounded): a body over the limit is
        # answered 413 before any of the app runs, however it was sent.
        chunks: list[bytes] = []
        received = 0
        more = scope.get("method") in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                await send_json(send, 413, _too_large(limit))
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, send_tracked)
        except Exception as e:  # noqa: BLE001 - the last line of defence
            incident = getattr(e, INCIDENT, None)
            if incident is None:  # else the app's handler logged and answered it
                incident = uuid.uuid4().hex[:12]
                log.error("unhandled %s in %s %s (incident %s)", type(e).__name__,
                          scope.get("method"), scope.get("path"), incident)
            if not started:
                await send_json(send, 500, internal_error(incident))


#: Set on an exception once it has been logged and answered with its incident id.
INCIDENT = "_cds_incident"


def internal_error(incident: str) -> dict[str, Any]:
    """The JSON body of every 500: never a traceback or a value from the request."""
    return {"error": "internal-error", "message": "internal error", "incident": incident}


def incident_of(e: Exception, method: str, path: str) -> str:
    """Log an unhandled exception (its type only: a message may quote patient data) under a
    new incident id, and mark it so the guard does not log it twice."""
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled %s in %s %s (incident %s)", type(e).__name__, method, path, incident)
    with contextlib.suppress(AttributeError):  # an exception type with __slots__
        setattr(e, INCIDENT, incident)
    return incident


def _too_large(limit: int) -> dict[str, Any]:
    return {"error": "payload-too-large",
            "message": f"request body is larger than this service accepts ({limit} bytes)"}
