"""Load the versioned knowledge files once into an immutable, picklable `Knowledge`."""

from __future__ import annotations

import csv
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds.knowledge.classes import ClassGraph
from cds.knowledge.names import form_route
from cds.knowledge.plausible import Plausibility, load_plausibility
from cds.knowledge.valuesets import ValueSet, load_value_sets

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class Ingredient:
    name: str
    rxcui: str | None
    precise: tuple[str, ...]
    brands: tuple[str, ...]
    source: str | None


@dataclass(frozen=True, slots=True)
class ProductComponent:
    ingredient: str
    strength: float
    unit: str  # RxNorm spelling: MG, MCG, MG/ML, MG/HR, ...


@dataclass(frozen=True, slots=True)
class Product:
    rxcui: str
    tty: str
    name: str
    components: tuple[ProductComponent, ...]
    dose_form: str
    route: str | None
    form: str | None
    extended_release: bool
    source: str


@dataclass(frozen=True, slots=True)
class MmeFactor:
    ingredient: str
    routes: tuple[str, ...]
    forms: tuple[str, ...]  # empty: any form
    basis: str  # mg/day | mcg/h | mcg/day
    factor: float
    status: str  # confirmed | secondary | analytic
    source: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class AnticholinergicScale:
    scale: str
    version: str
    source: str
    scores: dict[str, int]
    threshold_note: str | None = None


@dataclass(frozen=True, eq=False)
class Knowledge:
    """Hashable by identity, so per-knowledge caches can key on it."""

    version: str
    digest: str
    ingredients: dict[str, Ingredient]
    by_rxcui: dict[str, str]  # ingredient rxcui -> name
    names: dict[str, str]  # lower-case IN / PIN / brand name -> ingredient name
    products: dict[str, Product]
    classes: ClassGraph
    mme_factors: dict[str, tuple[MmeFactor, ...]]
    mme_excluded: dict[str, tuple[str, str]]  # ingredient -> (reason, source)
    mme_factor_set: str
    anticholinergic: AnticholinergicScale
    #: What a record's values can possibly be (data/plausibility.yaml)
    plausibility: Plausibility
    #: Ingredients counted as opioids: members of the opioid class, or with an MME factor.
    opioids: frozenset[str] = frozenset()
    #: Child-Pugh part (ascites, encephalopathy) -> condition codes that record it
    #: (system, code with ICD-10-CM dots removed)
    child_pugh_codes: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    #: value set id -> ValueSet (data/valuesets/): what guideline rules look for
    value_sets: dict[str, ValueSet] = field(default_factory=dict)
    #: lower-case name -> where a site overlay's synonym came from (its `source`, its file)
    synonym_sources: dict[str, str] = field(default_factory=dict)
    #: the site overlay folders merged into the shipped data (docs/knowledge-format.md)
    overlays: tuple[str, ...] = ()

    def is_opioid(self, ingredients: Iterable[str]) -> bool:
        """The one "is an opioid" test: any ingredient an opioid (a member of the opioid class,
        or one with an MME factor or an MME exclusion such as buprenorphine)."""
        return not self.opioids.isdisjoint(ingredients)

    def child_pugh_part(self, conditions: Iterable[Any], part: str) -> str | None:
        """"present" when an active condition records the Child-Pugh part (ascites,
        encephalopathy), without a grade; None when none does."""
        codes = self.child_pugh_codes.get(part, frozenset())
        for c in conditions:
            if c.status == "active" and c.code and (c.system or "", _code_key(c.code)) in codes:
                return "present"
        return None

    def ingredient_of(self, name: str) -> str | None:
        return self.names.get(name.strip().lower())

    def known(self, name: str) -> bool:
        """An ingredient or class id the knowledge base knows."""
        return name in self.classes.graph


def _code_key(code: str) -> str:
    """ICD-10-CM is written with or without its dot (K70.31, K7031): one key for both."""
    return code.replace(".", "").upper()


def _yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("|")] if value else []


def _products(path: Path, names: dict[str, str]) -> dict[str, Product]:
    out: dict[str, Product] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ings = _split(row["ingredients"])
            strengths = _split(row["strengths"])
            units = _split(row["units"])
            comps = tuple(
                ProductComponent(names.get(i.lower(), i.lower()), float(s), u.upper())
                for i, s, u in zip(ings, strengths, units, strict=True)
            )
            route, form = form_route(row["dose_form"])
            name = row["name"]
            out[row["rxcui"].strip()] = Product(
                rxcui=row["rxcui"].strip(), tty=row["tty"].strip(), name=name, components=comps,
                dose_form=row["dose_form"], route=row.get("route") or route, form=form,
                extended_release=("Extended Release" in row["dose_form"]
                                  or name.split(" ", 2)[1:2] == ["HR"]),
                source=row.get("source", ""),
            )
    return out


@dataclass(frozen=True)
class SiteData:
    """A site's additions to the shipped knowledge (an overlay folder), already validated
    (cds/rules/overlay.py checks them against the shipped data and names file and line)."""

    folder: str
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    #: {name, ingredient, source}: another name for a known ingredient
    synonyms: list[dict[str, Any]] = field(default_factory=list)
    #: new classes, or {id, members, parents} added to a shipped class
    classes: list[dict[str, Any]] = field(default_factory=list)
    #: rxnorm_products.csv files in the shipped columns
    products: list[Path] = field(default_factory=list)
    #: every file read, for the digest
    files: list[Path] = field(default_factory=list)


def _merge_classes(shipped: list[dict[str, Any]], extra: Iterable[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    by_id = {c["id"]: dict(c) for c in shipped}
    for c in extra:
        have = by_id.get(c["id"])
        if have is None:
            by_id[c["id"]] = dict(c)
            continue
        for key in ("members", "parents"):
            have[key] = [*(have.get(key) or []), *(c.get(key) or [])]
    return list(by_id.values())


def load_knowledge(data_dir: Path = DATA_DIR, site: Iterable[SiteData] = ()) -> Knowledge:
    """Read every knowledge file, and a site's additions; the digest ties alerts to the exact
    data used."""
    site = list(site)
    h = hashlib.sha256()
    for p in sorted(data_dir.rglob("*")):
        if p.suffix in {".yaml", ".csv"}:
            h.update(str(p.relative_to(data_dir)).encode())
            h.update(p.read_bytes())
    for s in site:
        for p in s.files:
            h.update(b"site:" + p.name.encode())
            h.update(p.read_bytes())
    ing_doc = _yaml(data_dir / "ingredients.yaml")
    ingredients: dict[str, Ingredient] = {}
    names: dict[str, str] = {}
    by_rxcui: dict[str, str] = {}
    for e in [*ing_doc["ingredients"], *(i for s in site for i in s.ingredients)]:
        ing = Ingredient(
            name=e["name"].lower(), rxcui=str(e["rxcui"]) if e.get("rxcui") else None,
            precise=tuple(p.lower() for p in e.get("precise", []) or []),
            brands=tuple(e.get("brands", []) or []), source=e.get("source"),
        )
        ingredients[ing.name] = ing
        if ing.rxcui:
            by_rxcui[ing.rxcui] = ing.name
    # Ingredient and precise names win over brands when a string is both.
    for ing in ingredients.values():
        for b in ing.brands:
            names.setdefault(b.lower(), ing.name)
    for ing in ingredients.values():
        for precise in ing.precise:
            names[precise] = ing.name
        names[ing.name] = ing.name
    synonym_sources: dict[str, str] = {}
    for s in site:
        for syn in s.synonyms:
            names[syn["name"].strip().lower()] = syn["ingredient"]
            synonym_sources[syn["name"].strip().lower()] = f"{syn['source']} ({s.folder})"

    cls_doc = _yaml(data_dir / "classes.yaml")
    graph = ClassGraph(_merge_classes(cls_doc["classes"], (c for s in site for c in s.classes)),
                       ingredients)

    mme_doc = _yaml(data_dir / "mme_factors.yaml")
    factors: dict[str, list[MmeFactor]] = {}
    for f in mme_doc["factors"]:
        factors.setdefault(f["ingredient"], []).append(MmeFactor(
            ingredient=f["ingredient"], routes=tuple(f["routes"]), forms=tuple(f.get("forms", [])),
            basis=f["basis"], factor=float(f["factor"]), status=f["status"], source=f["source"],
            note=f.get("note"),
        ))
    excluded = {e["ingredient"]: (e["reason"], e["source"]) for e in mme_doc.get("excluded", [])}

    acb_doc = _yaml(data_dir / "anticholinergic.yaml")
    acb = AnticholinergicScale(
        scale=acb_doc["scale"], version=str(acb_doc["version"]), source=acb_doc["source"],
        scores={s["ingredient"]: int(s["score"]) for s in acb_doc["scores"]},
        threshold_note=acb_doc.get("threshold_note"),
    )
    products = _products(data_dir / "rxnorm_products.csv", names)
    for s in site:
        for path in s.products:
            products.update(_products(path, names))
    cp_doc = _yaml(data_dir / "child_pugh.yaml")
    child_pugh_codes = {part: frozenset((e["system"], _code_key(str(e["code"])))
                                        for e in cp_doc.get(part, []))
                        for part in ("ascites", "encephalopathy")}
    return Knowledge(
        version=str(ing_doc["version"]), digest=h.hexdigest()[:16], ingredients=ingredients,
        by_rxcui=by_rxcui, names=names, products=products, classes=graph,
        mme_factors={k: tuple(v) for k, v in factors.items()}, mme_excluded=excluded,
        mme_factor_set=mme_doc["factor_set"], anticholinergic=acb,
        plausibility=load_plausibility(data_dir / "plausibility.yaml"),
        opioids=graph.members("opioid") | frozenset(factors) | frozenset(excluded),
        child_pugh_codes=child_pugh_codes,
        value_sets=load_value_sets(data_dir / "valuesets"),
        synonym_sources=synonym_sources, overlays=tuple(s.folder for s in site),
    )


@functools.cache
def default_knowledge() -> Knowledge:
    """The bundled knowledge, loaded once per process."""
    return load_knowledge()
