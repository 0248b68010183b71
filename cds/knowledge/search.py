"""How a name or code resolves in the knowledge base (`cds knowledge search TEXT`): the
ingredient it denotes, the classes it belongs to, and where the data came from (the shipped
files or a site folder), so an author or a pharmacist sees why a medication is or is not
recognized."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from cds.knowledge.normalize import identify
from cds.knowledge.store import Knowledge
from cds.patient import Coding, MedicationOrder
from cds.vocabulary import RXNORM


@dataclass(frozen=True)
class Hit:
    kind: str  # class | ingredient | product | name
    matched_by: str  # how TEXT matched: "class id", "ingredient name", "brand", ...
    id: str  # the class id, ingredient name or product RxNorm code
    ingredients: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()  # every class the ingredients belong to
    source: str | None = None
    status: str | None = None
    detail: str | None = None  # a product's name, a class's members, a free text's strength
    site: bool = False  # from a site folder, not the shipped data
    members: tuple[str, ...] = field(default=(), repr=False)


def _classes(kb: Knowledge, ingredients: tuple[str, ...]) -> tuple[str, ...]:
    g = kb.classes.graph
    return tuple(sorted(c for i in ingredients for c in kb.classes.ancestors(i)
                        if g.nodes[c]["kind"] == "class"))


def _name_kind(kb: Knowledge, key: str, ingredient: str) -> str:
    ing = kb.ingredients[ingredient]
    if key == ingredient:
        return "ingredient name"
    if key in ing.precise:
        return "salt (RxNorm precise ingredient)"
    if key in (b.lower() for b in ing.brands):
        return "brand"
    return "site synonym" if key in kb.synonym_sources else "name"


def _site_ingredient(kb: Knowledge, name: str) -> bool:
    return bool(kb.overlays) and name in kb.ingredients and not _shipped(kb, name)


def _shipped(kb: Knowledge, name: str) -> bool:
    from cds.knowledge.store import default_knowledge

    return name in default_knowledge().ingredients


def _ingredient_hit(kb: Knowledge, name: str, matched_by: str, key: str | None = None) -> Hit:
    ing = kb.ingredients[name]
    source = kb.synonym_sources.get(key or "") or ing.source
    return Hit("ingredient", matched_by, name, (name,), _classes(kb, (name,)), source,
               detail=f"RxNorm {ing.rxcui}" if ing.rxcui else None,
               site=matched_by == "site synonym" or _site_ingredient(kb, name))


def search(kb: Knowledge, text: str) -> list[Hit]:
    """Every way `text` resolves: a class id, an ingredient's name, salt, brand or site
    synonym, an RxNorm code (product or ingredient), or a product name read as free text."""
    query = text.strip()
    key = query.lower()
    hits: list[Hit] = []
    g = kb.classes.graph
    if key in g and g.nodes[key]["kind"] == "class":
        node = g.nodes[key]
        members = tuple(sorted(kb.classes.members(key)))
        hits.append(Hit("class", "class id", key, members, _classes_of_class(kb, key),
                        node.get("source"), node.get("status"),
                        detail=f"{node.get('name', key)}: {len(members)} ingredients",
                        members=members))
    if key in kb.names:
        name = kb.names[key]
        hits.append(_ingredient_hit(kb, name, _name_kind(kb, key, name), key))
    if query.isdigit():
        product = kb.products.get(query)
        if product is not None:
            ings = tuple(c.ingredient for c in product.components)
            hits.append(Hit("product", "RxNorm product code", query, ings, _classes(kb, ings),
                            product.source, detail=f"{product.tty} {product.name}",
                            site=bool(kb.overlays) and not _shipped_product(query)))
        if query in kb.by_rxcui:
            hits.append(_ingredient_hit(kb, kb.by_rxcui[query], "RxNorm ingredient code"))
    if not hits:
        order = MedicationOrder(id="search", text=query,
                                codes=[Coding(system=RXNORM, code=query)] if query.isdigit()
                                else [])
        ident = identify(kb, order)
        if ident is not None:
            strengths = ", ".join(f"{s[0]:g} {s[1]}" for s in ident.strengths if s)
            hits.append(Hit("name", f"medication text ({ident.matched_by})", query,
                            ident.ingredients, _classes(kb, ident.ingredients),
                            "; ".join(filter(None, (kb.ingredients[i].source
                                                    for i in ident.ingredients
                                                    if i in kb.ingredients))) or None,
                            detail=" ".join(filter(None, (strengths, ident.dose_form))) or None))
    return hits


def _shipped_product(rxcui: str) -> bool:
    from cds.knowledge.store import default_knowledge

    return rxcui in default_knowledge().products


def _classes_of_class(kb: Knowledge, cls: str) -> tuple[str, ...]:
    """The broader classes of a class."""
    return tuple(sorted(kb.classes.ancestors(cls)))


def near(kb: Knowledge, text: str, n: int = 5) -> list[str]:
    """Names and class ids close to `text` (for a search that found nothing)."""
    candidates = list(kb.names) + kb.classes.class_ids
    return difflib.get_close_matches(text.strip().lower(), candidates, n=n, cutoff=0.6)
