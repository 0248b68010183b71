"""The engine a service runs, as one immutable snapshot swapped atomically on reload.

A request takes the current snapshot once, at its start, and uses it to the end: a reload
builds a new snapshot beside the old one and replaces the reference, so calls in flight
finish on the packs they started with and none is dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cds.engine.evaluator import Engine, load_engine
from cds.limits import MAX_MEDICATIONS
from cds.rules.loader import Pack


@dataclass(frozen=True)
class Snapshot:
    engine: Engine
    packs: dict[str, Pack]  # pack@version -> Pack
    loaded_at: str
    generation: int

    @property
    def pack_refs(self) -> tuple[str, ...]:
        return self.engine.pack_refs


def build_snapshot(packs: list[str] | None, rulesets: list[Path], backend: str,
                   generation: int = 1, max_medications: int = MAX_MEDICATIONS) -> Snapshot:
    engine = load_engine(packs, roots=rulesets, backend=backend,  # type: ignore[arg-type]
                         max_medications=max_medications)
    return Snapshot(engine=engine, packs={p.ref: p for p in engine.packs},
                    loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    generation=generation)


@dataclass
class EngineHolder:
    """The current snapshot; `swap` is atomic (one reference assignment under a lock)."""

    current: Snapshot
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Snapshot:
        return self.current

    def swap(self, new: Snapshot) -> Snapshot:
        with self._lock:
            old, self.current = self.current, new
        return old
