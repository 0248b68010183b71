"""Shared fixtures: the bundled knowledge base, loaded once."""

from __future__ import annotations

import pytest

from cds.knowledge.store import Knowledge, default_knowledge


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return default_knowledge()
