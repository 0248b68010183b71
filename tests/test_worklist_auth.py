"""The served worklist's accounts and security (cds.worklist.auth, cds.worklist.security) on real
databases (every test taking `db_url` runs on an SQLite file and on a fresh PostgreSQL
database): argon2id passwords, sessions that idle out and expire, tokens stored only as
hashes, an audit trail the database itself keeps append-only; a small FastAPI app wired as the
worklist wires it (login page, roles, CSRF, cookies, security headers); the bind guard; and
single sign-on against a real OpenID Connect provider on loopback (a Starlette app signing
ID tokens with its own RSA key). No mocks."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse as StarletteJSON
from starlette.responses import RedirectResponse as StarletteRedirect
from starlette.routing import Route

from cds.decisions import schema as t
from cds.decisions.store import MIGRATIONS, DecisionStore, database_url
from cds.errors import CdsError
from cds.worklist.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_CSRF_COOKIE,
    LOGIN_WINDOW,
    MAX_LOGIN_FAILURES,
    SESSION_COOKIE,
    AccountError,
    Accounts,
    LoginThrottled,
    OidcClient,
    OidcError,
    OidcSettings,
    User,
    begin_oidc,
    check_password,
    csrf_matches,
    csrf_token,
    current_user,
    end_session,
    finish_oidc,
    install,
    require_role,
    safe_next,
    start_session,
    token_hash,
)
from cds.worklist.security import (
    CONTENT_SECURITY_POLICY,
    AccessLog,
    BindError,
    SecurityHeaders,
    check_bind,
)

#: argon2id at its smallest sane cost: the tests hash dozens of passwords
FAST = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
PASSWORD = "correct horse battery"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture()
def store(db_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(db_url) as s:
        yield s


@pytest.fixture()
def accounts(store: DecisionStore) -> Accounts:
    return Accounts(store, hasher=FAST)


def table(store: DecisionStore, name: str) -> list[dict[str, Any]]:
    """A table's rows as the database holds them, read apart from Accounts."""
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t.metadata.tables[name]))]


# -- passwords -----------------------------------------------------------------------------------

def test_passwords_are_argon2id_hashes_that_verify(store: DecisionStore) -> None:
    accounts = Accounts(store)  # the production parameters
    alice = accounts.add_user("Alice", "pharmacist", PASSWORD, display_name="Alice Smith")
    assert (alice.name, alice.display_name, alice.role) == ("alice", "Alice Smith", "pharmacist")
    (row,) = table(store, "users")
    assert row["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in row["password_hash"]
    assert accounts.authenticate("ALICE ", PASSWORD) == alice  # names are case-insensitive
    assert accounts.authenticate("alice", PASSWORD + "!") is None


def test_a_hash_with_old_parameters_is_replaced_at_the_next_login(store: DecisionStore) -> None:
    Accounts(store, hasher=FAST).add_user("alice", "pharmacist", PASSWORD)
    old = table(store, "users")[0]["password_hash"]
    stronger = Accounts(store, hasher=PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1))
    assert stronger.authenticate("alice", PASSWORD) is not None
    new = table(store, "users")[0]["password_hash"]
    assert new != old and "t=2" in new
    assert stronger.authenticate("alice", PASSWORD) is not None
    assert table(store, "users")[0]["password_hash"] == new  # up to date: left alone


def test_wrong_password_and_unknown_user_fail_alike_and_are_audited_without_the_password(
        accounts: Accounts, store: DecisionStore) -> None:
    accounts.add_user("alice", "pharmacist", PASSWORD)
    accounts.add_user("sso", "pharmacist")  # single sign-on only: no password works
    accounts.add_user("gone", "pharmacist", PASSWORD)
    accounts.disable("gone")
    tries = [("alice", "wrong password 1"), ("nobody", "wrong password 2"), ("sso", "wrong password 3"),
             ("gone", PASSWORD), ("x", "wrong password 4"), ("alice", "y" * 5000)]
    for name, password in tries:
        assert accounts.authenticate(name, password, client="10.0.0.7") is None
    events = accounts.audit_log()
    assert [(e.user_name, e.action, e.detail) for e in reversed(events)] == [
        ("alice", "login-failed", "wrong password from 10.0.0.7"),
        ("nobody", "login-failed", "unknown user from 10.0.0.7"),
        ("sso", "login-failed", "single sign-on only from 10.0.0.7"),
        ("gone", "login-failed", "account disabled from 10.0.0.7"),
        ("(not a user name)", "login-failed", "unknown user from 10.0.0.7"),
        ("alice", "login-failed", "wrong password from 10.0.0.7"),
    ]
    raw = repr(table(store, "audit_events"))
    assert "wrong password 1" not in raw and PASSWORD not in raw and "yyyy" not in raw
    assert accounts.authenticate("alice", PASSWORD) is not None
    assert accounts.audit_log(limit=1)[0].action == "login"


def test_failed_logins_throttle_the_name_until_they_leave_the_window(accounts: Accounts) -> None:
    """Five failures in 15 minutes: the name's logins are refused without checking the
    password (the right one too) until the oldest failure is 15 minutes old."""
    accounts.add_user("alice", "pharmacist", PASSWORD)
    for i in range(MAX_LOGIN_FAILURES):
        assert accounts.authenticate("alice", f"guess {i}", now=T0 + timedelta(minutes=i)) is None
    with pytest.raises(LoginThrottled) as e:
        accounts.authenticate("alice", PASSWORD, client="10.0.0.7", now=T0 + timedelta(minutes=5))
    assert e.value.retry_after == 10 * 60 and "try again in 10 minutes" in str(e.value)
    assert [(ev.action, ev.detail) for ev in accounts.audit_log(limit=1)] == [
        ("login-throttled", "600 s left from 10.0.0.7")]
    # refused attempts do not extend the refusal; the first failure leaves the window at 08:15
    with pytest.raises(LoginThrottled):
        accounts.authenticate("alice", PASSWORD, now=T0 + LOGIN_WINDOW - timedelta(seconds=1))
    assert accounts.authenticate("alice", PASSWORD, now=T0 + LOGIN_WINDOW) is not None
    # a login starts the count again
    later = T0 + LOGIN_WINDOW + timedelta(seconds=1)
    for _ in range(MAX_LOGIN_FAILURES - 1):
        assert accounts.authenticate("alice", "guess", now=later) is None
    assert accounts.authenticate("alice", PASSWORD, now=later) is not None


def test_an_unknown_name_is_throttled_alike(accounts: Accounts) -> None:
    """Throttling must not tell which names exist."""
    accounts.add_user("alice", "pharmacist", PASSWORD)
    messages = []
    for name in ("alice", "nobody"):
        for _ in range(MAX_LOGIN_FAILURES):
            assert accounts.authenticate(name, "guess", now=T0) is None
        with pytest.raises(LoginThrottled) as e:
            accounts.authenticate(name, "guess", now=T0)
        messages.append((str(e.value), e.value.retry_after))
    assert messages[0] == messages[1]


def test_an_admin_unlocks_a_throttled_name(accounts: Accounts) -> None:
    accounts.add_user("alice", "pharmacist", PASSWORD)
    now = datetime.now(UTC)
    for _ in range(MAX_LOGIN_FAILURES):
        assert accounts.authenticate("alice", "guess", now=now) is None
    with pytest.raises(LoginThrottled):
        accounts.authenticate("alice", PASSWORD)
    accounts.unlock("Alice", by="root")
    assert accounts.authenticate("alice", PASSWORD) is not None
    assert ("alice", "login-unlocked", "by root") in [
        (ev.user_name, ev.action, ev.detail) for ev in accounts.audit_log()]
    with pytest.raises(AccountError, match="no user 'nobody'"):
        accounts.unlock("nobody", by="root")


def test_cds_review_user_unlock(accounts: Accounts, db_url: str) -> None:
    from typer.testing import CliRunner

    from cds.cli import app

    accounts.add_user("alice", "pharmacist", PASSWORD)
    for _ in range(MAX_LOGIN_FAILURES):
        assert accounts.authenticate("alice", "guess") is None
    r = CliRunner().invoke(app, ["review", "user", "unlock", "alice", "--db", db_url])
    assert r.exit_code == 0 and "unlocked alice" in r.stdout, r.output
    assert accounts.authenticate("alice", PASSWORD) is not None
    r = CliRunner().invoke(app, ["review", "user", "unlock", "nobody", "--db", db_url])
    assert r.exit_code != 0 and "no user 'nobody'" in r.output


def test_parallel_guesses_cannot_pass_the_count_together(accounts: Accounts) -> None:
    """Twenty guesses at once: five are checked, the rest refused."""
    accounts.add_user("alice", "pharmacist", PASSWORD)
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def guess(i: int) -> None:
        start.wait()
        try:
            outcomes.append("failed" if accounts.authenticate("alice", f"guess {i}") is None
                            else "in")
        except LoginThrottled:
            outcomes.append("throttled")

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["failed"] * MAX_LOGIN_FAILURES + ["throttled"] * 15


def test_names_roles_and_the_password_policy(accounts: Accounts) -> None:
    for bad in ("a", "al ice", "alice!", "é" * 3, "x" * 65):
        with pytest.raises(AccountError, match="user name"):
            accounts.add_user(bad, "pharmacist", PASSWORD)
    with pytest.raises(AccountError, match="role 'nurse'"):
        accounts.add_user("alice", "nurse", PASSWORD)
    with pytest.raises(AccountError, match="at least 12 characters"):
        accounts.add_user("alice", "pharmacist", "short")
    with pytest.raises(AccountError, match="user name"):
        check_password("Alice.Smith1", "alice.smith1")
    with pytest.raises(AccountError, match="only spaces"):
        check_password(" " * 12)
    with pytest.raises(AccountError, match="prescriber name"):
        accounts.add_user("drsmith", "prescriber", PASSWORD)
    accounts.add_user("alice", "pharmacist", PASSWORD)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_user("ALICE", "admin", PASSWORD)
    smith = accounts.add_user("drsmith", "prescriber", PASSWORD, prescriber_name="Dr J Smith")
    assert smith.prescriber_name == "Dr J Smith"
    assert [u.name for u in accounts.users()] == ["alice", "drsmith"]
    with pytest.raises(AccountError, match="no user 'bob'"):
        accounts.set_password("bob", PASSWORD)
    with pytest.raises(AccountError):
        require_role("nurse")


def test_a_new_password_or_a_disabled_account_ends_every_session(accounts: Accounts) -> None:
    alice = accounts.add_user("alice", "pharmacist", PASSWORD)
    token, _ = accounts.open_session(alice)
    accounts.set_password("alice", "another long password", by="admin")
    assert accounts.session(token) is None
    assert accounts.authenticate("alice", PASSWORD) is None
    assert accounts.authenticate("alice", "another long password") is not None
    token, _ = accounts.open_session(alice)
    accounts.disable("alice", by="admin")
    assert accounts.session(token) is None and accounts.authenticate("alice", "another long password") is None
    assert accounts.users()[0].disabled
    accounts.enable("alice")
    assert accounts.authenticate("alice", "another long password") is not None
    assert [e.action for e in accounts.audit_log() if e.user_name == "admin"] == ["user-disable",
                                                                                  "user-password"]


# -- sessions -------------------------------------------------------------------------------------

def test_a_session_lives_while_used_and_ends_idle_at_its_lifetime_or_when_closed(
        accounts: Accounts) -> None:
    alice = accounts.add_user("alice", "pharmacist", PASSWORD)
    token, csrf = accounts.open_session(alice, now=T0)
    found = accounts.session(token, now=T0 + timedelta(minutes=29))
    assert found is not None and found[0].name == "alice" and found[1] == csrf
    # used at 29 min: the idle clock restarted, so 58 min is 29 idle minutes
    assert accounts.session(token, now=T0 + timedelta(minutes=58)) is not None
    assert accounts.session(token, now=T0 + timedelta(minutes=88)) is None  # 30 idle minutes
    assert accounts.session(token, now=T0 + timedelta(minutes=59)) is None  # and it is gone

    token, _ = accounts.open_session(alice, now=T0)
    at = T0
    while at + timedelta(minutes=20) < T0 + timedelta(hours=12):
        at += timedelta(minutes=20)
        assert accounts.session(token, now=at) is not None
    assert accounts.session(token, now=T0 + timedelta(hours=12)) is None  # absolute lifetime

    token, _ = accounts.open_session(alice, now=T0)
    accounts.close_session(token)
    assert accounts.session(token, now=T0) is None
    assert accounts.session("not-a-token", now=T0) is None
    assert accounts.session(secrets.token_urlsafe(32), now=T0) is None


def test_the_idle_timeout_is_configurable(store: DecisionStore) -> None:
    accounts = Accounts(store, hasher=FAST, idle_timeout=timedelta(minutes=5))
    token, _ = accounts.open_session(accounts.add_user("alice", "pharmacist", PASSWORD), now=T0)
    assert accounts.session(token, now=T0 + timedelta(minutes=4)) is not None
    assert accounts.session(token, now=T0 + timedelta(minutes=9, seconds=1)) is None


def test_tokens_are_stored_only_as_their_hash(accounts: Accounts, store: DecisionStore) -> None:
    alice = accounts.add_user("alice", "pharmacist", PASSWORD)
    token, csrf = accounts.open_session(alice, now=T0)
    (row,) = table(store, "sessions")
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert token not in repr(row) and csrf == row["csrf_secret"]
    assert len(token) >= 43 and token != csrf  # 32 random bytes each
    # expired sessions are swept when another opens
    accounts.open_session(alice, now=T0 + timedelta(hours=13))
    assert len(table(store, "sessions")) == 1


def test_csrf_tokens_are_compared_in_constant_time_and_empty_never_matches() -> None:
    token = secrets.token_urlsafe(32)
    assert csrf_matches(token, token)
    assert not csrf_matches(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not csrf_matches(token, None) and not csrf_matches(None, None)
    assert not csrf_matches("", "") and not csrf_matches(token, "é")


# -- audit ----------------------------------------------------------------------------------------

def test_the_audit_trail_is_append_only_in_the_database(accounts: Accounts, store: DecisionStore) -> None:
    accounts.audit("alice", "view-patient", "p1", now=T0)
    accounts.audit("alice", "decide", "p1", detail="accepted mme-90", now=T0 + timedelta(minutes=1))
    accounts.audit("bob", "view-letter", "p2", now=T0 + timedelta(minutes=2))
    assert [(e.action, e.patient_id) for e in accounts.audit_log()] == [
        ("view-letter", "p2"), ("decide", "p1"), ("view-patient", "p1")]
    assert [e.action for e in accounts.audit_log(patient_id="p1")] == ["decide", "view-patient"]
    assert accounts.audit_log(limit=1)[0].at == T0 + timedelta(minutes=2)
    with pytest.raises(AccountError):
        accounts.audit("alice", "DROP TABLE")
    before = table(store, "audit_events")
    for sql in ("UPDATE audit_events SET user_name = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    assert table(store, "audit_events") == before


def test_the_accounts_migration_goes_up_down_and_up(db_url: str) -> None:
    engine = create_engine(database_url(db_url))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def run(step: Callable[[Config, str], None], revision: str) -> set[str]:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)
        return set(inspect(engine).get_table_names())

    try:
        assert {"users", "sessions", "audit_events"} <= run(command.upgrade, "0002")
        assert not {"users", "sessions", "audit_events"} & run(command.downgrade, "0001")
        assert {"users", "sessions", "audit_events"} <= run(command.upgrade, "0002")
        with engine.begin() as conn, pytest.raises(DBAPIError):
            conn.execute(text("INSERT INTO users (name, display_name, role, created_at, disabled) "
                              "VALUES ('Alice', 'A', 'pharmacist', CURRENT_TIMESTAMP, false)"))
    finally:
        engine.dispose()
    with DecisionStore(db_url) as s:  # the store takes it on to the head
        assert Accounts(s, hasher=FAST).users() == []


# -- the web: a small app wired as the worklist wires it ---------------------------------------------

def make_app(accounts: Accounts, *, secure_cookies: bool = False,
             oidc: OidcClient | None = None) -> FastAPI:
    app = FastAPI()
    install(app, accounts, secure_cookies=secure_cookies)
    app.add_middleware(SecurityHeaders)

    def form(request: Request, action: str) -> str:
        return (f'<form method="post" action="{action}"><input type="hidden" name="{CSRF_FIELD}" '
                f'value="{csrf_token(request)}"></form>')

    @app.get("/login")
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return HTMLResponse(f'{form(request, "/login")}<p>{escape(next)}</p>')

    @app.post("/login")
    def login(request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()],
              next: Annotated[str, Form()] = "/") -> Response:
        user = accounts.authenticate(name, password, client="testclient")
        if user is None:
            return HTMLResponse("wrong name or password", status_code=401)
        start_session(request, user)
        return RedirectResponse(safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        end_session(request)
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(request: Request, user: Annotated[User, Depends(current_user)]) -> HTMLResponse:
        return HTMLResponse(f"<p>{escape(user.display_name)}</p>{form(request, '/logout')}")

    @app.get("/patients/{patient_id}")
    def patient(patient_id: str, user: Annotated[User, Depends(current_user)]) -> HTMLResponse:
        accounts.audit(user.name, "view-patient", patient_id)
        return HTMLResponse("<p>a patient</p>")

    @app.post("/patients/{patient_id}/decide")
    def decide(patient_id: str,
               user: Annotated[User, Depends(require_role("pharmacist", "admin"))]) -> JSONResponse:
        accounts.audit(user.name, "decide", patient_id)
        return JSONResponse({"decided": patient_id})

    @app.get("/admin/users")
    def admin(user: Annotated[User, Depends(require_role("admin"))]) -> HTMLResponse:
        return HTMLResponse("<p>users</p>")

    @app.get("/api/me")
    def me(user: Annotated[User, Depends(current_user)]) -> JSONResponse:
        return JSONResponse({"name": user.name, "role": user.role})

    @app.post("/api/comment")
    def comment(user: Annotated[User, Depends(current_user)]) -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/static/worklist.css")
    def css() -> Response:
        return Response("body { margin: 0 }", media_type="text/css")

    if oidc is not None:
        @app.get("/login/oidc")
        def oidc_start(request: Request, next: str = "/") -> Response:
            return RedirectResponse(begin_oidc(request, oidc, next), status_code=303)

        @app.get("/oidc/callback")
        def oidc_callback(request: Request) -> Response:
            try:
                _, target = finish_oidc(request, oidc, default_role="pharmacist")
            except OidcError as e:
                return HTMLResponse(escape(str(e)), status_code=403)
            return RedirectResponse(target, status_code=303)

    return app


def hidden_csrf(html: str) -> str:
    m = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD, next: str = "/") -> httpx.Response:
    token = hidden_csrf(client.get("/login").text)
    return client.post("/login", data={CSRF_FIELD: token, "name": name, "password": password,
                                       "next": next})


def cookie_header(resp: httpx.Response, name: str) -> str:
    found = [h for h in resp.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert len(found) == 1, resp.headers.get_list("set-cookie")
    return found[0]


@pytest.fixture()
def web(accounts: Accounts) -> TestClient:
    accounts.add_user("alice", "pharmacist", PASSWORD)
    accounts.add_user("drsmith", "prescriber", PASSWORD, prescriber_name="Dr J Smith")
    accounts.add_user("root", "admin", PASSWORD)
    return TestClient(make_app(accounts), follow_redirects=False)


def test_logged_out_pages_redirect_to_login_and_the_api_answers_401(web: TestClient) -> None:
    resp = web.get("/patients/p1?tab=decisions")
    assert resp.status_code == 303
    where = urlsplit(resp.headers["location"])
    assert where.path == "/login"
    assert parse_qs(where.query)["next"] == ["/patients/p1?tab=decisions"]
    resp = web.get("/api/me")
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    web.cookies.set(SESSION_COOKIE, secrets.token_urlsafe(32))  # a dead session's cookie
    resp = web.get("/")
    assert resp.status_code == 303
    assert "Max-Age=0" in cookie_header(resp, SESSION_COOKIE)  # cleared


def test_login_sets_a_session_cookie_and_logout_ends_it(web: TestClient, accounts: Accounts) -> None:
    page = web.get("/login")
    login_cookie = cookie_header(page, LOGIN_CSRF_COOKIE)
    assert hidden_csrf(page.text) in login_cookie  # the double-submit pair
    resp = log_in(web, "alice", next="/patients/p1")
    assert resp.status_code == 303 and resp.headers["location"] == "/patients/p1"
    session = cookie_header(resp, SESSION_COOKIE)
    flags = [f.strip() for f in session.split(";")]
    assert {"HttpOnly", "SameSite=Lax", "Path=/", f"Max-Age={12 * 3600}"} <= set(flags)
    assert "Secure" not in flags  # plain http on loopback
    assert "Max-Age=0" in cookie_header(resp, LOGIN_CSRF_COOKIE)
    assert web.get("/api/me").json() == {"name": "alice", "role": "pharmacist"}
    assert web.get("/patients/p1").status_code == 200
    home = web.get("/")
    resp = web.post("/logout", data={CSRF_FIELD: hidden_csrf(home.text)})
    assert resp.status_code == 303 and "Max-Age=0" in cookie_header(resp, SESSION_COOKIE)
    assert web.get("/api/me").status_code == 401
    assert [e.action for e in reversed(accounts.audit_log())] == ["login", "view-patient", "logout"]


def test_a_wrong_password_is_refused(web: TestClient, accounts: Accounts) -> None:
    resp = log_in(web, "alice", "not the password")
    assert resp.status_code == 401 and SESSION_COOKIE not in resp.headers.get("set-cookie", "")
    assert accounts.audit_log()[0].action == "login-failed"


def test_the_login_form_is_csrf_protected_by_its_double_submit_cookie(
        web: TestClient, accounts: Accounts) -> None:
    form = {"name": "alice", "password": PASSWORD}
    resp = web.post("/login", data=form)  # no token at all
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    token = hidden_csrf(web.get("/login").text)
    elsewhere = TestClient(web.app, follow_redirects=False)  # a forged form: a token, no cookie
    resp = elsewhere.post("/login", data={**form, CSRF_FIELD: token})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    resp = web.post("/login", data={**form, CSRF_FIELD: secrets.token_urlsafe(32)})  # not the pair
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert accounts.audit_log() == []  # refused before any password was tried
    assert web.post("/login", data={**form, CSRF_FIELD: token}).status_code == 303
    assert web.get("/api/me").status_code == 200


def test_a_session_id_in_the_browser_before_login_is_replaced(web: TestClient, accounts: Accounts) -> None:
    log_in(web, "alice")
    before = web.cookies.get(SESSION_COOKIE)
    log_in(web, "alice")
    after = web.cookies.get(SESSION_COOKIE)
    assert before and after and before != after
    assert accounts.session(before) is None


def test_a_state_changing_request_needs_the_session_csrf_token(web: TestClient) -> None:
    log_in(web, "alice")
    token = hidden_csrf(web.get("/").text)
    assert web.post("/patients/p1/decide").status_code == 403
    resp = web.post("/patients/p1/decide", data={CSRF_FIELD: secrets.token_urlsafe(32)})
    assert resp.status_code == 403 and "CSRF" in resp.text
    resp = web.post("/api/comment", json={"text": "x"})
    assert resp.status_code == 403 and resp.json()["error"] == "forbidden"
    assert web.post("/patients/p1/decide", data={CSRF_FIELD: token}).json() == {"decided": "p1"}
    assert web.post("/patients/p1/decide", headers={CSRF_HEADER: token}).status_code == 200
    assert web.post("/api/comment", json={"text": "x"}, headers={CSRF_HEADER: token}).status_code == 200
    resp = web.post("/patients/p1/decide", data={CSRF_FIELD: token},
                    files={"upload": ("w.csv", b"patient_id\np1\n", "text/csv")})
    assert resp.status_code == 200  # multipart: the token is read from the form too
    login_token = hidden_csrf(TestClient(web.app).get("/login").text)
    assert web.post("/patients/p1/decide", data={CSRF_FIELD: login_token}).status_code == 403


def test_a_post_after_the_session_expired_goes_to_the_login_page(
        web: TestClient, accounts: Accounts) -> None:
    log_in(web, "alice")
    token = hidden_csrf(web.get("/").text)
    accounts.close_session(web.cookies[SESSION_COOKIE])
    resp = web.post("/patients/p1/decide", data={CSRF_FIELD: token})
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/"
    assert "Max-Age=0" in cookie_header(resp, SESSION_COOKIE)


def test_roles_are_enforced(web: TestClient) -> None:
    log_in(web, "drsmith")
    token = hidden_csrf(web.get("/").text)
    resp = web.post("/patients/p1/decide", data={CSRF_FIELD: token})
    assert resp.status_code == 403 and "pharmacist or admin" in resp.text
    assert web.get("/admin/users").status_code == 403
    log_in(web, "root")
    assert web.get("/admin/users").status_code == 200
    token = hidden_csrf(web.get("/").text)
    assert web.post("/patients/p1/decide", data={CSRF_FIELD: token}).status_code == 200
    log_in(web, "alice")
    assert web.get("/admin/users").status_code == 403


def test_cookies_are_secure_over_https_or_when_configured(accounts: Accounts) -> None:
    accounts.add_user("alice", "pharmacist", PASSWORD)
    over_https = TestClient(make_app(accounts), base_url="https://testserver", follow_redirects=False)
    page = over_https.get("/login")
    assert "Secure" in cookie_header(page, LOGIN_CSRF_COOKIE).split("; ")
    resp = log_in(over_https, "alice")
    assert {"Secure", "HttpOnly", "SameSite=Lax"} <= set(cookie_header(resp, SESSION_COOKIE).split("; "))
    assert over_https.get("/api/me").status_code == 200
    proxied = TestClient(make_app(accounts, secure_cookies=True), follow_redirects=False)
    assert "Secure" in cookie_header(proxied.get("/login"), LOGIN_CSRF_COOKIE).split("; ")


def test_every_response_carries_the_security_headers(web: TestClient) -> None:
    log_in(web, "alice")
    for path in ("/", "/api/me", "/login"):
        resp = web.get(path)
        assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert resp.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in resp.headers
    css = web.get("/static/worklist.css")
    assert css.headers["x-content-type-options"] == "nosniff" and "cache-control" not in css.headers
    refused = web.post("/patients/p1/decide")  # answered by the auth middleware itself
    assert refused.status_code == 403 and refused.headers["cache-control"] == "no-store"
    redirect = TestClient(web.app, follow_redirects=False).get("/")
    assert redirect.status_code == 303 and redirect.headers["x-frame-options"] == "DENY"
    tls = TestClient(web.app, base_url="https://testserver").get("/login")
    assert tls.headers["strict-transport-security"] == "max-age=31536000"


def test_the_access_log_names_routes_and_users_never_patients(
        accounts: Accounts, caplog: pytest.LogCaptureFixture) -> None:
    accounts.add_user("alice", "pharmacist", PASSWORD)
    app = make_app(accounts)
    app.add_middleware(AccessLog)
    client = TestClient(app, follow_redirects=False)
    log_in(client, "alice")
    with caplog.at_level(logging.INFO, logger="cds.worklist"):
        client.get("/patients/MRN-0042?q=smith")
        client.get("/patients/MRN-0042/nothing-here")
    lines = [r.getMessage() for r in caplog.records if r.name == "cds.worklist"]
    assert lines[0].startswith("GET /patients/{patient_id} -> 200 ") and lines[0].endswith("user=alice")
    assert lines[1].startswith("GET - -> 404 ")
    assert not any("MRN-0042" in line or "smith" in line for line in lines)


def test_safe_next_keeps_login_from_being_an_open_redirect() -> None:
    assert safe_next("/patients/p1?tab=x") == "/patients/p1?tab=x"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil.example", "evil", "",
                None, "/a\r\nSet-Cookie: x=1", "javascript:alert(1)"):
        assert safe_next(bad) == "/"


# -- serving ---------------------------------------------------------------------------------------

def test_check_bind_refuses_a_network_address_without_tls() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        check_bind(host, tls=False, behind_proxy=False)
    for host in ("0.0.0.0", "::", "192.168.1.20", "worklist.example.org"):
        with pytest.raises(BindError) as e:
            check_bind(host, tls=False, behind_proxy=False)
        assert isinstance(e.value, CdsError) and "\n" not in str(e.value) and host in str(e.value)
        check_bind(host, tls=True, behind_proxy=False)
        check_bind(host, tls=False, behind_proxy=True)


# -- OpenID Connect against a provider on loopback --------------------------------------------------

CLIENT_ID = "cds-worklist"
CLIENT_SECRET = "s3cret with spaces/+&="  # form-encoded before Basic (RFC 6749 2.3.1)


@contextmanager
def serve(make: Callable[[str], Starlette]) -> Iterator[str]:
    """An ASGI app (built by make(base_url)) under uvicorn on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make(base), log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Provider:
    """An OpenID Connect provider: discovery, an authorization endpoint that signs the user in
    at once, a token endpoint checking the client's secret and PKCE, and its JWK Set. `mode`
    makes its next ID token wrong in one way."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.base = ""
        self.mode = "good"
        self.subject = "248289761001"
        self.claims: dict[str, Any] = {"preferred_username": "Jane.Doe", "name": "Jane Doe"}
        self.codes: dict[str, dict[str, str]] = {}

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.base, "sub": self.subject, "aud": CLIENT_ID, "exp": now + 300,
                  "iat": now, "nonce": nonce, **self.claims}
        key: Any = self.key
        alg, kid = "RS256", "k1"
        if self.mode == "aud":
            claims["aud"] = "another-client"
        elif self.mode == "nonce":
            claims["nonce"] = "a-nonce-of-another-sign-in"
        elif self.mode == "expired":
            claims["exp"], claims["iat"] = now - 3600, now - 7200
        elif self.mode == "iss":
            claims["iss"] = "https://impostor.example"
        elif self.mode == "badsig":
            key = self.stranger
        elif self.mode == "hs256":
            key, alg = CLIENT_SECRET.encode() * 2, "HS256"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    def app(self, base: str) -> Starlette:
        self.base = base

        async def discovery(_: StarletteRequest) -> StarletteJSON:
            return StarletteJSON({
                "issuer": base, "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"]})

        async def authorize(request: StarletteRequest) -> StarletteRedirect:
            q = request.query_params
            assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
            assert q["code_challenge_method"] == "S256" and "openid" in q["scope"].split()
            code = secrets.token_urlsafe(16)
            self.codes[code] = dict(q)
            return StarletteRedirect(f"{q['redirect_uri']}?code={code}&state={q['state']}",
                                     status_code=302)

        async def token(request: StarletteRequest) -> StarletteJSON:
            scheme, _, creds = request.headers.get("authorization", "").partition(" ")
            pair = base64.b64decode(creds).decode() if scheme == "Basic" else ":"
            client, _, secret = pair.partition(":")
            if (unquote_plus(client), unquote_plus(secret)) != (CLIENT_ID, CLIENT_SECRET):
                return StarletteJSON({"error": "invalid_client"}, status_code=401)
            form = await request.form()
            asked = self.codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if (asked is None or form.get("redirect_uri") != asked["redirect_uri"]
                    or challenge.rstrip(b"=").decode() != asked["code_challenge"]):
                return StarletteJSON({"error": "invalid_grant"}, status_code=400)
            return StarletteJSON({"access_token": "opaque", "token_type": "Bearer",
                                  "expires_in": 300, "id_token": self.id_token(asked["nonce"])})

        async def jwks(_: StarletteRequest) -> StarletteJSON:
            jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return StarletteJSON({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery),
                                 Route("/authorize", authorize), Route("/token", token, methods=["POST"]),
                                 Route("/jwks", jwks)])


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, str]]:
    p = Provider()
    with serve(p.app) as base:
        yield p, base


def oidc_client(base: str, secret: str = CLIENT_SECRET) -> OidcClient:
    return OidcClient(OidcSettings(base, CLIENT_ID, secret, "http://testserver/oidc/callback"))


def sign_in(client: OidcClient, verifier: str | None = None) -> tuple[str, str, str]:
    """The browser's trip to the provider: (code, nonce, PKCE verifier)."""
    state, nonce, verifier = "st-" + secrets.token_urlsafe(8), secrets.token_urlsafe(16), (
        verifier or secrets.token_urlsafe(32))
    resp = httpx.get(client.authorization_url(state, nonce, code_verifier=verifier))
    assert resp.status_code == 302
    back = parse_qs(urlsplit(resp.headers["location"]).query)
    assert back["state"] == [state]
    return back["code"][0], nonce, verifier


@pytest.mark.slow
def test_single_sign_on_round_trip_logs_the_user_in(
        accounts: Accounts, provider: tuple[Provider, str]) -> None:
    p, base = provider
    p.mode = "good"
    oidc = oidc_client(base)
    web = TestClient(make_app(accounts, oidc=oidc), follow_redirects=False)
    resp = web.get("/login/oidc?next=/patients/p1")
    assert resp.status_code == 303 and resp.headers["location"].startswith(f"{base}/authorize?")
    back = httpx.get(resp.headers["location"])
    callback = urlsplit(back.headers["location"])
    resp = web.get(f"{callback.path}?{callback.query}")
    assert resp.status_code == 303 and resp.headers["location"] == "/patients/p1"
    assert web.get("/api/me").json() == {"name": "jane.doe", "role": "pharmacist"}
    (jane,) = accounts.users()
    assert jane.display_name == "Jane Doe"
    assert [(e.user_name, e.action) for e in reversed(accounts.audit_log())] == [
        ("oidc", "user-add"), ("jane.doe", "login")]
    # the same person again: the same account, found by (issuer, subject)
    p.claims = {"preferred_username": "jdoe-renamed", "name": "Jane Doe"}
    try:
        code, nonce, verifier = sign_in(oidc)
        claims = oidc.exchange(code, nonce, verifier)
        assert accounts.user_for_oidc(base, claims["sub"], claims, "pharmacist") == jane
    finally:
        p.claims = {"preferred_username": "Jane.Doe", "name": "Jane Doe"}
    # a callback whose state is not this browser's is refused, and audited
    resp = web.get(f"{callback.path}?code=x&state=forged")
    assert resp.status_code == 403 and "not started here" in resp.text
    assert accounts.audit_log(limit=1)[0].action == "login-failed"
    oidc.close()


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "message"), [
    ("aud", "another client"), ("nonce", "nonce"), ("expired", "expired"), ("iss", "another issuer"),
    ("badsig", "signature does not verify"), ("hs256", "HS256"),
])
def test_single_sign_on_refuses_a_bad_id_token(
        provider: tuple[Provider, str], mode: str, message: str) -> None:
    p, base = provider
    oidc = oidc_client(base)
    p.mode = "good"
    code, nonce, verifier = sign_in(oidc)
    assert oidc.exchange(code, nonce, verifier)["sub"] == p.subject
    p.mode = mode
    try:
        code, nonce, verifier = sign_in(oidc)
        with pytest.raises(OidcError, match=message):
            oidc.exchange(code, nonce, verifier)
    finally:
        p.mode = "good"
        oidc.close()


@pytest.mark.slow
def test_single_sign_on_refuses_a_wrong_secret_a_wrong_verifier_and_another_issuer(
        provider: tuple[Provider, str]) -> None:
    p, base = provider
    p.mode = "good"
    oidc = oidc_client(base)
    code, nonce, _ = sign_in(oidc)
    with pytest.raises(OidcError, match="refused the code .HTTP 400: invalid_grant"):
        oidc.exchange(code, nonce, secrets.token_urlsafe(32))  # PKCE: not this sign-in's verifier
    code, nonce, verifier = sign_in(oidc)
    with pytest.raises(OidcError, match="HTTP 401: invalid_client"):
        oidc_client(base, "not the secret").exchange(code, nonce, verifier)
    with pytest.raises(OidcError, match="another issuer"):
        OidcClient(OidcSettings(base + "/", CLIENT_ID, CLIENT_SECRET, "http://x/cb")).metadata()
    with pytest.raises(OidcError, match="https"):
        OidcClient(OidcSettings("http://idp.example.org", CLIENT_ID, CLIENT_SECRET, "x")).metadata()
    oidc.close()


def test_single_sign_on_accounts_are_found_linked_or_created(accounts: Accounts) -> None:
    iss = "https://idp.example.org"
    accounts.add_user("carol", "admin")  # added by an admin for single sign-on: linked by name
    accounts.add_user("alice", "pharmacist", PASSWORD)  # has a password: never linked by name
    carol = accounts.user_for_oidc(iss, "sub-carol", {"preferred_username": "Carol"}, None)
    assert carol is not None and (carol.name, carol.role) == ("carol", "admin")
    assert accounts.user_for_oidc(iss, "sub-carol", {}, None) == carol
    assert accounts.user_for_oidc(iss, "sub-alice", {"preferred_username": "alice"}, None) is None
    other = accounts.user_for_oidc(iss, "sub-alice", {"preferred_username": "alice"}, "pharmacist")
    assert other is not None and other.name == "alice-2"
    by_mail = accounts.user_for_oidc(iss, "sub-dan", {"email": "Dan.O'Neil@example.org"}, "pharmacist")
    assert by_mail is not None and by_mail.name == "dan.o-neil"
    accounts.link_oidc("alice", "https://other-idp.example.org", "a1", by="root")
    alice = accounts.user_for_oidc("https://other-idp.example.org", "a1", {}, None)
    assert alice is not None and alice.name == "alice"
    with pytest.raises(AccountError, match="already linked"):
        accounts.link_oidc("carol", "https://other-idp.example.org", "a1")
    accounts.disable("carol")
    assert accounts.user_for_oidc(iss, "sub-carol", {}, "admin") is None
    # a prescriber sees the patients of their name: none given, no account
    assert accounts.user_for_oidc(iss, "sub-rx", {"preferred_username": "rx"}, "prescriber") is None
    rx = accounts.user_for_oidc(iss, "sub-rx", {"preferred_username": "rx", "name": "Dr Rx"},
                                "prescriber")
    assert rx is not None and (rx.role, rx.prescriber_name) == ("prescriber", "Dr Rx")
    with pytest.raises(AccountError, match="default role"):
        accounts.user_for_oidc(iss, "sub-x", {}, "nurse")


def test_two_first_logins_of_one_person_at_once_make_one_account(accounts: Accounts) -> None:
    claims = {"preferred_username": "jane", "name": "Jane Doe"}
    barrier = threading.Barrier(4)
    made: list[User | None] = []

    def first_login() -> None:
        barrier.wait()
        made.append(accounts.user_for_oidc("https://idp.example.org", "sub-jane", claims, "pharmacist"))

    threads = [threading.Thread(target=first_login) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({u.id for u in made if u is not None}) == 1 and None not in made
    assert [u.name for u in accounts.users()] == ["jane"]
