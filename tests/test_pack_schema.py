"""The JSON Schemas of pack.yaml, rule files and case files: published with the package, equal to what the
models generate, and every shipped pack validates against them (editors check what authors
type with the same rules the loader applies)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cds.rules.schemas import FILES, render, schema_path

ROOT = Path(__file__).resolve().parents[1]
PACKS = sorted(p for p in (ROOT / "rulesets").iterdir() if (p / "pack.yaml").is_file())


def _json(value: Any) -> Any:
    """A YAML document as an editor's YAML 1.2 server sees it: dates are text."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(name: str, doc: Any) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in _validator(name).iter_errors(_json(doc))]


@pytest.mark.parametrize("name", sorted(FILES))
def test_committed_schema_is_what_the_models_generate(name: str) -> None:
    assert schema_path(name).read_text(encoding="utf-8") == render(name), (
        f"cds/rules/schema/{name} is stale: run `python -m cds.rules.schemas`")


def test_schemas_are_package_data() -> None:
    assert schema_path("pack.schema.json").parent == ROOT / "cds" / "rules" / "schema"
    docs = (ROOT / "docs" / "rule-packs.md").read_text(encoding="utf-8")
    for name in FILES:
        assert "yaml-language-server: $schema=" in docs and name in docs


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_every_shipped_pack_validates(pack: Path) -> None:
    assert _errors("pack.schema.json", yaml.safe_load((pack / "pack.yaml").read_text())) == []
    files = sorted((pack / "rules").glob("*.yaml"))
    assert files
    for f in files:
        assert _errors("rules.schema.json", yaml.safe_load(f.read_text())) == [], f


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_every_shipped_case_file_validates(pack: Path) -> None:
    for f in sorted((pack / "cases").glob("*.yaml")):
        assert _errors("cases.schema.json", yaml.safe_load(f.read_text())) == [], f


def test_case_schema_catches_what_the_loader_refuses() -> None:
    case = {"name": "n", "as_of": "2026-11-26", "expect": ["r"],
            "patient": {"id": "p", "birth_date": "1950-01-01", "sex": "female",
                        "medications": [{"id": "m1", "text": "oxycodone 5 MG Oral Tablet",
                                         "dose": 1, "dose_unit": "tablet"}]}}
    assert _errors("cases.schema.json", {"cases": [case]}) == []
    assert _errors("cases.schema.json", {"cases": [{**case, "expcet": ["r"]}]})
    assert _errors("cases.schema.json", {"cases": [{**case, "as_of": 2026}]})
    bad_patient = {**case["patient"], "sex": 3}  # type: ignore[dict-item]
    assert _errors("cases.schema.json", {"cases": [{**case, "patient": bad_patient}]})


def test_schema_catches_what_the_loader_refuses() -> None:
    meta = yaml.safe_load((ROOT / "rulesets" / "cns-burden" / "pack.yaml").read_text())
    assert any("version" in e for e in _errors("pack.schema.json", {**meta, "version": 1.1}))
    assert any("sevrity" in e for e in _errors("pack.schema.json", {**meta, "sevrity": 1}))
    rule = {"id": "r", "type": "interaction", "a": "opioid", "b": ["benzodiazepine"],
            "severity": "high", "summary": "s", "rationale": "r", "mechanism": "m",
            "management": "m", "sources": ["x"], "actions": ["plain text", {"text": "t"}]}
    assert _errors("rules.schema.json", {"rules": [rule]}) == []  # one name or a list; text actions
    assert _errors("rules.schema.json", {"rules": [{**rule, "severity": "severe"}]})
    assert _errors("rules.schema.json", {"rules": [{**rule, "type": "interation"}]})
    assert _errors("rules.schema.json", {"rules": [{**rule, "summary": "x" * 200}]})
