"""Generators shared by the benchmarks: patients of real RxNorm products, native JSON for
them, and large rule packs built from the knowledge base's real ingredient and class ids.

Everything is seeded (`random.Random(seed)`), so a benchmark run measures the same inputs.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from cds.knowledge.store import DATA_DIR, Knowledge
from cds.patient import Patient

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AS_OF = date(2026, 11, 26)


@lru_cache(maxsize=1)
def products() -> tuple[tuple[str, str, str], ...]:
    """(rxcui, name, dose form) of every product in the bundled RxNorm extract."""
    with (DATA_DIR / "rxnorm_products.csv").open(encoding="utf-8") as fh:
        return tuple((row["rxcui"], row["name"], row["dose_form"]) for row in csv.DictReader(fh))


def _unit(dose_form: str) -> str:
    f = dose_form.lower()
    if "transdermal" in f:
        return "patch"
    if "capsule" in f:
        return "capsule"
    if "solution" in f or "suspension" in f or "injection" in f or "syrup" in f:
        return "mL"
    if "spray" in f:
        return "spray"
    if "film" in f:
        return "film"
    return "tablet"


def medication(rng: random.Random, mid: str, product: tuple[str, str, str], *,
               by_code: bool | None = None, draft: bool = False,
               status: str = "active", authored: date | None = None) -> dict[str, Any]:
    """One native-format order for a product: a dose of 1-2 units, 1-4 times a day."""
    rxcui, name, form = product
    unit = _unit(form)
    order: dict[str, Any] = {"id": mid, "status": status, "draft": draft,
                             "dose": rng.choice([1, 1, 2]) if unit != "mL" else rng.choice([5, 10]),
                             "dose_unit": unit}
    if unit == "patch":
        order["dose"] = 1
        order["timing"] = {"frequency": 1, "period": 3, "period_unit": "d"}
    else:
        order["timing"] = {"frequency": rng.randint(1, 4), "period": 1, "period_unit": "d"}
    if by_code if by_code is not None else rng.random() < 0.5:
        order["codes"] = [{"system": RXNORM, "code": rxcui, "display": name}]
    else:
        order["text"] = name
    if authored is not None:
        order["authored"] = authored.isoformat()
    return order


def patient_data(n_meds: int, seed: int = 0, *, history: int = 0) -> dict[str, Any]:
    """A native-JSON patient with `n_meds` current orders of distinct real products."""
    rng = random.Random(seed)
    prods = rng.sample(products(), n_meds + history)
    meds = [medication(rng, f"m{i}", p, authored=AS_OF - timedelta(days=rng.randint(0, 200)))
            for i, p in enumerate(prods[:n_meds])]
    for i, p in enumerate(prods[n_meds:]):
        start = AS_OF - timedelta(days=rng.randint(10, 300))
        o = medication(rng, f"h{i}", p, status="stopped", authored=start)
        o["supply_days"] = rng.choice([7, 30, 90])
        meds.append(o)
    return {
        "id": f"bench-{n_meds}-{seed}",
        "birth_date": f"{rng.randint(1930, 2000)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "sex": rng.choice(["female", "male"]),
        "observations": [
            {"kind": "weight", "value": rng.randint(45, 120), "unit": "kg", "date": "2026-10-01"},
            {"kind": "creatinine", "value": round(rng.uniform(0.6, 3.5), 2), "unit": "mg/dL",
             "date": "2026-10-01"},
        ],
        "medications": meds,
    }


def patient(n_meds: int, seed: int = 0, *, history: int = 0) -> Patient:
    return Patient.model_validate(patient_data(n_meds, seed, history=history))


def native_json(n_meds: int, seed: int = 0) -> bytes:
    return json.dumps({"format": "cds-native/1", **patient_data(n_meds, seed)}).encode()


def _interaction(rng: random.Random, n: int, ingredients: list[str], classes: list[str]
                 ) -> dict[str, Any]:
    def ref() -> str:
        return rng.choice(classes) if rng.random() < 0.3 else rng.choice(ingredients)

    return {
        "id": f"gen-{n:05d}", "type": "interaction", "a": [ref()], "b": [ref()],
        "severity": rng.choice(["high", "moderate", "low"]),
        "summary": "Generated interaction {a} + {b}",
        "rationale": "{a} is prescribed together with {b} (generated benchmark rule).",
        "mechanism": "generated", "management": "generated",
        "sources": ["benchmarks/generate.py"],
    }


def write_pack(root: Path, kb: Knowledge, n_rules: int, seed: int = 0,
               pack_id: str | None = None, avoid: frozenset[str] = frozenset()) -> Path:
    """A pack of `n_rules` interaction rules between real ingredients and classes of `kb`;
    none names an ingredient of `avoid` or a class holding one (a pack that cannot match)."""
    rng = random.Random(seed)
    pid = pack_id or f"generated-{n_rules}" + ("-disjoint" if avoid else "")
    folder = root / pid
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    classes = [c for c in kb.classes.class_ids
               if kb.classes.graph.nodes[c].get("status", "confirmed") == "confirmed"
               and kb.classes.members(c) and not kb.classes.members(c) & avoid]
    ingredients = [i for i in kb.classes.ingredient_names if i not in avoid]
    rules = [_interaction(rng, n, ingredients, classes) for n in range(n_rules)]
    meta = {
        "id": pid, "version": "1.0.0", "title": f"{n_rules} generated rules",
        "description": "Generated for benchmarks: real ingredient and class ids, made-up pairs.",
        "knowledge": f">={kb.version}", "maintainers": ["benchmarks"],
        "changelog": [{"version": "1.0.0", "date": "2026-11-26", "changes": ["generated"]}],
    }
    (folder / "pack.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    (folder / "rules" / "generated.yaml").write_text(
        yaml.safe_dump({"rules": rules}, sort_keys=False), encoding="utf-8")
    return folder
