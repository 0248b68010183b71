"""Pack loading: every error names file, line, rule id and field; the registry keeps versions
side by side; the content digest follows the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds.errors import PackError, PackErrors
from cds.knowledge.store import Knowledge
from cds.rules.loader import load_pack
from cds.rules.models import InteractionRule, MmeRule
from cds.rules.registry import discover, load_packs, resolve

META = """\
id: {id}
version: {version}
title: Test pack
description: A pack written by the tests.
knowledge: "{knowledge}"
maintainers: [tests]
changelog:
  - version: {version}
    date: 2026-11-01
    changes: [first]
"""

RULE_HEAD = "rules:\n"
INTERACTION = """\
  - id: {rid}
    type: interaction
    a: {a}
    b: {b}
    severity: {severity}
    summary: "{{a}} with {{b}}"
    rationale: Additive respiratory depression.
    mechanism: additive CNS depression
    management: avoid
    sources: ["CDC 2022, Recommendation 11"]
"""
MME = """\
  - id: mme-{threshold}
    type: mme
    min: {threshold}
    severity: high
    summary: "MME {{mme}} at or above {threshold}"
    rationale: Dose threshold.
    sources: ["CDC 2022, Recommendation 4"]
"""


def interaction(rid: str = "opioid-benzo", a: str = "opioid", b: str = "benzodiazepine",
                severity: str = "high") -> str:
    return INTERACTION.format(rid=rid, a=a, b=b, severity=severity)


def write_pack(folder: Path, rules: str | dict[str, str], *, id: str = "test-pack",
               version: str = "1.0.0", knowledge: str = ">=2026.11.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.yaml").write_text(META.format(id=id, version=version, knowledge=knowledge))
    (folder / "rules").mkdir(exist_ok=True)
    files = {"rules.yaml": rules} if isinstance(rules, str) else rules
    for name, text in files.items():
        (folder / "rules" / name).write_text(text)
    return folder


def errors_of(folder: Path, kb: Knowledge) -> list[PackError]:
    with pytest.raises(PackErrors) as e:
        load_pack(folder, kb)
    assert e.value.errors, "PackErrors without errors"
    return e.value.errors


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(needle)


# --- a good pack ---------------------------------------------------------------------------

def test_good_pack_loads(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction() + MME.format(threshold=90))
    pack = load_pack(folder, kb)
    assert (pack.id, pack.version, pack.ref) == ("test-pack", "1.0.0", "test-pack@1.0.0")
    assert [r.rule.id for r in pack.rules] == ["opioid-benzo", "mme-90"]
    rule = pack.rule("opioid-benzo")
    assert isinstance(rule, InteractionRule) and rule.a == ["opioid"]  # a string becomes a list
    assert isinstance(pack.rule("mme-90"), MmeRule) and pack.rule("nope") is None
    rules_file = folder / "rules" / "rules.yaml"
    assert pack.rules[0].file == str(rules_file)
    assert pack.rules[0].line == line_of(rules_file, "id: opioid-benzo")
    assert pack.rules[1].line == line_of(rules_file, "id: mme-90")
    assert len(pack.digest) == 16


# --- errors name file, line, rule id and field ---------------------------------------------

def test_bad_severity(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction() + interaction(
        rid="second", severity="severe"))
    (e,) = errors_of(folder, kb)
    path = folder / "rules" / "rules.yaml"
    assert e.file == str(path) and e.rule == "second" and e.field == "rules[1].severity"
    assert line_of(path, "id: second") <= (e.line or 0) <= line_of(path, "severity: severe")
    assert "critical" in e.message  # the allowed values are listed
    text = str(e)
    assert f"{path}:{e.line}" in text and "rule second" in text and "field rules[1].severity" in text


def test_missing_field(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction().replace("    management: avoid\n", "")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    (e,) = errors_of(folder, kb)
    assert e.rule == "opioid-benzo" and e.field == "rules[0].management"
    assert e.line == line_of(folder / "rules" / "rules.yaml", "id: opioid-benzo")
    assert "required" in e.message.lower()


def test_unexpected_field(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction().replace("    management: avoid\n", "    management: avoid\n    sevrity: x\n")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    (e,) = errors_of(folder, kb)
    assert e.rule == "opioid-benzo" and e.field == "rules[0].sevrity"
    path = folder / "rules" / "rules.yaml"
    assert line_of(path, "id: opioid-benzo") <= (e.line or 0) <= line_of(path, "sevrity")


def test_field_error_names_the_field_line(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(severity="severe"))
    (e,) = errors_of(folder, kb)
    assert e.line == line_of(folder / "rules" / "rules.yaml", "severity: severe")


def test_unknown_type(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        "type: interaction", "type: interactoin"))
    (e,) = errors_of(folder, kb)
    assert e.field is not None and e.field.startswith("rules[0]")
    assert "interaction" in e.message


def test_unknown_drug_with_near_name_suggestion(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(a="oxycodon"))
    (e,) = errors_of(folder, kb)
    assert (e.rule, e.field, e.suggestion) == ("opioid-benzo", "a", "oxycodone")
    assert e.line == line_of(folder / "rules" / "rules.yaml", "a: oxycodon")  # the field's line
    assert "unknown drug or class 'oxycodon'" in str(e)
    assert "did you mean 'oxycodone'?" in str(e)


def test_misspelt_class(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(b="benzodiazepene"))
    (e,) = errors_of(folder, kb)
    assert (e.field, e.suggestion) == ("b", "benzodiazepine")


def test_brand_or_salt_name_asks_for_the_ingredient(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(a="OxyContin"))
    (e,) = errors_of(folder, kb)
    assert e.field == "a" and "write the ingredient name 'oxycodone'" in e.message


def test_nothing_like_it_gets_no_suggestion(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(a="qqqqqqqq"))
    (e,) = errors_of(folder, kb)
    assert e.suggestion is None and "did you mean" not in str(e)


def test_duplicate_rule_id(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", {
        "a.yaml": RULE_HEAD + interaction(rid="dup"),
        "b.yaml": RULE_HEAD + MME.format(threshold=50) + interaction(rid="dup"),
    })
    (e,) = errors_of(folder, kb)
    second = folder / "rules" / "b.yaml"
    assert (e.file, e.rule, e.field) == (str(second), "dup", "id")
    assert e.line == line_of(second, "id: dup")
    assert str(folder / "rules" / "a.yaml") in e.message  # where the first one is


def test_bad_yaml_names_the_line(tmp_path: Path, kb: Knowledge) -> None:
    text = RULE_HEAD + interaction() + "  - id: broken\n    a: [unclosed\n    b: x\n"
    folder = write_pack(tmp_path / "p", text)
    (e,) = errors_of(folder, kb)
    assert e.file == str(folder / "rules" / "rules.yaml")
    assert "not valid YAML" in e.message
    assert e.line is not None and e.line >= line_of(folder / "rules" / "rules.yaml", "[unclosed")


def test_bad_yaml_in_pack_yaml(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    (folder / "pack.yaml").write_text("id: test-pack\nversion: [1.0\n")
    (e,) = errors_of(folder, kb)
    assert e.file == str(folder / "pack.yaml") and e.line is not None


def test_knowledge_version_not_satisfied(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(), knowledge=">=2099.1.0")
    (e,) = errors_of(folder, kb)
    assert (e.file, e.field) == (str(folder / "pack.yaml"), "knowledge")
    assert e.line == line_of(folder / "pack.yaml", "knowledge:")
    assert ">=2099.1.0" in e.message and kb.version in e.message


def test_bad_expression(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction().replace("    severity: high\n", "    severity: high\n    when: age.real > 65\n")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    (e,) = errors_of(folder, kb)
    assert (e.rule, e.field) == ("opioid-benzo", "when")
    assert e.line == line_of(folder / "rules" / "rules.yaml", "when: age.real")  # the field's line
    assert "not allowed" in e.message


def test_expression_with_an_unknown_drug(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction().replace("    severity: high\n",
                                 "    severity: high\n    when: \"has('gabapentn')\"\n")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    (e,) = errors_of(folder, kb)
    assert e.field == "when" and "gabapentn" in e.message


def test_all_errors_are_reported_together(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", {
        "a.yaml": RULE_HEAD + interaction(rid="one", a="oxycodon"),
        "b.yaml": RULE_HEAD + interaction(rid="two", severity="severe"),
        "c.yaml": "rules: [\n",
    }, knowledge=">=2099.1.0")
    errors = errors_of(folder, kb)
    assert {(Path(e.file or "").name, e.field) for e in errors} >= {
        ("pack.yaml", "knowledge"), ("a.yaml", "a"), ("b.yaml", "rules[0].severity")}
    assert any(Path(e.file or "").name == "c.yaml" for e in errors)


def test_missing_pack_yaml_and_empty_pack(tmp_path: Path, kb: Knowledge) -> None:
    (tmp_path / "empty").mkdir()
    (e,) = errors_of(tmp_path / "empty", kb)
    assert "pack.yaml" in e.message and e.file == str(tmp_path / "empty")
    folder = write_pack(tmp_path / "p", {})
    (e,) = errors_of(folder, kb)
    assert "no rule files" in e.message


def test_bad_pack_metadata(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(), version="1.0")
    errors = errors_of(folder, kb)
    assert {e.field for e in errors} >= {"version"}
    version = next(e for e in errors if e.field == "version")
    assert version.file == str(folder / "pack.yaml")
    assert version.line == line_of(folder / "pack.yaml", "version: 1.0")


def test_rule_file_that_is_not_a_mapping(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", "- just\n- a list\n")
    (e,) = errors_of(folder, kb)
    assert "rules:" in e.message and e.file == str(folder / "rules" / "rules.yaml")


# --- registry --------------------------------------------------------------------------------

@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CDS_RULESETS", raising=False)
    r = tmp_path / "rulesets"
    write_pack(r / "test-pack@1.0.0", RULE_HEAD + MME.format(threshold=90), version="1.0.0")
    write_pack(r / "test-pack", RULE_HEAD + MME.format(threshold=50), version="1.10.0")
    write_pack(r / "test-pack@1.2.0", RULE_HEAD + MME.format(threshold=70), version="1.2.0")
    return r


def test_versions_side_by_side(root: Path) -> None:
    found = [p.ref for p in discover([root]) if p.id == "test-pack"]
    assert found == ["test-pack@1.0.0", "test-pack@1.2.0", "test-pack@1.10.0"]


def test_id_resolves_to_the_newest(root: Path, kb: Knowledge) -> None:
    (pack,) = load_packs(kb, ["test-pack"], roots=[root])
    assert pack.version == "1.10.0"  # 1.10 > 1.2: versions compare as numbers
    assert [r.rule.id for r in pack.rules] == ["mme-50"]


def test_pinned_version(root: Path, kb: Knowledge) -> None:
    (pack,) = load_packs(kb, ["test-pack@1.0.0"], roots=[root])
    assert pack.ref == "test-pack@1.0.0" and pack.rules[0].rule.id == "mme-90"


def test_default_loads_the_newest_of_each(root: Path, kb: Knowledge) -> None:
    from cds.rules.registry import rulesets_roots

    newest = {p.id: p.version for p in discover(rulesets_roots([root]))}
    assert newest["test-pack"] == "1.10.0"


def test_unknown_version_is_an_error(root: Path, kb: Knowledge) -> None:
    with pytest.raises(PackErrors) as e:
        load_packs(kb, ["test-pack@9.9.9"], roots=[root])
    text = str(e.value)
    assert "test-pack@9.9.9" in text and "not installed" in text
    assert "test-pack@1.0.0" in text and "test-pack@1.10.0" in text  # what is installed
    with pytest.raises(PackErrors, match="none installed"):
        resolve("no-such-pack", discover([root]))


def test_folder_path_as_spec(root: Path, kb: Knowledge) -> None:
    (pack,) = load_packs(kb, [str(root / "test-pack@1.2.0")], roots=[])
    assert pack.ref == "test-pack@1.2.0"


def test_env_roots(root: Path, kb: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_RULESETS", str(root))
    (pack,) = load_packs(kb, ["test-pack@1.2.0"])
    assert pack.rules[0].rule.id == "mme-70"


def test_broken_pack_is_skipped_by_discovery(root: Path) -> None:
    (root / "broken").mkdir()
    (root / "broken" / "pack.yaml").write_text("id: [\n")
    assert {p.id for p in discover([root])} == {"test-pack"}


# --- content digest --------------------------------------------------------------------------

def test_digest_changes_when_a_rule_changes(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + MME.format(threshold=90))
    first = load_pack(folder, kb).digest
    assert load_pack(folder, kb).digest == first  # stable
    copy = write_pack(tmp_path / "q", RULE_HEAD + MME.format(threshold=90))
    assert load_pack(copy, kb).digest == first  # content, not location
    write_pack(folder, RULE_HEAD + MME.format(threshold=90).replace("high", "critical"))
    assert load_pack(folder, kb).digest != first
    write_pack(folder, RULE_HEAD + MME.format(threshold=90), version="1.0.1")
    assert load_pack(folder, kb).digest != first  # pack.yaml is part of the content
