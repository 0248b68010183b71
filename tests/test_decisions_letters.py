"""Per-prescriber recommendation letters (cds.decisions.letters): what is shared, to whom, in
which order, and that a letter is safe to open and print whatever the text it carries."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.decisions.letters import (
    INDEX_FILE,
    SHARED_STATES,
    UNKNOWN_FILE,
    UNKNOWN_PRESCRIBER,
    LetterItem,
    PatientRef,
    letters,
    prescriber_slug,
    write_letters,
)
from cds.decisions.model import STATES, Decision, Sighting
from cds.vocabulary import SEVERITIES

AS_OF = date(2026, 3, 4)
T0 = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
FILE_NAME = re.compile(r"[a-z0-9-]+\.html")
HOSTILE = '<script>alert("x")</script>'


def item(prescriber: str | None = "Dr Ann Lee", patient: str = "p1", key: str = "k1", *,
         severity: str = "high", state: str = "accepted", name: str | None = None,
         mrn: str | None = None, summary: str | None = None, rationale: str = "Because.",
         actions: tuple[str, ...] = ("Reduce the dose.",), note: str | None = None,
         follow_up: date | None = None, author: str = "pharmacist.kim", version: int = 1,
         decided_at: datetime = T0) -> LetterItem:
    sighting = Sighting(patient_id=patient, alert_key=key, rule=f"rule.{key}", pack="pack@1.0.0",
                        family="interaction", severity=severity,
                        summary=summary if summary is not None else f"summary {key}",
                        rationale=rationale, actions=actions, ingredients=("warfarin",),
                        order_ids=(f"o-{key}",), prescribers=(prescriber or "",))
    decision = Decision(patient_id=patient, alert_key=key, state=state, author=author,
                        decided_at=decided_at, version=version, note=note, follow_up=follow_up,
                        referred_to="prescriber" if state == "referred" else None)
    return LetterItem(prescriber, PatientRef(patient, mrn=mrn, name=name), sighting, decision)


class Outline(HTMLParser):
    """The parts of a letter the tests look at: per patient section, its heading and, per
    recommendation, the text of each classed part; plus every element's tag and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.patients: list[dict[str, object]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}  # class -> text of each element with that class
        self._stack: list[tuple[str, str | None]] = []  # (tag, class it collects text for)
        self._open: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        classes = (a.get("class") or "").split()
        if tag == "section" and "patient" in classes:
            self.patients.append({"heading": "", "recs": []})
        if tag == "article" and "rec" in classes:
            recs = self.patients[-1]["recs"]
            assert isinstance(recs, list)
            recs.append({"class": classes})
        part = next((c for c in classes if c in {"summary", "rationale", "actions", "note",
                                                   "follow-up", "author", "pid", "to"}), None)
        if tag == "h2" and self.patients:
            part = "heading"
        if tag in {"meta", "br"}:  # void elements never get an end tag
            return
        self._stack.append((tag, part))
        if part:
            self._open.append([])

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            t, part = self._stack.pop()
            if part:
                text = "".join(self._open.pop())
                self.texts.setdefault(part, []).append(text)
                if part == "heading":
                    self.patients[-1]["heading"] = text
                elif self.patients and self.patients[-1]["recs"] and part in {
                        "summary", "rationale", "actions", "note", "follow-up", "author"}:
                    recs = self.patients[-1]["recs"]
                    assert isinstance(recs, list)
                    recs[-1][part] = text
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for chunk in self._open:
            chunk.append(data)


def outline(html: str) -> Outline:
    o = Outline()
    o.feed(html)
    o.close()
    return o


# -- what goes to whom ------------------------------------------------------------------------

def test_one_letter_per_prescriber_with_only_their_patients() -> None:
    out = letters([item("Dr Ann Lee", "p1", "k1"), item("Dr Ann Lee", "p2", "k2"),
                   item("Dr Bo Chen", "p3", "k3")], pharmacy="Main Street Pharmacy", as_of=AS_OF)
    assert set(out) == {"dr-ann-lee.html", "dr-bo-chen.html"}
    lee, chen = outline(out["dr-ann-lee.html"]), outline(out["dr-bo-chen.html"])
    assert [p["heading"] for p in lee.patients] == ["Patient p1", "Patient p2"]
    assert [p["heading"] for p in chen.patients] == ["Patient p3"]
    assert lee.texts["to"] == ["Dr Ann Lee"]
    assert "Main Street Pharmacy" in out["dr-bo-chen.html"]
    assert "pharmacist.kim" in out["dr-bo-chen.html"]
    assert "During a medication-safety review of your patients on 4 March 2026" in out["dr-ann-lee.html"]


def test_only_accepted_and_referred_decisions_are_shared() -> None:
    items = [item(key=f"k-{state}", state=state) for state in STATES]
    html = letters(items, as_of=AS_OF)["dr-ann-lee.html"]
    shown = outline(html).texts["summary"]
    assert sorted(shown) == sorted(f"summary k-{s}" for s in SHARED_STATES)
    assert "referred for your decision" in html
    assert letters([item(state=s) for s in STATES if s not in SHARED_STATES], as_of=AS_OF) == {}


def test_a_later_decision_supersedes_an_accepted_one() -> None:
    accepted = item(state="accepted", version=1)
    acted = item(state="acted", version=2, decided_at=T0 + timedelta(days=1))
    assert letters([acted, accepted], as_of=AS_OF) == {}
    reopened = item(state="accepted", version=3, note="dose still too high",
                    decided_at=T0 + timedelta(days=2))
    html = letters([accepted, reopened, acted], as_of=AS_OF)["dr-ann-lee.html"]
    assert outline(html).texts["note"] == ["dose still too high"]


def test_unknown_prescribers_share_one_letter_that_says_so() -> None:
    out = letters([item(None, "p1", "k1"), item("", "p2", "k2"), item("   ", "p3", "k3"),
                   item("Dr Ann Lee", "p4", "k4")], as_of=AS_OF)
    assert set(out) == {UNKNOWN_FILE, "dr-ann-lee.html"}
    html = out[UNKNOWN_FILE]
    o = outline(html)
    assert o.texts["to"] == [UNKNOWN_PRESCRIBER]
    assert len(o.patients) == 3
    assert "carry no prescriber" in html
    assert "Patient p4" not in html


# -- order ------------------------------------------------------------------------------------

def test_recommendations_by_severity_within_patients_sorted_by_name() -> None:
    items = [item(patient="p1", key="a", severity="low", name="Zoe Young"),
             item(patient="p1", key="b", severity="critical", name="Zoe Young"),
             item(patient="p1", key="c", severity="moderate", name="Zoe Young"),
             item(patient="p2", key="d", severity="info", name="adam Brown"),
             item(patient="p2", key="e", severity="high", name="adam Brown"),
             item(patient="p3", key="f", severity="critical")]  # no name: sorted by its id
    o = outline(letters(items, as_of=AS_OF)["dr-ann-lee.html"])
    assert [p["heading"] for p in o.patients] == ["adam Brown", "Patient p3", "Zoe Young"]
    recs = [[r["summary"] for r in p["recs"]] for p in o.patients]  # type: ignore[attr-defined]
    assert recs == [["summary e", "summary d"], ["summary f"], ["summary b", "summary c", "summary a"]]


def test_an_unknown_severity_comes_last() -> None:
    items = [item(key="a", severity="unheard-of"), item(key="b", severity="info")]
    o = outline(letters(items, as_of=AS_OF)["dr-ann-lee.html"])
    assert o.texts["summary"] == ["summary b", "summary a"]


# -- structure --------------------------------------------------------------------------------

def test_letter_structure_one_section_per_patient_and_complete_recommendations() -> None:
    items = [item(patient="p1", key="k1", name="Ann Ames", mrn="MRN-1", note="Call me.",
                  follow_up=date(2026, 4, 1)),
             item(patient="p1", key="k2", severity="critical", actions=()),
             item(patient="p2", key="k3", rationale="", actions=("Stop A.", "Start B."))]
    html = letters(items, as_of=AS_OF)["dr-ann-lee.html"]
    o = outline(html)
    assert [p["heading"] for p in o.patients] == ["Ann Ames", "Patient p2"]
    assert [len(p["recs"]) for p in o.patients] == [2, 1]  # type: ignore[arg-type]
    for p in o.patients:
        for rec in p["recs"]:  # type: ignore[attr-defined]
            assert rec["summary"] and rec["rationale"].strip() and rec["actions"].strip()
            assert rec["author"] == "pharmacist.kim"
    first = o.patients[0]["recs"][0]  # type: ignore[index]
    assert first["summary"] == "summary k2"
    assert "No specific action listed" in first["actions"]
    assert o.patients[1]["recs"][0]["rationale"] == "No rationale recorded."  # type: ignore[index]
    assert o.texts["note"] == ["Call me."]
    assert o.texts["follow-up"] == ["1 April 2026"]  # only the one decision that set it
    assert "MRN-1" in html and "rule.k1" in html and "pack@1.0.0" in html
    assert "@media print" in html and "break-inside" in html
    # self-contained: nothing fetched
    assert not [a for _, attrs in o.tags for k, a in attrs.items() if k in {"src", "href"}]


# -- escaping ---------------------------------------------------------------------------------

def test_hostile_text_is_escaped_everywhere() -> None:
    bad = item(HOSTILE, "p1", "k1", name=HOSTILE, mrn=HOSTILE, summary=HOSTILE, rationale=HOSTILE,
               actions=(HOSTILE,), note=HOSTILE, author=HOSTILE)
    out = letters([bad, item(None, "p2", "k2", note=HOSTILE)], pharmacy=HOSTILE, as_of=AS_OF)
    assert set(out) == {"script-alert-x-script.html", UNKNOWN_FILE}
    for html in out.values():
        assert "<script" not in html.lower()
        assert "&lt;script&gt;" in html
    o = outline(out["script-alert-x-script.html"])
    assert o.texts["note"] == [HOSTILE] and o.texts["summary"] == [HOSTILE]
    assert o.texts["to"] == [HOSTILE]


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_any_note_and_summary_come_back_as_written(note: str, summary: str) -> None:
    """Escaping is right exactly when a parser reads back the text that went in."""
    out = letters([item(note=note, summary=summary)], as_of=AS_OF)
    o = outline(out["dr-ann-lee.html"])
    assert o.texts["note"] == [note]
    assert o.texts["summary"] == [summary]
    assert [t for t, _ in o.tags].count("script") == 0


# -- file names -------------------------------------------------------------------------------

def test_slug() -> None:
    assert prescriber_slug("Dr. José Müller-Lüdenscheidt") == "dr-jose-muller-ludenscheidt"
    assert prescriber_slug("李明") == "prescriber"
    assert len(prescriber_slug("x" * 500)) == 60


def test_colliding_slugs_get_distinct_stable_names() -> None:
    names = ["Dr. Ann Lee", "dr ann lee", "DR ANN-LEE", "Dr Bo Chen", "Index", "Prescriber not recorded"]
    out = letters([item(n, f"p{i}", "k") for i, n in enumerate(names)] + [item(None, "px", "k")],
                  as_of=AS_OF)
    assert len(out) == len(names) + 1
    assert all(FILE_NAME.fullmatch(f) for f in out)
    assert "dr-bo-chen.html" in out and INDEX_FILE not in out
    lee = sorted(f for f in out if f.startswith("dr-ann-lee-"))
    assert len(lee) == 3
    # a prescriber's file name is a function of their own name, not of who else is in the run
    alone = letters([item("dr ann lee", "p1", "k"), item("Dr. Ann Lee", "p0", "k")], as_of=AS_OF)
    assert set(alone) <= set(out)
    assert outline(out[UNKNOWN_FILE]).texts["to"] == [UNKNOWN_PRESCRIBER]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=8))
def test_every_prescriber_gets_a_distinct_safe_file(names: list[str]) -> None:
    out = letters([item(n, f"p{i}", "k") for i, n in enumerate(names)], as_of=AS_OF)
    distinct = {n.strip() for n in names}
    assert len(out) == len(distinct - {""}) + ("" in distinct)
    assert all(FILE_NAME.fullmatch(f) and f != INDEX_FILE for f in out)


# -- determinism ------------------------------------------------------------------------------

_items = st.builds(
    lambda pres, pid, key, sev, state, note, ver: item(pres, pid, key, severity=sev, state=state,
                                                       note=note, version=ver, name=f"Name {pid}"),
    # few values, so the same alert often comes twice (same or another version): the latest
    # decision must win, and a tie must not be settled by input order
    st.sampled_from(["Dr A", "dr a", "", None]), st.sampled_from(["p1", "p2"]),
    st.sampled_from(["k1", "k2"]), st.sampled_from(SEVERITIES), st.sampled_from(STATES),
    st.none() | st.sampled_from(["note", "<b>"]), st.integers(1, 2))


@settings(max_examples=80, deadline=None)
@given(st.lists(_items, max_size=12), st.randoms(use_true_random=False))
def test_same_items_same_letters_whatever_their_order(items: list[LetterItem], rnd: random.Random) -> None:
    first = letters(items, pharmacy="Pharmacy", as_of=AS_OF)
    assert letters(items, pharmacy="Pharmacy", as_of=AS_OF) == first
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert letters(shuffled, pharmacy="Pharmacy", as_of=AS_OF) == first


# -- refusing to guess ------------------------------------------------------------------------

def test_an_item_mixing_patients_or_alerts_is_refused() -> None:
    good = item()
    with pytest.raises(ValueError, match="mixes patients"):
        letters([replace(good, patient=PatientRef("p9"))], as_of=AS_OF)
    with pytest.raises(ValueError, match="mixes alerts"):
        letters([replace(good, decision=replace(good.decision, alert_key="other"))], as_of=AS_OF)


def test_one_patient_with_two_charts_is_refused_and_partial_refs_merge() -> None:
    with pytest.raises(ValueError, match="two different MRNs"):
        letters([item("Dr A", key="k1", mrn="1"), item("Dr B", key="k2", mrn="2")], as_of=AS_OF)
    html = letters([item(key="k1", mrn="M1"), item(key="k2", name="Ann Ames")], as_of=AS_OF)
    o = outline(html["dr-ann-lee.html"])
    assert [p["heading"] for p in o.patients] == ["Ann Ames"] and "M1" in html["dr-ann-lee.html"]


# -- files ------------------------------------------------------------------------------------

def test_write_letters_writes_each_letter_and_an_index(tmp_path: Path) -> None:
    items = [item("Dr Ann Lee", "p1", "k1"), item("Dr Ann Lee", "p2", "k2"), item(None, "p3", "k3")]
    out = tmp_path / "letters"
    paths = write_letters(items, out, pharmacy="Main Street Pharmacy", as_of=AS_OF)
    assert [p.name for p in paths] == ["dr-ann-lee.html", UNKNOWN_FILE, INDEX_FILE]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temporaries
    assert paths[0].read_text(encoding="utf-8") == letters(items, pharmacy="Main Street Pharmacy",
                                                           as_of=AS_OF)["dr-ann-lee.html"]
    index = paths[-1].read_text(encoding="utf-8")
    o = outline(index)
    assert [a["href"] for t, a in o.tags if t == "a"] == ["dr-ann-lee.html", UNKNOWN_FILE]
    assert re.search(r"Dr Ann Lee</a></td>\s*<td class=\"num\">2</td><td class=\"num\">2</td>", index)
    assert write_letters(items, out, pharmacy="Main Street Pharmacy", as_of=AS_OF) == paths  # rerun


def test_a_rerun_removes_its_stale_letters_and_nothing_else(tmp_path: Path) -> None:
    """Dr Ann Lee's recommendation was acted on since the last run: her old letter must not
    stay in the folder to be sent; a file the pharmacist put there stays."""
    out = tmp_path / "letters"
    first = write_letters([item("Dr Ann Lee", "p1", "k1"), item("Dr Bo Chen", "p2", "k2")], out,
                          as_of=AS_OF)
    assert [p.name for p in first] == ["dr-ann-lee.html", "dr-bo-chen.html", INDEX_FILE]
    (out / "cover-note.html").write_text("<p>Dear colleagues</p>", encoding="utf-8")
    second = write_letters([item("Dr Bo Chen", "p2", "k2"),
                            item("Dr Ann Lee", "p1", "k1", state="acted")], out, as_of=AS_OF)
    assert [p.name for p in second] == ["dr-bo-chen.html", INDEX_FILE]
    assert sorted(p.name for p in out.iterdir()) == ["cover-note.html", "dr-bo-chen.html",
                                                     INDEX_FILE]


def test_nothing_to_share_writes_only_the_index(tmp_path: Path) -> None:
    paths = write_letters([item(state="open"), item(key="k2", state="overridden")], tmp_path, as_of=AS_OF)
    assert paths == [tmp_path / INDEX_FILE]
    assert [p.name for p in tmp_path.iterdir()] == [INDEX_FILE]
    assert "Nothing to share" in paths[0].read_text(encoding="utf-8")
