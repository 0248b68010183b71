"""Drug knowledge: ingredients and products (RxNorm), the drug class graph, MME factors,
anticholinergic scores, and the per-patient Facts computed from them (normalized medications,
daily doses, MME, kidney and liver function, the opioid exposure history).

Every clinical value is data under `data/` with its source and status.
"""

from cds.knowledge.facts import Facts, build_facts
from cds.knowledge.store import Knowledge, default_knowledge, load_knowledge

__all__ = ["Facts", "Knowledge", "build_facts", "default_knowledge", "load_knowledge"]
