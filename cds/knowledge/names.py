"""Parse RxNorm-style clinical drug names into components, dose form and route.

RxNorm SCD names are regular ("[NN HR ]ingredient strength UNIT[ / ...] Dose Form
[Brand]"), so a small grammar reads them exactly; free text ("oxycodone 5mg tab") falls back
to finding known ingredient names in the text (see normalize.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"\d+(?:\.\d+)?"
_COMPONENT = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z0-9 ,'\-\(\)\.]*?)\s+(?P<strength>{_NUM})\s+(?P<unit>[A-Z][A-Z/]*)$"
)
_LAST = re.compile(
    rf"^(?P<name>[A-Za-z][A-Za-z0-9 ,'\-\(\)\.]*?)\s+(?P<strength>{_NUM})\s+(?P<unit>[A-Z][A-Z/]*)"
    r"\s+(?P<form>[A-Za-z][A-Za-z \-]*?)\s*$"
)
_DURATION = re.compile(r"^(?P<hours>\d+)\s+HR\s+")
#: RxNorm name prefixes that qualify the product, not the ingredient.
_QUALIFIERS = re.compile(r"^(?:(?:Abuse-Deterrent|Sprinkle|Osmotic|PMDD)\s+)+")
_BRAND = re.compile(r"\s*\[(?P<brand>[^\]]+)\]\s*$")

#: Dose form words -> (route, form category). Longest phrases first.
_FORMS: list[tuple[str, str, str]] = [
    ("transdermal system", "transdermal", "patch"),
    ("transdermal patch", "transdermal", "patch"),
    ("buccal film", "buccal", "film"),
    ("buccal tablet", "buccal", "tablet"),
    ("sublingual film", "sublingual", "film"),
    ("sublingual tablet", "sublingual", "tablet"),
    ("sublingual spray", "sublingual", "spray"),
    ("mucosal spray", "sublingual", "spray"),
    ("oral lozenge", "buccal", "lozenge"),
    ("lozenge", "buccal", "lozenge"),
    ("nasal spray", "nasal", "spray"),
    ("rectal suppository", "rectal", "suppository"),
    ("injectable solution", "injection", "solution"),
    ("injectable suspension", "injection", "suspension"),
    ("injection", "injection", "solution"),
    ("prefilled syringe", "injection", "solution"),
    ("cartridge", "injection", "solution"),
    ("auto-injector", "injection", "solution"),
    ("oral solution", "oral", "solution"),
    ("oral suspension", "oral", "suspension"),
    ("oral concentrate", "oral", "solution"),
    ("oral capsule", "oral", "capsule"),
    ("oral tablet", "oral", "tablet"),
    ("disintegrating oral tablet", "oral", "tablet"),
    ("chewable tablet", "oral", "tablet"),
    ("tablet for oral suspension", "oral", "tablet"),
    ("oral film", "oral", "film"),
    ("topical", "topical", "topical"),
    ("ophthalmic", "ophthalmic", "drops"),
    ("inhalation", "inhalation", "inhalant"),
    ("metered dose inhaler", "inhalation", "inhalant"),
    ("dry powder inhaler", "inhalation", "inhalant"),
    ("tablet", "oral", "tablet"),
    ("capsule", "oral", "capsule"),
]


@dataclass(frozen=True, slots=True)
class ParsedComponent:
    name: str  # as written, lower case (may include the salt)
    strength: float
    unit: str  # RxNorm unit, upper case: MG, MCG, MG/ML, MG/HR, ...


@dataclass(frozen=True, slots=True)
class ParsedName:
    components: tuple[ParsedComponent, ...]
    dose_form: str  # RxNorm dose form as written, e.g. "Extended Release Oral Tablet"
    route: str | None
    form: str | None
    extended_release: bool
    duration_hours: int | None
    brand: str | None


#: Longest phrase first, so "tablet for oral suspension" is a tablet, not "oral suspension".
_FORMS_LONGEST_FIRST = sorted(_FORMS, key=lambda f: len(f[0]), reverse=True)


def form_route(dose_form: str) -> tuple[str | None, str | None]:
    """(route, form category) of an RxNorm dose form; (None, None) when unknown."""
    text = dose_form.lower()
    for phrase, route, form in _FORMS_LONGEST_FIRST:
        if phrase in text:
            return route, form
    return None, None


def parse_rxnorm_name(name: str) -> ParsedName | None:
    """Parse an RxNorm SCD/SBD-style name; None when it is not in that shape."""
    text = name.strip()
    brand = None
    b = _BRAND.search(text)
    if b:
        brand = b.group("brand")
        text = text[: b.start()].strip()
    text = _QUALIFIERS.sub("", text)
    hours = None
    d = _DURATION.match(text)
    if d:
        hours = int(d.group("hours"))
        text = text[d.end():]
    parts = [p.strip() for p in text.split(" / ")]
    components: list[ParsedComponent] = []
    for p in parts[:-1]:
        m = _COMPONENT.match(p)
        if not m:
            return None
        components.append(ParsedComponent(m.group("name").lower(), float(m.group("strength")),
                                          m.group("unit")))
    last = _LAST.match(parts[-1])
    if not last:
        return None
    components.append(ParsedComponent(last.group("name").lower(), float(last.group("strength")),
                                      last.group("unit")))
    dose_form = last.group("form")
    route, form = form_route(dose_form)
    er = hours is not None or "extended release" in dose_form.lower()
    return ParsedName(tuple(components), dose_form, route, form, er, hours, brand)


_FREE_STRENGTH = re.compile(
    rf"(?P<strength>{_NUM})\s*(?P<unit>mcg/hr|mcg/h|mcg/hour|mg/hr|mg/ml|mg/5\s*ml|mg|mcg|ug|g)\b",
    re.IGNORECASE,
)


def free_text_strength(text: str) -> tuple[float, str] | None:
    """The first 'number unit' in free text, unit normalized to RxNorm spelling."""
    m = _FREE_STRENGTH.search(text)
    if not m:
        return None
    unit = m.group("unit").lower().replace(" ", "")
    value = float(m.group("strength"))
    if unit == "mg/5ml":
        return value / 5, "MG/ML"
    unit = {"mcg/h": "MCG/HR", "mcg/hour": "MCG/HR", "ug": "MCG"}.get(unit, unit.upper())
    return value, unit
