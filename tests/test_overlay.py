"""Site knowledge: a pack's `knowledge/` folder, or one beside the packs, adds ingredients,
synonyms, classes and products in the shipped format, validated (file, line, field) and
sourced; `search` shows how a name or code resolves.

The site data below is test data in a temporary folder: isoniazid is a real ingredient the
shipped knowledge does not hold; the product's code is marked as not a real RxNorm code."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rules_loader import line_of, write_pack

from cds.engine.evaluator import load_engine
from cds.errors import PackError, PackErrors
from cds.knowledge.search import search
from cds.knowledge.store import Knowledge, default_knowledge
from cds.patient import MedicationOrder, Patient
from cds.rules.loader import load_pack
from cds.rules.overlay import pack_knowledge, site_knowledge

INGREDIENTS = """\
ingredients:
  - name: isoniazid
    precise: [isoniazid]
    brands: [Nydrazid]
    source: "test fixture: site formulary"
synonyms:
  - {name: INH, ingredient: isoniazid, source: "test fixture: site formulary abbreviation"}
  - {name: Oxy IR, ingredient: oxycodone, source: "test fixture: site order-entry name"}
"""
CLASSES = """\
classes:
  - id: site-antituberculosis
    name: antituberculosis agents (site)
    members: [isoniazid]
    source: "test fixture: site formulary class"
  - id: opioid
    members: []
    source: "test fixture: no change"
"""
PRODUCTS = """\
rxcui,tty,name,ingredients,strengths,units,dose_form,route,source
990000001,SCD,isoniazid 300 MG Oral Tablet,isoniazid,300,MG,Oral Tablet,oral,test fixture (not real)
"""
RULE = """\
rules:
  - id: opioid-isoniazid
    type: interaction
    a: opioid
    b: site-antituberculosis
    severity: low
    summary: "{a} with {b}"
    rationale: A site's own pairing, for the test.
    mechanism: test
    management: test
    sources: ["test fixture"]
"""


def site_folder(folder: Path, ingredients: str = INGREDIENTS, classes: str = CLASSES,
                products: str = PRODUCTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ingredients.yaml").write_text(ingredients)
    (folder / "classes.yaml").write_text(classes)
    (folder / "rxnorm_products.csv").write_text(products)
    return folder


def errors(folder: Path) -> list[PackError]:
    with pytest.raises(PackErrors) as e:
        site_knowledge([folder])
    return e.value.errors


def test_site_data_is_merged(tmp_path: Path) -> None:
    kb = site_knowledge([site_folder(tmp_path / "knowledge")])
    shipped = default_knowledge()
    assert kb is not shipped and kb.digest != shipped.digest and kb.version == shipped.version
    assert "isoniazid" not in shipped.ingredients and "isoniazid" in kb.ingredients
    assert kb.ingredient_of("INH") == "isoniazid" and kb.ingredient_of("nydrazid") == "isoniazid"
    assert kb.ingredient_of("oxy ir") == "oxycodone"
    assert kb.classes.is_a("isoniazid", "site-antituberculosis")
    assert kb.products["990000001"].components[0].ingredient == "isoniazid"
    assert kb.classes.members("opioid") == shipped.classes.members("opioid")  # extended by nothing
    assert site_knowledge([tmp_path / "knowledge"]) is kb  # memoized on the content
    assert site_knowledge([tmp_path / "nothing"]) is shipped  # no folder: the shipped object


def test_search_shows_how_a_name_resolves(tmp_path: Path) -> None:
    kb = site_knowledge([site_folder(tmp_path / "knowledge")])
    (hit,) = search(kb, "INH")
    assert (hit.kind, hit.id, hit.matched_by, hit.site) == ("ingredient", "isoniazid",
                                                           "site synonym", True)
    assert "site-antituberculosis" in hit.classes and "abbreviation" in (hit.source or "")
    (product,) = search(kb, "990000001")
    assert product.kind == "product" and product.ingredients == ("isoniazid",) and product.site
    shipped = default_knowledge()
    (oxy,) = search(shipped, "OxyContin")
    assert (oxy.id, oxy.matched_by, oxy.site) == ("oxycodone", "brand", False)
    assert "opioid" in oxy.classes and oxy.source
    (cls,) = search(shipped, "opioid")
    assert cls.kind == "class" and "oxycodone" in cls.ingredients
    (code,) = search(shipped, shipped.ingredients["oxycodone"].rxcui or "")
    assert code.matched_by == "RxNorm ingredient code"
    (text,) = search(shipped, "oxycodone hydrochloride 5 MG Oral Tablet")
    assert text.kind == "name" and text.ingredients == ("oxycodone",)
    assert search(shipped, "no such drug at all") == []


def test_a_pack_with_its_own_knowledge(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "rulesets" / "site-pack", RULE)
    with pytest.raises(PackErrors) as e:
        load_pack(pack, default_knowledge())
    assert "unknown drug or class 'site-antituberculosis'" in str(e.value)
    plain_digest = None
    site_folder(pack / "knowledge")
    kb = pack_knowledge(pack)
    loaded = load_pack(pack, kb)
    assert loaded.rule("opioid-isoniazid") is not None
    assert loaded.digest != plain_digest and len(loaded.digest) == 16
    engine = load_engine([str(pack)])  # the engine picks the pack's knowledge up itself
    assert engine.kb.ingredient_of("INH") == "isoniazid"
    patient = Patient(id="p", medications=[
        MedicationOrder(id="a", text="INH 300 mg tablet"),
        MedicationOrder(id="b", text="oxycodone hydrochloride 5 MG Oral Tablet")])
    from datetime import date
    rules = {a.rule for a in engine.evaluate(patient, as_of=date(2026, 12, 1)).alerts}
    assert "test-pack/opioid-isoniazid" in rules


def test_knowledge_beside_the_packs(tmp_path: Path) -> None:
    root = tmp_path / "rulesets"
    write_pack(root / "site-pack", RULE)
    site_folder(root / "knowledge")
    engine = load_engine(["test-pack"], roots=[root])
    assert "site-antituberculosis" in engine.kb.classes.class_ids
    assert engine.kb.overlays == (str((root / "knowledge").resolve()),)


def test_engine_without_site_folders_keeps_the_shipped_knowledge() -> None:
    assert load_engine(["opioid-safety"]).kb is default_knowledge()


@pytest.mark.parametrize(("file", "old", "new", "field", "message", "suggestion"), [
    ("ingredients.yaml", "    source: \"test fixture: site formulary\"\n", "", "ingredients[0].source",
     "source is required", None),
    ("ingredients.yaml", "name: isoniazid", "name: oxycodone", "ingredients[0].name",
     "'oxycodone' is already a name of 'oxycodone'", None),
    ("ingredients.yaml", "name: isoniazid", "name: Isoniazid", "ingredients[0].name",
     "lower-case", None),
    ("ingredients.yaml", "ingredient: oxycodone", "ingredient: oxycodon", "synonyms[1].ingredient",
     "unknown ingredient 'oxycodon'", "oxycodone"),
    ("ingredients.yaml", "name: Oxy IR", "name: Nydrazid", "synonyms[1].name",
     "'Nydrazid' already names 'isoniazid'", None),
    ("classes.yaml", "members: [isoniazid]", "members: [isoniazide]", "classes[0].members",
     "unknown ingredient 'isoniazide'", "isoniazid"),
    ("classes.yaml", "    members: []\n", "    parents: [opiod]\n", "classes[1].parents",
     "unknown class 'opiod'", "opioid"),
    ("classes.yaml", "    source: \"test fixture: no change\"\n", "    sourse: x\n",
     "classes[1].sourse", "unknown field 'sourse'", "source"),
])
def test_site_data_errors_name_file_line_and_field(tmp_path: Path, file: str, old: str, new: str,
                                                   field: str, message: str,
                                                   suggestion: str | None) -> None:
    folder = site_folder(tmp_path / "knowledge")
    path = folder / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    errs = errors(folder)
    match = [e for e in errs if e.field == field]
    assert match, [str(e) for e in errs]
    e = match[0]
    assert e.file == str(path.resolve()) and message in e.message, str(e)
    assert e.suggestion == suggestion
    anchor = (new or old).strip().split("\n")[0].split(":")[0] if new else "- name: isoniazid"
    assert e.line is not None and e.line >= 1
    if new:
        assert e.line == line_of(path, new.strip()) or e.line == line_of(path, anchor)


def test_product_rows_are_checked(tmp_path: Path) -> None:
    rows = PRODUCTS + ("oops,XYZ,isoniazid 100 MG Oral Tablet,isoniazd,abc,MG,Oral Tablet,oral,\n"
                       "1049621,SCD,oxycodone hydrochloride 5 MG Oral Tablet,oxycodone,5,MG,"
                       "Oral Tablet,oral,x\n")
    path = site_folder(tmp_path / "knowledge", products=rows) / "rxnorm_products.csv"
    errs = {(e.line, e.field): e for e in errors(path.parent)}
    assert "rxcui must be an RxNorm code" in errs[(3, "rxcui")].message
    assert "tty must be" in errs[(3, "tty")].message
    assert errs[(3, "ingredients")].suggestion == "isoniazid"
    assert "'abc' is not a positive number" in errs[(3, "strengths")].message
    assert "source is required" in errs[(3, "source")].message
    assert "already a product" in errs[(4, "rxcui")].message


def test_unknown_file_in_a_site_folder(tmp_path: Path) -> None:
    folder = site_folder(tmp_path / "knowledge")
    (folder / "ingredient.yaml").write_text("ingredients: []\n")
    (e,) = errors(folder)
    assert "unknown knowledge file 'ingredient.yaml'" in e.message
    assert e.suggestion == "ingredients.yaml"


def test_kb_fixture_is_shipped(kb: Knowledge) -> None:
    assert not kb.overlays and not kb.synonym_sources
