"""The CDS Hooks 2.0 service: a FastAPI app over the engine.

    GET  /cds-services                   discovery
    POST /cds-services/{id}              order-select | order-sign | patient-view -> {"cards"}
    POST /cds-services/{id}/feedback     accepted / overridden outcomes -> SQLite
    POST /admin/reload                   rebuild the engine from the config (admin token)
    GET  /admin/feedback/report          alert burden per rule (admin token)
    GET  /packs/{pack@version}           what a card's source.url points at (public)
    GET  /healthz                        liveness and the packs loaded (public)
    GET  /metrics                        Prometheus metrics (public; `metrics: false` drops it)
    GET  /openapi.json, /docs            the API described (public; `openapi: false` drops them)

The engine is CPU-bound and thread-safe, so each evaluation runs in the thread pool; what a
request needs from the engine is taken once, at its start (see state.py). Nothing here logs
patient data: log lines carry the service, status, card count, timings and hookInstance.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds.decisions.carry import judge, sighting_of
from cds.decisions.model import Decision, Judged
from cds.decisions.reasons import from_feedback, responses_of
from cds.decisions.store import DecisionStore, default_db
from cds.engine.alerts import Alert
from cds.engine.result import Result
from cds.errors import CdsError, PackErrors, TooManyMedications
from cds.service.assemble import Assembled, BadRequest, assemble
from cds.service.assemble import patient_id as normalize_patient_id
from cds.service.auth import AuthError, Verifier
from cds.service.cards import (
    CardContext,
    alert_to_card,
    incomplete_card,
    md,
    not_reviewed_card,
    order_alerts,
)
from cds.service.config import ConfigError, Settings, load_settings
from cds.service.discovery import SERVICES, Service, discovery
from cds.service.feedback import (
    FeedbackError,
    FeedbackStore,
    IssuedCard,
    Outcome,
    parse_feedback,
)
from cds.service.middleware import Guard, incident_of, internal_error
from cds.service.observe import Metrics, note
from cds.service.openapi import API_DESCRIPTION, DOCS, HOOK_OPENAPI, docs_page
from cds.service.prefetch import (
    KEY_KINDS,
    KEY_LABELS,
    SERIOUS_KEYS,
    PrefetchError,
    gather,
    templates,
)
from cds.service.state import EngineHolder, Snapshot, build_snapshot
from cds.vocabulary import DATA_QUALITY

log = logging.getLogger("cds.service")
SERVICE_LABEL = "cds medication safety"
#: Set by `cds serve --workers N` for its workers: how many there are.
WORKERS_ENV = "CDS_SERVE_WORKERS"


class HTTPProblem(CdsError):
    def __init__(self, status: int, error: str, message: str, field: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.extra = extra

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if self.status == 401 else None
        return Response(orjson.dumps(body), status_code=self.status, headers=headers,
                        media_type="application/json")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


@dataclass
class ServiceState:
    settings: Settings
    holder: EngineHolder
    verifier: Verifier
    feedback: FeedbackStore
    base_url: str
    allow_unsigned: bool
    config_path: Path | None
    client: httpx.AsyncClient | None = None
    #: the pharmacists' decisions (settings.decisions_db or $CDS_DB), if the service has one
    decisions: DecisionStore | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.settings.fhir_timeout,
                                            follow_redirects=False)
        return self.client


def create_app(settings: Settings | None = None, *, config_path: Path | str | None = None,
               allow_unsigned: bool | None = None, host: str = "127.0.0.1", port: int = 8080,
               snapshot: Snapshot | None = None, reload_on_sighup: bool = False) -> Any:
    """The ASGI app (the FastAPI app wrapped in the body-size and traceback guard, which also
    logs and counts every request). `reload_on_sighup`: SIGHUP reloads the packs as
    POST /admin/reload does (`cds serve` sets it; it needs the main thread's event loop)."""
    if settings is None:
        settings = load_settings(config_path)
    unsigned = settings.allow_unsigned if allow_unsigned is None else allow_unsigned
    snap = snapshot or build_snapshot(settings.packs, list(settings.rulesets), settings.backend,
                                      max_medications=settings.max_medications)
    holder = EngineHolder(snap)
    state_box: dict[str, ServiceState] = {}

    def client_factory() -> httpx.AsyncClient:
        return state_box["state"].http()

    store = FeedbackStore(settings.feedback_db)
    decisions_db = settings.decisions_db or default_db()
    state = ServiceState(
        settings=settings, holder=holder, verifier=Verifier(settings, client_factory, store),
        feedback=store, base_url=settings.service_base(host, port),
        allow_unsigned=unsigned, config_path=Path(config_path) if config_path else None,
        decisions=DecisionStore(decisions_db) if decisions_db else None)
    state_box["state"] = state

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if reload_on_sighup:
            _on_sighup(state)
        try:
            yield
        finally:
            if state.client is not None:
                await state.client.aclose()
            state.feedback.close()
            if state.decisions is not None:
                state.decisions.close()

    from cds import __version__

    app = FastAPI(title="cds CDS Hooks service", version=__version__, description=API_DESCRIPTION,
                  docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.openapi else None, lifespan=lifespan)
    app.state.cds = state
    metrics = Metrics()
    if settings.cors_origins:
        # browser-based CDS Hooks clients on these origins only; no cookies are used
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                           expose_headers=["Server-Timing", "X-Request-ID"],
                           allow_credentials=False, max_age=600)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        """404 (no such endpoint) and 405 (wrong method) in the service's JSON error shape;
        the path itself is not repeated (it is the caller's to know)."""
        if e.status_code == 404:
            problem = HTTPProblem(404, "not-found", "no such endpoint (the CDS services are "
                                                    "listed at GET /cds-services)")
        elif e.status_code == 405:
            allowed = (e.headers or {}).get("Allow", "")
            problem = HTTPProblem(405, "method-not-allowed",
                                  f"{_safe(request.method)} is not allowed here"
                                  + (f" (allowed: {allowed})" if allowed else ""))
        else:
            problem = HTTPProblem(e.status_code, "http-error", str(e.detail)[:200])
        response = problem.response()
        for name, value in (e.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unhandled(request: Request, e: Exception) -> Response:
        """Starlette answers an unhandled error with a plain-text 500 before the guard sees
        it: this makes every 500 the service's JSON, with the incident id the log holds."""
        return _json(internal_error(incident_of(e, request.method, request.url.path)), 500)

    async def authenticate(request: Request, path: str) -> dict[str, Any] | None:
        header = request.headers.get("authorization")
        if header is None and state.allow_unsigned:
            return None
        try:
            return await state.verifier.verify(header, [state.base_url + path])
        except AuthError as e:
            raise HTTPProblem(401, "unauthorized", e.message) from None

    @app.get("/cds-services", summary="Discovery", description=DOCS["discovery"])
    async def discover(request: Request) -> Response:
        try:
            await authenticate(request, "/cds-services")
        except HTTPProblem as p:
            return p.response()
        snap = state.holder.get()
        return _json(discovery(snap.pack_refs, settings.dispense_days, date.today()))

    @app.post("/cds-services/{service_id}", summary="Call a CDS service (a hook)",
              description=DOCS["hook"], openapi_extra=HOOK_OPENAPI)
    async def hook(service_id: str, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            response, info = await _hook(state, service_id, request, authenticate)
        except HTTPProblem as p:
            return p.response()
        total = (time.perf_counter() - t0) * 1000
        # the request's log line and metrics (observe.py): no patient data
        note(request.scope, cards=info["cards"], rules=info["rules"],
             hook_instance=info["hookInstance"], engine_ms=round(info["engine_ms"], 2),
             fetch_ms=round(info["fetch_ms"], 2))
        response.headers["Server-Timing"] = (f"engine;dur={info['engine_ms']:.3f}, "
                                             f"fetch;dur={info['fetch_ms']:.3f}, "
                                             f"total;dur={total:.3f}")
        return response

    @app.post("/cds-services/{service_id}/feedback", summary="Feedback on cards",
              description=DOCS["feedback"])
    async def feedback(service_id: str, request: Request) -> Response:
        try:
            if service_id not in SERVICES:
                raise HTTPProblem(404, "not-found", f"no CDS service {_safe(service_id)!r}")
            claims = await authenticate(request, f"/cds-services/{service_id}/feedback")
            body = _parse_json(await request.body())
            try:
                outcomes = parse_feedback(body, keep_comments=settings.store_user_comments)
            except FeedbackError as e:
                raise HTTPProblem(400, "bad-request", e.message, e.field) from None
            client = claims.get("iss") if claims else None
            new = await anyio.to_thread.run_sync(state.feedback.record, service_id, outcomes,
                                                 client)
            decided = 0
            if state.decisions is not None and new:
                author = str((claims or {}).get("sub") or client or "CDS Hooks client")
                decided = await anyio.to_thread.run_sync(_decide_from_feedback, state, new,
                                                         author)
        except HTTPProblem as p:
            return p.response()
        note(request.scope, outcomes=len(new))
        body = {"stored": len(new), "already_stored": len(outcomes) - len(new)}
        if state.decisions is not None:
            body["decisions"] = decided
        return _json(body)

    def admin(request: Request) -> None:
        """The admin bearer token, always: --allow-unsigned (development) opens the CDS Hooks
        endpoints, never these."""
        secret = settings.admin_secret()
        if not secret:
            raise HTTPProblem(403, "forbidden", "admin endpoints are disabled: set admin_token "
                                                "(or CDS_ADMIN_TOKEN)")
        header = request.headers.get("authorization") or ""
        given = header.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise HTTPProblem(401, "unauthorized", "admin endpoints need the admin bearer token")

    @app.post("/admin/reload", summary="Reload the rule packs", description=DOCS["reload"])
    async def reload(request: Request) -> Response:
        try:
            admin(request)
            body = await reload_engine(state)
        except HTTPProblem as p:
            return p.response()
        if _workers() > 1:  # the other workers: the supervisor replaces each (see server.py)
            os.kill(os.getppid(), signal.SIGHUP)
            body["workers"] = f"all {_workers()} workers are being replaced with these packs"
        return _json(body)

    @app.get("/admin/feedback/report", summary="Alert burden per rule",
             description=DOCS["report"])
    async def report(request: Request) -> Response:
        try:
            admin(request)
        except HTTPProblem as p:
            return p.response()
        rows = await anyio.to_thread.run_sync(state.feedback.burden)
        return _json({"rules": rows})

    @app.get("/packs/{ref}", summary="A page about a loaded pack",
             description="What a card's source.url points at. Public.",
             response_class=HTMLResponse)
    async def pack_page(ref: str) -> Response:
        pack = state.holder.get().packs.get(ref)
        if pack is None:
            return HTTPProblem(404, "not-found", "no such pack loaded").response()
        meta = pack.meta
        changes = "".join(f"<li>{escape(c.version)} ({c.date}): "
                          f"{escape('; '.join(c.changes))}</li>" for c in meta.changelog)
        html = (f"<!doctype html><meta charset=utf-8><title>{escape(pack.ref)}</title>"
                f"<h1>{escape(meta.title)}</h1><p><b>{escape(pack.ref)}</b>, digest "
                f"<code>{escape(pack.digest)}</code>, {len(pack.rules)} rules</p>"
                f"<p>{escape(meta.description)}</p><h2>Changes</h2><ul>{changes}</ul>")
        return HTMLResponse(html)

    @app.get("/healthz", summary="Liveness", description="Liveness, the packs loaded and "
             "their generation. Public, no patient data.")
    async def health() -> Response:
        snap = state.holder.get()
        return _json({"status": "ok", "packs": list(snap.pack_refs),
                      "generation": snap.generation, "loaded_at": snap.loaded_at})

    if settings.metrics:
        @app.get("/metrics", summary="Prometheus metrics", description=DOCS["metrics"],
                 response_class=Response)
        async def prometheus() -> Response:
            body, content_type = await anyio.to_thread.run_sync(metrics.render)
            return Response(body, media_type=content_type)

    if settings.openapi:
        @app.get("/docs", summary="This page", response_class=HTMLResponse)
        async def docs() -> Response:
            return HTMLResponse(docs_page(app.openapi()))

    return Guard(app, settings.max_body_bytes, metrics)


def _workers() -> int:
    """How many worker processes `cds serve --workers N` started (1: this one alone)."""
    try:
        return int(os.environ.get(WORKERS_ENV, "1"))
    except ValueError:
        return 1


def _on_sighup(state: ServiceState) -> None:
    """SIGHUP reloads the packs (the admin call's work), logged; a failed reload keeps the
    running packs. Only possible from the main thread's loop: otherwise said and skipped."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()  # a reference, so a reload is not collected

    async def reload() -> None:
        try:
            done = await reload_engine(state)
        except HTTPProblem as p:  # pack and config errors name files and fields, no patients
            log.error("SIGHUP reload failed (%s): the previous packs keep running: %s",
                      p.error, "; ".join([p.message, *p.extra.get("errors", ())]))
        else:
            log.info("SIGHUP: reloaded, generation %d", done["generation"])

    def hup() -> None:
        task = loop.create_task(reload())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, hup)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        log.warning("SIGHUP cannot be handled here: reload packs with POST /admin/reload")


def _safe(text: str) -> str:
    return text if text.replace("-", "").isalnum() and len(text) < 64 else "(invalid)"


def _parse_json(body: bytes) -> Any:
    if not body:
        raise HTTPProblem(400, "bad-request", "the request has no body (a JSON object is needed)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HTTPProblem(400, "bad-request", f"the body is not valid JSON ({e})") from None


def _string(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise HTTPProblem(400, "bad-request", "must be a non-empty string", f"{where}{key}")
    return v


async def _hook(state: ServiceState, service_id: str, request: Request,
                authenticate: Any) -> tuple[Response, dict[str, Any]]:
    service = SERVICES.get(service_id)
    if service is None:
        raise HTTPProblem(404, "not-found", f"no CDS service {_safe(service_id)!r}")
    await authenticate(request, f"/cds-services/{service_id}")
    body = _parse_json(await request.body())
    if not isinstance(body, dict):
        raise HTTPProblem(400, "bad-request", "the body must be a JSON object")
    hook = _string(body, "hook", "")
    if hook != service.hook:
        raise HTTPProblem(400, "bad-request", f"this service answers the {service.hook!r} hook, "
                                              f"not {hook!r}", "hook")
    instance = _string(body, "hookInstance", "") or ""
    context = body.get("context")
    if not isinstance(context, dict):
        raise HTTPProblem(400, "bad-request", "must be an object", "context")
    # "123" or "Patient/123": the id itself from here on (prefetch tokens included)
    patient_id = context["patientId"] = normalize_patient_id(
        _string(context, "patientId", "context.") or "")
    _string(context, "userId", "context.", required=False)
    _string(context, "encounterId", "context.", required=False)
    _string(body, "fhirServer", "", required=False)
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if not isinstance(auth, dict):
            raise HTTPProblem(400, "bad-request", "must be an object", "fhirAuthorization")
        _string(auth, "access_token", "fhirAuthorization.")
    if body.get("prefetch") is not None and not isinstance(body.get("prefetch"), dict):
        raise HTTPProblem(400, "bad-request", "must be an object", "prefetch")
    settings = state.settings
    today = date.today()  # the evaluation date of this call: the clock is read once, here
    t_fetch = time.perf_counter()
    try:
        got = await gather(body, templates(settings.dispense_days, today), state.http(),
                           timeout=settings.fhir_timeout, allowed_servers=settings.fhir_servers,
                           max_pages=settings.fhir_max_pages)
    except PrefetchError as e:
        raise HTTPProblem(412, "precondition-failed", e.message, keys=e.keys) from None
    fetch_ms = (time.perf_counter() - t_fetch) * 1000
    snap = state.holder.get()  # one engine for the whole call, whatever a reload does
    work = _Work(service, snap, patient_id, got.values, context, instance, state.base_url,
                 settings, today, state.decisions)
    work.unavailable = frozenset(k for key in got.missing for k in KEY_KINDS.get(key, ()))
    try:
        cards, issued, engine_ms = await anyio.to_thread.run_sync(work.run)
    except BadRequest as e:
        raise HTTPProblem(400, "bad-request", e.message, e.field) from None
    except TooManyMedications as e:
        raise HTTPProblem(413, "too-many-medications", e.message) from None
    except _EngineFault as e:
        raise HTTPProblem(500, "engine-fault", "the rule engine failed on this patient; no "
                                               "checks were made", incident=e.incident) from None
    if (got.missing or work.problems or work.unchecked) and not work.not_reviewed:
        ctx = work.ctx
        missing = [KEY_LABELS.get(k, k) for k in got.missing]
        card = incomplete_card(ctx, missing, work.problems, service_label=SERVICE_LABEL,
                               serious=bool(SERIOUS_KEYS & set(got.missing)) or bool(work.problems),
                               unchecked=work.unchecked)
        cards.append(card)
        issued.append(_issued(card, service_id, instance, None))
    state.feedback.issued(issued)
    return _json({"cards": cards}), {"hookInstance": _safe_instance(instance),
                                     "cards": len(cards), "engine_ms": engine_ms,
                                     "fetch_ms": fetch_ms,
                                     "rules": [c.rule or "(service)" for c in issued]}


def _safe_instance(instance: str) -> str:
    try:
        return str(uuid.UUID(instance))
    except ValueError:
        return "(not a uuid)"


class _EngineFault(CdsError):
    def __init__(self, incident: str) -> None:
        super().__init__(incident)
        self.incident = incident


def _issued(card: dict[str, Any], service: str, instance: str, alert: Alert | None) -> IssuedCard:
    return IssuedCard(
        uuid=card["uuid"], service=service, hook_instance=instance,
        rule=alert.rule if alert else None, pack=alert.pack if alert else None,
        pack_digest=alert.pack_digest if alert else None,
        family=alert.family if alert else card["source"].get("topic", {}).get("code"),
        severity=alert.severity if alert else None, indicator=card["indicator"],
        draft=alert.draft if alert else False,
        suggestions={s["uuid"]: s["label"] for s in card.get("suggestions", ())},
        issued_at=datetime.now(UTC).isoformat(timespec="milliseconds"))


class _Work:
    """What runs in the thread pool: assemble the patient, evaluate, map the cards."""

    def __init__(self, service: Service, snap: Snapshot, patient_id: str,
                 values: dict[str, Any], context: dict[str, Any], instance: str, base_url: str,
                 settings: Settings, today: date,
                 decisions: DecisionStore | None = None) -> None:
        self.service = service
        self.decisions = decisions
        self.snap = snap
        self.patient_id = patient_id
        self.values = values
        self.context = context
        self.instance = instance
        self.base_url = base_url
        self.settings = settings
        self.today = today
        self.unavailable: frozenset[str] = frozenset()
        self.problems: list[str] = []
        self.unchecked: list[Alert] = []  # data-quality alerts: said together on one card
        self.not_reviewed = False
        self.ctx = CardContext(hook_instance=instance, patient_id=patient_id)

    def run(self) -> tuple[list[dict[str, Any]], list[IssuedCard], float]:
        built: Assembled = assemble(self.patient_id, self.values, self.context,
                                    with_drafts=self.service.drafts,
                                    unavailable=self.unavailable)
        self.problems = built.problems
        t0 = time.perf_counter()
        try:
            result = self.snap.engine.evaluate(built.patient, as_of=self.today,
                                               draft_orders=built.drafts)
        except TooManyMedications:
            raise
        except Exception as e:  # noqa: BLE001 - one patient's fault must not spread
            incident = uuid.uuid4().hex[:12]
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = (f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
                     if tb is not None else "?")
            log.error("engine fault %s at %s (incident %s)", type(e).__name__, where, incident)
            raise _EngineFault(incident) from None
        engine_ms = (time.perf_counter() - t0) * 1000
        s = self.settings
        self.ctx = CardContext(
            hook_instance=self.instance, patient_id=self.patient_id,
            user_id=self.context.get("userId"), encounter_id=self.context.get("encounterId"),
            orders=built.orders, indicators=s.indicators, pack_urls=s.pack_urls,
            base_url=self.base_url,
            override_reason_system=s.override_reason_system, topic_system=s.topic_system)
        cards = []
        issued = []
        if result.not_reviewed:  # one line, and no checks
            self.not_reviewed = True
            card = not_reviewed_card(self.ctx, result.not_reviewed, service_label=SERVICE_LABEL)
            return [card], [_issued(card, self.service.id, self.instance, None)], engine_ms
        alerts = [a for a in order_alerts(result.alerts) if a.family != DATA_QUALITY]
        self.unchecked = [a for a in result.alerts if a.family == DATA_QUALITY]
        judged = self._judged(result, alerts)
        links = []
        for alert in alerts:
            j = judged.get(alert.key)
            if j is not None and j.status == "unchanged" and self.settings.standing_decisions == "hide":
                continue  # a standing decision covers it, and nothing it was made on changed
            card = alert_to_card(alert, self.ctx)
            if j is not None and j.decision is not None:
                card = _with_decision(card, j.status, j.why, j.decision)
            cards.append(card)
            issued.append(_issued(card, self.service.id, self.instance, alert))
            if j is not None:
                links.append((card["uuid"], j.sighting))
        if self.decisions is not None and links:
            self.decisions.link_cards(links)
        return cards, issued, engine_ms

    def _judged(self, result: Result, alerts: list[Alert]) -> dict[str, Judged]:
        """Each alert's status against the decisions on file (none: an empty map)."""
        if self.decisions is None:
            return {}
        prescribers = {m.order_id: m.prescriber for m in result.summary.medications
                       if m.prescriber}
        sightings = [sighting_of(self.patient_id, a, prescribers) for a in alerts]
        current = {k: d for (_, k), d in self.decisions.current_for(self.patient_id).items()}
        return {j.sighting.alert_key: j for j in judge(sightings, (), current, self.today)
                if j.status != "gone"}


def _with_decision(card: dict[str, Any], status: str, why: str, d: Decision) -> dict[str, Any]:
    """A card whose alert has a decision on file says it: shown as info while the decision
    stands (`standing_decisions: info`), or re-opened with what changed."""
    said = md(f"{d.state} by {d.author} on {d.decided_at:%Y-%m-%d}"
              + (f" ({d.reason_display or d.reason_code})" if d.reason_code else "")
              + (f": {d.note}" if d.note else ""))
    if status == "unchanged":
        return {**card, "indicator": "info",
                "detail": f"**Decision on file**: {said}.\n\n{card.get('detail', '')}"}
    if status == "changed":
        return {**card, "detail": f"**Re-opened**: {md(why)} since the decision on file "
                                  f"({said}).\n\n{card.get('detail', '')}"}
    return card


def _decide_from_feedback(state: ServiceState, outcomes: list[Outcome], author: str) -> int:
    """Record each new outcome on a card the service linked to an alert as a decision."""
    assert state.decisions is not None
    responses = responses_of(state.holder.get().engine.packs)
    made = 0
    for o in outcomes:
        s = state.decisions.card(o.card)
        if s is None:  # a card issued without a store, or by another service
            continue
        at = datetime.fromisoformat(o.timestamp.replace("Z", "+00:00"))
        state.decisions.decide(from_feedback(
            s, outcome=o.outcome, reason_system=o.reason_system, reason_code=o.reason_code,
            reason_display=o.reason_display, comment=o.user_comment, at=at, author=author,
            responses=responses))
        made += 1
    return made


async def reload_engine(state: ServiceState) -> dict[str, Any]:
    """Rebuild the engine from the config file (packs, rulesets, backend) and swap it in."""
    async with state.reload_lock:
        settings = state.settings
        if state.config_path is not None:
            try:
                fresh = load_settings(state.config_path)
            except ConfigError as e:
                raise HTTPProblem(422, "config-error", str(e)) from None
            settings = settings.model_copy(update={"packs": fresh.packs,
                                                   "rulesets": fresh.rulesets,
                                                   "backend": fresh.backend})
        old = state.holder.get()
        try:
            snap = await anyio.to_thread.run_sync(
                lambda: build_snapshot(settings.packs, list(settings.rulesets), settings.backend,
                                       old.generation + 1,
                                       max_medications=settings.max_medications))
        except PackErrors as e:
            raise HTTPProblem(422, "pack-error", "rule packs failed to load; the service keeps "
                                                 "running the previous ones",
                              errors=[str(x) for x in e.errors]) from None
        state.holder.swap(snap)
        state.settings = settings
        log.info("reloaded packs: %s (generation %d)", ", ".join(snap.pack_refs), snap.generation)
        return {"packs": list(snap.pack_refs), "previous": list(old.pack_refs),
                "generation": snap.generation, "loaded_at": snap.loaded_at}
