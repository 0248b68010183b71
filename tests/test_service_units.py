"""Service pieces without a server: configuration, replay cache, feedback parsing and store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cds.service.auth import ReplayCache
from cds.service.config import ConfigError, load_settings
from cds.service.feedback import FeedbackError, FeedbackStore, IssuedCard, parse_feedback
from cds.service.prefetch import PrefetchError, fill, templates


def test_config_refuses_symmetric_and_none(tmp_path: Path) -> None:
    for alg in ("HS256", "none"):
        path = tmp_path / "c.yaml"
        path.write_text(f"algorithms: [ES384, {alg}]\n")
        with pytest.raises(ConfigError, match="algorithms"):
            load_settings(path)


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("issuers: [{iss: https://ehr}]\nmax_body_bytes: 10\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert "issuers.0" in str(e.value) and "max_body_bytes" in str(e.value)
    path.write_text("nonsense_key: 1\n")
    with pytest.raises(ConfigError, match="nonsense_key"):
        load_settings(path)


def test_config_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("feedback_db: fb.sqlite3\nissuers: [{iss: x, jwks_file: k.json}]\n")
    s = load_settings(path)
    assert s.feedback_db == tmp_path / "fb.sqlite3"
    assert s.issuers[0].jwks_file == tmp_path / "k.json"


def test_replay_cache() -> None:
    cache = ReplayCache()
    assert cache.add("iss|a", expires=100, now=10)
    assert not cache.add("iss|a", expires=100, now=20)
    assert cache.add("iss|b", expires=100, now=20)
    assert cache.add("iss|a", expires=200, now=150)  # expired entries are forgotten
    assert len(cache) == 1


def test_prefetch_tokens() -> None:
    t = templates(180, date(2026, 11, 26))
    assert fill(t["patient"], {"patientId": "a b/c"}) == "Patient/a%20b%2Fc"
    with pytest.raises(PrefetchError):
        fill(t["patient"], {})


def test_feedback_parse_and_store(tmp_path: Path) -> None:
    outcomes = parse_feedback({"feedback": [
        {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00+01:00",
         "overrideReason": {"reason": {"system": "s", "code": "patient-monitored"},
                            "userComment": "free text"}},
        {"card": "c2", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
         "outcomeTimestamp": "2026-11-26T10:00:00Z"}]}, keep_comments=False)
    assert outcomes[0].timestamp == "2026-11-26T09:00:00Z"
    assert outcomes[0].user_comment is None and outcomes[0].reason_code == "patient-monitored"
    with pytest.raises(FeedbackError) as e:
        parse_feedback({"feedback": [{"card": "c", "outcome": "accepted",
                                      "overrideReason": {"userComment": "x"},
                                      "acceptedSuggestions": [{"id": "s"}],
                                      "outcomeTimestamp": "2026-11-26T10:00:00Z"}]})
    assert e.value.field == "feedback[0].overrideReason"
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    try:
        store.issued([IssuedCard("c1", "order-sign", "h", "p/r", "p@1", "d", "interaction",
                                 "high", "warning", False, {}, "2026-11-26T10:00:00Z")])
        assert store.record("order-sign", outcomes) == outcomes  # both new
        assert store.record("order-sign", outcomes) == []  # the same again: stored once
        rows = {r["rule"]: r for r in store.burden()}
        assert rows["p/r"]["issued"] == 1 and rows["p/r"]["overridden"] == 1
        assert rows["p/r"]["override_reasons"] == {"patient-monitored": 1}
        assert rows[None]["accepted"] == 1  # feedback for a card this store never issued
    finally:
        store.close()
    reopened = FeedbackStore(tmp_path / "fb.sqlite3")  # durable
    try:
        assert reopened.count("feedback") == 2 and reopened.count("cards") == 1
    finally:
        reopened.close()


def test_conditions_prefetch_reaches_the_patient() -> None:
    from cds.service.assemble import assemble

    condition = {"resourceType": "Condition", "id": "c1",
                 "subject": {"reference": "Patient/p1"},
                 "clinicalStatus": {"coding": [{"code": "active"}]},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                      "code": "F11.20"}], "text": "Opioid use disorder"}}
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition}]}
    got = assemble("p1", {"patient": {"resourceType": "Patient", "id": "p1"},
                          "conditions": bundle}, {}, with_drafts=False)
    assert [(c.code, c.text) for c in got.patient.conditions] == [("F11.20", "Opioid use disorder")]
    assert "conditions" in templates(180, date(2026, 11, 26))


def test_the_server_keeps_its_allocator_steady_unless_the_operator_tuned_it() -> None:
    """glibc's mallopt is applied in a fresh process (the soak test showed resident memory
    ratcheting up without it); an operator's own MALLOC_* setting is left alone."""
    import os
    import subprocess
    import sys

    code = "from cds.service.server import steady_allocator; print(steady_allocator())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    tuned = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert (fresh, tuned) == ("True" if sys.platform == "linux" else "False", "False")
