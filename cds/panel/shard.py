"""One unit of work: review every patient of one shard and write the shard's results.

The results are written into a temporary folder that is renamed into place at the end: a
shard's folder exists (complete) or does not, whatever happens to the process, which is what
makes `--resume` exactly-once.
"""

from __future__ import annotations

import heapq
import os
import pickle
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cds.decisions.carry import judge, lineage, sighting_of
from cds.decisions.model import STATUS_RANK, STATUSES, Decision, Judged, Sighting
from cds.decisions.snapshot import read_prior
from cds.engine.evaluator import Engine
from cds.engine.result import Result, mme_to_dict
from cds.errors import CdsError, InputError
from cds.io import Record, add_medication, build_patient
from cds.panel.columns import ALERT_COLUMNS, ALERT_SCHEMA, MME_BIN, MME_BINS, sort_key
from cds.patient import Patient
from cds.vocabulary import DATA_QUALITY, FAMILIES

#: The panel's own rule for "part of this patient's record could not be assessed".
NOT_ASSESSED_RULE = "panel/not-assessed"
#: The folder (under .work/) of what the decisions store knew before the run, per shard.
PRIOR = "prior"
#: patients.parquet: each patient's values (summary, MME, not assessed) as JSON, in row groups
#: small enough that the served worklist reads one patient without reading the file
PATIENT_SCHEMA = pa.schema([("patient_id", pa.string()), ("detail", pa.binary())])
PATIENT_ROW_GROUP = 2000

_ENGINE: Engine | None = None
_SPEC: tuple[str, Any] | None = None
_MEDS: dict[str, dict[str, dict[str, Any]]] = {}


def engine_spec(engine: Engine) -> tuple[str, Any]:
    """How a worker gets the engine: pickled once (Engine pickles, expressions included)."""
    return ("pickle", pickle.dumps(engine))


def worker_engine(spec: tuple[str, Any]) -> Engine:
    global _ENGINE, _SPEC
    if _ENGINE is None or spec is not _SPEC and spec != _SPEC:
        _ENGINE = pickle.loads(spec[1])
        _SPEC = spec
    return _ENGINE


def init_worker(spec: tuple[str, Any], run_pid: int | None = None) -> None:
    """Process-pool initializer: build the engine once per worker, and exit when the run's
    process is gone (killed with -9, it cannot stop its pool: the workers notice)."""
    worker_engine(spec)
    if run_pid is not None:
        threading.Thread(target=_exit_with, args=(run_pid, os.getppid()), daemon=True,
                         name="cds-orphan-watch").start()


#: How often a worker checks that the run's process is still there (seconds).
ORPHAN_POLL = 1.0


def _exit_with(run_pid: int, parent: int) -> None:
    """Exit (without cleanup: a shard half written is a temporary folder the resumed run
    removes) as soon as the run's process, or the worker's own parent, is gone."""
    while True:
        time.sleep(ORPHAN_POLL)
        if os.getppid() != parent or not _alive(run_pid):
            os._exit(3)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user took the number: ours is gone
        return False
    return True


@dataclass(frozen=True)
class ShardJob:
    work: str
    shard: int
    as_of: date
    unit_files: dict[int, str]  # unit -> input file name
    unit_offsets: dict[int, int]  # unit -> lines of its file before the unit
    top_n: int
    #: The run's N-th best worklist key among the shards done so far: a patient ranked after
    #: it can never reach the report's top N, so its detail page is not built.
    detail_bound: tuple[Any, ...] | None = None


def _medications(parts: Path) -> dict[str, dict[str, Any]]:
    key = str(parts)
    if key not in _MEDS:
        meds: dict[str, dict[str, Any]] = {}
        for f in sorted(parts.glob("medications.u*")):
            for line in f.read_bytes().split(b"\n"):  # not splitlines: a record may hold a CR
                if not line:
                    continue
                res = orjson.loads(line)
                if isinstance(res.get("id"), str):
                    add_medication(meds, f"Medication/{res['id']}", res)
        _MEDS.clear()
        _MEDS[key] = meds
    return _MEDS[key]


class _Out:
    """What a shard accumulates, then writes."""

    def __init__(self, job: ShardJob) -> None:
        self.job = job
        self.alerts: dict[str, list[Any]] = {c: [] for c in ALERT_COLUMNS}
        self.columns = tuple(self.alerts.values())  # in ALERT_COLUMNS order
        self.worklist: list[dict[str, Any]] = []
        self.quarantine: list[bytes] = []
        self.top: list[tuple[Any, ...]] = []  # heap of (inverted key, n, detail)
        #: (patient id, JSON of the summary, MME and what was not assessed) of each patient
        self.patients: list[tuple[str, bytes]] = []
        #: (patient id, mrn, name, birth date) of each patient reviewed (the store's `reviewed`)
        self.reviewed: list[tuple[str, str | None, str | None, str | None]] = []
        #: what the decisions store knew of this shard's patients before the run
        self.prior = read_prior(Path(job.work) / PRIOR, job.shard)
        self.stats: dict[str, Any] = {
            "patients": 0, "records": 0, "skipped": 0, "quarantined": 0, "alerts": 0,
            "failed": 0, "deceased": 0, "not_assessed_patients": 0, "rules": {}, "severities": {},
            "families": {}, "mme_hist": [0] * (MME_BINS + 1), "mme_zero": 0, "burden_hist": {},
            "acb_hist": {}, "mme_50": 0, "mme_90": 0, "mme_50_no_naloxone": 0, "statuses": {},
            "seconds": {"read": 0.0, "parse": 0.0,
                                                              "engine": 0.0, "write": 0.0}}

    def quarantine_record(self, unit: int, line: int, pid: str | None, resource: str | None,
                          reason: str, record: Any, problem: str | None = None) -> None:
        self.stats["quarantined"] += 1
        self.quarantine.append(orjson.dumps({
            "file": self.job.unit_files.get(unit), "line": self.job.unit_offsets.get(unit, 0) + line,
            "patient_id": pid, "resource": resource, "reason": reason,
            "problem": problem or reason, "record": record}) + b"\n")


class _Row(NamedTuple):
    """One alert row of the panel: ALERT_COLUMNS, then what the report's page adds."""

    patient_id: str
    rule: str
    pack: str
    family: str
    severity: str
    priority: int
    summary: str
    rationale: str
    medications: str
    alert_key: str
    status: str
    changed_because: str
    role: str
    actions: str
    prescriber: str
    order_ids: str
    mrn: str
    patient_name: str
    birth_date: str
    ingredients: str
    band: str
    level: str
    decision: str
    decision_version: int | None
    decided_by: str
    reason: str
    note: str
    follow_up: str
    referred_to: str
    action_list: tuple[str, ...]
    sources: tuple[str, ...]


assert _Row._fields[:len(ALERT_COLUMNS)] == ALERT_COLUMNS  # rows fill the columns by position


def _row_order(r: _Row) -> tuple[int, str]:
    return (-r.priority, r.rule)


def _bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def _label(res: dict[str, Any]) -> str:
    rtype = res.get("resourceType") or "resource"
    rid = res.get("id")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else str(rtype)


def review_shard(job: ShardJob, engine: Engine | None = None,
                 spec: tuple[str, Any] | None = None) -> dict[str, Any]:
    """Review one shard; returns its stats. Skips (returns the stats on disk) if done."""
    work = Path(job.work)
    final = work / "shards" / f"s{job.shard:05d}"
    if (final / "stats.json").exists():
        return dict(orjson.loads((final / "stats.json").read_bytes()))
    eng = engine or (worker_engine(spec) if spec is not None else _ENGINE)
    if eng is None:
        raise CdsError("review_shard: no engine (worker not initialized)")
    t0 = time.perf_counter()
    parts = work / "parts"
    meds = _medications(parts)
    groups: dict[bytes, list[bytes]] = {}  # patient id -> "unit TAB line TAB record"s
    for f in sorted(parts.glob(f"s{job.shard:05d}.u*")):
        # split at LF only: a CR is JSON whitespace and may sit inside a record
        for line in f.read_bytes().split(b"\n"):
            if not line:
                continue
            pid_b, rest = line.split(b"\t", 1)
            group = groups.get(pid_b)
            if group is None:
                groups[pid_b] = [rest]
            else:
                group.append(rest)
    out = _Out(job)
    out.stats["seconds"]["read"] = time.perf_counter() - t0
    for pid_b in sorted(groups):  # UTF-8 byte order is code point order: as sorted(str)
        _review_patient(eng, pid_b.decode(), groups[pid_b], meds, out)
    del groups
    t1 = time.perf_counter()
    _write(final, out)
    out.stats["seconds"]["write"] = time.perf_counter() - t1
    # the stats are rewritten with the write time: the folder was renamed with a first copy
    (final / "stats.json.tmp").write_bytes(orjson.dumps(out.stats))
    os.replace(final / "stats.json.tmp", final / "stats.json")
    return {**out.stats, "top_keys": [sort_key(d["worklist"]) for *_, d in out.top]}


def _review_patient(eng: Engine, pid: str, records: list[bytes],
                    meds: dict[str, dict[str, Any]], out: _Out) -> None:
    st = out.stats
    t0 = time.perf_counter()
    parsed: list[tuple[int, int, dict[str, Any]]] = []
    not_assessed: list[tuple[str, str]] = []  # (what, why)
    st["records"] += len(records)
    for record in records:
        unit_b, line_b, raw = record.split(b"\t", 2)
        unit, line = int(unit_b), int(line_b)
        try:
            res = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            out.quarantine_record(unit, line, pid, None, f"not valid JSON ({e})",
                                  raw.decode("utf-8", "replace")[:2000], "not valid JSON")
            not_assessed.append((f"an unreadable record (line {line + out.job.unit_offsets.get(unit, 0)}"
                                 f" of {out.job.unit_files.get(unit)})", "not valid JSON"))
            continue
        rtype = res.get("resourceType")
        if rtype == "_Invalid":  # a CSV row that could not be converted
            out.quarantine_record(unit, line, pid, None, str(res.get("reason")), res)
            not_assessed.append((str(res.get("label")), str(res.get("reason"))))
            continue
        if not isinstance(rtype, str):
            why = "resourceType is missing or not a string"
            out.quarantine_record(unit, line, pid, None, why, res)
            not_assessed.append((f"a record (line {line + out.job.unit_offsets.get(unit, 0)} of "
                                 f"{out.job.unit_files.get(unit)})", why))
            continue
        parsed.append((unit, line, res))
    recs = [Record(res, None, f"{out.job.unit_files.get(unit)}:{line}", (unit, line))
            for unit, line, res in parsed]
    try:
        built = build_patient(recs, patient_id=pid, medications=meds)
    except InputError as e:  # the demographics themselves cannot make a Patient
        built = None
        st["failed"] += 1
        out.quarantine_record(-1, 0, pid, f"Patient/{pid}", f"review failed: {e}", None,
                              "review failed")
    t1 = time.perf_counter()
    st["seconds"]["parse"] += t1 - t0
    if built is None:
        return
    st["skipped"] += built.skipped
    for lo in built.left_out:
        unit, line = lo.record.origin
        problem = lo.error.message if isinstance(lo.error, InputError) else lo.reason
        out.quarantine_record(unit, line, pid, _label(lo.record.resource), lo.reason,
                              lo.record.resource, problem)
        not_assessed.append((lo.what, lo.reason))
    patient = built.patient
    if patient.deceased:
        st["deceased"] += 1  # not reviewed: off the worklist, counted in run.json and the report
        return
    try:
        result = eng.evaluate(patient, out.job.as_of)
    except Exception as e:  # never stop the run: the patient is listed as failed
        st["failed"] += 1
        out.quarantine_record(-1, 0, pid, f"Patient/{pid}",
                              f"review failed: {type(e).__name__}: {e}", None, "review failed")
        st["seconds"]["engine"] += time.perf_counter() - t1
        return
    st["seconds"]["engine"] += time.perf_counter() - t1
    _collect(pid, patient, result, not_assessed, out)


def _collect(pid: str, patient: Patient, result: Result, not_assessed: list[tuple[str, str]],
             out: _Out) -> None:
    st = out.stats
    # What the engine could not check (unrecognized medications, opioids not counted in the
    # MME...) and the records the panel could not read (quarantined) leave the patient not
    # fully assessed: said together in one row per patient, not one row per finding.
    not_assessed += [(i.medication or "a record", i.reason + (f" (field {i.field})" if i.field
                                                              else "")) for i in result.issues]
    prescribers = {m.order_id: m.prescriber for m in result.summary.medications if m.prescriber}
    found = [(sighting_of(pid, a, prescribers), a.priority, a.rationale, a.medications, a.sources)
             for a in result.alerts if a.family != DATA_QUALITY]
    if not_assessed:
        st["not_assessed_patients"] += 1
        what = "; ".join(f"{w} ({why})" for w, why in not_assessed)
        n = len(not_assessed)
        found.append((Sighting(
            pid, NOT_ASSESSED_RULE, NOT_ASSESSED_RULE, "panel", DATA_QUALITY, "low",
            f"{n} item{'s' if n > 1 else ''} of the record could not be assessed",
            lineage=lineage("panel", DATA_QUALITY, NOT_ASSESSED_RULE),
            actions=("Correct the source record or check these items by hand",)), 100,
            f"Not assessed: {what}. The other alerts for this patient leave these out: the "
            "MME total, interactions and dose checks may be incomplete. Check them by hand.",
            tuple(w for w, _ in not_assessed), ()))
    prior = out.prior.get(pid)
    judged = judge([f[0] for f in found], prior.sightings if prior else (),
                   prior.decisions if prior else {}, out.job.as_of)
    who = (patient.mrn or "", patient.name or "",
           patient.birth_date.isoformat() if patient.birth_date else "")
    rows = [_row(j, priority, rationale, "; ".join(meds), sources, who)
            for j, (_, priority, rationale, meds, sources) in zip(judged, found, strict=False)]
    gone = [_gone_row(j, out.job.as_of, who) for j in judged[len(found):]]
    columns = out.columns
    fam = dict.fromkeys(FAMILIES, 0)
    rules, severities, families = st["rules"], st["severities"], st["families"]
    statuses = dict.fromkeys(STATUSES, 0)
    for r in rows:
        for column, value in zip(columns, r, strict=False):  # the first len(ALERT_COLUMNS)
            column.append(value)
        _bump(rules, r.rule)
        _bump(severities, r.severity)
        _bump(families, r.family)
        _bump(fam, r.family)
        statuses[r.status] += 1
    for r in gone:
        for column, value in zip(columns, r, strict=False):
            column.append(value)
        statuses["gone"] += 1
    for k, v in statuses.items():
        _bump(st["statuses"], k, v)
    st["alerts"] += len(rows)
    st["patients"] += 1
    out.reviewed.append((pid, patient.mrn, patient.name, who[2] or None))
    mme = round(float(result.mme.total), 1)
    if mme <= 0:
        st["mme_zero"] += 1
    else:  # a total beyond any bin (even an overflow to infinity) goes to the last
        st["mme_hist"][MME_BINS if not mme < MME_BINS * MME_BIN else int(mme // MME_BIN)] += 1
    st["mme_50"] += mme >= 50
    st["mme_90"] += mme >= 90
    st["mme_50_no_naloxone"] += mme >= 50 and any(
        a.rule.endswith("/naloxone-not-on-file") for a in result.alerts)
    _bump(st["burden_hist"], str(min(len(rows), 10)))
    summary = result.summary
    acb = summary.acb_total
    _bump(st["acb_hist"], str(min(acb, 10)))
    top = min(rows, key=_row_order) if rows else None
    status = min((r.status for r in rows), key=STATUS_RANK.__getitem__, default="gone" if gone
                 else "")
    w = {"patient_id": pid, "age": patient.age_on(out.job.as_of), "sex": patient.sex,
         "priority": top.priority if top else 0, "top_severity": top.severity if top else "",
         "alerts": len(rows), **{f"n_{f.replace('-', '_')}": fam[f] for f in FAMILIES},
         "mme_total": mme, "acb_total": acb, "not_assessed": len(not_assessed),
         "top_alert": top.summary if top else "", "status": status,
         **{f"n_{k}": v for k, v in statuses.items()},
         "mrn": who[0], "patient_name": who[1], "birth_date": who[2],
         **{c: getattr(top, c) if top else "" for c in _TOP_COLUMNS}}
    if w["decision_version"] == "":
        w["decision_version"] = None
    out.worklist.append(w)
    # every patient's values and medications, for the served worklist's patient page
    out.patients.append((pid, orjson.dumps({
        "summary": summary.to_dict(), "mme": mme_to_dict(result.mme),
        "not_assessed": [{"what": w_, "why": why} for w_, why in not_assessed]})))
    if out.job.top_n <= 0 or not rows:
        return
    key = sort_key(w)
    if out.job.detail_bound is not None and key > out.job.detail_bound:
        return
    inv = (-key[0], -key[1], -key[2], _Inv(key[3]))
    if len(out.top) >= out.job.top_n and inv <= out.top[0][0]:
        return
    detail = {
        "worklist": w, "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
        "alerts": [{**r._asdict(), "actions": list(r.action_list), "sources": list(r.sources)}
                   for r in sorted(rows, key=_row_order)],
        "gone": [{"summary": r.summary, "rule": r.rule} for r in gone],
        "mme": mme_to_dict(result.mme),
        "medications": [{"label": m.label, "source": m.source, "prescriber": m.prescriber,
                         "start": m.start.isoformat() if m.start else None}
                        for m in summary.medications],
        "renal": summary.kidney,
        "not_assessed": [{"what": w_, "why": why} for w_, why in not_assessed],
    }
    item = (inv, len(out.top), detail)
    if len(out.top) < out.job.top_n:
        heapq.heappush(out.top, item)
    else:
        heapq.heapreplace(out.top, item)


#: Columns the worklist takes from the patient's top alert.
_TOP_COLUMNS = ("alert_key", "role", "actions", "prescriber", "order_ids", "decision",
                "decision_version", "decided_by", "reason", "note", "follow_up", "referred_to")


def _row(j: Judged, priority: int, rationale: str, meds: str, sources: tuple[str, ...],
         who: tuple[str, str, str]) -> _Row:
    s, d = j.sighting, j.decision
    standing = d if d is not None and d.alert_key == s.alert_key else None
    return _Row._make([
        s.patient_id, s.rule, s.pack, s.family, s.severity, priority, s.summary, rationale, meds,
        s.alert_key, j.status, j.why, s.role, "; ".join(s.actions), "; ".join(s.prescribers),
        "; ".join(s.order_ids), *who, "+".join(s.ingredients), s.band or "",
        "" if s.level is None else f"{s.level:g}", *_decision_columns(standing), s.actions,
        sources])


def _gone_row(j: Judged, as_of: date, who: tuple[str, str, str]) -> _Row:
    s, d = j.sighting, j.decision
    return _Row._make([
        s.patient_id, s.rule, s.pack, s.family, s.severity, 0, s.summary,
        f"No longer fires as of {as_of.isoformat()}: it did in the previous review.", "",
        s.alert_key, "gone", j.why, s.role, "", "", "", *who, "+".join(s.ingredients),
        s.band or "", "" if s.level is None else f"{s.level:g}", *_decision_columns(d), (), ()])


def _decision_columns(d: Decision | None) -> tuple[str, int | None, str, str, str, str, str]:
    if d is None:
        return "", None, "", "", "", "", ""
    # a snooze's end date is its follow-up date in the files (one column to edit)
    until = d.snooze_until if d.state == "snoozed" and d.snooze_until else d.follow_up
    return (d.state, d.version, d.author, d.reason_code or "", d.note or "",
            until.isoformat() if until else "", d.referred_to or "")


class _Inv(str):
    """A string that sorts backwards (patient id tie-break in the min-heap of the top N)."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return str.__gt__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        return str.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        return str.__ge__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        return str.__le__(self, other)  # type: ignore[operator]


def _write(final: Path, out: _Out) -> None:
    if final.exists():
        return
    tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        table = pa.Table.from_pydict(out.alerts, schema=ALERT_SCHEMA)
        pq.write_table(table, tmp / "alerts.parquet", compression="zstd")
        out.worklist.sort(key=sort_key)
        (tmp / "worklist.ndjson").write_bytes(b"".join(orjson.dumps(w) + b"\n" for w in out.worklist))
        (tmp / "quarantine.ndjson").write_bytes(b"".join(out.quarantine))
        pq.write_table(pa.table({"patient_id": [p for p, _ in out.patients],
                                 "detail": [d for _, d in out.patients]},
                                schema=PATIENT_SCHEMA), tmp / "patients.parquet",
                       compression="zstd", row_group_size=PATIENT_ROW_GROUP)
        (tmp / "reviewed.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                                       for r in out.reviewed))
        top = sorted(out.top, reverse=True)
        # "patient id TAB detail": the merge parses only the details of the run's top N
        (tmp / "details.tsv").write_bytes(b"".join(
            d["worklist"]["patient_id"].encode() + b"\t" + orjson.dumps(d) + b"\n" for *_, d in top))
        (tmp / "stats.json").write_bytes(orjson.dumps(out.stats))
        for f in tmp.iterdir():  # durable before the rename makes the shard count as done
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another attempt finished it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
