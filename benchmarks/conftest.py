"""Shared fixtures of the benchmarks, and a short summary of the ratios at the end of a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import generate` from any benchmark module

_SUMMARY: list[str] = []


@pytest.fixture(scope="session")
def bench_kb() -> Any:
    from cds.knowledge.store import default_knowledge

    return default_knowledge()


@pytest.fixture(scope="session")
def bench_packs(bench_kb: Any) -> list[Any]:
    """Every shipped pack, newest version (what `cds check` uses by default)."""
    from cds.rules.registry import load_packs

    return load_packs(bench_kb)


@pytest.fixture(scope="session")
def summary() -> list[str]:
    """Lines for the end-of-run summary (one per reported ratio)."""
    return _SUMMARY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARY:
        terminalreporter.section("engine benchmark ratios (same run)")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
