"""Alerts -> CDS Hooks 2.0 Cards (and the cards that say what could not be checked).

Pure functions of their inputs: no I/O, no logging. Every card keeps the specification's
constraints: `summary` under 140 characters, `indicator` one of info|warning|critical,
`source.label` set, `selectionBehavior` whenever there are suggestions, `overrideReasons`
as Codings, and suggestion actions that are create/update (with a whole resource) or delete
(with a relative `resourceId`). A suggestion (its kind and target) is offered once per
response, on the highest-priority card that has it.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cds.engine.alerts import Alert, Suggestion
from cds.vocabulary import OVERRIDE_REASON_SYSTEM, RXNORM, SNOMED, UCUM, reasons_for

INDICATORS = ("info", "warning", "critical")
SUMMARY_MAX = 139  # the specification: "<140-character summary"

#: Naloxone 4 mg nasal spray = 0.1 mL of 40 mg/mL (knowledge/data/rxnorm_products.csv).
NALOXONE_RXCUI = "1725059"
NALOXONE_DISPLAY = "naloxone hydrochloride 40 MG/ML Nasal Spray"
NALOXONE_TEXT = "naloxone 4 mg nasal spray"
NALOXONE_SIG = ("Spray 4 mg (one spray) into one nostril for suspected opioid overdose; "
                "may repeat every 2 to 3 minutes, alternating nostrils.")

_NS = uuid.UUID("6f1e9c2a-5b4d-4e8f-9a3c-2d7b1e0f4c5a")

FAMILY_DISPLAY = {
    "interaction": "Drug interaction",
    "duplication": "Therapeutic duplication",
    "data-quality": "Data completeness",
    "burden": "Medication burden",
    "mme": "Opioid dosage (MME)",
    "renal": "Renal dosing",
    "hepatic": "Hepatic dosing",
    "escalation": "Opioid escalation",
    "data": "Data completeness",
}

@dataclass(frozen=True)
class OrderRef:
    """A FHIR resource a suggestion may act on: a draft order or a current medication."""

    resource_type: str
    id: str
    resource: Mapping[str, Any]
    draft: bool


@dataclass(frozen=True)
class CardContext:
    hook_instance: str
    patient_id: str
    user_id: str | None = None
    encounter_id: str | None = None
    #: order id (as the engine knows it) -> the resource it was read from
    orders: Mapping[str, OrderRef] = field(default_factory=dict)
    indicators: Mapping[str, str] = field(default_factory=dict)
    pack_urls: Mapping[str, str] = field(default_factory=dict)  # pack id or pack@version -> url
    base_url: str | None = None
    override_reason_system: str = OVERRIDE_REASON_SYSTEM
    topic_system: str = "urn:cds:CodeSystem:alert-family"


def clip_summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[:SUMMARY_MAX - 1].rstrip() + "…"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def md(text: str) -> str:
    """Plain text made safe for GitHub-flavored markdown (no accidental emphasis or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple | set | frozenset):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_value(x)}" for k, x in v.items())
    return str(v)


def detail(alert: Alert) -> str:
    parts = [md(alert.rationale.strip())]
    if alert.values:
        parts.append("**Values used**\n\n" + "\n".join(
            f"- {md(str(k).replace('_', ' '))}: {md(_value(v))}" for k, v in alert.values.items()
            if v != ""))  # an empty value is a template's optional part that did not apply
    if alert.medications:
        parts.append("**Medications**: " + "; ".join(md(m) for m in alert.medications))
    if alert.actions:
        parts.append("**What to do**\n\n" + "\n".join(f"- {md(a)}" for a in alert.actions))
    foot = f"Rule {md(alert.rule)} ({md(alert.pack)}, severity {alert.severity}"
    foot += f", evidence {alert.evidence}, for the {md(alert.role)})"
    if alert.also:
        foot += "; also reported by " + ", ".join(md(a) for a in alert.also)
    parts.append("*" + foot + "*")
    return "\n\n".join(parts)


def override_reasons(family: str, system: str,
                     own: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """The rule's own responses (pack data: "PDMP reviewed", "snooze 3 months") first, then
    the common ones and the family's (cds.vocabulary.reasons_for)."""
    return [{"system": system, "code": code, "display": display}
            for code, display in reasons_for(family, own)]


def card_uuid(hook_instance: str, alert: Alert) -> str:
    """Stable for one hook call (a retried call gets the same uuids), unique across calls."""
    return str(uuid.uuid5(_NS, f"{hook_instance}|{alert.id}|{alert.pack_digest}"))


def _source(alert: Alert, ctx: CardContext) -> dict[str, Any]:
    pack_id = alert.pack.partition("@")[0]
    url = ctx.pack_urls.get(alert.pack) or ctx.pack_urls.get(pack_id)
    if url is None and ctx.base_url:
        url = f"{ctx.base_url}/packs/{alert.pack}"
    src: dict[str, Any] = {"label": alert.pack}
    if url:
        src["url"] = url
    src["topic"] = {"system": ctx.topic_system, "code": alert.family,
                    "display": FAMILY_DISPLAY.get(alert.family, alert.family)}
    return src


def _reference(ref: str | None, kind: str) -> dict[str, str] | None:
    if not ref:
        return None
    return {"reference": ref if "/" in ref else f"{kind}/{ref}"}


def _naloxone(ctx: CardContext, s: Suggestion) -> list[dict[str, Any]]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": NALOXONE_RXCUI, "display": NALOXONE_DISPLAY}],
            "text": NALOXONE_TEXT,
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "dosageInstruction": [{
            "text": NALOXONE_SIG,
            "asNeededBoolean": True,
            "route": {"coding": [{"system": SNOMED, "code": "46713006",
                                  "display": "Nasal route"}]},
            "doseAndRate": [{"doseQuantity": {"value": 4, "unit": "mg", "system": UCUM,
                                              "code": "mg"}}],
        }],
    }
    encounter = _reference(ctx.encounter_id, "Encounter")
    if encounter:
        resource["encounter"] = encounter
    requester = _reference(ctx.user_id, "Practitioner")
    if requester:
        resource["requester"] = requester
    return [{"type": "create", "description": f"Order {NALOXONE_TEXT} (RxNorm {NALOXONE_RXCUI})",
             "resource": resource}]


def _service_request(ctx: CardContext, s: Suggestion) -> dict[str, Any]:
    """A draft ServiceRequest for a test or a referral, named by the rule's label: the local
    orderable is for the clinician to pick (no code is assumed)."""
    resource: dict[str, Any] = {"resourceType": "ServiceRequest", "status": "draft",
                                "intent": "order", "code": {"text": s.label},
                                "subject": {"reference": f"Patient/{ctx.patient_id}"}}
    encounter = _reference(ctx.encounter_id, "Encounter")
    if encounter:
        resource["encounter"] = encounter
    requester = _reference(ctx.user_id, "Practitioner")
    if requester:
        resource["requester"] = requester
    return {"type": "create", "description": s.label, "resource": resource}


def _targets(s: Suggestion, ctx: CardContext, *, drafts_only: bool = False) -> list[OrderRef]:
    out = []
    for oid in s.order_ids:
        ref = ctx.orders.get(oid)
        if ref is not None and (ref.draft or not drafts_only):
            out.append(ref)
    return out


def _with_note(resource: Mapping[str, Any], text: str) -> dict[str, Any]:
    updated = copy.deepcopy(dict(resource))
    notes = updated.get("note")
    notes = list(notes) if isinstance(notes, list) else []
    notes.append({"text": text})
    updated["note"] = notes
    return updated


def _label(ref: OrderRef) -> str:
    res = ref.resource
    concept = res.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        text = concept.get("text")
        if isinstance(text, str) and text:
            return text
        for c in concept.get("coding") or []:
            if isinstance(c, dict) and isinstance(c.get("display"), str):
                return str(c["display"])
    return f"{ref.resource_type}/{ref.id}"


def _actions(s: Suggestion, alert: Alert, ctx: CardContext) -> list[dict[str, Any]]:
    if s.kind == "add-naloxone":
        return _naloxone(ctx, s)
    if s.kind == "remove-draft":
        return [{"type": "delete", "description": f"Remove the draft order for {_label(r)}",
                 "resourceId": f"{r.resource_type}/{r.id}"}
                for r in _targets(s, ctx, drafts_only=True)]
    if s.kind == "reduce-dose":
        if s.max_daily_dose is None:
            return []
        unit = s.unit or "mg"
        limit = f"{s.max_daily_dose:g} {unit}" + ("" if unit.endswith("/h") else " per day")
        out = []
        for r in _targets(s, ctx):
            note = (f"Reduce the dose: at most {limit} for this patient "
                    f"({alert.rule}, {alert.pack}).")
            out.append({"type": "update",
                        "description": f"Reduce {_label(r)} to at most {limit}",
                        "resource": _with_note(r.resource, note)})
        return out
    if s.kind in ("order-toxicology-screen", "refer"):
        return [_service_request(ctx, s)]
    if s.kind == "discontinue":
        out = []
        for r in _targets(s, ctx):
            if r.draft:
                out.append({"type": "delete", "description": f"Remove the draft order for {_label(r)}",
                            "resourceId": f"{r.resource_type}/{r.id}"})
            else:
                stopped = _with_note(r.resource, f"Discontinued on decision support advice "
                                                  f"({alert.rule}).")
                stopped["status"] = "stopped"
                out.append({"type": "update", "description": f"Discontinue {_label(r)}",
                            "resource": stopped})
        return out
    return []


def _touched(actions: Iterable[dict[str, Any]]) -> set[str]:
    out = set()
    for a in actions:
        if "resourceId" in a:
            out.add(str(a["resourceId"]))
        res = a.get("resource")
        if a["type"] == "update" and isinstance(res, dict):
            out.add(f"{res.get('resourceType')}/{res.get('id')}")
    return out


def alert_to_card(alert: Alert, ctx: CardContext) -> dict[str, Any]:
    cid = card_uuid(ctx.hook_instance, alert)
    indicator = ctx.indicators.get(alert.severity, "info")
    if not alert.interruptive:
        indicator = "info"
    card: dict[str, Any] = {
        "uuid": cid,
        "summary": clip_summary(alert.summary),
        "indicator": indicator,
        "detail": detail(alert),
        "source": _source(alert, ctx),
    }
    suggestions = []
    touched: list[set[str]] = []
    for i, s in enumerate(alert.suggestions):
        actions = _actions(s, alert, ctx)
        if not actions:
            continue  # not concrete here (e.g. remove-draft with no draft at hand)
        suggestions.append({"label": s.label, "uuid": str(uuid.uuid5(_NS, f"{cid}|{i}|{s.kind}")),
                            "actions": actions})
        touched.append(_touched(actions))
    if suggestions:
        card["suggestions"] = suggestions
        # two suggestions acting on one order (delete it / change its dose) exclude each other
        clash = any(touched[i] & touched[j] for i in range(len(touched))
                    for j in range(i + 1, len(touched)))
        card["selectionBehavior"] = "at-most-one" if clash else "any"
    card["overrideReasons"] = override_reasons(alert.family, ctx.override_reason_system,
                                               [(c, d) for c, d, _ in alert.responses])
    return card


def suggestion_key(s: Suggestion) -> tuple[object, ...]:
    """What a suggestion does, whichever alert offers it: its kind and its target. Naloxone is
    one product for the patient; a test or a referral is the service its label names; the
    other kinds act on their orders (with a dose, for reduce-dose)."""
    if s.kind == "add-naloxone":
        return (s.kind,)
    if s.kind in ("order-toxicology-screen", "refer"):
        return (s.kind, s.label)
    return (s.kind, tuple(sorted(s.order_ids)), s.max_daily_dose, s.unit)


def offer_once(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts (in their order) with each suggestion offered once per response: kept on the
    highest-priority alert offering it (the first of them on a tie), left out of the others.
    A client would otherwise show one order (create naloxone, delete a draft) as several
    buttons, each accepted apart, under a different suggestion uuid."""
    owner: dict[tuple[object, ...], tuple[int, int]] = {}  # key -> (alert, suggestion)
    for n, a in enumerate(alerts):
        for i, s in enumerate(a.suggestions):
            k = suggestion_key(s)
            if k not in owner or a.priority > alerts[owner[k][0]].priority:
                owner[k] = (n, i)
    out = []
    for n, a in enumerate(alerts):
        kept = tuple(s for i, s in enumerate(a.suggestions)
                     if owner[suggestion_key(s)] == (n, i))
        out.append(a if len(kept) == len(a.suggestions) else replace(a, suggestions=kept))
    return out


def order_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts in card order: those about draft orders first, then by priority (the
    engine's order within ties); each suggestion on one card only (offer_once)."""
    ranked = list(enumerate(alerts))
    ranked.sort(key=lambda x: (not x[1].draft, -x[1].priority, x[0]))
    return offer_once([a for _, a in ranked])


def cards_for(alerts: Sequence[Alert], ctx: CardContext) -> list[dict[str, Any]]:
    return [alert_to_card(a, ctx) for a in order_alerts(alerts)]


def incomplete_card(ctx: CardContext, missing: Sequence[str], problems: Sequence[str],
                    *, service_label: str, serious: bool,
                    unchecked: Sequence[Alert] = ()) -> dict[str, Any]:
    """What could not be checked, in one card per call: data the service could not get in
    time or could not read, and the engine's data-quality findings (`unchecked`: medications
    not recognized, opioids not counted in the MME...)."""
    pieces = list(missing) + (["unreadable records"] if problems else [])
    pieces += [a.summary[0].lower() + a.summary[1:] for a in unchecked]
    summary = clip_summary("Medication safety check incomplete: could not check "
                           + "; ".join(pieces))
    lines = ["These checks ran without some of the patient's data, so an alert may be "
             "missing. Review the following by hand:", ""]
    lines += [f"- {md(m)}" for m in missing]
    if problems:
        lines += ["", "**Records that could not be read**", ""]
        lines += [f"- {md(p)}" for p in problems[:20]]
        if len(problems) > 20:
            lines.append(f"- … and {len(problems) - 20} more")
    for a in unchecked:
        lines += ["", f"**{md(a.summary)}**", "", md(a.rationale)]
        lines += [f"- {md(x)}" for x in a.actions]
    key = "|".join(pieces)
    return {
        "uuid": str(uuid.uuid5(_NS, f"{ctx.hook_instance}|incomplete|{key}")),
        "summary": summary,
        "indicator": "warning" if serious else "info",
        "detail": "\n".join(lines),
        "source": {"label": service_label,
                   "topic": {"system": ctx.topic_system, "code": "data",
                             "display": FAMILY_DISPLAY["data"]}},
    }


def not_reviewed_card(ctx: CardContext, why: str, *, service_label: str) -> dict[str, Any]:
    """The one card for a patient the service does not review (recorded as deceased)."""
    return {
        "uuid": str(uuid.uuid5(_NS, f"{ctx.hook_instance}|not-reviewed")),
        "summary": clip_summary(f"Medication safety checks not run: {why}"),
        "indicator": "info",
        "detail": md(f"No checks were run because {why}. If this is wrong, correct the "
                     "patient record."),
        "source": {"label": service_label,
                   "topic": {"system": ctx.topic_system, "code": "data",
                             "display": FAMILY_DISPLAY["data"]}},
    }


def check_card(card: Mapping[str, Any]) -> list[str]:
    """The specification's constraints on one card; [] when it keeps them all."""
    problems = []
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append("summary is missing")
    elif len(summary) >= 140:
        problems.append(f"summary has {len(summary)} characters (< 140 allowed)")
    if card.get("indicator") not in INDICATORS:
        problems.append(f"indicator {card.get('indicator')!r} is not info|warning|critical")
    source = card.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("label"), str) \
            or not source["label"]:
        problems.append("source.label is missing")
    elif "topic" in source and not (isinstance(source["topic"], dict) and source["topic"].get("code")):
        problems.append("source.topic is not a Coding")
    if "uuid" in card:
        try:
            uuid.UUID(str(card["uuid"]))
        except ValueError:
            problems.append("uuid is not a UUID")
    if "detail" in card and not isinstance(card["detail"], str):
        problems.append("detail is not a string")
    suggestions = card.get("suggestions")
    if suggestions is not None:
        if not isinstance(suggestions, list):
            problems.append("suggestions is not an array")
            suggestions = []
        behavior = card.get("selectionBehavior")
        if suggestions and behavior not in ("at-most-one", "any"):
            problems.append("suggestions without selectionBehavior at-most-one|any")
        if behavior == "at-most-one" and sum(bool(s.get("isRecommended")) for s in suggestions) > 1:
            problems.append("at-most-one with more than one recommended suggestion")
        for i, s in enumerate(suggestions):
            if not isinstance(s.get("label"), str) or not s["label"]:
                problems.append(f"suggestions[{i}].label is missing")
            for j, a in enumerate(s.get("actions") or []):
                where = f"suggestions[{i}].actions[{j}]"
                kind = a.get("type")
                if kind not in ("create", "update", "delete"):
                    problems.append(f"{where}.type {kind!r} is not create|update|delete")
                if not isinstance(a.get("description"), str) or not a["description"]:
                    problems.append(f"{where}.description is missing")
                if kind in ("create", "update"):
                    res = a.get("resource")
                    if not isinstance(res, dict) or not res.get("resourceType"):
                        problems.append(f"{where}.resource is not a FHIR resource")
                    elif kind == "update" and not res.get("id"):
                        problems.append(f"{where}.resource has no id to update")
                if kind == "delete":
                    rid = a.get("resourceId")
                    if not isinstance(rid, str) or rid.count("/") != 1 or rid.startswith("/"):
                        problems.append(f"{where}.resourceId is not a relative reference")
    reasons = card.get("overrideReasons")
    if reasons is not None:
        for i, r in enumerate(reasons):
            if not isinstance(r, dict) or not isinstance(r.get("code"), str):
                problems.append(f"overrideReasons[{i}] is not a Coding with a code")
    return problems
