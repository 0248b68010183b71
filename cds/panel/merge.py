"""Merge the shards' results into the run's outputs, streaming: one shard's alerts at a time,
the worklist by a k-way merge of the shards' sorted lists. Each output is written to a
temporary name and renamed, so a kill during the merge leaves the previous state."""

from __future__ import annotations

import csv
import heapq
import os
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cds.decisions.carry import lineage
from cds.decisions.store import PatientRow
from cds.panel.columns import ALERT_SCHEMA, MME_BINS, WORKLIST_COLUMNS, sort_key
from cds.panel.shard import PATIENT_ROW_GROUP, PATIENT_SCHEMA


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def shard_dirs(work: Path, shards: int) -> list[Path]:
    return [work / "shards" / f"s{k:05d}" for k in range(shards)]


def merge_alerts(dirs: list[Path], out: Path) -> int:
    pq_path, csv_path = out / "alerts.parquet", out / "alerts.csv"
    n = 0
    with pq.ParquetWriter(_tmp(pq_path), ALERT_SCHEMA, compression="zstd") as pw, \
            pacsv.CSVWriter(_tmp(csv_path), ALERT_SCHEMA,
                            write_options=pacsv.WriteOptions(quoting_style="needed")) as cw:
        for d in dirs:
            table = pq.read_table(d / "alerts.parquet", schema=ALERT_SCHEMA)
            if table.num_rows:
                pw.write_table(table)
                cw.write_table(table)
                n += table.num_rows
    os.replace(_tmp(pq_path), pq_path)
    os.replace(_tmp(csv_path), csv_path)
    return n


def merge_patients(dirs: list[Path], out: Path) -> int:
    """patients.parquet: every reviewed patient's values, shard after shard (the shards'
    small row groups kept, so one patient is read alone)."""
    path = out / "patients.parquet"
    n = 0
    with pq.ParquetWriter(_tmp(path), PATIENT_SCHEMA, compression="zstd") as w:
        for d in dirs:
            table = pq.read_table(d / "patients.parquet", schema=PATIENT_SCHEMA)
            if table.num_rows:
                w.write_table(table, row_group_size=PATIENT_ROW_GROUP)
                n += table.num_rows
    os.replace(_tmp(path), path)
    return n


def _rows(path: Path) -> Generator[dict[str, Any], None, None]:
    with open(path, "rb") as fh:
        for line in fh:
            yield orjson.loads(line)


def merge_worklist(dirs: list[Path], out: Path, top_n: int) -> tuple[int, list[dict[str, Any]]]:
    """Write worklist.csv; return (patients, the first `top_n` rows)."""
    path = out / "worklist.csv"
    top: list[dict[str, Any]] = []
    n = 0
    with ExitStack() as stack, open(_tmp(path), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(WORKLIST_COLUMNS)
        streams = [_rows(d / "worklist.ndjson") for d in dirs]
        for s in streams:
            stack.callback(s.close)
        for row in heapq.merge(*streams, key=sort_key):
            n += 1
            row["rank"] = n
            if row["age"] is None:
                row["age"] = ""
            w.writerow([row[c] for c in WORKLIST_COLUMNS])
            if n <= top_n:
                top.append(row)
    os.replace(_tmp(path), path)
    return n, top


def merge_quarantine(parts: Path, dirs: list[Path], out: Path, unit_files: dict[int, str],
                     unit_offsets: dict[int, int]) -> tuple[int, dict[str, int]]:
    """quarantine.ndjson: the partition's records (no patient) then each shard's; returns
    (count, count per reason kind)."""
    path = out / "quarantine.ndjson"
    n = 0
    reasons: dict[str, int] = {}
    with open(_tmp(path), "wb") as fh:
        for f in sorted(parts.glob("quarantine.u*")):
            for line in f.read_bytes().splitlines():
                rec = orjson.loads(line)
                unit = rec.pop("_unit")
                rec["file"] = unit_files.get(unit, rec.get("file"))
                rec["line"] = unit_offsets.get(unit, 0) + rec["line"]
                fh.write(orjson.dumps(rec) + b"\n")
                n += 1
                _kind(reasons, rec)
        for d in dirs:
            data = (d / "quarantine.ndjson").read_bytes()
            fh.write(data)
            for line in data.splitlines():
                n += 1
                _kind(reasons, orjson.loads(line))
    os.replace(_tmp(path), path)
    return n, reasons


def _kind(reasons: dict[str, int], rec: dict[str, Any]) -> None:
    """Count reasons for run.json and the report by the problem, not the record's place."""
    key = str(rec.get("problem") or rec.get("reason"))[:100]
    reasons[key] = reasons.get(key, 0) + 1


def merge_details(dirs: list[Path], ids: set[str]) -> dict[str, dict[str, Any]]:
    wanted = {i.encode() for i in ids}
    found: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for line in (d / "details.tsv").read_bytes().splitlines():
            pid, detail = line.split(b"\t", 1)
            if pid in wanted:
                found[pid.decode()] = orjson.loads(detail)
    return found


def sum_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"mme_hist": [0] * (MME_BINS + 1), "rules": {}, "severities": {},
                             "families": {}, "burden_hist": {}, "acb_hist": {}, "seconds": {},
                             "statuses": {}}
    for s in stats:
        for k, v in s.items():
            if k == "mme_hist":
                total[k] = [a + b for a, b in zip(total[k], v, strict=True)]
            elif isinstance(v, dict):
                for kk, vv in v.items():
                    total[k][kk] = total[k].get(kk, 0) + vv
            else:
                total[k] = total.get(k, 0) + v
    return total


_SIGHTING_COLUMNS = ["patient_id", "alert_key", "rule", "pack", "family", "severity", "summary",
                     "ingredients", "band", "level", "status"]


def sightings(dirs: list[Path]) -> Iterator[tuple[Any, ...]]:
    """The store's RUN_SIGHTING_ROW row of every alert of the run (not the gone ones: they did
    not fire), read shard by shard from the alerts' columns the store keeps."""
    for d in dirs:
        table = pq.read_table(d / "alerts.parquet", columns=_SIGHTING_COLUMNS)
        cols = [table.column(c).to_pylist() for c in _SIGHTING_COLUMNS]
        for pid, key, rule, pack, family, sev, summary, ings, band, lvl, status in zip(
                *cols, strict=True):
            if status != "gone":
                yield (pid, key, rule, pack, family, sev, summary, ings or "", band or None,
                       float(lvl) if lvl else None, lineage(pack, family, key), status)


def reviewed(dirs: list[Path]) -> Iterator[PatientRow]:
    """Every patient the run reviewed (with or without alerts), with their chart ids."""
    for d in dirs:
        for line in (d / "reviewed.ndjson").read_bytes().splitlines():
            pid, mrn, name, born = orjson.loads(line)
            yield PatientRow(pid, mrn, name, date.fromisoformat(born) if born else None)
