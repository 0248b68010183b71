"""Service configuration: one YAML file, validated once at start-up (and on reload).

Example (docs/cds-hooks.md has the full list):

    base_url: https://cds.example.org      # what EHRs call; the JWT `aud` is checked against it
    packs: [opioid-safety@1.0.0, interactions-core]
    issuers:
      - iss: https://ehr.example.org
        jwks_url: https://ehr.example.org/.well-known/jwks.json
        jku: [https://ehr.example.org/.well-known/jwks.json]
    fhir_timeout: 2.0
    max_body_bytes: 5000000
    feedback_db: /var/lib/cds/feedback.sqlite3
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds.errors import CdsError
from cds.vocabulary import OVERRIDE_REASON_SYSTEM

#: Asymmetric JWS algorithms only: `none` and HMAC (shared-secret) are refused by the spec.
ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
})
DEFAULT_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS384", "PS256",
                      "PS512", "EdDSA")

Indicator = Literal["info", "warning", "critical"]
DEFAULT_INDICATORS: dict[str, Indicator] = {
    "critical": "critical", "high": "warning", "moderate": "warning", "low": "info", "info": "info",
}


#: Environment variable naming the service's store (feedback_db) when the config does not.
FEEDBACK_DB_ENV = "CDS_FEEDBACK_DB"


def is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def default_feedback_db() -> Path | str:
    """$CDS_FEEDBACK_DB, else feedback.sqlite3 in the per-user data directory (platformdirs:
    ~/.local/share/cds, or $XDG_DATA_HOME/cds, on Linux): never the working directory."""
    env = os.environ.get(FEEDBACK_DB_ENV)
    if env:
        return env if is_url(env) else Path(env)
    from platformdirs import user_data_path

    return user_data_path("cds", appauthor=False) / "feedback.sqlite3"


class ConfigError(CdsError):
    """A service configuration that does not load: says which file and which field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Issuer(_Strict):
    """An EHR (or identity provider) whose JWTs this service trusts."""

    iss: str = Field(min_length=1)
    #: Where its JWK Set is published (fetched with httpx, cached).
    jwks_url: str | None = None
    #: Or the JWK Set itself, inline ({"keys": [...]}) or in a file.
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None
    #: `jku` header URLs accepted for this issuer (exact match). Empty: `jku` is refused.
    jku: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_keys(self) -> Issuer:
        if not (self.jwks_url or self.jwks or self.jwks_file or self.jku):
            raise ValueError(f"issuer {self.iss!r} needs jwks_url, jwks, jwks_file or a jku list")
        return self


class Settings(_Strict):
    #: The service's own URL (scheme, host, port, path prefix): JWT `aud` is checked against
    #: `{base_url}/cds-services[/{id}[/feedback]]`. Default: http://{host}:{port}.
    base_url: str | None = None
    #: Rule packs, 'id' (newest installed) or 'id@version' or a folder. None: newest of each.
    packs: list[str] | None = None
    #: Extra folders of installed packs.
    rulesets: list[Path] = Field(default_factory=list)
    backend: Literal["indexed", "durable"] = "indexed"

    #: Accept requests without a JWT. Development only (also `cds serve --allow-unsigned`).
    allow_unsigned: bool = False
    issuers: list[Issuer] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    clock_skew_seconds: float = Field(default=30, ge=0, le=300)
    #: A JWT whose `exp` lies further ahead than this is refused (the spec asks for short ones).
    max_token_lifetime_seconds: float = Field(default=600, gt=0, le=3600)
    jwks_cache_seconds: float = Field(default=3600, ge=0)
    jwks_timeout: float = Field(default=2.0, gt=0)

    #: Time budget for fetching what prefetch did not bring, from the EHR's FHIR server.
    fhir_timeout: float = Field(default=2.0, gt=0, le=60)
    #: fhirServer URL prefixes this service may call (empty: any http(s) URL).
    fhir_servers: list[str] = Field(default_factory=list)
    #: Pages of a FHIR search followed at most (same server only).
    fhir_max_pages: int = Field(default=5, ge=1, le=100)
    dispense_days: int = Field(default=180, ge=1, le=3650)

    max_body_bytes: int = Field(default=5_000_000, ge=1024)
    #: medication records one call may carry (prefetch and drafts); more: 413
    max_medications: int = Field(default=300, ge=1)
    #: The service's own store (issued cards, feedback, JWT ids): an SQLite file or a
    #: postgresql:// URL. Default: feedback.sqlite3 in the per-user data directory
    #: ($CDS_FEEDBACK_DB, else platformdirs: ~/.local/share/cds on Linux), never the
    #: directory the server was started from.
    feedback_db: Path | str = Field(default_factory=lambda: default_feedback_db())
    #: The pharmacists' decisions store (an SQLite file or a postgresql:// URL; default
    #: $CDS_DB, else none): a card whose alert has a standing decision is held back (or shown
    #: as info, `standing_decisions: info`) until the alert changes; an override or a snooze
    #: given as feedback on a card is recorded as a decision.
    decisions_db: str | None = None
    standing_decisions: Literal["hide", "info"] = "hide"
    #: Keep the clinician's free-text override comment (it may hold patient details).
    store_user_comments: bool = True
    #: Bearer secret for /admin/* (or the CDS_ADMIN_TOKEN environment variable).
    admin_token: str | None = None

    #: Browser origins (scheme://host[:port]) allowed to call the service (CORS; a CDS Hooks
    #: client running in the browser needs it). Default: none (no CORS headers at all).
    cors_origins: list[str] = Field(default_factory=list)
    #: Serve the OpenAPI document at /openapi.json and a page about the API at /docs.
    openapi: bool = True
    #: Serve Prometheus metrics at /metrics (no patient data; restrict it at the proxy).
    metrics: bool = True
    #: Log lines as JSON objects, one a line (`json`), or as plain text (`text`).
    log_format: Literal["json", "text"] = "json"

    #: Card `source.url` per pack id; default {base_url}/packs/{pack@version}.
    pack_urls: dict[str, str] = Field(default_factory=dict)
    indicators: dict[str, Indicator] = Field(default_factory=lambda: dict(DEFAULT_INDICATORS))
    override_reason_system: str = OVERRIDE_REASON_SYSTEM
    topic_system: str = "urn:cds:CodeSystem:alert-family"

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"not an accepted asymmetric JWS algorithm: {', '.join(bad)} "
                             f"(use {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}; "
                             "'none' and HMAC are refused)")
        if not v:
            raise ValueError("at least one algorithm is needed")
        return v

    @field_validator("indicators")
    @classmethod
    def _all_severities(cls, v: dict[str, Indicator]) -> dict[str, Indicator]:
        missing = sorted(set(DEFAULT_INDICATORS) - set(v))
        if missing:
            raise ValueError(f"indicators: no indicator for severity {', '.join(missing)}")
        return v

    @field_validator("feedback_db", mode="before")
    @classmethod
    def _db(cls, v: Any) -> Any:
        """A postgresql:// URL stays a string (a Path would fold its '//'); anything else is a
        file path."""
        if isinstance(v, str) and not is_url(v):
            return Path(v)
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for origin in v:
            parts = urlsplit(origin)
            if (parts.scheme not in ("http", "https") or not parts.netloc
                    or parts.path not in ("", "/") or parts.query or parts.fragment):
                raise ValueError(f"{origin!r} is not an origin: give scheme://host[:port], "
                                 "no path ('*' is not accepted: list each origin)")
            out.append(f"{parts.scheme}://{parts.netloc}")
        return out

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        return v.rstrip("/")

    def admin_secret(self) -> str | None:
        return self.admin_token or os.environ.get("CDS_ADMIN_TOKEN") or None

    def feedback_location(self) -> str:
        """feedback_db for people and logs: a URL without its password, or the file."""
        db = str(self.feedback_db)
        if is_url(db):
            parts = urlsplit(db)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            user = f"{parts.username}@" if parts.username else ""
            return f"{parts.scheme}://{user}{host}{port}{parts.path}"
        return db

    def service_base(self, host: str = "127.0.0.1", port: int = 8080) -> str:
        return self.base_url or f"http://{host}:{port}"


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (None: defaults), with keyword overrides on top."""
    data: dict[str, Any] = {}
    source = str(path) if path is not None else "<defaults>"
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{source}: cannot read ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML ({e})") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a mapping of settings")
        data.update(doc)
        base = Path(path).resolve().parent
        for key in ("feedback_db", "decisions_db"):
            if (key in data and isinstance(data[key], str) and "://" not in data[key]
                    and data[key] != ":memory:"
                    and not Path(data[key]).is_absolute()):
                data[key] = str(base / data[key])
        for issuer in data.get("issuers") or []:
            f = issuer.get("jwks_file") if isinstance(issuer, dict) else None
            if isinstance(f, str) and not Path(f).is_absolute():
                issuer["jwks_file"] = str(base / f)
        if isinstance(data.get("rulesets"), list):
            data["rulesets"] = [str(base / p) if isinstance(p, str) and not Path(p).is_absolute()
                                else p for p in data["rulesets"]]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)
        lines = [f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in first]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None
