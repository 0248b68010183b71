"""Input discovery and the external partition step.

Every input record is appended to one of K shard files by a stable hash of its patient id,
streaming line by line, so a patient's records end up in one shard wherever they were in
the input and no step ever holds more than one shard. Plain NDJSON files are cut into byte
ranges that are partitioned in parallel; a gzipped file or a CSV file is one unit.

A partitioned line is `patient_id TAB unit TAB line TAB raw record`, where `line` counts
from the start of the unit (the manifest has each unit's first line number in its file).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cds.errors import InputError
from cds.io._fhir import patient_id_of
from cds.panel.csvlayout import CSV_FILES, csv_record

#: Bulk Data files read, by resource type. Medication is shared by every patient.
FHIR_TYPES = ("Patient", "MedicationRequest", "MedicationStatement", "MedicationDispense",
              "Observation", "Condition", "Medication")
SHARD_BYTES = 6 << 20  # raw input per shard: a shard's patients parsed fit in ~50 MB
RANGE_BYTES = 48 << 20  # plain NDJSON files are partitioned in ranges of about this size
MAX_SHARDS = 1024
_SUBJECT = re.compile(rb'"(?:subject|patient)"\s*:\s*\{[^{}]*?"reference"\s*:\s*"([^"\\]*)"')


@dataclass(frozen=True)
class InputFile:
    path: str  # absolute
    name: str  # as shown in the quarantine and run.json
    kind: str  # resource type, or "csv:<table>"
    size: int
    gz: bool


@dataclass(frozen=True)
class Unit:
    """A piece of one input file partitioned by one task."""

    index: int
    file: InputFile
    start: int = 0  # byte range; end -1 = to the end (gz, CSV)
    end: int = -1


@dataclass
class UnitResult:
    index: int
    lines: int = 0
    records: int = 0
    patients: int = 0  # Patient resources / patients.csv rows seen
    quarantined: int = 0
    medications: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    #: Where the unit's file was cut short or damaged (the rest of it was not read)
    damaged: str | None = None


def discover(input_dir: Path) -> tuple[str, list[InputFile], list[str]]:
    """(layout "fhir" | "csv", files read, files ignored) of an input folder."""
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: not a folder (a Bulk Data export or CSV folder)")
    files: list[InputFile] = []
    ignored: list[str] = []
    names = sorted(p.name for p in input_dir.iterdir() if p.is_file())
    csv_names = {n for n in names if n in CSV_FILES}
    layout = "csv" if csv_names and not any(n.endswith((".ndjson", ".ndjson.gz")) for n in names) \
        else "fhir"
    for n in names:
        path = input_dir / n
        size = path.stat().st_size
        if layout == "csv" and n in csv_names:
            files.append(InputFile(str(path.resolve()), n, "csv:" + n.removesuffix(".csv"), size,
                                   False))
            continue
        gz = n.endswith(".ndjson.gz")
        base = n.removesuffix(".gz").removesuffix(".ndjson")
        rtype = base.split(".")[0].split("-")[0]  # Patient.000.ndjson, Patient-1.ndjson
        if layout == "fhir" and (n.endswith(".ndjson") or gz) and rtype in FHIR_TYPES:
            if gz:
                _check_gzip(path)
            files.append(InputFile(str(path.resolve()), n, rtype, size, gz))
        elif not n.startswith("."):
            ignored.append(n)
    if not files:
        raise FileNotFoundError(
            f"{input_dir}: no input files (expected Patient.ndjson, MedicationRequest.ndjson, ... "
            f"or {', '.join(CSV_FILES)})")
    return layout, files, ignored


def _check_gzip(path: Path) -> None:
    """A file named .gz must start as gzip data does: else the run stops before it begins,
    naming the file (not a traceback halfway through)."""
    with path.open("rb") as fh:
        head = fh.read(2)
    if head != b"\x1f\x8b":
        raise InputError("named .gz but not gzip data (an empty file, or NDJSON not "
                         "compressed): compress it, or rename it without .gz", file=path.name)


def plan_units(files: list[InputFile], range_bytes: int = RANGE_BYTES) -> list[Unit]:
    units: list[Unit] = []
    for f in files:
        if f.gz or f.kind.startswith("csv:") or f.size <= range_bytes:
            units.append(Unit(len(units), f))
            continue
        cuts = [0]
        with open(f.path, "rb") as fh:
            pos = range_bytes
            while pos < f.size:
                fh.seek(pos)
                fh.readline()  # the range ends after the line that crosses the cut
                at = fh.tell()
                if at >= f.size:
                    break
                if at > cuts[-1]:
                    cuts.append(at)
                pos = at + range_bytes
        cuts.append(f.size)
        for a, b in zip(cuts, cuts[1:], strict=False):
            units.append(Unit(len(units), f, a, b))
    return units


def shard_count(total_bytes: int, workers: int, requested: int | None = None) -> int:
    if requested:
        return max(1, min(MAX_SHARDS, requested))
    return max(2 * workers, min(MAX_SHARDS, -(-total_bytes // SHARD_BYTES)))


def shard_of(patient_id: str, shards: int) -> int:
    return zlib.crc32(patient_id.encode()) % shards


def _lines(unit: Unit) -> Iterator[bytes]:
    f = unit.file
    if f.gz:  # not io.BufferedReader: a cut-short file would lose the lines it buffered
        with gzip.open(f.path, "rb") as gzf:
            rest = b""
            while chunk := gzf.read1(1 << 20):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    yield line + b"\n"
            if rest:
                yield rest
        return
    with open(f.path, "rb", buffering=1 << 20) as fh:
        if unit.end < 0:
            yield from fh
            return
        fh.seek(unit.start)
        left = unit.end - unit.start
        for line in fh:
            yield line
            left -= len(line)
            if left <= 0:
                return


def patient_ref(resource: dict[str, Any]) -> str | None:
    """The patient a record belongs to: a Patient's id, else subject/patient reference."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str):
                return patient_id_of(target)
    return None


class _ShardFiles:
    def __init__(self, folder: Path, unit: int, shards: int) -> None:
        self.folder = folder
        self.unit = unit
        self.bufs: list[list[bytes]] = [[] for _ in range(shards)]
        self.sizes = [0] * shards
        self.pending = 0

    def add(self, shard: int, line: bytes) -> None:
        self.bufs[shard].append(line)
        self.pending += len(line)
        if self.pending > 16 << 20:
            self.flush()

    def flush(self) -> None:
        for k, buf in enumerate(self.bufs):
            if buf:
                with open(self.folder / f"s{k:05d}.u{self.unit:05d}", "ab") as fh:
                    fh.write(b"".join(buf))
                buf.clear()
        self.pending = 0


def partition_unit(unit: Unit, folder: str, shards: int) -> UnitResult:
    """Route every line of a unit to its shard file; records no patient can be found for
    go to the unit's quarantine file."""
    out = Path(folder)
    files = _ShardFiles(out, unit.index, shards)
    res = UnitResult(unit.index)
    quarantine: list[bytes] = []
    meds: list[bytes] = []
    name = unit.file.name
    u = b"\t%d\t" % unit.index
    shard_cache: dict[str, tuple[int, bytes]] = {}  # a patient's records often come together

    def route(pid: str) -> tuple[int, bytes]:
        hit = shard_cache.get(pid)
        if hit is None:
            if len(shard_cache) > 100_000:
                shard_cache.clear()
            hit = shard_cache[pid] = (shard_of(pid, shards), pid.encode())
        return hit

    def bad(line_no: int, reason: str, record: Any) -> None:
        res.quarantined += 1
        quarantine.append(orjson.dumps({"file": name, "line": line_no, "patient_id": None,
                                        "resource": None, "reason": reason,
                                        "problem": reason.split(" (")[0], "record": record,
                                        "_unit": unit.index}) + b"\n")

    if unit.file.kind.startswith("csv:"):
        rows = _csv_rows(unit)
    else:
        rows = ((i, line, None) for i, line in enumerate(_lines(unit), 1))
    def cut(e: BaseException) -> None:
        res.damaged = (f"the file ends early or is damaged after line {res.lines}: the rest "
                       f"of it could not be read ({type(e).__name__}: {e})")
        bad(res.lines + 1, res.damaged, None)

    for line_no, raw, parsed in _until_damaged(rows, cut):
        res.lines = line_no
        raw = raw.strip()
        if not raw:
            continue
        res.records += 1
        if parsed is None:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                m = _SUBJECT.search(raw)  # still say whose record it was, when we can
                pid = patient_id_of(m.group(1).decode("utf-8", "replace")) if m else None
                if pid is None or not pid.isprintable():
                    bad(line_no, f"not valid JSON ({e})", raw.decode("utf-8", "replace")[:2000])
                    continue
                k, pid_b = route(pid)
                files.add(k, b"%s%s%d\t%s\n" % (pid_b, u, line_no, raw))
                continue
        if isinstance(parsed, str):  # a CSV row that could not be converted
            bad(line_no, parsed, raw.decode("utf-8", "replace"))
            continue
        if not isinstance(parsed, dict):
            bad(line_no, "not a JSON object", raw.decode("utf-8", "replace")[:2000])
            continue
        rtype = parsed.get("resourceType")
        res.by_type[str(rtype)] = res.by_type.get(str(rtype), 0) + 1
        if rtype == "Medication":
            res.medications += 1
            meds.append(raw + b"\n")
            continue
        pid = patient_ref(parsed)
        if pid is None:
            what = ("Patient resource has no id" if rtype == "Patient"
                    else "no subject or patient reference to a Patient")
            bad(line_no, what, parsed)
            continue
        if not pid.isprintable():  # a tab, line break or other control character
            bad(line_no, f"patient id has a control character: not a FHIR id ({pid!r})", parsed)
            continue
        if rtype == "Patient":
            res.patients += 1
        if unit.file.kind.startswith("csv:"):
            raw = orjson.dumps(parsed)
        k, pid_b = route(pid)
        files.add(k, b"%s%s%d\t%s\n" % (pid_b, u, line_no, raw))
    files.flush()
    if quarantine:
        (out / f"quarantine.u{unit.index:05d}").write_bytes(b"".join(quarantine))
    if meds:
        (out / f"medications.u{unit.index:05d}").write_bytes(b"".join(meds))
    return res


def _until_damaged(rows: Iterator[tuple[int, bytes, Any]], cut: Any
                   ) -> Iterator[tuple[int, bytes, Any]]:
    """The rows of a unit up to where its file is cut short or damaged (a truncated
    .ndjson.gz): the records before are kept, and `cut` says where the rest was lost."""
    try:
        yield from rows
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as e:
        cut(e)


def _csv_rows(unit: Unit) -> Iterator[tuple[int, bytes, Any]]:
    table = unit.file.kind.removeprefix("csv:")
    with open(unit.file.path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            line_no = reader.line_num
            raw = ",".join(f"{k}={v}" for k, v in row.items() if v).encode()
            yield line_no, raw or b"(empty row)", csv_record(table, row, line_no)


def shard_inputs(parts: Path, shard: int) -> list[Path]:
    return sorted(parts.glob(f"s{shard:05d}.u*"))


def count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def unit_first_lines(units: list[Unit], results: dict[int, UnitResult]) -> dict[int, int]:
    """Line number (in its file) just before each unit's first line."""
    out: dict[int, int] = {}
    seen: dict[str, int] = {}
    for u in units:
        out[u.index] = seen.get(u.file.path, 0)
        seen[u.file.path] = out[u.index] + results[u.index].lines
    return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1
