"""Coverage of the most-prescribed US drugs: the ClinCalc DrugStats Top 300 (2023 data) in
cds/knowledge/data/top300.yaml, each entry mapped to RxNorm ingredient names that the knowledge base
knows, each ingredient sourced; and the common names of those drugs resolve to the ingredient."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cds.knowledge.normalize import RXNORM, identify
from cds.knowledge.store import DATA_DIR, Knowledge
from cds.patient import Coding, MedicationOrder


def _yaml(name: str) -> Any:
    return yaml.safe_load((DATA_DIR / name).read_text(encoding="utf-8"))


TOP300 = _yaml("top300.yaml")
ENTRIES = TOP300["entries"]
INGREDIENTS = {e["name"]: e for e in _yaml("ingredients.yaml")["ingredients"]}
CLASSES = _yaml("classes.yaml")["classes"]

#: The 300 names, in rank order, exactly as ClinCalc lists them (2023 data, DrugStats 2025.08).
#: A change to top300.yaml that drops, renames or reorders an entry fails here.
CLINCALC_2023 = (
    "Atorvastatin", "Metformin", "Levothyroxine", "Lisinopril", "Amlodipine", "Metoprolol",
    "Albuterol", "Losartan", "Gabapentin", "Omeprazole", "Sertraline", "Rosuvastatin",
    "Pantoprazole", "Escitalopram",
    "Dextroamphetamine; Dextroamphetamine Saccharate; Amphetamine; Amphetamine Aspartate",
    "Hydrochlorothiazide", "Bupropion", "Fluoxetine", "Semaglutide", "Montelukast", "Trazodone",
    "Simvastatin", "Amoxicillin", "Tamsulosin", "Acetaminophen; Hydrocodone", "Fluticasone",
    "Meloxicam", "Apixaban", "Furosemide", "Insulin Glargine", "Duloxetine", "Ibuprofen",
    "Famotidine", "Empagliflozin", "Carvedilol", "Tramadol", "Alprazolam", "Prednisone",
    "Hydroxyzine", "Buspirone", "Clopidogrel", "Glipizide", "Citalopram", "Potassium Chloride",
    "Allopurinol", "Aspirin", "Cyclobenzaprine", "Ergocalciferol", "Oxycodone", "Methylphenidate",
    "Venlafaxine", "Spironolactone", "Ondansetron", "Zolpidem", "Cetirizine", "Estradiol",
    "Pravastatin", "Hydrochlorothiazide; Lisinopril", "Lamotrigine", "Quetiapine",
    "Fluticasone; Salmeterol", "Clonazepam", "Dulaglutide", "Azithromycin",
    "Hydrochlorothiazide; Losartan", "Amoxicillin; Clavulanate", "Latanoprost", "Cholecalciferol",
    "Propranolol", "Ezetimibe", "Topiramate", "Paroxetine", "Diclofenac", "Budesonide; Formoterol",
    "Atenolol", "Lisdexamfetamine", "Doxycycline", "Pregabalin",
    "Ethinyl Estradiol; Norethindrone", "Glimepiride", "Tizanidine", "Clonidine", "Fenofibrate",
    "Insulin Lispro", "Valsartan", "Cephalexin", "Baclofen", "Rivaroxaban", "Ferrous Sulfate",
    "Amitriptyline", "Finasteride", "Dapagliflozin", "Acetaminophen; Oxycodone", "Folic Acid",
    "Aripiprazole", "Olmesartan", "Ethinyl Estradiol; Norgestimate", "Valacyclovir", "Mirtazapine",
    "Lorazepam", "Levetiracetam", "Insulin Aspart", "Naproxen", "Cyanocobalamin", "Loratadine",
    "Diltiazem", "Sumatriptan", "Triamcinolone", "Hydralazine", "Tirzepatide", "Celecoxib",
    "Acetaminophen", "Alendronate", "Oxybutynin", "Hydrochlorothiazide; Triamterene", "Warfarin",
    "Progesterone", "Fluticasone; Umeclidinium; Vilanterol", "Testosterone", "Nifedipine",
    "Methocarbamol", "Benzonatate", "Sitagliptin", "Chlorthalidone", "Isosorbide", "Donepezil",
    "Dexmethylphenidate", "Sulfamethoxazole; Trimethoprim", "Clobetasol", "Methotrexate",
    "Hydroxychloroquine", "Lovastatin", "Pioglitazone", "Irbesartan", "Methylprednisolone",
    "Norethindrone", "Meclizine", "Ethinyl Estradiol; Levonorgestrel", "Fluticasone; Vilanterol",
    "Ketoconazole", "Thyroid", "Azelastine", "Nitrofurantoin", "Adalimumab", "Memantine",
    "Prednisolone", "Esomeprazole", "Docusate", "Clindamycin", "Acyclovir", "Sildenafil",
    "Insulin Degludec", "Insulin Detemir", "Drospirenone; Ethinyl Estradiol", "Ciprofloxacin",
    "Morphine", "Insulin Human; Insulin Isophane Human", "Levocetirizine",
    "Nirmatrelvir; Ritonavir", "Valproate", "Atomoxetine", "Budesonide", "Tiotropium", "Melatonin",
    "Cefdinir", "Doxepin", "Olanzapine", "Phentermine", "Ofloxacin",
    "Ethinyl Estradiol; Etonogestrel", "Mupirocin", "Benazepril", "Timolol", "Magnesium Salts",
    "Fluconazole", "Risperidone", "Verapamil", "Linaclotide", "Cyclosporine", "Doxazosin",
    "Albuterol; Ipratropium", "Hydrocortisone", "Diazepam", "Telmisartan", "Carbamazepine",
    "Amlodipine; Benazepril", "Lithium", "Evolocumab", "Desvenlafaxine", "Dorzolamide",
    "Nebivolol", "Dicyclomine", "Torsemide", "Anastrozole", "Enalapril",
    "Polyethylene Glycol 3350", "Tretinoin", "Tadalafil", "Sacubitril; Valsartan", "Calcium",
    "Pramipexole", "Mesalamine", "Metronidazole", "Nortriptyline", "Emtricitabine; Tenofovir",
    "Rimegepant", "Nitroglycerin", "Rizatriptan", "Liraglutide", "Acetaminophen; Codeine",
    "Ramipril", "Ropinirole", "Brimonidine", "Mirabegron", "Colchicine", "Ticagrelor", "Terazosin",
    "Amiodarone", "Fexofenadine", "Liothyronine", "Bisoprolol", "Omega-3-acid Ethyl Esters",
    "Flecainide", "Oxcarbazepine", "Desogestrel; Ethinyl Estradiol", "Ascorbic Acid",
    "Sodium Salts", "Ketorolac", "Dorzolamide; Timolol", "Promethazine", "Levofloxacin",
    "Labetalol", "Nystatin", "Cyproheptadine", "Erythromycin", "Dutasteride", "Moxifloxacin",
    "Bimatoprost", "Primidone", "Sucralfate", "Betamethasone; Clotrimazole", "Senna; Docusate",
    "Bumetanide", "Icosapent Ethyl", "Solifenacin", "Dexamethasone", "Epinephrine", "Penicillin V",
    "Calcitriol", "Oseltamivir", "Polymyxin B; Trimethoprim", "Dextromethorphan; Promethazine",
    "Terbinafine", "Linagliptin", "Methimazole", "Metoclopramide", "Medroxyprogesterone",
    "Pancrelipase Amylase; Pancrelipase Lipase; Pancrelipase Protease", "Clotrimazole",
    "Dexamethasone; Neomycin; Polymyxin B", "Calcium Phosphate; Cholecalciferol",
    "Acetaminophen; Butalbital; Caffeine", "Guanfacine", "Sodium Fluoride", "Codeine; Guaifenesin",
    "Lactulose", "Fluorouracil", "Ipratropium", "Olopatadine", "Chlorhexidine", "Nabumetone",
    "Mometasone", "Polyethylene Glycol 3350 With Electrolytes", "Hydroquinone", "Phenazopyridine",
    "Loperamide", "Lidocaine", "Ciclopirox", "Cefuroxime", "Betamethasone",
    "Brompheniramine; Dextromethorphan; Pseudoephedrine", "Ethinyl Estradiol; Norgestrel",
    "Ciprofloxacin; Dexamethasone", "Diphenhydramine", "Ethinyl Estradiol; Norelgestromin",
    "Atropine; Diphenoxylate", "Indomethacin", "Niacin", "Lactate", "Vitamin E", "Guaifenesin",
    "Pseudoephedrine", "Bisacodyl", "Riboflavin", "Ivermectin", "Etodolac",
    "Lactobacillus Acidophilus", "Tobramycin", "Ketotifen", "Loratadine; Pseudoephedrine",
)

#: ClinCalc groupings that name no single RxNorm ingredient (salt families, an unclear entry):
#: the only entries allowed to map to no ingredient.
UNMAPPED = frozenset({"Magnesium Salts", "Calcium", "Sodium Salts", "Lactate"})

TOP_INGREDIENTS = sorted({i for e in ENTRIES for i in e["ingredients"]})


def test_the_list_is_named_dated_and_sourced() -> None:
    meta = TOP300["list"]
    assert meta["name"] == "ClinCalc DrugStats Top 300"
    assert meta["year"] == 2023
    assert meta["read_from"].strip() and meta["url"].startswith("https://clincalc.com/")
    assert meta["status"] in ("confirmed", "secondary")


def test_entries_are_the_clincalc_list_in_rank_order() -> None:
    assert len(CLINCALC_2023) == 300 == len(set(CLINCALC_2023))
    assert [e["rank"] for e in ENTRIES] == list(range(1, 301))
    assert [e["listed_as"] for e in ENTRIES] == list(CLINCALC_2023)


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['rank']}-{e['listed_as']}" for e in ENTRIES])
def test_every_top300_entry_maps_to_known_ingredients(kb: Knowledge, entry: dict[str, Any]) -> None:
    ingredients = entry["ingredients"]
    if entry["listed_as"] in UNMAPPED:
        assert ingredients == [] and entry.get("note"), "an unmapped grouping says why"
        return
    assert ingredients, f"{entry['listed_as']!r} maps to no ingredient"
    missing = [i for i in ingredients if i not in kb.ingredients]
    assert missing == [], f"{entry['listed_as']!r}: not in ingredients.yaml: {missing}"
    assert all(i == i.lower().strip() for i in ingredients)


def test_at_least_290_distinct_ingredients() -> None:
    assert len(TOP_INGREDIENTS) >= 290


@pytest.mark.parametrize("name", TOP_INGREDIENTS)
def test_every_top300_ingredient_is_sourced(name: str) -> None:
    e = INGREDIENTS[name]
    assert e.get("source", "").strip(), name
    assert e.get("status") in ("confirmed", "secondary", "unconfirmed"), name
    # a code only with a public source; an unconfirmed ingredient is matched by name alone
    if e.get("rxcui"):
        assert e["status"] != "unconfirmed" and str(e["rxcui"]).isdigit(), name
    else:
        assert e["status"] == "unconfirmed", name


def test_rxcuis_are_unique_across_ingredients(kb: Knowledge) -> None:
    codes = [str(e["rxcui"]) for e in INGREDIENTS.values() if e.get("rxcui")]
    duplicated = sorted({c for c in codes if codes.count(c) > 1})
    assert duplicated == []
    assert len(kb.by_rxcui) == len(codes)


def test_every_class_member_exists(kb: Knowledge) -> None:
    unknown = {(c["id"], m) for c in CLASSES for m in c.get("members") or []
               if m not in kb.ingredients}
    assert unknown == set()


@pytest.mark.parametrize(("ingredient", "klass"), [
    ("atorvastatin", "statin"), ("rosuvastatin", "statin"),
    ("metoprolol", "beta-blocker"), ("carvedilol", "beta-blocker"),
    ("propranolol", "beta-blocker-nonselective"),
    ("amlodipine", "ccb-dihydropyridine"), ("diltiazem", "ccb-nondihydropyridine"),
    ("amlodipine", "calcium-channel-blocker"), ("lisinopril", "ace-inhibitor"), ("losartan", "arb"),
    ("hydrochlorothiazide", "thiazide"), ("furosemide", "loop-diuretic"), ("apixaban", "anticoagulant"),
    ("rivaroxaban", "direct-oral-anticoagulant"), ("clopidogrel", "p2y12-inhibitor"),
    ("ticagrelor", "antiplatelet"), ("omeprazole", "proton-pump-inhibitor"),
    ("famotidine", "h2-receptor-antagonist"), ("metformin", "biguanide"), ("glipizide", "sulfonylurea"),
    ("empagliflozin", "sglt2-inhibitor"), ("sitagliptin", "dpp4-inhibitor"),
    ("semaglutide", "glp1-receptor-agonist"), ("insulin glargine", "insulin"),
    ("sertraline", "ssri"), ("duloxetine", "snri"), ("meloxicam", "nsaid"),
    ("isosorbide mononitrate", "nitrate-vasodilator"), ("sildenafil", "pde5-inhibitor"),
    ("potassium chloride", "potassium-supplement"), ("levothyroxine", "thyroid-hormone"),
    ("alendronate", "bisphosphonate"), ("prednisone", "corticosteroid"),
    ("fluticasone", "corticosteroid-local"), ("lamotrigine", "antiepileptic"),
    ("quetiapine", "antipsychotic"), ("doxazosin", "alpha1-blocker"), ("tamsulosin", "alpha1-blocker"),
])
def test_top300_drugs_are_in_their_classes(kb: Knowledge, ingredient: str, klass: str) -> None:
    assert ingredient in kb.classes.members(klass)


def test_local_corticosteroids_are_not_systemic_corticosteroids(kb: Knowledge) -> None:
    assert not kb.classes.is_a("fluticasone", "corticosteroid")
    assert not kb.classes.is_a("tamsulosin", "alpha1-blocker-nonselective")


# --- the common names of the drugs resolve ----------------------------------------------------

@pytest.mark.parametrize(("text", "ingredients", "matched_by"), [
    ("metformin hydrochloride 500 MG Oral Tablet", ("metformin",), "rxnorm-name"),
    ("levothyroxine sodium 0.05 MG Oral Tablet", ("levothyroxine",), "rxnorm-name"),
    ("amLODIPine 5 MG Oral Tablet", ("amlodipine",), "rxnorm-name"),
    ("hydrochlorothiazide 12.5 MG / lisinopril 10 MG Oral Tablet", ("hydrochlorothiazide", "lisinopril"),
     "rxnorm-name"),
    ("amoxicillin 875 MG / clavulanate potassium 125 MG Oral Tablet", ("amoxicillin", "clavulanate"),
     "rxnorm-name"),
    ("insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension [Humulin]",
     ("insulin isophane, human", "insulin, regular, human"), "rxnorm-name"),
    ("emtricitabine 200 MG / tenofovir disoproxil fumarate 300 MG Oral Tablet",
     ("emtricitabine", "tenofovir disoproxil"), "rxnorm-name"),
    ("norethindrone 1 MG / ethinyl estradiol 0.035 MG Oral Tablet", ("norethindrone", "ethinyl estradiol"),
     "rxnorm-name"),
    ("24 HR metoprolol succinate 50 MG Extended Release Oral Tablet", ("metoprolol",), "rxnorm-name"),
    ("Atorvastatin 40mg tab", ("atorvastatin",), "free-text"),
    ("semaglutide 0.5 mg subcutaneous weekly", ("semaglutide",), "free-text"),
    ("estradiol 1 mg daily", ("estradiol",), "free-text"),
])
def test_common_names_resolve(kb: Knowledge, text: str, ingredients: tuple[str, ...],
                              matched_by: str) -> None:
    ident = identify(kb, MedicationOrder(id="o", text=text))
    assert ident is not None, text
    assert ident.ingredients == ingredients
    assert ident.matched_by == matched_by


@pytest.mark.parametrize("name", [n for n in TOP_INGREDIENTS if INGREDIENTS[n].get("rxcui")])
def test_ingredient_codes_resolve(kb: Knowledge, name: str) -> None:
    code = str(INGREDIENTS[name]["rxcui"])
    ident = identify(kb, MedicationOrder(id="c", codes=[Coding(system=RXNORM, code=code)]))
    assert ident is not None and ident.matched_by == "rxcui-ingredient"
    assert ident.ingredients == (name,)


@pytest.mark.parametrize("name", TOP_INGREDIENTS)
def test_every_top300_ingredient_name_resolves_by_itself(kb: Knowledge, name: str) -> None:
    """Its name alone, as free text, finds it and nothing else (no shorter name shadows it)."""
    ident = identify(kb, MedicationOrder(id="n", text=name))
    assert ident is not None and ident.ingredients == (name,)
