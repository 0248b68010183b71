"""`cds review serve`: the pharmacists' worklist in the browser (docs/review.md).

Server-rendered pages (FastAPI + Jinja2), every asset served by the app (no CDN, no build
step: it works inside a hospital network), one small script for keyboard shortcuts. Data:
the latest panel run (imported once into the decisions database), the decisions store, and
the run's patients.parquet. Accounts, sessions, CSRF and security headers:
cds/worklist/auth.py and security.py.

    GET  /                          the queue: filters, counts, paging
    GET  /patients/{id}             a patient: values, medications, alerts, decisions; forms
    POST /patients/{id}/decide      record a decision (pharmacist, admin)
    POST /patients/{id}/comment     a prescriber's comment on an alert
    GET  /letters, /letters/{file}  the letters to prescribers (print CSS)
    GET  /dashboard                 the program's measures
    GET  /admin/users, POST         accounts (admin); the audit trail
    GET  /login, POST /login, POST /logout, GET /login/oidc, GET /login/oidc/callback
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cds.decisions.csv_import import import_row
from cds.decisions.letters import letter_index
from cds.decisions.letters import letters as render_letters
from cds.decisions.model import STATES, STATUSES
from cds.decisions.reasons import Responses, responses_of
from cds.decisions.share import letter_items
from cds.decisions.store import DecisionConflict, DecisionStore
from cds.engine.evaluator import load_engine
from cds.errors import InputError
from cds.vocabulary import FAMILIES, ROLES, SEVERITIES, reasons_for
from cds.worklist import data
from cds.worklist.auth import (
    ROLES as ACCOUNT_ROLES,
)
from cds.worklist.auth import (
    AccountError,
    Accounts,
    LoginThrottled,
    OidcClient,
    OidcError,
    OidcSettings,
    User,
    begin_oidc,
    csrf_token,
    current_user,
    end_session,
    finish_oidc,
    install,
    require_role,
    safe_next,
    start_session,
)
from cds.worklist.dashboard import measures
from cds.worklist.facets import QueueIndex
from cds.worklist.security import SecurityHeaders

log = logging.getLogger("cds.worklist")
HERE = Path(__file__).parent
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


#: Who may see a page (any account), decide (pharmacists, admins), manage accounts (admins).
#: Module level: FastAPI resolves the (string) annotations in the module's namespace.
Viewer = Annotated[User, Depends(current_user)]
Decider = Annotated[User, Depends(require_role("pharmacist", "admin"))]
Admin = Annotated[User, Depends(require_role("admin"))]


@dataclass
class WorklistSettings:
    db: str
    panel: Path
    #: Secure cookies (TLS in front, or served over https)
    secure_cookies: bool = False
    idle_minutes: int = 30
    oidc: OidcSettings | None = None
    oidc_default_role: str = "pharmacist"
    #: packs whose rules' own responses (reasons, snoozes) the decision forms offer
    packs: list[str] | None = None
    pharmacy: str | None = None


@dataclass
class _State:
    settings: WorklistSettings
    store: DecisionStore
    accounts: Accounts
    run: data.Run
    index: QueueIndex
    values: data.PatientValues
    responses: Responses
    oidc: OidcClient | None = None


def create_app(settings: WorklistSettings) -> Any:
    """The ASGI app (security headers outermost)."""
    store = DecisionStore(settings.db)
    accounts = Accounts(store, idle_timeout=timedelta(minutes=settings.idle_minutes))
    run = data.load_run(store, settings.panel)
    state = _State(settings, store, accounts, run, QueueIndex(store, run.run_id, data.MME_BANDS),
                   data.PatientValues(settings.panel / "patients.parquet"),
                   responses_of(load_engine(settings.packs).packs),
                   OidcClient(settings.oidc) if settings.oidc else None)
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["urlencode"] = lambda v: (quote(str(v), safe="") if not isinstance(v, dict)
                                          else "&".join(f"{quote(k)}={quote(str(x))}"
                                                        for k, x in v.items()))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if state.oidc is not None:
                state.oidc.close()
            store.close()

    app = FastAPI(title="cds worklist", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.worklist = state

    def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("user", None)
        flash = request.query_params.get("flash")
        body = env.get_template(template).render(
            request=request, run=state.run, csrf=csrf_token(request), flash=ctx.pop(
                "flash", flash), flash_kind=ctx.pop("flash_kind", request.query_params.get(
                    "kind")), **ctx)
        return HTMLResponse(body, status_code=status)

    def render_error(request: Request, status: int, message: str) -> Response:
        return page(request, "error.html.j2", status, message=message, code=status)

    install(app, accounts, secure_cookies=settings.secure_cookies, render_error=render_error)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "run": state.run.run_id, "as_of": state.run.as_of.isoformat()}

    # -- login ---------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html.j2", next=safe_next(next),
                    oidc=settings.oidc.issuer if settings.oidc else None)

    @app.post("/login")
    def login(request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()],
              next: Annotated[str, Form()] = "/") -> Response:
        try:
            user = accounts.authenticate(name, password,
                                         client=request.client.host if request.client else None)
        except LoginThrottled as e:
            throttled = page(request, "login.html.j2", 429, next=safe_next(next),
                             oidc=settings.oidc.issuer if settings.oidc else None,
                             flash=f"Not checked: {e}.", flash_kind="error")
            throttled.headers["Retry-After"] = str(e.retry_after)
            return throttled
        if user is None:
            return page(request, "login.html.j2", 401, next=safe_next(next),
                        oidc=settings.oidc.issuer if settings.oidc else None,
                        flash="Wrong user name or password.", flash_kind="error")
        start_session(request, user)
        return RedirectResponse(safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        end_session(request)
        return RedirectResponse("/login", status_code=303)

    @app.get("/login/oidc")
    def oidc_start(request: Request, next: str = "/") -> Response:
        if state.oidc is None:
            return render_error(request, 404, "single sign-on is not configured")
        return RedirectResponse(begin_oidc(request, state.oidc, next), status_code=303)

    @app.get("/login/oidc/callback")
    def oidc_callback(request: Request) -> Response:
        if state.oidc is None:
            return render_error(request, 404, "single sign-on is not configured")
        try:
            _, next_url = finish_oidc(request, state.oidc, settings.oidc_default_role)
        except OidcError as e:
            return render_error(request, 401, f"single sign-on refused: {e}")
        return RedirectResponse(next_url, status_code=303)

    # -- the queue -----------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request, user: Viewer, status: str = "", severity: str = "",
              family: str = "", role: str = "", prescriber: str = "", mme: str = "",
              q: str = "", page_: Annotated[int, Query(alias="page", ge=1)] = 1) -> HTMLResponse:
        f = data.Filters(status or None, severity or None, family or None, role or None,
                         prescriber or None, mme or None, q or None)
        only = _own(user)
        result = data.queue(state.store, state.run, state.index, f, page_, only_prescriber=only)
        return page(request, "queue.html.j2", user=user, here="queue", page=result, filters=f,
                    statuses=list(STATUSES), severities=SEVERITIES,
                    families=FAMILIES, roles=ROLES, mme_bands=list(data.MME_BANDS),
                    prescribers=[] if only else state.index.prescribers)

    # -- a patient -----------------------------------------------------------------------
    @app.get("/patients/{patient_id}", response_class=HTMLResponse)
    def patient(request: Request, patient_id: str, user: Viewer) -> HTMLResponse:
        row = data.patient_row(state.store, state.run, patient_id)
        if row is None or not _may_see(user, patient_id):
            return render_error(request, 404, "no such patient in this run")  # type: ignore[return-value]
        accounts.audit(user.name, "view-patient", patient_id)
        alerts = data.patient_alerts(state.store, state.run, patient_id)
        history = state.store.history(patient_id)
        comments = data.comments(state.store, patient_id)
        sources: list[str] = []
        for a in alerts:
            text, _, cited = a["rationale"].partition(" Sources: ")
            a["lead"], a["rest"] = _split_first(text)
            a["source_refs"] = []
            for src in (s.strip() for s in cited.split("; ") if s.strip()):
                if src not in sources:
                    sources.append(src)
                a["source_refs"].append(sources.index(src) + 1)
            a["action_list"] = [x for x in (a["actions"] or "").split("; ") if x]
            a["history"] = [d for d in history if d.alert_key == a["alert_key"]]
            a["version"] = a["history"][-1].version if a["history"] else 0
            a["current_state"] = a["history"][-1].state if a["history"] else "open"
            a["comments"] = [c for c in comments if c["alert_key"] == a["alert_key"]]
            a["reasons"] = reasons_for(a["family"], [(c, d) for c, d, _ in
                                                     state.responses(a["rule"])])
        return page(request, "patient.html.j2", user=user, here="queue", p=row, alerts=alerts,
                    values=state.values.get(patient_id), sources=sources, states=STATES,
                    can_decide=user.role in ("pharmacist", "admin"),
                    can_comment=user.role == "prescriber")

    @app.post("/patients/{patient_id}/decide")
    def decide(request: Request, patient_id: str, user: Decider,
               alert_key: Annotated[str, Form()], state_: Annotated[str, Form(alias="state")],
               decision_version: Annotated[int, Form()] = 0,
               reason: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
               follow_up: Annotated[str, Form()] = "",
               referred_to: Annotated[str, Form()] = "") -> Response:
        row = {"patient_id": patient_id, "alert_key": alert_key, "decision": state_,
               "reason": reason, "note": note, "follow_up": follow_up,
               "referred_to": referred_to, "decision_version": str(decision_version)}
        target = f"/patients/{quote(patient_id, safe='')}"
        try:
            d = import_row(state.store, row, author=user.name, responses=state.responses,
                           check_version=True)
        except DecisionConflict as e:
            return _back(target, str(e), "error")
        except InputError as e:
            return _back(target, f"Not recorded: {e}", "error")
        accounts.audit(user.name, "decide", patient_id, f"{alert_key}: {d.state} (v{d.version})")
        return _back(target, f"Recorded: {d.state} on {alert_key}.")

    @app.post("/patients/{patient_id}/comment")
    def comment(request: Request, patient_id: str, user: Viewer,
                alert_key: Annotated[str, Form()], text: Annotated[str, Form()]) -> Response:
        target = f"/patients/{quote(patient_id, safe='')}"
        if not _may_see(user, patient_id) or not text.strip():
            return _back(target, "Not recorded: empty comment, or not your patient.", "error")
        data.add_comment(state.store, patient_id, alert_key, user.name, text.strip()[:4000])
        accounts.audit(user.name, "comment", patient_id, alert_key)
        return _back(target, "Comment recorded.")

    # -- letters, dashboard, admin ----------------------------------------------------------
    @app.get("/letters", response_class=HTMLResponse)
    def letters_index(request: Request, user: Viewer) -> HTMLResponse:
        docs = _letters(user)
        return page(request, "letters.html.j2", user=user, here="letters", letters=docs)

    @app.get("/letters/{file}", response_class=HTMLResponse)
    def letter(request: Request, file: str, user: Viewer) -> HTMLResponse:
        items = _items(user)
        html = render_letters(items, pharmacy=settings.pharmacy, as_of=date.today()).get(file)
        if html is None or file == "index.html":
            return render_error(request, 404, "no such letter")  # type: ignore[return-value]
        accounts.audit(user.name, "view-letter", None, file)
        return HTMLResponse(html, headers={"Content-Security-Policy": _letter_csp(html)})

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, user: Decider) -> HTMLResponse:
        return page(request, "dashboard.html.j2", user=user, here="dashboard",
                    measures=measures(state.store, state.run, date.today()))

    @app.get("/admin/users", response_class=HTMLResponse)
    def users(request: Request, user: Admin) -> HTMLResponse:
        return page(request, "users.html.j2", user=user, here="users", users=accounts.users(),
                    roles=ACCOUNT_ROLES, audit=accounts.audit_log(200))

    @app.post("/admin/users")
    def add_user(request: Request, user: Admin, name: Annotated[str, Form()],
                 role: Annotated[str, Form()], password: Annotated[str, Form()],
                 display_name: Annotated[str, Form()] = "",
                 prescriber_name: Annotated[str, Form()] = "") -> Response:
        try:
            accounts.add_user(name, role, password, display_name=display_name or None,
                              prescriber_name=prescriber_name or None, by=user.name)
        except AccountError as e:
            return _back("/admin/users", f"Not added: {e}", "error")
        return _back("/admin/users", f"Added {name} ({role}).")

    def _own(user: User) -> str | None:
        """A prescriber sees the patients with an order of theirs, and only those."""
        if user.role != "prescriber":
            return None
        return user.prescriber_name or f"(no prescriber name for {user.name})"

    def _may_see(user: User, patient_id: str) -> bool:
        own = _own(user)
        return own is None or data.is_prescriber_of(state.store, state.run, own, patient_id)

    def _items(user: User) -> list[Any]:
        items = letter_items(state.store)
        own = _own(user)
        return [i for i in items if own is None or i.prescriber == own]

    def _letters(user: User) -> list[tuple[str, str, int]]:
        return letter_index(_items(user))

    app.add_middleware(SecurityHeaders, hsts=settings.secure_cookies)  # outermost
    return app


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def _letter_csp(html: str) -> str:
    """A letter is a standalone document (it is also written to files), its stylesheet inline:
    served, only that stylesheet is allowed (by its hash), and nothing else at all."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in _STYLE.findall(html))
    return (f"default-src 'none'; style-src {hashes or chr(39) + 'none' + chr(39)}; "
            "img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _split_first(text: str) -> tuple[str, str]:
    """The rationale's first sentence (always shown) and the rest (collapsed)."""
    parts = _SENTENCE.split(text.strip(), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else (text.strip(), "")


def _back(target: str, message: str, kind: str = "") -> RedirectResponse:
    q = f"?flash={quote(message[:300])}" + (f"&kind={kind}" if kind else "")
    return RedirectResponse(target + q, status_code=303)


def new_secret() -> str:
    return secrets.token_urlsafe(32)
