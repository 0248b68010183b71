"""`cds serve`: the CDS Hooks service under uvicorn."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from cds.errors import PackErrors

log = logging.getLogger("cds.service")

UNSIGNED_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  --allow-unsigned: requests WITHOUT a JWT are ACCEPTED.                    !!
!!  Anyone who can reach this port can send patient data and read decisions.  !!
!!  DEVELOPMENT ONLY. Never run this way with real patients.                  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


#: How `cds serve` tells its worker processes what to serve (they are started afresh).
_ENV_CONFIG = "CDS_SERVE_CONFIG"
_ENV_UNSIGNED = "CDS_SERVE_ALLOW_UNSIGNED"
_ENV_HOST = "CDS_SERVE_HOST"
_ENV_PORT = "CDS_SERVE_PORT"
_ENV_LOG = "CDS_SERVE_LOG"


def _logging(level: str = "INFO", fmt: str = "json") -> None:
    """cds.service lines (and uvicorn's own) on stderr: JSON objects (observe.JsonFormatter:
    only its named fields, never patient data) or plain text."""
    from cds.service.observe import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("cds", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


def _multiprocess_metrics() -> None:
    """Several workers: each writes its metric values to files in PROMETHEUS_MULTIPROC_DIR
    (a fresh temporary folder unless set) and /metrics adds up every worker's. Must run
    before the workers start (prometheus_client reads it at import)."""
    from cds.service.observe import MULTIPROC_ENV

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for old in Path(folder).glob("*.db"):  # a previous run's counts: not this service's
            old.unlink()
    else:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="cds-metrics-")


def steady_allocator() -> bool:
    """Keep a long-running server's resident memory from ratcheting up (glibc only).

    Request bodies and results are large and short-lived (a 5 MB body, a 290-medication
    worst case). glibc raises its mmap threshold after each large free, so later large
    buffers come from the heap and stay there, and each thread of the pool gets an arena of
    its own: resident memory creeps up to the worst moment seen and is never returned. A
    fixed threshold (large buffers mapped and unmapped) and two arenas keep it flat. An
    operator's own MALLOC_* settings win. True when applied."""
    if any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False  # not glibc (musl, macOS): nothing to tune
    m_mmap_threshold, m_arena_max = -3, -8
    return bool(libc.mallopt(m_mmap_threshold, 128 * 1024)) and bool(libc.mallopt(m_arena_max, 2))


def worker_app() -> Any:
    """The app of one worker process of `cds serve --workers N` (a uvicorn factory)."""
    from cds.service.app import create_app

    steady_allocator()
    level, fmt = os.environ.get(_ENV_LOG, "INFO:json").split(":", 1)
    _logging(level, fmt)
    config = os.environ.get(_ENV_CONFIG) or None
    return create_app(config_path=config, allow_unsigned=os.environ.get(_ENV_UNSIGNED) == "1",
                      host=os.environ.get(_ENV_HOST, "127.0.0.1"),
                      port=int(os.environ.get(_ENV_PORT, "8080")), reload_on_sighup=False)


def run(host: str = "127.0.0.1", port: int = 8080, allow_unsigned: bool = False,
        config: Path | str | None = None, *, log_level: str = "info", workers: int = 1) -> None:
    """Serve until interrupted. Exits with a one-line message on a bad config or pack.

    workers > 1: that many uvicorn worker processes on one socket, each with its own engine
    and all sharing one store (feedback_db: an SQLite file on this host, or PostgreSQL).
    SIGHUP to this process replaces the workers one by one (each new one loads the packs
    before the old one stops); POST /admin/reload to any worker does the same."""
    import uvicorn

    from cds.service.app import WORKERS_ENV, create_app

    steady_allocator()
    from cds.service.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    _logging(log_level.upper(), settings.log_format)
    if workers < 1:
        print("error: --workers must be 1 or more", file=sys.stderr)
        raise SystemExit(2)
    from cds.service.observe import MULTIPROC_ENV

    if workers > 1 or os.environ.get(MULTIPROC_ENV):
        _multiprocess_metrics()
    try:
        unsigned = allow_unsigned or settings.allow_unsigned
        # built here also with several workers: a bad pack or store fails now, in one line,
        # and the store's tables exist before the workers open it
        app = create_app(settings, config_path=config, allow_unsigned=unsigned, host=host,
                         port=port, reload_on_sighup=workers == 1)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except PackErrors as e:
        print("error: rule packs failed to load:\n" + "\n".join(f"  {x}" for x in e.errors),
              file=sys.stderr)
        raise SystemExit(2) from None
    if unsigned:
        print(UNSIGNED_BANNER, file=sys.stderr, flush=True)
        log.warning("--allow-unsigned: unsigned requests are accepted (development only)")
    elif not settings.issuers:
        log.warning("no trusted issuers configured: every hook call will be refused (401)")
    if not settings.admin_secret():
        log.warning("no admin_token (or CDS_ADMIN_TOKEN): /admin/* is disabled")
    state = app.app.state.cds
    log.info("CDS Hooks service at %s/cds-services, packs: %s; store: %s; %d worker%s",
             state.base_url, ", ".join(state.holder.get().pack_refs),
             settings.feedback_location(), workers, "" if workers == 1 else "s")
    # access_log off: uvicorn's access lines are replaced by cds.service lines that never
    # carry query strings or bodies (observe.py)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                    server_header=False)
        return
    state.feedback.close()
    if state.decisions is not None:
        state.decisions.close()
    os.environ.update({
        _ENV_CONFIG: str(Path(config).resolve()) if config else "",
        _ENV_UNSIGNED: "1" if unsigned else "0", _ENV_HOST: host, _ENV_PORT: str(port),
        _ENV_LOG: f"{log_level.upper()}:{settings.log_format}", WORKERS_ENV: str(workers)})
    uvicorn.run("cds.service.server:worker_app", factory=True, workers=workers, host=host,
                port=port, log_config=None, access_log=False, server_header=False)
