"""Child-Pugh score and class from bilirubin, albumin, INR, ascites and encephalopathy: every
boundary of the reference table (Pugh 1973) and the class edges A/B/C."""

from __future__ import annotations

from typing import Any

import pytest

from cds.knowledge.hepatic import SOURCE, child_pugh


def test_source_is_named() -> None:
    assert "Pugh" in SOURCE


# --- Child-Pugh --------------------------------------------------------------------------

def points(**kw: Any) -> dict[str, int]:
    args: dict[str, Any] = dict(bilirubin=1.0, albumin=4.0, inr=1.0, ascites="none",
                                encephalopathy="none")
    args.update(kw)
    return dict(child_pugh(**args).points)


@pytest.mark.parametrize(("value", "expected"), [(1.99, 1), (2.0, 2), (3.0, 2), (3.01, 3)])
def test_bilirubin_points(value: float, expected: int) -> None:
    assert points(bilirubin=value)["bilirubin"] == expected


@pytest.mark.parametrize(("value", "expected"), [(3.6, 1), (3.5, 2), (2.8, 2), (2.79, 3)])
def test_albumin_points(value: float, expected: int) -> None:
    assert points(albumin=value)["albumin"] == expected


@pytest.mark.parametrize(("value", "expected"), [(1.69, 1), (1.7, 2), (2.3, 2), (2.31, 3)])
def test_inr_points(value: float, expected: int) -> None:
    assert points(inr=value)["INR"] == expected


@pytest.mark.parametrize(("grade", "expected"), [("none", 1), ("mild", 2), ("moderate-severe", 3)])
def test_ascites_points(grade: str, expected: int) -> None:
    assert points(ascites=grade)["ascites"] == expected


@pytest.mark.parametrize(("grade", "expected"), [("none", 1), ("grade 1-2", 2), ("grade 3-4", 3)])
def test_encephalopathy_points(grade: str, expected: int) -> None:
    assert points(encephalopathy=grade)["encephalopathy"] == expected


@pytest.mark.parametrize(("kw", "score", "cls"), [
    (dict(bilirubin=1, albumin=4, inr=1, ascites="none", encephalopathy="none"), 5, "A"),
    (dict(bilirubin=2, albumin=4, inr=1, ascites="none", encephalopathy="none"), 6, "A"),
    (dict(bilirubin=2, albumin=3, inr=1, ascites="none", encephalopathy="none"), 7, "B"),
    (dict(bilirubin=2, albumin=3, inr=2, ascites="mild", encephalopathy="none"), 9, "B"),
    (dict(bilirubin=2, albumin=3, inr=2, ascites="mild", encephalopathy="grade 1-2"), 10, "C"),
    (dict(bilirubin=4, albumin=2, inr=3, ascites="moderate-severe",
          encephalopathy="grade 3-4"), 15, "C"),
])
def test_child_pugh_class_edges(kw: dict[str, Any], score: int, cls: str) -> None:
    r = child_pugh(**kw)
    assert (r.score, r.cls) == (score, cls)
    assert sum(p for _, p in r.points) == score
