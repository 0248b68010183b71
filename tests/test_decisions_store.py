"""The decisions store against real databases (every test taking `db_url` runs on an SQLite file
and on a fresh database of a real PostgreSQL server): the schema is Alembic's, decisions are
append-only with optimistic versions (two writers on one version: exactly one wins, never a
lost update), a panel run is one transaction, cards are linked once, and the CSV round trip
checks every row before it applies any. Also the decision a CDS Hooks feedback records."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection

import cds
from cds.decisions import schema as t
from cds.decisions.carry import sighting_of
from cds.decisions.csv_import import Reject, import_csv, write_rejects
from cds.decisions.model import STATES, Decision, Sighting
from cds.decisions.reasons import Responses, from_feedback, responses_of
from cds.decisions.store import (
    ENV,
    MIGRATIONS,
    DecisionConflict,
    DecisionStore,
    PatientRow,
    Prior,
    StoreError,
    database_url,
    default_db,
    sighting_row,
)
from cds.errors import CdsError, InputError
from cds.panel.columns import ALERT_COLUMNS
from cds.patient import MedicationOrder, Patient
from cds.vocabulary import OVERRIDE_REASON_SYSTEM

AS_OF = date(2026, 11, 26)
T0 = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
ENGINE = cds.load_engine(["opioid-safety"])
RESPONSES = responses_of(ENGINE.packs)
MME = "opioid-safety/mme-90@MME90+"
NALOXONE = "opioid-safety/naloxone-not-on-file"
REC07 = "opioid-safety/rec07-reassess-long-term-therapy"
PDMP = "opioid-safety/rec09-pdmp-periodic"
PRESCRIBERS = "opioid-safety/multiple-opioid-prescribers"
TIMING = {"frequency": 6, "period": 1, "period_unit": "d"}


def real_sightings(patient_id: str) -> dict[str, Sighting]:
    """The alerts the opioid pack raises for a patient at 150 MME/day from two prescribers."""
    p = Patient(id=patient_id, birth_date=date(1960, 1, 1), sex="female", medications=[
        MedicationOrder.model_validate(
            {"id": "m1", "text": "oxycodone hydrochloride 10 MG Oral Tablet", "dose": 1,
             "dose_unit": "tablet", "authored": "2026-08-01", "prescriber": "Dr A",
             "timing": TIMING}),
        MedicationOrder.model_validate(
            {"id": "m2", "text": "72 HR fentanyl 0.025 MG/HR Transdermal System", "dose": 1,
             "dose_unit": "patch", "authored": "2026-08-01", "prescriber": "Dr B"})])
    alerts = ENGINE.evaluate(p, as_of=AS_OF).alerts
    out = {a.key: sighting_of(patient_id, a, {"m1": "Dr A", "m2": "Dr B"}) for a in alerts}
    assert {MME, NALOXONE, REC07, PDMP, PRESCRIBERS} <= out.keys()
    return out


SIGHTINGS = {pid: real_sightings(pid) for pid in ("p1", "p2")}


def sighting(pid: str = "p1", key: str = MME, **kw: Any) -> Sighting:
    return replace(SIGHTINGS[pid][key], **kw)


def decision(state: str = "accepted", pid: str = "p1", key: str = MME, **kw: Any) -> Decision:
    s = SIGHTINGS[pid][key] if pid in SIGHTINGS else SIGHTINGS["p1"][key]
    base: dict[str, Any] = dict(
        patient_id=pid, alert_key=key, state=state, author="jane", decided_at=T0, pack=s.pack,
        rule=s.rule, family=s.family, severity=s.severity, summary=s.summary,
        ingredients=s.ingredients, band=s.band, level=s.level)
    base.update(kw)
    return Decision(**base)


@pytest.fixture()
def store(db_url: str) -> Iterator[DecisionStore]:
    with DecisionStore(db_url) as s:
        yield s


def raw_rows(url: str, table: str = "decisions") -> list[tuple[Any, ...]]:
    """Every row of a table as the database holds it, read apart from the store."""
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            order = "id" if table == "decisions" else "1"
            return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.metadata.tables[table]))
                       .scalar_one())
    finally:
        engine.dispose()


def record(store: DecisionStore, sightings: list[Sighting], patients: list[str],
           as_of: date = AS_OF) -> int:
    return store.record_run(
        as_of=as_of, packs=["opioid-safety@2.0.2"], source="export",
        sightings=[sighting_row(s, "new") for s in sightings],
        patients=[PatientRow(p, f"MRN-{p}", f"Patient {p}", date(1960, 1, 1)) for p in patients],
        statuses={"new": len(sightings)})


# -- URLs --------------------------------------------------------------------------------------

def test_database_url_reads_a_path_as_sqlite_and_postgres_urls_as_psycopg(tmp_path: Path) -> None:
    assert database_url(tmp_path / "d.sqlite3") == f"sqlite:///{(tmp_path / 'd.sqlite3').resolve()}"
    assert database_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:///:memory:") == "sqlite:///:memory:"


def test_default_db_is_the_environment_then_the_run_folder(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert default_db() is None
    assert default_db(tmp_path) == str(tmp_path / "decisions.sqlite3")
    monkeypatch.setenv(ENV, "postgresql://u@h/db")
    assert default_db(tmp_path) == "postgresql://u@h/db"


def test_a_server_that_refuses_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as e:
        DecisionStore("postgresql://cds:secret@127.0.0.1:1/nowhere")
    assert "secret" not in str(e.value) and "cds:***@127.0.0.1:1" in str(e.value)


# -- schema ------------------------------------------------------------------------------------

def test_opening_creates_the_schema_at_the_alembic_head_and_reopening_loses_nothing(
        db_url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    with DecisionStore(db_url) as store:
        assert raw_rows(db_url, "alembic_version") == [(head,)]
        names = set(inspect(store.engine).get_table_names())
        assert names >= {"alembic_version", *t.metadata.tables}
        for table in t.metadata.sorted_tables:  # the migrations make what schema.py describes
            columns = {c["name"] for c in inspect(store.engine).get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name
        first = store.decide(decision("overridden", reason_code="taper-plan"), 0)
        run = record(store, [sighting()], ["p1"])
    before = raw_rows(db_url)
    for _ in range(2):  # opening again is a no-op
        with DecisionStore(db_url) as store:
            assert store.history() == [first]
            assert [r["id"] for r in store.runs()] == [run]
            assert dict(store.prior())["p1"].decisions == {MME: first}
    assert raw_rows(db_url, "alembic_version") == [(head,)]
    assert raw_rows(db_url) == before


# -- decisions ---------------------------------------------------------------------------------

def test_a_decision_comes_back_as_it_was_made(store: DecisionStore) -> None:
    d = decision("referred", reason_system=OVERRIDE_REASON_SYSTEM, reason_code="patient-monitored",
                 reason_display="Patient will be monitored", note="call Dr A",
                 follow_up=date(2026, 12, 10), referred_to="pain-specialist", source="web",
                 rationale="why", actions=("Offer naloxone", "Taper"), order_ids=("m1", "m2"),
                 prescribers=("Dr A", "Dr B"),
                 decided_at=datetime(2026, 11, 26, 11, 30, tzinfo=timezone(timedelta(hours=2))))
    stored = store.decide(d)
    assert stored == replace(d, version=1, decided_at=T0)  # 11:30+02:00 is 09:30 UTC
    assert stored.decided_at.tzinfo is not None
    assert store.current("p1", MME) == stored
    naive = store.decide(decision(key=NALOXONE, decided_at=datetime(2026, 11, 26, 9, 30)))
    assert naive.decided_at == T0  # a naive time is UTC
    assert store.current("p1", NALOXONE) == naive


def test_decisions_are_append_only(store: DecisionStore, db_url: str) -> None:
    snapshots = []
    made = []
    for i, state in enumerate(("accepted", "referred", "acted")):
        made.append(store.decide(decision(state, decided_at=T0 + timedelta(hours=i),
                                          referred_to="prescriber", author=f"a{i}")))
        snapshots.append(raw_rows(db_url))
    assert [d.version for d in made] == [1, 2, 3]
    assert store.current("p1", MME) == made[-1]
    assert store.history("p1", MME) == made  # oldest first
    assert store.history() == made
    assert store.history(since=T0 + timedelta(minutes=30)) == made[1:]
    assert store.history(alert_key=NALOXONE) == []
    # no row is ever updated: each snapshot extends the previous one
    assert [len(s) for s in snapshots] == [1, 2, 3]
    assert snapshots[2][:2] == snapshots[1] and snapshots[1][:1] == snapshots[0]
    assert store.current_for() == {("p1", MME): made[-1]}
    assert store.current_for("p2") == {}
    assert store.current_for_keys([("p1", MME), ("p1", NALOXONE), ("p2", MME)]) == {
        ("p1", MME): made[-1]}


def test_a_stale_expected_version_is_a_conflict_naming_who_decided(store: DecisionStore) -> None:
    first = store.decide(decision("overridden", reason_code="taper-plan", author="bob"), 0)
    for stale in (0, 2, 7):
        with pytest.raises(DecisionConflict) as e:
            store.decide(decision("accepted", author="jane"), stale)
        assert e.value.current == first and e.value.expected == stale
        msg = str(e.value)
        assert "bob" in msg and "overridden" in msg and "(version 1)" in msg and MME in msg
    assert store.history() == [first]
    assert store.decide(decision("accepted"), 1).version == 2
    assert store.decide(decision("acted"), None).version == 3  # None: after whatever is current


def attempt(store: DecisionStore, barrier: threading.Barrier, d: Decision
            ) -> Decision | DecisionConflict:
    barrier.wait(timeout=30)
    try:
        return store.decide(d, 0)
    except DecisionConflict as e:
        return e


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
def test_two_writers_on_one_version_exactly_one_wins(db_url: str, instances: int) -> None:
    stores = [DecisionStore(db_url) for _ in range(instances)]
    try:
        with ThreadPoolExecutor(2) as pool:
            for i in range(20):
                barrier = threading.Barrier(2)
                pid = f"race-{i}"
                futures = [pool.submit(attempt, stores[n % instances], barrier,
                                       decision(pid=pid, author=f"writer-{n}")) for n in range(2)]
                results = [f.result(timeout=60) for f in futures]
                wins = [r for r in results if isinstance(r, Decision)]
                lost = [r for r in results if isinstance(r, DecisionConflict)]
                assert len(wins) == 1 and len(lost) == 1, results
                assert lost[0].current == wins[0] and wins[0].author in str(lost[0])
                assert stores[0].history(pid) == wins  # never a lost update
    finally:
        for s in stores:
            s.close()


def test_read_modify_write_writers_never_lose_an_update(db_url: str) -> None:
    stores = [DecisionStore(db_url) for _ in range(4)]

    def writer(n: int) -> int:
        store, done, conflicts = stores[n], 0, 0
        while done < 5:
            on_file = store.current("p1", MME)
            try:
                store.decide(decision(author=f"w{n}", note=f"{n}.{done}"),
                             on_file.version if on_file else 0)
                done += 1
            except DecisionConflict:
                conflicts += 1
        return conflicts

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(writer, range(4), timeout=120))
        history = stores[0].history("p1", MME)
        assert sorted(d.version for d in history) == list(range(1, 21))
        assert sorted(d.note or "" for d in history) == sorted(
            f"{n}.{i}" for n in range(4) for i in range(5))
        assert stores[0].current("p1", MME) == max(history, key=lambda d: d.version)
    finally:
        for s in stores:
            s.close()


def test_decide_many_is_all_or_nothing(store: DecisionStore, db_url: str) -> None:
    taken = store.decide(decision("acted", key=NALOXONE, author="bob"))
    batch = [(decision("accepted", key=MME), 0), (decision("accepted", key=REC07), 0),
             (decision("overridden", key=NALOXONE, reason_code="patient-declined"), 0)]
    with pytest.raises(DecisionConflict) as e:
        store.decide_many(batch)
    assert e.value.alert_key == NALOXONE and "bob" in str(e.value)
    assert store.history() == [taken] and count(db_url, "decisions") == 1
    # corrected, the batch applies whole; two decisions on one alert apply in order
    out = store.decide_many([*batch[:2], (batch[2][0], 1), (decision("acted", key=MME), 1)])
    assert [(d.alert_key, d.version) for d in out] == [
        (MME, 1), (REC07, 1), (NALOXONE, 2), (MME, 2)]
    assert store.current("p1", MME) == out[3]
    assert store.decide_many([]) == []


def test_a_race_lost_in_a_batch_names_the_alert_it_was_lost_on(db_url: str) -> None:
    with DecisionStore(db_url) as store, DecisionStore(db_url) as other:
        fired: list[Decision] = []

        def concurrent_writer(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO DECISIONS") and not fired:
                fired.append(other.decide(decision("acted", key=NALOXONE, author="bob"), 0))

        event.listen(store.engine, "before_cursor_execute", concurrent_writer)
        with pytest.raises(DecisionConflict) as e:
            store.decide_many([(decision(key=MME), 0), (decision(key=NALOXONE), 0)])
        assert fired and store.history() == fired  # nothing of the batch was applied
        assert e.value.alert_key == NALOXONE and "bob" in str(e.value)


@pytest.mark.parametrize("state", ["maybe", "Accepted", ""])
def test_a_state_that_is_not_a_decision_state_is_refused(store: DecisionStore, db_url: str,
                                                         state: str) -> None:
    with pytest.raises(CdsError, match=f"decision state {state!r} is not one of") as e:
        store.decide_many([(decision(key=NALOXONE), 0), (decision(state), 0)])
    assert not isinstance(e.value, DecisionConflict)
    assert all(s in str(e.value) for s in STATES)
    assert count(db_url, "decisions") == 0


# -- panel runs --------------------------------------------------------------------------------

def essentials(s: Sighting) -> tuple[Any, ...]:
    """What a sighting keeps in the store (the text, actions and orders are the run's files)."""
    return (s.patient_id, s.alert_key, s.rule, s.pack, s.family, s.severity, s.summary,
            s.ingredients, s.band, s.level, s.lineage)


def prior_of(store: DecisionStore) -> dict[str, set[tuple[Any, ...]]]:
    return {pid: {essentials(s) for s in p.sightings} for pid, p in store.prior()}


def test_a_run_is_what_the_next_one_is_told(store: DecisionStore) -> None:
    p1, p2 = SIGHTINGS["p1"], SIGHTINGS["p2"]
    first = record(store, [p1[MME], p1[NALOXONE], p2[PDMP]], ["p1", "p2"])
    assert prior_of(store) == {"p1": {essentials(p1[MME]), essentials(p1[NALOXONE])},
                               "p2": {essentials(p2[PDMP])}}
    assert store.patients() == {p: PatientRow(p, f"MRN-{p}", f"Patient {p}", date(1960, 1, 1))
                                for p in ("p1", "p2")}
    assert store.patients(["p2", "p9"]) == {"p2": PatientRow("p2", "MRN-p2", "Patient p2",
                                                             date(1960, 1, 1))}
    # p1 reviewed again a month later: only the later run's sightings are theirs now
    changed = replace(p1[REC07], severity="moderate")
    second = store.record_run(
        as_of=AS_OF + timedelta(days=30), packs=["opioid-safety@2.0.2"], source=None,
        sightings=[sighting_row(changed, "new")], patients=[PatientRow("p1", "MRN-9", "Ann B", None)],
        statuses={"new": 1})
    assert second > first
    assert prior_of(store) == {"p1": {essentials(changed)}, "p2": {essentials(p2[PDMP])}}
    assert store.patients()["p1"] == PatientRow("p1", "MRN-9", "Ann B", None)
    # a patient reviewed with nothing firing has no sightings; one only decided is known too
    store.record_run(as_of=AS_OF + timedelta(days=60), packs=[], source=None, sightings=[],
                     patients=[PatientRow("p2")], statuses={})
    d = store.decide(decision(pid="p3", key=NALOXONE))
    prior = dict(store.prior())
    assert prior["p1"].sightings and not prior.get("p2", Prior((), {})).sightings
    assert prior["p3"].sightings == ()
    assert prior["p3"].decisions == {NALOXONE: d}
    runs = store.runs()
    assert [(r["as_of"], r["alerts"], r["source"]) for r in runs] == [
        (AS_OF, 3, "export"), (AS_OF + timedelta(days=30), 1, None),
        (AS_OF + timedelta(days=60), 0, None)]


def test_one_alert_key_is_stored_once_per_run(store: DecisionStore, db_url: str) -> None:
    a = sighting()
    twin = replace(a, summary="the second order of the same drug", severity="critical")
    record(store, [a, twin, a, sighting(key=NALOXONE)], ["p1", "p1"])
    assert count(db_url, "sightings") == 2 and count(db_url, "reviewed") == 1
    assert prior_of(store) == {"p1": {essentials(a), essentials(sighting(key=NALOXONE))}}


def test_a_run_that_crashes_midway_leaves_the_store_as_it_was(store: DecisionStore,
                                                              db_url: str) -> None:
    record(store, [sighting(), sighting(key=NALOXONE)], ["p1"])
    tables = ("runs", "sightings", "reviewed", "decisions")
    before = {name: raw_rows(db_url, name) for name in tables}
    prior, patients = prior_of(store), store.patients()

    def sightings() -> Iterator[tuple[Any, ...]]:
        for i in range(5_100):  # past the first batch of 5,000: some rows were written
            yield sighting_row(replace(sighting(pid="p1"), patient_id=f"big-{i}"), "new")
        raise RuntimeError("the worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        store.record_run(as_of=AS_OF, packs=["opioid-safety@2.0.2"], source="x",
                         sightings=sightings(), statuses={"new": 5_100},
                         patients=[PatientRow("p1", "MRN-new"), PatientRow("big-0")])
    assert {name: raw_rows(db_url, name) for name in tables} == before
    assert prior_of(store) == prior and store.patients() == patients


# -- cards and known alerts --------------------------------------------------------------------

def as_card(s: Sighting) -> Sighting:
    """What a card link keeps of a sighting."""
    return Sighting(s.patient_id, s.alert_key, s.rule, s.pack, s.family, s.severity, s.summary,
                    s.ingredients, s.band, s.level)


def test_a_card_keeps_its_first_link(store: DecisionStore) -> None:
    mme, nal = sighting(), sighting(key=NALOXONE)
    store.link_cards([("u1", mme)])
    store.link_cards([("u1", nal), ("u2", nal)])
    store.link_cards([])
    assert store.card("u1") == as_card(mme)
    assert store.card("u2") == as_card(nal)
    assert store.card("nope") is None


def test_a_uuid_twice_in_one_call_keeps_its_first_link(store: DecisionStore) -> None:
    store.link_cards([("u1", sighting()), ("u1", sighting(key=NALOXONE))])
    assert store.card("u1") == as_card(sighting())


def test_known_alerts_come_from_sightings_and_card_links(store: DecisionStore) -> None:
    record(store, [sighting()], ["p1"])
    store.link_cards([("u1", sighting(key=NALOXONE)), ("u2", sighting(pid="p2", key=PDMP))])
    known = store.known_alerts([("p1", MME), ("p1", NALOXONE), ("p2", PDMP), ("p1", PDMP),
                                ("p9", MME)])
    assert set(known) == {("p1", MME), ("p1", NALOXONE), ("p2", PDMP)}
    s = sighting()
    assert known[("p1", MME)] == {
        "rule": s.rule, "pack": s.pack, "family": "mme", "severity": "high", "summary": s.summary,
        "ingredients": "fentanyl+oxycodone", "band": "MME 90+", "level": "150.0"}
    assert known[("p1", NALOXONE)]["band"] == "" and known[("p1", NALOXONE)]["level"] == ""
    assert known[("p2", PDMP)]["rule"] == "opioid-safety/rec09-pdmp-periodic"
    assert store.known_alerts([]) == {}
    # a later run's sighting is what is known
    record(store, [replace(s, severity="critical", summary="worse")], ["p1"])
    assert store.known_alerts([("p1", MME)])[("p1", MME)]["severity"] == "critical"


def test_known_alerts_are_as_last_seen_across_runs_and_cards(store: DecisionStore) -> None:
    record(store, [sighting()], ["p1"])  # the run, then a card on the same alert, worse now
    store.link_cards([("u1", sighting(severity="critical", summary="on the card"))])
    assert store.known_alerts([("p1", MME)])[("p1", MME)]["severity"] == "critical"


# -- CSV import --------------------------------------------------------------------------------

def csv_row(s: Sighting, **decision_columns: str) -> dict[str, str]:
    """A row of the panel's alerts.csv for a sighting, with the decision columns given."""
    row = dict.fromkeys(ALERT_COLUMNS, "")
    row.update(
        patient_id=s.patient_id, rule=s.rule, pack=s.pack, family=s.family, severity=s.severity,
        priority="60", summary=s.summary, rationale=s.rationale,
        medications="oxycodone hydrochloride 10 MG Oral Tablet; 72 HR fentanyl", alert_key=s.alert_key,
        status="new", role=s.role, actions="; ".join(s.actions), prescriber="; ".join(s.prescribers),
        order_ids="; ".join(s.order_ids), mrn=f"MRN-{s.patient_id}", patient_name="Ann",
        birth_date="1960-01-01", ingredients="+".join(s.ingredients), band=s.band or "",
        level="" if s.level is None else f"{s.level:g}")
    row.update(decision_columns)
    return row


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, list(ALERT_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture()
def reviewed(store: DecisionStore) -> DecisionStore:
    """A store that has seen p1's and p2's alerts in a panel run."""
    record(store, [*SIGHTINGS["p1"].values(), *SIGHTINGS["p2"].values()], ["p1", "p2"])
    return store


def test_a_filled_in_file_is_applied_and_sent_back_untouched_changes_nothing(
        reviewed: DecisionStore, tmp_path: Path) -> None:
    p1 = SIGHTINGS["p1"]
    rows = [
        csv_row(p1[MME], decision="overridden", reason="taper-plan", note=" reviewed "),
        csv_row(p1[NALOXONE], decision="Accepted", follow_up="2026-12-15"),
        csv_row(p1[PDMP], decision="snoozed", follow_up="2027-01-10"),
        csv_row(p1[REC07]),  # left empty
        csv_row(p1[PRESCRIBERS], decision="  "),
        csv_row(SIGHTINGS["p2"][MME], decision="referred", referred_to="Dr Pain",
                order_ids="m1; m2", prescriber="Dr A; Dr B"),
    ]
    res = import_csv(reviewed, write_csv(tmp_path / "alerts.csv", rows), author="jane",
                     responses=RESPONSES, now=NOW)
    assert res.rejects == [] and res.unchanged == 2
    assert [(d.patient_id, d.alert_key, d.state, d.version) for d in res.applied] == [
        ("p1", MME, "overridden", 1), ("p1", NALOXONE, "accepted", 1), ("p1", PDMP, "snoozed", 1),
        ("p2", MME, "referred", 1)]
    mme = reviewed.current("p1", MME)
    assert mme == res.applied[0]
    assert (mme.reason_system, mme.reason_code, mme.reason_display, mme.note) == (
        OVERRIDE_REASON_SYSTEM, "taper-plan", "Taper plan in place", "reviewed")
    s = p1[MME]
    assert (mme.author, mme.decided_at, mme.source, mme.pack, mme.rule, mme.family, mme.severity,
            mme.ingredients, mme.band, mme.level) == (
        "jane", NOW, "csv", s.pack, s.rule, "mme", "high", ("fentanyl", "oxycodone"), "MME 90+", 150.0)
    assert reviewed.current("p1", NALOXONE).follow_up == date(2026, 12, 15)  # type: ignore[union-attr]
    pdmp = reviewed.current("p1", PDMP)
    assert pdmp is not None and (pdmp.snooze_until, pdmp.follow_up) == (date(2027, 1, 10), None)
    ref = reviewed.current("p2", MME)
    assert ref is not None and ref.referred_to == "Dr Pain"
    assert ref.order_ids == ("m1", "m2") and ref.prescribers == ("Dr A", "Dr B")
    assert reviewed.current("p1", REC07) is None
    # the round trip: the file as the next run writes it (decision columns filled in) adds nothing
    back = [{**r, "decision_version": "1" if r["decision"].strip() else ""} for r in rows]
    back[1]["decision"] = "accepted"
    again = import_csv(reviewed, write_csv(tmp_path / "again.csv", back), author="bob",
                       responses=RESPONSES, now=NOW + timedelta(days=1))
    assert again.applied == [] and again.rejects == [] and again.unchanged == len(rows)
    assert len(reviewed.history()) == 4


def test_a_stale_decision_version_is_rejected_and_a_current_one_applied(
        reviewed: DecisionStore, tmp_path: Path) -> None:
    p1 = SIGHTINGS["p1"]
    bob = reviewed.decide(decision("acted", key=NALOXONE, author="bob"))
    rows = [csv_row(p1[NALOXONE], decision="overridden", reason="patient-declined"),
            csv_row(p1[MME], decision="accepted", decision_version="1"),
            csv_row(p1[PDMP], decision="accepted", decision_version="x")]
    res = import_csv(reviewed, write_csv(tmp_path / "a.csv", rows), author="jane",
                     responses=RESPONSES, now=NOW)
    assert [(r.line, r.column) for r in res.rejects] == [
        (2, "decision_version"), (3, "decision_version"), (4, "decision_version")]
    assert "decided since this file was written" in res.rejects[0].message
    assert "bob decided acted" in res.rejects[0].message and "version 1" in res.rejects[0].message
    assert "the decision was removed" in res.rejects[1].message
    assert "'x' is not a number" in res.rejects[2].message
    assert res.applied == [] and reviewed.history() == [bob]
    rows[0]["decision_version"] = "1"
    res = import_csv(reviewed, write_csv(tmp_path / "b.csv", rows[:1]), author="jane",
                     responses=RESPONSES, now=NOW)
    assert [(d.state, d.version) for d in res.applied] == [("overridden", 2)]


BAD_ROWS: list[tuple[str, dict[str, str], str, str]] = [
    # (alert, decision columns, column named, words of the message)
    (MME, {"decision": "maybe"}, "decision", "'maybe' is not a decision state"),
    (MME, {"decision": "overridden", "reason": "because"}, "reason",
     "'because' is not a reason this alert offers"),
    (NALOXONE, {"decision": "overridden"}, "reason", "an override needs a reason"),
    (MME, {"decision": "accepted", "follow_up": "2026-13-01"}, "follow_up",
     "'2026-13-01' is not a date (YYYY-MM-DD)"),
    (MME, {"decision": "accepted", "follow_up": "12/01/2026"}, "follow_up", "is not a date"),
    (MME, {"decision": "accepted", "alert_key": "opioid-safety/mme-50@MME50-90"}, "alert_key",
     "is not an alert the store has seen for patient p1"),
    (MME, {"decision": "accepted", "patient_id": "p9"}, "alert_key",
     "is not an alert the store has seen for patient p9"),
    (MME, {"decision": "accepted", "patient_id": ""}, "patient_id", "empty"),
    (MME, {"decision": "snoozed"}, "follow_up", "a snooze needs the date it ends"),
    (NALOXONE, {"decision": "snoozed", "reason": "naloxone-ordered"}, "follow_up",
     "a snooze needs the date it ends"),
    (MME, {"decision": "referred", "role": ""}, "referred_to", "a referral needs who"),
]


def test_every_bad_row_is_named_by_line_and_column_and_nothing_is_applied(
        reviewed: DecisionStore, db_url: str, tmp_path: Path) -> None:
    good = csv_row(SIGHTINGS["p2"][MME], decision="accepted")
    rows = [good, *(csv_row(SIGHTINGS["p1"][key], **cols) for key, cols, _, _ in BAD_ROWS)]
    path = write_csv(tmp_path / "bad.csv", rows)
    res = import_csv(reviewed, path, author="jane", responses=RESPONSES, now=NOW)
    assert res.applied == [] and count(db_url, "decisions") == 0
    assert len(res.rejects) == len(BAD_ROWS)
    for i, (r, (_, _, column, words)) in enumerate(zip(res.rejects, BAD_ROWS, strict=True)):
        line = i + 3  # the header is line 1, the good row line 2
        assert (r.line, r.column) == (line, column), r
        assert words in r.message, r
        assert str(r) == f"line {line}, column {column}: {r.message}"
        assert r.row == rows[i + 1]
    # partial: the good row is applied, the rejects are the same
    part = import_csv(reviewed, path, author="jane", responses=RESPONSES, now=NOW, partial=True)
    assert [(d.patient_id, d.alert_key) for d in part.applied] == [("p2", MME)]
    assert [(r.line, r.column) for r in part.rejects] == [(r.line, r.column) for r in res.rejects]
    assert count(db_url, "decisions") == 1
    # the rejects, written with their reasons, are a file that can be fixed and imported again
    out = tmp_path / "rejects.csv"
    write_rejects(out, part.rejects)
    with out.open(newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == [*ALERT_COLUMNS, "error"]
    assert [b["error"] for b in back] == [str(r) for r in part.rejects]
    assert [{k: v for k, v in b.items() if k != "error"} for b in back] == rows[1:]


def test_a_file_without_the_decision_columns_is_not_a_worklist(reviewed: DecisionStore,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("patient_id,alert_key\np1,x\n", encoding="utf-8")
    with pytest.raises(InputError, match="no column decision"):
        import_csv(reviewed, path, author="jane", responses=RESPONSES)


def test_a_snooze_reason_of_the_rule_sets_the_end_date(reviewed: DecisionStore,
                                                       tmp_path: Path) -> None:
    p1 = SIGHTINGS["p1"]
    own: Responses = lambda rule: ([("recheck-in-two-weeks", "Recheck in two weeks", 14)]  # noqa: E731
                                   if rule == "opioid-safety/mme-90" else RESPONSES(rule))
    rows = [csv_row(p1[NALOXONE], decision="snoozed", reason="risk-mitigation-snooze-3-months"),
            csv_row(p1[MME], decision="snoozed", reason="recheck-in-two-weeks"),
            csv_row(p1[PDMP], decision="snoozed", reason="pdmp-reviewed-snooze-3-months",
                    follow_up="2027-02-01")]  # a date given wins over the snooze's days
    res = import_csv(reviewed, write_csv(tmp_path / "s.csv", rows), author="jane",
                     responses=own, now=NOW)
    assert res.rejects == []
    assert [(d.snooze_until, d.follow_up, d.reason_code) for d in res.applied] == [
        (NOW.date() + timedelta(days=90), None, "risk-mitigation-snooze-3-months"),
        (NOW.date() + timedelta(days=14), None, "recheck-in-two-weeks"),
        (date(2027, 2, 1), None, "pdmp-reviewed-snooze-3-months")]
    assert res.applied[1].reason_display == "Recheck in two weeks"
    # without the rule's responses, the reason is not one the alert offers
    res = import_csv(reviewed, write_csv(tmp_path / "t.csv", rows[1:2]), author="jane",
                     responses=responses_of([]), now=NOW)
    assert [(r.line, r.column) for r in res.rejects] == [(2, "reason")]


def test_a_referral_without_whom_goes_to_the_alerts_role(reviewed: DecisionStore,
                                                         tmp_path: Path) -> None:
    p1 = SIGHTINGS["p1"]
    assert p1[MME].role == "pain-specialist"
    res = import_csv(reviewed, write_csv(tmp_path / "r.csv", [csv_row(p1[MME], decision="referred")]),
                     author="jane", responses=RESPONSES, now=NOW)
    assert [(d.state, d.referred_to) for d in res.applied] == [("referred", "pain-specialist")]


def test_cells_with_stray_spaces_are_read_as_trimmed(reviewed: DecisionStore,
                                                     tmp_path: Path) -> None:
    row = csv_row(SIGHTINGS["p1"][MME], decision="accepted")
    row.update(patient_id=" p1", alert_key=MME + " ")
    res = import_csv(reviewed, write_csv(tmp_path / "w.csv", [row]), author="jane",
                     responses=RESPONSES, now=NOW)
    assert res.rejects == [] and [d.alert_key for d in res.applied] == [MME]


def test_one_alert_twice_in_a_file_is_a_reject_or_one_decision(reviewed: DecisionStore,
                                                                tmp_path: Path) -> None:
    s = SIGHTINGS["p1"][MME]  # two orders of one drug: two rows, one alert key
    rows = [csv_row(s, decision="accepted"), csv_row(s, decision="accepted")]
    res = import_csv(reviewed, write_csv(tmp_path / "d.csv", rows), author="jane",
                     responses=RESPONSES, now=NOW, partial=True)
    assert len(reviewed.history()) == 1
    assert all(isinstance(r, Reject) and r.line == 3 for r in res.rejects)


# -- CDS Hooks feedback ------------------------------------------------------------------------

def feedback(outcome: str, code: str | None, key: str = NALOXONE,
             responses: Responses = RESPONSES) -> Decision:
    return from_feedback(SIGHTINGS["p1"][key], outcome=outcome, reason_system=OVERRIDE_REASON_SYSTEM,
                         reason_code=code, reason_display=code and code.title(),
                         comment="seen in clinic", at=NOW, author="dr-who", responses=responses)


def test_feedback_accepted_is_acted() -> None:
    s = SIGHTINGS["p1"][NALOXONE]
    d = feedback("accepted", None)
    assert (d.state, d.snooze_until, d.author, d.decided_at, d.source) == (
        "acted", None, "dr-who", NOW, "service")
    assert (d.patient_id, d.alert_key, d.pack, d.rule, d.family, d.severity, d.summary,
            d.ingredients, d.band, d.level) == (
        s.patient_id, s.alert_key, s.pack, s.rule, s.family, s.severity, s.summary,
        s.ingredients, s.band, s.level)
    # accepting with a snooze's code is still acted
    assert feedback("accepted", "risk-mitigation-snooze-3-months").state == "acted"


def test_feedback_overridden_with_a_snooze_of_the_rule_is_snoozed_for_its_days() -> None:
    d = feedback("overridden", "risk-mitigation-snooze-3-months")
    assert (d.state, d.snooze_until) == ("snoozed", NOW.date() + timedelta(days=90))
    assert d.reason_code == "risk-mitigation-snooze-3-months" and d.note == "seen in clinic"
    # the same code on a rule that does not offer it is a plain override
    other = feedback("overridden", "risk-mitigation-snooze-3-months", key=MME)
    assert (other.state, other.snooze_until) == ("overridden", None)
    no_rules = feedback("overridden", "risk-mitigation-snooze-3-months", responses=responses_of([]))
    assert no_rules.state == "overridden"


def test_feedback_overridden_otherwise_is_overridden_with_its_reason_and_comment() -> None:
    for code in ("patient-declined", "naloxone-ordered", None):
        d = feedback("overridden", code)
        assert (d.state, d.snooze_until, d.reason_system, d.reason_code, d.note) == (
            "overridden", None, OVERRIDE_REASON_SYSTEM, code, "seen in clinic")
        assert d.reason_display == (code and code.title())


def test_feedback_decisions_are_stored_like_any_other(store: DecisionStore) -> None:
    d = store.decide(feedback("overridden", "risk-mitigation-snooze-3-months"), 0)
    assert store.current("p1", NALOXONE) == d and d.version == 1
