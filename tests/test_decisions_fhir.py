"""The FHIR export of alerts and decisions: every resource it makes is checked against the
FHIR models (fhir.resources), ids are valid and stable, each decision state and severity
maps as documented, and a property test over generated alerts and histories shows the
output always validates and survives a JSON round trip."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

# fhir.resources 8 ships R5 as the default package, R4B beside it and no plain R4 one.
# DetectedIssue and Task did not change between R4 (4.0.1) and R4B (4.3.0), so the R4B
# models check exactly the R4 shape.
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.task import Task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.decisions.fhir import (
    ALERT_FAMILY_SYSTEM,
    DECISION_STATE_SYSTEM,
    EXT_ALERT_KEY,
    EXT_DECISION_VERSION,
    EXT_FOLLOW_UP,
    EXT_RECOMMENDED_ACTION,
    EXT_REFERRED_TO,
    EXT_RUN_STATUS,
    EXT_SEVERITY,
    EXT_SNOOZE_UNTIL,
    FHIR_SEVERITY,
    MITIGATION_STATES,
    ORDER_ID_SYSTEM,
    PATIENT_ID_SYSTEM,
    TASK_CODE_TEXT,
    V3_ACT_CODE,
    detected_issue,
    issue_id,
    task,
    write_ndjson,
)
from cds.decisions.model import STATES, STATUSES, Decision, Sighting
from cds.errors import UsageError
from cds.vocabulary import FAMILIES, OVERRIDE_REASON_SYSTEM, SEVERITIES

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
AS_OF = date(2024, 5, 2)
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

# The models check structure, datatypes (id, code, dateTime, string) and cardinality but not the
# codes of required bindings, so those are checked here against the R4 value sets.
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}  # DetectedIssue.status
ISSUE_SEVERITY = {"high", "moderate", "low"}  # DetectedIssue.severity
TASK_STATUS = {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
               "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
TASK_INTENT = {"unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
               "instance-order", "option"}


def sighting(**kw: Any) -> Sighting:
    base: dict[str, Any] = dict(
        patient_id="p1", alert_key="opioid-safety/mme-90@90+", rule="opioid-safety/mme-90",
        pack="opioid-safety@2.0.0", family="mme", severity="high",
        summary="Opioid dose 120 MME/day (90 or more)",
        rationale="Daily opioid dose is 120 MME; doses of 90 MME/day or more raise overdose risk.",
        actions=("Consider tapering", "Offer naloxone"), ingredients=("oxycodone",),
        band="90+", order_ids=("m1", "m2"), prescribers=("Dr A",))
    base.update(kw)
    return Sighting(**base)


def decision(state: str, version: int = 1, **kw: Any) -> Decision:
    base: dict[str, Any] = dict(patient_id="p1", alert_key="opioid-safety/mme-90@90+", state=state,
                                author="pharmacist jane", decided_at=T0 + timedelta(hours=version),
                                version=version)
    base.update(kw)
    return Decision(**base)


def valid_issue(resource: dict[str, Any]) -> DetectedIssue:
    """Validated by the FHIR model and by a JSON round trip, as a reader would get it."""
    model = DetectedIssue.model_validate(resource)
    assert resource["status"] in OBSERVATION_STATUS and resource["status"] != "entered-in-error"
    assert resource["severity"] in ISSUE_SEVERITY
    assert orjson.loads(orjson.dumps(resource)) == resource
    assert DetectedIssue.model_validate(orjson.loads(model.model_dump_json())).id == resource["id"]
    return model


def valid_task(resource: dict[str, Any]) -> Task:
    model = Task.model_validate(resource)
    assert resource["status"] in TASK_STATUS and resource["intent"] in TASK_INTENT
    assert orjson.loads(orjson.dumps(resource)) == resource
    assert Task.model_validate(orjson.loads(model.model_dump_json())).id == resource["id"]
    return model


def ext(resource: dict[str, Any], url: str) -> list[Any]:
    return [next(v for k, v in e.items() if k.startswith("value"))
            for e in resource.get("extension", []) if e["url"] == url]


# -- DetectedIssue --------------------------------------------------------------------------


def test_the_checker_is_not_blind() -> None:
    r = detected_issue(sighting(), [decision("acted")], as_of=AS_OF)
    valid_issue(r)
    for key, value in [("id", "p1_opioid"), ("identifiedDateTime", "2024-05-01T10:00:00"), ("detail", ""),
                       ("severity", "critical"), ("status", "resolved"), ("unknown", 1)]:
        with pytest.raises((ValueError, AssertionError)):
            valid_issue({**r, key: value})
    t = task(sighting(), decision("referred"))
    for key, value in [("intent", "referral"), ("reasonCode", [{"text": "a list"}])]:
        with pytest.raises((ValueError, AssertionError)):
            valid_task({**t, key: value})


def test_an_alert_without_decisions() -> None:
    r = detected_issue(sighting(), [], as_of=AS_OF)
    valid_issue(r)
    assert r["resourceType"] == "DetectedIssue"
    assert r["status"] == "final"
    assert r["severity"] == "high"
    assert r["patient"] == {"reference": "Patient/p1"}
    assert r["identifiedDateTime"] == "2024-05-02"
    assert r["implicated"] == [{"reference": "MedicationRequest/m1"},
                               {"reference": "MedicationRequest/m2"}]
    assert r["evidence"] == [{"detail": [{"display": "rule opioid-safety/mme-90 (opioid-safety@2.0.0)"}]}]
    assert r["detail"].startswith("Daily opioid dose is 120 MME")
    assert r["code"] == {"coding": [{"system": ALERT_FAMILY_SYSTEM, "code": "mme"}],
                         "text": "Opioid dose 120 MME/day (90 or more)"}
    assert ext(r, EXT_SEVERITY) == ["high"]
    assert ext(r, EXT_ALERT_KEY) == ["opioid-safety/mme-90@90+"]
    assert ext(r, EXT_RECOMMENDED_ACTION) == ["Consider tapering", "Offer naloxone"]
    assert ext(r, EXT_RUN_STATUS) == []
    assert "mitigation" not in r


def test_the_mappings_cover_the_vocabularies() -> None:
    """A new severity or decision state fails here rather than being dropped from exports."""
    assert set(FHIR_SEVERITY) == set(SEVERITIES)
    assert set(MITIGATION_STATES) == set(STATES) - {"open"}


@pytest.mark.parametrize("severity", SEVERITIES)
def test_every_severity(severity: str) -> None:
    r = detected_issue(sighting(severity=severity), [], as_of=AS_OF)
    valid_issue(r)
    expected = {"critical": "high", "high": "high", "moderate": "moderate", "low": "low", "info": "low"}
    assert r["severity"] == expected[severity] == FHIR_SEVERITY[severity]
    assert ext(r, EXT_SEVERITY) == [severity]  # the exact cds severity is kept


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_and_the_act_codes_that_fit_exactly(family: str) -> None:
    r = detected_issue(sighting(family=family), [], as_of=AS_OF)
    valid_issue(r)
    coding = r["code"]["coding"]
    assert coding[0] == {"system": ALERT_FAMILY_SYSTEM, "code": family}
    act = [(c["code"], c["display"]) for c in coding if c["system"] == V3_ACT_CODE]
    assert act == {"interaction": [("DRG", "Drug Interaction Alert")],
                   "duplication": [("DUPTHPY", "Duplicate Therapy Alert")]}.get(family, [])


@pytest.mark.parametrize("status", STATUSES)
def test_run_status_and_a_gone_alert(status: str) -> None:
    r = detected_issue(sighting(), [decision("acted")], as_of=AS_OF, status=status)
    valid_issue(r)
    assert r["status"] == ("cancelled" if status == "gone" else "final")
    assert r["status"] != "entered-in-error"
    assert ext(r, EXT_RUN_STATUS) == [status]


@pytest.mark.parametrize("state", STATES)
def test_each_decision_state(state: str) -> None:
    d = decision(state, note="Spoke to Dr A", follow_up=date(2024, 6, 1),
                 snooze_until=date(2024, 5, 20) if state == "snoozed" else None,
                 referred_to="prescriber" if state == "referred" else None)
    r = detected_issue(sighting(), [d], as_of=AS_OF)
    valid_issue(r)
    if state == "open":  # to decide: not a mitigation
        assert "mitigation" not in r
        return
    (m,) = r["mitigation"]
    assert m["action"]["coding"] == [
        {"system": DECISION_STATE_SYSTEM, "code": state, "display": MITIGATION_STATES[state]}]
    assert m["action"]["text"] == "Spoke to Dr A"
    assert m["date"] == "2024-05-01T10:30:00Z"
    assert m["author"] == {"display": "pharmacist jane"}
    assert ext(m, EXT_DECISION_VERSION) == [1]
    assert ext(m, EXT_FOLLOW_UP) == ["2024-06-01"]
    assert ext(m, EXT_SNOOZE_UNTIL) == (["2024-05-20"] if state == "snoozed" else [])
    assert ext(m, EXT_REFERRED_TO) == (["prescriber"] if state == "referred" else [])


def test_an_override_carries_its_reason() -> None:
    d = decision("overridden", reason_code="benefit-outweighs-risk",
                 reason_display="Benefit outweighs risk for this patient")
    r = detected_issue(sighting(), [d], as_of=AS_OF)
    valid_issue(r)
    assert r["mitigation"][0]["action"]["coding"] == [
        {"system": DECISION_STATE_SYSTEM, "code": "overridden", "display": "Overridden"},
        {"system": OVERRIDE_REASON_SYSTEM, "code": "benefit-outweighs-risk",
         "display": "Benefit outweighs risk for this patient"}]
    own = decision("overridden", reason_system="https://example.org/reasons", reason_code="x 1")
    coding = detected_issue(sighting(), [own], as_of=AS_OF)["mitigation"][0]["action"]["coding"]
    assert coding[1] == {"system": "https://example.org/reasons", "code": "x 1"}
    assert "text" not in detected_issue(sighting(), [own], as_of=AS_OF)["mitigation"][0]["action"]


def test_history_comes_out_in_order_whatever_the_input_order() -> None:
    history = [decision("snoozed", 1, snooze_until=date(2024, 5, 10)), decision("open", 2),
               decision("referred", 3, referred_to="prescriber"),
               decision("overridden", 4, reason_code="taper-plan"), decision("resolved", 5)]
    r = detected_issue(sighting(), list(reversed(history)), as_of=AS_OF)
    valid_issue(r)
    assert [m["action"]["coding"][0]["code"] for m in r["mitigation"]] == [
        "snoozed", "referred", "overridden", "resolved"]
    assert [ext(m, EXT_DECISION_VERSION)[0] for m in r["mitigation"]] == [1, 3, 4, 5]
    dates = [m["date"] for m in r["mitigation"]]
    assert dates == sorted(dates)
    assert r == detected_issue(sighting(), history, as_of=AS_OF)


def test_times_are_utc_and_naive_ones_are_taken_as_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    aware = decision("acted", decided_at=datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=plus2))
    naive = decision("acted", 2, decided_at=datetime(2024, 5, 1, 12, 0))
    r = detected_issue(sighting(), [aware, naive], as_of=datetime(2024, 5, 2, 8, 0, tzinfo=UTC))
    valid_issue(r)
    assert [m["date"] for m in r["mitigation"]] == ["2024-05-01T10:00:00.250000Z", "2024-05-01T12:00:00Z"]
    assert r["identifiedDateTime"] == "2024-05-02T08:00:00Z"


def test_ids_are_valid_and_deterministic() -> None:
    a = detected_issue(sighting(), [decision("acted")], as_of=AS_OF)
    b = detected_issue(sighting(), [decision("acted")], as_of=AS_OF)
    assert a == b and FHIR_ID.fullmatch(a["id"])
    assert a["id"] == issue_id("p1", "opioid-safety/mme-90@90+")
    # the id is the alert's: a later run, a new pack version or a new summary keep it
    later = detected_issue(sighting(pack="opioid-safety@2.1.0", summary="x"), [], as_of=date(2025, 1, 1))
    assert later["id"] == a["id"]
    others = {issue_id("p2", "opioid-safety/mme-90@90+"), issue_id("p1", "opioid-safety/mme-50@50-90"),
              issue_id("p1|a", "b"), issue_id("p1", "a|b")}
    assert len(others | {a["id"]}) == 5


def test_ids_that_are_no_fhir_ids_become_identifiers() -> None:
    s = sighting(patient_id="MRN 00123_x", order_ids=("rx_1", "ok-2", "ok-2", "", "a" * 65))
    r = detected_issue(s, [decision("acted", patient_id="MRN 00123_x")], as_of=AS_OF)
    valid_issue(r)
    assert FHIR_ID.fullmatch(r["id"])
    assert r["patient"] == {"type": "Patient", "identifier": {"system": PATIENT_ID_SYSTEM,
                                                              "value": "MRN 00123_x"}}
    assert r["implicated"] == [
        {"type": "MedicationRequest", "identifier": {"system": ORDER_ID_SYSTEM, "value": "rx_1"}},
        {"reference": "MedicationRequest/ok-2"},
        {"type": "MedicationRequest", "identifier": {"system": ORDER_ID_SYSTEM, "value": "a" * 65}}]


def test_empty_texts_are_left_out_not_sent_empty() -> None:
    s = sighting(rationale="", summary=" ", actions=("", "\x00"), order_ids=(), pack="")
    r = detected_issue(s, [decision("acted", author="", note="  ")], as_of=AS_OF)
    valid_issue(r)
    assert "implicated" not in r and "detail" not in r and "text" not in r["code"]
    assert r["evidence"] == [{"detail": [{"display": "rule opioid-safety/mme-90"}]}]
    assert ext(r, EXT_RECOMMENDED_ACTION) == []
    assert "author" not in r["mitigation"][0] and "text" not in r["mitigation"][0]["action"]


@pytest.mark.parametrize(("args", "kw", "message"), [
    ((sighting(), [decision("acted", patient_id="p2")]), {}, "not of the alert"),
    ((sighting(), [decision("acted", alert_key="other")]), {}, "not of the alert"),
    ((sighting(), [decision("maybe")]), {}, "unknown decision state"),
    ((sighting(severity="severe"), []), {}, "unknown severity"),
    ((sighting(), []), {"status": "vanished"}, "unknown run status"),
    ((sighting(patient_id=" "), []), {}, "patient id"),
    ((sighting(), [decision("overridden", reason_system="not a uri", reason_code="x")]), {}, "not a URI"),
])
def test_what_is_refused(args: tuple[Any, ...], kw: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        detected_issue(*args, as_of=AS_OF, **kw)


# -- Task -----------------------------------------------------------------------------------


def test_a_referral_with_a_follow_up() -> None:
    d = decision("referred", 2, referred_to="prescriber", follow_up=date(2024, 5, 15),
                 note="Please review the opioid dose", reason_code="patient-monitored",
                 reason_display="Patient will be monitored")
    r = task(sighting(), d)
    valid_task(r)
    assert r["resourceType"] == "Task" and FHIR_ID.fullmatch(r["id"])
    assert (r["status"], r["intent"]) == ("requested", "order")
    assert r["code"] == {"text": TASK_CODE_TEXT}
    assert r["description"] == "Opioid dose 120 MME/day (90 or more)\n\nPlease review the opioid dose"
    assert r["for"] == {"reference": "Patient/p1"}
    assert r["focus"] == {"reference": f"DetectedIssue/{issue_id('p1', 'opioid-safety/mme-90@90+')}",
                          "display": "Opioid dose 120 MME/day (90 or more)"}
    assert r["authoredOn"] == "2024-05-01T11:30:00Z"
    assert r["requester"] == {"display": "pharmacist jane"}
    assert r["owner"] == {"display": "prescriber"}
    assert r["restriction"] == {"period": {"end": "2024-05-15"}}
    assert r["reasonCode"] == {"coding": [{"system": OVERRIDE_REASON_SYSTEM, "code": "patient-monitored",
                                           "display": "Patient will be monitored"}],
                               "text": "Patient will be monitored"}
    # the Task's focus is the DetectedIssue the same alert exports as
    assert r["focus"]["reference"] == "DetectedIssue/" + detected_issue(sighting(), [d], as_of=AS_OF)["id"]
    assert task(sighting(), d) == r


def test_a_referral_without_follow_up_note_or_reason() -> None:
    r = task(sighting(), decision("referred", referred_to="pain-specialist"))
    valid_task(r)
    assert "restriction" not in r and "reasonCode" not in r
    assert r["description"] == "Opioid dose 120 MME/day (90 or more)"
    assert r["owner"] == {"display": "pain-specialist"}
    other = task(sighting(), decision("referred", 2, referred_to="pain-specialist"))
    assert other["id"] != r["id"]  # one Task per referral


def test_only_a_referral_of_the_alert_makes_a_task() -> None:
    with pytest.raises(UsageError, match="referred"):
        task(sighting(), decision("overridden"))
    with pytest.raises(UsageError, match="not of the alert"):
        task(sighting(), decision("referred", patient_id="p9"))


# -- NDJSON ---------------------------------------------------------------------------------


def test_ndjson_one_resource_a_line(tmp_path: Path) -> None:
    history = [decision("referred", 1, referred_to="prescriber"), decision("resolved", 2)]
    issue = detected_issue(sighting(summary="Opioid dose — 120 MME/day ≥ 90"), history, as_of=AS_OF)
    referral = task(sighting(), history[0])
    out = tmp_path / "DetectedIssue.ndjson"
    out.write_text("old\n")
    assert write_ndjson(out, iter([issue, referral])) == 2
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert [orjson.loads(line) for line in lines[:2]] == [issue, referral]
    assert "≥" in lines[0].decode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["DetectedIssue.ndjson"]  # no temporary left
    assert write_ndjson(out, []) == 0 and out.read_bytes() == b""


def test_ndjson_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "Task.ndjson"
    out.write_text("previous\n")

    def broken() -> Any:
        yield {"resourceType": "Task"}
        raise RuntimeError("export stopped")

    with pytest.raises(RuntimeError):
        write_ndjson(out, broken())
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["Task.ndjson"]


# -- properties -----------------------------------------------------------------------------

texts = st.text(max_size=40)  # any unicode (hypothesis leaves out lone surrogates)
long_texts = st.one_of(texts, st.text(min_size=500, max_size=3000))
ids = st.one_of(st.from_regex(FHIR_ID, fullmatch=True), st.text(min_size=1, max_size=70))
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.one_of(st.none(), st.timezones()))
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 1, 1))


def named(value: str) -> bool:
    """Says something (an id of only blanks or control characters is refused, tested above)."""
    return any(c.isalnum() for c in value)


@st.composite
def alerts(draw: st.DrawFn) -> tuple[Sighting, list[Decision]]:
    patient = draw(ids.filter(named))
    key = draw(texts.filter(named))
    s = Sighting(
        patient_id=patient, alert_key=key, rule=draw(texts), pack=draw(texts),
        family=draw(st.sampled_from(FAMILIES)), severity=draw(st.sampled_from(SEVERITIES)),
        summary=draw(long_texts), rationale=draw(long_texts),
        actions=tuple(draw(st.lists(texts, max_size=4))),
        ingredients=tuple(draw(st.lists(texts, max_size=3))), band=draw(st.none() | texts),
        order_ids=tuple(draw(st.lists(ids, max_size=60))),
        prescribers=tuple(draw(st.lists(texts, max_size=3))))
    decisions = [Decision(
        patient_id=patient, alert_key=key, state=draw(st.sampled_from(STATES)), author=draw(texts),
        decided_at=draw(moments), version=v,
        reason_system=draw(st.none() | st.sampled_from([OVERRIDE_REASON_SYSTEM, "https://example.org/r"])),
        reason_code=draw(st.none() | texts), reason_display=draw(st.none() | texts),
        note=draw(st.none() | long_texts), follow_up=draw(st.none() | days),
        snooze_until=draw(st.none() | days), referred_to=draw(st.none() | texts),
    ) for v in range(1, draw(st.integers(0, 6)) + 1)]
    return s, draw(st.permutations(decisions))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts(), st.none() | st.sampled_from(STATUSES), days)
def test_any_alert_and_history_exports_valid_fhir(alert: tuple[Sighting, list[Decision]],
                                                  status: str | None, as_of: date) -> None:
    s, decisions = alert
    issue = detected_issue(s, decisions, as_of=as_of, status=status)
    valid_issue(issue)
    assert FHIR_ID.fullmatch(issue["id"])
    assert issue == detected_issue(s, list(reversed(decisions)), as_of=as_of, status=status)
    standing = sorted((d for d in decisions if d.state != "open"), key=lambda d: d.version)
    assert [ext(m, EXT_DECISION_VERSION)[0] for m in issue.get("mitigation", [])] == [
        d.version for d in standing]
    for d in decisions:
        if d.state == "referred":
            t = task(s, d)
            valid_task(t)
            assert t["focus"]["reference"] == f"DetectedIssue/{issue['id']}"
