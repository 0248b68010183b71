"""Per-prescriber recommendation letters: the "share" step of pharmacist-prescriber
collaborative care.

A pharmacist reviews alerts and decides; the prescriber is the one who changes the orders.
These letters carry what the pharmacist asks of each prescriber, one self-contained HTML file
per prescriber (inline CSS, nothing fetched, every text escaped), written to be read on screen
or printed to PDF from a browser and sent as is. Only decisions that ask something of the
prescriber are shared: `accepted` (a recommendation to carry out) and `referred` (a question
handed to the prescriber). Every other state is the pharmacist's own business (`open`,
`snoozed`), already done (`acted`, `resolved`) or a reasoned no (`overridden`).

A letter must never put a recommendation under the wrong patient: an item whose sighting,
decision and patient disagree, or two different charts given under one patient id, is refused
(`ValueError`) rather than guessed at. The output depends on the items only, not on their
order, so a re-run on the same decisions gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import TypeVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from cds import __version__
from cds.decisions.model import Decision, Sighting
from cds.vocabulary import SEVERITIES, SEVERITY_RANK

#: The decision states a letter carries: the ones that ask the prescriber to do something.
SHARED_STATES: frozenset[str] = frozenset({"accepted", "referred"})
#: How a letter names the prescriber of orders that carry none.
UNKNOWN_PRESCRIBER = "Prescriber not recorded"
UNKNOWN_FILE = "prescriber-not-recorded.html"
INDEX_FILE = "index.html"
#: What marks a file as one of ours: an earlier run's letter without a successor is removed.
GENERATOR_MARK = b'<meta name="generator" content="cds review letters">'

#: Stems a prescriber's slug must not take: the two fixed files, and names Windows refuses,
#: so a letter folder copied to a shared drive keeps every file.
_RESERVED = frozenset({"index", "prescriber-not-recorded", "con", "prn", "aux", "nul",
                       *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})
_SLUG_MAX = 60  # keeps a name with its hash suffix far below any file-system limit
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_TEMPLATES = Path(__file__).parent / "templates"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PatientRef:
    """What a human needs to find the chart: the id alone is rarely what a prescriber's system
    shows, so the MRN, name and birth date are printed when known."""

    id: str
    mrn: str | None = None
    name: str | None = None
    birth_date: date | None = None


@dataclass(frozen=True, slots=True)
class LetterItem:
    """One alert and the pharmacist's decision on it, addressed to one prescriber. An alert on
    orders of two prescribers is two items. `prescriber` empty or None: the orders carry no
    prescriber (the item goes to the "Prescriber not recorded" letter)."""

    prescriber: str | None
    patient: PatientRef
    sighting: Sighting
    decision: Decision


@dataclass(frozen=True, slots=True)
class _PatientBlock:
    patient: PatientRef
    items: tuple[LetterItem, ...]  # most severe first


@dataclass(frozen=True, slots=True)
class _Letter:
    file: str
    prescriber: str  # as printed: the name, or UNKNOWN_PRESCRIBER
    known: bool
    patients: tuple[_PatientBlock, ...]
    authors: tuple[str, ...]

    @property
    def count(self) -> int:
        return sum(len(p.items) for p in self.patients)

    @property
    def referred(self) -> int:
        return sum(i.decision.state == "referred" for p in self.patients for i in p.items)


def prescriber_slug(name: str) -> str:
    """A file-name stem for a prescriber: lower-case ASCII letters, digits and hyphens (accents
    dropped, not the letter: "José" is "jose"), at most 60 characters; "prescriber" when
    nothing is left. Not unique on its own: `letters` adds a hash suffix on collisions."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:_SLUG_MAX].strip("-")
    return stem or "prescriber"


def _candidates(stem: str, name: str) -> Iterator[str]:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    for n in range(8, len(digest) + 1, 4):
        yield f"{stem}-{digest[:n]}"
    for i in itertools.count(2):  # only a name slugging to another's full hash gets here
        yield f"{stem}-{digest}-{i}"


def _file_stems(names: Iterable[str]) -> dict[str, str]:
    """Prescriber -> file stem, distinct for distinct prescribers. A slug only one prescriber
    has is used as is; prescribers sharing a slug ("Dr. A Lee", "dr a lee") each get a suffix
    from a hash of their own name, so the name a prescriber's letter gets does not depend on
    the order the items came in."""
    groups: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        groups.setdefault(prescriber_slug(name), []).append(name)
    stems = {ns[0]: s for s, ns in groups.items() if len(ns) == 1 and s not in _RESERVED}
    taken = set(_RESERVED) | set(stems.values())
    for s, ns in sorted(groups.items()):
        for name in ns:
            if name not in stems:
                stems[name] = next(c for c in _candidates(s, name) if c not in taken)
                taken.add(stems[name])
    return stems


def long_date(d: date) -> str:
    """"4 March 2026": a letter's date, unambiguous to readers on both sides of the Atlantic
    and not subject to the machine's locale."""
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def _utc(dt: datetime) -> datetime:
    """decided_at as naive UTC (the model stores UTC; a naive value is taken as UTC), so aware
    and naive times compare instead of raising."""
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


def _decided_on(d: Decision) -> date:
    return _utc(d.decided_at).date()


def _check(item: LetterItem) -> None:
    s, d, p = item.sighting, item.decision, item.patient
    if not s.patient_id == d.patient_id == p.id:
        raise ValueError(f"letter item mixes patients: patient {p.id!r}, alert of "
                         f"{s.patient_id!r}, decision on {d.patient_id!r}")
    if s.alert_key != d.alert_key:
        raise ValueError(f"letter item for patient {p.id!r} mixes alerts: {s.alert_key!r} "
                         f"decided as {d.alert_key!r}")


def _one(pid: str, what: str, values: Iterable[_T | None]) -> _T | None:
    given = {v for v in values if v is not None}
    if len(given) > 1:
        raise ValueError(f"patient {pid!r} is given with two different {what}s: "
                         + " and ".join(sorted(map(repr, given))))
    return next(iter(given), None)


def _merge_refs(refs: list[PatientRef]) -> PatientRef:
    """One patient's identifiers from every item naming them: a field given by one item and
    missing from another is kept; two different values are refused (which chart is it?)."""
    pid = refs[0].id
    return PatientRef(id=pid, mrn=_one(pid, "MRN", (r.mrn for r in refs)),
                      name=_one(pid, "name", (r.name for r in refs)),
                      birth_date=_one(pid, "birth date", (r.birth_date for r in refs)))


def _latest_key(item: LetterItem) -> tuple[int, datetime, str, str]:
    # repr as the last tie-break: inconsistent duplicates still resolve the same whatever the order
    d = item.decision
    return d.version, _utc(d.decided_at), repr(d), repr(item.sighting)


def _rec_key(item: LetterItem) -> tuple[int, str, str, str]:
    s = item.sighting
    return SEVERITY_RANK.get(s.severity, len(SEVERITY_RANK)), s.summary.casefold(), s.rule, s.alert_key


def _patient_key(ref: PatientRef) -> tuple[str, str]:
    return (ref.name or ref.id).casefold(), ref.id


def _build(items: Iterable[LetterItem]) -> list[_Letter]:
    """The letters, in the index's order: known prescribers by name, the unknown one last."""
    latest: dict[tuple[str | None, str, str], LetterItem] = {}
    for item in items:
        _check(item)
        who = (item.prescriber or "").strip() or None
        key = (who, item.patient.id, item.sighting.alert_key)
        # a decision superseded by a later one on the same alert is history, not a request
        if key not in latest or _latest_key(item) > _latest_key(latest[key]):
            latest[key] = item
    shared = [i for i in latest.values() if i.decision.state in SHARED_STATES]
    refs: dict[str, list[PatientRef]] = {}
    for i in shared:
        refs.setdefault(i.patient.id, []).append(i.patient)
    patients = {pid: _merge_refs(rs) for pid, rs in refs.items()}
    by_prescriber: dict[str | None, dict[str, list[LetterItem]]] = {}
    for (who, pid, _), i in latest.items():
        if i.decision.state in SHARED_STATES:
            by_prescriber.setdefault(who, {}).setdefault(pid, []).append(i)
    stems = _file_stems(w for w in by_prescriber if w is not None)
    out = []
    for who in sorted(by_prescriber, key=lambda w: (w is None, (w or "").casefold(), w or "")):
        blocks = tuple(
            _PatientBlock(patients[pid], tuple(sorted(its, key=_rec_key)))
            for pid, its in sorted(by_prescriber[who].items(), key=lambda kv: _patient_key(patients[kv[0]])))
        authors = tuple(sorted({i.decision.author for b in blocks for i in b.items if i.decision.author}))
        out.append(_Letter(file=UNKNOWN_FILE if who is None else stems[who] + ".html",
                           prescriber=who or UNKNOWN_PRESCRIBER, known=who is not None,
                           patients=blocks, authors=authors))
    return out


@cache
def _template() -> Template:
    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["longdate"] = long_date
    env.filters["decided_on"] = _decided_on
    env.filters["sev_class"] = lambda s: s if s in SEVERITIES else "unknown"
    return env.get_template("letter.html.j2")


def _render(**context: object) -> str:
    return _template().render(cds_version=__version__, **context)


def letters(items: Iterable[LetterItem], *, pharmacy: str | None = None, as_of: date) -> dict[str, str]:
    """One HTML letter per prescriber, as {file name: HTML}.

    Only decisions in state `accepted` (a recommendation the prescriber is asked to carry out)
    or `referred` (a question referred to the prescriber) are included: the other states ask
    nothing of the prescriber. When one (prescriber, patient, alert) comes with several
    decisions, the latest (highest version, then time) stands, so a recommendation since acted
    on or withdrawn is not sent. Items without a prescriber go to `prescriber-not-recorded.html`.
    File names are `[a-z0-9-]+.html`, distinct per prescriber. Nothing to share: {}.

    Raises ValueError for an item whose sighting, decision and patient disagree, or for one
    patient id given with two different MRNs, names or birth dates.
    """
    return {lt.file: _render(page="letter", letter=lt, pharmacy=pharmacy, as_of=as_of)
            for lt in _build(items)}


def letter_index(items: Iterable[LetterItem]) -> list[tuple[str, str, int]]:
    """(prescriber, file name, recommendations) of each letter `letters` would write, in the
    index's order: what a page lists before one letter is opened."""
    return [(lt.prescriber, lt.file, sum(len(b.items) for b in lt.patients))
            for lt in _build(items)]


def _write(path: Path, text: str) -> None:
    """Temporary file then rename, so a reader (or a mail merge) never sees half a letter."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_letters(items: Iterable[LetterItem], out_dir: Path, *, pharmacy: str | None = None,
                  as_of: date) -> list[Path]:
    """Write each letter of `letters` into out_dir (created if missing) and an `index.html`
    listing the prescribers with their patient and recommendation counts; returns the paths,
    letters in the index's order, the index last. With nothing to share only the index is
    written, saying so. An earlier run's letter this run has none for is removed (its
    recommendations may since have been acted on or withdrawn: a stale letter must not be
    sent); only files marked as written here are, the folder may hold other things."""
    built = _build(items)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for lt in built:
        path = out_dir / lt.file
        _write(path, _render(page="letter", letter=lt, pharmacy=pharmacy, as_of=as_of))
        paths.append(path)
    index = out_dir / INDEX_FILE
    _write(index, _render(page="index", letters=built, pharmacy=pharmacy, as_of=as_of))
    paths.append(index)
    keep = set(paths)
    for old in out_dir.glob("*.html"):
        if old not in keep and _ours(old):
            old.unlink(missing_ok=True)
    return paths


def _ours(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return GENERATOR_MARK in fh.read(4096)
    except OSError:
        return False
