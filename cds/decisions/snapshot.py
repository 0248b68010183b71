"""What the store knows before a panel run, cut into the run's shards: the panel's workers
(local processes or a Dask cluster) judge their patients' alerts from a file, never from the
database, so a run needs one read of the store, whatever its size or executor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from cds.decisions.model import Decision
from cds.decisions.store import DecisionStore, Prior, sighting_of_row


def write_prior(store: DecisionStore, folder: Path, shards: int,
                shard_of: Callable[[str, int], int]) -> int:
    """Write `folder/sNNNNN.ndjson` (one line per patient the store knows) for each shard,
    through a temporary folder renamed at the end; returns the patients written."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    buffers: dict[int, list[bytes]] = {}
    n = 0
    for pid, rows, decided in store.prior_rows():
        # sightings as plain rows (objects are built in the workers, in parallel); orjson
        # writes the (slotted) Decision dataclasses, dates and datetimes itself
        line = orjson.dumps({"p": pid, "s": rows, "d": decided})
        buffers.setdefault(shard_of(pid, shards), []).append(line + b"\n")
        n += 1
    for k, lines in buffers.items():
        (tmp / f"s{k:05d}.ndjson").write_bytes(b"".join(lines))
    tmp.rename(folder)
    return n


def read_prior(folder: Path, shard: int) -> dict[str, Prior]:
    path = folder / f"s{shard:05d}.ndjson"
    if not path.exists():
        return {}
    out: dict[str, Prior] = {}
    for line in path.read_bytes().splitlines():
        rec = orjson.loads(line)
        out[rec["p"]] = Prior(tuple(sighting_of_row(rec["p"], s) for s in rec["s"]),
                              {k: _decision(d) for k, d in rec["d"].items()})
    return out


def _decision(d: dict[str, Any]) -> Decision:
    d["decided_at"] = datetime.fromisoformat(d["decided_at"])
    for k in ("follow_up", "snooze_until"):
        if d.get(k):
            d[k] = date.fromisoformat(d[k])
    for k in ("ingredients", "actions", "order_ids", "prescribers"):
        if k in d:
            d[k] = tuple(d[k])
    return Decision(**d)
