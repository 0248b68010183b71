"""`cds panel`: partitioning, quarantine, CSV layout, outputs, resume after kill -9, dask,
and the report in a real headless browser."""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonmutation import json_values, mutated

from cds.panel.partition import discover, partition_unit, plan_units, shard_of
from cds.panel.run import run_panel
from cds.synth import write_panel

PACKS = ["opioid-safety"]  # the shipped pack the tests need; others may be in progress
AS_OF = date(2026, 11, 26)
ALERT_COLUMNS = ["patient_id", "rule", "pack", "family", "severity", "priority", "summary",
                 "rationale", "medications",
                 # added by #14 (columns are only ever added, never renamed)
                 "alert_key", "status", "changed_because", "role", "actions", "prescriber",
                 "order_ids", "mrn", "patient_name", "birth_date", "ingredients", "band",
                 "level", "decision", "decision_version", "decided_by", "reason", "note",
                 "follow_up", "referred_to"]
ROOT = Path(__file__).resolve().parents[1]


def _review(src: Path, out: Path, **kw: object) -> dict:
    kw.setdefault("workers", 2)
    return run_panel(src, out, packs=PACKS, as_of=AS_OF, quiet=True, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panel(300, tmp_path_factory.mktemp("panel") / "export", seed=3, dirty=0.02)


@pytest.fixture(scope="module")
def reviewed(panel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("review") / "out"
    return out, _review(panel, out)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _alert_rows(out: Path) -> list[tuple[str, ...]]:
    return sorted(tuple(r.values()) for r in _csv(out / "alerts.csv"))


def _resource(rtype: str, **fields: object) -> dict:
    return {"resourceType": rtype, **fields}


def _write_ndjson(folder: Path, name: str, records: list[object], gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)
    if gz:
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    else:
        (folder / name).write_bytes(data)


OXY = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049683",
                   "display": "oxycodone hydrochloride 10 MG Oral Tablet"}]}
ALPRAZOLAM = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                          "code": "308048", "display": "alprazolam 0.5 MG Oral Tablet"}]}


def _order(oid: str, pid: str, concept: dict, per_day: int = 4) -> dict:
    return _resource(
        "MedicationRequest", id=oid, status="active", intent="order",
        subject={"reference": f"Patient/{pid}"}, medicationCodeableConcept=concept,
        authoredOn="2026-10-01",
        dosageInstruction=[{"timing": {"repeat": {"frequency": per_day, "period": 1,
                                                  "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}]}])


# --- partition and grouping -------------------------------------------------------------


def test_partition_groups_each_patient_in_one_shard_from_shuffled_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_panel(60, src, seed=5, dirty=0)
    lines = (src / "MedicationRequest.ndjson").read_bytes().splitlines()
    random.Random(1).shuffle(lines)  # a patient's records anywhere in the file
    (src / "MedicationRequest.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    _, files, _ = discover(src)
    units = plan_units(files, range_bytes=20_000)  # several byte ranges per file
    assert len(units) > len(files)
    parts = tmp_path / "parts"
    parts.mkdir()
    results = [partition_unit(u, str(parts), 7) for u in units]
    assert sum(r.records for r in results) == sum(
        len(f.read_bytes().splitlines()) for f in src.glob("*.ndjson"))
    owner: dict[str, int] = {}
    for f in parts.glob("s*.u*"):
        shard = int(f.name[1:6])
        for line in f.read_bytes().splitlines():
            pid = line.split(b"\t", 1)[0].decode()
            assert owner.setdefault(pid, shard) == shard == shard_of(pid, 7)
    assert len(owner) == 60


@pytest.fixture(scope="module")
def small_panel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    src = write_panel(6, tmp_path_factory.mktemp("small") / "export", seed=11, dirty=0)
    return {f.name: f.read_bytes().split(b"\n")[:-1] for f in sorted(src.iterdir())}


_WEIRD = st.sampled_from([None, True, 0, -1, 1.5e300, "", " ", "\r", "\n", "x\ty", "Patient/",
                          "Patient/a/b", "2026-13-40", "\u2028", [], {}, [None],
                          {"reference": None}, "MedicationRequest", "Patient"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_records_never_stop_a_shard(small_panel: dict[str, list[bytes]],
                                            data: st.DataObject) -> None:
    """Any record, mangled anywhere (a wrong type, a control character, a CR, a cut line), is
    reviewed or quarantined: the shard finishes and every patient is still on the worklist."""
    from cds.engine.evaluator import load_engine
    from cds.panel.shard import ShardJob, review_shard

    files = {name: list(lines) for name, lines in small_panel.items()}
    name = data.draw(st.sampled_from(sorted(n for n in files if n != "Patient.ndjson")))
    i = data.draw(st.integers(0, len(files[name]) - 1))
    record = orjson.loads(files[name][i])
    kind = data.draw(st.sampled_from(["mutate", "element", "cr", "cut"]))
    weird = _WEIRD | json_values(["Patient/x"])
    if kind == "mutate":
        raw = orjson.dumps(data.draw(mutated(record, weird)))
    elif kind == "element":  # an element, or one of its parts, replaced
        key = data.draw(st.sampled_from(sorted(record)))
        value = record[key]
        if isinstance(value, dict) and value and data.draw(st.booleans()):
            value = {**value, data.draw(st.sampled_from(sorted(value))): data.draw(weird)}
        else:
            value = data.draw(weird)
        raw = orjson.dumps({**record, key: value})
    elif kind == "cr":
        raw = orjson.dumps(record).replace(b",", b",\r")
    else:
        raw = orjson.dumps(record)[:data.draw(st.integers(1, 200))]
    files[name][i] = raw
    with tempfile.TemporaryDirectory() as tmp:
        src, parts = Path(tmp) / "src", Path(tmp) / "work" / "parts"
        src.mkdir()
        parts.mkdir(parents=True)
        for n, lines in files.items():
            (src / n).write_bytes(b"\n".join(lines) + b"\n")
        _, found, _ = discover(src)
        units = plan_units(found)
        for u in units:
            partition_unit(u, str(parts), 2)
        job = {k: ShardJob(str(Path(tmp) / "work"), k, AS_OF, {u.index: u.file.name for u in units},
                           {u.index: 0 for u in units}, 5) for k in range(2)}
        eng = _ENGINE.setdefault("e", load_engine(PACKS))
        stats = [review_shard(job[k], eng) for k in range(2)]
    assert sum(s["patients"] for s in stats) >= 6
    assert sum(s["failed"] for s in stats) == 0


_ENGINE: dict = {}


def test_gzipped_export_gives_the_same_review(panel: Path, reviewed: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in panel.glob("*.ndjson"):
        (gz / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    out = tmp_path / "out"
    _review(gz, out, shards=5)
    unzipped = [tuple(x.replace(".ndjson.gz", ".ndjson") for x in row) for row in _alert_rows(out)]
    assert unzipped == _alert_rows(reviewed[0])


# --- outputs ------------------------------------------------------------------------------


def test_outputs_and_exact_columns(reviewed: tuple[Path, dict]) -> None:
    out, info = reviewed
    for name in ("alerts.parquet", "alerts.csv", "worklist.csv", "quarantine.ndjson",
                 "run.json", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / ".work").exists()
    with open(out / "alerts.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ALERT_COLUMNS
    table = pq.read_table(out / "alerts.parquet")
    assert table.column_names == ALERT_COLUMNS
    alerts = _csv(out / "alerts.csv")
    assert table.num_rows == len(alerts) == info["counts"]["alerts"] > 0
    assert any("; " in a["medications"] for a in alerts)  # joined with "; "
    worklist = _csv(out / "worklist.csv")
    assert len(worklist) == 300 == info["counts"]["patients"]
    assert len({w["patient_id"] for w in worklist}) == 300
    prios = [int(w["priority"]) for w in worklist]
    assert prios == sorted(prios, reverse=True)
    for col in ("n_interaction", "n_mme", "n_escalation", "n_data_quality", "mme_total",
                "not_assessed"):
        assert col in worklist[0]
    by_patient: dict[str, int] = {}
    for a in alerts:
        by_patient[a["patient_id"]] = by_patient.get(a["patient_id"], 0) + 1
    assert all(int(w["alerts"]) == by_patient.get(w["patient_id"], 0) for w in worklist)
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["packs"][0]["id"] == "opioid-safety" and run["packs"][0]["version"]
    assert run["knowledge"] and run["timings"]["total"] > 0
    assert run["counts"]["quarantined"] == len((out / "quarantine.ndjson").read_bytes().splitlines())
    html = (out / "report.html").read_text()
    assert "<script src" not in html and "http://" not in html.split("<body")[0]
    assert 'id="worklist"' in html and "<svg" in html and "90 MME" in html


def test_report_pages_cover_the_top_n_when_shards_skip_details(
        panel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards reviewed after others skip the details of patients ranked below the best N so
    far; the report must still have a page for every patient of the final top N."""
    seen: dict = {}

    def capture(path: Path, info: dict, stats: dict, top: list, details: dict, top_n: int) -> None:
        seen.update(top=top, details=details)

    monkeypatch.setattr("cds.panel.run.write_report", capture)
    _review(panel, tmp_path / "out", workers=1, shards=12, top_n=15)
    assert len(seen["top"]) == 15
    assert all(r["patient_id"] in seen["details"] for r in seen["top"] if r["alerts"])
    ranked = [r["patient_id"] for r in _csv(tmp_path / "out" / "worklist.csv")][:15]
    assert [r["patient_id"] for r in seen["top"]] == ranked


def test_quarantine_has_file_line_and_reason(reviewed: tuple[Path, dict], panel: Path) -> None:
    out, _ = reviewed
    records = [orjson.loads(x) for x in (out / "quarantine.ndjson").read_bytes().splitlines()]
    problems = {r["problem"] for r in records}
    assert "not valid JSON" in problems
    assert "no subject or patient reference to a Patient" in problems
    assert "no medicationCodeableConcept or medicationReference" in problems
    assert any("mg/furlong" in p for p in problems)
    for r in records:
        assert r["file"] and r["line"] >= 1 and r["reason"]
        line = (panel / r["file"]).read_bytes().splitlines()[r["line"] - 1]
        if r["problem"] != "not valid JSON":
            assert orjson.loads(line) == r["record"]  # the line number points at the record


def test_bad_records_never_stop_the_review(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_ndjson(src, "Patient.ndjson", [
        _resource("Patient", id="a", gender="female", birthDate="1950-01-01"),
        _resource("Patient", id="b", gender="banana"),  # unknown gender
        b"{not json", b"[1, 2]",
        _resource("Patient", gender="male")])  # no id
    _write_ndjson(src, "MedicationRequest.ndjson", [
        _order("a1", "a", OXY), _order("a2", "a", ALPRAZOLAM, per_day=2),
        # unusable: no drug at all
        {k: v for k, v in _order("a3", "a", OXY).items() if k != "medicationCodeableConcept"},
        _order("a4", "a", {"text": "Zorvanex 20 mg tablet"}),  # unknown drug: stays, unrecognized
        _order("b1", "b", OXY)], gz=True)
    _write_ndjson(src, "Observation.ndjson", [
        _resource("Observation", id="o1", status="final", subject={"reference": "Patient/a"},
                  code={"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                  valueQuantity={"value": 1.1, "unit": "mg/furlong"})])
    out = tmp_path / "out"
    info = _review(src, out, workers=1)
    assert info["counts"]["patients"] == 2
    q = [orjson.loads(x) for x in (out / "quarantine.ndjson").read_bytes().splitlines()]
    reasons = {(r["file"], r["line"]): r for r in q}
    assert "unknown gender" in reasons[("Patient.ndjson", 2)]["reason"]
    assert reasons[("Patient.ndjson", 3)]["problem"] == "not valid JSON"
    assert reasons[("Patient.ndjson", 4)]["problem"] == "not a JSON object"
    assert reasons[("Patient.ndjson", 5)]["problem"] == "Patient resource has no id"
    assert reasons[("MedicationRequest.ndjson.gz", 3)]["patient_id"] == "a"
    assert "mg/furlong" in reasons[("Observation.ndjson", 1)]["reason"]
    alerts = [a for a in _csv(out / "alerts.csv") if a["patient_id"] == "a"]
    rules = {a["rule"] for a in alerts}
    assert "opioid-safety/opioid-benzodiazepine" in rules  # still reviewed
    na = next(a for a in alerts if a["rule"] == "panel/not-assessed")
    assert "no medicationCodeableConcept" in na["rationale"]
    assert "Zorvanex 20 mg tablet" in na["rationale"] and "mg/furlong" in na["rationale"]
    w = {r["patient_id"]: r for r in _csv(out / "worklist.csv")}
    assert w["a"]["not_assessed"] == "3" and w["b"]["age"] == ""


# --- CSV layout ---------------------------------------------------------------------------


def test_patient_ids_with_control_characters_are_quarantined(tmp_path: Path) -> None:
    """A patient id with a tab, line break or other control character cannot be a FHIR id;
    it goes to the quarantine instead of breaking the partition's line format."""
    src = tmp_path / "src"
    _write_ndjson(src, "Patient.ndjson", [
        _resource("Patient", id="a", gender="female", birthDate="1950-01-01"),
        _resource("Patient", id="b\nc", gender="female"),
        _resource("Patient", id="d\re", gender="female")])
    # a CR is JSON whitespace: a record may hold one and still be read
    with_cr = orjson.dumps(_order("a2", "a", ALPRAZOLAM)).replace(b'"intent"', b'\r"intent"')
    _write_ndjson(src, "MedicationRequest.ndjson", [
        _order("a1", "a", OXY), _order("x1", "b\nc", OXY), _order("x2", "f\u2028g", OXY),
        with_cr])
    out = tmp_path / "out"
    info = _review(src, out, workers=1)
    assert info["counts"]["patients"] == 1
    q = [orjson.loads(x) for x in (out / "quarantine.ndjson").read_bytes().splitlines()]
    assert len(q) == 4 and {r["line"] for r in q} == {2, 3}
    assert {r["problem"] for r in q} == {"patient id has a control character: not a FHIR id"}
    assert {r["rule"] for r in _csv(out / "alerts.csv")} >= {"opioid-safety/opioid-benzodiazepine"}


def test_csv_layout(tmp_path: Path) -> None:
    src = tmp_path / "csv"
    src.mkdir()
    (src / "patients.csv").write_text(
        "patient_id,birth_date,sex\nc1,1948-05-01,F\nc2,1990-02-02,male\n")
    (src / "medications.csv").write_text(
        "patient_id,order_id,type,status,rxnorm,name,dose,dose_unit,frequency,period,"
        "period_unit,as_needed,route,authored,prescriber,quantity,quantity_unit,supply_days,"
        "dispensed\n"
        "c1,m1,request,active,1049683,oxycodone hydrochloride 10 MG Oral Tablet,2,tablet,4,1,d,"
        "no,oral,2026-10-01,Dr. Lee,240,tablet,30,\n"
        "c1,m2,,,308048,alprazolam 0.5 MG Oral Tablet,1,tablet,2,,,,,2026-10-01,,,,,\n"
        "c1,m3,request,active,,,abc,tablet,2,,,,,,,,,,\n"  # no drug, bad dose
        "c2,m4,dispense,,1049683,,1,tablet,2,,,,,,Dr. Okafor,60,tablet,30,2026-11-01\n"
        ",m5,request,active,1049683,,1,tablet,1,,,,,,,,,,\n")  # no patient
    (src / "labs.csv").write_text(
        "patient_id,lab_id,kind,loinc,value,unit,date\n"
        "c1,l1,creatinine,,1.4,mg/dL,2026-10-01\nc1,l2,weight,,70,kg,2026-10-01\n"
        "c2,l3,potassium,,4.1,mmol/L,2026-10-01\n")
    out = tmp_path / "out"
    info = _review(src, out, workers=1)
    assert info["layout"] == "csv" and info["counts"]["patients"] == 2
    alerts = _csv(out / "alerts.csv")
    assert {"opioid-safety/opioid-benzodiazepine", "opioid-safety/mme-90"} <= {
        a["rule"] for a in alerts if a["patient_id"] == "c1"}
    q = [orjson.loads(x) for x in (out / "quarantine.ndjson").read_bytes().splitlines()]
    by_line = {(r["file"], r["line"]): r for r in q}
    assert by_line[("medications.csv", 4)]["patient_id"] == "c1"
    assert "rxnorm or name" in by_line[("medications.csv", 4)]["reason"]
    assert by_line[("medications.csv", 6)]["reason"] == "column patient_id is empty"
    assert "potassium" in by_line[("labs.csv", 4)]["reason"]


def test_csv_numbers_must_be_finite() -> None:
    from cds.panel.csvlayout import csv_record

    for value in ("nan", "inf", "-Infinity"):
        rec = csv_record("medications", {"patient_id": "c1", "order_id": "m1",
                                         "rxnorm": "1049683", "dose": value,
                                         "dose_unit": "tablet"}, 2)
        assert isinstance(rec, dict) and rec["resourceType"] == "_Invalid"
        assert "not a finite number" in rec["reason"]


# --- resume after kill -9 -----------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cds.cli import app; app()", *args]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    src = write_panel(1500, tmp_path / "src", seed=11)
    ref = tmp_path / "ref"
    _review(src, ref, shards=4)
    out = tmp_path / "out"
    args = ["panel", str(src), "--out", str(out), "--pack", PACKS[0], "--as-of",
            AS_OF.isoformat(), "--workers", "1", "--shards", "60", "-q"]
    proc = subprocess.Popen(_cli(*args), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shards = out / ".work" / "shards"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = [d for d in shards.glob("s*") if d.is_dir()] if shards.exists() else []
            if len(done) >= 5:
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, mid-run
        proc.wait()
        # its workers notice their run is gone and exit within seconds: no orphans
        deadline = time.monotonic() + 15
        while _group_alive(proc.pid):
            assert time.monotonic() < deadline, "workers outlived the killed run"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, so the test cleans up
    done = len([d for d in shards.glob("s*") if d.is_dir()])
    assert 5 <= done < 60 and not (out / "run.json").exists()
    # temporaries a kill can leave behind (a shard half written, a stats or run.json rewrite)
    stray = [shards / ".s00059.4242.deadbeef", out / ".run.json.tmp",
             next(d for d in shards.glob("s*") if d.is_dir()) / "stats.json.tmp"]
    stray[0].mkdir()
    (stray[0] / "alerts.parquet").write_bytes(b"half")
    for f in stray[1:]:
        f.write_bytes(b"{")
    res = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in stray)
    worklist = _csv(out / "worklist.csv")
    assert len(worklist) == 1500 == len({w["patient_id"] for w in worklist})
    assert _alert_rows(out) == _alert_rows(ref)
    assert sorted((out / "quarantine.ndjson").read_bytes().splitlines()) == sorted(
        (ref / "quarantine.ndjson").read_bytes().splitlines())
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["throughput"]["patients_reviewed_this_invocation"] < 1500


def test_resume_reuses_the_interrupted_runs_date(tmp_path: Path, panel: Path) -> None:
    out = tmp_path / "out"
    work = out / ".work"
    work.mkdir(parents=True)
    (work / "params.json").write_bytes(orjson.dumps({
        "input": str(panel.resolve()), "packs": PACKS, "as_of": "2026-01-02", "shards": 3,
        "top_n": 10, "started": 0}))
    info = run_panel(panel, out, resume=True, quiet=True, workers=1)
    assert info["as_of"] == "2026-01-02" and info["shards"] == 3


# --- the CLI, the bundled panel, dask, the browser ---------------------------------------


def test_cli_bundled_panel_prints_where_the_report_is(tmp_path: Path) -> None:
    out = tmp_path / "review"
    res = subprocess.run(_cli("panel", str(ROOT / "examples" / "panel"), "--out", str(out),
                              "--pack", PACKS[0], "--as-of", "2026-11-26"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert str((out / "report.html").resolve()) in res.stderr.replace("\n", "")
    res = subprocess.run(_cli("panel", str(tmp_path / "missing"), "--out", str(out)),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a folder" in res.stderr and "Traceback" not in res.stderr


def test_synth_is_seeded(tmp_path: Path) -> None:
    a, b = write_panel(30, tmp_path / "a", seed=9), write_panel(30, tmp_path / "b", seed=9)
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes()
    c = write_panel(30, tmp_path / "c", seed=10)
    assert (c / "MedicationRequest.ndjson").read_bytes() != (a / "MedicationRequest.ndjson").read_bytes()


@pytest.mark.slow
def test_dask_local_cluster_equals_local_run(panel: Path, reviewed: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        info = _review(panel, out, executor="dask", scheduler=cluster.scheduler_address)
    assert info["executor"] == "dask" and info["workers"] == 2
    ref = reviewed[0]
    assert _alert_rows(out) == _alert_rows(ref)
    assert (out / "worklist.csv").read_bytes() == (ref / "worklist.csv").read_bytes()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_in_a_headless_browser(reviewed: tuple[Path, dict], tmp_path: Path) -> None:
    out, info = reviewed
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (out / "report.html").resolve().as_uri()
    res = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    dom = res.stdout
    assert res.returncode == 0 and "Medication-safety panel review" in dom
    # the inline script ran: it counts the worklist rows it shows
    assert f"{info['counts']['patients']} of {info['counts']['patients']} rows" in dom
    top = _csv(out / "worklist.csv")[0]
    assert f'id="p-{top["patient_id"]}"' in dom and dom.count("<svg") >= 4
    shot = tmp_path / "report.png"
    res = subprocess.run([*base, "--window-size=1400,2000", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
