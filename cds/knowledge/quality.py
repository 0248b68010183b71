"""What could not be checked in a patient's record, and why: the data-quality findings.

A safety check that quietly skips a medication is worse than one that says it could not check
it. Every current medication that is not recognized, an opioid left out of the MME total, a
dose unit that is not one `cds` can use, an order whose text names another drug than its code,
and a value no patient can have (cds/knowledge/plausible.py) are listed here, each with the
medication or value, the field where known, and the reason. The engine reports them as
`data-quality` alerts (the built-in `data-quality` pack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the knowledge store imports this module (via plausible.py)
    from cds.knowledge.mme import MmeResult
    from cds.knowledge.normalize import NormalizedMed
    from cds.patient import MedicationOrder

#: The kinds of finding, as the `check:` of data-quality rules names them.
CHECKS = ("unrecognized", "not-counted", "dose-unit", "code-text-mismatch", "implausible")


@dataclass(frozen=True, slots=True)
class DataIssue:
    check: str  # one of CHECKS
    order_id: str | None
    medication: str | None  # as the record names it
    reason: str  # plain words, naming the value
    field: str | None = None  # where in the record, when known


def record_issues(current: list[NormalizedMed], unrecognized: list[NormalizedMed],
                  mme: MmeResult, orders: dict[str, MedicationOrder]) -> tuple[DataIssue, ...]:
    """The data-quality findings of the current medications (one per medication and check)."""
    out: list[DataIssue] = [
        DataIssue("unrecognized", m.order_id, m.label, m.reason or "not recognized")
        for m in unrecognized]
    not_counted = set()
    for e in mme.excluded:
        if e.uncounted and e.order_id not in not_counted:
            not_counted.add(e.order_id)
            out.append(DataIssue("not-counted", e.order_id, e.medication,
                                 f"not counted in the MME total: {e.reason}",
                                 _unit_field(orders.get(e.order_id), e.reason)))
    for m in current:
        if m.text_names:
            out.append(DataIssue(
                "code-text-mismatch", m.order_id, m.label,
                f"the code is for {' / '.join(m.ingredients)} but the text names "
                f"{' / '.join(m.text_names)}: checked as {' / '.join(m.ingredients)}, the "
                f"coded drug (the code is what the EHR acts on); correct the order",
                "medication code and text"))
        if (m.order_id not in not_counted and m.daily_reason
                and m.daily_reason.startswith("unknown dose unit")):
            order = orders.get(m.order_id)
            out.append(DataIssue(
                "dose-unit", m.order_id, m.label,
                f"{m.daily_reason}: the daily dose could not be computed, so dose limits "
                f"were checked as if exceeded", _unit_field(order, m.daily_reason)))
    return tuple(out)


def _unit_field(order: MedicationOrder | None, reason: str) -> str | None:
    if order is None or "dose unit" not in reason:
        return None
    return order.dose_field or "dose_unit"
