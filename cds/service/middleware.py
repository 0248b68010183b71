"""ASGI guards around the whole app: request body size, and no stray tracebacks; and, with
an observer, the request id, one log line and the metrics of every request (observe.py).

Tracebacks can quote patient data (an exception's message may hold a value from the
request), so the guard logs only the exception's type and an incident id.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from cds.service.discovery import SERVICES
from cds.service.observe import NOTES, note, request_id, route_of

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
    def __init__(self, app: ASGIApp, max_body: int, metrics: Any = None) -> None:
        self.app = app
        self.max_body = max_body
        #: observe.Metrics, or None: no request ids, request log lines or metrics
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is None:
            await self._guarded(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = request_id(scope.get("headers") or ())
        notes: dict[str, Any] = {}
        scope.setdefault("state", {})[NOTES] = notes
        status = 500
        error_body: list[bytes] = []

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", rid.encode())]
            elif status >= 400 and sum(map(len, error_body)) < 65536:
                error_body.append(message.get("body", b""))  # for its error code
            await send(message)

        try:
            await self._guarded(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - t0
            route = route_of(scope.get("path") or "")
            rules = notes.pop("rules", ())
            if status >= 400 and "error" not in notes:
                notes.update(_error_of(b"".join(error_body)))
            self.metrics.observe(route, status, seconds, notes.get("error"), rules)
            what = f"hook {route}" if route in SERVICES else route
            extra = {"request_id": rid, "service": route, "method": scope.get("method"),
                     "status": status, "latency_ms": round(seconds * 1000, 2), **notes}
            message = f"{what} {scope.get('method')} -> {status}"
            if "cards" in notes:
                message += f" cards={notes['cards']}"
            if notes.get("error"):
                message += f" {notes['error']}"
            quiet = route in ("healthz", "metrics") and status < 400
            log.log(logging.DEBUG if quiet else logging.INFO, "%s", message, extra=extra)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    _note(scope, error="bad-request")
                    await send_json(send, 400, {"error": "bad-request",
                                                "message": "Content-Length is not a number"})
                    return
                if length > limit:
                    _note(scope, error="payload-too-large")
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
                _note(scope, error="payload-too-large")
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
            _note(scope, error="internal-error", incident=incident)
            if not started:
                await send_json(send, 500, internal_error(incident))


def _error_of(body: bytes) -> dict[str, str]:
    """The error code (and incident id) of one of the service's JSON error answers."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    out = {}
    if isinstance(doc, dict):
        for key in ("error", "incident"):
            v = doc.get(key)
            if isinstance(v, str) and len(v) <= 40 and v.replace("-", "").isalnum():
                out[key] = v
    return out


def _note(scope: Scope, **fields: Any) -> None:
    note(scope, **fields)


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
