"""`cds panel`: review a whole panel, in parallel, resumably.

    partition (input -> K shard files by patient) -> review each shard -> merge -> report

Work state lives in OUT_DIR/.work: `parts/` appears (renamed from a temporary name) only when
partitioning finished, and `shards/sNNNNN/` only when that shard's results are all on disk.
`--resume` keeps both and does the rest, so no patient is lost or reviewed twice, even after
`kill -9`. The work folder is removed when the run completes.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cds.decisions.model import STATUSES
from cds.decisions.snapshot import write_prior
from cds.decisions.store import DecisionStore, default_db, redact
from cds.engine.evaluator import Engine, load_engine
from cds.errors import CdsError
from cds.limits import MAX_MEDICATIONS
from cds.panel import merge as merging
from cds.panel.export import write_fhir
from cds.panel.partition import (
    UnitResult,
    cpu_count,
    discover,
    partition_unit,
    plan_units,
    shard_count,
    shard_of,
    unit_first_lines,
)
from cds.panel.report import write_report
from cds.panel.shard import PRIOR, ShardJob, engine_spec, init_worker, review_shard

WORK = ".work"
DEFAULT_TOP_N = 500


#: --db value for a run without a decisions store.
NO_STORE = "none"


class PanelError(CdsError):
    """A panel run that cannot start or continue (bad input folder, resume mismatch)."""


class _LocalExecutor:
    """A process pool on this machine; the engine is unpickled once per worker."""

    def __init__(self, workers: int, engine: Engine) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cds.panel.shard"])
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                                        initargs=(engine_spec(engine), os.getpid()))

    def run(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
        """Results in completion order, keeping at most 2 tasks per worker queued."""
        pending: set[Future[Any]] = set()
        it = iter(items)
        while True:
            while len(pending) < 2 * self.workers:
                try:
                    item = next(it)
                except StopIteration:
                    break
                pending.add(self.pool.submit(fn, item, **kwargs))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskExecutor:
    """The same tasks on a Dask distributed cluster. Workers must see OUT_DIR and the input
    at the same paths (a shared file system)."""

    def __init__(self, scheduler: str | None, workers: int | None, engine: Engine) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = None
        if scheduler:
            self.client = Client(scheduler)
        else:  # no address: a local cluster, mostly for trying it out
            self.cluster = LocalCluster(n_workers=workers or cpu_count(), threads_per_worker=1,
                                        processes=True, dashboard_address=None)
            self.client = Client(self.cluster)
        info = self.client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))
        spec = engine_spec(engine)
        self.spec = self.client.scatter(spec, broadcast=True)

    def run(self, fn: Callable[..., Any], items: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
        from dask.distributed import as_completed

        if fn is review_shard:
            kwargs = {**kwargs, "spec": self.spec}
        futures = self.client.map(fn, list(items), pure=False, **kwargs)
        for f in as_completed(futures):
            yield f.result()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"), TextColumn("[cyan]{task.fields[rate]}"),
        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
        console=console, transient=False)


def run_panel(input: Path | str, out_dir: Path | str, *, resume: bool = False,
              executor: str = "local", scheduler: str | None = None, workers: int | None = None,
              packs: list[str] | None = None, as_of: date | None = None,
              shards: int | None = None, top_n: int = DEFAULT_TOP_N, quiet: bool = False,
              console: Console | None = None, engine: Engine | None = None,
              max_medications: int = MAX_MEDICATIONS, db: str | None = None,
              fhir: bool = False, roots: list[Path] | None = None) -> dict[str, Any]:
    """Review every patient of a Bulk Data export (or CSV folder); returns run.json's content.
    `roots`: extra folders of installed packs (as `cds check --rulesets`), kept for a resume.
    `db`: the decisions store (default $CDS_DB, else OUT/decisions.sqlite3; "none": no
    store, every alert `new` and nothing recorded): each alert is told new, changed, open,
    unchanged or gone against it, and the run is recorded in it.
    `fhir`: also write the alerts as DetectedIssue.ndjson and the referrals as Task.ndjson."""
    t_start = time.perf_counter()
    console = console or Console(stderr=True, highlight=False, quiet=quiet)
    input_dir = Path(input).resolve()
    out = Path(out_dir)
    work = out / WORK
    if executor not in ("local", "dask"):
        raise PanelError(f"--executor: {executor!r} is not local or dask")
    params_path = work / "params.json"
    if resume and params_path.exists():
        params = orjson.loads(params_path.read_bytes())
        if params["input"] != str(input_dir):
            raise PanelError(f"--resume: {out} holds a run of {params['input']}, not {input_dir}")
        if (packs is not None and params["packs"] != packs) or (
                as_of is not None and params["as_of"] != as_of.isoformat()):
            raise PanelError("--resume: --pack/--as-of differ from the interrupted run's "
                             f"({params['packs']}, {params['as_of']})")
        console.print(f"resuming the run in {out}")
    elif resume and (out / "run.json").exists():
        console.print(f"nothing to resume: the run in {out} is complete (run.json)")
        return dict(orjson.loads((out / "run.json").read_bytes()))
    else:
        if work.exists():
            shutil.rmtree(work)
        params = {"input": str(input_dir), "packs": packs,
                  "roots": [str(Path(r).resolve()) for r in roots or ()],
                  "as_of": (as_of or date.today()).isoformat(), "shards": shards,
                  "top_n": top_n, "started": time.time()}
        work.mkdir(parents=True)
        (work / "params.json").write_bytes(orjson.dumps(params))
    (out / ".run.json.tmp").unlink(missing_ok=True)  # of a run killed while finishing
    run_as_of = date.fromisoformat(params["as_of"])
    try:
        layout, files, ignored = discover(input_dir)
    except FileNotFoundError as e:
        raise PanelError(str(e)) from None
    eng = engine or load_engine(params["packs"], roots=params.get("roots") or roots or (),
                                max_medications=max_medications)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # the store first: a bad --db stops the run before any worker starts
    url = db or default_db(out) or str(out / "decisions.sqlite3")
    store = None if url == NO_STORE else DecisionStore(url)
    n_workers = workers or cpu_count()
    ex: _LocalExecutor | _DaskExecutor = (
        _DaskExecutor(scheduler, workers, eng) if executor == "dask"
        else _LocalExecutor(n_workers, eng))
    timings["start_workers"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        manifest = _partition(ex, work, files, params, console)
        timings["partition"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if store is not None and not (work / PRIOR).exists():
            write_prior(store, work / PRIOR, manifest["shards"], shard_of)
        timings["decisions_read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reviewed_now = _review(ex, work, manifest, run_as_of, params["top_n"], console)
        timings["review"] = time.perf_counter() - t0
    except BaseException:
        if store is not None:
            store.close()
        raise
    finally:
        ex.close()
    t0 = time.perf_counter()
    recorder = (_Recorder(store, work, manifest, eng, params, run_as_of)
                if store is not None else None)
    try:
        try:
            info = _merge(work, out, manifest, eng, params, layout, ignored, executor,
                          ex.workers, run_as_of, console)
        except BaseException:
            if recorder is not None:
                recorder.abandon()
            raise
        timings["merge_and_report"] = time.perf_counter() - t0
        t0 = time.perf_counter()  # what the store's write adds after the merge
        info["decisions_store"] = redact(store.url) if store is not None else None
        info["run_id"] = recorder.finish(info) if recorder is not None else None
        timings["decisions_write"] = time.perf_counter() - t0
        if fhir:
            t0 = time.perf_counter()
            n_issues, n_tasks = write_fhir(merging.shard_dirs(work, manifest["shards"]), store,
                                           out, run_as_of)
            info["fhir"] = {"DetectedIssue.ndjson": n_issues, "Task.ndjson": n_tasks}
            info["outputs"] += ["DetectedIssue.ndjson", "Task.ndjson"]
            timings["fhir"] = time.perf_counter() - t0
    finally:
        if store is not None:
            store.close()
    timings["total"] = time.perf_counter() - t_start
    info["timings"] = {k: round(v, 3) for k, v in timings.items()}
    info["throughput"] = {
        "patients_reviewed_this_invocation": reviewed_now,
        "patients_per_second": round(info["counts"]["patients"] / timings["total"], 1)
        if timings["total"] else None,
        "engine_share": info["engine_share"]}
    tmp = out / ".run.json.tmp"
    tmp.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / "run.json")
    shutil.rmtree(work, ignore_errors=True)
    loud = Console(stderr=True, highlight=False)  # said even with --quiet
    for name, why in info["damaged_files"].items():
        loud.print(f"[bold yellow]warning:[/] {name}: {why}; the patients whose records were "
                   "in the lost part were reviewed without them", soft_wrap=True)
    c = info["counts"]
    console.print(
        f"[bold green]done[/] {c['patients']} patients, {c['alerts']} alerts, "
        f"{c['quarantined']} records quarantined in {timings['total']:.1f}s")
    for name in info["outputs"]:  # every file written, where a person finds it
        console.print(f"  {name:<22} {(out / name).resolve()}", soft_wrap=True)
    if store is not None:
        where = redact(url)
        console.print(f"  {'decisions store':<22} {where}\nthe worklist in a browser: "
                      f"cds review user add NAME --role pharmacist --db {where}, then "
                      f"cds review serve --panel {out} --db {where}", soft_wrap=True)
    return info


def _partition(ex: _LocalExecutor | _DaskExecutor, work: Path, files: list[Any],
               params: dict[str, Any], console: Console) -> dict[str, Any]:
    parts = work / "parts"
    if (parts / "_manifest.json").exists():
        return dict(orjson.loads((parts / "_manifest.json").read_bytes()))
    for old in work.glob("parts.tmp-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = work / f"parts.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    units = plan_units(files)
    k = shard_count(sum(f.size for f in files), ex.workers, params.get("shards"))
    results: dict[int, UnitResult] = {}
    with _progress(console) as bar:
        task = bar.add_task("partitioning", total=len(units), unit="input pieces", rate="")
        for r in ex.run(partition_unit, units, folder=str(tmp), shards=k):
            results[r.index] = r
            bar.advance(task)
    offsets = unit_first_lines(units, results)
    manifest = {
        "shards": k,
        "unit_files": {str(u.index): u.file.name for u in units},
        "unit_offsets": {str(i): v for i, v in offsets.items()},
        "files": [f.name for f in files],
        "records": sum(r.records for r in results.values()),
        "patient_resources": sum(r.patients for r in results.values()),
        "medication_resources": sum(r.medications for r in results.values()),
        "by_type": _sum_dicts(r.by_type for r in results.values()),
        "partition_quarantined": sum(r.quarantined for r in results.values()),
        "damaged_files": {units[i].file.name: r.damaged for i, r in sorted(results.items())
                          if r.damaged},
    }
    (tmp / "_manifest.json").write_bytes(orjson.dumps(manifest))
    os.rename(tmp, parts)
    return manifest


class _Recorder:
    """Records the run in the decisions store once (a resumed run that was killed after
    recording it does not record it again), in a thread while the main process merges the
    shards and writes the report: the workers are done and a core is idle, so the store's
    write (most of its cost at 100,000 patients) overlaps the merge instead of following it.
    The run's totals, known after the merge, close the store's one transaction; a failed
    merge rolls it back."""

    def __init__(self, store: DecisionStore, work: Path, manifest: dict[str, Any], eng: Engine,
                 params: dict[str, Any], as_of: date) -> None:
        self.marker = work / "recorded.json"
        self.run_id: int | None = None
        self.error: BaseException | None = None
        self._totals: queue.Queue[tuple[dict[str, int], dict[str, int]] | None] = queue.Queue(1)
        self.thread: threading.Thread | None = None
        if self.marker.exists():
            self.run_id = int(orjson.loads(self.marker.read_bytes())["run_id"])
            return
        dirs = merging.shard_dirs(work, manifest["shards"])

        def record() -> None:
            try:
                self.run_id = store.record_run(
                    as_of=as_of, packs=[p.ref for p in eng.packs], source=params["input"],
                    sightings=merging.sightings(dirs), patients=merging.reviewed(dirs),
                    statuses={}, totals=self._wait)
            except BaseException as e:  # noqa: BLE001 - raised in the main thread by finish()
                self.error = e

        self.thread = threading.Thread(target=record, name="cds-record-run", daemon=True)
        self.thread.start()

    def _wait(self) -> tuple[dict[str, int], dict[str, int]]:
        got = self._totals.get()
        if got is None:
            raise _RunAbandoned()
        return got

    def finish(self, info: dict[str, Any]) -> int:
        if self.thread is not None:
            c = info["counts"]
            self._totals.put((info["statuses"], {
                "patients": c["patients"], "mme_50": c["mme_50_or_more"],
                "mme_90": c["mme_90_or_more"], "naloxone_missing": c["mme_50_without_naloxone"]}))
            self.thread.join()
            self.thread = None
            if self.error is not None:
                raise self.error
            self.marker.write_bytes(orjson.dumps({"run_id": self.run_id}))
        assert self.run_id is not None
        return self.run_id

    def abandon(self) -> None:
        """The merge failed: the store is left as it was."""
        if self.thread is not None:
            self._totals.put(None)
            self.thread.join()
            self.thread = None


class _RunAbandoned(CdsError):
    """The run's merge failed after its sightings were written: roll them back."""


def _sum_dicts(ds: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _jobs(work: Path, manifest: dict[str, Any], as_of: date, top_n: int) -> list[ShardJob]:
    unit_files = {int(k): v for k, v in manifest["unit_files"].items()}
    offsets = {int(k): v for k, v in manifest["unit_offsets"].items()}
    return [ShardJob(str(work), k, as_of, unit_files, offsets, top_n)
            for k in range(manifest["shards"])]


def _review(ex: _LocalExecutor | _DaskExecutor, work: Path, manifest: dict[str, Any],
            as_of: date, top_n: int, console: Console) -> int:
    (work / "shards").mkdir(exist_ok=True)
    for old in (work / "shards").glob(".s*"):  # temporaries of an interrupted run
        shutil.rmtree(old, ignore_errors=True)
    for stray in (work / "shards").glob("s*/stats.json.tmp"):
        stray.unlink(missing_ok=True)
    jobs = _jobs(work, manifest, as_of, top_n)
    done = 0
    for d in merging.shard_dirs(work, manifest["shards"]):
        if (d / "stats.json").exists():
            done += orjson.loads((d / "stats.json").read_bytes())["patients"]
    todo = [j for j in jobs if not (work / "shards" / f"s{j.shard:05d}" / "stats.json").exists()]
    total = max(manifest["patient_resources"], done) or None
    now = 0
    t0 = time.perf_counter()
    best: list[tuple[Any, ...]] = []  # the best top_n worklist keys of the shards done so far

    def bounded() -> Iterator[ShardJob]:
        """Jobs made as they are submitted, with the bound known by then (docs/panel.md)."""
        for job in todo:
            yield replace(job, detail_bound=best[-1] if 0 < top_n <= len(best) else None)

    with _progress(console) as bar:
        task = bar.add_task("reviewing", total=total, completed=done, unit="patients", rate="")
        for stats in ex.run(review_shard, bounded()):
            if top_n > 0 and stats.get("top_keys"):
                best[:] = sorted([*best, *map(tuple, stats["top_keys"])])[:top_n]
            now += stats["patients"]
            done += stats["patients"]
            rate = now / max(1e-9, time.perf_counter() - t0)
            if total is not None and done > total:
                total = done
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}/s")
        bar.update(task, total=done, completed=done)
    return now


def _merge(work: Path, out: Path, manifest: dict[str, Any], eng: Engine, params: dict[str, Any],
           layout: str, ignored: list[str], executor: str, workers: int, as_of: date,
           console: Console) -> dict[str, Any]:
    dirs = merging.shard_dirs(work, manifest["shards"])
    stats = merging.sum_stats([orjson.loads((d / "stats.json").read_bytes()) for d in dirs])
    unit_files = {int(k): v for k, v in manifest["unit_files"].items()}
    offsets = {int(k): v for k, v in manifest["unit_offsets"].items()}
    # alerts: pyarrow, which lets go of the GIL, beside the Python merges of the rest
    with ThreadPoolExecutor(1) as pool:
        alerts_done = pool.submit(merging.merge_alerts, dirs, out)
        n_patients, top = merging.merge_worklist(dirs, out, params["top_n"])
        n_quarantined, reasons = merging.merge_quarantine(work / "parts", dirs, out, unit_files,
                                                          offsets)
        details = merging.merge_details(dirs, {r["patient_id"] for r in top})
        merging.merge_patients(dirs, out)
        n_alerts = alerts_done.result()
    secs = stats["seconds"]
    worker_time = sum(secs.values()) or 1.0
    info: dict[str, Any] = {
        "cds_version": _version(),
        "input": params["input"], "layout": layout, "files": manifest["files"],
        "ignored_files": ignored, "damaged_files": manifest.get("damaged_files", {}),
        "as_of": as_of.isoformat(),
        "packs": [{"id": p.meta.id, "version": p.meta.version, "ref": p.ref, "digest": p.digest}
                  for p in eng.packs],
        "knowledge": eng.kb.version,
        "executor": executor, "workers": workers, "shards": manifest["shards"],
        "counts": {
            "patients": n_patients, "records": manifest["records"],
            "records_by_type": manifest["by_type"], "alerts": n_alerts,
            "quarantined": n_quarantined, "skipped": stats.get("skipped", 0),
            "review_failed": stats.get("failed", 0),
            "not_reviewed_deceased": stats.get("deceased", 0),
            "patients_with_unassessed_items": stats.get("not_assessed_patients", 0),
            "patients_with_alerts": n_patients - int(stats["burden_hist"].get("0", 0)),
            "mme_50_or_more": stats.get("mme_50", 0), "mme_90_or_more": stats.get("mme_90", 0),
            "mme_50_without_naloxone": stats.get("mme_50_no_naloxone", 0),
        },
        "alerts_by_rule": dict(sorted(stats["rules"].items(), key=lambda kv: -kv[1])),
        "alerts_by_severity": stats["severities"], "alerts_by_family": stats["families"],
        "quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "statuses": {k: stats.get("statuses", {}).get(k, 0) for k in STATUSES},
        "worker_seconds": {k: round(v, 3) for k, v in secs.items()},
        "engine_share": round(secs.get("engine", 0.0) / worker_time, 3),
        "outputs": ["alerts.parquet", "alerts.csv", "worklist.csv", "patients.parquet",
                    "quarantine.ndjson", "run.json", "report.html"],
    }
    write_report(out / "report.html", info, stats, top, details, params["top_n"])
    return info


def _version() -> str:
    from cds import __version__

    return __version__
