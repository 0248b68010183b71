"""Carry-forward (cds.decisions.carry), pure functions: properties of `judge` over generated
sightings and decisions, each reason an alert is `changed`, lineage siblings, `open`, and
`sighting_of`/`level` on alerts the opioid pack really raises."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cds
from cds.decisions.carry import changed, counts, judge, level, lineage, sighting_of
from cds.decisions.model import STANDING, STATES, STATUSES, Decision, Judged, Sighting
from cds.engine.alerts import Alert
from cds.patient import MedicationOrder, Patient
from cds.vocabulary import SEVERITIES, SEVERITY_RANK

AS_OF = date(2026, 11, 26)
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
PACK = "opioid-safety@2.0.2"
MME50 = "opioid-safety/mme-50@MME50-90"
MME90 = "opioid-safety/mme-90@MME90+"


def sighting(key: str = MME90, **kw: Any) -> Sighting:
    rule = key.split(":", 1)[0].split("@", 1)[0]
    base: dict[str, Any] = dict(
        patient_id="p1", alert_key=key, rule=rule, pack=PACK, family="mme", severity="high",
        summary="Opioid dosage 120 MME/day", ingredients=("oxycodone",), band="MME 90+",
        level=120.0)
    base.update(kw)
    base.setdefault("lineage", lineage(base["pack"], base["family"], key))
    return Sighting(**base)


def decided(s: Sighting, state: str, **kw: Any) -> Decision:
    """A decision made on exactly what sighting `s` says."""
    base: dict[str, Any] = dict(
        patient_id=s.patient_id, alert_key=s.alert_key, state=state, author="jane",
        decided_at=T0, pack=s.pack, rule=s.rule, family=s.family, severity=s.severity,
        summary=s.summary, ingredients=s.ingredients, band=s.band, level=s.level)
    base.update(kw)
    return Decision(**base)


def one(a: Sighting, d: Decision | None = None, previous: tuple[Sighting, ...] = (),
        as_of: date = AS_OF) -> Judged:
    out = judge([a], previous, {a.alert_key: d} if d else {}, as_of)
    assert out[0].sighting is a
    return out[0]


# -- generated sightings and decisions ---------------------------------------------------------

KEYS = ("opioid-safety/mme-50@MME50-90", "opioid-safety/mme-90@MME90+",
        "opioid-safety/naloxone-not-on-file", "label-dosing/gabapentin-max:gabapentin@crcl<60",
        "label-dosing/gabapentin-max:gabapentin@crcl<30", "label-dosing/apixaban:apixaban",
        "interactions-core/onc-02-atazanavir-ppi")
PACKS = {"opioid-safety": "opioid-safety@2.0.2", "label-dosing": "label-dosing@1.0.0",
         "interactions-core": "interactions-core@1.2.0"}
FAMILY = {"mme-50": "mme", "mme-90": "mme", "naloxone-not-on-file": "escalation",
          "gabapentin-max": "renal", "apixaban": "renal", "onc-02-atazanavir-ppi": "interaction"}
DRUGS = ("oxycodone", "fentanyl", "gabapentin", "apixaban", "omeprazole")
DAYS = st.sampled_from((-30, -1, 0, 1, 30)).map(lambda n: AS_OF + timedelta(days=n))


@st.composite
def sightings(draw: st.DrawFn, key: str | None = None) -> Sighting:
    key = key or draw(st.sampled_from(KEYS))
    pack_id, rule = key.split("/", 1)
    family = FAMILY[rule.split(":", 1)[0].split("@", 1)[0]]
    return sighting(
        key, pack=PACKS[pack_id], family=family, severity=draw(st.sampled_from(SEVERITIES)),
        ingredients=tuple(sorted(draw(st.sets(st.sampled_from(DRUGS), max_size=3)))),
        band=draw(st.none() | st.sampled_from(("MME 50-90", "MME 90+", "crcl < 60"))),
        level=draw(st.none() | st.floats(0, 400, allow_nan=False)))


REVIEW = st.lists(sightings(), max_size=8)
Scenario = tuple[list[Sighting], list[Sighting], dict[str, Decision], date]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A review, the previous one, decisions (half of them made on exactly what an alert of
    either review says, the others on another version of the alert) and a date."""
    alerts, previous, as_of = draw(REVIEW), draw(REVIEW), draw(DAYS)
    seen = {s.alert_key: s for s in (*previous, *alerts)}
    decs = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS))):
        s = seen[key] if key in seen and draw(st.booleans()) else draw(sightings(key))
        decs[key] = decided(s, draw(st.sampled_from(STATES)),
                            author=draw(st.sampled_from(("jane", "bob"))),
                            follow_up=draw(st.none() | DAYS), snooze_until=draw(st.none() | DAYS),
                            pack=draw(st.sampled_from((s.pack, None))),
                            family=draw(st.sampled_from((s.family, None))))
    return alerts, previous, decs, as_of


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(scenarios())
def test_every_alert_is_judged_once_in_order_then_the_gone_ones(scenario: Scenario) -> None:
    alerts, previous, decs, as_of = scenario
    out = judge(alerts, previous, decs, as_of)
    now = {a.alert_key for a in alerts}
    gone_keys = list(dict.fromkeys(s.alert_key for s in previous if s.alert_key not in now))
    assert len(out) == len(alerts) + len(gone_keys)
    for a, j in zip(alerts, out, strict=False):
        assert j.sighting is a and j.status != "gone"
    tail = out[len(alerts):]
    assert [j.sighting.alert_key for j in tail] == gone_keys
    assert all(j.status == "gone" and j.why == "no longer fires" for j in tail)
    assert all(j.decision is decs.get(j.sighting.alert_key) for j in tail)
    assert all(j.status in STATUSES for j in out)
    assert counts(out) == {s: n for s in STATUSES if (n := sum(j.status == s for j in out))}
    # deterministic: the same input gives the same output
    assert judge(alerts, previous, decs, as_of) == out
    before = {s.alert_key: s for s in previous}

    def lineage_of(key: str, d: Decision) -> str:
        return (before[key].lineage if key in before
                else lineage(d.pack or key.split("/", 1)[0], d.family or "", key))

    for j in out[:len(alerts)]:
        a, d = j.sighting, decs.get(j.sighting.alert_key)
        sibling = next((o for k, o in decs.items() if o.state in STANDING and k not in now
                        and lineage_of(k, o) == a.lineage), None)
        if d is not None and d.state in STANDING:  # the decision on the alert itself decides
            assert j.decision is d
            assert (j.status, j.why) == (("changed", w) if (w := changed(a, d, as_of))
                                         else ("unchanged", ""))
        elif d is not None:  # decided `open`
            assert (j.status, j.decision) == ("open", d)
        elif sibling is not None:  # a decision on another alert of its lineage, gone now
            assert (j.status, j.decision) == ("changed", sibling)
            assert j.why == (f"moved from {sibling.band or sibling.alert_key} ({sibling.state} by "
                             f"{sibling.author}) to {a.band or a.alert_key}")
        else:
            assert j.status == ("open" if a.alert_key in {s.alert_key for s in previous}
                                else "new")
            assert j.decision is None


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(REVIEW, DAYS)
def test_with_no_previous_review_and_no_decision_every_alert_is_new(
        alerts: list[Sighting], as_of: date) -> None:
    out = judge(alerts, [], {}, as_of)
    assert [(j.sighting, j.status, j.why, j.decision) for j in out] == [
        (a, "new", "", None) for a in alerts]


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(sightings(), st.sampled_from(sorted(STANDING - {"resolved"})),
       st.none() | st.integers(1, 400).map(lambda n: AS_OF + timedelta(days=n)),
       st.booleans())
def test_a_standing_decision_on_the_identical_alert_leaves_it_unchanged(
        s: Sighting, state: str, later: date | None, seen_before: bool) -> None:
    d = decided(s, state, follow_up=later, snooze_until=later if state == "snoozed" else None)
    j = one(s, d, (s,) if seen_before else ())
    assert (j.status, j.why, j.decision) == ("unchanged", "", d)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(sightings(), st.booleans())
def test_a_resolved_alert_that_fires_again_is_changed(s: Sighting, seen_before: bool) -> None:
    j = one(s, decided(s, "resolved"), (s,) if seen_before else ())
    assert j.status == "changed" and j.why == "fires again after it was resolved (2026-11-01)"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(sightings(), st.sampled_from(sorted(STANDING)), st.none() | DAYS, st.none() | DAYS, DAYS)
def test_only_dates_reopen_a_decision_on_the_identical_alert(
        s: Sighting, state: str, until: date | None, follow_up: date | None, as_of: date) -> None:
    d = decided(s, state, snooze_until=until, follow_up=follow_up)
    if state == "resolved":
        why = "fires again after it was resolved (2026-11-01)"
    elif state == "snoozed" and until is not None and until <= as_of:
        why = f"snooze ended {until.isoformat()}"
    elif state in ("accepted", "referred") and follow_up is not None and follow_up <= as_of:
        why = f"follow-up date {follow_up.isoformat()} passed and it still fires"
    else:
        why = ""
    j = one(s, d, as_of=as_of)
    assert (j.status, j.why, j.decision) == ("changed" if why else "unchanged", why, d)


# -- each reason for `changed` -----------------------------------------------------------------

@pytest.mark.parametrize("before", SEVERITIES)
@pytest.mark.parametrize("now", SEVERITIES)
def test_only_a_rise_of_severity_reopens(before: str, now: str) -> None:
    d = decided(sighting(severity=before), "overridden", reason_code="taper-plan")
    j = one(sighting(severity=now), d)
    if SEVERITY_RANK[now] < SEVERITY_RANK[before]:
        assert (j.status, j.why) == ("changed", f"severity rose from {before} to {now}")
    else:
        assert (j.status, j.why) == ("unchanged", "")


def test_a_new_ingredient_reopens_a_dropped_one_does_not() -> None:
    d = decided(sighting(ingredients=("oxycodone",)), "accepted")
    assert one(sighting(ingredients=("fentanyl", "oxycodone")), d).why == "new drug: fentanyl"
    assert one(sighting(ingredients=("fentanyl", "morphine", "oxycodone")), d).why == (
        "new drugs: fentanyl, morphine")
    assert one(sighting(ingredients=()), d).status == "unchanged"
    both = decided(sighting(ingredients=("fentanyl", "oxycodone")), "accepted")
    assert one(sighting(ingredients=("oxycodone",)), both).status == "unchanged"
    # a decision that recorded no ingredients is not re-opened by any
    assert one(sighting(ingredients=("fentanyl",)), replace(d, ingredients=())).status == "unchanged"


def test_another_band_reopens() -> None:
    d = decided(sighting(band="crcl < 60", family="renal", level=None), "accepted")
    j = one(sighting(band="crcl < 30", family="renal", level=None), d)
    assert (j.status, j.why) == ("changed", "band changed from crcl < 60 to crcl < 30")
    assert one(sighting(band=None, family="renal", level=None), d).status == "unchanged"


def test_a_higher_dose_reopens_a_lower_one_does_not() -> None:
    d = decided(sighting(level=95.0), "overridden", reason_code="taper-plan")
    j = one(sighting(level=120.0), d)
    assert (j.status, j.why) == ("changed", "MME/day rose from 95 to 120")
    assert one(sighting(level=80.0), d).status == "unchanged"
    assert one(sighting(level=95.05), d).status == "unchanged"  # within 0.1%: the same dose
    assert one(sighting(level=None), d).status == "unchanged"
    dose = decided(sighting(family="renal", band=None, level=1400.0), "accepted")
    assert one(sighting(family="renal", band=None, level=1800.0), dose).why == (
        "daily dose rose from 1400 to 1800")


@pytest.mark.parametrize(("days", "status"), [(-30, "changed"), (-1, "changed"), (0, "changed"),
                                              (1, "unchanged"), (90, "unchanged")])
def test_a_snooze_ends_on_its_date(days: int, status: str) -> None:
    until = AS_OF + timedelta(days=days)
    j = one(sighting(), decided(sighting(), "snoozed", snooze_until=until))
    assert j.status == status
    assert j.why == (f"snooze ended {until.isoformat()}" if status == "changed" else "")


@pytest.mark.parametrize("state", sorted(STANDING - {"resolved"}))
@pytest.mark.parametrize("days", [-5, 0, 5])
def test_a_passed_follow_up_reopens_accepted_and_referred_only(state: str, days: int) -> None:
    follow_up = AS_OF + timedelta(days=days)
    j = one(sighting(), decided(sighting(), state, follow_up=follow_up))
    if days <= 0 and state in ("accepted", "referred"):
        assert (j.status, j.why) == (
            "changed", f"follow-up date {follow_up.isoformat()} passed and it still fires")
    else:
        assert (j.status, j.why) == ("unchanged", "")


def test_a_decision_on_another_band_of_the_lineage_makes_the_successor_changed() -> None:
    was = sighting(MME50, band="MME 50-90", severity="moderate", level=60.0)
    now = sighting(MME90, band="MME 90+", level=120.0)
    assert was.lineage == now.lineage == "opioid-safety|mme|"
    d = decided(was, "overridden", author="bob", reason_code="taper-plan")
    for previous in ((was,), ()):  # the lineage from the last review, or from the decision
        out = judge([now], previous, {MME50: d}, AS_OF)
        assert (out[0].status, out[0].decision) == ("changed", d)
        assert out[0].why == "moved from MME 50-90 (overridden by bob) to MME 90+"
        assert [(j.sighting.alert_key, j.status, j.decision) for j in out[1:]] == (
            [(MME50, "gone", d)] if previous else [])
    # while the sibling still fires, the new band is new
    both = judge([was, now], [was], {MME50: d}, AS_OF)
    assert [(j.sighting.alert_key, j.status) for j in both] == [(MME50, "unchanged"), (MME90, "new")]
    # another pack's or another family's alert is not of the lineage
    other = sighting(MME90, pack="other-pack@1.0.0", band="MME 90+")
    assert judge([other], [was], {MME50: d}, AS_OF)[0].status == "new"
    # a decision that is `open` stands for nothing
    assert judge([now], [was], {MME50: replace(d, state="open")}, AS_OF)[0].status == "new"
    # a sibling decided without a band is named by its key
    out = judge([now], [], {MME50: replace(d, band=None)}, AS_OF)
    assert out[0].why == f"moved from {MME50} (overridden by bob) to MME 90+"


@pytest.mark.parametrize(("gone", "new", "family"), [
    ("opioid-safety/naloxone-not-on-file", "opioid-safety/rec10-no-toxicology-test", "escalation"),
    ("interactions-core/onc-02-atazanavir-ppi", "interactions-core/onc-01-amphetamine-maoi",
     "interaction"),
])
def test_another_rule_of_the_family_is_not_a_lineage_sibling(gone: str, new: str,
                                                             family: str) -> None:
    was = sighting(gone, family=family, band=None, level=None)
    now = sighting(new, family=family, band=None, level=None)
    out = judge([now], [was], {gone: decided(was, "acted")}, AS_OF)
    assert (out[0].status, out[0].decision) == ("new", None)


def test_seen_before_without_a_decision_or_decided_open_is_open() -> None:
    s = sighting()
    j = one(s, None, (replace(s, severity="critical"),))
    assert (j.status, j.why, j.decision) == ("open", "seen before, not decided yet", None)
    d = decided(s, "open")
    j = one(s, d)
    assert (j.status, j.why, j.decision) == ("open", "seen before, not decided yet", d)
    assert one(s).status == "new"


def test_an_alert_gone_keeps_its_decision() -> None:
    a, b = sighting(MME50, band="MME 50-90"), sighting("opioid-safety/naloxone-not-on-file",
                                                        family="escalation", band=None, level=None)
    d = decided(b, "acted")
    out = judge([], [a, b, a], {b.alert_key: d}, AS_OF)
    assert [(j.sighting, j.status, j.decision) for j in out] == [(a, "gone", None), (b, "gone", d)]


def test_lineage_is_pack_family_and_subject() -> None:
    assert lineage("label-dosing@1.0.0", "renal", "label-dosing/gabapentin-max:gabapentin@crcl<60") \
        == "label-dosing|renal|gabapentin"
    assert lineage("opioid-safety@2.0.2", "mme", MME90) == "opioid-safety|mme|"
    assert lineage("x", "renal", "x/r:drug") == "x/r:drug"  # no band: its own lineage


# -- real alerts -------------------------------------------------------------------------------

ENGINE = cds.load_engine(["opioid-safety"])
OXY = "oxycodone hydrochloride 10 MG Oral Tablet"
FENTANYL = "72 HR fentanyl 0.025 MG/HR Transdermal System"


def alerts(oxy_per_day: int, fentanyl: bool = True) -> dict[str, Alert]:
    meds = [MedicationOrder.model_validate(
        {"id": "m1", "text": OXY, "dose": 1, "dose_unit": "tablet", "authored": "2026-08-01",
         "prescriber": "Dr A", "timing": {"frequency": oxy_per_day, "period": 1, "period_unit": "d"}})]
    if fentanyl:
        meds.append(MedicationOrder.model_validate(
            {"id": "m2", "text": FENTANYL, "dose": 1, "dose_unit": "patch", "authored": "2026-08-01",
             "prescriber": "Dr B"}))
    p = Patient(id="p1", birth_date=date(1960, 1, 1), sex="female", medications=meds)
    return {a.key: a for a in ENGINE.evaluate(p, as_of=AS_OF).alerts}


def test_sighting_of_a_real_mme_alert() -> None:
    found = alerts(6)  # oxycodone 60 mg/day (90 MME) + fentanyl 25 mcg/h (60 MME)
    a = found[MME90]
    assert level(a) == 150.0
    s = sighting_of("p1", a, {"m1": "Dr A", "m2": "Dr B", "m9": "Dr Z"})
    assert (s.patient_id, s.alert_key, s.rule, s.pack, s.family, s.severity) == (
        "p1", MME90, "opioid-safety/mme-90", PACK, "mme", "high")
    assert (s.ingredients, s.band, s.level, s.lineage) == (
        ("fentanyl", "oxycodone"), "MME 90+", 150.0, "opioid-safety|mme|")
    assert (s.order_ids, s.prescribers, s.role) == (("m1", "m2"), ("Dr A", "Dr B"), "pain-specialist")
    assert (s.summary, s.rationale, s.actions) == (a.summary, a.rationale, a.actions)
    # a prescriber the caller does not know is left out; one named twice is named once
    assert sighting_of("p1", a, {"m2": "Dr B"}).prescribers == ("Dr B",)
    assert sighting_of("p1", a, {"m1": "Dr B", "m2": "Dr B"}).prescribers == ("Dr B",)
    assert sighting_of("p1", a, {}).prescribers == ()
    # an alert about no dose has no level
    nal = found["opioid-safety/naloxone-not-on-file"]
    assert level(nal) is None and sighting_of("p1", nal, {}).level is None
    assert sighting_of("p1", nal, {}).band is None


def test_level_follows_the_dose_and_the_band_its_key() -> None:
    low = alerts(4, fentanyl=False)  # 40 mg/day oxycodone: 60 MME
    assert MME50 in low and MME90 not in low
    assert (level(low[MME50]), low[MME50].band, low[MME50].ingredients) == (
        60.0, "MME 50-90", ("oxycodone",))
    high = alerts(8, fentanyl=False)  # 120 MME: the 90+ band instead
    assert MME50 not in high and level(high[MME90]) == 120.0
    # the two bands are one lineage: a decision on 50-90 makes the 90+ alert changed
    was, now = sighting_of("p1", low[MME50], {}), sighting_of("p1", high[MME90], {})
    assert was.lineage == now.lineage
    j = judge([now], [was], {MME50: decided(was, "overridden")}, AS_OF)
    assert (j[0].status, j[0].why) == ("changed", "moved from MME 50-90 (overridden by jane) to MME 90+")
    # and a dose that rises within the band (95 -> 120 MME) re-opens a decision made at 95
    at95 = replace(now, level=95.0)
    assert one(now, decided(at95, "overridden")).why == "MME/day rose from 95 to 120"


@pytest.mark.parametrize(("values", "family", "expected"), [
    ({"mme": 150}, "mme", 150.0),
    ({"mme": "90.5 MME/day"}, "mme", 90.5),
    ({"daily_dose": "1800 mg/day"}, "renal", 1800.0),
    ({"daily_dose": 700}, "hepatic", 700.0),
    ({"daily_dose": "unknown"}, "renal", None),
    ({"mme": 150}, "escalation", None),  # only an MME alert states its MME as its level
    ({"daily_dose": "1800 mg/day"}, "mme", None),
    ({}, "interaction", None),
])
def test_level_reads_the_mme_or_the_daily_dose(values: dict[str, Any], family: str,
                                               expected: float | None) -> None:
    a = replace(alerts(6)[MME90], family=family, values=values)
    assert level(a) == expected


def test_judge_accepts_a_real_review_and_its_successor() -> None:
    first = [sighting_of("p1", a, {}) for a in alerts(6).values()]
    assert {j.status for j in judge(first, [], {}, AS_OF)} == {"new"}
    decs = {s.alert_key: decided(s, "acted") for s in first}
    second = [sighting_of("p1", a, {}) for a in alerts(6).values()]
    assert {j.status for j in judge(second, first, decs, AS_OF)} == {"unchanged"}
