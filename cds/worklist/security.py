"""What the served worklist does so a browser, a proxy or a log file cannot leak patient data:
security headers on every response, a refusal to serve in clear on a network address, and an
access log with no patient in it.

Logging policy: nothing patient-related is logged. URLs name patients (/patients/{id}) and
query strings carry filters and search terms, so the access log writes the route's template
(`/patients/{patient_id}`), never the path or query; it adds the method, the status, the time
taken and the user's login name (not patient data). Serve with uvicorn's own access log off
(`access_log=False`), which logs full paths. Exceptions are logged by their type only (see
cds/service/middleware.py: a message may quote a value from the request).
"""

from __future__ import annotations

import ipaddress
import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds.errors import CdsError
from cds.worklist.auth import user_of

log = logging.getLogger("cds.worklist")

#: Scripts, styles and images from this site only: no inline script or style, so an injected
#: <script> in a patient's name does not run even if a template forgot to escape it.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'self'")
HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),  # frame-ancestors for browsers that predate it: no clickjacking
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),  # a patient's URL never leaves in a Referer header
    ("cross-origin-opener-policy", "same-origin"),
)
HSTS = "max-age=31536000"
#: Responses that may be cached: the site's own CSS, scripts, images and fonts. Everything
#: else (pages, JSON, CSV, PDF letters) holds patient data and is `no-store`, so it stays
#: out of the browser's disk cache and any shared cache in between.
CACHEABLE = ("text/css", "text/javascript", "application/javascript", "image/", "font/")


class BindError(CdsError):
    """The worklist would serve patient data and passwords in clear over a network."""


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response (the app may set its own
    value of any of them first, except Cache-Control on patient data). HSTS is sent over TLS
    (`hsts=None`: when the request came over https), or always with `hsts=True` (a TLS proxy
    in front that the server does not see)."""

    def __init__(self, app: ASGIApp, hsts: bool | None = None) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self.hsts if self.hsts is not None else scope.get("scheme") == "https"

        async def send_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS:
                    headers.setdefault(name, value)
                kind = headers.get("content-type", "").lower()
                if not kind.startswith(CACHEABLE):
                    headers["cache-control"] = "no-store"
                if tls:
                    headers.setdefault("strict-transport-security", HSTS)
            await send(message)

        await self.app(scope, receive, send_headers)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also bracketed, or IPv4-mapped) and `localhost`."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check_bind(host: str, tls: bool, behind_proxy: bool) -> None:
    """Refuse a network address without TLS: the worklist shows patients and takes passwords,
    which must not cross a network in clear. Loopback is fine (the machine's own browser, or
    a proxy on the machine), as is TLS here or a TLS-terminating proxy (--behind-proxy)."""
    if tls or behind_proxy or is_loopback(host):
        return
    raise BindError(f"--host {host} is reachable from the network but the worklist has no TLS: "
                    f"give the TLS certificate and key, or --behind-proxy when a TLS proxy "
                    f"fronts it, or serve on 127.0.0.1")


class AccessLog:
    """ASGI middleware: one log line per request with no patient in it (see the module's
    docstring): `GET /patients/{patient_id} -> 200 4.1ms user=alice`."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            user = user_of(scope)
            self.log.info("%s %s -> %d %.1fms%s", scope.get("method"), route_of(scope), status,
                          (time.perf_counter() - t0) * 1000, f" user={user}" if user else "")


def route_of(scope: Scope) -> str:
    """The template of the route that answered (`/patients/{patient_id}`), or `-` when none
    matched: never the request's own path, which may name a patient."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "-"
