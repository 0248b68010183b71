"""The knowledge files checked against themselves: every RxNorm product row parsed from its
own name, every reference resolvable, every entry sourced."""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from cds.knowledge.names import parse_rxnorm_name
from cds.knowledge.normalize import RXNORM, identify
from cds.knowledge.store import DATA_DIR, Knowledge, default_knowledge, load_knowledge
from cds.patient import Coding, MedicationOrder


def _rows() -> list[dict[str, str]]:
    with (DATA_DIR / "rxnorm_products.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _yaml(name: str) -> Any:
    return yaml.safe_load((DATA_DIR / name).read_text(encoding="utf-8"))


ROWS = _rows()
INGREDIENTS = _yaml("ingredients.yaml")["ingredients"]
CLASSES = _yaml("classes.yaml")["classes"]
MME = _yaml("mme_factors.yaml")
ACB = _yaml("anticholinergic.yaml")

#: The opioids of the CDC 2022 MME table (plus buprenorphine, excluded by it): the offline
#: table must hold products of each.
CDC_OPIOIDS = ("codeine", "fentanyl", "hydrocodone", "hydromorphone", "methadone", "morphine",
               "oxycodone", "oxymorphone", "tapentadol", "tramadol", "buprenorphine")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("|")]


# --- every product row against its own RxNorm name -----------------------------------------

@pytest.mark.parametrize("row", ROWS, ids=[r["rxcui"] for r in ROWS])
def test_product_row_matches_its_rxnorm_name(kb: Knowledge, row: dict[str, str]) -> None:
    parsed = parse_rxnorm_name(row["name"])
    assert parsed is not None, f"{row['name']!r} does not parse"
    ingredients = _split(row["ingredients"])
    strengths = [float(s) for s in _split(row["strengths"])]
    units = _split(row["units"])
    assert len(parsed.components) == len(ingredients)
    # Each component's written name (with its salt) resolves, through the names index, to the
    # ingredient the row claims.
    ident = identify(kb, MedicationOrder(id="row", text=row["name"]))
    assert ident is not None and ident.matched_by == "rxnorm-name"
    assert list(ident.ingredients) == ingredients
    assert [c.strength for c in parsed.components] == strengths
    assert [c.unit for c in parsed.components] == units
    assert parsed.dose_form == row["dose_form"]
    assert parsed.route == row["route"]
    assert (parsed.brand is not None) == (row["tty"] == "SBD")
    assert row["tty"] in ("SCD", "SBD")
    assert row["source"].strip(), "every product row names its source"


@pytest.mark.parametrize("row", ROWS, ids=[r["rxcui"] for r in ROWS])
def test_product_code_and_name_agree(kb: Knowledge, row: dict[str, str]) -> None:
    """Looking a product up by its RxCUI and by its name give the same identity."""
    product = kb.products[row["rxcui"]]
    by_code = identify(kb, MedicationOrder(id="c", codes=[Coding(system=RXNORM, code=row["rxcui"])]))
    by_name = identify(kb, MedicationOrder(id="n", text=row["name"]))
    assert by_code is not None and by_name is not None
    assert by_code.matched_by == "rxcui-product" and by_code.rxcui == row["rxcui"]
    assert by_code.ingredients == by_name.ingredients
    assert by_code.strengths == by_name.strengths
    assert (by_code.route, by_code.form) == (by_name.route, by_name.form)
    assert by_code.extended_release == by_name.extended_release == product.extended_release
    assert product.route == row["route"]


def test_rxcuis_and_names_are_unique() -> None:
    assert len({r["rxcui"] for r in ROWS}) == len(ROWS)
    assert len({r["name"] for r in ROWS}) == len(ROWS)
    assert len(default_knowledge().products) == len(ROWS)


def test_every_product_ingredient_is_known(kb: Knowledge) -> None:
    unknown = {i for r in ROWS for i in _split(r["ingredients"]) if i not in kb.ingredients}
    assert unknown == set()


@pytest.mark.parametrize("opioid", CDC_OPIOIDS)
def test_table_covers_the_cdc_opioids(opioid: str) -> None:
    assert any(opioid in _split(r["ingredients"]) for r in ROWS)


def test_table_covers_common_opioid_forms() -> None:
    forms = {(i, r["dose_form"]) for r in ROWS for i in _split(r["ingredients"])}
    for need in [("fentanyl", "Transdermal System"), ("oxycodone", "Oral Tablet"),
                 ("oxycodone", "Extended Release Oral Tablet"), ("morphine", "Oral Solution"),
                 ("hydrocodone", "Oral Tablet"), ("buprenorphine", "Sublingual Film"),
                 ("methadone", "Oral Tablet")]:
        assert need in forms, need


def test_examples_from_the_issue_are_in_the_table() -> None:
    names = {r["name"] for r in ROWS}
    assert "oxycodone hydrochloride 5 MG Oral Tablet" in names
    assert "72 HR fentanyl 0.025 MG/HR Transdermal System" in names
    assert "acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet" in names


def test_extended_release_flag(kb: Knowledge) -> None:
    for r in ROWS:
        er = "Extended Release" in r["dose_form"] or r["name"].split(" [")[0].count(" HR ") > 0
        assert kb.products[r["rxcui"]].extended_release == er, r["name"]


# --- ingredients -----------------------------------------------------------------------------

def test_ingredient_entries(kb: Knowledge) -> None:
    names = [e["name"] for e in INGREDIENTS]
    assert len(names) == len(set(names)) == len(kb.ingredients)
    codes = [str(e["rxcui"]) for e in INGREDIENTS if e.get("rxcui")]
    assert len(codes) == len(set(codes))
    for e in INGREDIENTS:
        assert e["name"] == e["name"].lower().strip()
        assert e.get("source"), e["name"]
        assert e.get("status") in ("confirmed", "secondary", "unconfirmed"), e["name"]
        # An RxCUI is recorded only with a public source; unconfirmed ones have none.
        assert bool(e.get("rxcui")) == (e["status"] != "unconfirmed"), e["name"]
        if e.get("rxcui"):
            assert str(e["rxcui"]).isdigit()
            assert kb.by_rxcui[str(e["rxcui"])] == e["name"]


def test_names_index_is_unambiguous(kb: Knowledge) -> None:
    """No ingredient, salt or brand name is claimed by two ingredients."""
    owner: dict[str, str] = {}
    for e in INGREDIENTS:
        for n in [e["name"], *(e.get("precise") or []), *(e.get("brands") or [])]:
            assert owner.setdefault(n.lower(), e["name"]) == e["name"], n
            assert kb.ingredient_of(n) == e["name"]


# --- classes -----------------------------------------------------------------------------------

def test_class_members_and_parents_are_known(kb: Knowledge) -> None:
    ids = {c["id"] for c in CLASSES}
    assert len(ids) == len(CLASSES)
    for c in CLASSES:
        for m in c.get("members") or []:
            assert m in kb.ingredients, f"class {c['id']}: unknown member {m!r}"
        for p in c.get("parents") or []:
            assert p in ids, f"class {c['id']}: unknown parent {p!r}"
    # Nothing entered the graph without a kind (a typo would add a bare node).
    assert all("kind" in d for _, d in kb.classes.graph.nodes(data=True))


def test_class_graph_is_acyclic(kb: Knowledge) -> None:
    assert nx.is_directed_acyclic_graph(kb.classes.graph)


def test_no_class_id_is_an_ingredient_name(kb: Knowledge) -> None:
    assert {c["id"] for c in CLASSES} & set(kb.ingredients) == set()
    assert set(kb.classes.class_ids) & set(kb.classes.ingredient_names) == set()


def test_class_edges_point_from_narrow_to_broad(kb: Knowledge) -> None:
    g = kb.classes.graph
    for u, v in g.edges:
        assert g.nodes[v]["kind"] == "class", (u, v)


def test_class_look_ups(kb: Knowledge) -> None:
    c = kb.classes
    assert c.is_a("oxycodone", "opioid") and c.is_a("oxycodone", "opioid-agonist")
    assert c.is_a("oxycodone", "cns-depressant")  # through opioid's parent
    assert c.is_a("buprenorphine", "opioid")
    assert not c.is_a("naloxone", "opioid")
    assert c.is_a("oxycodone", "oxycodone")
    assert "oxycodone" in c.members("opioid") and "naloxone" not in c.members("opioid")
    assert c.members("oxycodone") == frozenset({"oxycodone"})
    assert c.members("no-such-thing") == frozenset() and c.ancestors("nope") == frozenset()
    assert c.kind("opioid") == "class" and c.kind("oxycodone") == "ingredient"
    assert c.kind("nope") is None
    assert c.class_source("opioid")


def test_ancestry_is_cached_and_survives_pickling() -> None:
    graph = load_knowledge().classes
    for node in ("fentanyl", "opioid-agonist"):  # an ingredient and a class
        first = graph.ancestors(node)
        assert graph.ancestors(node) is first  # memoized, not recomputed
        assert first == frozenset(nx.descendants(graph.graph, node))
    clone = pickle.loads(pickle.dumps(graph))
    assert clone.ancestors("fentanyl") == graph.ancestors("fentanyl")
    assert clone.ancestors("opioid-agonist") == graph.ancestors("opioid-agonist")
    assert clone.is_a("fentanyl", "cns-depressant")


# --- MME factors, anticholinergic scores, sources --------------------------------------------

def test_mme_factor_ingredients_are_known_opioids(kb: Knowledge) -> None:
    for f in MME["factors"]:
        assert f["ingredient"] in kb.ingredients, f["ingredient"]
        assert kb.classes.is_a(f["ingredient"], "opioid"), f["ingredient"]
        assert f["status"] in ("confirmed", "secondary", "analytic")
        assert f["basis"] in ("mg/day", "mcg/h", "mcg/day")
        assert f["factor"] > 0 and f["routes"]
        assert f.get("source"), f
    for e in MME["excluded"]:
        assert e["ingredient"] in kb.ingredients and e["reason"] and e["source"]
    assert MME["factor_set"] == kb.mme_factor_set == "cdc-2022"


def test_anticholinergic_ingredients_are_known(kb: Knowledge) -> None:
    scores = [s["ingredient"] for s in ACB["scores"]]
    assert len(scores) == len(set(scores))
    assert set(scores) <= set(kb.ingredients), set(scores) - set(kb.ingredients)
    assert all(s["score"] in (1, 2, 3) for s in ACB["scores"])
    assert ACB["source"] and kb.anticholinergic.source


def test_every_knowledge_entry_has_a_source(kb: Knowledge) -> None:
    missing = [e["name"] for e in INGREDIENTS if not e.get("source")]
    missing += [c["id"] for c in CLASSES if not c.get("source")]
    missing += [f["ingredient"] for f in MME["factors"] if not f.get("source")]
    missing += [r["rxcui"] for r in ROWS if not r.get("source", "").strip()]
    assert missing == []
    assert all(p.source for p in kb.products.values())
    assert all(kb.classes.class_source(c) for c in kb.classes.class_ids)


def test_knowledge_digest_is_stable_and_tracks_content(tmp_path: Path) -> None:
    a, b = load_knowledge(), load_knowledge()
    assert a.digest == b.digest and a.version == b.version
    shutil.copytree(DATA_DIR, tmp_path, dirs_exist_ok=True)  # value sets in data/valuesets/
    assert load_knowledge(tmp_path).digest == a.digest
    acb = tmp_path / "anticholinergic.yaml"
    acb.write_text(acb.read_text().replace("{ingredient: amitriptyline, score: 3}",
                                           "{ingredient: amitriptyline, score: 2}"))
    changed = load_knowledge(tmp_path)
    assert changed.digest != a.digest and changed.anticholinergic.scores["amitriptyline"] == 2
