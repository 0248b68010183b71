"""`cds check FILE [--format table|json]`: the JSON contract, the table, and bad input
(exit 2, one line naming the file and the field, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonmutation import json_values, mutated
from typer.testing import CliRunner

from cds.cli import app

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "examples" / "patient-oxycodone-fentanyl.json"
NATIVE = ROOT / "examples" / "patient-native.json"
#: One pinned pack, so the test does not depend on which other packs are installed.
PACK = ["--pack", "opioid-safety", "--as-of", "2026-10-15"]
runner = CliRunner()

ITEM_KEYS = {"medication", "ingredient", "daily_dose", "unit", "factor", "mme"}
ALERT_KEYS = {"id", "rule", "pack", "family", "severity", "priority", "summary", "rationale",
              "medications", "sources", "actions"}


def check(*args: str) -> Any:
    return runner.invoke(app, ["check", *args, *PACK])


def check_json(path: Path) -> dict[str, Any]:
    r = check(str(path), "--format", "json")
    assert r.exit_code == 0, r.output
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def assert_one_clear_error(result: Any, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:")
    for n in needles:
        assert n in err, (n, err)
    assert result.stdout == ""
    return str(err)


def write(tmp_path: Path, data: Any, name: str = "patient.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BUNDLE.read_text())
    return data


def native() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(NATIVE.read_text())
    return data


# --- the JSON contract ---------------------------------------------------------------------

def test_json_contract_for_the_issue_example() -> None:
    d = check_json(BUNDLE)
    assert d["patient"] == "oxy-fent-1"
    # the chosen pack, and the built-in pack that says what could not be checked
    assert d["packs"] == ["opioid-safety@2.0.2", "data-quality@1.0.0"]
    assert all(isinstance(p, str) and "@" in p for p in d["packs"])
    mme = d["mme"]
    assert mme["total"] == 120
    assert isinstance(mme["total"], int | float)
    items = {i["ingredient"]: i for i in mme["items"]}
    assert set(items) == {"oxycodone", "fentanyl"}
    for item in mme["items"]:
        assert set(item) >= ITEM_KEYS
        assert isinstance(item["medication"], str) and isinstance(item["unit"], str)
        for k in ("daily_dose", "factor", "mme"):
            assert isinstance(item[k], int | float)
    oxy, fent = items["oxycodone"], items["fentanyl"]
    assert (oxy["daily_dose"], oxy["unit"], oxy["factor"], oxy["mme"]) == (40, "mg", 1.5, 60)
    assert oxy["medication"] == "oxycodone hydrochloride 10 MG Oral Tablet"
    assert (fent["daily_dose"], fent["unit"], fent["factor"], fent["mme"]) == (25, "mcg/h", 2.4, 60)
    assert fent["medication"] == "72 HR fentanyl 0.025 MG/HR Transdermal System"
    assert mme["excluded"] == [] and d["unrecognized"] == []
    assert d["alerts"], "expected alerts"
    for a in d["alerts"]:
        assert set(a) >= ALERT_KEYS
        for k in ("id", "rule", "pack", "family", "severity", "summary", "rationale"):
            assert isinstance(a[k], str) and a[k], k
        assert isinstance(a["priority"], int)
        for k in ("medications", "sources", "actions"):
            assert isinstance(a[k], list) and all(isinstance(x, str) for x in a[k]), k
        assert a["pack"] in d["packs"]
        assert a["severity"] in ("critical", "high", "moderate", "low", "info")
    rules = {a["rule"] for a in d["alerts"]}
    assert "opioid-safety/mme-90" in rules  # 120 MME/day: the 90 threshold fires
    assert "opioid-safety/mme-50" not in rules  # the 50 tier stops below 90
    mme90 = next(a for a in d["alerts"] if a["rule"] == "opioid-safety/mme-90")
    assert (mme90["family"], mme90["severity"]) == ("mme", "high")
    assert "120" in mme90["summary"]
    assert set(mme90["medications"]) == {oxy["medication"], fent["medication"]}
    assert mme90["sources"]
    priorities = [a["priority"] for a in d["alerts"]]
    assert priorities == sorted(priorities, reverse=True)


def test_native_and_fhir_give_the_same_result() -> None:
    a, b = check_json(BUNDLE), check_json(NATIVE)
    assert a["mme"] == b["mme"]
    assert [x["rule"] for x in a["alerts"]] == [x["rule"] for x in b["alerts"]]


def test_unrecognized_and_excluded_are_listed(tmp_path: Path) -> None:
    n = native()
    n["medications"] += [
        {"id": "u1", "text": "frobnicol 5 mg", "dose": 1, "dose_unit": "tablet",
         "timing": {"code": "BID"}},
        {"id": "b1", "text": "buprenorphine 8 MG / naloxone 2 MG Sublingual Film", "dose": 1,
         "dose_unit": "film", "timing": {"code": "QD"}},
    ]
    d = check_json(write(tmp_path, n))
    assert d["unrecognized"] == [{"medication": "frobnicol 5 mg",
                                  "reason": d["unrecognized"][0]["reason"]}]
    assert d["unrecognized"][0]["reason"]
    (ex,) = d["mme"]["excluded"]
    assert ex["medication"].startswith("buprenorphine") and "opioid-use-disorder" in ex["reason"]
    assert d["mme"]["total"] == 120


def test_unknown_dose_unit_is_excluded_with_the_reason_not_guessed(tmp_path: Path) -> None:
    b = bundle()
    oxy = b["entry"][3]["resource"]
    assert oxy["id"] == "oxycodone-1"
    oxy["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 1, "unit": "zorks", "code": "zorks"}
    d = check_json(write(tmp_path, b))
    assert d["mme"]["total"] == 60  # the patch only
    (ex,) = d["mme"]["excluded"]
    assert "oxycodone" in ex["medication"] and "zorks" in ex["reason"]


# --- table -----------------------------------------------------------------------------------

def test_table_format() -> None:
    r = check(str(BUNDLE))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "oxy-fent-1" in out and "opioid-safety@2.0.2" in out
    assert "MME 120.0" in out and "cdc-2022" in out
    assert "oxycodone" in out and "fentanyl" in out and "25 mcg/h" in out and "40 mg" in out
    flat = "".join(out.split()).replace("│", "")  # the table wraps long cells
    assert "opioid-safety/mme-90" in flat and "atorabove90MME/day" in flat
    assert "not counted" not in out and "unrecognized" not in out


def test_table_is_the_default_and_json_flag_short_form() -> None:
    assert check(str(BUNDLE), "-f", "json").stdout.lstrip().startswith("{")
    assert not check(str(BUNDLE)).stdout.lstrip().startswith("{")


# --- bad input: exit 2, one line, file and field -------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert_one_clear_error(check(str(path)), str(path), "not found")


def test_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path, '{"resourceType": "Bundle",\n  "entry": [,]}')
    assert_one_clear_error(check(str(path)), str(path), "JSON")


def test_bundle_with_a_bad_unit(tmp_path: Path) -> None:
    b = bundle()
    weight = b["entry"][1]["resource"]
    assert weight["id"] == "weight-1"
    weight["valueQuantity"].update(unit="stone", code="stone")
    path = write(tmp_path, b)
    err = assert_one_clear_error(check(str(path)), str(path), "weight-1", "valueQuantity",
                                 "stone")
    assert "unit" in err


def test_native_patient_with_a_wrong_type(tmp_path: Path) -> None:
    n = native()
    n["medications"][0]["dose"] = "two"
    path = write(tmp_path, n)
    assert_one_clear_error(check(str(path)), str(path), "medications[0].dose")


def test_native_patient_with_a_bad_lab_unit(tmp_path: Path) -> None:
    n = native()
    n["observations"][1]["unit"] = "mmol/L"
    path = write(tmp_path, n)
    assert_one_clear_error(check(str(path)), str(path), "observations[1]", "mmol/L")


def test_not_a_patient(tmp_path: Path) -> None:
    path = write(tmp_path, [1, 2, 3])
    assert_one_clear_error(check(str(path)), str(path))


def test_bad_as_of() -> None:
    r = runner.invoke(app, ["check", str(BUNDLE), "--pack", "opioid-safety", "--as-of", "soon"])
    assert_one_clear_error(r, "--as-of", "soon")


def test_unknown_pack() -> None:
    r = runner.invoke(app, ["check", str(BUNDLE), "--pack", "opioid-safety@9.9.9"])
    assert r.exit_code == 2 and "opioid-safety@9.9.9" in r.stderr and "Traceback" not in r.output


def test_bad_format_option() -> None:
    r = runner.invoke(app, ["check", str(BUNDLE), "--format", "xml"])
    assert r.exit_code == 2 and "Traceback" not in r.output


# --- a real process ----------------------------------------------------------------------

def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from cds.cli import app; app()", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_real_process_json_and_bad_input(tmp_path: Path) -> None:
    p = _run("check", str(BUNDLE), "--format", "json", *PACK)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["mme"]["total"] == 120
    assert "opioid-safety/mme-90" in {a["rule"] for a in d["alerts"]}
    bad = write(tmp_path, "{oops")
    p = _run("check", str(bad), *PACK)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and str(bad) in p.stderr
    assert "Traceback" not in p.stderr


# --- hypothesis: malformed bundles never produce a traceback ------------------------------

JSON_VALUE = json_values(["", "mg", "stone", "{tablet}", "BID", "Q6H", "h", "-1",
                          "2026-13-45", "umol/L", "Patient", "Bundle"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.sampled_from([bundle(), native()]).flatmap(
    lambda base: mutated(base, JSON_VALUE)))
def test_malformed_input_never_gives_a_traceback(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "patient.json"
        path.write_text(json.dumps(doc))
        r = check(str(path), "--format", "json")
    assert r.exit_code in (0, 2), (r.exit_code, repr(r.exception), r.output[-2000:])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:") and str(path) in err
    else:
        json.loads(r.stdout)


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=60))
def test_arbitrary_bytes_never_give_a_traceback(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "patient.json"
        path.write_text(text)
        r = check(str(path))
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


@pytest.mark.parametrize("doc", [
    {}, {"resourceType": "Bundle"}, {"resourceType": "Bundle", "entry": None},
    {"resourceType": "Bundle", "entry": [{}]}, {"resourceType": "Bundle", "entry": [None]},
    {"resourceType": "Patient"}, {"format": "cds-native/1"}, {"format": "cds-native/9", "id": "x"},
    None, 3, "text",
])
def test_degenerate_documents(tmp_path: Path, doc: Any) -> None:
    r = check(str(write(tmp_path, doc)))
    assert r.exit_code in (0, 2) and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
