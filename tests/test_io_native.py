"""Native JSON input and file reading: errors name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from jsonmutation import json_values, mutated

from cds.errors import InputError
from cds.io import patient_from_native, read_patient
from cds.patient import Patient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NATIVE = EXAMPLES / "patient-native.json"


def native() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(NATIVE.read_text())
    return data


def error(fn: Any, *args: Any, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as e:
        fn(*args, **kwargs)
    return e.value


def test_native_example_matches_fhir_example() -> None:
    p = read_patient(NATIVE)
    assert p.id == "oxy-fent-1" and len(p.medications) == 4
    fhir = read_patient(EXAMPLES / "patient-oxycodone-fentanyl.json")
    # the same patient; only the FHIR reader knows where each dose unit was read
    provenance = {"medications": {"__all__": {"dose_field"}}}
    assert p.model_dump(exclude=provenance) == fhir.model_dump(exclude=provenance)


def test_documented_example_is_valid() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "native-format.md").read_text()
    block = doc.split("```json\n", 1)[1].split("```", 1)[0]
    p = patient_from_native(json.loads(block))
    weight, albumin = p.latest("weight"), p.latest("albumin")
    assert weight is not None and round(weight.value, 1) == 69.9
    assert albumin is not None and albumin.value == 3.5
    assert [m.is_current for m in p.medications] == [True, False]


def test_format_marker_is_optional_and_checked() -> None:
    data = native()
    with_marker = patient_from_native(data)
    del data["format"]
    assert patient_from_native(data) == with_marker
    data["format"] = "cds-native/2"
    e = error(patient_from_native, data, source="p.json")
    assert (e.field, e.file) == ("format", "p.json")


def test_units_are_converted() -> None:
    p = patient_from_native({"id": "x", "observations": [
        {"kind": "weight", "value": 154.32, "unit": "lb"},
        {"kind": "creatinine", "value": 123.76, "unit": "umol/L"},
        {"kind": "albumin", "value": 35, "unit": "g/L"}]})
    assert [(o.unit, round(o.value, 2)) for o in p.observations] == [
        ("kg", 70.0), ("mg/dL", 1.4), ("g/dL", 3.5)]


def test_first_failing_field_and_count() -> None:
    data = native()
    data["medications"][2]["dose"] = -1
    e = error(patient_from_native, data, source="p.json")
    assert (e.field, e.file) == ("medications[2].dose", "p.json")
    assert "more" not in e.message
    data["medications"][3]["route"] = 5
    data["sex"] = "F"
    e = error(patient_from_native, data)
    assert e.field == "sex" and e.message.endswith("(and 2 more errors)")


@pytest.mark.parametrize(("change", "field"), [
    ({"observations": [{"kind": "weight", "value": 70, "unit": "stone"}]}, "observations[0]"),
    ({"observations": [{"kind": "pulse", "value": 70}]}, "observations[0].kind"),
    ({"medications": [{"id": "m"}]}, "medications[0]"),
    ({"medications": [{"id": "m", "text": "x", "timing": {"period_unit": "fortnight"}}]},
     "medications[0].timing.period_unit"),
    ({"birth_date": "14/03/1950"}, "birth_date"),
    ({"unknown_field": 1}, "unknown_field"),
    ({"id": None}, "id"),
])
def test_validation_errors(change: dict[str, Any], field: str) -> None:
    assert error(patient_from_native, {"id": "x", **change}).field == field


def test_not_an_object() -> None:
    assert "array" in error(patient_from_native, [1]).message  # type: ignore[arg-type]


# --- read_patient: files --------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    e = error(read_patient, tmp_path / "nope.json")
    assert e.file == str(tmp_path / "nope.json") and "not found" in e.message
    assert "directory" in error(read_patient, tmp_path).message


def test_not_json_names_line(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text('{\n  "id": "x",\n  "sex": female\n}\n')
    e = error(read_patient, f)
    assert (e.file, e.line) == (str(f), 3)
    assert str(e).startswith(f"{f}:3: not valid JSON")
    f.write_text("")
    assert error(read_patient, f).file == str(f)
    f.write_bytes(b'{"id": "\xff"}')
    assert error(read_patient, f).file == str(f)


@pytest.mark.parametrize("content", ["[]", "3", '"Bundle"', "null"])
def test_wrong_shape(tmp_path: Path, content: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(content)
    e = error(read_patient, f)
    assert e.file == str(f) and "JSON object" in e.message


def test_detects_format_by_content(tmp_path: Path) -> None:
    f = tmp_path / "anything.txt"
    f.write_text(json.dumps({"resourceType": "Patient", "id": "solo", "gender": "male"}))
    assert read_patient(f).sex == "male"
    f.write_text(json.dumps({"resourceType": "Observation", "id": "o"}))
    assert error(read_patient, f).file == str(f)
    f.write_text(json.dumps({"id": "n", "medications": [{"id": "m", "dose": 1}]}))
    e = error(read_patient, f)
    assert (e.file, e.field) == (str(f), "medications[0]")


# --- property: anything in, Patient or InputError out ---------------------------------------

JSON = json_values(["kg", "lb", "umol/L", "weight", "egfr", "2026-01-01", "h", "request"])


BASE = native()


@settings(max_examples=300, deadline=None)
@given(mutated(BASE, JSON, max_changes=3))
def test_mutated_native_gives_patient_or_input_error(doc: Any) -> None:
    try:
        assert isinstance(patient_from_native(doc), Patient)
    except InputError as e:
        assert e.message
