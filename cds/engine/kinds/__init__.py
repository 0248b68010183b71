"""Rule kinds: one module per rule type, each the one home of that type's indexing, matching,
explanation and template placeholders (see docs/architecture.md, "How to add a rule kind").
"""

from __future__ import annotations

from typing import Any

from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.engine.kinds.burden import BurdenKind
from cds.engine.kinds.data_quality import DataQualityKind
from cds.engine.kinds.duplication import DuplicationKind
from cds.engine.kinds.escalation import EscalationKind
from cds.engine.kinds.expression import ExpressionKind
from cds.engine.kinds.guideline import ConditionKind, OpioidOrderKind, ToxicologyKind
from cds.engine.kinds.hepatic import HepaticKind
from cds.engine.kinds.interaction import InteractionKind
from cds.engine.kinds.mme import MmeKind
from cds.engine.kinds.renal import RenalKind
from cds.engine.kinds.renal_monitoring import RenalMonitoringKind

#: Rule type (the schema's `type:`) -> its kind.
KINDS: dict[str, RuleKind] = {k.type: k for k in (
    InteractionKind(), BurdenKind(), MmeKind(), RenalKind(), RenalMonitoringKind(), HepaticKind(),
    EscalationKind(), ExpressionKind(), DuplicationKind(), OpioidOrderKind(), ConditionKind(),
    ToxicologyKind(), DataQualityKind())}


def kind_of(rule: Any) -> RuleKind:
    """The kind of a rule of the pack schema."""
    return KINDS[rule.type]


__all__ = ["KINDS", "Condition", "Index", "RuleKind", "kind_of"]
