"""Site knowledge: the ingredients, names, classes and products a site needs beyond the shipped
data, in the shipped format (docs/knowledge-format.md, "Site knowledge"), validated and sourced
the same way.

A folder named `knowledge/` inside a pack (`rulesets/my-pack/knowledge/`) or beside the packs
(`rulesets/knowledge/`, in a rulesets root) may hold `ingredients.yaml` (`ingredients:` new
ingredients, `synonyms:` more names for known ones), `classes.yaml` (`classes:` new classes, or
members added to a shipped class) and `rxnorm_products.csv` (products, shipped columns). Every
entry needs a `source`; a problem is a PackError naming file, line and field.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds.errors import PackError, PackErrors
from cds.knowledge.store import DATA_DIR, Knowledge, SiteData, default_knowledge, load_knowledge
from cds.rules.loader import line_of, read_yaml, strip_marks, suggest_name, validation_errors
from cds.rules.messages import near

FOLDER = "knowledge"
FILES = ("ingredients.yaml", "classes.yaml", "rxnorm_products.csv")
PRODUCT_COLUMNS = ("rxcui", "tty", "name", "ingredients", "strengths", "units", "dose_form",
                   "route", "source")
Status = Literal["confirmed", "secondary", "unconfirmed"]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class SiteIngredient(_Entry):
    name: str = Field(min_length=1)
    rxcui: str | None = Field(default=None, pattern=r"^\d+$")
    precise: list[str] = Field(default_factory=list)
    brands: list[str] = Field(default_factory=list)
    source: str = Field(min_length=1)
    status: Status = "confirmed"

    @field_validator("name")
    @classmethod
    def _lower(cls, v: str) -> str:
        if v != v.strip().lower():
            raise ValueError(f"name must be the lower-case RxNorm ingredient name, like "
                             f"{v.strip().lower()!r}")
        return v


class Synonym(_Entry):
    name: str = Field(min_length=1)
    ingredient: str
    source: str = Field(min_length=1)


class IngredientsFile(_Entry):
    version: str | None = None
    ingredients: list[SiteIngredient] = Field(default_factory=list)
    synonyms: list[Synonym] = Field(default_factory=list)


class SiteClass(_Entry):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    name: str | None = None
    parents: list[str] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)
    source: str = Field(min_length=1)
    status: Status = "confirmed"


class ClassesFile(_Entry):
    classes: list[SiteClass] = Field(default_factory=list)


@dataclass
class _Known:
    """What is known so far: the shipped data, then each folder's additions."""

    ingredients: set[str]
    names: dict[str, str]
    classes: set[str]
    rxcuis: set[str]
    products: set[str]
    kb: Knowledge
    errors: list[PackError] = field(default_factory=list)

    def error(self, message: str, file: Path, line: int | None, field: str,
              suggestion: str | None = None) -> None:
        self.errors.append(PackError(message, file=str(file), line=line, field=field,
                                     suggestion=suggestion))


def _doc(path: Path, model: type[BaseModel], known: _Known) -> tuple[Any, Any] | None:
    try:
        doc = read_yaml(path)
    except PackErrors as e:
        known.errors += e.errors
        return None
    if not isinstance(doc, dict):
        known.error("must be a mapping (ingredients: [...], classes: [...])", path, 1, "")
        return None
    try:
        return doc, model.model_validate(strip_marks(doc))
    except ValidationError as e:
        known.errors += validation_errors(e, doc, str(path), model)
        return None


def _ingredients(path: Path, known: _Known, out: SiteData) -> None:
    read = _doc(path, IngredientsFile, known)
    if read is None:
        return
    doc, parsed = read
    for i, ing in enumerate(parsed.ingredients):
        where = f"ingredients[{i}]"
        if ing.name in known.names:
            known.error(f"{ing.name!r} is already a name of {known.names[ing.name]!r} in the "
                        "knowledge base; add other names for it under synonyms:", path,
                        line_of(doc, where + ".name"), where + ".name")
            continue
        if ing.rxcui and ing.rxcui in known.rxcuis:
            known.error(f"RxNorm code {ing.rxcui} is already an ingredient of the knowledge base",
                        path, line_of(doc, where + ".rxcui"), where + ".rxcui")
            continue
        for j, other in enumerate([*ing.precise, *ing.brands]):
            kind = "precise" if j < len(ing.precise) else "brands"
            taken = known.names.get(other.strip().lower())
            if taken is not None:
                known.error(f"{other!r} already names {taken!r}", path,
                            line_of(doc, f"{where}.{kind}", other), f"{where}.{kind}")
        known.ingredients.add(ing.name)
        known.names[ing.name] = ing.name
        known.names.update({n.strip().lower(): ing.name for n in [*ing.precise, *ing.brands]})
        if ing.rxcui:
            known.rxcuis.add(ing.rxcui)
        out.ingredients.append(ing.model_dump(exclude_none=True))
    for i, syn in enumerate(parsed.synonyms):
        where = f"synonyms[{i}]"
        if syn.ingredient not in known.ingredients:
            known.error(f"unknown ingredient {syn.ingredient!r}", path,
                        line_of(doc, where + ".ingredient"), where + ".ingredient",
                        _near_ingredient(known, syn.ingredient))
            continue
        key = syn.name.strip().lower()
        taken = known.names.get(key)
        if taken is not None and taken != syn.ingredient:
            known.error(f"{syn.name!r} already names {taken!r}", path,
                        line_of(doc, where + ".name"), where + ".name")
            continue
        known.names[key] = syn.ingredient
        out.synonyms.append(syn.model_dump())


def _near_ingredient(known: _Known, name: str) -> str | None:
    return near(name, sorted(known.ingredients)) or suggest_name(known.kb, name)


def _classes(path: Path, known: _Known, out: SiteData) -> None:
    read = _doc(path, ClassesFile, known)
    if read is None:
        return
    doc, parsed = read
    new = {c.id for c in parsed.classes}
    for i, c in enumerate(parsed.classes):
        where = f"classes[{i}]"
        if c.id in known.ingredients:
            known.error(f"{c.id!r} is an ingredient, not a class id", path,
                        line_of(doc, where + ".id"), where + ".id")
            continue
        bad = False
        for m in c.members:
            if m not in known.ingredients:
                bad = True
                known.error(f"unknown ingredient {m!r}" + (
                    "; a class's members are ingredients, its broader classes go in parents:"
                    if m in known.classes or m in new else ""), path,
                    line_of(doc, where + ".members", m), where + ".members",
                    None if m in known.classes else _near_ingredient(known, m))
        for p in c.parents:
            if p not in known.classes and p not in new:
                bad = True
                known.error(f"unknown class {p!r}", path, line_of(doc, where + ".parents", p),
                            where + ".parents", near(p, sorted(known.classes | new)))
        if not bad:
            out.classes.append(c.model_dump(exclude_none=True))
    known.classes |= new


def _products(path: Path, known: _Known, out: SiteData) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        known.error(f"cannot read: {e}", path, None, "")
        return
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in PRODUCT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        known.error(f"the header needs the columns {', '.join(PRODUCT_COLUMNS)} (missing: "
                    f"{', '.join(missing)})", path, 1, "header")
        return
    ok = True
    for row in reader:
        line = reader.line_num

        def bad(message: str, column: str, suggestion: str | None = None,
                line: int = line) -> None:
            nonlocal ok
            ok = False
            known.error(message, path, line, column, suggestion)

        rxcui = (row["rxcui"] or "").strip()
        if not rxcui.isdigit():
            bad(f"rxcui must be an RxNorm code (digits), not {rxcui!r}", "rxcui")
        elif rxcui in known.products:
            bad(f"RxNorm code {rxcui} is already a product of the knowledge base", "rxcui")
        if (row["tty"] or "").strip() not in ("SCD", "SBD", "GPCK", "BPCK"):
            bad(f"tty must be SCD, SBD, GPCK or BPCK, not {row['tty']!r}", "tty")
        for column in ("name", "dose_form", "source"):
            if not (row[column] or "").strip():
                bad(f"{column} is required", column)
        ings = [i.strip() for i in (row["ingredients"] or "").split("|") if i.strip()]
        strengths = [s.strip() for s in (row["strengths"] or "").split("|")]
        units = [u.strip() for u in (row["units"] or "").split("|")]
        if not ings or not (len(ings) == len(strengths) == len(units)):
            bad("ingredients, strengths and units need one '|'-separated value each, in the "
                "same order", "ingredients")
        for ing in ings:
            if known.names.get(ing.lower()) is None:
                bad(f"unknown ingredient {ing!r}", "ingredients", _near_ingredient(known, ing))
        for s in strengths:
            try:
                if float(s) <= 0:
                    raise ValueError
            except ValueError:
                bad(f"strength {s!r} is not a positive number", "strengths")
        if rxcui:
            known.products.add(rxcui)
    if ok:
        out.products.append(path)


def read_site(folder: Path, known: _Known) -> SiteData:
    """One overlay folder, checked against what is known so far (which it then extends)."""
    out = SiteData(folder=str(folder))
    readers = {"ingredients.yaml": _ingredients, "classes.yaml": _classes,
               "rxnorm_products.csv": _products}
    for name in FILES:  # ingredients first: classes and products name them
        if (folder / name).is_file():
            out.files.append(folder / name)
            readers[name](folder / name, known, out)
    for path in sorted(folder.iterdir()):
        if (path.suffix in (".yaml", ".yml", ".csv") and path.name not in FILES
                and not path.name.startswith(".")):
            known.error(f"unknown knowledge file {path.name!r} (a site folder may hold "
                        f"{', '.join(FILES)})", path, None, "", near(path.name, FILES))
    return out


_CACHE: dict[tuple[tuple[str, str], ...], Knowledge] = {}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def site_knowledge(folders: Iterable[Path | str]) -> Knowledge:
    """The shipped knowledge with the site folders' additions (the shipped object itself when
    no folder exists); memoized per folder content. Raises PackErrors naming file and line."""
    found: list[Path] = []
    for f in folders:
        p = Path(f).resolve()
        if p.is_dir() and p not in found:
            found.append(p)
    kb = default_knowledge()
    if not found:
        return kb
    key = tuple((str(p), _digest(p)) for p in found)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    known = _Known(ingredients=set(kb.ingredients), names=dict(kb.names),
                   classes=set(kb.classes.class_ids), rxcuis=set(kb.by_rxcui),
                   products=set(kb.products), kb=kb)
    site = [read_site(p, known) for p in found]
    if known.errors:
        raise PackErrors(known.errors)
    merged = load_knowledge(DATA_DIR, site)
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[key] = merged
    return merged


def knowledge_folders(roots: Iterable[Path | str], packs: Iterable[Path | str] = ()) -> list[Path]:
    """The site folders that apply: `knowledge/` of each rulesets root, then of each pack."""
    return [Path(p) / FOLDER for p in [*roots, *packs] if (Path(p) / FOLDER).is_dir()]


def pack_knowledge(folder: Path | str) -> Knowledge:
    """The knowledge a pack folder is checked with (`cds pack lint/test`): the shipped data,
    the `knowledge/` beside it (in its rulesets root) and its own."""
    folder = Path(folder)
    return site_knowledge(knowledge_folders([folder.resolve().parent], [folder]))
