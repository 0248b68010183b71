"""A real `cds serve` process for the benchmarks and the soak test: JWT verification on (an
ES384 key of its own, published as a JWKS file), on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISS = "https://ehr.bench.example"


def start_server(folder: Path, extra_config: str = "", wait_seconds: float = 60
                 ) -> tuple[subprocess.Popen[bytes], str, Any, Path]:
    """(process, base URL, the issuer's private key, the server's log file)."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "k1", "use": "sig",
           "alg": "ES384"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (folder / "cds.yaml").write_text(f"issuers: [{{iss: '{ISS}', jwks_file: jwks.json}}]\n"
                                     f"feedback_db: feedback.sqlite3\n{extra_config}")
    log = folder / "server.log"
    code = ("from cds.service.server import run; "
            f"run('127.0.0.1', {port}, False, {str(folder / 'cds.yaml')!r}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base, key, log
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"service did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
