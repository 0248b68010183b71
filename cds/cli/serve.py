"""`cds serve`: the CDS Hooks service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import file_errors


@file_errors
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    allow_unsigned: Annotated[bool, typer.Option(
        "--allow-unsigned", help="Accept requests without a JWT. Development only.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Service config (YAML).")] = None,
    log_level: Annotated[str, typer.Option(
        "--log-level", help="debug, info, warning or error. Patient data is never logged.")] = "info",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Worker processes sharing the socket and the one store "
                                 "(docs/deploy.md). SIGHUP replaces them with the packs reloaded.")] = 1,
) -> None:
    """Run the CDS Hooks service (docs/cds-hooks.md, docs/deploy.md)."""
    from cds.service.server import run

    run(host=host, port=port, allow_unsigned=allow_unsigned, config=config,
        log_level=log_level.lower(), workers=workers)
