"""The domain's fixed vocabularies, each written once: severities, families, roles, code
systems and routes of administration. Every layer (input, knowledge, rules, engine, renderers)
reads them from here, so two layers can never spell one idea two ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

# -- severities, alert families, roles --------------------------------------------------------

Severity = Literal["critical", "high", "moderate", "low", "info"]
#: Most severe first: the one severity order of the product (priority, dedup, worklist, CLI).
SEVERITIES: tuple[str, ...] = get_args(Severity)
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

Family = Literal["interaction", "duplication", "burden", "mme", "renal", "hepatic", "escalation",
                 "guideline", "data-quality"]
#: Every family an alert can carry; `data-quality` alerts are about the record itself (what
#: could not be checked, and why), not about a clinical topic.
FAMILIES: tuple[str, ...] = get_args(Family)
DATA_QUALITY = "data-quality"

Role = Literal["pharmacist", "prescriber", "pain-specialist", "specialist"]
ROLES: tuple[str, ...] = get_args(Role)

# -- override reasons -----------------------------------------------------------------------
# The coded reasons a clinician gives for not acting on an alert: CDS Hooks overrideReasons on
# a card, the reason of a pharmacist's decision (cds.decisions). A rule's own responses (pack
# data) come first; these are offered with every alert, and by family.

#: The code system of the reasons (and of a rule's responses) when none is configured.
OVERRIDE_REASON_SYSTEM = "urn:cds:CodeSystem:override-reason"
COMMON_REASONS = (
    ("benefit-outweighs-risk", "Benefit outweighs risk for this patient"),
    ("patient-monitored", "Patient will be monitored"),
    ("already-addressed", "Already addressed"),
    ("data-inaccurate", "Alert data inaccurate or outdated"),
    ("patient-declined", "Patient declined"),
)
FAMILY_REASONS: dict[str, tuple[tuple[str, str], ...]] = {
    "interaction": (("short-course", "Short course, will stop one drug"),),
    "duplication": (("taper-or-switch", "Taper or switch in progress"),
                    ("intended-combination", "Combination intended")),
    "mme": (("palliative-care", "Cancer, palliative or end-of-life care"),
            ("taper-plan", "Taper plan in place")),
    "escalation": (("palliative-care", "Cancer, palliative or end-of-life care"),
                   ("taper-plan", "Taper plan in place")),
    "renal": (("dose-already-adjusted", "Dose already adjusted for renal function"),),
    "hepatic": (("dose-already-adjusted", "Dose already adjusted for hepatic function"),),
}


def reasons_for(family: str, own: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(code, display) of every reason an alert of `family` offers: the rule's own first,
    then the common ones and the family's, each code once."""
    out: dict[str, str] = {}
    for code, display in (*own, *COMMON_REASONS, *FAMILY_REASONS.get(family, ())):
        out.setdefault(code, display)
    return list(out.items())


# -- code systems -------------------------------------------------------------------------------

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# -- routes of administration -----------------------------------------------------------------

#: The route words rules and knowledge files use. `injection` is a parenteral route the dose form
#: does not narrow down ("Injectable Solution"); a stated route keeps its own word.
ROUTES = frozenset({
    "oral", "transdermal", "buccal", "sublingual", "nasal", "rectal", "topical", "ophthalmic",
    "inhalation", "intravenous", "intramuscular", "subcutaneous", "injection", "epidural",
    "intrathecal", "vaginal", "otic",
})

#: SNOMED CT route-of-administration codes (qualifier values) -> route word.
SNOMED_ROUTES: dict[str, str] = {
    "26643006": "oral",
    "45890007": "transdermal",
    "54471007": "buccal",
    "37839007": "sublingual",
    "46713006": "nasal",
    "37161004": "rectal",
    "47625008": "intravenous",
    "78421000": "intramuscular",
    "34206005": "subcutaneous",
}

#: Spellings seen in orders and sigs -> route word.
_ROUTE_SPELLINGS: dict[str, str] = {
    "po": "oral", "p.o.": "oral", "by mouth": "oral", "orally": "oral", "oral use": "oral",
    "td": "transdermal", "sl": "sublingual", "intranasal": "nasal", "pr": "rectal",
    "iv": "intravenous", "im": "intramuscular", "sc": "subcutaneous", "subq": "subcutaneous",
    "subcut": "subcutaneous", "sq": "subcutaneous", "cutaneous": "topical",
    "respiratory tract": "inhalation", "inhaled": "inhalation",
}


def route_word(text: str | None) -> str | None:
    """The route word for a route as written ("PO", "Oral route (qualifier value)", "IV"); text
    that names no known route is kept, lower case, so it is reported rather than guessed."""
    if text is None:
        return None
    word = text.strip().lower().replace("(qualifier value)", "").strip()
    word = word.removesuffix(" route").removeprefix("route:").strip()
    if not word:
        return None
    if word in ROUTES:
        return word
    if word in _ROUTE_SPELLINGS:
        return _ROUTE_SPELLINGS[word]
    for spelled, route in _SUBSTRINGS:  # "oral tablet", "intravenous push", "by mouth daily"
        if spelled in word:
            return route
    return word


#: Spellings of more than three letters, longest first, for finding a route inside a phrase.
_SUBSTRINGS: tuple[tuple[str, str], ...] = tuple(sorted(
    [(r, r) for r in ROUTES if len(r) > 3]
    + [(k, v) for k, v in _ROUTE_SPELLINGS.items() if len(k) > 3],
    key=lambda kv: len(kv[0]), reverse=True))
