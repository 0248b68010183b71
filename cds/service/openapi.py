"""The API described: texts of the OpenAPI document (/openapi.json) and the /docs page.

The page is built here from the OpenAPI document, with no script and nothing fetched from
another host (hospital networks often have no way out to a CDN).
"""

from __future__ import annotations

from html import escape
from typing import Any

API_DESCRIPTION = (
    "An HL7 CDS Hooks 2.0 service for medication safety: interactions, opioid dosage (MME) "
    "and escalation, CNS and anticholinergic burden, renal and hepatic dosing. Every CDS Hooks "
    "endpoint needs the EHR's JWT (Authorization: Bearer); /admin/* needs the admin token. "
    "Errors are JSON: {\"error\": code, \"message\": text, \"field\": where}.")

DOCS = {
    "discovery": "The services (patient-view, order-select, order-sign) with their prefetch "
                 "templates. Needs the EHR's JWT.",
    "hook": "Cards for one hook call: service_id is patient-view, order-select or order-sign. "
            "The body is a CDS Hooks request (hook, hookInstance, context with patientId and, "
            "for order-select and order-sign, draftOrders; prefetch; optionally fhirServer "
            "and fhirAuthorization for what prefetch left out). Answers {\"cards\": [...]}; "
            "400 bad request, 401 bad token, 412 data neither prefetched nor fetchable, 413 "
            "too large, 500 engine fault.",
    "feedback": "Outcomes (accepted, overridden with a reason) of cards this service issued; "
                "answers {\"stored\": n, \"already_stored\": m}.",
    "reload": "Re-read the config's packs, rulesets and backend and swap the new engine in "
              "(calls in flight finish on the old one); 422 when the new packs do not load, "
              "and the old ones keep running. Needs the admin token.",
    "report": "Alert burden per rule: cards issued, accepted, overridden, override reasons. "
              "Needs the admin token.",
    "metrics": "Prometheus text format: cds_requests_total{service,status}, "
               "cds_request_duration_seconds{service}, cds_cards_total{rule}, "
               "cds_errors_total{service,error}. No patient data.",
}

_OBJECT: dict[str, Any] = {"type": "object"}
HOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string", "enum": ["patient-view", "order-select", "order-sign"]},
            "hookInstance": {"type": "string", "format": "uuid"},
            "fhirServer": {"type": "string", "format": "uri"},
            "fhirAuthorization": {"type": "object", "properties": {
                "access_token": {"type": "string"}, "token_type": {"type": "string"},
                "expires_in": {"type": "integer"}, "scope": {"type": "string"},
                "subject": {"type": "string"}}},
            "context": {"type": "object", "required": ["patientId"], "properties": {
                "userId": {"type": "string"}, "patientId": {"type": "string"},
                "encounterId": {"type": "string"}, "draftOrders": _OBJECT,
                "selections": {"type": "array", "items": {"type": "string"}}}},
            "prefetch": {"type": "object", "additionalProperties": {
                "oneOf": [_OBJECT, {"type": "null"}]}},
        }}}}},
    "responses": {"200": {"description": "The cards", "content": {"application/json": {
        "schema": {"type": "object", "properties": {"cards": {"type": "array", "items": {
            "type": "object", "required": ["uuid", "summary", "indicator", "source"],
            "properties": {"uuid": {"type": "string"}, "summary": {"type": "string"},
                           "indicator": {"type": "string",
                                         "enum": ["info", "warning", "critical"]},
                           "detail": {"type": "string"}, "source": _OBJECT,
                           "suggestions": {"type": "array", "items": _OBJECT},
                           "overrideReasons": {"type": "array", "items": _OBJECT},
                           "selectionBehavior": {"type": "string"}}}}}}}}}},
}


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation of the OpenAPI document."""
    info = spec.get("info", {})
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            rows.append(f"<tr><td><code>{escape(method.upper())}</code></td>"
                        f"<td><code>{escape(path)}</code></td>"
                        f"<td><b>{escape(op.get('summary', ''))}</b>"
                        f"<br>{escape(op.get('description', ''))}</td></tr>")
    return ("<!doctype html><html lang=en><meta charset=utf-8>"
            f"<title>{escape(info.get('title', 'API'))}</title>"
            f"<h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>"
            f"<p>{escape(info.get('description', ''))}</p>"
            "<p>The machine-readable description: <a href=\"openapi.json\">openapi.json</a> "
            "(OpenAPI " + escape(str(spec.get("openapi", ""))) + ").</p>"
            "<table border=1 cellpadding=4><tr><th>Method</th><th>Path</th><th>What it does"
            "</th></tr>" + "".join(rows) + "</table></html>")
