"""Prefetch templates, and getting what prefetch did not bring from the EHR's FHIR server.

The specification's rules: a key sent as `null` means the EHR has no such data (nothing to
fetch); an omitted key means it could not fill it, so the service fetches it itself from
`fhirServer` with the bearer token of `fhirAuthorization`. When neither way works the call is
answered 412; when the FHIR server is only slow, the call is answered in time with what is
known, and the keys still missing are reported on a card.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import orjson

from cds.errors import CdsError
from cds.vocabulary import LOINC

#: Observation kind -> LOINC codes searched for it (those cds.io reads for that kind).
OBSERVATION_CODES = {
    "weight": ("29463-7", "3141-9"),
    "creatinine": ("2160-0", "14682-9"),
    "egfr": ("98979-8", "62238-1", "33914-3", "48642-3", "48643-1", "50044-7", "88293-6",
             "88294-4"),
}

#: What each key is, for people: the names used on the "could not check" card.
KEY_LABELS = {
    "patient": "patient demographics (age, sex)",
    "medications": "current medications",
    "dispenses": "pharmacy dispenses",
    "weight": "latest weight",
    "creatinine": "latest serum creatinine",
    "egfr": "latest eGFR",
    "conditions": "active conditions",
    "procedures": "procedures of the past year (PDMP reviews, benefit-risk assessments)",
    "encounters": "encounters of the past year (hospice, cancer treatment)",
    "labs": "laboratory results of the past year (urine drug tests)",
    "pdmp": "PDMP review findings",
    "careplans": "care plans (pain treatment plans)",
    "servicerequests": "service orders of the past year (hospice, palliative care)",
}
#: The record kinds each key brings: a key the service cannot get makes them unavailable,
#: and rules that need them are not checked (never fired on a guess).
KEY_KINDS: dict[str, tuple[str, ...]] = {
    "conditions": ("condition",), "procedures": ("procedure",), "encounters": ("encounter",),
    "labs": ("observation",), "pdmp": ("observation",), "careplans": ("care-plan",),
    "servicerequests": ("service-request",),
}
#: Keys without which the check is seriously incomplete (the card is a warning, not info).
SERIOUS_KEYS = frozenset({"medications", "dispenses", "patient"})
#: Keys a request may leave out even with no FHIR server to fetch them from (no 412).
OPTIONAL_KEYS = frozenset({"conditions", "procedures", "encounters", "labs", "pdmp", "careplans",
                           "servicerequests"})
#: How far back the guideline rules look at dated records (CDC 2022 implementation guide:
#: 12 months and a day for urine drug tests; a year for hospice encounters).
RECORD_DAYS = 366


def _codes(kind: str) -> str:
    return ",".join(f"{LOINC}|{c}" for c in OBSERVATION_CODES[kind])


def templates(dispense_days: int, today: date) -> dict[str, str]:
    """The prefetch templates of every service. CDS Hooks 2.0 has no date token, so the
    dispense window is written as a date: a client that caches discovery sends a longer
    window, never a shorter one, and the service keeps only the last `dispense_days`."""
    since = today - timedelta(days=dispense_days)
    pid = "{{context.patientId}}"
    out = {
        "patient": f"Patient/{pid}",
        "medications": f"MedicationRequest?patient={pid}&status=active",
        "dispenses": f"MedicationDispense?patient={pid}&whenhandedover=ge{since.isoformat()}",
        # an extension of the list: rules read diagnoses (OUD, CKD stage)
        "conditions": f"Condition?patient={pid}&clinical-status=active",
    }
    for kind in OBSERVATION_CODES:
        out[kind] = f"Observation?patient={pid}&code={_codes(kind)}&_sort=-date&_count=1"
    year = (today - timedelta(days=RECORD_DAYS)).isoformat()
    out.update({  # the CDC 2022 guideline rules' records (opioid-safety 2.0.0)
        "procedures": f"Procedure?patient={pid}&date=ge{year}",
        "encounters": f"Encounter?patient={pid}&date=ge{year}",
        "labs": f"Observation?patient={pid}&category=laboratory&date=ge{year}",
        "pdmp": f"Observation?patient={pid}&code=http://snomed.info/sct|461651000124104",
        "careplans": f"CarePlan?patient={pid}&date=ge{year}",
        "servicerequests": f"ServiceRequest?patient={pid}&authored=ge{year}",
    })
    return out


class PrefetchError(CdsError):
    """The data can be had neither from prefetch nor from the FHIR server: answer 412."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.keys = keys


@dataclass
class Gathered:
    """Prefetch values by key (None: the EHR has no such data) and what is still missing."""

    values: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # too slow: not checked
    fetched: list[str] = field(default_factory=list)


def fill(template: str, context: Mapping[str, Any]) -> str:
    """Replace {{context.x}} tokens (root-level primitive context fields only)."""
    out = template
    while "{{" in out:
        start = out.index("{{")
        end = out.index("}}", start)
        token = out[start + 2:end].strip()
        name = token.removeprefix("context.")
        value = context.get(name)
        if not isinstance(value, str | int | float | bool):
            raise PrefetchError(f"prefetch token {token} has no value in context", [])
        out = out[:start] + quote(str(value), safe="") + out[end + 2:]
    return out


def _check_server(url: str, allowed: list[str]) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "fhirServer is not an http(s) URL"
    if allowed and not any(url.startswith(p) for p in allowed):
        return "fhirServer is not one this service is configured to call"
    return None


def _same_origin(a: str, b: str) -> bool:
    pa, pb = httpx.URL(a), httpx.URL(b)
    return (pa.scheme, pa.host, pa.port) == (pb.scheme, pb.host, pb.port)


async def _fetch_one(client: httpx.AsyncClient, base: str, relative: str, token: str,
                     max_pages: int) -> Any:
    """GET one prefetch URL (following `next` pages on the same server). Raises
    PrefetchError on an answer that is not data (HTTP error, not JSON)."""
    url = urljoin(base.rstrip("/") + "/", relative)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    first: dict[str, Any] | None = None
    entries: list[Any] = []
    for _ in range(max_pages):
        resp = await client.get(url, headers=headers)
        if resp.status_code == 404 and "?" not in relative:
            return None  # a read of a resource that does not exist: no data
        if resp.status_code >= 400:
            raise PrefetchError(f"FHIR server answered {resp.status_code}", [])
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise PrefetchError("FHIR server answered something that is not JSON", []) from None
        if not isinstance(doc, dict):
            raise PrefetchError("FHIR server answered something that is not a resource", [])
        if doc.get("resourceType") != "Bundle":
            return doc
        if first is None:
            first = doc
        entries.extend(doc.get("entry") or [])
        nxt = next((link.get("url") for link in doc.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"), None)
        if not isinstance(nxt, str) or not _same_origin(nxt, base):
            break  # never send the token to another server
        url = nxt
    assert first is not None
    return {**first, "entry": entries, "link": []}


async def gather(request: Mapping[str, Any], tmpl: Mapping[str, str], client: httpx.AsyncClient,
                 *, timeout: float, allowed_servers: list[str], max_pages: int) -> Gathered:
    """Prefetch values for every template key, fetching the omitted ones."""
    prefetch = request.get("prefetch") or {}
    context = request.get("context") or {}
    out = Gathered()
    todo: dict[str, str] = {}
    for key, template in tmpl.items():
        if key in prefetch:
            value = prefetch[key]
            if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
                todo[key] = template  # an error passed along as data: fetch it ourselves
            else:
                out.values[key] = value
        else:
            todo[key] = template
    if not todo:
        return out
    server = request.get("fhirServer")
    auth = request.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, dict) else None
    if not isinstance(server, str) or not isinstance(token, str) or not token:
        for key in OPTIONAL_KEYS:  # nice to have: without a server to ask, go on without
            todo.pop(key, None)
        if not todo:
            return out
    names = sorted(todo)
    if not isinstance(server, str) or not isinstance(token, str) or not token:
        raise PrefetchError("prefetch is missing " + ", ".join(names) + " and the request has no "
                            "fhirServer with fhirAuthorization to fetch them", names)
    problem = _check_server(server, allowed_servers)
    if problem:
        raise PrefetchError(problem, names)
    tasks = {key: asyncio.create_task(_fetch_one(client, server, fill(t, context), token,
                                                 max_pages))
             for key, t in todo.items()}
    done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    failed: list[tuple[str, str]] = []
    for key, task in tasks.items():
        if task in pending:
            out.missing.append(key)
            continue
        exc = task.exception()
        if exc is None:
            out.values[key] = task.result()
            out.fetched.append(key)
        elif isinstance(exc, httpx.TimeoutException):
            out.missing.append(key)  # slow, not broken: answer without it
        elif key in OPTIONAL_KEYS:
            out.missing.append(key)  # nice to have: report it on the card, do not fail the call
        elif isinstance(exc, PrefetchError):
            failed.append((key, exc.message))
        elif isinstance(exc, httpx.HTTPError):
            failed.append((key, f"cannot reach the FHIR server ({type(exc).__name__})"))
        else:
            failed.append((key, f"fetch failed ({type(exc).__name__})"))
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    if failed:
        keys = sorted(k for k, _ in failed)
        raise PrefetchError("could not fetch " + "; ".join(f"{k}: {m}" for k, m in sorted(failed)),
                            keys)
    out.missing.sort()
    return out
