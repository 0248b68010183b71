"""What a hospital's monitoring reads: one structured log line per request, and Prometheus
metrics at /metrics.

A log line (JSON, one object a line) carries the request id, the route (the CDS service id
for hook calls), the status, the latency in milliseconds, the number of cards, the error code
and, for hook calls, the hookInstance and engine and fetch times. Nothing else: never the
patient id, a name, a body, a query string or a header. The formatter writes only the fields
named in LOG_FIELDS, whatever a caller puts on a record.

Metrics (prometheus-client; labels are bounded: service ids and fixed route names, rule ids
of the loaded packs, error codes):

    cds_requests_total{service,status}          requests answered
    cds_request_duration_seconds{service}        latency histogram
    cds_cards_total{rule}                        cards issued, by rule ("(service)": the
                                                 service's own cards, e.g. "could not check")
    cds_errors_total{service,error}              answers >= 400, by error code

With several worker processes (`cds serve --workers N`), each process writes its values to
files in PROMETHEUS_MULTIPROC_DIR (set by `cds serve` before the workers start) and /metrics
adds up every worker's: whichever worker answers the scrape, the numbers are the service's.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson

from cds.service.discovery import SERVICES

#: The only record attributes a JSON log line may carry, beyond time, level, logger, message.
LOG_FIELDS = ("request_id", "service", "method", "status", "latency_ms", "cards", "error",
              "incident", "hook_instance", "engine_ms", "fetch_ms", "outcomes", "generation")

#: Key of the per-request notes in the ASGI scope's "state" (what the handlers add).
NOTES = "cds_observe"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Latency buckets (seconds): the goal is p99 under 25 ms, the spec's budget ~500 ms.
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the LOG_FIELDS present."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for name in LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        return orjson.dumps(line).decode()


JsonFormatter.converter = time.gmtime  # type: ignore[assignment]


def route_of(path: str) -> str:
    """The bounded label of a path: a CDS service id, '<id>/feedback', or a fixed name."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "other"
    head = parts[0]
    if head == "cds-services":
        if len(parts) == 1:
            return "discovery"
        if parts[1] in SERVICES:
            if len(parts) == 2:
                return parts[1]
            if len(parts) == 3 and parts[2] == "feedback":
                return f"{parts[1]}/feedback"
        return "other"
    if head in ("admin", "packs", "healthz", "metrics", "docs"):
        return head
    if path == "/openapi.json":
        return "openapi"
    return "other"


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cds_requests", "Requests answered, by route and status",
                                ["service", "status"], registry=self.registry)
        self.latency = Histogram("cds_request_duration_seconds",
                                 "Time from the request to the end of the answer, by route",
                                 ["service"], buckets=BUCKETS, registry=self.registry)
        self.cards = Counter("cds_cards", "CDS Hooks cards issued, by rule", ["rule"],
                             registry=self.registry)
        self.errors = Counter("cds_errors", "Answers with a status of 400 or more, by route "
                                            "and error code", ["service", "error"],
                              registry=self.registry)

    def observe(self, service: str, status: int, seconds: float, error: str | None,
                rules: Iterable[str]) -> None:
        self.requests.labels(service, str(status)).inc()
        self.latency.labels(service).observe(seconds)
        if status >= 400:
            self.errors.labels(service, error or f"http-{status}").inc()
        for rule in rules:
            self.cards.labels(rule).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is a plain token (a proxy's id), else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


def note(scope: MutableMapping[str, Any], **fields: Any) -> None:
    """Add what a handler knows (cards, error code, hook timings) to its request's log line."""
    notes = (scope.get("state") or {}).get(NOTES)
    if notes is not None:
        notes.update(fields)
