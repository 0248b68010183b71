"""Who is calling: the EHR's JWT bearer token, verified as CDS Hooks 2.0 asks.

- asymmetric signatures only (ES384 and RS384 recommended; `none` and HMAC refused),
- keys from the issuer's configured JWK Set (inline, file or URL) or from a `jku` header
  URL on that issuer's allow-list, fetched with httpx and cached,
- `iss` on the allow-list, `aud` = the URL of the endpoint called, `exp` and `iat` present
  and sane, `jti` never seen before (a replay cache held until each token expires).

Errors say what is wrong with the token, never what the request carried.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK

from cds.errors import CdsError
from cds.service.config import ASYMMETRIC_ALGORITHMS, Issuer, Settings


class AuthError(CdsError):
    """401: the request is not from a client this service trusts."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenStore(Protocol):
    def remember_token(self, key: str, expires: float, now: float) -> bool: ...


class ReplayCache:
    """jti values seen, each kept until its token expires; thread-safe, bounded. With a
    `store` (the service's database) a jti is also kept on disk for the token's lifetime, so
    a restart does not reopen the replay window."""

    def __init__(self, max_entries: int = 200_000, store: TokenStore | None = None) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0
        self.max_entries = max_entries
        self.store = store

    def add(self, key: str, expires: float, now: float | None = None) -> bool:
        """Record a jti; False if it was already seen (a replay)."""
        now = time.time() if now is None else now
        with self._lock:
            if now >= self._next_purge or len(self._seen) >= self.max_entries:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
                self._next_purge = now + 30
            if len(self._seen) >= self.max_entries:
                raise AuthError("too many tokens in flight; try again")
            old = self._seen.get(key)
            if old is not None and old > now:
                return False
            if self.store is not None and not self.store.remember_token(key, expires, now):
                return False  # seen before a restart (or by another worker of the service)
            self._seen[key] = expires
            return True

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class _CachedSet:
    keys: dict[str | None, dict[str, Any]]
    fetched: float


@dataclass
class JwksCache:
    """JWK Sets by URL, fetched on first use and again after `ttl` (or on an unknown `kid`,
    at most once a minute per URL, so a stream of bad tokens cannot hammer the EHR)."""

    client_factory: Any
    ttl: float = 3600
    timeout: float = 2.0
    min_refetch: float = 60
    _sets: dict[str, _CachedSet] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def get(self, url: str, kid: str | None) -> dict[str, Any] | None:
        cached = self._sets.get(url)
        if cached is not None:
            age = time.monotonic() - cached.fetched
            found = _pick(cached.keys, kid)
            if age < self.ttl and (found is not None or age < self.min_refetch):
                return found
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            latest = self._sets.get(url)
            if latest is cached:  # nobody refreshed it while this call waited
                latest = _CachedSet(await self._fetch(url), time.monotonic())
                self._sets[url] = latest
        assert latest is not None
        return _pick(latest.keys, kid)

    async def _fetch(self, url: str) -> dict[str | None, dict[str, Any]]:
        try:
            client: httpx.AsyncClient = self.client_factory()
            resp = await client.get(url, timeout=self.timeout,
                                    headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise AuthError(f"cannot fetch the JWK Set ({type(e).__name__})") from None
        if resp.status_code != 200:
            raise AuthError(f"cannot fetch the JWK Set (HTTP {resp.status_code})")
        try:
            return index_jwks(resp.json())
        except (ValueError, TypeError):
            raise AuthError("the JWK Set is not valid JSON") from None


def index_jwks(doc: Any) -> dict[str | None, dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise AuthError("a JWK Set needs a 'keys' array")
    out: dict[str | None, dict[str, Any]] = {}
    for k in doc["keys"]:
        if isinstance(k, dict):
            out[k.get("kid") if isinstance(k.get("kid"), str) else None] = k
    return out


def _pick(keys: dict[str | None, dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


class Verifier:
    def __init__(self, settings: Settings, client_factory: Any,
                 tokens: TokenStore | None = None) -> None:
        self.settings = settings
        self.algorithms = [a for a in settings.algorithms if a in ASYMMETRIC_ALGORITHMS]
        self.issuers: dict[str, Issuer] = {i.iss: i for i in settings.issuers}
        self.static: dict[str, dict[str | None, dict[str, Any]]] = {}
        for issuer in settings.issuers:
            if issuer.jwks is not None:
                self.static[issuer.iss] = index_jwks(issuer.jwks)
            elif issuer.jwks_file is not None:
                self.static[issuer.iss] = index_jwks(
                    json.loads(issuer.jwks_file.read_text(encoding="utf-8")))
        self.jwks = JwksCache(client_factory, ttl=settings.jwks_cache_seconds,
                              timeout=settings.jwks_timeout)
        self.replays = ReplayCache(store=tokens)

    async def verify(self, authorization: str | None, audiences: list[str]) -> dict[str, Any]:
        if not authorization:
            raise AuthError("no Authorization header: a signed JWT bearer token is required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <JWT>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError(f"JWT algorithm {alg!r} is not accepted (asymmetric only: "
                            f"{', '.join(self.algorithms)})")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthError("JWT header typ must be 'JWT'")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("JWT issuer (iss) is not trusted by this service")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        jwk = await self._key(issuer, header, kid)
        if jwk is None:
            raise AuthError("no key of the issuer matches the JWT kid")
        if jwk.get("use") not in (None, "sig") or jwk.get("alg") not in (None, alg):
            raise AuthError("the issuer's key is not for this signature algorithm")
        try:
            key = PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError:
            raise AuthError("the issuer's key does not fit the JWT algorithm") from None
        skew = self.settings.clock_skew_seconds
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg], audience=audiences, issuer=iss, leeway=skew,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("JWT aud is not this service endpoint's URL") from None
        except jwt.MissingRequiredClaimError as e:
            raise AuthError(f"JWT has no {e.claim} claim") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("JWT is not valid yet (iat/nbf in the future)") from None
        except jwt.InvalidSignatureError:
            raise AuthError("JWT signature does not verify") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"JWT rejected ({type(e).__name__})") from None
        now = time.time()
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError("JWT jti must be a non-empty string")
        if not isinstance(iat, int | float) or iat > now + skew:
            raise AuthError("JWT iat is in the future")
        if exp - now > self.settings.max_token_lifetime_seconds + skew:
            raise AuthError("JWT exp is too far in the future (tokens must be short-lived)")
        if not self.replays.add(f"{iss}|{jti}", float(exp) + skew, now):
            raise AuthError("JWT jti was already used (replay)")
        return claims

    async def _key(self, issuer: Issuer, header: dict[str, Any],
                   kid: str | None) -> dict[str, Any] | None:
        jku = header.get("jku")
        if jku is not None:
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthError("JWT jku is not on this issuer's allow-list")
            return await self.jwks.get(jku, kid)
        if issuer.iss in self.static:
            return _pick(self.static[issuer.iss], kid)
        if issuer.jwks_url:
            return await self.jwks.get(issuer.jwks_url, kid)
        raise AuthError("JWT has no jku and the issuer has no configured JWK Set")
