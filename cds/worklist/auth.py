"""Who may use the served worklist, and how a browser proves it: accounts, sessions, CSRF and
(optionally) OpenID Connect single sign-on, kept in the decisions database.

Why it is built this way:

- Passwords are hashed with argon2id (memory-hard: a stolen table is slow to crack); a login
  for a name that does not exist verifies against a dummy hash, so the answer takes as long
  as for a real user and response times do not reveal who has an account.
- The session cookie holds a random token; the database holds only its sha256, so a copy of
  the database (a backup, a replica) cannot be replayed as a login. A session ends after 30
  idle minutes (a pharmacist leaving a workstation) and 12 hours after it began, whatever.
- Every state-changing request (any method but GET, HEAD, OPTIONS) must carry the session's
  CSRF token, in the `csrf_token` form field or the `X-CSRF-Token` header. The check is made
  by `AuthMiddleware` for every route, so a route cannot forget it. Before login there is no
  session, so the login form is protected by a double-submit cookie instead.
- Every login, failed login, logout and account change is written to the append-only
  audit_events table, never with a password, token or clinical value.

The app wires it with `install(app, Accounts(store))`, takes the user from the dependencies
`current_user` or `require_role(...)`, puts `csrf_token(request)` in every form, and calls
`start_session` / `end_session` in its login and logout routes (`begin_oidc` / `finish_oidc`
for single sign-on). Database calls are synchronous: routes that call them are plain `def`
routes, which FastAPI runs in its thread pool.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import anyio
import httpx
import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds.decisions import schema as t
from cds.decisions.store import DecisionStore
from cds.errors import CdsError

ROLES = ("pharmacist", "prescriber", "admin")
#: A user name: lower-case, so "Alice" and "alice" are one account.
NAME_PATTERN = re.compile(r"[a-z0-9._-]{2,64}")
MIN_PASSWORD = 12
#: Longer passwords are refused before hashing (a megabyte "password" is a denial of service).
MAX_PASSWORD = 1024
IDLE_TIMEOUT = timedelta(minutes=30)
SESSION_LIFETIME = timedelta(hours=12)
#: Failed password logins of one user name within LOGIN_WINDOW after which the name's password
#: logins are refused (not even checked) until the oldest of them leaves the window; a login
#: or an unlock (`cds review user unlock`) starts the count again. OWASP Authentication Cheat
#: Sheet, "Account Lockout"; NIST SP 800-63B 5.2.2 (limit failed attempts on one account).
MAX_LOGIN_FAILURES = 5
LOGIN_WINDOW = timedelta(minutes=15)
#: last_seen is written at most this often: an idle clock accurate to 30 s, not a write per request.
REFRESH_EVERY = timedelta(seconds=30)

SESSION_COOKIE = "cds_session"
#: The pre-session CSRF token of the login form (double-submit cookie).
LOGIN_CSRF_COOKIE = "cds_login_csrf"
#: state, nonce, PKCE verifier and next page of a single sign-on in progress (10 minutes).
OIDC_COOKIE = "cds_oidc"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OIDC_LOGIN_SECONDS = 600

_ACTION = re.compile(r"[a-z][a-z-]{1,31}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,128}")
_SCOPE_KEY = "cds.auth"
#: Asymmetric signatures only: an ID token signed with a shared secret (HS256) or unsigned
#: (`none`) could be forged by anyone who knows the client secret, or by anyone at all.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                       "ES256", "ES384", "ES512", "EdDSA")


class AccountError(CdsError):
    """An account cannot be added or changed (a bad name, role or password; a duplicate)."""


class LoginThrottled(AccountError):
    """Too many failed logins of this user name lately: refused without checking the
    password, for `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(f"too many failed logins: try again in {minutes} minute"
                         f"{'s' if minutes > 1 else ''}, or ask an admin to unlock the account")
        self.retry_after = retry_after


class LoginRequired(CdsError):
    """The request needs a logged-in user and has none: a page is redirected to the login
    page (coming back to `next_url`), an API call is answered 401."""

    def __init__(self, next_url: str = "/") -> None:
        super().__init__("log in first")
        self.next_url = next_url


class Forbidden(CdsError):
    """403: the user may not do this (another role), or the request lacks its CSRF token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OidcError(CdsError):
    """Single sign-on failed: the identity provider is unreachable or refused, or its ID token
    does not verify. The message says what is wrong, never the token."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    display_name: str
    role: str
    #: a prescriber's name as orders carry it: their patients are those with an order of theirs
    prescriber_name: str | None = None
    disabled: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    user_name: str
    action: str
    patient_id: str | None
    detail: str | None


# -- accounts ----------------------------------------------------------------------------------

class Accounts:
    """The users, sessions and audit trail in a DecisionStore's database (migration 0002)."""

    def __init__(self, store: DecisionStore, *, idle_timeout: timedelta = IDLE_TIMEOUT,
                 lifetime: timedelta = SESSION_LIFETIME,
                 hasher: PasswordHasher | None = None, max_concurrent_hashes: int = 4,
                 max_login_failures: int = MAX_LOGIN_FAILURES,
                 login_window: timedelta = LOGIN_WINDOW) -> None:
        self.engine = store.engine
        self.max_login_failures = max_login_failures
        self.login_window = login_window
        #: one attempt of a user name at a time (striped locks, bounded memory), so parallel
        #: guesses cannot all pass the count before the first failure is written
        self._name_locks = tuple(threading.Lock() for _ in range(64))
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        #: argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile); a hash made
        #: with other parameters is replaced at the user's next login.
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        self._lock = threading.Lock()
        #: argon2 takes 64 MiB a hash: a burst of logins (or of guesses) runs a few at a time
        #: instead of exhausting the server's memory
        self._hashing = threading.BoundedSemaphore(max_concurrent_hashes)

    # users ----------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str | None = None,
                 display_name: str | None = None, prescriber_name: str | None = None, *,
                 by: str | None = None, now: datetime | None = None) -> User:
        """A new account. Without a password the user can log in only by single sign-on.
        `by` (the admin who added it) is written to the audit trail."""
        key = check_name(name)
        if role not in ROLES:
            raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if role == "prescriber" and not (prescriber_name or "").strip():
            raise AccountError("a prescriber needs the prescriber name their orders carry "
                               "(their patients are those with an order of theirs)")
        if password is not None:
            check_password(password, key)
        row = {"name": key, "display_name": (display_name or "").strip() or key, "role": role,
               "password_hash": self._hash(password) if password is not None else None,
               "prescriber_name": (prescriber_name or "").strip() or None,
               "created_at": _now(now), "disabled": False}
        try:
            with self.engine.begin() as conn:
                user_id = conn.execute(insert(t.users).returning(t.users.c.id), row).scalar_one()
        except IntegrityError:
            raise AccountError(f"user {key!r} already exists") from None
        if by is not None:
            self.audit(by, "user-add", detail=f"{key} as {role}", now=now)
        return _user({**row, "id": user_id})

    def user(self, name: str) -> User | None:
        key = name.strip().lower()
        with self.engine.connect() as conn:
            r = conn.execute(select(t.users).where(t.users.c.name == key)).first()
        return _user(r._mapping) if r is not None else None

    def users(self) -> list[User]:
        """Every account, disabled ones included (an admin page lists them), by name."""
        with self.engine.connect() as conn:
            return [_user(r._mapping) for r in conn.execute(select(t.users).order_by(t.users.c.name))]

    def set_password(self, name: str, password: str, *, by: str | None = None) -> None:
        """A new password; every session of the user ends (a password changed because it
        leaked must not leave the thief logged in)."""
        key = name.strip().lower()
        check_password(password, key)
        with self.engine.begin() as conn:
            user_id = self._id(conn, key)
            conn.execute(update(t.users).where(t.users.c.id == user_id)
                         .values(password_hash=self._hash(password)))
            conn.execute(delete(t.sessions).where(t.sessions.c.user_id == user_id))
        if by is not None:
            self.audit(by, "user-password", detail=key)

    def disable(self, name: str, *, by: str | None = None) -> None:
        """The user can no longer log in, and their sessions end now. Accounts are never
        deleted: the audit trail and decisions name them."""
        key = name.strip().lower()
        with self.engine.begin() as conn:
            user_id = self._id(conn, key)
            conn.execute(update(t.users).where(t.users.c.id == user_id).values(disabled=True))
            conn.execute(delete(t.sessions).where(t.sessions.c.user_id == user_id))
        if by is not None:
            self.audit(by, "user-disable", detail=key)

    def enable(self, name: str, *, by: str | None = None) -> None:
        key = name.strip().lower()
        with self.engine.begin() as conn:
            user_id = self._id(conn, key)
            conn.execute(update(t.users).where(t.users.c.id == user_id).values(disabled=False))
        if by is not None:
            self.audit(by, "user-enable", detail=key)

    def _id(self, conn: Connection, key: str) -> int:
        user_id = conn.execute(select(t.users.c.id).where(t.users.c.name == key)).scalar()
        if user_id is None:
            raise AccountError(f"no user {key!r}")
        return int(user_id)

    # passwords ------------------------------------------------------------------------------
    def authenticate(self, name: str, password: str, *, client: str | None = None,
                     now: datetime | None = None) -> User | None:
        """The user if the password is theirs (and the account enabled), else None. Both
        outcomes are audited (login / login-failed, with the reason but never the password);
        an unknown name costs the same argon2 verification as a known one, and is throttled
        the same way: LoginThrottled after max_login_failures failures in login_window."""
        key = name.strip().lower() if isinstance(name, str) else ""
        if not NAME_PATTERN.fullmatch(key):
            return self._authenticate(key, password, client, now)
        stripe = int.from_bytes(hashlib.blake2s(key.encode()).digest()[:4], "big")
        with self._name_locks[stripe % len(self._name_locks)]:
            wait = self._throttled(key, _now(now))
            if wait is not None:
                self.audit(key, "login-throttled", detail=f"{wait} s left"
                           + (f" from {client}" if client else ""), now=now)
                raise LoginThrottled(wait)
            return self._authenticate(key, password, client, now)

    def _authenticate(self, key: str, password: str, client: str | None,
                      now: datetime | None) -> User | None:
        suffix = f" from {client}" if client else ""
        row = None
        if NAME_PATTERN.fullmatch(key):
            with self.engine.connect() as conn:
                r = conn.execute(select(t.users).where(t.users.c.name == key)).first()
            row = r._mapping if r is not None else None
        stored = row["password_hash"] if row is not None else None
        ok = False
        if isinstance(password, str) and len(password) <= MAX_PASSWORD:
            ok = self._verify(stored or self._dummy_hash(), password) and stored is not None
        who = key if NAME_PATTERN.fullmatch(key) else "(not a user name)"
        if row is None or not ok or row["disabled"]:
            why = ("unknown user" if row is None else
                   "single sign-on only" if stored is None else
                   "wrong password" if not ok else "account disabled")
            self.audit(who, "login-failed", detail=why + suffix, now=now)
            return None
        assert stored is not None
        if self.hasher.check_needs_rehash(stored):
            with self.engine.begin() as conn:  # only if no one changed it in between
                conn.execute(update(t.users).where(t.users.c.id == row["id"],
                                                   t.users.c.password_hash == stored)
                             .values(password_hash=self._hash(password)))
        self.audit(key, "login", detail="password" + suffix, now=now)
        return _user(row)

    def _throttled(self, key: str, at: datetime) -> int | None:
        """Seconds until `key` may try a password again, or None if it may now."""
        a = t.audit_events.c
        with self.engine.connect() as conn:
            since = conn.execute(select(func.max(a.at)).where(
                a.user_name == key, a.action.in_(("login", "login-unlocked")),
                a.at > at - self.login_window)).scalar()
            failed = [_utc(r[0]) for r in conn.execute(
                select(a.at).where(a.user_name == key, a.action == "login-failed",
                                   a.at > (_utc(since) if since is not None
                                           else at - self.login_window))
                .order_by(a.at.desc()).limit(self.max_login_failures))]
        if len(failed) < self.max_login_failures:
            return None
        return max(1, math.ceil((failed[-1] + self.login_window - at).total_seconds()))

    def unlock(self, name: str, *, by: str) -> None:
        """Lift a login throttle now (the user remembered their password, or the failures
        were someone else's): the failed logins before this no longer count."""
        key = name.strip().lower()
        with self.engine.connect() as conn:
            self._id(conn, key)
        self.audit(key, "login-unlocked", detail=f"by {by}")

    def _verify(self, stored: str, password: str) -> bool:
        try:
            with self._hashing:
                return bool(self.hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _hash(self, password: str) -> str:
        with self._hashing:
            return self.hasher.hash(password)

    def _dummy_hash(self) -> str:
        with self._lock:
            if self._dummy is None:
                self._dummy = self._hash(secrets.token_urlsafe(24))
            return self._dummy

    # sessions -------------------------------------------------------------------------------
    def open_session(self, user: User, now: datetime | None = None) -> tuple[str, str]:
        """A new session: (the token for the cookie, the session's CSRF token). Expired
        sessions of anyone are swept out on the way."""
        at = _now(now)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(delete(t.sessions).where(or_(t.sessions.c.expires <= at,
                                                      t.sessions.c.last_seen <= at - self.idle_timeout)))
            conn.execute(insert(t.sessions), {
                "token_hash": token_hash(token), "user_id": user.id, "created_at": at,
                "last_seen": at, "expires": at + self.lifetime, "csrf_secret": csrf})
        return token, csrf

    def session(self, token: str, now: datetime | None = None) -> tuple[User, str] | None:
        """The user of a live session and its CSRF token; None when the token is unknown, the
        session idled out or outlived its lifetime (it is then deleted), or the user is
        disabled. A live session's idle clock restarts."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        at = _now(now)
        key = token_hash(token)
        s = t.sessions.c
        with self.engine.begin() as conn:
            r = conn.execute(select(t.users, s.last_seen, s.expires, s.csrf_secret)
                             .join(t.sessions, t.sessions.c.user_id == t.users.c.id)
                             .where(s.token_hash == key)).first()
            if r is None:
                return None
            m = r._mapping
            last_seen, expires = _utc(m["last_seen"]), _utc(m["expires"])
            if m["disabled"] or at >= expires or at - last_seen >= self.idle_timeout:
                conn.execute(delete(t.sessions).where(s.token_hash == key))
                return None
            if at - last_seen >= REFRESH_EVERY:
                conn.execute(update(t.sessions).where(s.token_hash == key).values(last_seen=at))
            return _user(m), str(m["csrf_secret"])

    def close_session(self, token: str) -> None:
        if isinstance(token, str) and token:
            with self.engine.begin() as conn:
                conn.execute(delete(t.sessions).where(t.sessions.c.token_hash == token_hash(token)))

    # audit ----------------------------------------------------------------------------------
    def audit(self, user_name: str, action: str, patient_id: str | None = None,
              detail: str | None = None, *, now: datetime | None = None) -> None:
        """Append one event. `detail` says what was done in words, never a password, token or
        clinical value; the table refuses updates and deletes."""
        if not _ACTION.fullmatch(action):
            raise AccountError(f"audit action {action!r} must be 2 to 32 of a-z and '-'")
        with self.engine.begin() as conn:
            conn.execute(insert(t.audit_events), {
                "at": _now(now), "user_name": (user_name or "?")[:64], "action": action,
                "patient_id": patient_id[:256] if patient_id else None,
                "detail": detail[:2000] if detail else None})

    def audit_log(self, limit: int = 100, patient_id: str | None = None) -> list[AuditEvent]:
        """The latest events (of one patient, or of all), newest first."""
        a = t.audit_events.c
        q = select(t.audit_events).order_by(a.id.desc()).limit(max(1, limit))
        if patient_id is not None:
            q = q.where(a.patient_id == patient_id)
        with self.engine.connect() as conn:
            return [AuditEvent(r.id, _utc(r.at), r.user_name, r.action, r.patient_id, r.detail)
                    for r in conn.execute(q)]

    # single sign-on -------------------------------------------------------------------------
    def user_for_oidc(self, issuer: str, subject: str, claims: Mapping[str, Any],
                      default_role: str | None, *, now: datetime | None = None) -> User | None:
        """The account of an identity provider's user, found by (issuer, subject) — the only
        stable identity OIDC gives — else linked or created:

        - an account an admin added without a password (single sign-on only) whose name is
          the token's preferred_username (or the local part of its email) is linked to it;
          accounts with a password are never linked by name (that would let whoever controls
          a name at the provider take them over: use `link_oidc`);
        - else, with a `default_role`, a new account is created (None: accounts must be
          added by an admin first).

        None for a disabled account or when no account may be made."""
        if default_role is not None and default_role not in ROLES:
            raise AccountError(f"default role {default_role!r} is not one of {', '.join(ROLES)}")
        if not subject or len(subject) > 256:
            return None
        u = t.users.c
        with self.engine.begin() as conn:
            r = conn.execute(select(t.users).where(u.oidc_issuer == issuer,
                                                   u.oidc_subject == subject)).first()
            if r is not None:
                return None if r.disabled else _user(r._mapping)
            wanted = _oidc_name(claims)
            if wanted is not None:
                linked = conn.execute(
                    update(t.users).where(u.name == wanted, u.password_hash.is_(None),
                                          u.oidc_subject.is_(None), u.disabled.is_(False))
                    .values(oidc_issuer=issuer, oidc_subject=subject)).rowcount
                if linked == 1:
                    r = conn.execute(select(t.users).where(u.name == wanted)).one()
                    conn.execute(insert(t.audit_events), _event(
                        "oidc", "user-link", f"{wanted} to {issuer}", now))
                    return _user(r._mapping)
        prescriber = str(claims.get("name") or "").strip() if default_role == "prescriber" else None
        if default_role is None or prescriber == "":  # a prescriber without a name sees nothing
            return None
        base = wanted or "user"
        display = str(claims.get("name") or base)[:256]
        for _ in range(5):  # a concurrent first login may take the name, or the identity
            taken = {x.name for x in self.users()}
            name = next(n for n in (base if i == 1 else f"{base[:58]}-{i}" for i in range(1, 100_000))
                        if n not in taken)
            row = {"name": name, "display_name": display, "role": default_role,
                   "password_hash": None, "prescriber_name": prescriber, "created_at": _now(now),
                   "disabled": False, "oidc_issuer": issuer, "oidc_subject": subject}
            try:
                with self.engine.begin() as conn:
                    user_id = conn.execute(insert(t.users).returning(u.id), row).scalar_one()
                    conn.execute(insert(t.audit_events), _event(
                        "oidc", "user-add", f"{name} as {default_role} from {issuer}", now))
                return _user({**row, "id": user_id})
            except IntegrityError:
                with self.engine.connect() as conn:
                    r = conn.execute(select(t.users).where(u.oidc_issuer == issuer,
                                                           u.oidc_subject == subject)).first()
                if r is not None:
                    return None if r.disabled else _user(r._mapping)
        raise AccountError(f"cannot create an account for {base!r}: try again")

    def link_oidc(self, name: str, issuer: str, subject: str, *, by: str | None = None) -> None:
        """Let an existing account (with or without a password) log in by single sign-on."""
        key = name.strip().lower()
        try:
            with self.engine.begin() as conn:
                user_id = self._id(conn, key)
                conn.execute(update(t.users).where(t.users.c.id == user_id)
                             .values(oidc_issuer=issuer, oidc_subject=subject))
        except IntegrityError:
            raise AccountError(f"that single sign-on identity is already linked to another "
                               f"user than {key!r}") from None
        if by is not None:
            self.audit(by, "user-link", detail=f"{key} to {issuer}")


def check_name(name: str) -> str:
    """The stored (lower-case) form of a user name, or AccountError."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if not NAME_PATTERN.fullmatch(key):
        raise AccountError(f"user name {name!r}: 2 to 64 characters of a-z, 0-9, '.', '_' and '-'")
    return key


def check_password(password: str, name: str | None = None) -> None:
    """The password policy: 12 characters at least (length beats composition rules, NIST
    SP 800-63B), not the user name, and not absurdly long."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password may have at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise AccountError("a password cannot be only spaces")
    if name is not None and password.strip().lower() == name.strip().lower():
        raise AccountError("a password cannot be the user name")


def token_hash(token: str) -> str:
    """What the sessions table holds of a token: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token with the one expected; a missing or empty
    token never matches (not even another empty one)."""
    if not expected or not given or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def safe_next(value: str | None) -> str:
    """Where to go after login: a path on this site, else "/" (an absolute or
    protocol-relative URL in ?next= would make the login page an open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _now(now: datetime | None) -> datetime:
    return _utc(now) if now is not None else datetime.now(UTC)


def _utc(ts: datetime) -> datetime:
    """The databases hand times back naive (SQLite) or in the session's zone (PostgreSQL)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _user(m: Mapping[Any, Any]) -> User:
    created = m.get("created_at")
    return User(id=int(m["id"]), name=m["name"], display_name=m["display_name"], role=m["role"],
                prescriber_name=m["prescriber_name"], disabled=bool(m["disabled"]),
                created_at=_utc(created) if created is not None else None)


def _event(user_name: str, action: str, detail: str, now: datetime | None) -> dict[str, Any]:
    return {"at": _now(now), "user_name": user_name, "action": action, "patient_id": None,
            "detail": detail}


def _oidc_name(claims: Mapping[str, Any]) -> str | None:
    for claim in ("preferred_username", "email"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            text = value.strip().lower()
            if claim == "email":
                text = text.split("@", 1)[0]
            text = re.sub(r"[^a-z0-9._-]+", "-", text).strip("-")[:64]
            if NAME_PATTERN.fullmatch(text):
                return text
    return None


# -- the web: cookies, dependencies, CSRF -------------------------------------------------------

ErrorRenderer = Callable[[Request, int, str], Response]


@dataclass(frozen=True)
class AuthConfig:
    """How `install` wired the app (kept by AuthMiddleware, read by the dependencies)."""

    accounts: Accounts
    #: Secure cookies even on http (a TLS-terminating proxy in front); https requests always
    secure_cookies: bool = False
    login_path: str = "/login"
    #: paths answered with JSON (401 instead of a redirect to the login page)
    api_prefix: str = "/api/"
    #: path prefixes whose unsafe requests carry no CSRF token (none by default)
    csrf_exempt: tuple[str, ...] = ()
    #: a form body is read (to find its csrf_token) up to this size; larger is 413
    max_form_bytes: int = 32 * 1024 * 1024
    #: the app's own error page for 403 (and the CSRF refusals); None: a plain page
    render_error: ErrorRenderer | None = None


@dataclass
class _RequestAuth:
    """One request's view: its session (loaded once) and the cookies its response sets."""

    config: AuthConfig
    secure: bool
    loaded: bool = False
    user: User | None = None
    csrf: str | None = None
    login_csrf: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        self.cookies[name] = "; ".join(parts)

    def delete_cookie(self, name: str) -> None:
        self.set_cookie(name, "", 0)
        self.cookies[name] += "; expires=Thu, 01 Jan 1970 00:00:00 GMT"


def _web(request: Request) -> _RequestAuth:
    web = request.scope.get(_SCOPE_KEY)
    if not isinstance(web, _RequestAuth):
        raise CdsError("cds.worklist.auth is not installed on this app: call install(app, accounts)")
    return web


def _load(request: Request, web: _RequestAuth) -> None:
    """Resolve the request's session once (the middleware, a dependency or a template may ask
    first); a cookie of a dead session is cleared."""
    if web.loaded:
        return
    token = request.cookies.get(SESSION_COOKIE)
    found = web.config.accounts.session(token) if token else None
    if found is not None:
        web.user, web.csrf = found
    elif token:
        web.delete_cookie(SESSION_COOKIE)
    web.loaded = True


def user_of(scope: Scope) -> str | None:
    """The name of the request's user if its session was loaded (for access logs)."""
    web = scope.get(_SCOPE_KEY)
    return web.user.name if isinstance(web, _RequestAuth) and web.user is not None else None


def current_user(request: Request) -> User:
    """Dependency: the logged-in user, or LoginRequired (a redirect to the login page)."""
    web = _web(request)
    _load(request, web)
    if web.user is None:
        raise LoginRequired(_next_of(request))
    return web.user


def require_role(*roles: str) -> Callable[[User], User]:
    """Dependency factory: the logged-in user if their role is one of `roles`, else 403."""
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise AccountError(f"require_role: roles must be some of {', '.join(ROLES)} "
                           f"(got {', '.join(roles) or 'none'})")

    def dependency(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise Forbidden(f"this page is for the {' or '.join(roles)} role; you are "
                            f"logged in as {user.role}")
        return user

    return dependency


def csrf_token(request: Request) -> str:
    """The CSRF token a form of this page must carry (as the hidden field `csrf_token`): the
    session's, or before login a fresh token also set as a cookie (double submit). For
    templates: `env.globals["csrf_token"] = csrf_token`, then `{{ csrf_token(request) }}`."""
    web = _web(request)
    _load(request, web)
    if web.user is not None and web.csrf:
        return web.csrf
    if web.login_csrf is None:
        have = request.cookies.get(LOGIN_CSRF_COOKIE)
        if have and _TOKEN.fullmatch(have):
            web.login_csrf = have
        else:
            web.login_csrf = secrets.token_urlsafe(32)
            web.set_cookie(LOGIN_CSRF_COOKIE, web.login_csrf,
                           int(web.config.accounts.lifetime.total_seconds()))
    return web.login_csrf


def check_csrf(request: Request, form_value: str | None) -> None:
    """Refuse a state-changing request that does not carry its CSRF token (`form_value`, or
    the X-CSRF-Token header): with a session, the session's token (else Forbidden); without
    one, the login form's double-submit cookie (else LoginRequired: nothing can be done
    without logging in, so the answer is the login page). AuthMiddleware calls this for every
    unsafe request; a route may call it again."""
    given = form_value or request.headers.get(CSRF_HEADER)
    web = _web(request)
    _load(request, web)
    if web.user is not None:
        if not csrf_matches(web.csrf, given):
            raise Forbidden("the request did not carry this session's CSRF token: reload the "
                            "page and try again")
        return
    if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), given):
        raise LoginRequired("/")


def start_session(request: Request, user: User) -> None:
    """Log `user` in: a new session (never one the browser already had: no session
    fixation), its cookie set on this response, the login form's CSRF cookie dropped."""
    web = _web(request)
    accounts = web.config.accounts
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        accounts.close_session(old)
    token, csrf = accounts.open_session(user)
    web.set_cookie(SESSION_COOKIE, token, int(accounts.lifetime.total_seconds()))
    web.delete_cookie(LOGIN_CSRF_COOKIE)
    web.user, web.csrf, web.loaded, web.login_csrf = user, csrf, True, None


def end_session(request: Request) -> None:
    """Log out: the session is deleted (the cookie is worthless from now on, even if copied)
    and its cookie cleared; audited as logout."""
    web = _web(request)
    _load(request, web)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        web.config.accounts.close_session(token)
        web.delete_cookie(SESSION_COOKIE)
    if web.user is not None:
        web.config.accounts.audit(web.user.name, "logout")
    web.user, web.csrf = None, None


def is_api(request: Request, config: AuthConfig) -> bool:
    """An API call (JSON answers) rather than a page (HTML answers, redirects)."""
    if request.url.path.startswith(config.api_prefix):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _next_of(request: Request) -> str:
    if request.method not in ("GET", "HEAD"):
        return "/"  # never come back to a POST endpoint by a GET
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


def _json(status: int, error: str, message: str) -> Response:
    return Response(orjson.dumps({"error": error, "message": message}), status_code=status,
                    media_type="application/json")


def _page(status: int, title: str, message: str) -> Response:
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {escape(title)}"
            f"</title></head><body><h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>")
    return Response(body, status_code=status, media_type="text/html")


def auth_error_response(request: Request, exc: Exception) -> Response:
    """LoginRequired -> 303 to the login page (401 JSON for an API call); Forbidden -> 403.
    `install` registers it as the app's handler of both."""
    config = _web(request).config
    if isinstance(exc, LoginRequired):
        if is_api(request, config):
            return _json(401, "unauthorized", "log in first (the session is missing or has expired)")
        target = f"{config.login_path}?next={quote(safe_next(exc.next_url), safe='/')}"
        return RedirectResponse(target, status_code=303)
    message = exc.message if isinstance(exc, Forbidden) else "forbidden"
    if is_api(request, config):
        return _json(403, "forbidden", message)
    if config.render_error is not None:
        return config.render_error(request, 403, message)
    return _page(403, "Forbidden", message)


async def _auth_error_handler(request: Request, exc: Exception) -> Response:
    return auth_error_response(request, exc)


class AuthMiddleware:
    """Gives each request its auth context, refuses unsafe requests without their CSRF token
    (before any route runs: no route can forget), and writes the cookies the request's
    login, logout or login form asked for on its response."""

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        web = _RequestAuth(self.config, secure=self.config.secure_cookies
                           or scope.get("scheme") == "https")
        scope[_SCOPE_KEY] = web
        request = Request(scope, receive)
        exempt = any(request.url.path.startswith(p) for p in self.config.csrf_exempt)
        if request.method not in SAFE_METHODS and not exempt:
            given = request.headers.get(CSRF_HEADER)
            if given is None and _is_form(request):
                read = await _read_body(receive, self.config.max_form_bytes)
                if read is None:
                    await _json(413, "payload-too-large", "the form is larger than this "
                                "service accepts")(scope, receive, send)
                    return
                try:
                    form = await Request(scope, _replay(read, receive)).form()
                except (HTTPException, MultiPartException):
                    await _json(400, "bad-request", "the form cannot be read")(scope, receive, send)
                    return
                value = form.get(CSRF_FIELD)
                given = value if isinstance(value, str) else None
                await form.close()
                receive = _replay(read, receive)
            try:
                await anyio.to_thread.run_sync(check_csrf, request, given)
            except (LoginRequired, Forbidden) as e:
                await _with_cookies(auth_error_response(request, e), web)(scope, receive, send)
                return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and web.cookies:
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for value in web.cookies.values():
                    headers.append("set-cookie", value)
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _with_cookies(response: Response, web: _RequestAuth) -> Response:
    for value in web.cookies.values():
        response.headers.append("set-cookie", value)
    return response


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("application/x-www-form-urlencoded", "multipart/form-data")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body (None when over `limit`): read so the form can be parsed
    here, then replayed to the app."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def install(app: Starlette, accounts: Accounts, *, secure_cookies: bool = False,
            login_path: str = "/login", api_prefix: str = "/api/",
            csrf_exempt: Iterable[str] = (), max_form_bytes: int = 32 * 1024 * 1024,
            render_error: ErrorRenderer | None = None) -> AuthConfig:
    """Wire accounts into an app: AuthMiddleware, and the handlers that turn LoginRequired
    into the login page (401 for the API) and Forbidden into 403. Call before the app starts;
    add SecurityHeaders after it (outermost), so its answers carry the headers too."""
    config = AuthConfig(accounts, secure_cookies, login_path, api_prefix, tuple(csrf_exempt),
                        max_form_bytes, render_error)
    app.add_middleware(AuthMiddleware, config=config)
    app.add_exception_handler(LoginRequired, _auth_error_handler)
    app.add_exception_handler(Forbidden, _auth_error_handler)
    return config


# -- OpenID Connect ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    #: this app's callback, exactly as registered at the identity provider
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "profile", "email")


class OidcClient:
    """The authorization-code flow with PKCE against one identity provider: its endpoints
    from discovery, the ID token verified with its JWK Set (signature, iss, aud, azp, exp,
    iat, nonce). Synchronous (httpx.Client): call it from a `def` route."""

    def __init__(self, settings: OidcSettings, *, http: httpx.Client | None = None,
                 timeout: float = 10.0, leeway: float = 60.0, cache_seconds: float = 3600.0) -> None:
        self.settings = settings
        self.http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._own_http = http is None
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, dict[str | None, dict[str, Any]]] | None = None

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached), checked: its issuer is exactly the one
        configured, its endpoints are https (or on loopback, for tests and local providers)."""
        with self._lock:
            if self._meta is not None and time.monotonic() - self._meta[0] < self.cache_seconds:
                return self._meta[1]
        issuer = self.settings.issuer
        _check_url(issuer, "the issuer")
        doc = self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", "discovery")
        if doc.get("issuer") != issuer:
            raise OidcError("the discovery document names another issuer than the one configured")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise OidcError(f"the discovery document has no {key}")
            _check_url(doc[key], key)
        with self._lock:
            self._meta = (time.monotonic(), doc)
        return doc

    def authorization_url(self, state: str, nonce: str, code_verifier: str | None = None) -> str:
        """Where to send the browser: the provider's login, coming back to redirect_uri with a
        code and `state`. `nonce` comes back in the ID token; with a `code_verifier` the code
        is bound to this browser's sign-in (PKCE, S256)."""
        endpoint = self.metadata()["authorization_endpoint"]
        s = self.settings
        params = {"response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
                  "scope": " ".join(s.scopes), "state": state, "nonce": nonce}
        if code_verifier is not None:
            params["code_challenge"] = pkce_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def exchange(self, code: str, nonce: str, code_verifier: str | None = None) -> dict[str, Any]:
        """The code for the verified ID token's claims (OidcError if anything is off)."""
        meta = self.metadata()
        s = self.settings
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": s.redirect_uri}
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        headers = {"Accept": "application/json"}
        if "client_secret_basic" in methods:  # RFC 6749 2.3.1: form-encoded, then Basic
            pair = f"{quote_plus(s.client_id, safe='')}:{quote_plus(s.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif "client_secret_post" in methods:
            data |= {"client_id": s.client_id, "client_secret": s.client_secret}
        else:
            raise OidcError("the identity provider supports neither client_secret_basic nor "
                            "client_secret_post")
        try:
            resp = self.http.post(meta["token_endpoint"], data=data, headers=headers)
        except httpx.HTTPError as e:
            raise OidcError(f"cannot reach the identity provider's token endpoint "
                            f"({type(e).__name__})") from None
        body = _json_of(resp)
        if resp.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            said = re.sub(r"[^a-z_]", "", error)[:64] if isinstance(error, str) else ""
            raise OidcError(f"the identity provider refused the code (HTTP {resp.status_code}"
                            + (f": {said}" if said else "") + ")")
        token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise OidcError("the identity provider's token response has no id_token")
        return self.verify_id_token(token, nonce)

    def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("the ID token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ID_TOKEN_ALGORITHMS:
            raise OidcError(f"ID token algorithm {alg!r} is not accepted (asymmetric signatures only)")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        jwk = self._key(kid)
        if jwk is None:
            raise OidcError("no key of the identity provider matches the ID token's kid")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError:
            raise OidcError("the identity provider's key does not fit the ID token's algorithm") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg], audience=s.client_id, issuer=s.issuer,
                leeway=self.leeway, options={"require": ["iss", "sub", "aud", "exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise OidcError("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("the ID token is for another client (aud)") from None
        except jwt.InvalidIssuerError:
            raise OidcError("the ID token is from another issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise OidcError("the ID token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as e:
            raise OidcError(f"the ID token has no {e.claim} claim") from None
        except jwt.ImmatureSignatureError:
            raise OidcError("the ID token is not valid yet (iat/nbf in the future)") from None
        except jwt.PyJWTError as e:
            raise OidcError(f"the ID token is refused ({type(e).__name__})") from None
        aud = claims["aud"]
        azp = claims.get("azp")
        if (isinstance(aud, list) and len(aud) > 1 or azp is not None) and azp != s.client_id:
            raise OidcError("the ID token was issued to another party (azp)")
        if not csrf_matches(nonce, claims.get("nonce")):
            raise OidcError("the ID token's nonce is not this sign-in's (a replayed token?)")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise OidcError("the ID token's sub is not a usable identifier")
        return claims

    def _key(self, kid: str | None) -> dict[str, Any] | None:
        """The signing key by kid; an unknown kid refetches the JWK Set once (the provider
        rotated its keys), at most every 30 seconds."""
        with self._lock:
            cached = self._keys
        age = time.monotonic() - cached[0] if cached is not None else float("inf")
        if cached is not None and age < self.cache_seconds:
            found = _pick(cached[1], kid)
            if found is not None or age < 30:
                return found
        doc = self._get_json(self.metadata()["jwks_uri"], "JWK Set")
        keys = doc.get("keys")
        if not isinstance(keys, list):
            raise OidcError("the identity provider's JWK Set has no keys")
        index = {(k.get("kid") if isinstance(k.get("kid"), str) else None): k
                 for k in keys if isinstance(k, dict) and k.get("use") in (None, "sig")}
        with self._lock:
            self._keys = (time.monotonic(), index)
        return _pick(index, kid)

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            resp = self.http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise OidcError(f"cannot fetch the identity provider's {what} ({type(e).__name__})") from None
        if resp.status_code != 200:
            raise OidcError(f"cannot fetch the identity provider's {what} (HTTP {resp.status_code})")
        doc = _json_of(resp)
        if not isinstance(doc, dict):
            raise OidcError(f"the identity provider's {what} is not a JSON object")
        return doc


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pick(keys: dict[str | None, dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


def _json_of(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _check_url(url: str, what: str) -> None:
    """https only, but for a provider on this machine (a test, a local development IdP)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise OidcError(f"{what} must be an https URL (http only on loopback)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def begin_oidc(request: Request, client: OidcClient, next_url: str = "/") -> str:
    """Start a single sign-on: the provider URL to redirect the browser to (303). The sign-in's
    state, nonce and PKCE verifier wait in a 10-minute cookie, so only this browser can finish
    it. Start it from a link (GET), not a form: CSP form-action would block the redirect."""
    web = _web(request)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    packed = base64.urlsafe_b64encode(orjson.dumps([state, nonce, verifier, safe_next(next_url)]))
    web.set_cookie(OIDC_COOKIE, packed.decode("ascii").rstrip("="), OIDC_LOGIN_SECONDS)
    return client.authorization_url(state, nonce, code_verifier=verifier)


def finish_oidc(request: Request, client: OidcClient,
                default_role: str | None = None) -> tuple[User, str]:
    """The callback: check the state, exchange the code, verify the ID token, find (or link,
    or create: see Accounts.user_for_oidc) the account and start its session. Returns the
    user and the page to go to; OidcError (audited as login-failed) when refused."""
    web = _web(request)
    accounts = web.config.accounts
    web.delete_cookie(OIDC_COOKIE)
    try:
        params = request.query_params
        if params.get("error"):
            said = re.sub(r"[^a-z_]", "", params["error"])[:64]
            raise OidcError(f"the identity provider did not sign you in ({said})")
        try:
            raw = request.cookies.get(OIDC_COOKIE) or ""
            state, nonce, verifier, next_url = orjson.loads(
                base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, TypeError):
            raise OidcError("this sign-in was not started here or took longer than 10 minutes: "
                            "start again") from None
        if not csrf_matches(state, params.get("state")):
            raise OidcError("the sign-in's state does not match: start again")
        iss = params.get("iss")
        if iss is not None and iss != client.settings.issuer:  # RFC 9207: mix-up defence
            raise OidcError("the answer came from another identity provider (iss)")
        code = params.get("code")
        if not code:
            raise OidcError("the identity provider sent no code")
        claims = client.exchange(code, nonce, code_verifier=verifier)
        user = accounts.user_for_oidc(client.settings.issuer, claims["sub"], claims, default_role)
        if user is None:
            raise OidcError("there is no enabled account here for you: ask an administrator")
    except OidcError as e:
        accounts.audit("(single sign-on)", "login-failed", detail=str(e))
        raise
    accounts.audit(user.name, "login", detail=f"single sign-on ({client.settings.issuer})")
    start_session(request, user)
    return user, safe_next(next_url)

