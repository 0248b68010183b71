"""A cached compiled engine: `load_engine` once, then a pickle of the result in a per-user
cache folder, keyed by the content of every file it was built from.

The key is a SHA-256 over the package version and its Python sources (path, size and mtime:
a code change rebuilds), the Python version, the arguments (pack specs, backend, medication
limit), and the path and bytes of every file under the knowledge data folder, the rulesets
roots (the given ones, `CDS_RULESETS`, the bundled packs) and any pack given as a folder: a
changed pack, rule, case or site-knowledge file gives another key, so a stale engine is never
used. The cache only ever saves time:

- a cache file that cannot be read or unpickled (truncated, corrupt, written by another
  version) is ignored and replaced by a fresh build;
- a new file is written to a temporary name in the same folder and renamed into place, so
  concurrent runs see either no file or a complete one;
- a cache folder that cannot be created or written is no error (the engine is just built);
- the folder is made private to the user (0700), and a folder or file another user could
  write is not read (a pickle is code).

`CDS_CACHE_DIR` sets the folder; `off` (or `none`, `0`, empty) turns the cache off.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cds.limits import MAX_MEDICATIONS

if TYPE_CHECKING:
    from cds.engine.evaluator import Backend, Engine

#: Bumped when the layout of a cache file changes.
FORMAT = b"cds-engine-cache/1"
#: Cache files kept besides the one just written (other pack sets, other versions).
KEEP = 8
_OFF = {"", "0", "off", "none", "false", "no"}
_PACKAGE = Path(__file__).resolve().parent.parent


def cache_dir() -> Path | None:
    """The engine cache folder: `CDS_CACHE_DIR`, else the per-user cache folder; None: off."""
    env = os.environ.get("CDS_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cds", appauthor=False)) / "engines"


def _files(folder: Path) -> list[Path]:
    """The regular files under a folder, in a stable order (hidden and __pycache__ skipped)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        out += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return out


def engine_key(packs: Sequence[str] | None, roots: Iterable[Path | str], backend: str,
               max_medications: int) -> str:
    """The digest of everything an engine is built from (see the module docstring)."""
    from cds import __version__
    from cds.knowledge.store import DATA_DIR
    from cds.rules.registry import rulesets_roots

    h = hashlib.sha256(FORMAT)
    h.update(repr((__version__, sys.version, sys.implementation.cache_tag,
                   None if packs is None else list(packs), backend, max_medications)).encode())
    for p in _files(_PACKAGE):
        if p.suffix == ".py":
            st = p.stat()
            h.update(f"code:{p.relative_to(_PACKAGE)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    folders = [DATA_DIR, *rulesets_roots(roots)]
    folders += [Path(s) for s in packs or () if Path(s).is_dir()]  # a pack given as a folder
    for folder in folders:
        folder = folder.resolve()
        h.update(b"\0folder:" + os.fsencode(folder))
        if folder.is_file():
            h.update(b"\0file:" + folder.read_bytes())
            continue
        for p in _files(folder) if folder.is_dir() else ():
            h.update(b"\0file:" + os.fsencode(p.relative_to(folder)) + b"\0")
            with contextlib.suppress(OSError):  # vanished or unreadable: its absence is keyed
                data = p.read_bytes()
                h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:32]


def _private(path: Path) -> bool:
    """Ours, and not writable by anyone else (a pickle from elsewhere would run code)."""
    st = path.stat()
    return (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and not (
        st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read(path: Path, key: str) -> Engine | None:
    from cds.engine.evaluator import Engine

    try:
        if not (_private(path.parent) and _private(path)):
            return None
        with path.open("rb") as f:
            header = f.readline()
            if header != FORMAT + b" " + key.encode() + b"\n":
                return None
            data = f.read()
        collecting = gc.isenabled()
        gc.disable()  # a collection pass per few hundred objects would double the load time
        try:
            engine = pickle.loads(data)
        finally:
            if collecting:
                gc.enable()
    except Exception:  # missing, truncated, corrupt, from another version: build afresh
        return None
    return engine if isinstance(engine, Engine) else None


def _write(folder: Path, path: Path, key: str, engine: Engine) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(folder):
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".engine-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(FORMAT + b" " + key.encode() + b"\n")
                pickle.dump(engine, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _prune(folder, keep=path)
    except Exception:  # a read-only or full disk, a pickling problem: the cache is optional
        return


def _prune(folder: Path, keep: Path) -> None:
    others = sorted((p for p in folder.glob("engine-*.pickle") if p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for p in others[KEEP:]:
        with contextlib.suppress(OSError):
            p.unlink()


def cached_engine(packs: Iterable[str] | None = None, *, roots: Iterable[Path | str] = (),
                  backend: Backend = "indexed", max_medications: int = MAX_MEDICATIONS,
                  folder: Path | None | bool = True) -> Engine:
    """`load_engine(packs, roots=roots, ...)`, from the cache when nothing it was built from
    has changed. `folder`: the cache folder (True: `cache_dir()`; None or False: no cache).
    Pack errors are raised as by `load_engine` (a failed build is never cached)."""
    from cds.engine.evaluator import load_engine

    specs = list(packs) if packs is not None else None
    roots = list(roots)
    where = cache_dir() if folder is True else folder or None
    if where is None:
        return load_engine(specs, roots=roots, backend=backend, max_medications=max_medications)
    try:
        key = engine_key(specs, roots, backend, max_medications)
    except OSError:  # a root that cannot be read: let the loader name the problem
        return load_engine(specs, roots=roots, backend=backend, max_medications=max_medications)
    path = where / f"engine-{key}.pickle"
    engine = _read(path, key)
    if engine is None:
        engine = load_engine(specs, roots=roots, backend=backend, max_medications=max_medications)
        _write(where, path, key, engine)
    return engine
