"""`cds serve`: the CDS Hooks service under uvicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from cds.errors import PackErrors

log = logging.getLogger("cds.service")

UNSIGNED_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  --allow-unsigned: requests WITHOUT a JWT are ACCEPTED.                    !!
!!  Anyone who can reach this port can send patient data and read decisions.  !!
!!  DEVELOPMENT ONLY. Never run this way with real patients.                  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def _logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cds")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def run(host: str = "127.0.0.1", port: int = 8080, allow_unsigned: bool = False,
        config: Path | str | None = None, *, log_level: str = "info") -> None:
    """Serve until interrupted. Exits with a one-line message on a bad config or pack."""
    import uvicorn

    from cds.service.app import create_app
    from cds.service.config import ConfigError, load_settings

    _logging(log_level.upper())
    try:
        settings = load_settings(config)
        unsigned = allow_unsigned or settings.allow_unsigned
        app = create_app(settings, config_path=config, allow_unsigned=unsigned, host=host,
                         port=port)
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
    state = app.app.state.cds
    log.info("CDS Hooks service at %s/cds-services, packs: %s", state.base_url,
             ", ".join(state.holder.get().pack_refs))
    # access_log off: uvicorn's access lines are replaced by cds.service lines that never
    # carry query strings or bodies
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                server_header=False)
