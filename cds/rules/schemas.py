"""JSON Schemas of pack.yaml, of rule files and of case files, generated from the pydantic
models, so that editors (the YAML language server of VS Code, JetBrains, Neovim) validate and
complete what a rule author types. The committed copies in cds/rules/schema/ ship with the
package; a test checks they equal what the models generate. Regenerate with
`python -m cds.rules.schemas`.

The models accept a little more than plain JSON types say: a list field given one name
(`a: opioid` for `a: [opioid]`) and an action given as plain text. The schemas say so too,
so a shipped pack validates against them as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cds.patient import Patient
from cds.rules.cases import Case, CaseFile
from cds.rules.models import Action, PackMeta, RuleFile

SCHEMA_DIR = Path(__file__).parent / "schema"
FILES: dict[str, tuple[type[BaseModel], str]] = {
    "pack.schema.json": (PackMeta, "cds rule pack: pack.yaml"),
    "rules.schema.json": (RuleFile, "cds rule pack: a rule file (rules/*.yaml)"),
    "cases.schema.json": (CaseFile, "cds rule pack: a case file (cases/*.yaml)"),
}


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from `root`, by class name (the schema's $defs keys)."""
    out: dict[str, type[BaseModel]] = {}
    todo: list[Any] = [root]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in out:
                continue
            out[tp.__name__] = tp
            todo += [f.annotation for f in tp.model_fields.values()]
        else:
            todo += list(getattr(tp, "__args__", ()))
            todo += list(getattr(tp, "__metadata__", ()))
    return out


def _one_or_many(field_schema: dict[str, Any]) -> dict[str, Any]:
    """A list field that also takes a single item (the models' `_as_list` validators)."""
    items = field_schema.get("items")
    if field_schema.get("type") != "array" or items is None:
        return field_schema
    rest = {k: v for k, v in field_schema.items() if k in ("title", "description", "default")}
    array = {k: v for k, v in field_schema.items() if k not in rest}
    return {**rest, "anyOf": [items, array]}


def _loosen(schema: dict[str, Any], root: type[BaseModel]) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    for name, model in _models(root).items():
        target = schema if model is root else defs.get(name)
        if target is None:
            continue
        props = target.get("properties", {})
        for dec in model.__pydantic_decorators__.field_validators.values():
            if getattr(dec.func, "__name__", "") != "_as_list":
                continue
            for field in dec.info.fields:
                info = model.model_fields[field]
                key = info.alias or field
                if key in props:
                    props[key] = _one_or_many(props[key])
    if Action.__name__ in defs:
        action = defs[Action.__name__]
        defs[Action.__name__] = {"anyOf": [{"type": "string", "description": "the action's text"},
                                           action]}
    return schema


def _with_patient(schema: dict[str, Any]) -> None:
    """A case's `patient` is read as a dict (so its errors name the case file's line) and
    then as a native patient: the schema says the latter."""
    patient = _loosen(Patient.model_json_schema(by_alias=True), Patient)
    defs = schema.setdefault("$defs", {})
    defs.update(patient.pop("$defs", {}))
    defs[Patient.__name__] = patient
    defs[Case.__name__]["properties"]["patient"]["anyOf"] = [
        {"$ref": f"#/$defs/{Patient.__name__}"}, {"type": "null"}]


def generate(name: str) -> dict[str, Any]:
    """The JSON Schema of one file kind (a key of FILES)."""
    model, title = FILES[name]
    schema = _loosen(model.model_json_schema(by_alias=True), model)
    if model is CaseFile:
        _with_patient(schema)
    schema["title"] = title
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(name: str) -> str:
    return json.dumps(generate(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_path(name: str) -> Path:
    """The published schema file (package data)."""
    return SCHEMA_DIR / name


def write() -> list[Path]:
    """Regenerate the committed schemas from the models."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    out = []
    for name in FILES:
        path = schema_path(name)
        path.write_text(render(name), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover
    for p in write():
        print(p)
