"""Real RxNorm products from the knowledge table, for generated test patients."""

from __future__ import annotations

import csv

from cds.knowledge.store import DATA_DIR

with (DATA_DIR / "rxnorm_products.csv").open(encoding="utf-8") as _fh:
    #: (rxcui, name, dose form, ingredients joined by '|')
    PRODUCTS: list[tuple[str, str, str, str]] = [
        (r["rxcui"], r["name"], r["dose_form"], r["ingredients"]) for r in csv.DictReader(_fh)]


def dose_unit(form: str) -> str:
    """The unit a dose of this dose form is written in."""
    f = form.lower()
    for word, unit in (("transdermal", "patch"), ("capsule", "capsule"), ("solution", "mL"),
                       ("suspension", "mL"), ("spray", "spray"), ("film", "film")):
        if word in f:
            return unit
    return "tablet"
