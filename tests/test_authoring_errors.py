"""A rule author's mistakes: each error names the line of the offending field in plain words
(never pydantic's phrasing), with the near name where there is one; `cds pack lint` also
checks placeholders and the cases; pack test and diff speak JUnit XML, JSON and Markdown;
`cds panel --rulesets`, `cds explain` hints and `cds knowledge search`."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from test_rules_loader import INTERACTION, META, MME, RULE_HEAD, interaction, line_of, write_pack
from typer.testing import CliRunner

from cds.cli import app
from cds.errors import PackError, PackErrors
from cds.knowledge.facts import build_facts
from cds.knowledge.store import Knowledge
from cds.patient import MedicationOrder, Patient
from cds.rules.expression import compile_expression
from cds.rules.loader import load_pack

ROOT = Path(__file__).resolve().parents[1]
RULESETS = ROOT / "rulesets"
EXAMPLE = str(ROOT / "examples" / "patient-oxycodone-fentanyl.json")
runner = CliRunner()


def errors_of(folder: Path, kb: Knowledge) -> list[PackError]:
    with pytest.raises(PackErrors) as e:
        load_pack(folder, kb)
    for x in e.value.errors:  # plain words, never pydantic's
        assert not any(p in x.message for p in ("Input should", "String should", "Value error",
                                                 "Extra inputs", "List should")), str(x)
    return e.value.errors


def one(folder: Path, kb: Knowledge) -> PackError:
    (e,) = errors_of(folder, kb)
    return e


def rules_file(folder: Path) -> Path:
    return folder / "rules" / "rules.yaml"


# --- pack.yaml ------------------------------------------------------------------------------

def test_unquoted_version(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(), version="1.1")
    errs = errors_of(folder, kb)
    e = next(x for x in errs if x.field == "version")
    assert e.message == 'version must be quoted SemVer like "1.1.0" (got 1.1)'
    assert e.line == line_of(folder / "pack.yaml", "version: 1.1")


def test_changelog_without_the_version(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text().replace("version: 1.0.0\n", "version: 1.1.0\n", 1))
    e = one(folder, kb)
    assert e.message.startswith("changelog has no entry for 1.1.0")
    assert (e.field, e.line) == ("changelog", line_of(meta, "changelog:"))


def test_unknown_pack_field_with_its_near_name(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text() + "maintainer: [x]\n")
    e = one(folder, kb)
    assert e.message.startswith("unknown field 'maintainer' (allowed here: changelog, ")
    assert (e.field, e.suggestion, e.line) == ("maintainer", "maintainers",
                                               line_of(meta, "maintainer: [x]"))


def test_bad_changelog_date(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text().replace("date: 2026-11-01", "date: 2026-13-01"))
    e = one(folder, kb)
    assert e.message == "date must be a date like 2026-11-26 (got '2026-13-01')"
    assert (e.field, e.line) == ("changelog[0].date", line_of(meta, "date: 2026-13-01"))


def test_escalation_is_a_key_here_not_a_rule_type(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text() + "escalation:\n  routes:\n    - {role: boss}\n")
    e = one(folder, kb)
    assert e.field == "escalation.routes[0].role" and e.line == line_of(meta, "{role: boss}")
    assert e.message.startswith("role must be one of: pharmacist, prescriber")


@pytest.mark.parametrize(("pattern", "words"), [
    ("", "an empty pattern"), ("/etc/*.yaml", "must stay inside the pack folder"),
    ("../*/rules/*.yaml", "must stay inside the pack folder"),
    ("rules", "matches a folder, not files: write e.g. 'rules/*.yaml'"),
    ("rules/none-*.yaml", "no rule files match ['rules/none-*.yaml']"),
])
def test_rule_files_errors_name_the_field(tmp_path: Path, kb: Knowledge, pattern: str,
                                          words: str) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text() + f"rule_files: [{pattern!r}]\n")
    e = one(folder, kb)
    assert words in e.message
    assert (e.file, e.field, e.line) == (str(meta), "rule_files", line_of(meta, "rule_files:"))


def test_whole_file_errors_name_a_line(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    rules_file(folder).write_text("- 1\n")
    e = one(folder, kb)
    assert e.message == "a rule file must be a mapping with 'rules:' (a list of rules), not a list"
    assert (e.line, e.field) == (1, "rules")
    (folder / "pack.yaml").write_text("")
    e = one(folder, kb)
    assert "pack.yaml must be a mapping of fields" in e.message and "an empty file" in e.message
    assert e.line == 1


def test_control_character_and_bad_utf8_name_the_line(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    path = rules_file(folder)
    text = path.read_text()
    path.write_text(text.replace("mechanism: additive", "mechanism: \x07additive"))
    e = one(folder, kb)
    assert e.message == "not valid YAML: the character '\\x07' (U+0007) is not allowed in YAML"
    assert e.line == line_of(path, "mechanism:")
    path.write_text(text)
    management = line_of(path, "management:")
    path.write_bytes(text.replace("management: avoid", "management: \xff").encode("latin-1"))
    e = one(folder, kb)
    assert "not UTF-8" in e.message and e.line == management


# --- rules ----------------------------------------------------------------------------------

def test_a_key_written_twice(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction() + "    severity: low\n")
    e = one(folder, kb)
    path = rules_file(folder)
    assert e.message == (f"not valid YAML: the key 'severity' is written twice (first on line "
                         f"{line_of(path, 'severity: high')})")
    assert e.line == line_of(path, "severity: low")


def test_a_rule_that_is_not_a_mapping(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction() + "  - just text\n")
    e = one(folder, kb)
    assert e.message == "rules[1] must be a mapping (key: value) (got 'just text')"
    assert (e.field, e.line) == ("rules[1]", line_of(rules_file(folder), "- just text"))


def test_bad_severity_suggests_the_near_value(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction(severity="hihg"))
    e = one(folder, kb)
    assert e.message == "severity must be one of: critical, high, moderate, low, info (got 'hihg')"
    assert (e.suggestion, e.line) == ("high", line_of(rules_file(folder), "severity: hihg"))


def test_unknown_rule_type(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        "type: interaction", "type: interation"))
    e = one(folder, kb)
    assert e.message.startswith("unknown rule type 'interation'; type must be one of: interaction,")
    assert e.suggestion == "interaction"


def test_unknown_rule_field_lists_the_rule_types_fields(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction() + "    mechansim: x\n")
    e = one(folder, kb)
    assert "unknown field 'mechansim'" in e.message and "management" in e.message
    assert (e.suggestion, e.line) == ("mechanism", line_of(rules_file(folder), "mechansim"))


def test_summary_too_long(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        '"{a} with {b}"', '"' + "x" * 150 + '"'))
    e = one(folder, kb)
    assert e.message == "summary is 150 characters long; at most 139 are allowed"
    assert e.line == line_of(rules_file(folder), "summary:")


def test_missing_field(tmp_path: Path, kb: Knowledge) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        "    management: avoid\n", ""))
    e = one(folder, kb)
    assert e.message == "management is required"


def test_model_check_points_at_its_field(tmp_path: Path, kb: Knowledge) -> None:
    rule = """\
  - id: combo
    type: burden
    kind: combination
    all: [opioid]
    severity: high
    summary: s
    rationale: r
    sources: [x]
"""
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    e = one(folder, kb)
    assert e.message == "a combination rule needs 'all' with two or more drugs or classes"
    assert (e.field, e.line) == ("rules[0].all", line_of(rules_file(folder), "all: [opioid]"))


def test_unknown_drug_in_a_block_list_names_its_own_line(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction().replace("    b: benzodiazepine\n",
                                 "    b:\n      - alprazolam\n      - lorazepan\n")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    e = one(folder, kb)
    assert (e.field, e.suggestion) == ("b", "lorazepam")
    assert e.line == line_of(rules_file(folder), "- lorazepan")


def test_unknown_value_set_names_its_line(tmp_path: Path, kb: Knowledge) -> None:
    rule = interaction() + ("    unless:\n      - value_sets: [pdmp-reveiw]\n"
                            "        label: a PDMP review\n")
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    e = one(folder, kb)
    assert e.message == "unknown value set 'pdmp-reveiw'" and e.field == "unless[0].value_sets"
    assert e.line == line_of(rules_file(folder), "pdmp-reveiw")


@pytest.mark.parametrize(("when", "message", "suggestion"), [
    ("crlc < 30", "unknown name 'crlc'", "crcl"),
    ("hass('opioid')", "unknown function 'hass'", "has"),
    ("has('gabapentn')", "unknown drug or class 'gabapentn'", "gabapentin"),
    ("count_present(['oxycodone', 'alprazolan']) >= 2", "unknown drug or class 'alprazolan'",
     "alprazolam"),
    ("age >= 65 and true", "unknown name 'true'", "True"),
])
def test_when_expression_did_you_mean(tmp_path: Path, kb: Knowledge, when: str, message: str,
                                      suggestion: str) -> None:
    rule = interaction() + f'    when: "{when}"\n'
    folder = write_pack(tmp_path / "p", RULE_HEAD + rule)
    e = one(folder, kb)
    assert e.message.startswith(message), e.message
    assert (e.field, e.suggestion) == ("when", suggestion)
    assert e.line == line_of(rules_file(folder), "when:")
    assert f"did you mean '{suggestion}'?" in str(e)


def test_many_errors_each_at_its_own_line(tmp_path: Path, kb: Knowledge) -> None:
    text = RULE_HEAD + interaction(a="oxycodon") + INTERACTION.format(
        rid="second", a="opioid", b="benzodiazepine", severity="severe") + MME.format(threshold=-5)
    folder = write_pack(tmp_path / "p", text)
    errs = errors_of(folder, kb)
    lines = {e.field: e.line for e in errs}
    path = rules_file(folder)
    assert lines["rules[1].severity"] == line_of(path, "severity: severe")
    assert lines["rules[2].min"] == line_of(path, "min: -5")


# --- the expression language's list helper --------------------------------------------------

def test_count_present_is_the_sum_of_has(kb: Knowledge) -> None:
    names = ["amitriptyline", "oxybutynin", "paroxetine", "opioid"]
    patient = Patient(id="p", birth_date=date(1950, 1, 1), sex="female", medications=[
        MedicationOrder(id="1", text="amitriptyline 25 MG Oral Tablet"),
        MedicationOrder(id="2", text="oxybutynin chloride 5 MG Oral Tablet"),
        MedicationOrder(id="3", text="oxybutynin chloride 5 MG Oral Tablet")])
    facts = build_facts(kb, patient, date(2026, 11, 26))
    one_line = compile_expression(f"count_present({names!r})", known=kb.known)
    summed = compile_expression(" + ".join(f"has({n!r})" for n in names), known=kb.known)
    assert one_line.fn(facts, None) == summed.fn(facts, None) == 2
    assert set(one_line.refs) == set(names)
    ok, trace = compile_expression(f"count_present({names!r}) >= 2").explain(facts)
    assert ok and (f"count_present({names!r})", 2) in trace


def test_count_present_needs_a_list_of_names() -> None:
    with pytest.raises(Exception, match=r"takes one list of quoted names"):
        compile_expression("count_present('oxycodone')")


def test_the_cns_burden_sum_as_one_call(kb: Knowledge) -> None:
    """The shipped Beers anticholinergic rule counts its 39 drugs with count_present (it summed
    has() over them before 1.1.1): the two forms agree on every shipped case's patient."""
    pack = load_pack(RULESETS / "cns-burden", kb)
    rule = pack.rule("beers-anticholinergic-anticholinergic")
    assert rule is not None and rule.when and "count_present([" in rule.when
    drugs = list(rule.drugs)  # type: ignore[union-attr]
    assert len(drugs) == 39
    summed = compile_expression("age >= 65 and (" + " + ".join(f"has({d!r})" for d in drugs)
                                + ") >= 2", known=kb.known)
    one_call = compile_expression(rule.when, known=kb.known)
    assert set(one_call.refs) == set(drugs)
    from cds.authoring.cases import load_cases
    for lc in load_cases(pack.path):
        facts = build_facts(kb, lc.patient, lc.case.as_of)
        assert summed(facts) == one_call(facts), lc.case.name


# --- cds pack lint: placeholders and cases --------------------------------------------------

def _lint(folder: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["pack", "lint", str(folder)])
    return res.exit_code, res.output


def test_placeholder_typo_is_an_error(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + MME.format(threshold=90).replace(
        'summary: "MME {mme}', 'summary: "MME {mmee}'))
    code, output = _lint(folder)
    path = rules_file(folder)
    assert code == 1
    assert (f"{path}:{line_of(path, 'summary:')}, rule mme-90, field summary: unknown "
            "placeholder {mmee}: mme rules fill {before}, {days}, {mme}") in output
    assert "(did you mean '{mme}'?)" in output


def test_unpaired_brace_is_an_error(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        "rationale: Additive respiratory depression.", "rationale: 'Additive {a respiratory'"))
    code, output = _lint(folder)
    assert code == 1 and "field rationale: braces do not pair up" in output


CASES = """\
cases:
  - name: oxycodone with alprazolam
    as_of: 2026-11-26
    patient:
      id: p1
      birth_date: 1950-01-01
      sex: female
      medications:
        - {id: o, text: "oxycodone hydrochloride 10 MG Oral Tablet"}
        - {id: a, text: "alprazolom 0.5 MG Oral Tablet"}
    expect: [opioid-benzo]
    expect_not:
      - opioid-benso
  - name: a typo in a key
    as_of: 2026-11-26
    patient: {id: p2}
    expct: [opioid-benzo]
"""


def test_messages_with_brackets_are_printed_as_they_are(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction().replace(
        'sources: ["CDC 2022, Recommendation 11"]', "sources: CDC"))
    code, output = _lint(folder)
    assert code == 1 and "sources must be a list ([a, b] or one '- item' a line)" in output


def test_lint_checks_the_cases(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    (folder / "cases").mkdir()
    path = folder / "cases" / "c.yaml"
    path.write_text(CASES)
    code, output = _lint(folder)
    output = " ".join(output.split())
    assert code == 1
    assert (f"{path}:{line_of(path, '- opioid-benso')}, field expect_not: case 'oxycodone with "
            "alprazolam': test-pack@1.0.0 has no rule 'opioid-benso' (did you mean "
            "'opioid-benzo'?)") in output
    assert (f"{path}:{line_of(path, 'expct:')}, case 'a typo in a key', field expct: unknown "
            "field 'expct'") in output
    assert "(did you mean 'expect'?)" in output
    assert (f"{path}:{line_of(path, 'alprazolom')}, field patient.medications: case "
            "'oxycodone with alprazolam': medication 'alprazolom 0.5 MG Oral Tablet' is not a "
            "drug the knowledge base knows") in output
    assert "(did you mean 'alprazolam'?)" in output
    assert "3 error(s)" in output


def test_a_case_may_mean_an_unknown_drug(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "p", RULE_HEAD + interaction())
    (folder / "cases").mkdir()
    path = folder / "cases" / "c.yaml"
    path.write_text(CASES.split("  - name: a typo")[0].replace(
        "    expect_not:\n      - opioid-benso\n", "") + "    unrecognized: [a, o]\n")
    code, output = _lint(folder)
    output = " ".join(output.split())
    assert code == 1 and "1 error(s)" in output and "alprazolom" not in output  # a: meant
    assert (f"{path}:{line_of(path, 'unrecognized:')}, field unrecognized: case 'oxycodone with "
            "alprazolam': medication 'oxycodone hydrochloride 10 MG Oral Tablet' is listed under "
            "unrecognized but the knowledge base knows it (oxycodone)") in output


@pytest.mark.parametrize("pack", sorted(p.name for p in RULESETS.iterdir()
                                        if (p / "pack.yaml").is_file()))
def test_shipped_packs_lint_clean(pack: str) -> None:
    code, output = _lint(RULESETS / pack)
    assert code == 0, output


# --- cds pack test --format junit, cds pack diff --format json|markdown --------------------

def test_pack_test_junit(tmp_path: Path) -> None:
    res = runner.invoke(app, ["pack", "test", str(RULESETS / "cns-burden"), "--format", "junit"])
    assert res.exit_code == 0, res.output
    root = ET.fromstring(res.stdout)
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("name") == "cns-burden@1.1.1" and suite.get("failures") == "0"
    assert int(suite.get("tests") or 0) == len(cases) > 5
    assert all(c.get("file", "").endswith("cns-burden.yaml") and c.get("line") for c in cases)
    # a failing case is a <failure> with the expectations it missed
    pack = tmp_path / "cns-burden"
    shutil.copytree(RULESETS / "cns-burden", pack)
    case_file = pack / "cases" / "cns-burden.yaml"
    case_file.write_text(case_file.read_text().replace(
        "expect: [beers-cns-active-3-or-more", "expect: [beers-anticholinergic-anticholinergic, "
        "beers-cns-active-3-or-more", 1))
    res = runner.invoke(app, ["pack", "test", str(pack), "--format", "junit"])
    assert res.exit_code == 1
    failed = [c for c in ET.fromstring(res.stdout).iter("testcase") if c.find("failure") is not None]
    assert len(failed) == 1
    failure = failed[0].find("failure")
    assert failure is not None
    assert "expected beers-anticholinergic-anticholinergic to fire" in (failure.get("message") or "")


def _diff(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["pack", "diff", *args])
    return res.exit_code, res.stdout


def test_pack_diff_json_markdown_and_exit_code() -> None:
    old, new = str(RULESETS / "opioid-safety@1.0.0"), str(RULESETS / "opioid-safety@1.1.0")
    code, text = _diff(old, new, "--format", "json", "--cases")
    assert code == 0
    doc = json.loads(text)
    assert (doc["old"], doc["new"], doc["differs"]) == ("opioid-safety@1.0.0",
                                                        "opioid-safety@1.1.0", True)
    assert "mme-crossed-50" in doc["removed"]
    assert {"field": "new_within_days", "old": None, "new": 90} in doc["changed"]["mme-50"]
    names = [c["name"] for c in doc["cases"]]
    assert names and len(names) == len(set(names))  # each case once
    assert all(c["lost"] or c["gained"] for c in doc["cases"])
    code, text = _diff(old, new, "--format", "markdown", "--exit-code")
    assert code == 1
    assert text.startswith("## opioid-safety@1.0.0 → opioid-safety@1.1.0")
    assert "### Removed rules" in text and "- `mme-crossed-50`" in text
    assert "| new_within_days | `null` | `90` |" in text
    code, text = _diff(old, old, "--exit-code", "--cases")
    assert code == 0 and "no rule changes" in text
    code, text = _diff(old, old, "--format", "json", "--exit-code")
    assert code == 0 and json.loads(text)["differs"] is False


def test_diff_cases_lines_not_repeated(tmp_path: Path) -> None:
    old = RULESETS / "opioid-safety@1.0.0"
    new = tmp_path / "opioid-safety@1.0.1"
    shutil.copytree(old, new)
    meta = new / "pack.yaml"
    meta.write_text(meta.read_text().replace("version: 1.0.0", "version: 1.0.1", 1).replace(
        "changelog:\n", "changelog:\n  - {version: 1.0.1, date: 2026-12-03, changes: [x]}\n", 1))
    for f in (new / "rules").glob("*.yaml"):
        f.write_text(f.read_text().replace("min: 50\n", "min: 500\n"))
    code, text = _diff(str(old), str(new), "--cases")
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("case ")]
    assert lines and len(lines) == len(set(lines))


# --- cds panel --rulesets, cds explain hints, cds knowledge search --------------------------

def _site_root(tmp_path: Path) -> Path:
    root = tmp_path / "site-rules"
    shutil.copytree(RULESETS / "cns-burden", root / "site-burden")
    meta = root / "site-burden" / "pack.yaml"
    meta.write_text(meta.read_text().replace("id: cns-burden", "id: site-burden", 1))
    return root


def test_panel_with_rulesets(tmp_path: Path) -> None:
    root = _site_root(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["panel", str(ROOT / "examples" / "panel"), "--out", str(out),
                              "--rulesets", str(root), "--pack", "site-burden", "--workers", "1",
                              "--as-of", "2026-11-26", "--db", "none", "--quiet"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert [p["id"] for p in run["packs"]] == ["site-burden", "data-quality"]
    assert run["packs"][0]["version"] == "1.1.1"
    res = runner.invoke(app, ["panel", str(ROOT / "examples" / "panel"), "--out", str(out),
                              "--pack", "site-burden", "--quiet", "--db", "none"])
    assert res.exit_code == 2 and "not installed" in res.output


def test_explain_suggests_where_the_rule_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _site_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "site-burden/acb-total-3-or-more"])
    assert res.exit_code == 2
    assert (f"hint: site-burden@1.1.1 ({root / 'site-burden'}) has it: add --rulesets "
            f"{root}") in res.output.replace("\n", "")
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "mme-crossed-50"])
    assert "hint: opioid-safety@1.0.0 has it: add --pack opioid-safety@1.0.0" in res.output
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "site-burden/acb-total-3-or-more",
                              "--rulesets", str(root)])
    assert res.exit_code == 0 and "site-burden@1.1.1" in res.output


def test_knowledge_search_cli(tmp_path: Path) -> None:
    res = runner.invoke(app, ["knowledge", "search", "OxyContin"])
    assert res.exit_code == 0
    assert "ingredient oxycodone" in res.output and "by brand; shipped" in res.output
    assert "classes: cns-active-beers, cns-depressant, opioid, opioid-agonist" in res.output
    assert "source: RxNorm" in res.output
    res = runner.invoke(app, ["knowledge", "search", "oxycodon"])
    assert res.exit_code == 1 and "near: oxycodone" in res.output
    res = runner.invoke(app, ["knowledge", "search", "opioid", "--format", "json"])
    doc = json.loads(res.stdout)
    assert doc["hits"][0]["kind"] == "class" and "oxycodone" in doc["hits"][0]["ingredients"]
    pack = write_pack(tmp_path / "rules" / "p", RULE_HEAD + interaction())
    (pack / "knowledge").mkdir()
    (pack / "knowledge" / "ingredients.yaml").write_text(
        "synonyms:\n  - {name: Oxy IR, ingredient: oxycodone, source: 'test fixture'}\n")
    res = runner.invoke(app, ["knowledge", "search", "oxy ir", "--pack", str(pack)])
    assert res.exit_code == 0 and "by site synonym; site" in res.output
    assert "source: test fixture" in res.output
    res = runner.invoke(app, ["knowledge", "search", "oxy ir", "--rulesets", str(tmp_path / "rules")])
    assert res.exit_code == 1  # the folder is the pack's own, not one beside the packs


def test_meta_template_is_valid() -> None:
    assert "changelog:" in META
