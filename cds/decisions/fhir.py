"""Alerts and pharmacists' decisions as FHIR R4 resources, for an EHR or a data warehouse
that reads FHIR rather than our JSON.

An alert (a Sighting) becomes a `DetectedIssue`, its decisions the issue's `mitigation`s; a
referral also becomes a `Task` for whoever it was referred to. `write_ndjson` writes them in
the Bulk Data format (one resource per line; one file per resource type by convention).

Pure functions of their inputs (only write_ndjson does I/O), and deterministic: the same
alert always gets the same resource id, so a re-export updates rather than duplicates.

Mappings (R4 has no element for some of what we keep, so a few extensions carry it):

- DetectedIssue.status (R4 binds ObservationStatus): `final` for an alert the run found;
  `cancelled` for a `gone` alert (it no longer fires). R4 has no "mitigated" or "resolved"
  status (R5 added `mitigated`), and `entered-in-error` would tell the reader the alert was
  wrong, which a gone alert was not; `cancelled` is what R4 readers take as "not a current
  issue". The run status itself (new|changed|open|unchanged|gone) is kept in
  EXT_RUN_STATUS.
- DetectedIssue.severity (high|moderate|low): critical and high -> high, moderate ->
  moderate, low and info -> low; the exact cds severity is kept in EXT_SEVERITY.
- DetectedIssue.code: the family in ALERT_FAMILY_SYSTEM, plus the HL7 v3 ActCode (the code
  system of the R4 `detectedissue-category` value set, a preferred binding) where one means
  exactly the same thing: DRG "Drug Interaction Alert" for an interaction and DUPTHPY
  "Duplicate Therapy Alert" for a duplication (both concepts of
  http://terminology.hl7.org/CodeSystem/v3-ActCode, as listed in the R4/R4B
  detectedissue-category value set and THO's v3-DuplicateTherapyAlert). Other families have
  no exact ActCode (DOSEH "High Dose Alert" is narrower than an MME band), so only ours.
- Task.intent: `order`. The referral asks its owner to review the alert and the pharmacist
  means to see it done (a follow-up date); `proposal` would say the author does not intend
  to ensure it happens. The owner moves the Task through the R4 state machine (requested ->
  received -> accepted | rejected -> in-progress -> completed); a rejection is allowed.
- Patients and orders are referenced as `Patient/<id>` and `MedicationRequest/<id>`. The
  Sighting keeps only order ids, not their resource types, so an order read from a
  MedicationDispense or MedicationStatement is still referenced as a MedicationRequest. An
  id that is not a valid FHIR id (`[A-Za-z0-9\\-.]{1,64}`) becomes a logical reference by
  identifier (PATIENT_ID_SYSTEM, ORDER_ID_SYSTEM) instead of a broken literal one.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from cds.decisions.model import STATES, STATUSES, Decision, Sighting
from cds.errors import UsageError
from cds.io._fhir import FHIR_ID
from cds.vocabulary import OVERRIDE_REASON_SYSTEM, SEVERITIES

# -- code systems, identifier systems, extensions ---------------------------------------------

ALERT_FAMILY_SYSTEM = "urn:cds:CodeSystem:alert-family"
DECISION_STATE_SYSTEM = "urn:cds:CodeSystem:decision-state"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENT_ID_SYSTEM = "urn:cds:NamingSystem:patient-id"
ORDER_ID_SYSTEM = "urn:cds:NamingSystem:order-id"

_EXT = "urn:cds:StructureDefinition:"
#: DetectedIssue: the cds severity (critical|high|moderate|low|info), valueCode.
EXT_SEVERITY = _EXT + "alert-severity"
#: DetectedIssue: the stable alert key a decision is filed under, valueString.
EXT_ALERT_KEY = _EXT + "alert-key"
#: DetectedIssue: what the run said of the alert (new|changed|open|unchanged|gone), valueCode.
EXT_RUN_STATUS = _EXT + "run-status"
#: DetectedIssue, repeated: an action the alert recommends, valueString.
EXT_RECOMMENDED_ACTION = _EXT + "recommended-action"
#: DetectedIssue.mitigation: the decision's version in the alert's history, valueInteger.
EXT_DECISION_VERSION = _EXT + "decision-version"
#: DetectedIssue.mitigation: the date a snooze ends, valueDate.
EXT_SNOOZE_UNTIL = _EXT + "snooze-until"
#: DetectedIssue.mitigation: the date to look at the alert again, valueDate.
EXT_FOLLOW_UP = _EXT + "follow-up"
#: DetectedIssue.mitigation: the role or person the alert was referred to, valueString.
EXT_REFERRED_TO = _EXT + "referred-to"

#: cds severity -> R4 DetectedIssue.severity.
FHIR_SEVERITY: dict[str, str] = {
    "critical": "high", "high": "high", "moderate": "moderate", "low": "low", "info": "low"}

#: Family -> the v3 ActCode (code, display) that means exactly the same.
ACT_CODES: dict[str, tuple[str, str]] = {
    "interaction": ("DRG", "Drug Interaction Alert"),
    "duplication": ("DUPTHPY", "Duplicate Therapy Alert"),
}

#: The states that are a mitigation (everything but `open`), with their displays.
MITIGATION_STATES: dict[str, str] = {
    "accepted": "Recommendation accepted",
    "acted": "Recommendation carried out",
    "overridden": "Overridden",
    "snoozed": "Snoozed",
    "referred": "Referred",
    "resolved": "Resolved",
}

TASK_CODE_TEXT = "Review medication-safety alert"

#: The namespace of our resource ids (uuid5 of a fixed name, so it never changes).
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cds:fhir-export")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- public ---------------------------------------------------------------------------------------


def issue_id(patient_id: str, alert_key: str) -> str:
    """The DetectedIssue id of an alert: a uuid5 of (patient, alert key), so re-exports and
    the Tasks that point at it agree without a lookup (and the id leaks no patient data)."""
    return str(uuid.uuid5(_NAMESPACE, orjson.dumps(["DetectedIssue", patient_id, alert_key]).decode()))


def detected_issue(s: Sighting, decisions: Sequence[Decision], *, as_of: date,
                   status: str | None = None) -> dict[str, Any]:
    """The alert as a FHIR R4 DetectedIssue (JSON-ready), its decisions as mitigations.

    `as_of` is the date of the run being exported and becomes `identifiedDateTime` (a
    Sighting keeps no date of its own); `status` is that run's status of the alert
    (cds.decisions.model.STATUSES), `gone` making the issue `cancelled`. `decisions` are the
    alert's history, in any order: mitigations come out in history order (version, then
    time), one per decision except `open` ones (re-opening is not a mitigation; the later
    decisions say what was done next). Raises UsageError (a ValueError) for a decision of
    another alert, an unknown severity, state or status: a wrong export is worse than none.
    """
    patient = _patient(s)
    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
    if s.severity not in FHIR_SEVERITY:
        raise UsageError(f"unknown severity {s.severity!r}; expected one of {', '.join(SEVERITIES)}")
    for d in decisions:
        _same_alert(s, d)

    extension: list[dict[str, Any]] = [
        {"url": EXT_SEVERITY, "valueCode": s.severity},
        {"url": EXT_ALERT_KEY, "valueString": _text(s.alert_key)},
    ]
    if status is not None:
        extension.append({"url": EXT_RUN_STATUS, "valueCode": status})
    extension += [{"url": EXT_RECOMMENDED_ACTION, "valueString": a}
                  for a in (_text(x) for x in s.actions) if a]

    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": issue_id(s.patient_id, s.alert_key),
        "extension": extension,
        "status": "cancelled" if status == "gone" else "final",
        "code": _issue_code(s),
        "severity": FHIR_SEVERITY[s.severity],
        "patient": patient,
        "identifiedDateTime": _datetime(as_of),
    }
    implicated = [_reference("MedicationRequest", oid, ORDER_ID_SYSTEM)
                  for oid in dict.fromkeys(s.order_ids) if _text(oid)]
    if implicated:
        resource["implicated"] = implicated
    rule, pack = _text(s.rule), _text(s.pack)
    if rule:
        display = f"rule {rule} ({pack})" if pack else f"rule {rule}"
        resource["evidence"] = [{"detail": [{"display": display}]}]
    detail = _text(s.rationale) or _text(s.summary)
    if detail:
        resource["detail"] = detail
    history = sorted(decisions, key=lambda d: (d.version, _utc(d.decided_at)))
    mitigation = [_mitigation(d) for d in history if d.state in MITIGATION_STATES]
    if mitigation:
        resource["mitigation"] = mitigation
    return resource


def task(s: Sighting, d: Decision) -> dict[str, Any]:
    """A referral as a FHIR R4 Task (status `requested`, intent `order`, see the module
    docstring), focused on the alert's DetectedIssue, so the one it was referred to has it on
    their worklist; `restriction.period.end` is the follow-up date, when there is one.
    Raises UsageError for a decision that is not a referral of this alert."""
    if d.state != "referred":
        raise UsageError(f"a Task is made of a referred decision, not a {d.state!r} one")
    patient = _patient(s)
    _same_alert(s, d)
    focus: dict[str, Any] = {"reference": f"DetectedIssue/{issue_id(s.patient_id, s.alert_key)}"}
    summary = _text(s.summary)
    if summary:
        focus["display"] = summary
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(uuid.uuid5(_NAMESPACE, orjson.dumps(
            ["Task", s.patient_id, s.alert_key, d.version]).decode())),
        "status": "requested",
        "intent": "order",
        "code": {"text": TASK_CODE_TEXT},
        "focus": focus,
        "for": patient,
        "authoredOn": _datetime(d.decided_at),
    }
    description = "\n\n".join(t for t in (summary, _text(d.note)) if t)
    if description:
        resource["description"] = description
    author = _text(d.author)
    if author:
        resource["requester"] = {"display": author}
    owner = _text(d.referred_to)
    if owner:
        resource["owner"] = {"display": owner}
    reason = _reason(d)
    if reason:
        # R4 Task.reasonCode is a single CodeableConcept (0..1), not a list
        resource["reasonCode"] = {"coding": [reason], **(
            {"text": reason["display"]} if "display" in reason else {})}
    if d.follow_up is not None:
        resource["restriction"] = {"period": {"end": d.follow_up.isoformat()}}
    return resource


def write_ndjson(path: Path, resources: Iterable[dict[str, Any]]) -> int:
    """Write `resources` as Bulk Data NDJSON (one compact JSON resource a line) and return how
    many. Written to a temporary file beside `path` and renamed over it, so a reader never
    sees half a file and a failed export leaves the previous one in place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for resource in resources:
                out.write(orjson.dumps(resource))
                out.write(b"\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


# -- building blocks ------------------------------------------------------------------------------


def _issue_code(s: Sighting) -> dict[str, Any]:
    coding: list[dict[str, str]] = []
    family = _code(s.family)
    if family:
        coding.append({"system": ALERT_FAMILY_SYSTEM, "code": family})
    if s.family in ACT_CODES:
        code, display = ACT_CODES[s.family]
        coding.append({"system": V3_ACT_CODE, "code": code, "display": display})
    concept: dict[str, Any] = {"coding": coding} if coding else {}
    text = _text(s.summary)
    if text:
        concept["text"] = text
    if not concept:
        raise UsageError("an alert needs a family or a summary")
    return concept


def _mitigation(d: Decision) -> dict[str, Any]:
    coding = [{"system": DECISION_STATE_SYSTEM, "code": d.state, "display": MITIGATION_STATES[d.state]}]
    reason = _reason(d)
    if reason:
        coding.append(reason)
    action: dict[str, Any] = {"coding": coding}
    note = _text(d.note)
    if note:
        action["text"] = note
    extension: list[dict[str, Any]] = [{"url": EXT_DECISION_VERSION, "valueInteger": d.version}]
    if d.snooze_until is not None:
        extension.append({"url": EXT_SNOOZE_UNTIL, "valueDate": d.snooze_until.isoformat()})
    if d.follow_up is not None:
        extension.append({"url": EXT_FOLLOW_UP, "valueDate": d.follow_up.isoformat()})
    referred_to = _text(d.referred_to)
    if referred_to:
        extension.append({"url": EXT_REFERRED_TO, "valueString": referred_to})
    out: dict[str, Any] = {"extension": extension, "action": action, "date": _datetime(d.decided_at)}
    author = _text(d.author)
    if author:
        out["author"] = {"display": author}
    return out


def _reason(d: Decision) -> dict[str, str] | None:
    """The decision's reason as a Coding (the override reason system when none is named):
    kept whatever the state, since a snooze or a referral may give one too."""
    code = _code(d.reason_code)
    if not code:
        return None
    system = (d.reason_system or "").strip() or OVERRIDE_REASON_SYSTEM
    if re.search(r"\s", system):
        raise UsageError(f"reason system {system!r} is not a URI")
    out = {"system": system, "code": code}
    display = _text(d.reason_display)
    if display:
        out["display"] = display
    return out


def _reference(resource_type: str, rid: str, system: str) -> dict[str, Any]:
    """`Type/id`, or a logical reference by identifier when `rid` is no valid FHIR id."""
    if FHIR_ID.fullmatch(rid):
        return {"reference": f"{resource_type}/{rid}"}
    return {"type": resource_type, "identifier": {"system": system, "value": _text(rid)}}


def _same_alert(s: Sighting, d: Decision) -> None:
    if (d.patient_id, d.alert_key) != (s.patient_id, s.alert_key):
        raise UsageError(f"decision on {d.patient_id!r}/{d.alert_key!r} is not of the alert "
                         f"{s.patient_id!r}/{s.alert_key!r}")
    if d.state not in STATES:
        raise UsageError(f"unknown decision state {d.state!r}; expected one of {', '.join(STATES)}")


def _patient(s: Sighting) -> dict[str, Any]:
    """The alert's Patient reference (and the check that the alert names its patient and key:
    the resource ids are made of them)."""
    if not _text(s.patient_id) or not _text(s.alert_key):
        raise UsageError("an alert needs a patient id and an alert key")
    return _reference("Patient", s.patient_id, PATIENT_ID_SYSTEM)


def _text(value: str | None) -> str | None:
    """A FHIR string: no control characters but tab and line breaks (the specification's
    SHOULD), trimmed, and absent rather than empty (an empty string is invalid)."""
    if value is None:
        return None
    cleaned = _CONTROL.sub("", value).strip()
    return cleaned or None


def _code(value: str | None) -> str | None:
    """A FHIR code: no leading, trailing or repeated whitespace."""
    if value is None:
        return None
    return " ".join(_CONTROL.sub("", value).split()) or None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _datetime(moment: date) -> str:
    """A FHIR dateTime: a date as it is, a moment in UTC (a naive one is taken as UTC, as
    the decision store keeps them)."""
    if isinstance(moment, datetime):
        return _utc(moment).isoformat().replace("+00:00", "Z")
    return moment.isoformat()
