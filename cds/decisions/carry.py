"""Carry-forward: what each alert of a review is, against the patient's previous review and
the decisions on file. One function, used by the panel (per patient, in its workers), the
CDS Hooks service (which cards to hold back) and `cds check --db`.

- `new`: never seen for this patient, and no decision on it or on its lineage;
- `changed`: a standing decision no longer fits the alert: its severity rose, a drug was
  added to it, it moved to another band of its lineage (MME 50-90 to 90+), a snooze expired,
  its follow-up date passed, or it fires again after it was resolved;
- `open`: seen in the previous review, or decided `open`, but not decided yet;
- `unchanged`: a standing decision applies and nothing it was made on changed;
- `gone`: fired in the previous review, no longer fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from cds.decisions.model import STANDING, Decision, Judged, Sighting, severity_rose
from cds.engine.alerts import Alert


def lineage(pack: str, family: str, alert_key: str) -> str:
    """Alerts of one lineage are one concern at different bands or tiers (MME 50-90 then
    90+; a drug's kidney band): the pack, the family and the subject of a banded key. An alert
    without a band is its own lineage (two rules of one family are two concerns)."""
    if "@" not in alert_key:
        return alert_key
    rest = alert_key.split("/", 1)[-1].split("@", 1)[0]
    subject = rest.split(":", 1)[1] if ":" in rest else ""
    return f"{pack.partition('@')[0]}|{family}|{subject}"


def sighting_of(patient_id: str, a: Alert, prescribers: Mapping[str, str]) -> Sighting:
    """An alert as the decision layer keeps it; `prescribers`: order id -> prescriber."""
    return Sighting(
        patient_id, a.key, a.rule, a.pack, a.family, a.severity, a.summary, a.ingredients,
        a.band, level(a), lineage(a.pack, a.family, a.key), a.rationale, a.actions, a.order_ids,
        tuple(sorted({p for o in a.order_ids if (p := prescribers.get(o))})), a.role)


def level(a: Alert) -> float | None:
    """The dose measure an alert states: its MME/day, else the daily dose of a dose-limit
    finding ("120 mg/day"); None for an alert about no dose."""
    v = a.values.get("mme") if a.family == "mme" else a.values.get("daily_dose")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        head = v.split(" ", 1)[0]
        try:
            return float(head)
        except ValueError:
            return None
    return None


def judge(alerts: Sequence[Sighting], previous: Sequence[Sighting],
          decisions: Mapping[str, Decision], as_of: date) -> list[Judged]:
    """The status of each alert of this review (in the given order), then the alerts of the
    previous review that are gone."""
    before = {s.alert_key: s for s in previous}
    by_lineage: dict[str, list[Decision]] = {}
    for key, standing in decisions.items():
        if standing.state in STANDING:
            by_lineage.setdefault(_lineage_of_decision(key, standing, before), []).append(standing)
    out = []
    now = {a.alert_key for a in alerts}
    for a in alerts:
        d = decisions.get(a.alert_key)
        if d is not None and d.state in STANDING:
            why = changed(a, d, as_of)
            out.append(Judged(a, "changed" if why else "unchanged", why, d))
            continue
        sibling = next((s for s in by_lineage.get(a.lineage, ()) if s.alert_key not in now),
                       None)
        if sibling is not None and d is None:
            out.append(Judged(a, "changed", f"moved from {sibling.band or sibling.alert_key} "
                                            f"({sibling.state} by {sibling.author}) to "
                                            f"{a.band or a.alert_key}", sibling))
        elif d is not None or a.alert_key in before:
            out.append(Judged(a, "open", "seen before, not decided yet", d))
        else:
            out.append(Judged(a, "new", "", None))
    for key, s in before.items():
        if key not in now:
            out.append(Judged(s, "gone", "no longer fires", decisions.get(key)))
    return out


def changed(a: Sighting, d: Decision, as_of: date) -> str:
    """Why the decision `d` no longer covers alert `a` (empty: it still does)."""
    if d.state == "resolved":
        return f"fires again after it was resolved ({d.decided_at:%Y-%m-%d})"
    if d.state == "snoozed" and d.snooze_until is not None and d.snooze_until <= as_of:
        return f"snooze ended {d.snooze_until.isoformat()}"
    if severity_rose(d.severity, a.severity):
        return f"severity rose from {d.severity} to {a.severity}"
    added = sorted(set(a.ingredients) - set(d.ingredients)) if d.ingredients else []
    if added:
        return f"new drug{'s' if len(added) > 1 else ''}: {', '.join(added)}"
    if d.band is not None and a.band is not None and d.band != a.band:
        return f"band changed from {d.band} to {a.band}"
    if d.level is not None and a.level is not None and a.level > d.level * 1.001:
        what = "MME/day" if a.family == "mme" else "daily dose"
        return f"{what} rose from {d.level:g} to {a.level:g}"
    if d.follow_up is not None and d.follow_up <= as_of and d.state in ("accepted", "referred"):
        return f"follow-up date {d.follow_up.isoformat()} passed and it still fires"
    return ""


def _lineage_of_decision(key: str, d: Decision, before: Mapping[str, Sighting]) -> str:
    s = before.get(key)
    if s is not None:
        return s.lineage
    return lineage(d.pack or key.split("/", 1)[0], d.family or "", key)


def counts(judged: Iterable[Judged]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in judged:
        out[j.status] = out.get(j.status, 0) + 1
    return out
