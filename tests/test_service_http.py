"""The CDS Hooks service end to end: uvicorn on loopback, httpx clients, requests shaped as
the specification shapes them, a local FHIR server for what prefetch leaves out."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cds.service.app import create_app
from cds.service.cards import check_card
from cds.service.config import Settings, load_settings

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "patient-oxycodone-fentanyl.json"
ISS = "https://ehr.example.org"
ISS_JKU = "https://other-ehr.example.org"
ADMIN = "admin-secret-for-tests"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


# -- servers ------------------------------------------------------------------------

@contextmanager
def serve(make_app: Any, port: int = 0) -> Iterator[str]:
    """Run an ASGI app (built by make_app(base_url)) under uvicorn on a loopback port (a free
    one unless given: a restart serves on the port it served on)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(base)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on"))
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


class FakeFhir:
    """A FHIR server with the example patient, plus a JWK Set for `jku` tests."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.resources = [e["resource"] for e in json.loads(EXAMPLE.read_text())["entry"]]
        self.jwks = jwks
        self.delay = 0.0
        self.fail = 0
        self.calls: list[tuple[str, str | None]] = []

    def _bundle(self, rtype: str, where: Any = None) -> dict[str, Any]:
        found = [r for r in self.resources if r["resourceType"] == rtype
                 and (where is None or where(r))]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                "entry": [{"resource": r} for r in found]}

    async def handle(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/fhir/")
        self.calls.append((path, request.headers.get("authorization")))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=self.fail)
        if path.startswith("Patient/"):
            return JSONResponse(next(r for r in self.resources if r["resourceType"] == "Patient"))
        if path == "MedicationRequest":
            return JSONResponse(self._bundle("MedicationRequest",
                                             lambda r: r.get("status") == "active"))
        if path == "MedicationDispense":
            return JSONResponse(self._bundle("MedicationDispense"))
        if path == "Observation":
            codes = request.query_params.get("code", "")
            return JSONResponse(self._bundle("Observation", lambda r: any(
                c["code"] in codes for c in r["code"]["coding"])))
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)

    def app(self, _: str) -> Starlette:
        async def jwks(_: Request) -> Response:
            return JSONResponse(self.jwks)

        return Starlette(routes=[Route("/jwks.json", jwks),
                                 Route("/fhir/{rest:path}", self.handle)])


# -- keys and tokens ----------------------------------------------------------------

def _jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
    d = json.loads(algo.to_jwk(public))
    return {**d, "kid": kid, "use": "sig", "alg": alg}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = ec.generate_private_key(ec.SECP384R1())
    jku_key = ec.generate_private_key(ec.SECP384R1())
    return {"ec": ec_key, "rsa": rsa_key, "other": other, "jku": jku_key,
            "jwks": {"keys": [_jwk(ec_key.public_key(), "ec-1", "ES384"),
                              _jwk(rsa_key.public_key(), "rsa-1", "RS384")]},
            "jku_jwks": {"keys": [_jwk(jku_key.public_key(), "jku-1", "ES384")]}}


def token(keys: dict[str, Any], aud: str, *, alg: str = "ES384", kid: str = "ec-1",
          iss: str = ISS, key: Any = None, headers: dict[str, Any] | None = None,
          **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 120, "iat": now, "jti": uuid.uuid4().hex,
               "tenant": "t1"}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    if key is None:
        key = keys["rsa"] if alg.startswith("RS") else keys["ec"]
    return jwt.encode(payload, key, algorithm=alg,
                      headers={"kid": kid, "typ": "JWT", **(headers or {})})


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fhir(keys: dict[str, Any]) -> Iterator[tuple[str, FakeFhir]]:
    fake = FakeFhir(keys["jku_jwks"])
    with serve(fake.app) as base:
        yield base, fake


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any],
           fhir: tuple[str, FakeFhir]) -> Path:
    folder = tmp_path_factory.mktemp("svc")
    (folder / "jwks.json").write_text(json.dumps(keys["jwks"]))
    path = folder / "cds-service.yaml"
    path.write_text(f"""
issuers:
  - iss: {ISS}
    jwks_file: jwks.json
  - iss: {ISS_JKU}
    jku: ["{fhir[0]}/jwks.json"]
fhir_timeout: 0.5
max_body_bytes: 200000
feedback_db: feedback.sqlite3
admin_token: {ADMIN}
""")
    return path


@pytest.fixture(scope="module")
def service(config: Path) -> Iterator[tuple[str, Any]]:
    holder: dict[str, Any] = {}

    def make(base: str) -> Any:
        port = int(base.rsplit(":", 1)[1])
        app = create_app(load_settings(config), config_path=config, host="127.0.0.1", port=port)
        holder["app"] = app
        return app

    with serve(make) as base:
        yield base, holder["app"].app.state.cds


@pytest.fixture()
def client(service: tuple[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service[0], timeout=10) as c:
        yield c


def auth(keys: dict[str, Any], base: str, path: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(keys, base + path, **kw)}"}


# -- requests -----------------------------------------------------------------------

def _resources() -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(EXAMPLE.read_text())["entry"]]


def _bundle(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}


def full_prefetch() -> dict[str, Any]:
    rs = _resources()
    by = {t: [r for r in rs if r["resourceType"] == t]
          for t in ("Patient", "MedicationRequest", "MedicationDispense", "Observation")}
    obs = {o["code"]["coding"][0]["code"]: o for o in by["Observation"]}
    return {"patient": by["Patient"][0],
            "medications": _bundle([r for r in by["MedicationRequest"]
                                    if r.get("status") == "active"]),
            "dispenses": _bundle(by["MedicationDispense"]) if by["MedicationDispense"] else None,
            "weight": _bundle([obs["29463-7"]]) if "29463-7" in obs else None,
            "creatinine": _bundle([obs["2160-0"]]) if "2160-0" in obs else None,
            "egfr": None, "conditions": None,
            # the guideline rules' records (opioid-safety 2.0.0): this EHR has none
            "procedures": None, "encounters": None, "labs": None, "pdmp": None,
            "careplans": None, "servicerequests": None}


def draft(rid: str = "draft-diazepam", code: str = "197591",
          display: str = "diazepam 5 MG Oral Tablet") -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": code,
                                                      "display": display}]},
            "subject": {"reference": "Patient/oxy-fent-1"},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1,
                                                         "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1,
                                                                     "unit": "tablet"}}]}]}


def hook_request(hook: str = "order-sign", *, prefetch: dict[str, Any] | None = None,
                 drafts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": "oxy-fent-1",
                               "encounterId": "enc-1"}
    if hook != "patient-view":
        ds = [draft()] if drafts is None else drafts
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": d} for d in ds]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d['id']}" for d in ds]
    body = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": full_prefetch() if prefetch is None else prefetch}
    body.update(extra)
    return body


def post_hook(client: httpx.Client, keys: dict[str, Any], base: str, body: dict[str, Any],
              service_id: str | None = None, **kw: Any) -> httpx.Response:
    sid = service_id or body["hook"]
    return client.post(f"/cds-services/{sid}", json=body,
                       headers=auth(keys, base, f"/cds-services/{sid}", **kw))


def assert_cards_valid(cards: list[dict[str, Any]]) -> None:
    for card in cards:
        assert check_card(card) == [], card["summary"]


# -- discovery ----------------------------------------------------------------------

def test_discovery(client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any]) -> None:
    r = client.get("/cds-services", headers=auth(keys, service[0], "/cds-services"))
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json()["services"]}
    assert set(services) == {"order-select", "order-sign", "patient-view"}
    for sid, s in services.items():
        assert s["hook"] == sid and s["title"] and s["description"]
        p = s["prefetch"]
        assert set(p) >= {"patient", "medications", "dispenses", "weight", "creatinine", "egfr"}
        assert p["patient"] == "Patient/{{context.patientId}}"
        assert p["medications"].startswith("MedicationRequest?patient={{context.patientId}}")
        assert "status=active" in p["medications"]
        assert "whenhandedover=ge" in p["dispenses"]
        for kind, code in (("weight", "29463-7"), ("creatinine", "2160-0"), ("egfr", "98979-8")):
            assert p[kind].startswith("Observation?patient={{context.patientId}}")
            assert code in p[kind] and "_count=1" in p[kind] and "_sort=-date" in p[kind]


def test_discovery_needs_a_token(client: httpx.Client) -> None:
    r = client.get("/cds-services")
    assert r.status_code == 401
    assert "JWT" in r.json()["message"]


# -- hooks --------------------------------------------------------------------------

def test_order_sign(client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any]) -> None:
    r = post_hook(client, keys, service[0], hook_request("order-sign"))
    assert r.status_code == 200, r.text
    assert "engine;dur=" in r.headers["server-timing"]
    cards = r.json()["cards"]
    assert cards
    assert_cards_valid(cards)
    # the draft (diazepam with two opioids) comes first, and offers to remove the draft
    first = cards[0]
    assert "benzodiazepine" in first["summary"].lower()
    actions = [a for s in first["suggestions"] for a in s["actions"]]
    assert any(a["type"] == "delete" and a["resourceId"] == "MedicationRequest/draft-diazepam"
               for a in actions)
    assert first["selectionBehavior"] in ("any", "at-most-one")
    # naloxone is offered as a create of a MedicationRequest
    creates = [a for c in cards for s in c.get("suggestions", []) for a in s["actions"]
               if a["type"] == "create"]
    assert creates and creates[0]["resource"]["resourceType"] == "MedicationRequest"
    assert creates[0]["resource"]["subject"] == {"reference": "Patient/oxy-fent-1"}
    assert len({c["uuid"] for c in cards}) == len(cards)


def test_order_select_and_patient_view(client: httpx.Client, keys: dict[str, Any],
                                       service: tuple[str, Any]) -> None:
    r = post_hook(client, keys, service[0], hook_request("order-select"))
    assert r.status_code == 200
    select = r.json()["cards"]
    assert_cards_valid(select)
    assert "benzodiazepine" in select[0]["summary"].lower()
    r = post_hook(client, keys, service[0], hook_request("patient-view"))
    assert r.status_code == 200
    view = r.json()["cards"]
    assert view and not any("draft-diazepam" in json.dumps(c) for c in view)
    assert_cards_valid(view)
    assert len(view) < len(select)


def test_no_alerts_gives_empty_cards(client: httpx.Client, keys: dict[str, Any],
                                     service: tuple[str, Any]) -> None:
    body = hook_request("patient-view", prefetch={
        "patient": full_prefetch()["patient"], "medications": None, "dispenses": None,
        "weight": None, "creatinine": None, "egfr": None})
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_a_draft_also_returned_by_the_search_is_not_doubled(
        client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any]) -> None:
    body = hook_request("order-sign")
    d = draft()
    body["prefetch"]["medications"]["entry"].append({"resource": {**d, "status": "active"}})
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 200
    assert not any("duplicate" in c["summary"].lower() and "diazepam" in c["detail"]
                   for c in r.json()["cards"])


# -- bad requests -------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.update(hook="patient-view"), "hook"),
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b["context"].pop("patientId"), "context.patientId"),
    (lambda b: b.update(context=[]), "context"),
    (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
    (lambda b: b["context"].update(draftOrders={"resourceType": "MedicationRequest"}),
     "context.draftOrders"),
    (lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].pop(
        "medicationCodeableConcept"), "context.draftOrders.entry[0].resource"),
    (lambda b: b.update(prefetch=[1]), "prefetch"),
    (lambda b: b["prefetch"].update(medications="MedicationRequest/1"), "prefetch.medications"),
    (lambda b: b.update(fhirAuthorization="token"), "fhirAuthorization"),
])
def test_bad_requests_name_the_field(client: httpx.Client, keys: dict[str, Any],
                                     service: tuple[str, Any], mutate: Any, field: str) -> None:
    body = hook_request("order-sign")
    mutate(body)
    r = post_hook(client, keys, service[0], body, service_id="order-sign")
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["error"] == "bad-request" and err["message"]
    assert err.get("field") == field


def test_malformed_and_oversized_bodies(client: httpx.Client, keys: dict[str, Any],
                                        service: tuple[str, Any]) -> None:
    base = service[0]
    h = {**auth(keys, base, "/cds-services/order-sign"), "Content-Type": "application/json"}
    r = client.post("/cds-services/order-sign", content=b'{"hook": "order-sign",', headers=h)
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    h = {**auth(keys, base, "/cds-services/order-sign"), "Content-Type": "application/json"}
    r = client.post("/cds-services/order-sign", content=b"[1, 2]", headers=h)
    assert r.status_code == 400 and "object" in r.json()["message"]
    h = auth(keys, base, "/cds-services/order-sign")
    r = client.post("/cds-services/order-sign", content=b"", headers=h)
    assert r.status_code == 400
    big = hook_request("order-sign")
    big["padding"] = "x" * 300_000
    r = post_hook(client, keys, base, big)
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b" " * 10_000

    h = auth(keys, base, "/cds-services/order-sign")
    r = client.post("/cds-services/order-sign", content=chunks(), headers=h)
    assert r.status_code == 413


def test_unknown_service(client: httpx.Client, keys: dict[str, Any],
                         service: tuple[str, Any]) -> None:
    r = post_hook(client, keys, service[0], hook_request("order-sign"), service_id="nope")
    assert r.status_code == 404


# -- prefetch and the FHIR server ---------------------------------------------------

def test_missing_prefetch_without_fhir_server_is_412(client: httpx.Client, keys: dict[str, Any],
                                                     service: tuple[str, Any]) -> None:
    body = hook_request("order-sign")
    del body["prefetch"]["medications"]
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 412
    assert r.json()["keys"] == ["medications"]


def _fetching(fhir_base: str, omit: tuple[str, ...], hook: str = "order-sign") -> dict[str, Any]:
    body = hook_request(hook)
    for k in omit:
        del body["prefetch"][k]
    body["fhirServer"] = f"{fhir_base}/fhir"
    body["fhirAuthorization"] = {"access_token": "fhir-token-123", "token_type": "Bearer",
                                 "expires_in": 300, "scope": "patient/*.read",
                                 "subject": "cds-service"}
    return body


def test_missing_prefetch_is_fetched_with_the_bearer_token(
        client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any],
        fhir: tuple[str, FakeFhir]) -> None:
    fhir_base, fake = fhir
    fake.calls.clear()
    with_prefetch = post_hook(client, keys, service[0], hook_request("order-sign")).json()["cards"]
    body = _fetching(fhir_base, ("patient", "medications", "creatinine", "weight"))
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 200, r.text
    paths = sorted(p.split("?")[0] for p, _ in fake.calls)
    assert paths == ["MedicationRequest", "Observation", "Observation", "Patient/oxy-fent-1"]
    assert all(a == "Bearer fhir-token-123" for _, a in fake.calls)
    fetched = r.json()["cards"]
    assert [c["summary"] for c in fetched] == [c["summary"] for c in with_prefetch]


def test_null_prefetch_is_not_fetched(client: httpx.Client, keys: dict[str, Any],
                                      service: tuple[str, Any], fhir: tuple[str, FakeFhir]) -> None:
    fhir_base, fake = fhir
    fake.calls.clear()
    body = _fetching(fhir_base, ())
    body["prefetch"]["egfr"] = None
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 200
    assert fake.calls == []


def test_slow_fhir_server_answers_in_time_with_a_card(
        client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any],
        fhir: tuple[str, FakeFhir]) -> None:
    fhir_base, fake = fhir
    fake.delay = 3.0
    try:
        t0 = time.monotonic()
        r = post_hook(client, keys, service[0], _fetching(fhir_base, ("egfr", "medications")))
        elapsed = time.monotonic() - t0
    finally:
        fake.delay = 0.0
    assert r.status_code == 200
    assert elapsed < 1.5  # fhir_timeout is 0.5 s
    cards = r.json()["cards"]
    assert_cards_valid(cards)
    last = cards[-1]
    assert "could not check" in last["summary"]
    assert "current medications" in last["detail"] and "eGFR" in last["detail"]
    assert last["indicator"] == "warning"


def test_failing_fhir_server_is_412(client: httpx.Client, keys: dict[str, Any],
                                    service: tuple[str, Any], fhir: tuple[str, FakeFhir]) -> None:
    fhir_base, fake = fhir
    fake.fail = 500
    try:
        r = post_hook(client, keys, service[0], _fetching(fhir_base, ("medications",)))
    finally:
        fake.fail = 0
    assert r.status_code == 412
    assert r.json()["keys"] == ["medications"] and "500" in r.json()["message"]


def test_unreachable_fhir_server_is_412(client: httpx.Client, keys: dict[str, Any],
                                        service: tuple[str, Any]) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    r = post_hook(client, keys, service[0], _fetching(dead, ("patient",)))
    assert r.status_code == 412


def test_unreadable_record_is_left_out_and_named(client: httpx.Client, keys: dict[str, Any],
                                                 service: tuple[str, Any]) -> None:
    body = hook_request("patient-view")
    bad = {"resourceType": "MedicationRequest", "id": "broken", "status": "active",
           "subject": {"reference": "Patient/oxy-fent-1"}}
    body["prefetch"]["medications"]["entry"].append({"resource": bad})
    r = post_hook(client, keys, service[0], body)
    assert r.status_code == 200
    last = r.json()["cards"][-1]
    assert "MedicationRequest/broken" in last["detail"]


# -- security -----------------------------------------------------------------------

def test_rs384_and_es384_are_accepted(client: httpx.Client, keys: dict[str, Any],
                                      service: tuple[str, Any]) -> None:
    for alg, kid in (("ES384", "ec-1"), ("RS384", "rsa-1")):
        r = post_hook(client, keys, service[0], hook_request("patient-view"), alg=alg, kid=kid)
        assert r.status_code == 200, (alg, r.text)


def _b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_bad_tokens_are_refused(client: httpx.Client, keys: dict[str, Any],
                                service: tuple[str, Any]) -> None:
    base = service[0]
    path = "/cds-services/patient-view"
    aud = base + path
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "exp": now + 60, "iat": now, "jti": "j-none"}
    public_pem = keys["rsa"].public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization",
                            fromlist=["Encoding"]).Encoding.PEM,
        format=__import__("cryptography.hazmat.primitives.serialization",
                          fromlist=["PublicFormat"]).PublicFormat.SubjectPublicKeyInfo)
    hs = jwt.encode(claims | {"jti": "j-hs"}, "x" * 32, algorithm="HS256",
                    headers={"kid": "rsa-1"})
    cases = {
        "none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'ec-1'})}.{_b64(claims)}.",
        "hmac": hs,
        "hmac with the public key": _hs_with(public_pem, claims | {"jti": "j-hs2"}),
        "wrong aud": token(keys, base + "/cds-services/order-sign"),
        "expired": token(keys, aud, exp=now - 120, iat=now - 400),
        "untrusted iss": token(keys, aud, iss="https://evil.example.org"),
        "other key": token(keys, aud, key=keys["other"]),
        "unknown kid": token(keys, aud, kid="nope"),
        "no jti": token(keys, aud, jti=None),
        "no exp": token(keys, aud, exp=None),
        "no iat": token(keys, aud, iat=None),
        "exp too far": token(keys, aud, exp=now + 86400),
        "iat in the future": token(keys, aud, iat=now + 3600, exp=now + 3700),
        "jku not allowed": token(keys, aud, headers={"jku": "http://127.0.0.1:1/jwks.json"}),
        "garbage": "not.a.jwt",
    }
    body = hook_request("patient-view")
    for name, tok in cases.items():
        r = client.post(path, json=body, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"] == "unauthorized"
    r = client.post(path, json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    r = client.post(path, json=body)
    assert r.status_code == 401


def _hs_with(secret: bytes, claims: dict[str, Any]) -> str:
    import hashlib
    import hmac as _hmac
    header = _b64({"alg": "HS384", "typ": "JWT", "kid": "rsa-1"})
    payload = _b64(claims)
    sig = _hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha384).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_replayed_jti_is_refused(client: httpx.Client, keys: dict[str, Any],
                                 service: tuple[str, Any]) -> None:
    h = auth(keys, service[0], "/cds-services/patient-view")
    body = hook_request("patient-view")
    assert client.post("/cds-services/patient-view", json=body, headers=h).status_code == 200
    r = client.post("/cds-services/patient-view", json=body, headers=h)
    assert r.status_code == 401 and "replay" in r.json()["message"]


def test_jku_on_the_allow_list(client: httpx.Client, keys: dict[str, Any],
                               service: tuple[str, Any], fhir: tuple[str, FakeFhir]) -> None:
    jku = f"{fhir[0]}/jwks.json"
    r = post_hook(client, keys, service[0], hook_request("patient-view"), iss=ISS_JKU,
                  kid="jku-1", key=keys["jku"], headers={"jku": jku})
    assert r.status_code == 200, r.text
    # the same issuer without jku has no keys; with a key it does not publish: refused
    r = post_hook(client, keys, service[0], hook_request("patient-view"), iss=ISS_JKU,
                  kid="ec-1", headers={"jku": jku})
    assert r.status_code == 401


# -- feedback -----------------------------------------------------------------------

def test_feedback_is_stored(client: httpx.Client, keys: dict[str, Any],
                            service: tuple[str, Any]) -> None:
    base, state = service
    cards = post_hook(client, keys, base, hook_request("order-sign")).json()["cards"]
    with_s = next(c for c in cards if c.get("suggestions"))
    other = next(c for c in cards if c is not with_s)
    fb = {"feedback": [
        {"card": with_s["uuid"], "outcome": "accepted",
         "acceptedSuggestions": [{"id": with_s["suggestions"][0]["uuid"]}],
         "outcomeTimestamp": "2026-11-26T10:00:00Z"},
        {"card": other["uuid"], "outcome": "overridden",
         "overrideReason": {"reason": other["overrideReasons"][0],
                            "userComment": "discussed with patient"},
         "outcomeTimestamp": "2026-11-26T10:01:00Z"},
        {"card": other["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:02:00Z"},
    ]}
    path = "/cds-services/order-sign/feedback"
    before = state.feedback.count("feedback")
    r = client.post(path, json=fb, headers=auth(keys, base, path))
    assert r.status_code == 200 and r.json() == {"stored": 3, "already_stored": 0}
    assert state.feedback.count("feedback") == before + 3
    # an EHR retrying the call (a lost answer) posts the same outcomes: stored once
    r = client.post(path, json=fb, headers=auth(keys, base, path))
    assert r.status_code == 200 and r.json() == {"stored": 0, "already_stored": 3}
    assert state.feedback.count("feedback") == before + 3
    r = client.get("/admin/feedback/report", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    rows = {row["rule"]: row for row in r.json()["rules"]}
    assert rows, r.json()
    assert sum(row["accepted"] for row in rows.values()) >= 1
    assert sum(row["overridden"] for row in rows.values()) >= 2
    assert client.get("/admin/feedback/report").status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({}, "feedback"),
    ({"feedback": [{"outcome": "accepted"}]}, "feedback[0].card"),
    ({"feedback": [{"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
     "feedback[0].outcome"),
    ({"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
     "feedback[0].acceptedSuggestions"),
    ({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
     "feedback[0].outcomeTimestamp"),
])
def test_bad_feedback_is_400(client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any],
                             body: dict[str, Any], field: str) -> None:
    path = "/cds-services/order-sign/feedback"
    r = client.post(path, json=body, headers=auth(keys, service[0], path))
    assert r.status_code == 400 and r.json()["field"] == field


def test_feedback_timestamp_off_the_calendar_is_400(client: httpx.Client, keys: dict[str, Any],
                                                    service: tuple[str, Any]) -> None:
    path = "/cds-services/order-sign/feedback"
    for ts in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"):
        body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": ts,
                              "overrideReason": {"userComment": "x"}}]}
        r = client.post(path, json=body, headers=auth(keys, service[0], path))
        assert r.status_code == 400, r.text
        assert r.json()["field"] == "feedback[0].outcomeTimestamp"


def test_a_store_failure_is_a_json_500_with_an_incident(tmp_path: Path) -> None:
    """A fault below the service (its database gone) is the service's JSON error with an
    incident id, never Starlette's plain-text 500."""
    settings = Settings(feedback_db=tmp_path / "f.sqlite3")
    app = create_app(settings, allow_unsigned=True)
    with serve(lambda base: app) as base, httpx.Client(base_url=base, timeout=10) as c:
        app.app.state.cds.feedback._db.close()  # the store's connection fails from now on
        body = {"feedback": [{"card": "c", "outcome": "overridden", "overrideReason":
                              {"userComment": "x"}, "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
        r = c.post("/cds-services/order-sign/feedback", json=body)
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "internal-error" and len(r.json()["incident"]) == 12


def test_a_jti_stays_used_across_a_restart(config: Path, keys: dict[str, Any]) -> None:
    """Replay protection is kept in the service's store for the token's lifetime: a token
    used before a restart is refused after it (same port, same store)."""
    body = hook_request("patient-view")
    port = 0
    used: str | None = None
    for _restart in range(2):
        def make(base: str) -> Any:
            return create_app(load_settings(config), config_path=config,
                              port=int(base.rsplit(":", 1)[1]))

        with serve(make, port) as base, httpx.Client(base_url=base, timeout=10) as c:
            port = int(base.rsplit(":", 1)[1])
            used = used or token(keys, base + "/cds-services/patient-view")
            r = c.post("/cds-services/patient-view", json=body,
                       headers={"Authorization": f"Bearer {used}"})
            if _restart == 0:
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 401 and "replay" in r.json()["message"], r.text


# -- robustness ---------------------------------------------------------------------

def test_concurrent_calls(service: tuple[str, Any], keys: dict[str, Any]) -> None:
    base = service[0]

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=20) as c:
            async def one(i: int) -> httpx.Response:
                hook = ("order-sign", "order-select", "patient-view")[i % 3]
                body = hook_request(hook)
                return await c.post(f"/cds-services/{hook}", json=body,
                                    headers=auth(keys, base, f"/cds-services/{hook}"))
            return await asyncio.gather(*(one(i) for i in range(60)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 60
    by_hook: dict[int, set[str]] = {}
    for i, r in enumerate(responses):
        by_hook.setdefault(i % 3, set()).add(json.dumps([c["summary"] for c in r.json()["cards"]]))
    assert all(len(v) == 1 for v in by_hook.values())  # same patient, same answer


def test_engine_fault_does_not_take_the_service_down(
        client: httpx.Client, keys: dict[str, Any], service: tuple[str, Any]) -> None:
    base, state = service
    real = state.holder.get()

    class Faulty:
        pack_refs = real.engine.pack_refs

        def evaluate(self, patient: Any, **kw: Any) -> Any:
            if patient.id == "oxy-fent-1":
                raise ZeroDivisionError("boom with patient data 1950-03-14")
            return real.engine.evaluate(patient, **kw)

    state.holder.swap(replace(real, engine=Faulty()))
    try:
        r = post_hook(client, keys, base, hook_request("order-sign"))
        assert r.status_code == 500
        assert r.json()["error"] == "engine-fault" and r.json()["incident"]
        other = hook_request("patient-view", prefetch={
            "patient": {"resourceType": "Patient", "id": "p2"}, "medications": None,
            "dispenses": None, "weight": None, "creatinine": None, "egfr": None})
        other["context"]["patientId"] = "p2"
        assert post_hook(client, keys, base, other).status_code == 200
    finally:
        state.holder.swap(real)
    assert post_hook(client, keys, base, hook_request("order-sign")).status_code == 200


def test_logs_carry_no_patient_data(client: httpx.Client, keys: dict[str, Any],
                                    service: tuple[str, Any],
                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        post_hook(client, keys, service[0], hook_request("order-sign"))
        body = hook_request("order-sign")
        body["context"].pop("patientId")
        post_hook(client, keys, service[0], body)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "hook order-sign" in text
    for secret in ("oxy-fent-1", "1950-03-14", "diazepam", "oxycodone", "fentanyl",
                   "alprazolam", "Practitioner/example"):
        assert secret not in text


def test_reload_swaps_packs_without_dropping_calls(
        service: tuple[str, Any], keys: dict[str, Any], config: Path) -> None:
    base, state = service
    original = config.read_text()
    config.write_text(original + "packs: [opioid-safety]\n")
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set():
                r = post_hook(c, keys, base, hook_request("order-sign"))
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.post("/admin/reload").status_code == 401
            r = c.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200, r.text
            # the chosen pack, and the built-in one that says what could not be checked
            assert r.json()["packs"] == ["opioid-safety@2.0.2", "data-quality@1.0.0"]
            cards = post_hook(c, keys, base, hook_request("order-sign")).json()["cards"]
            assert {card["source"]["label"] for card in cards} == {"opioid-safety@2.0.2"}
            config.write_text(original + "packs: [no-such-pack]\n")
            r = c.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 422 and r.json()["error"] == "pack-error"
            assert c.get("/healthz").json()["packs"] == ["opioid-safety@2.0.2",
                                                         "data-quality@1.0.0"]
            config.write_text(original)
            r = c.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200 and len(r.json()["packs"]) >= 4
    finally:
        stop.set()
        for t in threads:
            t.join()
        config.write_text(original)
    assert errors == []


def test_unsigned_only_when_allowed(tmp_path: Path) -> None:
    settings = load_settings(None, feedback_db=str(tmp_path / "fb.sqlite3"))

    def make(unsigned: bool) -> Any:
        return lambda base: create_app(settings, allow_unsigned=unsigned,
                                       port=int(base.rsplit(":", 1)[1]))

    body = hook_request("patient-view")
    with serve(make(True)) as base:
        r = httpx.post(f"{base}/cds-services/patient-view", json=body)
        assert r.status_code == 200 and r.json()["cards"]
    with serve(make(False)) as base:
        r = httpx.post(f"{base}/cds-services/patient-view", json=body)
        assert r.status_code == 401
