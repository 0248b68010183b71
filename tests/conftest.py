"""Shared fixtures: the bundled knowledge base, loaded once; a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds.knowledge.store import Knowledge, default_knowledge


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return default_knowledge()


# -- PostgreSQL: a real server for the decisions store's tests ---------------------------------

@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server: $CDS_TEST_POSTGRES (.ci/run starts one), else a
    throwaway cluster started here with .ci/postgres when PostgreSQL is installed."""
    url = os.environ.get("CDS_TEST_POSTGRES")
    if url:
        yield url
        return
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="cds-pg-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).resolve().parent.parent / ".ci" / "postgres"
    started = subprocess.run([str(script), "start", str(folder), str(port)],
                             capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"could not start PostgreSQL: {started.stderr}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", str(folder)], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the server for one test."""
    import psycopg

    name = f"cds_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The decisions store's tests run against both databases."""
    if request.param == "sqlite":
        return str(tmp_path / "decisions.sqlite3")
    return str(request.getfixturevalue("postgres_url"))
