"""Installed packs: several versions side by side, resolved by `id` (newest) or `id@version`.

A pack folder is any directory holding a pack.yaml below a rulesets root (the bundled
`rulesets/`, plus `CDS_RULESETS` paths and those passed in), so `rulesets/opioid-safety/` and
`rulesets/opioid-safety@1.0.0/` can live side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from cds.errors import PackError, PackErrors
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack, load_pack
from cds.rules.version import key


def bundled_rulesets() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "rulesets", here / "_rulesets"):
        if candidate.is_dir():
            return candidate
    return here.parent / "rulesets"


def rulesets_roots(extra: Iterable[Path | str] = ()) -> list[Path]:
    roots = [Path(p) for p in extra]
    env = os.environ.get("CDS_RULESETS")
    if env:
        roots += [Path(p) for p in env.split(os.pathsep) if p]
    roots.append(bundled_rulesets())
    return roots


@dataclass(frozen=True)
class PackInfo:
    id: str
    version: str
    path: Path
    title: str

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


def discover(roots: Iterable[Path]) -> list[PackInfo]:
    """Every pack folder under the roots (pack.yaml read for id and version only)."""
    found: dict[tuple[str, str], PackInfo] = {}
    for root in roots:
        if (root / "pack.yaml").is_file():
            candidates = [root / "pack.yaml"]
        else:
            candidates = sorted(root.glob("*/pack.yaml")) + sorted(root.glob("*/*/pack.yaml"))
        for meta in candidates:
            try:
                doc = yaml.safe_load(meta.read_text(encoding="utf-8"))
                info = PackInfo(str(doc["id"]), str(doc["version"]), meta.parent,
                                str(doc.get("title", "")))
            except (OSError, yaml.YAMLError, KeyError, TypeError):
                continue  # `cds pack lint` reports broken packs; discovery skips them
            found.setdefault((info.id, info.version), info)
    return sorted(found.values(), key=lambda p: (p.id, key(p.version)))


def resolve(spec: str, available: list[PackInfo]) -> PackInfo:
    """'opioid-safety' (newest) or 'opioid-safety@1.2.0' (pinned), or a folder path."""
    pid, _, version = spec.partition("@")
    matches = [p for p in available if p.id == pid and (not version or p.version == version)]
    if not matches:
        have = ", ".join(p.ref for p in available if p.id == pid) or "none installed"
        raise PackErrors([PackError(f"pack {spec!r} is not installed ({have})")])
    return max(matches, key=lambda p: key(p.version))


def load_packs(kb: Knowledge, specs: Iterable[str] | None = None,
               roots: Iterable[Path | str] = ()) -> list[Pack]:
    """Load the named packs (default: the newest version of every installed pack)."""
    return [load_pack(info.path, kb) for info in choose(specs, roots)]


def load_site_packs(specs: Iterable[str] | None = None, roots: Iterable[Path | str] = (),
                    also: Iterable[str] = ()) -> tuple[Knowledge, list[Pack]]:
    """The knowledge with the site folders that apply (`knowledge/` in the rulesets roots and
    in the chosen packs, cds/rules/overlay.py), and the packs loaded with it. `also`: packs
    loaded when no chosen pack has their id (the built-in data-quality pack)."""
    from cds.rules.overlay import knowledge_folders, site_knowledge

    chosen = choose(specs, roots)
    have = {i.id or _meta_id(i.path) for i in chosen}
    chosen += [i for spec in also if spec not in have for i in choose([spec], roots)]
    kb = site_knowledge(knowledge_folders(rulesets_roots(roots), [i.path for i in chosen]))
    return kb, [load_pack(info.path, kb) for info in chosen]


def _meta_id(folder: Path) -> str:
    try:
        doc = yaml.safe_load((folder / "pack.yaml").read_text(encoding="utf-8"))
        return str(doc["id"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return ""


def choose(specs: Iterable[str] | None = None, roots: Iterable[Path | str] = ()) -> list[PackInfo]:
    """The pack folders the specs name (default: the newest version of every installed pack)."""
    available = discover(rulesets_roots(roots))
    chosen: list[PackInfo] = []
    if specs is None:
        newest: dict[str, PackInfo] = {}
        for p in available:
            newest[p.id] = p  # sorted ascending, so the last is the newest
        chosen = list(newest.values())
    else:
        for spec in specs:
            path = Path(spec)
            if (path / "pack.yaml").is_file():
                chosen.append(PackInfo("", "", path, ""))
            else:
                chosen.append(resolve(spec, available))
    return chosen
