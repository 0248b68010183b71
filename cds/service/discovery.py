"""The discovery document: one service per hook, each with the same prefetch templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds.service.prefetch import templates


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    drafts: bool  # evaluates context.draftOrders


SERVICES: dict[str, Service] = {s.id: s for s in (
    Service("order-select", "order-select", "Medication safety: order selection",
            "Checks the medications being selected (context.draftOrders) against the patient's "
            "current medications, dispenses, renal function and weight: interactions, opioid "
            "dosage (MME) and escalation, CNS and anticholinergic burden, renal and hepatic "
            "dosing.", True),
    Service("order-sign", "order-sign", "Medication safety: order signing",
            "Checks the medication orders about to be signed (context.draftOrders) against "
            "the patient's current medications, dispenses, renal function and weight.", True),
    Service("patient-view", "patient-view", "Medication safety: medication list review",
            "Reviews the patient's whole current medication list when the chart is opened.",
            False),
)}


def discovery(pack_refs: tuple[str, ...], dispense_days: int,
              today: date) -> dict[str, Any]:
    prefetch = templates(dispense_days, today)
    packs = ", ".join(pack_refs) or "no rule packs"
    return {"services": [
        {"hook": s.hook, "id": s.id, "title": s.title,
         "description": f"{s.description} Rule packs: {packs}.",
         "prefetch": dict(prefetch),
         "usageRequirements": "Prefetch keys left out are fetched from fhirServer with "
                              "fhirAuthorization; send a key as null when there is no such data."}
        for s in SERVICES.values()]}
