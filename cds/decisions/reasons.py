"""How a coded reason becomes a decision: the responses each rule offers (its own reasons and
snoozes, pack data), and the decision a CDS Hooks feedback outcome records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from cds.decisions.model import Decision, Sighting
from cds.rules.loader import Pack

#: rule ("pack/rule") -> (code, display, snooze days) of the rule's own responses
Responses = Callable[[str], Sequence[tuple[str, str, int | None]]]


def responses_of(packs: Sequence[Pack]) -> Responses:
    """rule ("pack/rule") -> the responses the rule offers (its own reasons, snoozes)."""
    table = {f"{p.id}/{lr.rule.id}": tuple((r.code, r.display, r.snooze_days)
                                          for r in lr.rule.responses)
             for p in packs for lr in p.rules}
    return lambda rule: table.get(rule, ())


def from_feedback(s: Sighting, *, outcome: str, reason_system: str | None,
                  reason_code: str | None, reason_display: str | None, comment: str | None,
                  at: datetime, author: str, responses: Responses) -> Decision:
    """The decision a card's feedback records: an accepted suggestion is `acted`; an override
    is `overridden`, or `snoozed` when its reason is one of the rule's snoozes (until the
    outcome's date plus the snooze's days)."""
    state, until = ("acted", None) if outcome == "accepted" else ("overridden", None)
    days = next((n for c, _, n in responses(s.rule) if c == reason_code and n), None)
    if outcome != "accepted" and days:
        state, until = "snoozed", at.date() + timedelta(days=days)
    return Decision(
        patient_id=s.patient_id, alert_key=s.alert_key, state=state, author=author,
        decided_at=at, reason_system=reason_system, reason_code=reason_code,
        reason_display=reason_display, note=comment, snooze_until=until, pack=s.pack,
        rule=s.rule, family=s.family, severity=s.severity, summary=s.summary,
        ingredients=s.ingredients, band=s.band, level=s.level, source="service")
