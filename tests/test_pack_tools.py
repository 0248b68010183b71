"""Authors' tools: pack diff, pack test output, explain, lint warnings."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cds.cli import app
from cds.rules.registry import bundled_rulesets

runner = CliRunner()
EXAMPLE = str(Path(__file__).parent.parent / "examples" / "patient-oxycodone-fentanyl.json")


def _copy_opioid_pack(tmp_path: Path, version: str) -> Path:
    dest = tmp_path / f"opioid-safety@{version}"
    shutil.copytree(bundled_rulesets() / "opioid-safety", dest)
    meta = yaml.safe_load((dest / "pack.yaml").read_text())
    meta["version"] = version
    meta["changelog"].append({"version": version, "date": "2026-11-27", "changes": ["test"]})
    (dest / "pack.yaml").write_text(yaml.safe_dump(meta))
    return dest


def test_pack_diff_shows_changed_threshold_and_alert_changes(tmp_path: Path) -> None:
    new = _copy_opioid_pack(tmp_path, "1.1.0")
    rules = new / "rules" / "mme.yaml"
    rules.write_text(rules.read_text().replace("    min: 90\n", "    min: 130\n"))
    res = runner.invoke(app, ["pack", "diff", str(bundled_rulesets() / "opioid-safety"), str(new)])
    assert res.exit_code == 0, res.output
    assert "mme-90" in res.output and "min: 90.0 -> 130.0" in res.output


def test_changelog_must_name_the_version(tmp_path: Path) -> None:
    new = _copy_opioid_pack(tmp_path, "1.2.0")
    meta = yaml.safe_load((new / "pack.yaml").read_text())
    meta["changelog"] = meta["changelog"][:1]
    (new / "pack.yaml").write_text(yaml.safe_dump(meta))
    res = runner.invoke(app, ["pack", "lint", str(new)])
    assert res.exit_code == 1
    assert "changelog has no entry for 1.2.0" in res.output


def test_pack_test_reports_expected_versus_got(tmp_path: Path) -> None:
    new = _copy_opioid_pack(tmp_path, "1.1.0")
    (new / "cases").mkdir(exist_ok=True)
    for f in (new / "cases").glob("*.yaml"):
        f.unlink()
    (new / "cases" / "c.yaml").write_text(yaml.safe_dump({"cases": [{
        "name": "wrong expectation", "as_of": "2026-11-26", "patient_file": EXAMPLE,
        "expect": ["mme-50"], "expect_not": ["mme-90"]}]}))
    res = runner.invoke(app, ["pack", "test", str(new)])
    assert res.exit_code == 1
    assert "expected mme-50 to fire" in res.output
    assert "expected mme-90 not to fire; it fired" in res.output
    assert "rules no case expects to fire" in res.output
    assert "0 passed, 1 failed" in res.output


def test_explain_lists_conditions_and_values() -> None:
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "opioid-safety/mme-90",
                              "--as-of", "2026-11-26", "--pack", "opioid-safety"])
    assert res.exit_code == 0, res.output
    assert "FIRED" in res.output and "total MME/day >= 90: 120.0" in res.output
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "opioid-safety/mme-50",
                              "--as-of", "2026-11-26", "--pack", "opioid-safety"])
    assert "did not fire" in res.output and "total MME/day < 90" in res.output


def test_explain_unknown_rule_is_a_clear_error() -> None:
    res = runner.invoke(app, ["explain", EXAMPLE, "--rule", "opioid-safety/nope"])
    assert res.exit_code == 2
    assert "no rule 'opioid-safety/nope'" in res.output


def test_lint_fails_on_unknown_placeholder(tmp_path: Path) -> None:
    new = _copy_opioid_pack(tmp_path, "1.1.0")
    rules = new / "rules" / "mme.yaml"
    rules.write_text(rules.read_text().replace("at or above 50 MME/day\"", "at or above {limit}\"", 1))
    res = runner.invoke(app, ["pack", "lint", str(new)])
    assert res.exit_code == 1
    assert "unknown placeholder {limit}: mme rules fill" in res.output
