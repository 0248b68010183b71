"""What an EHR integrator meets (#16): the shipped example config and hook requests, CORS,
the OpenAPI document, JSON 404/405, the admin token, the default store location, JSON logs
without patient data, Prometheus metrics, the store on PostgreSQL, a served instance (one
and several workers) and the container image."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from cds.service.app import create_app
from cds.service.cards import check_card
from cds.service.config import ConfigError, Settings, load_settings
from cds.service.discovery import SERVICES
from cds.service.feedback import FeedbackStore, IssuedCard, parse_feedback
from cds.service.observe import JsonFormatter
from cds.service.state import Snapshot, build_snapshot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HOOKS = sorted((EXAMPLES / "hooks").glob("*.json"))
CONFIG = EXAMPLES / "service.yaml"
ADMIN = "integrator-admin-token"
#: What the example patient's requests hold that no log line may: ids, birth date, drugs,
#: prescriber.
PATIENT_DATA = ("oxy-fent-1", "1950-03-14", "oxycodone", "fentanyl", "alprazolam", "gabapentin",
                "tramadol", "Dr. Lee", "dr-lee", "enc-1")


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return build_snapshot(None, [], "indexed")


def make_client(tmp_path: Path, snapshot: Snapshot, client: tuple[str, int] = ("testclient", 1),
                **overrides: Any) -> TestClient:
    settings = load_settings(None, feedback_db=str(tmp_path / "fb.sqlite3"), **overrides)
    app = create_app(settings, allow_unsigned=True, snapshot=snapshot)
    return TestClient(app, client=client)


def hook_body(name: str) -> bytes:
    return (EXAMPLES / "hooks" / f"{name}.json").read_bytes()


def post(client: Any, name: str, **headers: str) -> httpx.Response:
    return client.post(f"/cds-services/{name}", content=hook_body(name),
                       headers={"Content-Type": "application/json", **headers})


# -- the examples ---------------------------------------------------------------------------

def test_one_example_request_per_service() -> None:
    assert {p.stem for p in HOOKS} == set(SERVICES)
    for path in HOOKS:
        body = json.loads(path.read_text())
        assert body["hook"] == path.stem
        assert body["context"]["patientId"] == "oxy-fent-1"
        assert set(body["prefetch"]) >= {"patient", "medications", "dispenses", "weight",
                                         "creatinine"}
        assert ("draftOrders" in body["context"]) == SERVICES[path.stem].drafts


def test_example_config_loads_and_comments_every_key() -> None:
    settings = load_settings(CONFIG)
    assert settings.cors_origins == [] and settings.openapi and settings.metrics
    text = CONFIG.read_text()
    for name in Settings.model_fields:  # each key is in the file, set or commented out
        assert re.search(rf"^#? ?{name}:", text, re.M), f"{name} is not in {CONFIG.name}"
    lines = text.splitlines()
    for i, line in enumerate(lines):  # every key set has a comment above it
        if re.match(r"^[a-z_]+:", line):
            above = [x for x in lines[:i] if x.strip()][-1]
            assert above.startswith("#"), f"{line!r} has no comment"
    doc = yaml.safe_load(text)
    assert set(doc) <= set(Settings.model_fields)


def test_every_example_hook_gives_valid_cards(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c:
        for path in HOOKS:
            r = post(c, path.stem)
            assert r.status_code == 200, r.text
            cards = r.json()["cards"]
            assert cards
            for card in cards:
                assert check_card(card) == [], card
            if path.stem != "patient-view":  # the draft (tramadol) is checked
                assert any("tramadol" in card["summary"] for card in cards)


# -- CORS -----------------------------------------------------------------------------------

def test_cors_only_for_listed_origins(tmp_path: Path, snapshot: Snapshot) -> None:
    allowed = "https://ehr-app.example.org"
    with make_client(tmp_path, snapshot, cors_origins=[allowed]) as c:
        r = post(c, "patient-view", Origin=allowed)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == allowed
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        pre = c.options("/cds-services/order-sign", headers={
            "Origin": allowed, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == allowed
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        other = post(c, "patient-view", Origin="https://evil.example.com")
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
        pre = c.options("/cds-services/order-sign", headers={
            "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in pre.headers


def test_no_cors_by_default(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c:
        r = post(c, "patient-view", Origin="https://ehr-app.example.org")
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_origins_must_be_origins() -> None:
    for bad in ("*", "ehr.example.org", "https://ehr.example.org/app", "ftp://x.org"):
        with pytest.raises(ConfigError, match="not an origin"):
            load_settings(None, cors_origins=[bad])
    assert load_settings(None, cors_origins=["https://a.org:8443/"]).cors_origins == [
        "https://a.org:8443"]


# -- errors, OpenAPI ------------------------------------------------------------------------

def test_404_and_405_are_the_services_json_errors(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c:
        r = c.get("/no/such/thing")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "not-found" and set(r.json()) == {"error", "message"}
        assert "/no/such" not in r.text
        r = c.delete("/healthz")
        assert r.status_code == 405 and r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "method-not-allowed" and "GET" in r.json()["message"]
        assert r.headers["allow"] == "GET"
        r = c.get("/cds-services/order-sign")  # the hook is POST only
        assert r.status_code == 405 and r.json()["error"] == "method-not-allowed"
        r = c.post("/cds-services/no-such-service", json={})  # the existing shape, unchanged
        assert r.status_code == 404 and r.json()["error"] == "not-found"


def test_openapi_and_docs_page(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c:
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        for path in ("/cds-services", "/cds-services/{service_id}",
                     "/cds-services/{service_id}/feedback", "/admin/reload", "/healthz",
                     "/metrics"):
            assert path in spec["paths"], path
        hook = spec["paths"]["/cds-services/{service_id}"]["post"]
        assert "hookInstance" in json.dumps(hook["requestBody"])
        page = c.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/cds-services/{service_id}" in page.text and "<script" not in page.text
    with make_client(tmp_path / "off", snapshot, openapi=False, metrics=False) as c:
        for path in ("/openapi.json", "/docs", "/metrics"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["error"] == "not-found", path


# -- admin ----------------------------------------------------------------------------------

def test_admin_needs_a_token_even_unsigned(tmp_path: Path, snapshot: Snapshot,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--allow-unsigned opens the hooks, never /admin: not even from loopback."""
    monkeypatch.delenv("CDS_ADMIN_TOKEN", raising=False)
    loopback = ("127.0.0.1", 40000)
    with make_client(tmp_path, snapshot, client=loopback) as c:
        assert post(c, "patient-view").status_code == 200  # unsigned hooks work
        for method, path in (("POST", "/admin/reload"), ("GET", "/admin/feedback/report")):
            r = c.request(method, path)
            assert r.status_code == 403 and r.json()["error"] == "forbidden", path
            assert "admin_token" in r.json()["message"]
    with make_client(tmp_path / "t", snapshot, client=loopback, admin_token=ADMIN) as c:
        assert c.get("/admin/feedback/report").status_code == 401
        r = c.get("/admin/feedback/report", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = c.get("/admin/feedback/report", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200 and "rules" in r.json()
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200 and r.json()["generation"] == 2


# -- the store's place ------------------------------------------------------------------------

def test_feedback_db_defaults_to_the_user_data_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: Snapshot) -> None:
    data = tmp_path / "xdg-data"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.delenv("CDS_FEEDBACK_DB", raising=False)
    monkeypatch.chdir(work)
    settings = load_settings(None)
    assert settings.feedback_db == data / "cds" / "feedback.sqlite3"
    assert load_settings(CONFIG).feedback_db == data / "cds" / "feedback.sqlite3"
    app = create_app(settings, allow_unsigned=True, snapshot=snapshot)
    with TestClient(app) as c:
        assert post(c, "patient-view").status_code == 200
    assert (data / "cds" / "feedback.sqlite3").is_file()
    assert list(work.iterdir()) == []  # nothing in the working directory
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "elsewhere.sqlite3"))
    assert load_settings(None).feedback_db == tmp_path / "elsewhere.sqlite3"
    monkeypatch.setenv("CDS_FEEDBACK_DB", "postgresql://cds:secret@db:5432/cds")
    s = load_settings(None)
    assert s.feedback_db == "postgresql://cds:secret@db:5432/cds"
    assert s.feedback_location() == "postgresql://cds@db:5432/cds"  # no password in logs


def test_feedback_store_on_postgresql(postgres_url: str) -> None:
    """The same store on PostgreSQL: cards, feedback stored once, JWT ids, the report."""
    store = FeedbackStore(postgres_url)
    try:
        store.issued([IssuedCard(uuid="c1", service="order-sign", hook_instance="h",
                                 rule="opioid-safety/mme-90", pack="opioid-safety@2.0.2",
                                 pack_digest="d", family="mme", severity="high",
                                 indicator="warning", draft=False, suggestions={"s1": "x"},
                                 issued_at="2026-12-01T00:00:00Z")])
        outcomes = parse_feedback({"feedback": [{
            "card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-12-01T00:00:00Z",
            "overrideReason": {"reason": {"code": "taper-plan"}, "userComment": "50% off"}}]})
        assert len(store.record("order-sign", outcomes)) == 1
        assert store.record("order-sign", outcomes) == []  # a retry is stored once
        assert store.remember_token("iss|j1", time.time() + 60, time.time())
        assert not store.remember_token("iss|j1", time.time() + 60, time.time())
        [row] = store.burden()
        assert (row["rule"], row["issued"], row["overridden"]) == ("opioid-safety/mme-90", 1, 1)
        assert row["override_reasons"] == {"taper-plan": 1}
    finally:
        store.close()
    again = FeedbackStore(postgres_url)  # the schema is there: opening twice is fine
    try:
        assert again.count("feedback") == 1 and again.count("cards") == 1
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server drops us
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert again.remember_token("iss|j2", time.time() + 60, time.time())  # reconnected
        assert again.count("tokens") == 2
    finally:
        again.close()


# -- logs and metrics -------------------------------------------------------------------------

@contextmanager
def json_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("cds")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_json_log_lines_carry_no_patient_data(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c, json_log() as out:
        ids = [post(c, name).headers["x-request-id"] for name in SERVICES]
        body = json.loads(hook_body("order-sign"))
        body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {
            "reference": "Patient/someone-else"}
        bad = c.post("/cds-services/order-sign", json=body)
        assert bad.status_code == 400
        mine = c.get("/healthz", headers={"X-Request-ID": "proxy-id-123"})
        assert mine.headers["x-request-id"] == "proxy-id-123"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is JSON
    hooks = [x for x in lines if x.get("service") in SERVICES]
    assert [x["request_id"] for x in hooks[:3]] == ids
    for x in hooks[:3]:
        assert x["status"] == 200 and x["cards"] > 0 and x["latency_ms"] > 0
        assert re.fullmatch(r"[0-9a-f-]{36}", x["hook_instance"])
    assert hooks[3]["status"] == 400 and hooks[3]["error"] == "bad-request"
    assert any(x.get("request_id") == "proxy-id-123" for x in lines)
    text = out.getvalue()
    for secret in PATIENT_DATA + ("someone-else",):
        assert secret not in text, secret


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_after_requests(tmp_path: Path, snapshot: Snapshot) -> None:
    with make_client(tmp_path, snapshot) as c:
        cards = len(post(c, "patient-view").json()["cards"])
        post(c, "patient-view")
        post(c, "order-sign")
        c.post("/cds-services/order-sign", content=b"{not json",
               headers={"Content-Type": "application/json"})
        c.get("/nowhere")
        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    assert m['cds_requests_total{service="patient-view",status="200"}'] == 2
    assert m['cds_requests_total{service="order-sign",status="200"}'] == 1
    assert m['cds_requests_total{service="order-sign",status="400"}'] == 1
    assert m['cds_errors_total{error="bad-request",service="order-sign"}'] == 1
    assert m['cds_errors_total{error="not-found",service="other"}'] == 1
    assert m['cds_request_duration_seconds_count{service="patient-view"}'] == 2
    assert m['cds_request_duration_seconds_bucket{le="+Inf",service="patient-view"}'] == 2
    assert m['cds_cards_total{rule="opioid-safety/mme-90"}'] == 3
    by_rule = sum(v for k, v in m.items() if k.startswith("cds_cards_total{"))
    assert by_rule >= 2 * cards
    for secret in ("oxy-fent-1", "1950-03-14", "Dr. Lee", "dr-lee", "enc-1"):  # (rule ids
        assert secret not in r.text                                          # name drugs)


# -- served for real ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(tmp_path: Path, *extra: str, config: Path = CONFIG,
           env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`cds serve` from examples/service.yaml, as the README prints it, on a free port."""
    port = _free_port()
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
               "CDS_ADMIN_TOKEN": ADMIN, "PYTHONUNBUFFERED": "1"}
    for name in ("CDS_FEEDBACK_DB", "CDS_DB", "PROMETHEUS_MULTIPROC_DIR"):
        environ.pop(name, None)
    environ.update(env or {})
    cds = Path(sys.executable).parent / "cds"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(cds), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--config", str(config), "--allow-unsigned", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _post_every_hook(base: str, rounds: int = 1) -> int:
    n = 0
    with httpx.Client(base_url=base, timeout=30) as c:
        for _ in range(rounds):
            for path in HOOKS:
                body = json.loads(path.read_text())
                if rounds > 1:  # a new call each time (the same hookInstance: the same cards)
                    body["hookInstance"] = str(uuid.uuid4())
                r = c.post(f"/cds-services/{path.stem}", json=body)
                assert r.status_code == 200, (path.name, r.text)
                cards = r.json()["cards"]
                assert cards and all(check_card(card) == [] for card in cards), path.name
                n += 1
    return n


@pytest.mark.slow
def test_served_from_the_example_config(tmp_path: Path) -> None:
    """The README's command, and every examples/hooks/*.json posted to it; SIGHUP reloads
    the packs; the store lands in the user data directory, logs are JSON without patient
    data."""
    import signal

    with served(tmp_path) as (base, proc):
        assert _post_every_hook(base) == len(HOOKS) == 3
        proc.send_signal(signal.SIGHUP)  # reloads the packs in place
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/healthz").json()["generation"] != 2:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
        d = httpx.get(f"{base}/cds-services").json()
        assert {s["id"] for s in d["services"]} == set(SERVICES)
        m = _samples(httpx.get(f"{base}/metrics").text)
        assert sum(v for k, v in m.items() if k.startswith("cds_requests_total{")
                   and 'status="200"' in k and "/" not in k.split('service="')[1][:14]) >= 3
    assert (tmp_path / "data" / "cds" / "feedback.sqlite3").is_file()
    assert not (tmp_path / "cds-feedback.sqlite3").exists()
    log = (tmp_path / "serve.log").read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert sum(1 for x in lines if x.get("service") in SERVICES and x.get("status") == 200) == 3
    for secret in PATIENT_DATA:
        assert secret not in log


@pytest.mark.slow
def test_several_workers_share_one_store_and_one_count(tmp_path: Path) -> None:
    """--workers 2: every call answered, the metrics count every worker's calls (multiprocess
    mode), the cards of all workers are in the one store, and SIGHUP replaces the workers."""
    import signal

    with served(tmp_path, "--workers", "2") as (base, proc):
        n = _post_every_hook(base, rounds=8)
        m = _samples(httpx.get(f"{base}/metrics").text)
        counted = sum(v for k, v in m.items() if k.startswith("cds_requests_total{")
                      and 'status="200"' in k and any(f'service="{s}"' in k for s in SERVICES))
        assert counted == n == 24
        r = httpx.post(f"{base}/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"},
                       timeout=60)
        assert r.status_code == 200 and "workers" in r.json()
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert _post_every_hook(base) == 3  # answered through the replacement
        report = httpx.get(f"{base}/admin/feedback/report",
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()["rules"]
    lines = [json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines()
             if x.startswith("{")]
    workers = {x["message"] for x in lines if "Started server process" in x["message"]}
    assert len(workers) >= 2
    issued = sum(r["issued"] for r in report)
    assert issued >= 24 * 10  # every card of every worker, in the one SQLite file


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.mark.slow
def test_behind_nginx_tls_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """docs/deploy.md end to end: deploy/nginx.conf (its addresses, certificate and log path
    pointed at this test's) terminating TLS in front of `cds serve --workers 2` with both
    stores on PostgreSQL; every example hook answered through it, nginx's request id in the
    service's log line, /admin refused without the token."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()),
                                          None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    host = "cds.hospital.example.org"
    cert, key = _self_signed(tmp_path, host)
    tls_port, http_port = _free_port(), _free_port()
    config = tmp_path / "service.yaml"
    config.write_text(f"base_url: https://{host}:{tls_port}\n")
    env = {"CDS_FEEDBACK_DB": postgres_url, "CDS_DB": postgres_url}
    with served(tmp_path, "--workers", "2", config=config, env=env) as (base, _):
        conf = (ROOT / "deploy" / "nginx.conf").read_text()
        for old, new in (("/etc/ssl/certs/cds.hospital.example.org.pem", str(cert)),
                         ("/etc/ssl/private/cds.hospital.example.org.key", str(key)),
                         ("listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl"),
                         ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                         ("/var/log/nginx/cds.access.log", str(tmp_path / "access.log")),
                         ("server 127.0.0.1:8080;", f"server {base.removeprefix('http://')};")):
            assert old in conf, old
            conf = conf.replace(old, new)
        (tmp_path / "cds.conf").write_text(conf)
        (tmp_path / "nginx.conf").write_text(
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
            f"http {{\n  access_log off;\n  include {tmp_path}/cds.conf;\n}}\n")
        argv = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        subprocess.run(argv, check=True, timeout=30)
        try:
            # to 127.0.0.1, with the certificate's name as SNI (and verified against it)
            tls = ssl.create_default_context(cafile=str(cert))
            sni = {"sni_hostname": host}
            with httpx.Client(base_url=f"https://127.0.0.1:{tls_port}", verify=tls,
                              timeout=30) as c:
                ids = []
                for path in HOOKS:
                    r = c.post(f"/cds-services/{path.stem}", content=path.read_bytes(),
                               headers={"Content-Type": "application/json"}, extensions=sni)
                    assert r.status_code == 200, r.text
                    assert all(check_card(card) == [] for card in r.json()["cards"])
                    ids.append(r.headers["x-request-id"])
                assert c.post("/admin/reload", extensions=sni).status_code == 401
        finally:
            subprocess.run([*argv, "-s", "stop"], capture_output=True, timeout=30)
    access = (tmp_path / "access.log").read_text()
    lines = [json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines()
             if x.startswith("{")]
    for rid in ids:  # nginx's $request_id is the service's request id
        assert f"rid={rid}" in access
        assert any(x.get("request_id") == rid for x in lines)
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM cards").fetchone()[0] > 0


# -- the container --------------------------------------------------------------------------

def _docker_usable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"docker cannot reach a daemon ({(probe.stderr or probe.stdout).strip()[:120]})"
    return None


def test_container_files_hold_what_docs_say() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-\w+", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "VOLUME" in dockerfile
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert {"cds", "postgres"} <= set(compose["services"])
    env = compose["services"]["cds"]["environment"]
    assert str(env["CDS_FEEDBACK_DB"]).startswith("postgresql://")
    load_settings(ROOT / "deploy" / "service.yaml")  # the container's config loads


@pytest.mark.slow
def test_container_image_builds(tmp_path: Path) -> None:
    why = _docker_usable()
    if why:
        pytest.skip(why)
    tag = f"cds-test:{os.getpid()}"
    built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True,
                           text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        run = subprocess.run(["docker", "run", "--rm", tag, "cds", "serve", "--help"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "--workers" in run.stdout, run.stderr
        user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
                              capture_output=True, text=True, timeout=120)
        assert user.stdout.strip() != "0"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
