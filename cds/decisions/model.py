"""What a pharmacist decided about an alert, and what a run found: the decision layer's
vocabulary and records, shared by the store, the panel, the service, `cds check`, the
exports and the letters.

A decision is filed under (patient, alert key): the key (cds.engine.alerts.alert_key) is the
rule without its version, the drug of a per-medication finding and the dose or function band,
so a decision outlives pack releases and medication-list order. Decisions are append-only:
a change is a new decision with the next `version`; the current one is the latest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, get_args

from cds.vocabulary import SEVERITY_RANK

State = Literal["open", "accepted", "acted", "overridden", "snoozed", "referred", "resolved"]
#: A decision's state: `open` (to decide), `accepted` (the recommendation is to be carried
#: out), `acted` (it was), `overridden` (not acting, with a reason), `snoozed` (until a date),
#: `referred` (to a prescriber or specialist), `resolved` (no longer applies).
STATES: tuple[str, ...] = get_args(State)
#: States under which the alert, while it does not change, needs no new attention.
STANDING: frozenset[str] = frozenset(
    {"accepted", "acted", "overridden", "snoozed", "referred", "resolved"})

Status = Literal["new", "changed", "open", "unchanged", "gone"]
#: What a run says of each alert, against the previous run and the decisions on file:
#: `new` (never seen), `changed` (re-opened: severity rose, a new drug, a higher band, a
#: snooze expired), `open` (seen before, not decided yet), `unchanged` (a standing decision
#: applies), `gone` (fired or was decided before, no longer fires).
STATUSES: tuple[str, ...] = get_args(Status)
#: Worklist order: what needs a pharmacist first.
STATUS_RANK: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}

Source = Literal["csv", "cli", "service", "web", "api"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision (a row of the append-only history)."""

    patient_id: str
    alert_key: str
    state: str  # one of STATES
    author: str
    decided_at: datetime  # UTC
    version: int = 1  # 1 for the first decision on the alert, then 2, 3...
    reason_system: str | None = None
    reason_code: str | None = None
    reason_display: str | None = None
    note: str | None = None
    follow_up: date | None = None
    snooze_until: date | None = None
    referred_to: str | None = None  # a role (prescriber, specialist) or a person
    #: What the decision was made on: the pack (id@version), rule, severity, the alert's
    #: summary, ingredients and band, so a later change of the alert can be told
    pack: str | None = None
    rule: str | None = None
    family: str | None = None
    severity: str | None = None
    summary: str | None = None
    ingredients: tuple[str, ...] = ()
    band: str | None = None
    #: The dose measure the alert stated (MME/day, a daily dose): a rise re-opens it
    level: float | None = None
    source: str = "cli"  # one of Source
    #: The alert's full text and orders when the decision was made (a worklist import, a
    #: card): what a letter to the prescriber quotes
    rationale: str | None = None
    actions: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()
    prescribers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sighting:
    """An alert as a run found it (kept per run, to tell the next run what changed)."""

    patient_id: str
    alert_key: str
    rule: str
    pack: str
    family: str
    severity: str
    summary: str
    ingredients: tuple[str, ...] = ()
    band: str | None = None
    level: float | None = None  # the dose measure the alert states (MME/day, a daily dose)
    #: (pack id, family, subject): alerts of one lineage are one concern at different bands
    #: (MME 50-90 then 90+), so a decision on one makes a successor `changed`, not `new`
    lineage: str = ""
    rationale: str = ""
    actions: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()
    prescribers: tuple[str, ...] = ()
    role: str = "pharmacist"


@dataclass(frozen=True, slots=True)
class Judged:
    """An alert of this run (or one gone since the last) with its status and the decision
    that stands on it, if any."""

    sighting: Sighting
    status: str  # one of STATUSES
    why: str = ""  # what changed, in words ("severity rose from moderate to high")
    decision: Decision | None = None
    extra: dict[str, str] = field(default_factory=dict)


def severity_rose(before: str | None, now: str) -> bool:
    return before is not None and SEVERITY_RANK.get(now, 9) < SEVERITY_RANK.get(before, 9)
